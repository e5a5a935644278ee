"""Statistical analysis of the study's tidy tables: scaling-law fits and sharpness correlations.

Scaling laws (Konz & Mazurowski, ICLR 2024), fitted by ordinary least squares:

    Eq. 2   log L = -(1/d) * alpha * log N + beta * log K_F + a       (d = d_data, e.g. d_mle)
    Eq. 4   log L = -(1/d_repr) * alpha' * log N + b                  (d_repr = representation ID)

i.e. a linear regression of y = log L on the regressors x1 = -log(N)/d, x2 = log K_F (Eq. 2 only)
and an intercept. All logarithms are natural logarithms. The coefficients are named ``alpha``,
``beta`` and ``a`` in every fit (for Eq. 4 ``alpha`` is the paper's alpha' and ``a`` its b).

Model selection quantities treat the errors as i.i.d. Gaussian; with RSS the residual sum of
squares, n the number of rows and p the number of regression coefficients (intercept included):

    loglik = -n/2 * (log(2 pi RSS / n) + 1)     (log-likelihood at the MLE sigma^2 = RSS / n)
    k      = p + 1                              (the coefficients and sigma)
    AIC    = 2 k - 2 loglik
    BIC    = k log n - 2 loglik

Fits are statsmodels OLS. Two kinds of standard error are reported side by side:

- ``iid``: the unbiased s^2 = RSS / (n - p); CIs and p-values from t with n - p dof.
- ``cluster``: cluster-robust by dataset (statsmodels cov_type="cluster", CRV1): the runs of
  one dataset share its images and K_F, so they are not independent draws. With G clusters,
  X the design and e_g cluster g's residuals,
      V = c (X'X)^-1 [sum_g X_g' e_g e_g' X_g] (X'X)^-1,   c = G/(G-1) * (n-1)/(n-p),
  and CIs and p-values from t with G - 1 dof. Undefined (NaN, with a note) for G < 2.

Runs that did not fit their training set (``fitted`` False) are left out by default.

Cross-domain claim (paper Sec. 5.2, App. C.1): Eq. 2 pooled over the natural and medical
domains, (a) with log K_F, (b) without, (c) with a domain indicator instead of log K_F; a vs b
by a likelihood-ratio test (nested) and a cluster-robust Wald test of beta, a, b and c by
AIC/BIC (c and a are not nested), and whether alpha = 1 and beta = 1 lie in the 95% CIs.

Sharpness correlations (Table 1 of the paper): each dataset's attack loss penalty and label
sharpness K_F are averaged over training-set sizes and seeds first; Pearson's r is then taken
across datasets for each model x attack x eps, with its p-value and a Fisher-z interval.

Every function here is pure: it takes DataFrames and returns dicts or new DataFrames.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from .tables import numeric_column


# --------------------------------------------------------------------------------------- helpers

def _require_columns(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")


def _numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    return numeric_column(table, column).to_numpy()


def _complete_rows(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows with a value in every one of ``columns`` (missing values are dropped, not imputed)."""
    _require_columns(table, columns)
    return table.loc[table[list(columns)].notna().all(axis=1)]


def _positive_log(values: np.ndarray, column: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"column {column!r} has non-finite values")
    if np.any(values <= 0):
        bad = values[values <= 0][:3].tolist()
        raise ValueError(f"column {column!r} must be positive to take its logarithm; found {bad}")
    return np.log(values)


# ------------------------------------------------------------------------------------------- OLS

def _parameter_table(results, names: Sequence[str], level: float) -> dict:
    """{name: {estimate, se, t, p_value, ci_low, ci_high}} of a statsmodels results object."""
    coef = np.asarray(results.params, dtype=float)
    se = np.asarray(results.bse, dtype=float)
    ci = np.asarray(results.conf_int(alpha=1 - level), dtype=float)
    # An exact fit has se = 0: its t and p are undefined (NaN), not infinite and zero.
    defined = se > 0
    t_values = np.where(defined, coef / np.where(defined, se, 1.0), np.nan)
    p_values = np.where(defined, np.asarray(results.pvalues, dtype=float), np.nan)
    return {
        name: {"estimate": float(coef[i]), "se": float(se[i]), "t": float(t_values[i]),
               "p_value": float(p_values[i]), "ci_low": float(ci[i, 0]), "ci_high": float(ci[i, 1])}
        for i, name in enumerate(names)
    }


