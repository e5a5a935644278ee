"""The appendix experiments (intrinsic.appendix): App. B.1, d_data and K_F of a resized cache;
App. C.3, tasks of one image set ranked by K_F; and their rules in a dry-run."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from intrinsic.appendix import (check_resolution, figure_invariance, figure_task_ranking, invariance_record,
                                invariance_table, rank_tasks, resize_images, resized_cache, task_ranking_table)
from intrinsic.cache import RawDataset, load_cache, write_cache
from intrinsic.estimators import intrinsic_dimension
from intrinsic.properties import dataset_sharpness, split_properties
from intrinsic.splits import make_split
from test_properties import blob_images

T_975_1 = stats.t.ppf(0.975, 1)  # 12.706...: the 95% t quantile of a mean of two values


# ------------------------------------------------------------------------------ the resize


def block_image(values: np.ndarray, block: int) -> np.ndarray:
    """uint8 (1, 1, B*block, B*block) constant on block x block squares of ``values`` (B x B)."""
    return np.kron(values, np.ones((block, block))).astype(np.uint8)[None, None]


def test_resize_keeps_the_value_inside_each_block():
    """32 -> 16 px of 8 x 8 constant blocks: skimage's anti-aliasing (Gaussian sigma (2 - 1)/2 =
    0.5, radius int(4 sigma + 0.5) = 2) then bilinear sampling at input 2i + 0.5 make output
    pixel i depend on inputs 2i - 2 .. 2i + 3, so outputs 4b + 1 and 4b + 2 see only block b."""
    values = np.array([[10, 40, 70, 100], [130, 160, 190, 220], [20, 50, 80, 110], [140, 170, 200, 230]])
    out = resize_images(block_image(values, 8), 16, 1)
    assert out.shape == (1, 1, 16, 16) and out.dtype == np.uint8
    for b in range(4):
        for c in range(4):
            assert (out[0, 0, 4 * b + 1:4 * b + 3, 4 * c + 1:4 * c + 3] == values[b, c]).all()
    assert out.min() >= values.min() and out.max() <= values.max()  # a smoothing, no overshoot
    # Output column 3 samples input 6.5 (the mean of inputs 6 and 7) next to block (0, 1): the
    # Gaussian weights w(k) ~ exp(-2 k^2), summed to 1, give 10 + 30 w(2) at 6 and 10 + 30 (w(1) +
    # w(2)) at 7; their mean 11.6 rounds to 12 (without the anti-aliasing it would be 10).
    w = np.exp(-2.0 * np.arange(-2, 3) ** 2)
    w /= w.sum()
    assert out[0, 0, 1, 3] == np.rint(10 + 30 * (w[3] + 2 * w[4]) / 2) == 12
    constant = np.full((2, 1, 32, 32), 77, dtype=np.uint8)
    assert (resize_images(constant, 8, 1) == 77).all() and resize_images(constant, 8, 1).shape == (2, 1, 8, 8)


def test_resize_at_the_cache_size_is_the_identity_and_3_channels_replicate_grey():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    assert np.array_equal(resize_images(grey, 16, 1), grey)
    for size in (16, 8):
        three = resize_images(grey, size, 3)
        assert three.shape == (3, 3, size, size)
        assert all(np.array_equal(three[:, c], resize_images(grey, size, 1)[:, 0]) for c in range(3))
    rgb = rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    assert np.array_equal(resize_images(rgb, 16, 3), rgb)  # an RGB cache keeps its colours
    # and turns grey as the cache converts: skimage's rgb2gray weights
    weights = np.array([0.2125, 0.7154, 0.0721])
    expected = np.rint(np.tensordot(weights, rgb.astype(float) / 255, axes=([0], [1])) * 255)
    assert np.abs(resize_images(rgb, 16, 1)[:, 0].astype(float) - expected).max() <= 1


def test_resolution_above_the_cache_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"properties\.invariance\.resolutions.*64 exceeds the cached 32"):
        check_resolution(64, 1, 32)
    with pytest.raises(ValueError, match=r"properties\.invariance\.channels"):
        check_resolution(16, 2, 32)
    with pytest.raises(ValueError, match=r"properties\.invariance\.resolutions"):
        resize_images(np.zeros((1, 1, 8, 8), np.uint8), 9, 1)


# ----------------------------------------------------------------- App. B.1 on a small cache


@pytest.fixture(scope="module")
def blob_cache(tmp_path_factory):
    """Blob images (test_properties.blob_images, a 2-d manifold); three classes by u."""
    images, latent = blob_images(300)
    raw = RawDataset("blobs", images, (latent[:, 0] * 3).astype(int), np.arange(300), ["a", "b", "c"])
    folder = tmp_path_factory.mktemp("blobs")
    write_cache(folder, raw, size=32, channels=1, domain="synthetic")
    return load_cache(folder)


def blob_splits(cache, seeds=(0, 1)):
    return {seed: make_split("blobs", cache.labels, cache.groups, cache.classes, 40, 20, seed,
                             cache_sha256=cache.meta["sha256"]) for seed in seeds}


OPTIONS = {"knn_k": 10, "twonn_discard_fraction": 0.1, "samples": 60}


@pytest.fixture(scope="module")
def records(blob_cache):
    splits = blob_splits(blob_cache)
    return {(r, c): invariance_record(blob_cache, splits, r, c, **OPTIONS) for r in (32, 16) for c in (1, 3)}


def test_the_cache_size_gives_the_main_rules_values(blob_cache, records):
    """At the cache's own resolution and channels the record is what rules dataset_properties and
    label_sharpness compute: the same estimators, options, training images and K_F samples."""
    record = records[(32, 1)]
    splits = blob_splits(blob_cache)
    for seed, row in zip((0, 1), record["splits"]):
        main = split_properties(blob_cache, splits[seed], seed=seed, knn_k=10)
        assert row["d_mle"] == main["d_mle"] and row["d_twonn"] == main["d_twonn"] and row["seed"] == seed
    main_pairs = dataset_sharpness(blob_cache, [0, 1], pairings=0, samples=60)
    assert [p["k_f"] for p in record["pairs"]] == [p["k_f"] for p in main_pairs]
    assert len(record["pairs"]) == 2 and [p["seeds"] for p in record["pairs"]] == ["0", "1"]
    assert record["k_f"] == pytest.approx(np.mean([p["k_f"] for p in main_pairs]), rel=1e-15)
    assert record["d_mle"] == pytest.approx(np.mean([r["d_mle"] for r in record["splits"]]), rel=1e-15)
    assert (record["resolution"], record["channels"], record["n_features"], record["n_train"]) == (32, 1, 1024, 40)


def test_three_replicated_channels_scale_k_f_by_one_over_sqrt3_and_keep_d_data(records):
    """Replicating grey into 3 channels multiplies every distance by sqrt(3): K_F / sqrt(3), and
    the distance ratios (all that d_data's MLE and TwoNN use) unchanged."""
    for r in (32, 16):
        grey, three = records[(r, 1)], records[(r, 3)]
        for p1, p3 in zip(grey["pairs"], three["pairs"]):
            assert p3["k_f"] == pytest.approx(p1["k_f"] / math.sqrt(3), rel=1e-12)
            assert p3["k_f_255"] == pytest.approx(p1["k_f_255"] / math.sqrt(3), rel=1e-12)
        for s1, s3 in zip(grey["splits"], three["splits"]):
            assert s3["d_mle"] == pytest.approx(s1["d_mle"], rel=1e-5)
            assert s3["d_twonn"] == pytest.approx(s1["d_twonn"], rel=1e-5)
        assert three["n_features"] == 3 * r * r and three["splits"][0]["channels"] == 3


def test_a_lower_resolution_measures_the_resized_training_images(blob_cache, records):
    record = records[(16, 1)]
    split = blob_splits(blob_cache)[1]
    train = resize_images(blob_cache.read_images(np.sort(split.train_idx)), 16, 1)
    assert record["splits"][1]["d_mle"] == intrinsic_dimension(train, k=10)["d_mle"]
    assert record["splits"][1]["resolution"] == 16 and record["n_features"] == 256
    # The view reads what it converts; the cache itself is untouched.
    view = resized_cache(blob_cache, 16, 1)
    assert view.read_images([3, 1]).shape == (2, 1, 16, 16) and blob_cache.read_images([3]).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match=r"properties\.invariance\.resolutions"):
        resized_cache(blob_cache, 33, 1)


