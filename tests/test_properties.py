"""Properties of one split, read from a real cache folder."""

import numpy as np
import pytest

from intrinsic.cache import RawDataset, load_cache, write_cache
from intrinsic.estimators import intrinsic_dimension
from intrinsic.properties import dataset_sharpness, split_properties
from intrinsic.splits import class_pair_order, make_split


def blob_images(n: int, side: int = 32) -> tuple[list[np.ndarray], np.ndarray]:
    """n images of a blob whose centre is the latent (u, v), uniform in [0, 1]^2: a 2-dimensional
    image manifold; the images and the latents."""
    latent = np.random.default_rng(0).random((n, 2))
    grid = np.linspace(0, 1, side)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    return [np.exp(-((xx - 0.2 - 0.6 * u) ** 2 + (yy - 0.2 - 0.6 * v) ** 2) / 0.02) for u, v in latent], latent


@pytest.fixture(scope="module")
def two_parameter_cache(tmp_path_factory):
    """Blob images (``blob_images``), two classes by u."""
    images, latent = blob_images(600)
    raw = RawDataset("blobs", images, (latent[:, 0] > 0.5).astype(int), np.arange(600), ["left", "right"],
                     provenance={"d_true": 2})
    folder = tmp_path_factory.mktemp("blobs")
    write_cache(folder, raw, size=32, channels=1, domain="synthetic")
    return load_cache(folder)


def test_split_properties_record(two_parameter_cache):
    cache = two_parameter_cache
    split = make_split("blobs", cache.labels, cache.groups, cache.classes, 400, 100, seed=3)
    record = split_properties(cache, split, seed=3, knn_k=20)
    assert record["dataset"] == "blobs" and record["domain"] == "synthetic"
    assert (record["n_train"], record["n_test"], record["seed"]) == (400, 100, 3)
    assert record["classes"] == "left vs right" and record["d_true"] == 2
    assert record["n_features"] == 32 * 32 and record["resolution"] == 32
    assert record["d_mle"] == pytest.approx(2, rel=0.15)
    assert record["d_twonn"] == pytest.approx(2, rel=0.15)
    # The record is exactly what the estimators give on the training images in index order.
    train = cache.images[np.sort(split.train_idx)]
    assert record["d_mle"] == intrinsic_dimension(train)["d_mle"]
    assert "k_f" not in record  # a property of the class pair, not of the split


def brute_force_sharpness(X, y):
    X = X.reshape(len(X), -1).astype(np.float64) / 255
    return max(1 / np.linalg.norm(X[j] - X[k]) for j in range(len(X)) for k in range(len(X)) if y[j] != y[k])


@pytest.fixture(scope="module")
def four_class_cache(tmp_path_factory):
    rng = np.random.default_rng(1)
    images = list(rng.random((160, 6, 6)))
    raw = RawDataset("quad", images, np.repeat(np.arange(4), 40), np.arange(160), list("abcd"))
    folder = tmp_path_factory.mktemp("quad")
    write_cache(folder, raw, size=6, channels=1, domain="natural")
    return load_cache(folder)


def test_k_f_is_a_property_of_the_class_pair(four_class_cache):
    """K_F of a pair: M class-balanced images of the whole dataset's pair (not a split), the same
    whatever the seeds or N, and equal to the brute force over its sample."""
    cache = four_class_cache
    records = dataset_sharpness(cache, seeds=[0, 1, 2], pairings=4, samples=1000)
    order = class_pair_order("quad", cache.classes, cache.labels)
    assert [r["pair_index"] for r in records] == [0, 1, 2, 3]  # seeds use pairs 0..2, Fig. 1 pairs 0..3
    assert [r["fig1"] for r in records] == [True] * 4
    assert [r["seeds"] for r in records] == ["0", "1", "2", ""]
    for record, pair in zip(records, order):
        assert record["classes"] == f"{cache.classes[pair[0]]} vs {cache.classes[pair[1]]}"
        pool = np.flatnonzero(np.isin(cache.labels, pair))
        assert record["kf_samples"] == record["n_pool"] == 80  # M = 1000 > pool: all of it
        expected = brute_force_sharpness(np.asarray(cache.images[pool]), cache.labels[pool])
        assert record["k_f"] == pytest.approx(expected, rel=1e-9)
        assert record["k_f_255"] == pytest.approx(record["k_f"] / 255)
    # Other seeds (and any N) see the same value for the same pair; each seed its own pair.
    again = dataset_sharpness(cache, seeds=[9, 1], pairings=1, samples=1000)  # 9 mod 6 = 3
    assert [r["pair_index"] for r in again] == [0, 1, 3]
    assert [r["seeds"] for r in again] == ["", "1", "9"]
    assert [r["k_f"] for r in again] == [records[i]["k_f"] for i in (0, 1, 3)]
    # Seeds share a pair only once the 6 pairs are used up.
    pairs = {make_split("quad", cache.labels, cache.groups, cache.classes, 10, 10, s).classes for s in range(6)}
    assert len(pairs) == 6


