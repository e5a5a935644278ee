"""Properties of one split, read from a real cache folder."""

import numpy as np
import pytest

from intrinsic.cache import RawDataset, load_cache, write_cache
from intrinsic.estimators import intrinsic_dimension, label_sharpness
from intrinsic.properties import split_properties
from intrinsic.splits import make_split


@pytest.fixture(scope="module")
def two_parameter_cache(tmp_path_factory):
    """Images of a blob whose centre is the latent (u, v): a 2-dimensional image manifold."""
    rng = np.random.default_rng(0)
    latent = rng.random((600, 2))
    grid = np.linspace(0, 1, 32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = [np.exp(-((xx - 0.2 - 0.6 * u) ** 2 + (yy - 0.2 - 0.6 * v) ** 2) / 0.02) for u, v in latent]
    raw = RawDataset("blobs", images, (latent[:, 0] > 0.5).astype(int), np.arange(600), ["left", "right"],
                     provenance={"d_true": 2})
    folder = tmp_path_factory.mktemp("blobs")
    write_cache(folder, raw, size=32, channels=1, domain="synthetic")
    return load_cache(folder)


def test_split_properties_record(two_parameter_cache):
    cache = two_parameter_cache
    split = make_split("blobs", cache.labels, cache.groups, cache.classes, 400, 100, seed=3)
    record = split_properties(cache, split, seed=3, knn_k=20, sharpness_samples=200)
    assert record["dataset"] == "blobs" and record["domain"] == "synthetic"
    assert (record["n_train"], record["n_test"], record["seed"]) == (400, 100, 3)
    assert record["classes"] == "left vs right" and record["d_true"] == 2
    assert record["n_features"] == 32 * 32 and record["resolution"] == 32
    assert record["d_mle"] == pytest.approx(2, rel=0.15)
    assert record["d_twonn"] == pytest.approx(2, rel=0.15)
    # The record is exactly what the estimators give on the training images in index order.
    order = np.argsort(split.train_idx)
    train = cache.images[np.sort(split.train_idx)]
    assert record["d_mle"] == intrinsic_dimension(train)["d_mle"]
    assert record["k_f"] == label_sharpness(train, split.train_y[order], m=200, seed=3)
    assert record["sharpness_samples"] == 200