def test_too_few_distinct_images_after_resizing_is_an_error_naming_the_setting(tmp_path):
    """Grey images that differ in one pixel each (3/255): distinct at 16 px, one image at 2 px
    (the anti-aliasing spreads the pixel over ~8 x 8 inputs, below half a grey level)."""
    images = []
    for i in range(120):
        image = np.full((16, 16), 0.5)
        image.flat[i] += 3 / 255
        images.append(image)
    raw = RawDataset("dots", images, np.arange(120) % 2, np.arange(120), ["even", "odd"])
    write_cache(tmp_path, raw, size=16, channels=1, domain="synthetic")
    cache = load_cache(tmp_path)
    split = make_split("dots", cache.labels, cache.groups, cache.classes, 20, 10, 0, cache_sha256=cache.meta["sha256"])
    options = {"knn_k": 5, "samples": 20}
    assert invariance_record(cache, {0: split}, 16, 1, **options)["splits"][0]["n_duplicates"] == 0
    assert len(np.unique(resize_images(cache.read_images(split.train_idx), 2, 1), axis=0)) == 1
    with pytest.raises(ValueError, match=r"'dots' at 2 px, 1 channel\(s\), seed 0: need more than k=5 .*"
                                         r"properties\.invariance\.resolutions"):
        invariance_record(cache, {0: split}, 2, 1, **options)