def ols(y: np.ndarray, X: np.ndarray, names: Sequence[str], level: float = 0.95,
        groups: Sequence | None = None, group_label: str = "cluster") -> dict:
    """Ordinary least squares of y on the columns of X (which should include an intercept column),
    by statsmodels, with i.i.d. and (given ``groups``) cluster-robust standard errors.

    Returns a dict with ``params`` ({name: {estimate, se, t, p_value, ci_low, ci_high}}, i.i.d.
    errors, t with n - p dof), ``n``, ``p``, ``dof``, ``k``, ``rss``, ``tss``, ``r2``, ``sigma2``
    (unbiased), ``loglik``, ``aic``, ``bic``, ``fitted`` and ``residuals`` (see the module
    docstring for the formulas), and the cluster-robust counterparts: ``params_cluster`` (same
    keys; None without ``groups`` or with fewer than 2 clusters), ``n_clusters``, ``dof_cluster``
    (G - 1), ``cluster_note`` (why params_cluster is None; "" otherwise) and ``cluster_results``
    (the statsmodels results, for Wald tests; None with params_cluster). ``group_label`` names the
    clustering variable in the note.
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    if len(names) != p:
        raise ValueError(f"{len(names)} names for {p} regressors")
    if n <= p:
        raise ValueError(f"too few rows: {n} rows for {p} coefficients (need at least {p + 1})")
    rank = np.linalg.matrix_rank(X)
    if rank < p:  # statsmodels would fall back to a pseudo-inverse silently
        raise ValueError(f"regressors {list(names)} are collinear (rank {rank} < {p}); "
                         "e.g. a constant K_F or intrinsic dimension within the group")
    model = sm.OLS(y, X)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an exact fit (RSS = 0) divides by zero
        iid = model.fit()
        params = _parameter_table(iid, names, level)
        rss = float(iid.ssr)
        loglik = float(iid.llf) if rss > 0 else math.inf
        cluster = _cluster_fit(model, names, level, groups, group_label)
    tss = float(((y - y.mean()) ** 2).sum())
    k = p + 1  # the coefficients and sigma
    return {
        "params": params, "n": n, "p": p, "dof": n - p, "k": k, "level": level,
        "rss": rss, "tss": tss, "r2": 1 - rss / tss if tss > 0 else float("nan"),
        "sigma2": float(iid.scale), "loglik": loglik,
        "aic": 2 * k - 2 * loglik, "bic": k * math.log(n) - 2 * loglik,
        "fitted": np.asarray(iid.fittedvalues), "residuals": np.asarray(iid.resid),
        **cluster,
    }


def _cluster_fit(model, names: Sequence[str], level: float, groups: Sequence | None,
                 group_label: str) -> dict:
    """The cluster-robust part of :func:`ols`'s dict (CRV1, as Stata's vce(cluster)).

    statsmodels scales the sandwich by G/(G-1) * (n-1)/(n-p) and tests with t on G - 1 dof: with
    few clusters the usual normal approximation is far too optimistic.
    """
    none = {"params_cluster": None, "n_clusters": None, "dof_cluster": None, "cluster_note": "",
            "cluster_results": None}
    if groups is None:
        return none
    groups = pd.Series(np.asarray(groups, dtype=object))
    if groups.isna().any():
        raise ValueError(f"cluster variable {group_label!r} has missing values")
    codes, uniques = pd.factorize(groups, sort=True)
    n_clusters = len(uniques)
    if n_clusters < 2:
        return {**none, "n_clusters": n_clusters, "cluster_note": (
            f"cluster-robust SEs undefined: {n_clusters} {group_label} cluster "
            f"({', '.join(map(str, uniques))}); need at least 2")}
    results = model.fit(cov_type="cluster", use_t=True,
                        cov_kwds={"groups": codes, "use_correction": True, "df_correction": True})
    return {"params_cluster": _parameter_table(results, names, level), "n_clusters": n_clusters,
            "dof_cluster": n_clusters - 1, "cluster_note": "", "cluster_results": results}


def _wald_zero(results, names: Sequence[str], name: str) -> dict:
    """statsmodels' Wald test of ``name`` = 0 with the covariance of ``results``: F(1, G - 1)."""
    restriction = np.zeros((1, len(names)))
    restriction[0, list(names).index(name)] = 1.0
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        test = results.wald_test(restriction, use_f=True, scalar=True)
    return {"stat": float(test.statistic), "p_value": float(test.pvalue), "df_num": 1,
            "df_denom": int(test.df_denom)}


def likelihood_ratio(full: dict, reduced: dict) -> dict:
    """Likelihood-ratio and F test of a reduced OLS fit nested in ``full`` (same rows).

    ``lr_stat`` = 2 (loglik_full - loglik_reduced) = n log(RSS_reduced / RSS_full), chi-squared with
    ``lr_df`` = p_full - p_reduced dof (``lr_p_value``); ``f_stat`` and ``f_p_value`` are the exact
    nested-OLS F test (lr_df and n - p_full dof). Both assume i.i.d. Gaussian errors.
    """
    if full["n"] != reduced["n"]:
        raise ValueError(f"nested fits on different rows: n = {full['n']} and {reduced['n']}")
    lr_df = full["p"] - reduced["p"]
    lr_stat = max(2.0 * (full["loglik"] - reduced["loglik"]), 0.0)
    if math.isnan(lr_stat):  # both fits exact (inf - inf)
        lr_stat = 0.0
    rss_f, rss_r, dof = full["rss"], reduced["rss"], full["dof"]
    if rss_f > 0:
        f_stat = max(rss_r - rss_f, 0.0) / lr_df / (rss_f / dof)
        f_p = float(stats.f.sf(f_stat, lr_df, dof))
    else:
        f_stat, f_p = (math.inf, 0.0) if rss_r > 0 else (float("nan"), float("nan"))
    return {"lr_stat": lr_stat, "lr_df": lr_df, "lr_p_value": float(stats.chi2.sf(lr_stat, lr_df)),
            "f_stat": f_stat, "f_p_value": f_p}


# ---------------------------------------------------------------------------------- scaling laws

def as_bool(series: pd.Series, name: str) -> pd.Series:
    """A boolean column, also when read back from CSV as text ('True'/'False', 1/0): a CSV with
    gaps reads as text. Anything else is a ValueError naming the column."""
    if pd.api.types.is_bool_dtype(series):
        return series
    mapping = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
    text = series.astype(str).str.strip().str.lower()
    bad = sorted(set(text) - set(mapping))
    if bad:
        raise ValueError(f"column {name!r} must be boolean (True/False); found {bad[:3]}")
    return text.map(mapping).astype(bool)


def exclude_unfitted_runs(table: pd.DataFrame, fitted_column: str = "fitted"
                          ) -> tuple[pd.DataFrame, int]:
    """(the runs that fitted their training set, the number of runs left out).

    The paper's laws describe models trained to fit their training set; a run that gave up at
    max_epochs has a test loss of a different kind. Raises ValueError naming the column when it is
    missing or not boolean.
    """
    _require_columns(table, [fitted_column])
    flags = as_bool(table[fitted_column], fitted_column).to_numpy(dtype=bool)
    return table.loc[flags], int((~flags).sum())


