"""The follow-up studies (noise vs rank, Fan & Yezzi variants, Jacobian vs generalization) on
hand-made tables with known answers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from intrinsic.studies import (figure_jacobian_generalization, figure_noise_rank, figure_overfitting,
                               figure_variants, jacobian_generalization_markdown,
                               jacobian_generalization_table, noise_rank_claim, noise_rank_markdown,
                               noise_rank_table, spearman_with_ci, variant_markdown, variant_table)

T2 = stats.t.ppf(0.975, 2)  # t quantile for 3 values
Z = stats.norm.ppf(0.975)
NOISES = (0.0, 0.1, 0.2)
SIZES = (100, 200)
SEEDS = (0, 1, 2)


def base_row(**fields):
    row = {"fitted": True, "train_loss": 0.1, "train_accuracy": 1.0, "test_loss": 0.5, "test_accuracy": 0.8,
           "d_mle": 8.0, "d_twonn": 7.0, "data_energy_rank": 10.0, "data_effective_rank": 9.0, "rank_energy": 0.99,
           "filter_energy_rank": 6.0, "filter_effective_rank": 5.0, "filter_update_energy_rank": 3.0,
           "repr_energy_rank": 5.0, "repr_effective_rank": 4.0, "d_repr_mle": 3.0, "d_repr_twonn": 3.0,
           "jacobian_norm": 1.0, "jacobian_norm_train": 0.5, "noise_predicted_fraction": np.nan,
           "test_accuracy_real_classes": 0.8,
           "n_excluded": 0, "n_noise_images": 0}
    row.update(fields)
    return row


def noise_runs():
    """Standard runs over three noise levels, plus variant runs at noise 0 that must be ignored.

    data_energy_rank = 10 (1 + 10 sigma): 10, 20, 30 (relative change 2). d_mle = 8 + seed +
    (N - 150)/100 + 10 sigma, so each seed's mean over N is 8 + seed + 10 sigma. repr_energy_rank:
    cnn_a 5 + seed (flat in sigma); cnn_b 5 (1 + 20 sigma): 5, 15, 25 (relative change 4, more than
    the data's)."""
    rows = []
    for dataset, domain in (("photos", "natural"), ("scans", "medical")):
        for model in ("cnn_a", "cnn_b"):
            for noise in NOISES:
                for n_train in SIZES:
                    for seed in SEEDS:
                        repr_rank = 5.0 + seed if model == "cnn_a" else 5.0 * (1 + 20 * noise)
                        rows.append(base_row(
                            dataset=dataset, domain=domain, model=model, n_train=n_train, seed=seed, noise=noise,
                            variant="standard", data_energy_rank=10 * (1 + 10 * noise),
                            d_mle=8 + seed + (n_train - 150) / 100 + 10 * noise, repr_energy_rank=repr_rank,
                            test_accuracy=0.9 - noise))
                for n_train in SIZES:
                    for seed in SEEDS:
                        rows.append(base_row(dataset=dataset, domain=domain, model=model, n_train=n_train, seed=seed,
                                             noise=0.0, variant="noise_class", data_energy_rank=1000.0,
                                             repr_energy_rank=1000.0))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- noise vs rank

def test_noise_rank_table_means_intervals_and_ratios():
    table = noise_rank_table(noise_runs())
    assert len(table) == 2 * 2 * 3  # standard runs only: the noise_class rows (rank 1000) are ignored
    row = table.set_index(["dataset", "model", "noise"]).loc[("photos", "cnn_a", 0.1)]
    assert row["n_seeds"] == 3 and row["n_sizes"] == 2 and row["n_runs"] == 6
    assert row["data_energy_rank"] == pytest.approx(20.0)
    assert row["d_mle"] == pytest.approx(10.0)  # seeds 9, 10, 11 (each averaged over N)
    half = T2 * 1.0 / math.sqrt(3)
    assert [row["d_mle_ci_low"], row["d_mle_ci_high"]] == pytest.approx([10 - half, 10 + half])
    assert row["repr_energy_rank"] == pytest.approx(6.0)
    assert row["data_energy_rank_ratio_to_clean"] == pytest.approx(2.0)
    assert row["d_mle_ratio_to_clean"] == pytest.approx(10 / 9)
    assert row["repr_energy_rank_ratio_to_clean"] == pytest.approx(1.0)
    assert row["test_accuracy_ratio_to_clean"] == pytest.approx(0.8 / 0.9)
    clean = table[table["noise"] == 0.0]
    assert (clean["data_energy_rank_ratio_to_clean"] == 1.0).all()
    assert list(table["noise"][:3]) == [0.0, 0.1, 0.2]
    assert list(table["dataset"].unique()) == ["photos", "scans"]  # natural before medical


def test_ratio_to_clean_is_nan_without_noise_zero():
    runs = noise_runs()
    table = noise_rank_table(runs[runs["noise"] > 0])
    assert table["data_energy_rank_ratio_to_clean"].isna().all()
    assert table["data_energy_rank"].notna().all()


def test_noise_rank_claim_changes_less_and_more():
    claim = noise_rank_claim(noise_rank_table(noise_runs())).set_index(["dataset", "model"])
    a, b = claim.loc[("photos", "cnn_a")], claim.loc[("scans", "cnn_b")]
    assert (a["noise_low"], a["noise_high"], a["n_noise_levels"]) == (0.0, 0.2, 3)
    assert a["data_rank_rel_change"] == pytest.approx(2.0)
    assert a["model_rank_rel_change"] == pytest.approx(0.0)
    assert a["model_rank_changes_less"] is True or a["model_rank_changes_less"] == True  # noqa: E712
    assert b["model_rank_rel_change"] == pytest.approx(4.0)
    assert not b["model_rank_changes_less"]
    assert b["d_data_rel_change"] == pytest.approx((11 - 9) / 9)
    assert str(claim["model_rank_changes_less"].dtype) == "boolean"
    markdown = noise_rank_markdown(noise_rank_table(noise_runs()))
    assert "model_rank_changes_less" in markdown and "| photos" in markdown


def test_single_noise_level_does_not_crash(tmp_path):
    runs = noise_runs()
    single = runs[runs["noise"] == 0.0]
    claim = noise_rank_claim(noise_rank_table(single))
    assert claim["model_rank_changes_less"].isna().all()
    assert claim["note"].str.contains("single noise level").all()
    points = figure_noise_rank(single, tmp_path / "n.png", tmp_path / "n.pdf")
    assert set(points["noise"]) == {0.0}
    assert (tmp_path / "n.png").stat().st_size > 0 and (tmp_path / "n.pdf").stat().st_size > 0


def test_figure_noise_rank_writes_files_and_returns_numbers(tmp_path):
    points = figure_noise_rank(noise_runs(), tmp_path / "n.png", tmp_path / "n.pdf")
    assert (tmp_path / "n.png").stat().st_size > 10_000 and (tmp_path / "n.pdf").stat().st_size > 5_000
    assert set(points["measure"]) == {"data_energy_rank", "d_mle", "repr_energy_rank", "filter_update_energy_rank",
                                      "d_repr_mle"}
    assert set(points.loc[points["panel"] == "data", "measure"]) == {"data_energy_rank", "d_mle"}
    row = points.set_index(["dataset", "model", "noise", "measure"]).loc[("scans", "cnn_b", 0.2, "repr_energy_rank")]
    assert row["mean"] == pytest.approx(25.0) and row["n_seeds"] == 3
    assert len(points) == 2 * 2 * 3 * 5


def test_noise_rank_requires_the_columns():
    with pytest.raises(ValueError, match="repr_energy_rank"):
        noise_rank_table(noise_runs().drop(columns="repr_energy_rank"))


# ------------------------------------------------------------------------------------ variants

def variant_runs(variants=("standard", "noise_class", "exclude_illusive")):
    """Noise 0 runs: standard test_accuracy 0.8 + 0.01 seed; noise_class + 0.05 in every run;
    exclude_illusive - 0.02 at N = 100 and - 0.01 at N = 200. A noisy standard run set (noise 0.1,
    test accuracy 0) must be left out."""
    rows = []
    for model in ("cnn_a",):
        for n_train in SIZES:
            for seed in SEEDS:
                base = 0.8 + 0.01 * seed
                for variant in variants:
                    shift = {"standard": 0.0, "noise_class": 0.05,
                             "exclude_illusive": -0.02 if n_train == 100 else -0.01}[variant]
                    rows.append(base_row(
                        dataset="photos", domain="natural", model=model, n_train=n_train, seed=seed, noise=0.0,
                        variant=variant, test_accuracy=base + shift, test_accuracy_real_classes=base + shift + 0.01,
                        test_loss=0.5 + shift, train_loss=0.1,
                        noise_predicted_fraction=0.1 * seed if variant == "noise_class" else np.nan,
                        n_excluded=7 if variant == "exclude_illusive" else 0,
                        n_noise_images=50 if variant == "noise_class" else 0))
                rows.append(base_row(dataset="photos", domain="natural", model=model, n_train=n_train, seed=seed,
                                     noise=0.1, variant="standard", test_accuracy=0.0))
    return pd.DataFrame(rows)


def variant_attacks(runs):
    """FGSM at 2/255 and 8/255 and PGD at 2/255: attacked accuracy = test accuracy - eps_255/40,
    plus 0.1 for noise_class (so its paired difference is 0.05 + 0.1)."""
    rows = []
    for run in runs.to_dict("records"):
        for attack, eps_255 in (("fgsm", 2.0), ("fgsm", 8.0), ("pgd", 2.0)):
            bonus = 0.1 if run["variant"] == "noise_class" else 0.0
            rows.append({k: run[k] for k in ("dataset", "domain", "model", "n_train", "seed", "noise", "variant")}
                        | {"attack": attack, "eps": eps_255 / 255, "eps_255": eps_255,
                           "clean_accuracy": run["test_accuracy"],
                           "attacked_accuracy": run["test_accuracy"] - eps_255 / 40 + bonus})
    return pd.DataFrame(rows)


def test_variant_table_means_and_paired_differences():
    runs = variant_runs()
    table = variant_table(runs, variant_attacks(runs))
    assert list(table["variant"]) == ["standard", "noise_class", "exclude_illusive"]
    row = table.set_index("variant")
    standard, noise_class, excluded = row.loc["standard"], row.loc["noise_class"], row.loc["exclude_illusive"]
    assert standard["n_runs"] == 6  # noise 0.1 runs left out
    assert standard["test_accuracy"] == pytest.approx(0.81)
    values = [0.8, 0.81, 0.82] * 2
    low, high = stats.t.interval(0.95, 5, loc=np.mean(values), scale=stats.sem(values))
    assert [standard["test_accuracy_ci_low"], standard["test_accuracy_ci_high"]] == pytest.approx([low, high])
    assert standard["generalization_gap"] == pytest.approx(0.4)
    assert math.isnan(standard["noise_predicted_fraction"]) and standard["n_pairs"] == 0
    assert math.isnan(standard["diff_test_accuracy"])
    assert noise_class["noise_predicted_fraction"] == pytest.approx(0.1)
    assert noise_class["n_noise_images"] == 50 and excluded["n_excluded"] == 7
    assert noise_class["test_accuracy_real_classes"] == pytest.approx(0.87)
    # noise_class: +0.05 in every pair, so the interval is a point
    assert noise_class["n_pairs"] == 6
    assert noise_class["diff_test_accuracy"] == pytest.approx(0.05)
    assert noise_class["diff_test_accuracy_ci_low"] == pytest.approx(0.05)
    assert noise_class["diff_fgsm_acc_eps2"] == pytest.approx(0.15)
    assert noise_class["diff_pgd_acc_eps2"] == pytest.approx(0.15)
    assert noise_class["diff_test_loss"] == pytest.approx(0.05)
    assert noise_class["diff_generalization_gap"] == pytest.approx(0.05)
    # exclude_illusive: differences -0.02 (x3) and -0.01 (x3)
    diffs = [-0.02] * 3 + [-0.01] * 3
    low, high = stats.t.interval(0.95, 5, loc=np.mean(diffs), scale=stats.sem(diffs))
    assert excluded["diff_test_accuracy"] == pytest.approx(-0.015)
    assert [excluded["diff_test_accuracy_ci_low"], excluded["diff_test_accuracy_ci_high"]] == pytest.approx([low, high])
    assert standard["fgsm_acc_eps8"] == pytest.approx(0.81 - 0.2)
    assert [c for c in table.columns if c.endswith(("_acc_eps2", "_acc_eps8")) and not c.startswith("diff_")] == [
        "fgsm_acc_eps2", "fgsm_acc_eps8", "pgd_acc_eps2"]
    markdown = variant_markdown(table)
    assert "Paired differences" in markdown and "exclude_illusive" in markdown


def test_variant_table_eps_choice_missing_variants_and_no_attacks(tmp_path):
    runs = variant_runs()
    table = variant_table(runs, variant_attacks(runs), eps_255_for_table=8)
    assert "fgsm_acc_eps8" in table and "fgsm_acc_eps2" not in table and "pgd_acc_eps2" not in table
    only_standard = variant_runs(("standard",))
    table = variant_table(only_standard, None)
    assert list(table["variant"]) == ["standard"] and "diff_test_accuracy" in table
    no_standard = variant_runs(("noise_class",))
    table = variant_table(no_standard, variant_attacks(no_standard))
    assert table.loc[0, "n_pairs"] == 0 and math.isnan(table.loc[0, "diff_test_accuracy"])
    points = figure_variants(only_standard, None, tmp_path / "v.png", tmp_path / "v.pdf")
    assert set(points["attack"]) == {"clean"}
    assert (tmp_path / "v.png").stat().st_size > 0 and (tmp_path / "v.pdf").stat().st_size > 0


def test_figure_variants_writes_files_and_returns_numbers(tmp_path):
    runs = variant_runs()
    points = figure_variants(runs, variant_attacks(runs), tmp_path / "v.png", tmp_path / "v.pdf")
    assert (tmp_path / "v.png").stat().st_size > 10_000 and (tmp_path / "v.pdf").stat().st_size > 5_000
    row = points.set_index(["variant", "attack", "eps_255"])
    assert row.loc[("standard", "clean", 0.0), "accuracy"] == pytest.approx(0.81)
    assert row.loc[("noise_class", "fgsm", 8.0), "accuracy"] == pytest.approx(0.86 - 0.2 + 0.1)
    assert row.loc[("exclude_illusive", "pgd", 2.0), "n_runs"] == 6
    assert len(points) == 3 * 4


# --------------------------------------------------------------------------------- overfitting

def overfitting_epochs():
    """standard: seed 0 trains 5 epochs, seed 1 only 3 (test loss 1 + epoch + seed); exclude_illusive:
    final pass 4 epochs, first pass 6 epochs; a noise_class curve and a noisy run are left out."""
    rows = []

    def add(variant, seed, n_epochs, pass_, noise=0.0, offset=0.0):
        for epoch in range(1, n_epochs + 1):
            rows.append({"dataset": "photos", "domain": "natural", "model": "cnn_a", "n_train": 100, "seed": seed,
                         "noise": noise, "variant": variant, "epoch": epoch, "pass": pass_,
                         "train_loss": 1.0 / epoch + offset, "train_accuracy": 0.9, "test_loss": 1.0 + epoch + seed
                         + offset, "test_accuracy": 0.8})

    add("standard", 0, 5, "final")
    add("standard", 1, 3, "final")
    add("exclude_illusive", 0, 4, "final", offset=0.5)
    add("exclude_illusive", 0, 6, "first", offset=2.0)
    add("noise_class", 0, 5, "final", offset=9.0)
    add("standard", 2, 5, "final", noise=0.1, offset=9.0)
    return pd.DataFrame(rows)


def test_overfitting_averages_runs_that_reached_the_epoch(tmp_path):
    points = figure_overfitting(overfitting_epochs(), tmp_path / "o.png", tmp_path / "o.pdf")
    assert (tmp_path / "o.png").stat().st_size > 10_000 and (tmp_path / "o.pdf").stat().st_size > 5_000
    assert set(points["variant"]) == {"standard", "exclude_illusive"}
    row = points.set_index(["variant", "pass", "epoch"])
    assert row.loc[("standard", "final", 2), "test_loss"] == pytest.approx(3.5)  # (3 + 4) / 2
    assert row.loc[("standard", "final", 2), "n_runs"] == 2
    assert row.loc[("standard", "final", 5), "test_loss"] == pytest.approx(6.0)  # seed 0 only
    assert row.loc[("standard", "final", 5), "n_runs"] == 1
    assert row.loc[("standard", "final", 5), "n_runs_total"] == 2
    assert row.loc[("exclude_illusive", "first", 6), "train_loss"] == pytest.approx(1 / 6 + 2)
    assert row.loc[("exclude_illusive", "final", 4), "test_loss"] == pytest.approx(5.5)
    assert len(points) == 5 + 4 + 6
    without = figure_overfitting(overfitting_epochs(), tmp_path / "p.png", tmp_path / "p.pdf", show_first_pass=False)
    assert set(without["pass"]) == {"final"}


def test_overfitting_with_only_standard_does_not_crash(tmp_path):
    epochs = overfitting_epochs()
    points = figure_overfitting(epochs[epochs["variant"] == "standard"], tmp_path / "o.png", tmp_path / "o.pdf")
    assert set(points["variant"]) == {"standard"}


# ----------------------------------------------------------------------------------- Jacobian

def jacobian_runs():
    """Two domains x two models, 4 runs each: x = jacobian_norm 1..16 (by run) and the loss gap =
    exp(x / 4) (monotone, not linear: rho = 1, r < 1); the accuracy gap decreases in x with a
    wobble. A noisy run set and a noise_class set (gap 100) must be left out."""
    rows, x = [], 0
    for domain, dataset in (("natural", "photos"), ("medical", "scans")):
        for model in ("cnn_a", "cnn_b"):
            for seed in range(4):
                x += 1
                rows.append(base_row(dataset=dataset, domain=domain, model=model, n_train=100, seed=seed, noise=0.0,
                                     variant="standard", jacobian_norm=float(x), jacobian_norm_train=float(x) / 2,
                                     train_loss=0.1, test_loss=0.1 + math.exp(x / 4), train_accuracy=1.0,
                                     test_accuracy=0.5 + 0.02 * x + (0.03 if x % 3 == 0 else 0.0)))
                for noise, variant in ((0.1, "standard"), (0.0, "noise_class")):
                    rows.append(base_row(dataset=dataset, domain=domain, model=model, n_train=100, seed=seed,
                                         noise=noise, variant=variant, jacobian_norm=float(x), test_loss=100.0 - x))
    return pd.DataFrame(rows)


def test_spearman_with_ci_matches_scipy_and_hand_computation():
    x = np.arange(1.0, 11.0)
    y = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 8.0, 6.0, 7.0, 10.0, 9.0])
    result = spearman_with_ci(x, y)
    expected = stats.spearmanr(x, y)
    assert result["rho"] == pytest.approx(expected.statistic) and result["p_value"] == pytest.approx(expected.pvalue)
    half = Z * math.sqrt(1.06 / (10 - 3))
    z = math.atanh(expected.statistic)
    assert [result["ci_low"], result["ci_high"]] == pytest.approx([math.tanh(z - half), math.tanh(z + half)])
    assert math.isnan(spearman_with_ci(x[:3], y[:3])["rho"])
    assert "constant" in spearman_with_ci(x, np.ones(10))["note"]