def test_invariance_table_and_figure(records, tmp_path):
    table = invariance_table(list(records.values()))
    assert len(table) == 4
    assert table[["resolution", "channels"]].values.tolist() == [[16, 1], [32, 1], [16, 3], [32, 3]]
    row = table[(table["resolution"] == 32) & (table["channels"] == 1)].iloc[0]
    d = [s["d_mle"] for s in records[(32, 1)]["splits"]]
    half = T_975_1 * np.std(d, ddof=1) / math.sqrt(2)
    assert row["d_mle"] == pytest.approx(np.mean(d))
    assert (row["d_mle_ci_low"], row["d_mle_ci_high"]) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
    assert row["n_seeds"] == 2 and row["n_pairs"] == 2 and row["classes"].count(" vs ") == 2
    figure_invariance(table, tmp_path / "inv.png", tmp_path / "inv.pdf")
    assert (tmp_path / "inv.png").stat().st_size > 0 and (tmp_path / "inv.pdf").stat().st_size > 0


def test_invariance_table_by_hand_and_its_errors():
    def record(resolution, d_values, k_values, zero=(0, 0)):
        return {"dataset": "x", "domain": "natural", "resolution": resolution, "channels": 1,
                "cache_resolution": 32, "cache_channels": 1, "n_features": resolution ** 2, "n_train": 40,
                "knn_k": 10, "seconds": 1.0,
                "splits": [{"d_mle": d, "d_twonn": d + 1, "n_duplicates": 1} for d in d_values],
                "pairs": [{"k_f": k, "k_f_255": k / 255, "kf_samples": 60, "kf_zero_distance_pairs": z,
                           "classes": f"p{i}"} for i, (k, z) in enumerate(zip(k_values, zero))]}

    table = invariance_table([record(16, [10.0, 12.0], [0.2, 0.4], zero=(1, 2)), record(8, [4.0, 4.0], [1.0, 1.0])])
    first = table.iloc[1]  # sorted by resolution: 8, then 16
    assert (first["d_mle"], first["d_mle_ci_low"], first["d_mle_ci_high"]) == pytest.approx(
        (11.0, 11.0 - T_975_1, 11.0 + T_975_1))  # sd sqrt(2), sqrt(2) values
    assert first["d_twonn"] == pytest.approx(12.0)
    assert (first["k_f"], first["k_f_255"]) == pytest.approx((0.3, 0.3 / 255))
    assert first["kf_zero_distance_pairs"] == 3 and first["n_duplicates"] == 2 and first["classes"] == "p0; p1"
    assert table.iloc[0]["d_mle_ci_low"] == table.iloc[0]["d_mle_ci_high"] == 4.0
    with pytest.raises(ValueError, match="record 1.*lacks"):
        invariance_table([record(8, [1.0], [1.0]), {"dataset": "x"}])
    with pytest.raises(ValueError, match="several records"):
        invariance_table([record(8, [1.0], [1.0]), record(8, [2.0], [1.0])])


