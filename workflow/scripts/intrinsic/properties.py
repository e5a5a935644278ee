"""Dataset properties: d_data (MLE, TwoNN) of each training split, and label sharpness K_F of
each (dataset, class pair).

K_F is a property of the dataset (Konz & Mazurowski 2024, Sec. 3.2: M class-balanced samples
*from the dataset*, all M^2 pairs), not of a training split: it is computed once per class pair
from every image of the pair in the cache (the pool the splits draw from), with a sample that
depends only on the dataset and the pair, and joined to every split and run of that pair.
"""

from __future__ import annotations

import time
import zlib

import numpy as np

from .background import background_masks, noisy_images
from .cache import DatasetCache
from .estimators import balanced_sample, intrinsic_dimension, label_sharpness
from .provenance import code_version
from .rank import rank_summary
from .splits import Split, class_pair_order


def split_properties(
    cache: DatasetCache,
    split: Split,
    *,
    seed: int,
    knn_k: int = 20,
    twonn_discard_fraction: float = 0.1,
    noise: float = 0.0,
    background_threshold: int = 0,
    rank_energy: float = 0.99,
) -> dict:
    """d_data and the data rank of the training images of ``split`` at background noise level
    ``noise`` (``background.noisy_images``; 0: the clean images), as one flat record for the
    tidy table. The rank (``rank.rank_summary``, centred) is that of the images on the [0, 1]
    scale; it is scale invariant, so it is computed from the uint8 values directly."""
    started = time.perf_counter()
    # In file order (read_images reads in that order anyway); the uint8 copy is n*C*H*W bytes.
    index = np.sort(split.train_idx)
    train = noisy_images(cache, index, noise, seed, background_threshold)
    # The share of pixels the noise falls on: a source without dark background (e.g. cropped
    # radiographs under a threshold of 0) gets hardly any noise, whatever sigma says.
    background_fraction = (float(background_masks(cache, index, background_threshold).mean()) if noise > 0
                           else float("nan"))
    ids = intrinsic_dimension(train, k=knn_k, discard_fraction=twonn_discard_fraction)
    ranks = rank_summary(train, energy=rank_energy, center=True, prefix="data_")
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
        "n_duplicates": ids["n_duplicates"],
        "n_features": int(np.prod(train.shape[1:])),
        "resolution": int(meta["resolution"]),
        "channels": int(meta["channels"]),
        "knn_k": int(knn_k),
        "d_true": meta.get("provenance", {}).get("d_true"),
        "noise": float(noise),
        "background_fraction": background_fraction,
        "data_energy_rank": ranks["data_energy_rank"],
        "data_effective_rank": ranks["data_effective_rank"],
        "rank_energy": float(rank_energy),
        "seconds": round(time.perf_counter() - started, 3),
        **code_version(),
    }


def pair_sharpness(cache: DatasetCache, pair: tuple[int, int], samples: int = 1000) -> dict:
    """K_F of one class pair over M = ``samples`` class-balanced images of the whole dataset."""
    started = time.perf_counter()
    name = cache.meta["dataset"]
    pool = np.flatnonzero(np.isin(cache.labels, pair))
    binary = (cache.labels[pool] == pair[1]).astype(np.int64)
    # The sample depends on the dataset and the pair only, so every seed, N and model of the
    # pair sees the same K_F. crc32 (unlike hash()) is stable across processes.
    rng_seed = [zlib.crc32(name.encode()), int(pair[0]), int(pair[1]), 2]
    # Draw the balanced sample first and read only its rows from the memory-mapped cache;
    # label_sharpness then takes all of them (a balanced set of at most m).
    chosen = balanced_sample(binary, samples, rng_seed)
    images = cache.read_images(pool[chosen])
    result = label_sharpness(images, binary[chosen], m=len(chosen))
    classes = cache.classes
    return {
        "dataset": name,
        "domain": cache.meta["domain"],
        "classes": f"{classes[pair[0]]} vs {classes[pair[1]]}",
        "k_f": result["k_f"],
        "k_f_255": result["k_f"] / 255,
        "kf_samples": result["kf_samples"],
        "kf_zero_distance_pairs": result["kf_zero_distance_pairs"],
        "n_pool": int(len(pool)),
        "resolution": int(cache.meta["resolution"]),
        "channels": int(cache.meta["channels"]),
        "seconds": round(time.perf_counter() - started, 3),
        **code_version(),
    }


def dataset_sharpness(cache: DatasetCache, seeds: list[int], pairings: int = 25, samples: int = 1000,
                      class_pairs: list[list[str]] | None = None) -> list[dict]:
    """K_F of every class pair the workflow uses: the pairs of ``seeds`` (see
    ``splits.choose_class_pair``) and the first ``pairings`` distinct pairs of the dataset's pair
    order, which Fig. 1 averages (marked ``fig1``). One record per pair, in pair order."""
    name = cache.meta["dataset"]
    order = class_pair_order(name, cache.classes, cache.labels, class_pairs)
    used = {}
    for seed in seeds:
        used.setdefault(seed % len(order), []).append(int(seed))
    records = []
    for index in sorted(set(range(min(pairings, len(order)))) | set(used)):
        record = pair_sharpness(cache, order[index], samples)
        record.update(pair_index=index, fig1=index < pairings,
                      seeds=" ".join(map(str, sorted(used.get(index, [])))))
        records.append(record)
    return records