def test_spearman_p_value_is_exact_for_a_handful_of_runs():
    """n = 4, perfectly monotone: 2 of the 4! = 24 orderings have |rho| = 1, so p = 1/12 exactly
    (scipy's t approximation says 0)."""
    result = spearman_with_ci([1.0, 2.0, 3.0, 4.0], [1.0, 5.0, 7.0, 20.0])
    assert result["rho"] == 1.0 and result["p_value"] == pytest.approx(2 / 24)
    assert stats.spearmanr([1.0, 2.0, 3.0, 4.0], [1.0, 5.0, 7.0, 20.0]).pvalue < 1e-6
    assert "exact" in result["note"]
    # n = 5, rho = 0.9: the orderings with |rho| >= 0.9 are 10 of 120 (sum of squared rank
    # differences <= 2: the identity, 4 adjacent swaps, and their reversals)
    assert spearman_with_ci([1, 2, 3, 4, 5], [2, 1, 3, 4, 5])["p_value"] == pytest.approx(10 / 120)


def test_jacobian_table_monotone_nonlinear_and_slice():
    runs = jacobian_runs()
    table = jacobian_generalization_table(runs)
    assert set(table["x_column"]) == {"jacobian_norm", "jacobian_norm_train"}
    pooled = table[(table["domain"] == "all") & (table["model"] == "all") & (table["x_column"] == "jacobian_norm")]
    loss = pooled.set_index("gap").loc["loss_gap"]
    assert loss["n"] == 16  # the noisy and noise_class runs are not in the slice
    x = np.arange(1.0, 17.0)
    gap = np.exp(x / 4)
    assert loss["rho"] == pytest.approx(1.0) and loss["rho_ci_low"] == pytest.approx(1.0)
    r, p = stats.pearsonr(x, gap)
    assert loss["r"] == pytest.approx(r) and loss["r"] < 0.99 and loss["r_p_value"] == pytest.approx(p)
    half = Z / math.sqrt(16 - 3)
    assert [loss["r_ci_low"], loss["r_ci_high"]] == pytest.approx([math.tanh(math.atanh(r) - half),
                                                                    math.tanh(math.atanh(r) + half)])
    accuracy = pooled.set_index("gap").loc["accuracy_gap"]
    acc_gap = 1.0 - (0.5 + 0.02 * x + np.where(x % 3 == 0, 0.03, 0.0))
    rho = stats.spearmanr(x, acc_gap)
    assert accuracy["rho"] == pytest.approx(rho.statistic) and accuracy["rho_p_value"] == pytest.approx(rho.pvalue)
    half = Z * math.sqrt(1.06 / 13)
    assert accuracy["rho_ci_low"] == pytest.approx(math.tanh(math.atanh(rho.statistic) - half))
    # each (domain, model) group has 4 runs: defined, rank-perfect
    group = table[(table["domain"] == "medical") & (table["model"] == "cnn_b") & (table["gap"] == "loss_gap")
                  & (table["x_column"] == "jacobian_norm_train")].iloc[0]
    assert group["n"] == 4 and group["rho"] == pytest.approx(1.0)
    assert list(table["domain"].unique()) == ["natural", "medical", "all"]
    # another slice: the noise_class runs (test loss 100 - x: rho = -1)
    other = jacobian_generalization_table(runs, groups=("domain",), variant="noise_class")
    row = other[(other["domain"] == "all") & (other["gap"] == "loss_gap") & (other["x_column"] == "jacobian_norm")]
    assert row["rho"].iloc[0] == pytest.approx(-1.0) and row["n"].iloc[0] == 16
    assert "jacobian" in jacobian_generalization_markdown(table).lower()