# ------------------------------------------------------------------- App. C.3: task ranking


def ranking_inputs():
    """Group g1: tasks A, B, C; group g2: D, E. One model, two seeds, N 32 and 64 (the largest
    counts), one noisy run that the reference slice leaves out."""
    loss64 = {"A": (0.2, 0.4), "B": (0.2, 0.2), "C": (0.5, 0.5), "D": (0.1, 0.3), "E": (0.3, 0.3)}
    runs = []
    for task, losses in loss64.items():
        for seed, loss in enumerate(losses):
            runs.append({"dataset": task, "domain": "natural", "model": "resnet18", "noise": 0.0,
                         "variant": "standard", "n_train": 64, "seed": seed, "test_loss": loss,
                         "test_accuracy": 1 - loss})
            runs.append({**runs[-1], "n_train": 32, "test_loss": 9.0, "test_accuracy": 0.0})
            runs.append({**runs[-2], "noise": 0.1, "test_loss": 7.0})
    sharpness = pd.DataFrame([
        {"dataset": "A", "classes": "0 vs 1", "k_f": 0.05, "k_f_255": 0.05 / 255, "seeds": "0"},
        {"dataset": "A", "classes": "2 vs 3", "k_f": 0.15, "k_f_255": 0.15 / 255, "seeds": "1"},
        {"dataset": "A", "classes": "4 vs 5", "k_f": 9.0, "k_f_255": 9.0 / 255, "seeds": np.nan},  # Fig. 1 only
        {"dataset": "B", "classes": "0 vs 1", "k_f": 0.3, "k_f_255": 0.3 / 255, "seeds": "0 1"},
        {"dataset": "C", "classes": "0 vs 1", "k_f": 0.2, "k_f_255": 0.2 / 255, "seeds": "0 1"},
        {"dataset": "D", "classes": "0 vs 1", "k_f": 0.5, "k_f_255": 0.5 / 255, "seeds": "0 1"},
        {"dataset": "E", "classes": "0 vs 1", "k_f": 0.4, "k_f_255": 0.4 / 255, "seeds": "0 1"},
    ])
    properties = pd.DataFrame([{"dataset": t, "noise": noise, "n_train": n, "seed": s,
                                "d_mle": 10.0 * (n == 64) + s + noise * 100, "d_twonn": 5.0}
                               for t in loss64 for n in (32, 64) for s in (0, 1) for noise in (0.0, 0.1)])
    return pd.DataFrame(runs), sharpness, properties, {"g1": ["A", "B", "C"], "g2": ["D", "E"]}