def scaling_law_design(table: pd.DataFrame, d_column: str = "d_mle", with_sharpness: bool = True,
                       loss_column: str = "test_loss", n_column: str = "n_train",
                       kf_column: str = "k_f") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(y, X, names) for Eq. 2 (or Eq. 4 when ``with_sharpness`` is False) on every row of table."""
    columns = [loss_column, n_column, d_column] + ([kf_column] if with_sharpness else [])
    _require_columns(table, columns)
    y = _positive_log(_numeric(table, loss_column), loss_column)
    log_n = _positive_log(_numeric(table, n_column), n_column)
    d = _numeric(table, d_column)
    if not np.all(np.isfinite(d)) or np.any(d <= 0):
        raise ValueError(f"column {d_column!r} (intrinsic dimension) must be positive and finite")
    regressors, names = [-log_n / d], ["alpha"]
    if with_sharpness:
        regressors.append(_positive_log(_numeric(table, kf_column), kf_column))
        names.append("beta")
    regressors.append(np.ones(len(table)))
    names.append("a")
    return y, np.column_stack(regressors), names


def _fit(rows: pd.DataFrame, y: np.ndarray, X: np.ndarray, names: list[str], n_table: int,
         cluster_column: str | None, level: float, **fields) -> dict:
    """:func:`ols` on a design, without fitted values and residuals, with the fields of a law."""
    groups = rows[cluster_column].to_numpy() if cluster_column else None
    fit = ols(y, X, names, level=level, groups=groups, group_label=cluster_column or "cluster")
    fit.pop("fitted")
    fit.pop("residuals")
    results = fit.pop("cluster_results")
    fit["wald_beta"] = (_wald_zero(results, names, "beta")
                        if results is not None and "beta" in names else None)
    fit.update(fields)
    fit.update({"cluster_column": cluster_column, "n_dropped": n_table - len(rows),
                "coef": {name: values["estimate"] for name, values in fit["params"].items()}})
    return fit


def fit_scaling_law(table: pd.DataFrame, d_column: str = "d_mle", with_sharpness: bool = True,
                    loss_column: str = "test_loss", *, n_column: str = "n_train",
                    kf_column: str = "k_f", cluster_column: str | None = None,
                    level: float = 0.95) -> dict:
    """Least-squares fit of Eq. 2 (``with_sharpness``) or its K_F-free form (Eq. 4 with d = d_repr).

    Fits one table; the caller groups (e.g. by domain) and excludes unfitted runs. Rows missing
    any used column are dropped (counted in ``n_dropped``). With ``cluster_column`` (e.g.
    "dataset": runs of one dataset share its images and K_F, so they are not independent) the
    cluster-robust values of :func:`ols` are filled in, and ``wald_beta`` is the cluster-robust
    Wald test of beta = 0 (Eq. 2 only; else None). Raises ValueError naming the column when a
    column is missing, when a loss, N or K_F is non-positive (no logarithm), when d is
    non-positive, or when there are too few rows (at least one more than coefficients) or
    collinear regressors.

    Returns the dict of :func:`ols` (without fitted values, residuals and cluster_results) plus
    ``law`` ("eq2_with_kf" or "eq2_without_kf"), ``d_column``, ``loss_column``,
    ``with_sharpness``, ``cluster_column``, ``wald_beta``, ``n_dropped`` and ``coef``
    ({name: estimate}).
    """
    columns = ([loss_column, n_column, d_column] + ([kf_column] if with_sharpness else [])
               + ([cluster_column] if cluster_column else []))
    rows = _complete_rows(table, columns)
    if len(rows) == 0:
        raise ValueError(f"too few rows: no row has all of {columns}")
    y, X, names = scaling_law_design(rows, d_column, with_sharpness, loss_column, n_column, kf_column)
    return _fit(rows, y, X, names, len(table), cluster_column, level,
                law="eq2_with_kf" if with_sharpness else "eq2_without_kf", d_column=d_column,
                loss_column=loss_column, with_sharpness=with_sharpness)


def fit_domain_indicator_law(table: pd.DataFrame, d_column: str = "d_mle",
                             loss_column: str = "test_loss", *, n_column: str = "n_train",
                             domain_column: str = "domain", cluster_column: str | None = None,
                             level: float = 0.95) -> dict:
    """Eq. 2 with a domain indicator in place of log K_F:

        log L = -alpha log(N) / d + sum_j gamma_j [domain = j] + a

    over every domain j but the first in sorted order (the reference, whose intercept is a); the
    parameters are named ``domain[j]``. The alternative explanation of the natural/medical gap
    that K_F competes with (paper Sec. 5.2). Returns the dict of :func:`fit_scaling_law` with
    ``law`` "eq2_domain_indicator" and ``reference_domain``. Raises ValueError naming the column
    with fewer than 2 domains.
    """
    columns = ([loss_column, n_column, d_column, domain_column]
               + ([cluster_column] if cluster_column else []))
    rows = _complete_rows(table, columns)
    domains = sorted(rows[domain_column].astype(str).unique())
    if len(domains) < 2:
        raise ValueError(f"a domain indicator needs at least 2 values of column "
                         f"{domain_column!r}; found {domains}")
    y, X, _ = scaling_law_design(rows, d_column, False, loss_column, n_column)
    labels = rows[domain_column].astype(str).to_numpy()
    indicators = [(labels == domain).astype(float) for domain in domains[1:]]
    X = np.column_stack([X[:, 0], *indicators, X[:, 1]])
    names = ["alpha", *[f"domain[{domain}]" for domain in domains[1:]], "a"]
    return _fit(rows, y, X, names, len(table), cluster_column, level,
                law="eq2_domain_indicator", d_column=d_column, loss_column=loss_column,
                with_sharpness=False, reference_domain=domains[0])


def compare_sharpness_term(table: pd.DataFrame, d_column: str = "d_mle",
                           loss_column: str = "test_loss", *, n_column: str = "n_train",
                           kf_column: str = "k_f", cluster_column: str | None = None,
                           level: float = 0.95) -> dict:
    """Eq. 2 with and without the K_F term, fitted on the same rows, and their comparison.

    Returns ``with_kf`` and ``without_kf`` (fits as from :func:`fit_scaling_law`),
    ``delta_aic`` and ``delta_bic`` (with minus without: negative favours the K_F term), and the
    tests of :func:`likelihood_ratio` (``lr_stat``, ``lr_df`` = 1, ``lr_p_value``, ``f_stat``,
    ``f_p_value``).
    """
    rows = _complete_rows(table, [loss_column, n_column, d_column, kf_column]
                          + ([cluster_column] if cluster_column else []))
    fits = {with_kf: fit_scaling_law(rows, d_column, with_kf, loss_column, n_column=n_column,
                                     kf_column=kf_column, cluster_column=cluster_column,
                                     level=level)
            for with_kf in (True, False)}
    n_dropped = len(table) - len(rows)
    fits[True]["n_dropped"] = fits[False]["n_dropped"] = n_dropped
    return {
        "with_kf": fits[True], "without_kf": fits[False], "d_column": d_column,
        "n": fits[True]["n"], "n_dropped": n_dropped,
        "delta_aic": fits[True]["aic"] - fits[False]["aic"],
        "delta_bic": fits[True]["bic"] - fits[False]["bic"],
        **likelihood_ratio(fits[True], fits[False]),
    }


def cross_domain_fits(runs: pd.DataFrame, exclude_domains: Sequence[str] = ("synthetic",), *,
                      d_column: str = "d_mle", loss_column: str = "test_loss",
                      n_column: str = "n_train", kf_column: str = "k_f",
                      domain_column: str = "domain", cluster_column: str | None = "dataset",
                      exclude_unfitted: bool = True, fitted_column: str = "fitted",
                      level: float = 0.95) -> dict:
    """The cross-domain claim (paper Sec. 5.2, App. C.1): Eq. 2 pooled over every domain of
    ``runs`` but ``exclude_domains`` (natural + medical by default), fitted (a) with log K_F,
    (b) without it and (c) with a domain indicator instead (:func:`fit_domain_indicator_law`),
    all on the same rows, clustered by ``cluster_column``.

    Runs with ``fitted_column`` False are left out first when ``exclude_unfitted`` (counted in
    ``n_unfitted_excluded``, within the pooled domains). Returns ``domains`` (pooled, sorted),
    ``with_kf``, ``without_kf``, ``domain_indicator`` (fits; the last None when it cannot be
    made, with the reason in ``domain_indicator_error``), ``lr`` (:func:`likelihood_ratio` of a
    vs b), ``wald_beta`` (cluster-robust Wald test of beta = 0 in a, or None), ``n``,
    ``n_dropped`` and ``n_unfitted_excluded``. (c) is not nested in (a): compare them by AIC/BIC.
    Raises ValueError when (a) or (b) cannot be fitted or no run is left.
    """
    _require_columns(runs, [domain_column])
    present = sorted(runs[domain_column].dropna().astype(str).unique())
    domains = [domain for domain in present if domain not in set(exclude_domains)]
    pooled = runs[runs[domain_column].astype(str).isin(domains)]
    if len(pooled) == 0:
        raise ValueError(f"no runs left in column {domain_column!r} after excluding domains "
                         f"{list(exclude_domains)}; domains present: {present}")
    n_unfitted = 0
    if exclude_unfitted:
        pooled, n_unfitted = exclude_unfitted_runs(pooled, fitted_column)
        if len(pooled) == 0:
            raise ValueError(f"all {n_unfitted} runs of domains {domains} have "
                             f"{fitted_column} == False (excluded as unfitted)")
    columns = ([loss_column, n_column, d_column, kf_column, domain_column]
               + ([cluster_column] if cluster_column else []))
    rows = _complete_rows(pooled, columns)
    comparison = compare_sharpness_term(rows, d_column, loss_column, n_column=n_column,
                                        kf_column=kf_column, cluster_column=cluster_column,
                                        level=level)
    try:
        indicator, indicator_error = fit_domain_indicator_law(
            rows, d_column, loss_column, n_column=n_column, domain_column=domain_column,
            cluster_column=cluster_column, level=level), ""
    except ValueError as error:
        indicator, indicator_error = None, str(error)
    n_dropped = len(pooled) - len(rows)
    for fit in (comparison["with_kf"], comparison["without_kf"], indicator):
        if fit is not None:
            fit["n_dropped"] = n_dropped
    return {
        "domains": domains, "with_kf": comparison["with_kf"],
        "without_kf": comparison["without_kf"], "domain_indicator": indicator,
        "domain_indicator_error": indicator_error,
        "lr": {k: comparison[k] for k in ("lr_stat", "lr_df", "lr_p_value", "f_stat", "f_p_value")},
        "wald_beta": comparison["with_kf"]["wald_beta"], "n": comparison["n"],
        "n_dropped": n_dropped, "n_unfitted_excluded": n_unfitted,
    }


# ------------------------------------------------------------------------------- tidy fit tables

PARAMETER_COLUMNS = ["estimate", "se_iid", "ci_low_iid", "ci_high_iid", "p_value_iid",
                     "eq_1_in_ci_iid", "se_cluster", "ci_low_cluster", "ci_high_cluster",
                     "p_value_cluster", "eq_1_in_ci_cluster"]
LAW_COLUMNS = ["n", "n_unfitted_excluded", "n_dropped", "n_clusters", "dof", "r2", "rss", "loglik",
               "aic", "bic"]
FIT_COLUMNS = (["law", "d_column", "parameter"] + PARAMETER_COLUMNS + LAW_COLUMNS
               + ["lr_p_value", "cluster_note", "error"])
CROSS_DOMAIN_COLUMNS = (["law", "domains", "d_column", "parameter"] + PARAMETER_COLUMNS
                        + LAW_COLUMNS + ["delta_aic", "delta_bic", "lr_stat", "lr_p_value",
                                         "wald_beta_stat", "wald_beta_p_value", "cluster_note",
                                         "error"])
# Law name in the tables -> key of cross_domain_fits' result.
CROSS_DOMAIN_LAWS = {"eq2_with_kf": "with_kf", "eq2_without_kf": "without_kf",
                     "eq2_domain_indicator": "domain_indicator"}
# The paper's claim that the coefficients of Eq. 2 are 1 concerns these parameters only.
UNIT_PARAMETERS = ("alpha", "beta")


def _contains_one(values: dict | None) -> bool | None:
    if values is None or math.isnan(values["ci_low"]) or math.isnan(values["ci_high"]):
        return None
    return bool(values["ci_low"] <= 1.0 <= values["ci_high"])


def _fit_rows(keys: dict, law: str, d_column: str, fit: dict | None, extra: dict,
              error: str = "", unit_parameters: Sequence[str] = UNIT_PARAMETERS) -> list[dict]:
    """One row per parameter of ``fit`` (or one row with ``error`` when fit is None)."""
    if fit is None:
        return [{**keys, "law": law, "d_column": d_column, "parameter": None, **extra,
                 "error": error}]
    law_values = {name: fit[name] for name in ("n", "n_dropped", "n_clusters", "dof", "r2", "rss",
                                               "loglik", "aic", "bic")}
    cluster = fit["params_cluster"] or {}
    rows = []
    for name, iid in fit["params"].items():
        robust = cluster.get(name)
        unit = name in unit_parameters
        rows.append({
            **keys, "law": law, "d_column": d_column, "parameter": name,
            "estimate": iid["estimate"],
            **{f"{c}_iid": iid[c] for c in ("se", "ci_low", "ci_high", "p_value")},
            "eq_1_in_ci_iid": _contains_one(iid) if unit else None,
            **{f"{c}_cluster": robust[c] if robust else math.nan
               for c in ("se", "ci_low", "ci_high", "p_value")},
            "eq_1_in_ci_cluster": _contains_one(robust) if unit else None,
            **law_values, **extra, "cluster_note": fit["cluster_note"], "error": "",
        })
    return rows


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Counts as nullable integers: a failed fit's blank must not turn n = 60 into 60.0."""
    for column in ("n", "n_unfitted_excluded", "n_dropped", "n_clusters", "dof"):
        table[column] = table[column].astype("Int64")
    return table


