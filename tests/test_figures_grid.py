"""Figures 2-5 (the training grid), checked on fixtures whose plotted numbers are known by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from intrinsic.analysis import sharpness_correlations
from intrinsic.figures import figure_generalization, figure_repr_vs_data, figure_sharpness_robustness

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# dataset -> (domain, d_data, K_F)
DATASETS = {"photos": ("natural", 20.0, 0.2), "xray": ("medical", 8.0, 0.9), "synth_d4": ("synthetic", 4.0, 0.5)}
SIZES = (500, 1000, 2000)
LOSS_OFFSETS = (0.0, 0.1, 0.5)  # added to the loss of seeds 0, 1, 2
D_OFFSETS = (-1.0, 0.0, 1.0)  # added to d_mle of seeds 0, 1, 2
C = 1.0


def assert_written(png, pdf):
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2_000


def runs_table(models=("vgg13", "resnet18"), seeds=(0, 1, 2)):
    rows = []
    for model in models:
        for dataset, (domain, d, k_f) in DATASETS.items():
            for n_train in SIZES:
                for seed in seeds:
                    loss = math.exp(C - math.log(n_train) / d) + LOSS_OFFSETS[seed]
                    rows.append({
                        "dataset": dataset, "domain": domain, "model": model, "n_train": n_train,
                        "seed": seed, "fitted": not (model == "vgg13" and seed == 2), "epochs": 10,
                        "train_loss": 0.01, "train_accuracy": 1.0, "test_loss": loss,
                        "test_accuracy": 1.0 - loss / 10, "d_repr_twonn": d / 2 + seed,
                        "d_repr_mle": d / 2, "jacobian_norm": 1.0, "d_mle": d + D_OFFSETS[seed],
                        "d_twonn": d, "k_f": k_f, "d_true": 4.0 if domain == "synthetic" else np.nan,
                        "noise": 0.0,  # a future axis: ignored
                    })
    return pd.DataFrame(rows)


def test_generalization_means_and_intervals(tmp_path):
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    summary = figure_generalization(runs_table(), png, pdf)
    assert_written(png, pdf)
    assert len(summary) == 2 * 3 * 3
    assert set(summary["x"]) == {"d_mle"} and set(summary["y"]) == {"test_loss"}
    row = summary.set_index(["model", "dataset", "n_train"]).loc[("resnet18", "xray", 1000)]
    assert row["domain"] == "medical" and row["n_seeds"] == 3
    exact = math.exp(C - math.log(1000) / 8.0)
    assert row["y_mean"] == pytest.approx(exact + np.mean(LOSS_OFFSETS))
    low, high = stats.t.interval(0.95, 2, loc=exact + np.mean(LOSS_OFFSETS), scale=stats.sem(LOSS_OFFSETS))
    assert [row["y_ci_low"], row["y_ci_high"]] == pytest.approx([low, high])
    assert row["x_mean"] == pytest.approx(8.0)
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # s.d. of (-1, 0, 1) is 1
    assert [row["x_ci_low"], row["x_ci_high"]] == pytest.approx([8.0 - half, 8.0 + half])
    # vgg13's seed 2 did not fit its training set: counted, not dropped.
    assert summary.groupby("model")["n_unfitted"].sum().to_dict() == {"resnet18": 0, "vgg13": 9}


def test_generalization_accuracy_and_representation_axes(tmp_path):
    summary = figure_generalization(runs_table(), tmp_path / "a.png", tmp_path / "a.pdf",
                                    y="test_accuracy", log_y=False)
    row = summary.set_index(["model", "dataset", "n_train"]).loc[("vgg13", "photos", 2000)]
    exact = math.exp(C - math.log(2000) / 20.0)
    assert row["y_mean"] == pytest.approx(1.0 - (exact + np.mean(LOSS_OFFSETS)) / 10)
    # Figure 4: d_repr on x (d/2 + seed: mean d/2 + 1).
    summary = figure_generalization(runs_table(), tmp_path / "r.png", tmp_path / "r.pdf", x="d_repr_twonn")
    assert_written(tmp_path / "r.png", tmp_path / "r.pdf")
    assert summary.set_index(["model", "dataset", "n_train"]).loc[("vgg13", "synth_d4", 500), "x_mean"] == \
        pytest.approx(3.0)


def test_generalization_drops_nonfinite_and_averages_extra_axes(tmp_path):
    runs = runs_table(models=("resnet18",))
    runs.loc[(runs["dataset"] == "photos") & (runs["n_train"] == 500) & (runs["seed"] == 0), "d_mle"] = np.inf
    # A second value of the future "noise" axis: rows within a seed are averaged, n_seeds stays 3.
    noisy = runs.assign(noise=0.1, test_loss=runs["test_loss"] + 1.0)
    summary = figure_generalization(pd.concat([runs, noisy]), tmp_path / "f.png", tmp_path / "f.pdf")
    row = summary.set_index(["dataset", "n_train"]).loc[("photos", 500)]
    assert row["n_seeds"] == 2  # the seed with d_mle = inf is left out at both noise levels
    exact = math.exp(C - math.log(500) / 20.0)
    assert row["y_mean"] == pytest.approx(exact + np.mean(LOSS_OFFSETS[1:]) + 0.5)
    assert summary.set_index(["dataset", "n_train"]).loc[("xray", 500), "n_seeds"] == 3


def test_single_seed_one_model_one_domain(tmp_path):
    runs = runs_table(models=("resnet18",), seeds=(1,))
    runs = runs[runs["domain"] == "medical"]
    summary = figure_generalization(runs, tmp_path / "f.png", tmp_path / "f.pdf")
    assert_written(tmp_path / "f.png", tmp_path / "f.pdf")
    assert (summary["n_seeds"] == 1).all()
    assert (summary["y_ci_low"] == summary["y_mean"]).all() and (summary["y_ci_high"] == summary["y_mean"]).all()
    assert (summary["x_ci_low"] == summary["x_mean"]).all()
    summary, fraction = figure_repr_vs_data(runs, tmp_path / "r.png", tmp_path / "r.pdf")
    assert fraction == 1.0 and (summary["y_ci_high"] == summary["y_mean"]).all()


def repr_table():
    """8 (model, dataset, N) points, two seeds each; exactly 3 have mean d_repr <= mean d_data."""
    rows = []
    # (model, dataset, domain, N) -> (mean d_data, mean d_repr); one point sits on y = x
    points = {
        ("resnet18", "photos", "natural", 100): (10.0, 12.0),
        ("resnet18", "photos", "natural", 200): (10.0, 10.0),  # equal: counts as <=
        ("resnet18", "xray", "medical", 100): (6.0, 7.0),
        ("resnet18", "xray", "medical", 200): (6.0, 5.0),
        ("vgg13", "photos", "natural", 100): (10.0, 11.0),
        ("vgg13", "photos", "natural", 200): (10.0, 13.0),
        ("vgg13", "xray", "medical", 100): (6.0, 2.0),
        ("vgg13", "xray", "medical", 200): (6.0, 6.5),
    }
    for (model, dataset, domain, n_train), (d_data, d_repr) in points.items():
        for seed, sign in ((0, -1), (1, 1)):
            rows.append({"model": model, "dataset": dataset, "domain": domain, "n_train": n_train,
                         "seed": seed, "d_mle": d_data + 0.5 * sign, "d_repr_twonn": d_repr + 0.25 * sign,
                         "test_loss": 1.0, "k_f": np.inf if dataset == "xray" else 1.0})
    return pd.DataFrame(rows)


def test_repr_vs_data_fraction(tmp_path):
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    summary, fraction = figure_repr_vs_data(repr_table(), png, pdf)
    assert_written(png, pdf)
    assert len(summary) == 8 and fraction == 0.375
    assert int(summary["repr_le_data"].sum()) == 3
    row = summary.set_index(["model", "dataset", "n_train"]).loc[("vgg13", "xray", 100)]
    assert (row["x_mean"], row["y_mean"]) == pytest.approx((6.0, 2.0))
    half = stats.t.ppf(0.975, 1) * stats.sem([1.75, 2.25])
    assert [row["y_ci_low"], row["y_ci_high"]] == pytest.approx([2.0 - half, 2.0 + half])


# dataset -> (domain, K_F): five finite datasets and one with an infinite K_F (duplicate images)
SHARP = {"a": ("natural", 0.1), "b": ("natural", 0.3), "c": ("medical", 0.8), "d": ("medical", 1.5),
         "e": ("synthetic", 0.6), "dupes": ("medical", np.inf)}
ATTACK_SIZES = (100, 400)
EPS_255 = (1, 2, 4, 8)
RNG_NOISE = {(name, n): 0.3 * math.sin(3 * i + j + 1) for i, name in enumerate(SHARP)
             for j, n in enumerate(ATTACK_SIZES)}


def attacks_table(models=("vgg13", "resnet18"), seeds=(0, 1)):
    rows = []
    for model in models:
        for attack, slope in (("fgsm", 2.0), ("pgd", -1.0)):
            for e in EPS_255:
                for dataset, (domain, k_f) in SHARP.items():
                    for n_train in ATTACK_SIZES:
                        for seed in seeds:
                            shift = 0.05 * (2 * seed - 1) if len(seeds) > 1 else 0.0  # cancels in the mean
                            penalty = slope * k_f * e + RNG_NOISE[(dataset, n_train)] + shift
                            rows.append({
                                "dataset": dataset, "domain": domain, "model": model, "n_train": n_train,
                                "seed": seed, "attack": attack, "eps": e / 255, "eps_255": e,
                                "clean_loss": 0.5, "attacked_loss": 0.5 + penalty, "loss_penalty": penalty,
                                "clean_accuracy": 0.9, "attacked_accuracy": 0.5, "accuracy_penalty": 0.4,
                                "d_mle": 10.0, "d_twonn": 10.0, "k_f": k_f,
                            })
    return pd.DataFrame(rows)


def expected_r(slope, e):
    names = [n for n, (_, k) in SHARP.items() if np.isfinite(k)]
    k = np.array([SHARP[n][1] for n in names])
    rs = [np.corrcoef(k, slope * k * e + np.array([RNG_NOISE[(n, size)] for n in names]))[0, 1]
          for size in ATTACK_SIZES]
    return float(np.mean(rs))


def test_sharpness_r_is_table_1_r(tmp_path):
    attacks = attacks_table()
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    panels = figure_sharpness_robustness(attacks, png, pdf)
    assert_written(png, pdf)
    assert len(panels) == 2 * 4 and set(panels["attack"]) == {"fgsm"}
    n_inf = int((~np.isfinite(attacks.loc[attacks["attack"] == "fgsm", "k_f"])).sum())
    assert n_inf == 2 * 4 * 2 * 2 and (panels["n_dropped_nonfinite"] == n_inf).all()
    assert (panels["n_datasets"] == 5).all() and (panels["n_points"] == 5 * 2).all()
    table_1 = sharpness_correlations(attacks[np.isfinite(attacks["k_f"])]).set_index(["model", "attack", "eps"])
    for row in panels.itertuples():
        assert row.eps == pytest.approx(row.eps_255 / 255)
        assert row.r == pytest.approx(expected_r(2.0, row.eps_255), abs=1e-12)
        assert row.r == pytest.approx(table_1.loc[(row.model, "fgsm", row.eps), "r"], abs=1e-12)
    points = panels.attrs["points"]
    assert "dupes" not in set(points["dataset"])
    point = points.set_index(["model", "eps", "dataset", "n_train"]).loc[("resnet18", 4 / 255, "c", 400)]
    assert point["loss_penalty"] == pytest.approx(2.0 * 0.8 * 4 + RNG_NOISE[("c", 400)])
    assert point["loss_penalty_ci_high"] - point["loss_penalty"] == pytest.approx(
        stats.t.ppf(0.975, 1) * stats.sem([-0.05, 0.05]))

    pgd = figure_sharpness_robustness(attacks, tmp_path / "p.png", tmp_path / "p.pdf", attack="pgd")
    assert (pgd["attack"] == "pgd").all()
    for row in pgd.itertuples():
        assert row.r == pytest.approx(expected_r(-1.0, row.eps_255), abs=1e-12) and row.r < 0


def test_sharpness_single_seed_one_model(tmp_path):
    attacks = attacks_table(models=("resnet18",), seeds=(0,))
    attacks = attacks[attacks["eps_255"] == 2]
    panels = figure_sharpness_robustness(attacks, tmp_path / "f.png", tmp_path / "f.pdf")
    assert len(panels) == 1 and panels["r"].iloc[0] == pytest.approx(expected_r(2.0, 2), abs=1e-12)
    points = panels.attrs["points"]
    assert (points["loss_penalty_ci_low"] == points["loss_penalty"]).all()
    with pytest.raises(ValueError, match="no rows for attack 'cw'"):
        figure_sharpness_robustness(attacks, tmp_path / "g.png", tmp_path / "g.pdf", attack="cw")


def test_missing_columns_are_named(tmp_path):
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    with pytest.raises(ValueError, match="d_mle"):
        figure_generalization(runs_table().drop(columns="d_mle"), png, pdf)
    with pytest.raises(ValueError, match="test_accuracy"):
        figure_generalization(runs_table().drop(columns="test_accuracy"), png, pdf, y="test_accuracy")
    with pytest.raises(ValueError, match="d_repr_twonn"):
        figure_repr_vs_data(repr_table().drop(columns="d_repr_twonn"), png, pdf)
    with pytest.raises(ValueError, match="loss_penalty"):
        figure_sharpness_robustness(attacks_table().drop(columns="loss_penalty"), png, pdf)
    with pytest.raises(ValueError, match="k_f"):
        figure_sharpness_robustness(attacks_table().drop(columns="k_f"), png, pdf)
    assert not png.exists()
