"""Dataset properties of one training split: d_data (MLE, TwoNN) and label sharpness K_F."""

from __future__ import annotations

import time

import numpy as np

from .cache import DatasetCache
from .estimators import intrinsic_dimension, label_sharpness
from .splits import Split


def split_properties(
    cache: DatasetCache,
    split: Split,
    *,
    seed: int,
    knn_k: int = 20,
    twonn_discard_fraction: float = 0.1,
    sharpness_samples: int = 1000,
) -> dict:
    """Properties of the training images of ``split``, as one flat record for the tidy table."""
    started = time.perf_counter()
    # Sorted indices read a memory-mapped cache sequentially; the uint8 copy is n*C*H*W bytes.
    train = np.asarray(cache.images[np.sort(split.train_idx)])
    order = np.argsort(split.train_idx)
    labels = split.train_y[order]
    ids = intrinsic_dimension(train, k=knn_k, discard_fraction=twonn_discard_fraction)
    k_f = label_sharpness(train, labels, m=sharpness_samples, seed=seed)
    meta = cache.meta
    return {
        "dataset": meta["dataset"],
        "domain": meta["domain"],
        "n_train": int(len(split.train_idx)),
        "n_test": int(len(split.test_idx)),
        "seed": int(seed),
        "classes": f"{split.classes[0]} vs {split.classes[1]}",
        "d_mle": ids["d_mle"],
        "d_twonn": ids["d_twonn"],
        "k_f": k_f,
        "n_duplicates": ids["n_duplicates"],
        "n_features": int(np.prod(train.shape[1:])),
        "resolution": int(meta["resolution"]),
        "channels": int(meta["channels"]),
        "knn_k": int(knn_k),
        "sharpness_samples": int(min(sharpness_samples, len(split.train_idx))),
        "d_true": meta.get("provenance", {}).get("d_true"),
        "seconds": round(time.perf_counter() - started, 3),
    }