def _grouped(table: pd.DataFrame, groups: list[str], sort: bool = True):
    if not groups:
        return [((), table)]
    return [((key if isinstance(key, tuple) else (key,)), group)
            for key, group in table.groupby(groups, sort=sort, dropna=False)]


def fits_table(runs: pd.DataFrame, groups: Sequence[str] = ("domain",), *, d_column: str = "d_mle",
               d_repr_column: str = "d_repr_twonn", loss_column: str = "test_loss",
               n_column: str = "n_train", kf_column: str = "k_f",
               cluster_column: str | None = "dataset", exclude_unfitted: bool = True,
               fitted_column: str = "fitted", level: float = 0.95,
               errors: str = "raise") -> pd.DataFrame:
    """Tidy table of every law's fit per group: one row per group x law x parameter.

    Laws: ``eq2_with_kf`` and ``eq2_without_kf`` (d = ``d_column``, fitted on the same rows; their
    likelihood-ratio p-value for the K_F term is repeated in ``lr_p_value``) and ``eq4_d_repr``
    (d = ``d_repr_column``, no K_F term). Each parameter has i.i.d. (``*_iid``) and
    cluster-robust (``*_cluster``, clustered by ``cluster_column``; NaN with ``cluster_note`` when
    undefined) standard errors, CIs and p-values, and for alpha and beta of Eq. 2 whether 1 lies in
    the CI (``eq_1_in_ci_*``). Law-level values (n, n_unfitted_excluded, n_dropped, n_clusters,
    dof, r2, rss, loglik, aic, bic) are repeated on each parameter's row. With
    ``exclude_unfitted`` the runs whose ``fitted_column`` is False are left out of every fit and
    counted per group in ``n_unfitted_excluded``. ``groups=()`` fits the whole table at once.

    ``errors="raise"`` propagates a failing fit's ValueError (naming the group);
    ``errors="note"`` writes one row for that group x law with the message in ``error``.
    """
    if errors not in ("raise", "note"):
        raise ValueError(f"errors must be 'raise' or 'note', not {errors!r}")
    groups = list(groups)
    _require_columns(runs, groups + [loss_column, n_column, d_column, d_repr_column, kf_column]
                     + ([cluster_column] if cluster_column else [])
                     + ([fitted_column] if exclude_unfitted else []))
    options = {"loss_column": loss_column, "n_column": n_column, "kf_column": kf_column,
               "cluster_column": cluster_column, "level": level}
    rows: list[dict] = []
    for key, group in _grouped(runs, groups):
        keys = dict(zip(groups, key))
        n_unfitted = 0
        if exclude_unfitted:
            group, n_unfitted = exclude_unfitted_runs(group, fitted_column)
        extra = {"n_unfitted_excluded": n_unfitted}

        def failed(error: ValueError, laws: Sequence[str], d: str) -> list[dict]:
            if n_unfitted and len(group) == 0:  # the reason, not the empty fit's symptom
                error = ValueError(f"all {n_unfitted} runs have {fitted_column} == False "
                                   "(excluded as unfitted)")
            if errors == "raise":
                raise ValueError(f"group {keys}: {error}") from error
            return [row for law in laws
                    for row in _fit_rows(keys, law, d, None, extra, str(error))]

        try:
            comparison = compare_sharpness_term(group, d_column, **options)
        except ValueError as error:
            rows += failed(error, ("eq2_with_kf", "eq2_without_kf"), d_column)
        else:
            lr = {**extra, "lr_p_value": comparison["lr_p_value"]}
            rows += _fit_rows(keys, "eq2_with_kf", d_column, comparison["with_kf"], lr)
            rows += _fit_rows(keys, "eq2_without_kf", d_column, comparison["without_kf"], lr)
        try:
            eq4 = fit_scaling_law(group, d_repr_column, False, **options)
        except ValueError as error:
            rows += failed(error, ("eq4_d_repr",), d_repr_column)
        else:
            # alpha here is the paper's alpha', for which no value is claimed
            rows += _fit_rows(keys, "eq4_d_repr", d_repr_column, eq4, extra, unit_parameters=())
    return _typed(pd.DataFrame(rows, columns=groups + FIT_COLUMNS))


