"""Scaling-law fits and sharpness correlations on tables generated with known parameters."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from intrinsic.analysis import (
    compare_sharpness_term, fit_scaling_law, fits_table, pearson_with_ci, sharpness_correlations,
    sharpness_markdown, sharpness_points, to_markdown_table,
)
from intrinsic.analysis import (  # the cross-domain fits
    CROSS_DOMAIN_COLUMNS, CROSS_DOMAIN_LAWS, cross_domain_fits, cross_domain_markdown, cross_domain_table,
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
                        "n_train": n_train, "seed": s, "fitted": True, "d_mle": d_mle, "d_twonn": d_mle + 1,
                        "k_f": k_f, "d_repr_twonn": d_repr,
                        "test_loss": float(np.exp(log_loss + noise * rng.normal())),
                        "test_loss_repr": float(np.exp(log_loss_repr + noise * rng.normal())),
                    })
    return pd.DataFrame(rows)


def test_exact_recovery_without_noise():
    runs = runs_table(noise=0.0)
    for _domain, group in runs.groupby("domain"):
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
        covered += [params[k]["ci_low"] <= t <= params[k]["ci_high"]
                    for k, t in (("alpha", ALPHA), ("beta", BETA), ("a", A))]
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
    for column in ("estimate", "se_iid", "ci_low_iid", "ci_high_iid", "p_value_iid", "se_cluster",
                   "ci_low_cluster", "ci_high_cluster", "p_value_cluster", "n_clusters", "n",
                   "n_unfitted_excluded", "r2", "aic", "bic", "loglik", "cluster_note"):
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


def clustered_runs(beta=1.0, seed=0, datasets=8, dataset_sd=0.02, noise=0.05, synthetic=True):
    """Runs of the paper's Eq. 2 with alpha = 1, ``beta`` and a = -1: ``datasets`` datasets per
    domain, each with its own d and, per seed (class pair), its own K_F (higher for medical, as in
    the paper), a shared dataset effect (sd ``dataset_sd``: runs of a dataset are correlated) and
    run noise. A synthetic domain that follows no law at all must stay out of the pooled fit."""
    rng = np.random.default_rng(seed)
    rows = []
    for domain, (low, high) in (("natural", (0.0, 1.2)), ("medical", (0.8, 2.0))):
        for j in range(datasets):
            d, effect = rng.uniform(8, 40), rng.normal(0, dataset_sd)
            for s in range(4):
                k_f = float(np.exp(rng.uniform(low, high)))
                for n_train in (500, 750, 1000, 1250, 1500, 1750):
                    d_split = d * (1 + 0.02 * rng.normal())  # d_mle is estimated per split
                    log_loss = (-np.log(n_train) / d_split + beta * np.log(k_f) - 1.0 + effect
                                + noise * rng.normal())
                    rows.append({"dataset": f"{domain}{j}", "domain": domain, "model": "resnet18",
                                 "n_train": n_train, "seed": s, "fitted": True, "d_mle": d_split,
                                 "k_f": k_f, "test_loss": float(np.exp(log_loss))})
    if synthetic:
        rows += [{"dataset": "synthetic_d2", "domain": "synthetic", "model": "resnet18", "n_train": n,
                  "seed": 0, "fitted": True, "d_mle": 2.0, "k_f": 1e3, "test_loss": 50.0}
                 for n in (500, 1000, 1500)]
    return pd.DataFrame(rows)


def test_cross_domain_fits_find_a_known_sharpness_effect():
    result = cross_domain_fits(clustered_runs(beta=1.0, seed=0))
    assert result["domains"] == ["medical", "natural"]  # synthetic left out by default
    with_kf, without_kf, indicator = result["with_kf"], result["without_kf"], result["domain_indicator"]
    assert with_kf["n"] == without_kf["n"] == indicator["n"] == 2 * 8 * 4 * 6 and with_kf["n_clusters"] == 16
    # nested a vs b: the K_F term is needed; c (domain indicator) explains less than K_F
    assert result["lr"]["lr_p_value"] < 1e-10 and result["wald_beta"]["p_value"] < 1e-6
    assert with_kf["aic"] < without_kf["aic"] - 10 and with_kf["aic"] < indicator["aic"] - 10
    assert with_kf["bic"] < without_kf["bic"] and with_kf["bic"] < indicator["bic"]
    assert set(indicator["params"]) == {"alpha", "domain[natural]", "a"}
    assert indicator["reference_domain"] == "medical"
    for name in ("alpha", "beta"):
        robust = with_kf["params_cluster"][name]
        assert robust["ci_low"] <= 1.0 <= robust["ci_high"], (name, robust)
        # runs of a dataset share its effect: the i.i.d. standard errors are too small
        assert robust["se"] > 1.5 * with_kf["params"][name]["se"]
    # the Wald test is statsmodels' F(1, G-1) = t^2 of beta's cluster-robust t
    t = with_kf["params_cluster"]["beta"]["t"]
    assert result["wald_beta"]["stat"] == pytest.approx(t ** 2, rel=1e-10)
    assert result["wald_beta"]["df_denom"] == 15
    assert result["wald_beta"]["p_value"] == pytest.approx(with_kf["params_cluster"]["beta"]["p_value"], rel=1e-10)

    table = cross_domain_table(clustered_runs(beta=1.0, seed=0))
    assert list(table.columns) == CROSS_DOMAIN_COLUMNS
    assert (table["domains"] == "medical+natural").all() and (table["error"] == "").all()
    rows = table.set_index(["law", "parameter"])
    for name in ("alpha", "beta"):
        assert rows.loc[("eq2_with_kf", name), "eq_1_in_ci_cluster"] is True
    # beta's too-narrow i.i.d. interval [1.007, 1.027] misses 1 here
    assert rows.loc[("eq2_with_kf", "alpha"), "eq_1_in_ci_iid"] is True
    assert rows.loc[("eq2_with_kf", "beta"), "eq_1_in_ci_iid"] is False
    assert rows.loc[("eq2_with_kf", "a"), "eq_1_in_ci_cluster"] is None
    assert rows.loc[("eq2_with_kf", "alpha"), "delta_aic"] == 0
    assert rows.loc[("eq2_without_kf", "alpha"), "delta_aic"] == pytest.approx(
        without_kf["aic"] - with_kf["aic"], rel=1e-12)
    assert rows.loc[("eq2_domain_indicator", "alpha"), "delta_bic"] == pytest.approx(
        indicator["bic"] - with_kf["bic"], rel=1e-12)
    assert rows.loc[("eq2_with_kf", "beta"), "lr_p_value"] == result["lr"]["lr_p_value"]
    assert rows.loc[("eq2_with_kf", "beta"), "wald_beta_p_value"] == result["wald_beta"]["p_value"]
    assert np.isnan(rows.loc[("eq2_domain_indicator", "alpha"), "lr_p_value"])  # not nested

    summary = cross_domain_markdown(table)
    assert ("Domains pooled: medical+natural; n = 384 runs in 16 dataset clusters (cluster-robust "
            "intervals: t with 15 dof; 0 unfitted runs excluded, 0 with missing values dropped).") in summary
    assert "- Lowest AIC: eq2_with_kf." in summary and "- Lowest BIC: eq2_with_kf." in summary
    assert "- beta = 1 in the 95% CI of (a): yes (cluster-robust), no (i.i.d.)." in summary
    assert "Wald test of beta = 0" in summary and "Likelihood-ratio test" in summary


def test_cross_domain_fits_without_a_sharpness_effect():
    # no dataset effect: runs are independent, so the i.i.d. likelihood-ratio test is valid here
    result = cross_domain_fits(clustered_runs(beta=0.0, seed=1, dataset_sd=0.0))
    assert result["lr"]["lr_p_value"] > 0.05 and result["wald_beta"]["p_value"] > 0.05
    beta = result["with_kf"]["params_cluster"]["beta"]
    assert beta["ci_low"] <= 0.0 <= beta["ci_high"] and not beta["ci_low"] <= 1.0 <= beta["ci_high"]
    assert result["with_kf"]["bic"] > result["without_kf"]["bic"]


def test_cluster_robust_wald_holds_its_level_where_the_iid_lr_test_does_not():
    """With a shared effect per dataset and no K_F effect, the i.i.d. likelihood-ratio test rejects
    far more often than 5%, while the cluster-robust Wald test stays near its level."""
    lr, wald = [], []
    for seed in range(100):
        result = cross_domain_fits(clustered_runs(beta=0.0, seed=seed, dataset_sd=0.02, synthetic=False))
        lr.append(result["lr"]["lr_p_value"] < 0.05)
        wald.append(result["wald_beta"]["p_value"] < 0.05)
    assert np.mean(wald) <= 0.12 and np.mean(lr) >= 0.15, (np.mean(wald), np.mean(lr))


def test_cluster_robust_standard_errors_match_the_sandwich_formula():
    table = pd.DataFrame({
        "dataset": ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3,
        "n_train": [10, 100, 1000] * 4,
        "d_mle": [2.0, 2.2, 1.9, 4.0, 4.1, 3.8, 6.0, 5.5, 6.3, 3.0, 3.3, 2.9],
        "k_f": [1.5, 1.5, 2.0, 3.0, 3.0, 2.5, 1.2, 1.2, 1.1, 5.0, 4.0, 4.0],
        "test_loss": [0.9, 0.5, 0.3, 0.8, 0.6, 0.5, 0.7, 0.55, 0.5, 1.2, 0.9, 0.8],
    })
    fit = fit_scaling_law(table, "d_mle", cluster_column="dataset")
    # by hand: X = [-log N / d, log K_F, 1], V = c B M B with c = G/(G-1) (n-1)/(n-p), t on G-1 dof
    X = np.column_stack([-np.log(table["n_train"]) / table["d_mle"], np.log(table["k_f"]), np.ones(12)])
    y = np.log(table["test_loss"]).to_numpy()
    coef = np.linalg.solve(X.T @ X, X.T @ y)
    e = y - X @ coef
    bread = np.linalg.inv(X.T @ X)
    meat = np.zeros((3, 3))
    for g in "abcd":
        score = X[table["dataset"] == g].T @ e[table["dataset"] == g]
        meat += np.outer(score, score)
    G, n, p = 4, 12, 3
    se = np.sqrt(np.diag(G / (G - 1) * (n - 1) / (n - p) * bread @ meat @ bread))
    t_crit = stats.t.ppf(0.975, G - 1)
    assert fit["n_clusters"] == 4 and fit["dof_cluster"] == 3 and fit["cluster_note"] == ""
    for i, name in enumerate(("alpha", "beta", "a")):
        robust = fit["params_cluster"][name]
        assert robust["estimate"] == pytest.approx(coef[i], rel=1e-10)
        assert robust["se"] == pytest.approx(se[i], rel=1e-10)
        assert robust["ci_low"] == pytest.approx(coef[i] - t_crit * se[i], rel=1e-10)
        assert robust["ci_high"] == pytest.approx(coef[i] + t_crit * se[i], rel=1e-10)
        assert robust["p_value"] == pytest.approx(2 * stats.t.sf(abs(coef[i] / se[i]), G - 1), rel=1e-10)
        # the i.i.d. standard errors are the usual s^2 (X'X)^-1 ones
        s2 = float(e @ e) / (n - p)
        assert fit["params"][name]["se"] == pytest.approx(math.sqrt(s2 * bread[i, i]), rel=1e-10)
    assert fit["wald_beta"]["stat"] == pytest.approx((coef[1] / se[1]) ** 2, rel=1e-10)
    assert fit["wald_beta"]["p_value"] == pytest.approx(stats.f.sf((coef[1] / se[1]) ** 2, 1, G - 1), rel=1e-10)


def test_one_cluster_gives_a_note_not_numbers():
    runs = clustered_runs(datasets=1, synthetic=False).assign(d_repr_twonn=lambda t: t["d_mle"] + 1.0)
    fit = fit_scaling_law(runs.query("domain == 'natural'"), "d_mle", cluster_column="dataset")
    assert fit["params_cluster"] is None and fit["wald_beta"] is None and fit["n_clusters"] == 1
    assert fit["cluster_note"] == "cluster-robust SEs undefined: 1 dataset cluster (natural0); need at least 2"
    table = fits_table(runs, errors="raise")
    assert len(table) == 2 * 7 and (table["n_clusters"] == 1).all() and (table["error"] == "").all()
    for column in ("se_cluster", "ci_low_cluster", "ci_high_cluster", "p_value_cluster"):
        assert table[column].isna().all(), column
    assert table["eq_1_in_ci_cluster"].isna().all()
    assert table["cluster_note"].str.contains("undefined: 1 dataset cluster").all()
    assert table["se_iid"].notna().all()  # the i.i.d. fit is still made
    # pooled over the two domains: 2 clusters, defined (if imprecise: t with 1 dof)
    pooled = fits_table(runs, groups=())
    assert (pooled["n_clusters"] == 2).all() and pooled["se_cluster"].notna().all()
    assert (pooled["cluster_note"] == "").all()


def test_unfitted_runs_are_excluded_and_counted():
    runs = runs_table(noise=0.05, seed=3)
    unfitted = runs.index[::7]  # every 7th run gave up before fitting; its loss follows no law
    runs.loc[unfitted, "fitted"] = False
    runs.loc[unfitted, "test_loss"] *= 50.0
    table = fits_table(runs)
    kept = fits_table(runs[runs["fitted"]])
    assert np.allclose(table["estimate"], kept["estimate"], rtol=1e-12, atol=0)
    assert np.allclose(table["se_cluster"], kept["se_cluster"], rtol=1e-12, atol=0)
    counts = runs.loc[unfitted].groupby("domain").size()
    by_domain = table.groupby("domain")["n_unfitted_excluded"].agg(["min", "max"])
    assert (by_domain["min"] == counts).all() and (by_domain["max"] == counts).all()
    assert (table["n"] + table["n_unfitted_excluded"] == 60).all()
    included = fits_table(runs, exclude_unfitted=False)
    assert (included["n"] == 60).all() and (included["n_unfitted_excluded"] == 0).all()
    # the pooled cross-domain fit counts its exclusions too (within the pooled domains)
    cross = cross_domain_fits(runs, exclude_domains=())
    assert cross["n_unfitted_excluded"] == len(unfitted) and cross["n"] == len(runs) - len(unfitted)
    # a CSV with a gap in `fitted` reads it as text: "True"/"False" still work, anything else is an error
    as_text = runs.assign(fitted=runs["fitted"].map({True: "True", False: "False"}))
    assert np.allclose(fits_table(as_text)["estimate"], table["estimate"], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="'fitted' must be boolean"):
        fits_table(runs.assign(fitted=runs["fitted"].astype(object).where(runs.index != 5, None)))
    with pytest.raises(ValueError, match="fitted"):
        fits_table(runs.drop(columns="fitted"))


def test_a_group_of_only_unfitted_runs_is_noted():
    runs = runs_table(noise=0.05)
    runs.loc[runs["domain"] == "medical", "fitted"] = False
    table = fits_table(runs, errors="note")
    medical = table[table["domain"] == "medical"]
    assert len(medical) == 3 and medical["estimate"].isna().all()
    assert (medical["error"] == "all 60 runs have fitted == False (excluded as unfitted)").all()
    assert (medical["n_unfitted_excluded"] == 60).all()
    with pytest.raises(ValueError, match="have fitted == False"):
        cross_domain_fits(runs, exclude_domains=("natural",))


def test_cross_domain_with_one_domain_notes_the_indicator_and_checks_inputs():
    runs = clustered_runs(beta=1.0, seed=0)
    table = cross_domain_table(runs, exclude_domains=("synthetic", "medical"))
    indicator = table[table["law"] == "eq2_domain_indicator"]
    assert len(indicator) == 1 and "at least 2 values of column 'domain'" in indicator["error"].iloc[0]
    assert (table.loc[table["law"] != "eq2_domain_indicator", "error"] == "").all()
    assert "eq2_domain_indicator not fitted" in cross_domain_markdown(table)
    with pytest.raises(ValueError, match="no runs left in column 'domain'"):
        cross_domain_fits(runs, exclude_domains=("synthetic", "medical", "natural"))
    with pytest.raises(ValueError, match="dataset"):
        cross_domain_fits(runs.drop(columns="dataset"))
    noted = cross_domain_table(runs.assign(model=np.where(runs.index < 3, "tiny", "resnet18")),
                               groups=["model"], errors="note")
    assert set(noted.loc[noted["model"] == "tiny", "law"]) == set(CROSS_DOMAIN_LAWS)
    assert noted.loc[noted["model"] == "tiny", "error"].str.contains("too few rows").all()
    assert "No fit: " in cross_domain_markdown(noted, ["model"])


# Table 1 fixture: dataset -> (domain, K_F on the 0-255 scale, {N: loss penalties of the seeds at
# eps = 2/255}). Per-dataset means (mean over N of the per-N means over seeds), by hand:
# A 1, B 3, C 2, D 6 (not 16/3, the mean of D's three rows), E 7, F 2.
PENALTIES = {
    "A": ("natural", 1.0, {100: (0.4, 0.6), 200: (1.4, 1.6)}),
    "B": ("natural", 2.0, {100: (3.9, 4.1), 200: (1.9, 2.1)}),
    "C": ("medical", 3.0, {100: (1.8, 2.2), 200: (2.0, 2.0)}),
    "D": ("medical", 4.0, {100: (3.5, 4.5), 200: (8.0,)}),  # one seed at N = 200
    "E": ("medical", 5.0, {100: (6.5, 7.5), 200: (7.0, 7.0)}),
    "F": ("dermatology", 6.0, {100: (1.0, 3.0), 200: (2.0, 2.0)}),
}
# A to D: x = 1, 2, 3, 4 and y = 1, 3, 2, 6, so dx = (-1.5, -0.5, 0.5, 1.5), dy = (-2, 0, -1, 3),
# sum dx dy = 7, sum dx^2 = 5, sum dy^2 = 14 and r = 7 / sqrt(70) = sqrt(0.7).
R_ABCD = math.sqrt(0.7)
# medical C, D, E: x = 3, 4, 5, y = 2, 6, 7: dx = (-1, 0, 1), dy = (-3, 1, 2), r = 5 / sqrt(2 * 14).
R_MEDICAL = 5 / math.sqrt(28)


def sharpness_attacks(datasets=tuple(PENALTIES), eps_255=(2, 8)):
    """resnet18: the penalties above times eps_255 / 2 (r is the same at every eps); vgg13:
    2 K_F + 1 exactly (r = 1). accuracy_penalty = -loss_penalty / 10. Two extra rows per model
    and eps that must be left out: a NaN penalty (A) and an infinite K_F (B)."""
    rows = []
    for model in ("resnet18", "vgg13"):
        for e in eps_255:
            for dataset in datasets:
                domain, k, sizes = PENALTIES[dataset]
                for n_train, values in sizes.items():
                    for seed, value in enumerate(values):
                        penalty = value * e / 2 if model == "resnet18" else 2 * k + 1
                        rows.append({"model": model, "attack": "fgsm", "eps": e / 255, "eps_255": e,
                                     "dataset": dataset, "domain": domain, "n_train": n_train, "seed": seed,
                                     "classes": "x vs y", "k_f": 255 * k, "k_f_255": k,
                                     "loss_penalty": penalty, "accuracy_penalty": -penalty / 10})
                if dataset in ("A", "B"):
                    bad = np.nan if dataset == "A" else 1.0
                    rows.append({**rows[-1], "seed": 2, "loss_penalty": bad, "accuracy_penalty": bad,
                                 "k_f_255": np.inf if dataset == "B" else k})
    return pd.DataFrame(rows)


def test_pearson_with_ci_by_hand():
    result = pearson_with_ci([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 6.0])
    assert result["r"] == pytest.approx(R_ABCD, abs=1e-12) and result["n"] == 4 and result["note"] == ""
    t = math.sqrt(0.7 * 2 / 0.3)  # r sqrt((n - 2) / (1 - r^2))
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(t, 2), rel=1e-12)
    z, half = math.atanh(R_ABCD), 1.959963984540054 / math.sqrt(4 - 3)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((math.tanh(z - half), math.tanh(z + half)))
    three = pearson_with_ci([3.0, 4.0, 5.0], [2.0, 6.0, 7.0])
    assert three["r"] == pytest.approx(R_MEDICAL, abs=1e-12) and math.isnan(three["ci_low"])
    assert "needs at least 4" in three["note"]
    two = pearson_with_ci([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(two["r"]) and "needs at least 3" in two["note"]
    flat = pearson_with_ci([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], x_name="k_f_255")
    assert math.isnan(flat["r"]) and "k_f_255" in flat["note"]
    exact = pearson_with_ci([1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0])
    assert (exact["r"], exact["p_value"], exact["ci_low"], exact["ci_high"]) == (1.0, 0.0, 1.0, 1.0)


def test_table1_averages_each_dataset_over_n_and_seeds_first():
    attacks = sharpness_attacks(datasets=("A", "B", "C", "D"))
    table = sharpness_correlations(attacks, ["model", "attack", "eps_255"])
    assert len(table) == 2 * 2
    assert list(table.columns) == ["model", "attack", "eps_255", "x_column", "y_column", "r", "p_value",
                                   "ci_low", "ci_high", "n_datasets", "n_sizes", "note"]
    rows = table.set_index(["model", "eps_255"])
    for e in (2, 8):
        row = rows.loc[("resnet18", e)]
        assert row["r"] == pytest.approx(R_ABCD, abs=1e-12)
        assert row["p_value"] == pytest.approx(2 * stats.t.sf(math.sqrt(0.7 * 2 / 0.3), 2), rel=1e-12)
        z = math.atanh(R_ABCD)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((math.tanh(z - 1.959963984540054),
                                                                math.tanh(z + 1.959963984540054)))
        assert (row["n_datasets"], row["n_sizes"]) == (4, 2)
        assert (row["x_column"], row["y_column"]) == ("k_f_255", "loss_penalty")
        assert (rows.loc[("vgg13", e), "r"], rows.loc[("vgg13", e), "p_value"]) == (1.0, 0.0)
    # Not the old statistic (r at each N, averaged over N): per-N means A .5 B 4 C 2 D 4 and A 1.5 B 2 C 2 D 8.
    per_n = [np.corrcoef([1, 2, 3, 4], means)[0, 1] for means in ([0.5, 4, 2, 4], [1.5, 2, 2, 8])]
    assert abs(np.mean(per_n) - R_ABCD) > 0.1


def test_sharpness_points_are_means_over_n_with_a_t_interval_over_n():
    points = sharpness_points(sharpness_attacks(datasets=("A", "B", "C", "D")), ["model", "attack", "eps_255"])
    assert points.attrs["n_dropped"] == 2 * 2 * 2  # a NaN penalty and an infinite K_F per model and eps
    row = points.set_index(["model", "eps_255", "dataset"]).loc[("resnet18", 2, "D")]
    assert row["domain"] == "medical" and (row["n_sizes"], row["n_rows"]) == (2, 3)
    assert row["loss_penalty"] == pytest.approx(6.0)  # (4 + 8) / 2, not (3.5 + 4.5 + 8) / 3
    half = 12.706204736174698 * 2.0  # t_{0.975, 1} * sd(4, 8) / sqrt(2) = t * |8 - 4| / 2
    assert (row["loss_penalty_ci_low"], row["loss_penalty_ci_high"]) == pytest.approx((6 - half, 6 + half))
    assert (row["k_f_255"], row["k_f_255_ci_low"], row["k_f_255_ci_high"]) == (4.0, 4.0, 4.0)
    one_n = sharpness_points(sharpness_attacks(datasets=("C",)).query("n_train == 100"), ["model"])
    assert (one_n["loss_penalty_ci_low"] == one_n["loss_penalty"]).all()


def test_table1_per_domain_and_accuracy_versions():
    attacks = sharpness_attacks()
    by_domain = sharpness_correlations(attacks, ["model", "attack", "eps_255", "domain"])
    rows = by_domain[by_domain["model"] == "resnet18"].set_index(["eps_255", "domain"])
    for e in (2, 8):
        medical = rows.loc[(e, "medical")]
        assert medical["r"] == pytest.approx(R_MEDICAL, abs=1e-12) and medical["n_datasets"] == 3
        assert math.isnan(medical["ci_low"]) and "needs at least 4" in medical["note"]
        assert math.isnan(rows.loc[(e, "natural"), "r"]) and "2 dataset(s)" in rows.loc[(e, "natural"), "note"]
        assert math.isnan(rows.loc[(e, "dermatology"), "r"]) and "1 dataset(s)" in rows.loc[(e, "dermatology"), "note"]
    accuracy = sharpness_correlations(attacks[attacks["dataset"].isin(list("ABCD"))], y="accuracy_penalty")
    assert (accuracy["y_column"] == "accuracy_penalty").all()
    resnet = accuracy[accuracy["model"] == "resnet18"]
    assert np.allclose(resnet["r"], -R_ABCD, atol=1e-12)  # y -> -y / 10 flips the sign only


def test_sharpness_correlations_too_few_datasets_is_nan():
    table = sharpness_correlations(sharpness_attacks(datasets=("C", "D")))
    assert table["r"].isna().all() and (table["n_datasets"] == 2).all()
    assert table["note"].str.contains("needs at least 3").all()


def test_sharpness_correlations_bad_input_names_the_column():
    attacks = sharpness_attacks()
    with pytest.raises(ValueError, match="k_f_255"):
        sharpness_correlations(attacks.drop(columns="k_f_255"))
    with pytest.raises(ValueError, match="loss_penalty"):
        sharpness_correlations(attacks.assign(loss_penalty="high"))
    with pytest.raises(ValueError, match="domain"):
        sharpness_correlations(attacks.assign(domain=np.where(attacks["seed"] == 0, "natural", "medical")))


def test_sharpness_markdown():
    table = sharpness_correlations(sharpness_attacks(datasets=("A", "B", "C", "D")), ["model", "attack", "eps_255"])
    text = sharpness_markdown(table, "Table 1.")
    assert text.startswith("Table 1.")
    header = [c.strip() for c in text.split("\n")[4].strip("|").split("|")]
    assert header == ["attack", "model", "eps = 2/255", "eps = 8/255"]
    assert "| fgsm   | resnet18 |        0.84 |        0.84 |" in text


def test_markdown_table():
    table = sharpness_correlations(sharpness_attacks(eps_255=(1, 8)))
    text = to_markdown_table(table[["model", "attack", "eps", "r", "p_value", "n_sizes"]])
    lines = text.strip().split("\n")
    assert len(lines) == 2 + len(table)
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["model", "attack", "eps", "r", "p_value", "n_sizes"]
    assert set(lines[1]) <= set("|-: ") and lines[1].count("|") == 7
    assert all(line.count("|") == 7 for line in lines)
    assert "1.000" in text and "resnet18" in text
    odd = to_markdown_table(pd.DataFrame({"a|b": ["x|y"], "v": [np.nan]}))
    assert "0.03137" in to_markdown_table(table, floatfmt={"eps": ".5f"})
    assert "a\\|b" in odd and "x\\|y" in odd and odd.count("\n") == 3