def test_task_ranking_by_hand(tmp_path):
    runs, sharpness, properties, groups = ranking_inputs()
    table = task_ranking_table(runs, sharpness, properties, groups)
    g1 = table[table["group"] == "g1"].set_index("dataset")
    assert list(g1.index) == ["A", "C", "B"]  # sorted by K_F
    assert g1["k_f"].to_dict() == pytest.approx({"A": 0.1, "C": 0.2, "B": 0.3})  # A: its seeds' pairs only
    assert g1.loc["A", "n_pairs"] == 2 and g1.loc["A", "classes"] == "0 vs 1; 2 vs 3"
    assert g1["test_loss"].to_dict() == pytest.approx({"A": 0.3, "C": 0.5, "B": 0.2})  # N = 64, clean
    assert (g1.loc["A", "test_loss_ci_low"], g1.loc["A", "test_loss_ci_high"]) == pytest.approx(
        (0.3 - T_975_1 * 0.1, 0.3 + T_975_1 * 0.1))  # sd 0.1 sqrt(2) over 2 seeds
    assert g1.loc["A", "test_accuracy"] == pytest.approx(0.7) and (g1["n_train"] == 64).all()
    assert g1["d_mle"].to_dict() == pytest.approx({"A": 10.5, "B": 10.5, "C": 10.5})  # clean, N = 64, over seeds
    assert g1["rank_k_f"].to_dict() == {"A": 1.0, "C": 2.0, "B": 3.0}
    assert g1["rank_test_loss"].to_dict() == {"A": 2.0, "C": 3.0, "B": 1.0}
    # rho = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 (1 + 1 + 4) / 24 = -0.5; t = rho sqrt(1 / (1 - rho^2))
    # = -1/sqrt(3) on 1 dof, p = 2 (1/2 - atan(1/sqrt(3)) / pi) = 2/3.
    assert (g1["spearman_rho"] == -0.5).all() and g1["spearman_p"].iloc[0] == pytest.approx(2 / 3)
    assert (g1["n_tasks"] == 3).all() and (g1["note"] == "").all()
    g2 = table[table["group"] == "g2"]
    assert g2["spearman_rho"].isna().all() and g2["note"].str.contains("rho needs at least 3").all()
    assert g2.set_index("dataset")["rank_k_f"].to_dict() == {"D": 2.0, "E": 1.0}
    figure_task_ranking(table, tmp_path / "rank.png", tmp_path / "rank.pdf")
    assert (tmp_path / "rank.png").stat().st_size > 0


def test_task_ranking_ties_and_errors():
    table = pd.DataFrame({"group": "g", "dataset": ["a", "b", "c", "d"], "model": "m",
                          "k_f": [0.1, 0.1, 0.3, np.nan], "test_loss": [1.0, 2.0, 3.0, 4.0]})
    ranked = rank_tasks(table).set_index("dataset")
    assert ranked["rank_k_f"].iloc[:3].tolist() == [1.5, 1.5, 3.0] and math.isnan(ranked.loc["d", "rank_k_f"])
    assert ranked.loc["d", "rank_test_loss"] == 4.0
    assert (ranked["n_tasks"] == 3).all()  # d has no K_F: left out of rho
    assert ranked["spearman_rho"].iloc[0] == pytest.approx(stats.spearmanr([0.1, 0.1, 0.3], [1, 2, 3]).statistic)
    runs, sharpness, properties, groups = ranking_inputs()
    with pytest.raises(ValueError, match="task 'F' has no runs"):
        task_ranking_table(runs, sharpness, properties, {"g": ["A", "F"]})
    with pytest.raises(ValueError, match="task 'A' has no class pair with seeds"):
        task_ranking_table(runs, sharpness[sharpness["dataset"] != "A"], properties, groups)


# ------------------------------------------------------------------------- the workflow


def test_the_appendix_config_schedules_the_experiments(repo, tmp_path):
    from helpers import job_counts, snakemake

    appendix = yaml.safe_load((repo / "config" / "appendix.yaml").read_text())
    invariance = appendix["properties"]["invariance"]
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--configfile",
                                  str(repo / "config" / "appendix.yaml")).stdout)
    n = len(appendix["datasets"]) * len(invariance["resolutions"]) * len(invariance["channels"])
    assert counts["invariance_properties"] == n
    assert counts["invariance_study"] == counts["task_ranking"] == 1
    labelings = [name for name, entry in appendix["dataset_catalog"].items() if entry.get("labeling_of")]
    assert len(labelings) >= 3 and set(labelings) <= set(appendix["datasets"])
    # The default config asks for neither (a second dry-run would double this test's time).
    default = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    assert default["properties"]["invariance"]["resolutions"] == []
    assert not [name for name in default["datasets"] if default["dataset_catalog"][name].get("labeling_of")]


def test_a_resolution_above_image_size_stops_the_workflow(repo, tmp_path):
    from helpers import snakemake

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("image: {size: 16}\nproperties: {invariance: {resolutions: [8, 32]}}\n")
    result = snakemake(repo, tmp_path, "-n", "--configfile", str(overlay), check=False)
    assert result.returncode != 0
    assert ("properties.invariance.resolutions [8, 32] has [32] above the cached image.size = 16"
            in result.stdout + result.stderr)