def cross_domain_table(runs: pd.DataFrame, groups: Sequence[str] = (), *,
                       exclude_domains: Sequence[str] = ("synthetic",), d_column: str = "d_mle",
                       loss_column: str = "test_loss", n_column: str = "n_train",
                       kf_column: str = "k_f", domain_column: str = "domain",
                       cluster_column: str | None = "dataset", exclude_unfitted: bool = True,
                       fitted_column: str = "fitted", level: float = 0.95,
                       errors: str = "raise") -> pd.DataFrame:
    """Tidy table of :func:`cross_domain_fits` per group (e.g. per model; ``()``: all runs).

    One row per group x law x parameter, laws ``eq2_with_kf`` (a), ``eq2_without_kf`` (b) and
    ``eq2_domain_indicator`` (c), with the columns of :func:`fits_table` plus ``domains`` (the
    pooled domains, "+"-joined), ``delta_aic`` and ``delta_bic`` (this law's minus a's: positive
    favours a), ``lr_stat``/``lr_p_value`` (a vs b, on a's and b's rows) and
    ``wald_beta_stat``/``wald_beta_p_value`` (cluster-robust F(1, G-1) test of beta = 0, on a's
    rows). ``errors`` as in :func:`fits_table`; a domain indicator that cannot be fitted (one
    domain) is always a noted row, since a and b stand without it.
    """
    if errors not in ("raise", "note"):
        raise ValueError(f"errors must be 'raise' or 'note', not {errors!r}")
    groups = list(groups)
    _require_columns(runs, groups)
    rows: list[dict] = []
    for key, group in _grouped(runs, groups):
        keys = dict(zip(groups, key))
        try:
            result = cross_domain_fits(
                group, exclude_domains, d_column=d_column, loss_column=loss_column,
                n_column=n_column, kf_column=kf_column, domain_column=domain_column,
                cluster_column=cluster_column, exclude_unfitted=exclude_unfitted,
                fitted_column=fitted_column, level=level)
        except ValueError as error:
            if errors == "raise":
                raise ValueError(f"group {keys}: {error}") from error
            rows += [row for law in CROSS_DOMAIN_LAWS
                     for row in _fit_rows(keys, law, d_column, None, {}, str(error))]
            continue
        base = {"domains": "+".join(result["domains"]),
                "n_unfitted_excluded": result["n_unfitted_excluded"]}
        reference = result["with_kf"]
        lr = {"lr_stat": result["lr"]["lr_stat"], "lr_p_value": result["lr"]["lr_p_value"]}
        wald = result["wald_beta"] or {"stat": math.nan, "p_value": math.nan}
        for law, extra in (("eq2_with_kf", {**lr, "wald_beta_stat": wald["stat"],
                                            "wald_beta_p_value": wald["p_value"]}),
                           ("eq2_without_kf", lr), ("eq2_domain_indicator", {})):
            fit = result[CROSS_DOMAIN_LAWS[law]]
            if fit is None:
                rows += _fit_rows(keys, law, d_column, None, base,
                                  result["domain_indicator_error"])
                continue
            deltas = {"delta_aic": fit["aic"] - reference["aic"],
                      "delta_bic": fit["bic"] - reference["bic"]}
            rows += _fit_rows(keys, law, d_column, fit, {**base, **deltas, **extra})
    return _typed(pd.DataFrame(rows, columns=groups + CROSS_DOMAIN_COLUMNS))


