"""Figures 2-5 (the training grid), checked on fixtures whose plotted numbers are known by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from intrinsic.analysis import sharpness_correlations
from intrinsic.figures import (
    DOMAIN_PALETTE, _palette, figure_generalization, figure_repr_vs_data, figure_sharpness_robustness,
    inverse_d_curve, inverse_d_guide,
)
from test_analysis import R_ABCD, sharpness_attacks

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
    """8 (model, dataset, N) points, two seeds each; by MLE exactly 3 have mean d_repr <= mean
    d_data, by TwoNN (d_twonn = MLE's d_data + 100) all 8."""
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
                         "seed": seed, "d_mle": d_data + 0.5 * sign, "d_repr_mle": d_repr + 0.25 * sign,
                         "d_twonn": d_data + 100.0, "d_repr_twonn": d_repr + 0.25 * sign,
                         "test_loss": 1.0, "k_f": np.inf if dataset == "xray" else 1.0})
    return pd.DataFrame(rows)


def test_repr_vs_data_fraction(tmp_path):
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    summary, fraction = figure_repr_vs_data(repr_table(), png, pdf)
    assert_written(png, pdf)
    assert len(summary) == 8 and fraction == 0.375
    assert set(summary["x"]) == {"d_mle"} and set(summary["y"]) == {"d_repr_mle"}  # one estimator
    assert int(summary["repr_le_data"].sum()) == 3
    row = summary.set_index(["model", "dataset", "n_train"]).loc[("vgg13", "xray", 100)]
    assert (row["x_mean"], row["y_mean"]) == pytest.approx((6.0, 2.0))
    half = stats.t.ppf(0.975, 1) * stats.sem([1.75, 2.25])
    assert [row["y_ci_low"], row["y_ci_high"]] == pytest.approx([2.0 - half, 2.0 + half])
    twonn, fraction = figure_repr_vs_data(repr_table(), tmp_path / "t.png", tmp_path / "t.pdf", estimator="twonn")
    assert set(twonn["x"]) == {"d_twonn"} and set(twonn["y"]) == {"d_repr_twonn"} and fraction == 1.0
    assert twonn.set_index(["model", "dataset", "n_train"]).loc[("vgg13", "xray", 100), "x_mean"] == 106.0
    with pytest.raises(ValueError, match="estimator must be one of"):
        figure_repr_vs_data(repr_table(), png, pdf, estimator="pca")