def test_k_f_sample_is_balanced_and_seeded_by_the_pair(four_class_cache):
    cache = four_class_cache
    first = dataset_sharpness(cache, seeds=[0], pairings=1, samples=20)
    second = dataset_sharpness(cache, seeds=[0], pairings=1, samples=20)
    assert first[0]["kf_samples"] == 20 and first[0]["k_f"] == second[0]["k_f"]


def test_property_tables_join_k_f_to_every_split_of_the_pair(tmp_path, four_class_cache):
    from intrinsic.io import write_json
    from intrinsic.tables import property_tables

    cache = four_class_cache
    split_paths = []
    for seed in (0, 1):
        for n in (20, 30):
            split = make_split("quad", cache.labels, cache.groups, cache.classes, n, 10, seed)
            path = tmp_path / f"n{n}_seed{seed}.json"
            write_json(path, split_properties(cache, split, seed=seed, knn_k=5))
            split_paths.append(path)
    sharpness_path = tmp_path / "label_sharpness.json"
    write_json(sharpness_path, {"pairs": dataset_sharpness(cache, seeds=[0, 1], pairings=3)})
    splits, sharpness = property_tables(split_paths, [sharpness_path])
    assert len(sharpness) == 3 and len(splits) == 4
    k_f = sharpness.set_index("classes")["k_f"]
    assert (splits["k_f"] == splits["classes"].map(k_f)).all()
    assert splits.groupby("seed")["k_f"].nunique().eq(1).all()  # independent of N
    # A split whose pair has no K_F is an error naming it.
    write_json(sharpness_path, {"pairs": dataset_sharpness(cache, seeds=[0], pairings=1)})
    with pytest.raises(ValueError, match="no label sharpness of their class pair.*'quad'"):
        property_tables(split_paths, [sharpness_path])


# ----------------------------------------------------------------------------------------------
# Background noise (Zhang et al. 2025): d_data and the data rank at a noise level


def test_noise_zero_gives_the_clean_record_and_rank_keys(two_parameter_cache):
    cache = two_parameter_cache
    split = make_split("blobs", cache.labels, cache.groups, cache.classes, 200, 100, seed=1)
    clean = split_properties(cache, split, seed=1, knn_k=10)
    again = split_properties(cache, split, seed=1, knn_k=10, noise=0.0, background_threshold=0, rank_energy=0.99)
    for key in ("d_mle", "d_twonn", "n_duplicates", "data_energy_rank", "data_effective_rank"):
        assert clean[key] == again[key]
    assert clean["noise"] == 0.0 and clean["rank_energy"] == 0.99
    assert clean["d_mle"] == intrinsic_dimension(cache.images[np.sort(split.train_idx)], k=10)["d_mle"]
    assert isinstance(clean["data_energy_rank"], int) and clean["data_effective_rank"] > 1
    # The blob images fill a curved manifold: many more linear directions than d = 2.
    assert clean["data_energy_rank"] > 2
    noisy = split_properties(cache, split, seed=1, knn_k=10, noise=0.1)
    assert noisy["noise"] == 0.1 and noisy["d_mle"] != clean["d_mle"]


@pytest.fixture(scope="module")
def low_rank_cache(tmp_path_factory):
    from intrinsic.sources import load_source

    folder = tmp_path_factory.mktemp("low_rank")
    raw = load_source("lr", {"type": "low_rank", "seed": 0, "rank": 5, "n_per_class": 150})
    write_cache(folder, raw, size=32, channels=1, domain="synthetic")
    return load_cache(folder)


def test_low_rank_data_rank_grows_with_background_noise(low_rank_cache):
    cache = low_rank_cache
    split = make_split("lr", cache.labels, cache.groups, cache.classes, 200, 50, seed=0)
    clean = split_properties(cache, split, seed=0, knn_k=10)
    assert clean["data_energy_rank"] == 5 and clean["d_true"] == 5
    noisy = split_properties(cache, split, seed=0, knn_k=10, noise=0.2)
    assert noisy["data_energy_rank"] > 5 * 5 and noisy["noise"] == 0.2
    assert noisy["data_effective_rank"] > clean["data_effective_rank"]
    assert noisy["d_twonn"] > clean["d_twonn"]
    # Deterministic, and a different seed draws other noise.
    assert split_properties(cache, split, seed=0, knn_k=10, noise=0.2)["d_mle"] == noisy["d_mle"]
    assert split_properties(cache, split, seed=1, knn_k=10, noise=0.2)["d_mle"] != noisy["d_mle"]
