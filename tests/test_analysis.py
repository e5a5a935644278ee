"""Scaling-law fits and sharpness correlations on tables generated with known parameters."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from intrinsic.analysis import (
    compare_sharpness_term, fit_scaling_law, fits_table, sharpness_correlations, to_markdown_table,
)

ALPHA, BETA, A = 2.0, 0.5, -1.0
ALPHA_REPR, B = 3.0, 0.2


def runs_table(noise=0.0, beta=BETA, seed=0, domains=("natural", "medical"), seeds=2):
    """Runs following Eq. 2 (d = d_mle) and Eq. 4 (d = d_repr_twonn), with Gaussian noise on log L."""
    rng = np.random.default_rng(seed)
    rows = []
    for domain in domains:
        for i in range(6):
            d_mle, k_f = 6.0 + 3.0 * i, float(np.exp(rng.uniform(-1, 2)))
            for n_train in (500, 1000, 2000, 4000, 8000):
                for s in range(seeds):
                    d_repr = float(rng.uniform(5, 25))
                    log_loss = -ALPHA * np.log(n_train) / d_mle + beta * np.log(k_f) + A
                    log_loss_repr = -ALPHA_REPR * np.log(n_train) / d_repr + B
                    rows.append({
                        "model": "resnet18", "dataset": f"{domain}{i}", "domain": domain,
                        "n_train": n_train, "seed": s, "d_mle": d_mle, "d_twonn": d_mle + 1,
                        "k_f": k_f, "d_repr_twonn": d_repr,
                        "test_loss": float(np.exp(log_loss + noise * rng.normal())),
                        "test_loss_repr": float(np.exp(log_loss_repr + noise * rng.normal())),
                    })
    return pd.DataFrame(rows)


def test_exact_recovery_without_noise():
    runs = runs_table(noise=0.0)
    for domain, group in runs.groupby("domain"):
        fit = fit_scaling_law(group, "d_mle", with_sharpness=True)
        assert fit["coef"]["alpha"] == pytest.approx(ALPHA, abs=1e-8)
        assert fit["coef"]["beta"] == pytest.approx(BETA, abs=1e-8)
        assert fit["coef"]["a"] == pytest.approx(A, abs=1e-8)
        assert fit["r2"] == pytest.approx(1.0, abs=1e-12) and fit["rss"] < 1e-20
        assert fit["n"] == len(group) and fit["p"] == 3 and fit["k"] == 4 and fit["n_dropped"] == 0
        eq4 = fit_scaling_law(group, "d_repr_twonn", with_sharpness=False, loss_column="test_loss_repr")
        assert set(eq4["coef"]) == {"alpha", "a"}
        assert eq4["coef"]["alpha"] == pytest.approx(ALPHA_REPR, abs=1e-8)
        assert eq4["coef"]["a"] == pytest.approx(B, abs=1e-8)


def test_noisy_recovery_within_confidence_intervals():
    runs = runs_table(noise=0.05, seed=0)
    for domain, group in runs.groupby("domain"):
        fit = fit_scaling_law(group, "d_mle")
        for name, truth in (("alpha", ALPHA), ("beta", BETA), ("a", A)):
            p = fit["params"][name]
            assert p["ci_low"] <= truth <= p["ci_high"], (domain, name, p)
            assert abs(p["estimate"] - truth) < 4 * p["se"]
            assert p["se"] > 0
            assert p["ci_high"] - p["estimate"] == pytest.approx(
                stats.t.ppf(0.975, fit["dof"]) * p["se"], rel=1e-12)
        assert fit["coef"]["alpha"] == pytest.approx(ALPHA, rel=0.1)
        assert fit["coef"]["beta"] == pytest.approx(BETA, abs=0.05)
        assert fit["r2"] > 0.9


def test_confidence_interval_coverage():
    """Over many noisy replicates the 95% intervals cover the true parameters about 95% of the time."""
    rng = np.random.default_rng(7)
    covered, reps = np.zeros(3), 400
    for _ in range(reps):
        table = pd.DataFrame({"n_train": np.repeat([500, 2000, 8000], 8), "d_mle": np.tile(np.arange(4, 12), 3),
                              "k_f": np.exp(rng.uniform(-1, 2, 24))})
        log_loss = -ALPHA * np.log(table["n_train"]) / table["d_mle"] + BETA * np.log(table["k_f"]) + A
        table["test_loss"] = np.exp(log_loss + 0.1 * rng.normal(size=24))
        params = fit_scaling_law(table, "d_mle")["params"]
        covered += [params[k]["ci_low"] <= t <= params[k]["ci_high"] for k, t in (("alpha", ALPHA), ("beta", BETA), ("a", A))]
    assert np.all((covered / reps > 0.92) & (covered / reps < 0.98)), covered / reps


def test_information_criteria_match_hand_computation():
    table = pd.DataFrame({"n_train": [10, 100, 1000, 10000, 50000], "d_mle": [2.0, 4.0, 2.0, 8.0, 5.0],
                          "test_loss": [0.9, 0.5, 0.3, 0.4, 0.2]})
    fit = fit_scaling_law(table, "d_mle", with_sharpness=False)
    x = -np.log(table["n_train"]) / table["d_mle"]
    y = np.log(table["test_loss"])
    slope, intercept = np.polyfit(x, y, 1)
    rss = float(((y - (slope * x + intercept)) ** 2).sum())
    n, k = 5, 3
    loglik = -n / 2 * (math.log(2 * math.pi * rss / n) + 1)
    assert fit["coef"]["alpha"] == pytest.approx(slope, rel=1e-10)
    assert fit["coef"]["a"] == pytest.approx(intercept, rel=1e-10)
    assert fit["rss"] == pytest.approx(rss, rel=1e-10)
    assert fit["loglik"] == pytest.approx(loglik, rel=1e-10)
    assert fit["aic"] == pytest.approx(2 * k - 2 * loglik, rel=1e-10)
    assert fit["bic"] == pytest.approx(k * math.log(n) - 2 * loglik, rel=1e-10)
    # scipy's linregress agrees on the slope's standard error
    assert fit["params"]["alpha"]["se"] == pytest.approx(stats.linregress(x, y).stderr, rel=1e-10)


def test_likelihood_ratio_prefers_kf_only_when_present():
    present = compare_sharpness_term(runs_table(noise=0.05, seed=2).query("domain == 'natural'"), "d_mle")
    assert present["lr_p_value"] < 1e-6 and present["f_p_value"] < 1e-6
    assert present["delta_aic"] < -10 and present["delta_bic"] < -10
    assert present["with_kf"]["n"] == present["without_kf"]["n"] == 60
    absent = compare_sharpness_term(runs_table(noise=0.05, beta=0.0, seed=2).query("domain == 'natural'"),
                                    "d_mle")
    assert absent["lr_p_value"] > 0.05 and absent["f_p_value"] > 0.05
    assert absent["delta_aic"] > 0 and absent["delta_bic"] > 0
    assert absent["with_kf"]["params"]["beta"]["ci_low"] <= 0 <= absent["with_kf"]["params"]["beta"]["ci_high"]
    assert absent["lr_stat"] == pytest.approx(
        absent["n"] * math.log(absent["without_kf"]["rss"] / absent["with_kf"]["rss"]), rel=1e-9)


def test_fits_table_is_tidy():
    # one loss column cannot follow both generating laws exactly: check Eq. 4 on the column made for it
    runs = runs_table(noise=0.0).drop(columns="test_loss").rename(columns={"test_loss_repr": "test_loss"})
    table = fits_table(runs_table(noise=0.0))
    assert len(table) == 2 * (3 + 2 + 2)
    assert list(table.columns[:4]) == ["domain", "law", "d_column", "parameter"]
    for column in ("estimate", "se", "ci_low", "ci_high", "n", "r2", "aic", "bic", "loglik"):
        assert column in table.columns
    with_kf = table[table["law"] == "eq2_with_kf"].set_index(["domain", "parameter"])["estimate"]
    assert with_kf[("medical", "beta")] == pytest.approx(BETA, abs=1e-8)
    assert with_kf[("natural", "alpha")] == pytest.approx(ALPHA, abs=1e-8)
    assert set(table["law"]) == {"eq2_with_kf", "eq2_without_kf", "eq4_d_repr"}
    assert (table.loc[table["law"] == "eq4_d_repr", "d_column"] == "d_repr_twonn").all()
    eq4 = fits_table(runs, groups=())
    eq4 = eq4[eq4["law"] == "eq4_d_repr"].set_index("parameter")["estimate"]
    assert eq4["alpha"] == pytest.approx(ALPHA_REPR, abs=1e-8) and eq4["a"] == pytest.approx(B, abs=1e-8)


def test_fits_table_errors():
    runs = runs_table(noise=0.05)
    small = pd.concat([runs, runs.iloc[:2].assign(domain="tiny")])
    with pytest.raises(ValueError, match="tiny"):
        fits_table(small)
    noted = fits_table(small, errors="note")
    tiny = noted[noted["domain"] == "tiny"]
    assert len(tiny) == 3 and tiny["estimate"].isna().all() and tiny["error"].str.contains("too few").all()


@pytest.mark.parametrize("column", ["test_loss", "k_f", "n_train"])
def test_non_positive_values_raise_naming_the_column(column):
    runs = runs_table().query("domain == 'natural'").copy()
    runs.loc[runs.index[3], column] = 0
    with pytest.raises(ValueError, match=column):
        fit_scaling_law(runs, "d_mle")


def test_missing_column_and_too_few_rows_raise():
    runs = runs_table()
    with pytest.raises(ValueError, match="k_f"):
        fit_scaling_law(runs.drop(columns="k_f"), "d_mle")
    with pytest.raises(ValueError, match="d_repr_mle"):
        fit_scaling_law(runs, "d_repr_mle", with_sharpness=False)
    with pytest.raises(ValueError, match="too few rows"):
        fit_scaling_law(runs.iloc[:3], "d_mle")
    with pytest.raises(ValueError, match="collinear"):
        fit_scaling_law(runs.assign(k_f=2.0), "d_mle")
    with pytest.raises(ValueError, match="loss_penalty"):
        sharpness_correlations(pd.DataFrame({"model": [], "attack": [], "eps": [], "n_train": [],
                                             "dataset": [], "k_f": []}))


def test_missing_values_are_dropped_and_counted():
    runs = runs_table(noise=0.0).query("domain == 'natural'").copy()
    runs.loc[runs.index[:4], "k_f"] = np.nan
    fit = fit_scaling_law(runs, "d_mle")
    assert fit["n"] == 56 and fit["n_dropped"] == 4
    assert fit["coef"]["beta"] == pytest.approx(BETA, abs=1e-8)
    comparison = compare_sharpness_term(runs, "d_mle")
    assert comparison["without_kf"]["n"] == 56  # both fits on the same rows


def attacks_table(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for model in ("resnet18", "vgg13"):
        for eps in (1 / 255, 8 / 255):
            for n_train in (500, 1000, 2000):
                for i in range(20):
                    k_f = float(rng.uniform(0.5, 5))
                    for s in range(2):
                        rows.append({
                            "model": model, "attack": "FGSM", "eps": eps, "n_train": n_train, "seed": s,
                            "dataset": f"ds{i}", "domain": "medical", "k_f": k_f,
                            # resnet18: exactly proportional; vgg13: independent noise
                            "loss_penalty": 3.0 * eps * k_f if model == "resnet18" else float(rng.normal()),
                            "accuracy_penalty": 0.1,
                        })
    return pd.DataFrame(rows)


def test_sharpness_correlations():
    table = sharpness_correlations(attacks_table())
    assert len(table) == 4
    assert list(table.columns[:4]) == ["model", "attack", "eps", "r"]
    exact = table[table["model"] == "resnet18"]
    assert np.allclose(exact["r"], 1.0, atol=1e-12) and np.allclose(exact["r_sd"], 0.0, atol=1e-12)
    assert (exact["n_sizes"] == 3).all() and (exact["n_datasets"] == 20).all()
    assert (exact["p_max"] < 1e-6).all() and (exact["n_significant"] == 3).all()
    independent = table[table["model"] == "vgg13"]
    assert (independent["r"].abs() < 0.5).all()
    # averaged over sizes: matches per-size pearsonr on per-dataset means
    attacks = attacks_table()
    sub = attacks[(attacks["model"] == "vgg13") & (attacks["eps"] == 8 / 255)]
    rs = [stats.pearsonr(*g.groupby("dataset")[["k_f", "loss_penalty"]].mean().to_numpy().T).statistic
          for _, g in sub.groupby("n_train")]
    row = independent[independent["eps"] == 8 / 255].iloc[0]
    assert row["r"] == pytest.approx(np.mean(rs), rel=1e-12)
    assert row["r_sd"] == pytest.approx(np.std(rs, ddof=1), rel=1e-12)


def test_sharpness_correlations_too_few_datasets_is_nan():
    attacks = attacks_table()
    table = sharpness_correlations(attacks[attacks["dataset"].isin(["ds0", "ds1"])])
    assert table["r"].isna().all() and (table["n_sizes"] == 0).all()


def test_markdown_table():
    table = sharpness_correlations(attacks_table())
    text = to_markdown_table(table[["model", "attack", "eps", "r", "r_sd", "n_sizes"]])
    lines = text.strip().split("\n")
    assert len(lines) == 2 + len(table)
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["model", "attack", "eps", "r", "r_sd", "n_sizes"]
    assert set(lines[1]) <= set("|-: ") and lines[1].count("|") == 7
    assert all(line.count("|") == 7 for line in lines)
    assert "1.000" in text and "resnet18" in text
    odd = to_markdown_table(pd.DataFrame({"a|b": ["x|y"], "v": [np.nan]}))
    assert "0.03137" in to_markdown_table(table, floatfmt={"eps": ".5f"})
    assert "a\\|b" in odd and "x\\|y" in odd and odd.count("\n") == 3