def test_jacobian_table_small_and_constant_groups_are_nan_with_reason():
    runs = jacobian_runs()
    small = runs[(runs["seed"] < 3)]
    table = jacobian_generalization_table(small)
    group = table[(table["domain"] == "natural") & (table["model"] == "cnn_a")].iloc[0]
    assert group["n"] == 3 and math.isnan(group["r"]) and math.isnan(group["rho"])
    assert "at least 4" in group["note"]
    constant = runs.assign(jacobian_norm=2.0)
    table = jacobian_generalization_table(constant, groups=())
    row = table[table["x_column"] == "jacobian_norm"].iloc[0]
    assert math.isnan(row["r"]) and "constant" in row["note"]
    assert len(table) == 4  # only the pooled rows


def test_figure_jacobian_generalization(tmp_path):
    runs = jacobian_runs()
    points = figure_jacobian_generalization(runs, tmp_path / "j.png", tmp_path / "j.pdf")
    assert (tmp_path / "j.png").stat().st_size > 10_000 and (tmp_path / "j.pdf").stat().st_size > 5_000
    assert len(points) == 16 and set(points.columns) >= {"jacobian_norm", "loss_gap", "accuracy_gap", "model"}
    correlations = points.attrs["correlations"]
    natural = correlations[(correlations["domain"] == "natural") & (correlations["gap"] == "loss_gap")].iloc[0]
    assert natural["n"] == 8 and natural["rho"] == pytest.approx(1.0)
    expected = jacobian_generalization_table(runs, groups=("domain",), x_columns=["jacobian_norm"])
    pd.testing.assert_series_equal(correlations["r"], expected["r"])


def test_round_trip_through_csv(tmp_path):
    """Tables read back from CSV (all-NaN columns, text variants) give the same answers."""
    def again(table):
        table.to_csv(tmp_path / "t.csv", index=False)
        return pd.read_csv(tmp_path / "t.csv")

    runs = noise_runs()
    pd.testing.assert_frame_equal(noise_rank_table(again(runs)), noise_rank_table(runs), check_dtype=False)
    runs, attacks = variant_runs(), variant_attacks(variant_runs())
    pd.testing.assert_frame_equal(variant_table(again(runs), again(attacks)), variant_table(runs, attacks),
                                  check_dtype=False)
    runs = jacobian_runs()
    pd.testing.assert_frame_equal(jacobian_generalization_table(again(runs)), jacobian_generalization_table(runs),
                                  check_dtype=False)