def test_guide_is_log_y_linear_in_inverse_d():
    d = np.array([2.0, 4.0, 8.0, 16.0])
    assert inverse_d_guide(d, np.exp(0.5 + 3.0 / d)) == pytest.approx((0.5, 3.0), abs=1e-12)
    assert inverse_d_guide(d, 0.9 - 2.0 / d, log_y=False) == pytest.approx((0.9, -2.0), abs=1e-12)
    assert inverse_d_curve(d, 0.5, 3.0) == pytest.approx(np.exp(0.5 + 3.0 / d))
    assert inverse_d_curve(d, 0.9, -2.0, log_y=False) == pytest.approx(0.9 - 2.0 / d)
    with pytest.raises(ValueError, match="distinct d"):
        inverse_d_guide([4.0, 4.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        inverse_d_guide([0.0, 4.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        inverse_d_guide([2.0, 4.0], [-1.0, 2.0])


def test_generalization_guides_recover_the_law_per_domain(tmp_path):
    # Per domain, the means over seeds lie exactly on log L = c0 + c1 / d and accuracy = a0 + a1 / d.
    law = {"natural": (0.5, 3.0, 0.95, -1.2), "medical": (-1.0, 8.0, 0.9, -2.4)}
    rows = []
    for domain, (c0, c1, a0, a1) in law.items():
        for i, d in enumerate((4.0, 8.0, 16.0)):
            for seed, shift in ((0, -0.01), (1, 0.01)):  # cancels in the mean over seeds
                rows.append({"model": "resnet18", "dataset": f"{domain}{i}", "domain": domain, "n_train": 100,
                             "seed": seed, "d_mle": d, "test_loss": math.exp(c0 + c1 / d) + shift,
                             "test_accuracy": a0 + a1 / d + shift})
    runs = pd.DataFrame(rows)
    loss = figure_generalization(runs, tmp_path / "l.png", tmp_path / "l.pdf").attrs["guides"].set_index("domain")
    accuracy = figure_generalization(runs, tmp_path / "a.png", tmp_path / "a.pdf", y="test_accuracy",
                                     log_y=False).attrs["guides"].set_index("domain")
    for domain, (c0, c1, a0, a1) in law.items():
        assert (loss.loc[domain, "c0"], loss.loc[domain, "c1"]) == pytest.approx((c0, c1), abs=1e-9)
        assert (accuracy.loc[domain, "c0"], accuracy.loc[domain, "c1"]) == pytest.approx((a0, a1), abs=1e-9)
        assert loss.loc[domain, "n_points"] == 3


T_975_1 = 12.706204736174698  # Student t quantile, 0.975, 1 dof: the interval over two N


def test_fig3_points_are_dataset_means_with_a_ci_over_n(tmp_path):
    attacks = sharpness_attacks(datasets=("A", "B", "C", "D"))
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    panels = figure_sharpness_robustness(attacks, png, pdf)
    assert_written(png, pdf)
    assert list(panels["model"]) == ["resnet18", "vgg13"] and (panels["eps_255"] == 2).all()
    assert panels.attrs["eps_note"] == "" and (panels["n_dropped_nonfinite"] == 2 * 2).all()
    resnet = panels.set_index("model").loc["resnet18"]
    assert resnet["r"] == pytest.approx(R_ABCD, abs=1e-12) and resnet["n_datasets"] == 4
    table_1 = sharpness_correlations(attacks, ["model", "attack", "eps_255"]).set_index(["model", "eps_255"])
    assert resnet["r"] == table_1.loc[("resnet18", 2), "r"]  # the title's r is Table 1's
    points = panels.attrs["points"].set_index(["model", "dataset"])
    assert set(points.loc["resnet18"].index) == {"A", "B", "C", "D"}
    # A: per-N means 0.5 and 1.5 -> 1 +- t * 0.5; D: 4 and 8 -> 6 +- t * 2 (not the row mean 16/3).
    for dataset, mean, half in (("A", 1.0, 0.5), ("D", 6.0, 2.0)):
        row = points.loc[("resnet18", dataset)]
        assert row["loss_penalty"] == pytest.approx(mean)
        assert (row["loss_penalty_ci_low"], row["loss_penalty_ci_high"]) == pytest.approx(
            (mean - T_975_1 * half, mean + T_975_1 * half))
        assert row["k_f_255_ci_low"] == row["k_f_255"] == row["k_f_255_ci_high"]


def test_fig3_budget_fallback_all_budgets_and_accuracy(tmp_path):
    attacks = sharpness_attacks(eps_255=(1, 8))
    panels = figure_sharpness_robustness(attacks, tmp_path / "f.png", tmp_path / "f.pdf", eps_255=2)
    assert (panels["eps_255"] == 1).all()  # 2/255 was not run: the smallest budget, said so
    assert "2/255 is not among" in panels.attrs["eps_note"] and "1/255" in panels.attrs["eps_note"]
    every = figure_sharpness_robustness(attacks, tmp_path / "a.png", tmp_path / "a.pdf", eps_255=None)
    assert_written(tmp_path / "a.png", tmp_path / "a.pdf")
    assert sorted(zip(every["model"], every["eps_255"])) == [
        ("resnet18", 1), ("resnet18", 8), ("vgg13", 1), ("vgg13", 8)]
    assert every.attrs["eps_note"] == ""
    accuracy = figure_sharpness_robustness(attacks[attacks["dataset"].isin(list("ABCD"))], tmp_path / "c.png",
                                           tmp_path / "c.pdf", eps_255=8, y="accuracy_penalty")
    assert accuracy.set_index("model").loc["resnet18", "r"] == pytest.approx(-R_ABCD, abs=1e-12)
    # three free-text domains (dermatology is no known one) each get a colour
    assert set(figure_sharpness_robustness(attacks, tmp_path / "d.png", tmp_path / "d.pdf", eps_255=8)
               .attrs["points"]["domain"]) == {"natural", "medical", "dermatology"}
    with pytest.raises(ValueError, match="no rows for attack 'pgd'"):
        figure_sharpness_robustness(attacks, tmp_path / "g.png", tmp_path / "g.pdf", attack="pgd")


def test_free_text_domains_get_distinct_colours():
    domains = ["natural", "medical", "synthetic", "dermatology", "cardiology"] + [f"domain{i}" for i in range(20)]
    palette = _palette(domains)
    assert palette["natural"] == DOMAIN_PALETTE["natural"] and palette["medical"] == DOMAIN_PALETTE["medical"]
    assert len(set(palette.values())) == len(domains) and all(palette.values())


def test_missing_columns_are_named(tmp_path):
    png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
    with pytest.raises(ValueError, match="d_mle"):
        figure_generalization(runs_table().drop(columns="d_mle"), png, pdf)
    with pytest.raises(ValueError, match="test_accuracy"):
        figure_generalization(runs_table().drop(columns="test_accuracy"), png, pdf, y="test_accuracy")
    with pytest.raises(ValueError, match="d_repr_mle"):
        figure_repr_vs_data(repr_table().drop(columns="d_repr_mle"), png, pdf)
    with pytest.raises(ValueError, match="d_twonn"):
        figure_repr_vs_data(repr_table().drop(columns="d_twonn"), png, pdf, estimator="twonn")
    with pytest.raises(ValueError, match="loss_penalty"):
        figure_sharpness_robustness(sharpness_attacks().drop(columns="loss_penalty"), png, pdf)
    with pytest.raises(ValueError, match="k_f_255"):
        figure_sharpness_robustness(sharpness_attacks().drop(columns="k_f_255"), png, pdf)
    with pytest.raises(ValueError, match="eps_255"):
        figure_sharpness_robustness(sharpness_attacks().assign(eps_255="two"), png, pdf)
    with pytest.raises(ValueError, match="loss_penalty"):
        figure_sharpness_robustness(sharpness_attacks().assign(loss_penalty="high"), png, pdf)
    assert not png.exists()


def test_generalization_facets_on_any_axis(tmp_path):
    """analysis.facet: one panel per model and axis value; each value's points are its own runs."""
    clean = runs_table(models=("resnet18",))
    noisy = clean.assign(noise=0.3, test_loss=clean["test_loss"] + 1.0)
    summary = figure_generalization(pd.concat([clean, noisy]), tmp_path / "f.png", tmp_path / "f.pdf", facet="noise")
    assert_written(tmp_path / "f.png", tmp_path / "f.pdf")
    assert len(summary) == 2 * 3 * 3 and set(summary["noise"]) == {0.0, 0.3}
    means = summary.set_index(["noise", "dataset", "n_train"])["y_mean"]
    assert means[(0.3, "xray", 1000)] == pytest.approx(means[(0.0, "xray", 1000)] + 1.0)
    assert "noise" in summary.attrs["guides"].columns
    # without a facet the two levels would be averaged into one point: the facet keeps them apart
    pooled = figure_generalization(pd.concat([clean, noisy]), tmp_path / "p.png", tmp_path / "p.pdf")
    assert len(pooled) == 3 * 3
    with pytest.raises(ValueError, match="facet 'model' is drawn already"):
        figure_generalization(clean, tmp_path / "m.png", tmp_path / "m.pdf", facet="model")