def _yes_no(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "yes" if bool(value) else "no"


def cross_domain_markdown(table: pd.DataFrame, groups: Sequence[str] = ()) -> str:
    """A short Markdown summary of :func:`cross_domain_table`'s ``table``, one section per group:
    the three laws' alpha, beta (cluster-robust 95% CIs), R^2, AIC/BIC; the likelihood-ratio and
    Wald tests of the K_F term; whether alpha = 1 and beta = 1 lie in the CIs; the preferred law."""
    groups = list(groups)
    _require_columns(table, groups + CROSS_DOMAIN_COLUMNS)
    lines = ["# Cross-domain scaling law (Eq. 2 pooled over domains)", ""]
    for key, group in _grouped(table, groups, sort=False):  # in the table's order
        title = ", ".join(f"{g} = {k}" for g, k in zip(groups, key)) or "all runs"
        lines += [f"## {title}", ""]
        failed = group[group["error"].fillna("") != ""]
        fitted = group[group["error"].fillna("") == ""]
        if fitted.empty:
            lines += [f"No fit: {failed['error'].iloc[0]}", ""]
            continue
        first = fitted.iloc[0]
        clusters = first["n_clusters"]
        # with few datasets the cluster-robust intervals are wide: say how few dof they rest on
        dof = (f"cluster-robust intervals: t with {int(clusters) - 1} dof; "
               if not pd.isna(clusters) and clusters >= 2 else "")
        lines.append(f"Domains pooled: {first['domains']}; n = {int(first['n'])} runs in "
                     f"{_count(clusters)} dataset clusters ({dof}"
                     f"{int(first['n_unfitted_excluded'])} unfitted runs excluded, "
                     f"{int(first['n_dropped'])} with missing values dropped).")
        if first["cluster_note"]:
            lines.append(f"Note: {first['cluster_note']}.")
        lines.append("")
        summary = []
        for law, rows in fitted.groupby("law", sort=False):
            by_name = rows.set_index("parameter")
            entry = {"law": law}
            for name in UNIT_PARAMETERS:
                if name in by_name.index:
                    row = by_name.loc[name]
                    entry[name] = row["estimate"]
                    entry[f"{name} 95% CI (cluster)"] = _interval(row, "cluster")
                else:
                    entry[name], entry[f"{name} 95% CI (cluster)"] = math.nan, ""
            first_row = rows.iloc[0]
            entry.update({"R^2": first_row["r2"], "AIC": first_row["aic"], "BIC": first_row["bic"],
                          "dAIC vs a": first_row["delta_aic"], "dBIC vs a": first_row["delta_bic"]})
            summary.append(entry)
        lines.append(to_markdown_table(pd.DataFrame(summary)).rstrip("\n"))
        lines.append("")
        with_kf = fitted[fitted["law"] == "eq2_with_kf"].set_index("parameter")
        if len(with_kf):
            head = with_kf.iloc[0]
            lines.append(f"- Likelihood-ratio test of the K_F term (a vs b; assumes independent "
                         f"runs): LR = {head['lr_stat']:.3g}, {_p(head['lr_p_value'])}.")
            lines.append(f"- Cluster-robust Wald test of beta = 0 (allows correlated runs within a "
                         f"dataset): F(1, G-1) = {head['wald_beta_stat']:.3g}, "
                         f"{_p(head['wald_beta_p_value'])}.")
            for name in UNIT_PARAMETERS:
                row = with_kf.loc[name]
                lines.append(f"- {name} = 1 in the 95% CI of (a): "
                             f"{_yes_no(row['eq_1_in_ci_cluster'])} (cluster-robust), "
                             f"{_yes_no(row['eq_1_in_ci_iid'])} (i.i.d.).")
        laws = fitted.drop_duplicates("law")
        for criterion in ("aic", "bic"):
            best = laws.loc[laws[criterion].idxmin(), "law"]
            lines.append(f"- Lowest {criterion.upper()}: {best}.")
        for row in failed.itertuples():
            lines.append(f"- {row.law} not fitted: {row.error}")
        lines.append("")
    return "\n".join(lines)


def _p(value) -> str:
    if pd.isna(value):
        return "p undefined"
    return "p < 1e-300" if value == 0 else f"p = {value:.3g}"  # 0 is a float underflow


def _count(value) -> str:
    return "no" if value is None or pd.isna(value) else str(int(value))


def _interval(row, se_type: str) -> str:
    low, high = row[f"ci_low_{se_type}"], row[f"ci_high_{se_type}"]
    return "" if pd.isna(low) or pd.isna(high) else f"[{low:.3g}, {high:.3g}]"


# -------------------------------------------------------------------------------- correlations

CORRELATION_COLUMNS = ["x_column", "y_column", "r", "p_value", "ci_low", "ci_high", "n_datasets",
                       "n_sizes", "note"]


def mean_t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its Student-t confidence interval; one value has no
    spread to estimate, so its interval is the value itself."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("mean_t_interval: no values")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
                 / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def finite_mean_interval(values, level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n): ``mean_t_interval`` over the finite values; NaN (and n = 0) when
    there are none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan, 0
    mean, low, high = mean_t_interval(values, level)
    return mean, low, high, len(values)


def pearson_with_ci(x, y, level: float = 0.95, *, x_name: str = "x", y_name: str = "y") -> dict:
    """Pearson's r of paired values with its two-sided p-value and Fisher-z confidence interval.

    r = sum(dx dy) / sqrt(sum(dx^2) sum(dy^2)); p from t = r sqrt((n - 2) / (1 - r^2)) with n - 2
    dof (as scipy.stats.pearsonr); CI = tanh(atanh(r) -/+ z_{(1+level)/2} / sqrt(n - 3)).
    Returns {r, p_value, ci_low, ci_high, n, note}: r and p are NaN, with the reason in ``note``,
    for fewer than 3 pairs or a constant input; the CI is NaN (noted) for exactly 3 pairs.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pearson_with_ci: {x_name} and {y_name} must be 1-d and paired "
                         f"(shapes {x.shape} and {y.shape})")
    n = len(x)
    out = {"r": math.nan, "p_value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n,
           "note": ""}
    if n < 3:
        out["note"] = f"{n} dataset(s): r needs at least 3"
        return out
    for values, name in ((x, x_name), (y, y_name)):
        if np.ptp(values) == 0:
            out["note"] = f"{name} is the same for every dataset: r undefined"
            return out
    dx, dy = x - x.mean(), y - y.mean()
    r = float(np.clip(dx @ dy / math.sqrt((dx @ dx) * (dy @ dy)), -1.0, 1.0))
    p = 0.0 if abs(r) == 1 else float(2 * stats.t.sf(abs(r) * math.sqrt((n - 2) / (1 - r * r)), n - 2))
    out.update(r=r, p_value=p)
    if n < 4:  # Fisher z has standard error 1 / sqrt(n - 3)
        out["note"] = "3 datasets: no Fisher-z interval (needs at least 4)"
        return out
    with np.errstate(divide="ignore"):  # |r| = 1: atanh is infinite, the interval is [r, r]
        z = float(np.arctanh(r))
    half = float(stats.norm.ppf(0.5 + level / 2)) / math.sqrt(n - 3)
    out.update(ci_low=float(np.tanh(z - half)), ci_high=float(np.tanh(z + half)))
    return out


def sharpness_points(attacks: pd.DataFrame, by: Sequence[str] = ("model", "attack", "eps"), *,
                     x: str = "k_f_255", y: str = "loss_penalty", size_column: str = "n_train",
                     dataset_column: str = "dataset", level: float = 0.95) -> pd.DataFrame:
    """One point per ``by`` group and dataset: Table 1's per-dataset values and Figure 3's points.

    Rows are averaged per training size N first (over seeds and any other axis), then over N, so
    each N weighs the same even where a seed is missing. ``<x>``/``<y>`` are those means,
    ``<x>_ci_low``/``_ci_high`` and ``<y>_ci_low``/``_ci_high`` the Student-t interval over the
    per-N means (one N: no interval), ``n_sizes`` the number of N and ``n_rows`` the rows used.
    The dataset's ``domain`` is kept when the table has one. Rows with a non-finite x or y are
    left out; their count is ``result.attrs["n_dropped"]``.
    """
    by = list(by)
    _require_columns(attacks, by + [size_column, dataset_column, x, y])
    xs, ys = _numeric(attacks, x), _numeric(attacks, y)
    finite = attacks.loc[np.isfinite(xs) & np.isfinite(ys)]
    keys = by + [dataset_column]
    extra = ["domain"] if "domain" in attacks.columns and "domain" not in keys else []
    if extra:
        domains = finite.groupby(dataset_column)["domain"].nunique()
        if (domains > 1).any():
            raise ValueError(f"column 'domain' differs within dataset(s) {list(domains[domains > 1].index)}")
    per_size = finite.groupby(keys + extra + [size_column], sort=True, dropna=False).agg(
        **{x: (x, "mean"), y: (y, "mean"), "n_rows": (y, "size")}).reset_index()
    rows = []
    for key, group in per_size.groupby(keys + extra, sort=True, dropna=False):
        row = dict(zip(keys + extra, key))
        for column in (x, y):
            mean, low, high = mean_t_interval(group[column].to_numpy(float), level)
            row.update({column: mean, f"{column}_ci_low": low, f"{column}_ci_high": high})
        row.update(n_sizes=len(group), n_rows=int(group["n_rows"].sum()))
        rows.append(row)
    columns = keys + extra + [f"{c}{s}" for c in (x, y) for s in ("", "_ci_low", "_ci_high")]
    points = pd.DataFrame(rows, columns=columns + ["n_sizes", "n_rows"])
    points.attrs["n_dropped"] = int(len(attacks) - len(finite))
    return points


def sharpness_correlations(attacks: pd.DataFrame, by: Sequence[str] = ("model", "attack", "eps"),
                           *, x: str = "k_f_255", y: str = "loss_penalty", size_column: str = "n_train",
                           dataset_column: str = "dataset", level: float = 0.95) -> pd.DataFrame:
    """Table 1: Pearson r between ``y`` (the attack's loss penalty) and ``x`` (K_F) across datasets.

    As in the paper, each dataset is averaged over N and seeds first (:func:`sharpness_points`:
    over seeds at each N, then over N; K_F over the same rows), then r is taken across the
    datasets of each ``by`` group (:func:`pearson_with_ci`). Adding ``domain`` to ``by`` gives
    the per-domain correlations; ``y="accuracy_penalty"`` the accuracy version (App. E.3).
    Rows with a non-finite x or y are left out.

    One row per ``by`` group: ``x_column``, ``y_column``, ``r``, ``p_value`` (two-sided),
    ``ci_low``/``ci_high`` (Fisher z, ``level``), ``n_datasets``, ``n_sizes`` (fewest N of any of
    its datasets) and ``note`` (why r or its interval is NaN, else empty).
    """
    by = list(by)
    points = sharpness_points(attacks, by, x=x, y=y, size_column=size_column,
                              dataset_column=dataset_column, level=level)
    rows = []
    for key, group in points.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        result = pearson_with_ci(group[x], group[y], level, x_name=x, y_name=y)
        rows.append({**dict(zip(by, key)), "x_column": x, "y_column": y,
                     **{c: result[c] for c in ("r", "p_value", "ci_low", "ci_high", "note")},
                     "n_datasets": len(group), "n_sizes": int(group["n_sizes"].min())})
    return pd.DataFrame(rows, columns=by + CORRELATION_COLUMNS)


def sharpness_markdown(table: pd.DataFrame, intro: str, eps_column: str = "eps_255") -> str:
    """Markdown of a :func:`sharpness_correlations` table: r laid out as the paper's Table 1
    (a row per attack, model and any further key; a column per eps in 1/255 units), then every
    statistic in long form."""
    _require_columns(table, [eps_column] + CORRELATION_COLUMNS)
    keys = [c for c in table.columns if c not in CORRELATION_COLUMNS and c != eps_column]
    keys = sorted(keys, key=lambda c: c != "attack")  # attack first, as the paper's blocks
    wide = table.pivot(index=keys, columns=eps_column, values="r")  # keeps NaN r, unlike pivot_table
    wide = wide.reindex(columns=sorted(table[eps_column].unique()))
    wide.columns = [f"eps = {float(e):g}/255" for e in wide.columns]
    long = table[keys + [eps_column] + [c for c in CORRELATION_COLUMNS if c not in ("x_column", "y_column")]]
    return (f"{intro}\n\nPearson r:\n\n"
            + to_markdown_table(wide.reset_index(), floatfmt=".2f")
            + "\nEvery statistic (p two-sided; CI: Fisher z, 95%; blank: see note):\n\n"
            + to_markdown_table(long, floatfmt={eps_column: "g", "p_value": ".3g"}))


# ------------------------------------------------------------------------------------- markdown

def _cell(value, floatfmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown_table(df: pd.DataFrame, floatfmt: str | dict[str, str] = ".3f") -> str:
    """A GitHub-flavoured markdown table of df (no index; numbers right-aligned; NaN left blank).

    ``floatfmt`` is a format spec for floats, or a dict {column: spec} (others get ".3f"),
    e.g. ``{"eps": ".5f"}``. Pipes in cells and headers are escaped.
    """
    formats = {c: (floatfmt.get(str(c), ".3f") if isinstance(floatfmt, dict) else floatfmt)
               for c in df.columns}
    columns = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    body = [[_cell(v, formats[c]) for c, v in zip(df.columns, row)]
            for row in df.itertuples(index=False, name=None)]
    header = [c.replace("|", "\\|") for c in columns]
    widths = [max([3, len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def line(cells):
        return "| " + " | ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w
                             for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(header), rule] + [line(r) for r in body]) + "\n"
