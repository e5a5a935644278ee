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

Standard errors use the unbiased s^2 = RSS / (n - p); confidence intervals and p-values use the
t distribution with n - p degrees of freedom.

Sharpness correlations (Table 1 of the paper): Pearson's r between an attack's loss penalty and
the dataset's label sharpness K_F, across datasets, for each model x attack x eps x training-set
size, then averaged over training-set sizes.

Every function here is pure: it takes DataFrames and returns dicts or new DataFrames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

LAWS = ("eq2_with_kf", "eq2_without_kf", "eq4_d_repr")


# --------------------------------------------------------------------------------------- helpers

def _require_columns(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")


def _numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    try:
        values = pd.to_numeric(table[column], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {column!r} is not numeric: {error}") from error
    return values


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

def ols(y: np.ndarray, X: np.ndarray, names: Sequence[str], level: float = 0.95) -> dict:
    """Ordinary least squares of y on the columns of X (which should include an intercept column).

    Returns a dict with ``params`` ({name: {estimate, se, t, p_value, ci_low, ci_high}}),
    ``n``, ``p``, ``dof``, ``k``, ``rss``, ``tss``, ``r2``, ``sigma2`` (unbiased), ``loglik``,
    ``aic``, ``bic``, ``fitted`` and ``residuals`` (see the module docstring for the formulas).
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    if len(names) != p:
        raise ValueError(f"{len(names)} names for {p} regressors")
    if n <= p:
        raise ValueError(f"too few rows: {n} rows for {p} coefficients (need at least {p + 1})")
    coef, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    if rank < p:
        raise ValueError(f"regressors {list(names)} are collinear (rank {rank} < {p}); "
                         "e.g. a constant K_F or intrinsic dimension within the group")
    fitted = X @ coef
    residuals = y - fitted
    rss = float(residuals @ residuals)
    tss = float(((y - y.mean()) ** 2).sum())
    dof = n - p
    sigma2 = rss / dof
    xtx_inv = np.linalg.inv(X.T @ X)
    se = np.sqrt(np.clip(np.diag(xtx_inv) * sigma2, 0.0, None))
    t_crit = float(stats.t.ppf(0.5 + level / 2, dof))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_values = np.where(se > 0, coef / se, np.nan)
        loglik = -n / 2 * (math.log(2 * math.pi * rss / n) + 1) if rss > 0 else math.inf
    p_values = 2 * stats.t.sf(np.abs(t_values), dof)
    params = {
        name: {
            "estimate": float(coef[i]), "se": float(se[i]), "t": float(t_values[i]),
            "p_value": float(p_values[i]),
            "ci_low": float(coef[i] - t_crit * se[i]), "ci_high": float(coef[i] + t_crit * se[i]),
        }
        for i, name in enumerate(names)
    }
    k = p + 1
    return {
        "params": params, "n": n, "p": p, "dof": dof, "k": k, "level": level,
        "rss": rss, "tss": tss, "r2": 1 - rss / tss if tss > 0 else float("nan"),
        "sigma2": sigma2, "loglik": loglik,
        "aic": 2 * k - 2 * loglik, "bic": k * math.log(n) - 2 * loglik,
        "fitted": fitted, "residuals": residuals,
    }


# ---------------------------------------------------------------------------------- scaling laws

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


def fit_scaling_law(table: pd.DataFrame, d_column: str = "d_mle", with_sharpness: bool = True,
                    loss_column: str = "test_loss", *, n_column: str = "n_train",
                    kf_column: str = "k_f", level: float = 0.95) -> dict:
    """Least-squares fit of Eq. 2 (``with_sharpness``) or its K_F-free form (Eq. 4 with d = d_repr).

    Fits one table; the caller groups (e.g. by domain). Rows missing any used column are dropped
    (counted in ``n_dropped``). Raises ValueError naming the column when a column is missing, when
    a loss, N or K_F is non-positive (no logarithm), when d is non-positive, or when there are too
    few rows (at least one more than coefficients) or collinear regressors.

    Returns the dict of :func:`ols` (without fitted values and residuals) plus ``law``
    ("eq2_with_kf" or "eq2_without_kf"), ``d_column``, ``loss_column``, ``with_sharpness``,
    ``n_dropped`` and ``coef`` ({name: estimate}).
    """
    columns = [loss_column, n_column, d_column] + ([kf_column] if with_sharpness else [])
    rows = _complete_rows(table, columns)
    if len(rows) == 0:
        raise ValueError(f"too few rows: no row has all of {columns}")
    y, X, names = scaling_law_design(rows, d_column, with_sharpness, loss_column, n_column, kf_column)
    fit = ols(y, X, names, level=level)
    fit.pop("fitted")
    fit.pop("residuals")
    fit.update({
        "law": "eq2_with_kf" if with_sharpness else "eq2_without_kf",
        "d_column": d_column, "loss_column": loss_column, "with_sharpness": with_sharpness,
        "n_dropped": len(table) - len(rows),
        "coef": {name: values["estimate"] for name, values in fit["params"].items()},
    })
    return fit


def compare_sharpness_term(table: pd.DataFrame, d_column: str = "d_mle",
                           loss_column: str = "test_loss", *, n_column: str = "n_train",
                           kf_column: str = "k_f", level: float = 0.95) -> dict:
    """Eq. 2 with and without the K_F term, fitted on the same rows, and their comparison.

    Returns ``with_kf`` and ``without_kf`` (fits as from :func:`fit_scaling_law`),
    ``delta_aic`` and ``delta_bic`` (with minus without: negative favours the K_F term),
    ``lr_stat`` = 2 (loglik_with - loglik_without) = n log(RSS_without / RSS_with) and
    ``lr_p_value`` (chi-squared, 1 dof), plus the exact nested-OLS ``f_stat`` and ``f_p_value``
    (F with 1 and n - p_with dof).
    """
    rows = _complete_rows(table, [loss_column, n_column, d_column, kf_column])
    with_kf = fit_scaling_law(rows, d_column, True, loss_column, n_column=n_column,
                              kf_column=kf_column, level=level)
    without_kf = fit_scaling_law(rows, d_column, False, loss_column, n_column=n_column,
                                 kf_column=kf_column, level=level)
    n_dropped = len(table) - len(rows)
    with_kf["n_dropped"] = without_kf["n_dropped"] = n_dropped
    lr_stat = max(2.0 * (with_kf["loglik"] - without_kf["loglik"]), 0.0)
    if math.isnan(lr_stat):  # both fits exact (inf - inf)
        lr_stat = 0.0
    rss_f, rss_r, dof = with_kf["rss"], without_kf["rss"], with_kf["dof"]
    if rss_f > 0:
        f_stat = max(rss_r - rss_f, 0.0) / (rss_f / dof)
        f_p = float(stats.f.sf(f_stat, 1, dof))
    else:
        f_stat, f_p = (math.inf, 0.0) if rss_r > 0 else (float("nan"), float("nan"))
    return {
        "with_kf": with_kf, "without_kf": without_kf, "d_column": d_column, "n": with_kf["n"],
        "n_dropped": n_dropped,
        "delta_aic": with_kf["aic"] - without_kf["aic"],
        "delta_bic": with_kf["bic"] - without_kf["bic"],
        "lr_stat": lr_stat, "lr_df": 1, "lr_p_value": float(stats.chi2.sf(lr_stat, 1)),
        "f_stat": f_stat, "f_p_value": f_p,
    }


FIT_COLUMNS = ["law", "d_column", "parameter", "estimate", "se", "ci_low", "ci_high", "p_value",
               "n", "dof", "r2", "rss", "loglik", "aic", "bic", "lr_p_value", "error"]


def _fit_rows(keys: dict, law: str, d_column: str, fit: dict | None, lr_p: float,
              error: str = "") -> list[dict]:
    if fit is None:
        return [{**keys, "law": law, "d_column": d_column, "parameter": None, "error": error}]
    law_values = {name: fit[name] for name in ("n", "dof", "r2", "rss", "loglik", "aic", "bic")}
    return [
        {**keys, "law": law, "d_column": d_column, "parameter": name,
         **{c: values[c] for c in ("estimate", "se", "ci_low", "ci_high", "p_value")},
         **law_values, "lr_p_value": lr_p, "error": ""}
        for name, values in fit["params"].items()
    ]


def fits_table(runs: pd.DataFrame, groups: Sequence[str] = ("domain",), *, d_column: str = "d_mle",
               d_repr_column: str = "d_repr_twonn", loss_column: str = "test_loss",
               n_column: str = "n_train", kf_column: str = "k_f", level: float = 0.95,
               errors: str = "raise") -> pd.DataFrame:
    """Tidy table of every law's fit per group: one row per group x law x parameter.

    Laws: ``eq2_with_kf`` and ``eq2_without_kf`` (d = ``d_column``, fitted on the same rows; their
    likelihood-ratio p-value for the K_F term is repeated in ``lr_p_value``) and ``eq4_d_repr``
    (d = ``d_repr_column``, no K_F term). Law-level values (n, dof, r2, rss, loglik, aic, bic) are
    repeated on each parameter's row. ``groups=()`` fits the whole table at once.

    ``errors="raise"`` propagates a failing fit's ValueError (naming the group);
    ``errors="note"`` writes one row for that group x law with the message in ``error``.
    """
    if errors not in ("raise", "note"):
        raise ValueError(f"errors must be 'raise' or 'note', not {errors!r}")
    groups = list(groups)
    _require_columns(runs, groups + [loss_column, n_column, d_column, d_repr_column, kf_column])
    grouped = [((), runs)] if not groups else runs.groupby(groups, sort=True, dropna=False)
    rows: list[dict] = []
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        keys = dict(zip(groups, key))
        try:
            comparison = compare_sharpness_term(group, d_column, loss_column, n_column=n_column,
                                                kf_column=kf_column, level=level)
        except ValueError as error:
            if errors == "raise":
                raise ValueError(f"group {keys}: {error}") from error
            rows += _fit_rows(keys, "eq2_with_kf", d_column, None, math.nan, str(error))
            rows += _fit_rows(keys, "eq2_without_kf", d_column, None, math.nan, str(error))
        else:
            lr_p = comparison["lr_p_value"]
            rows += _fit_rows(keys, "eq2_with_kf", d_column, comparison["with_kf"], lr_p)
            rows += _fit_rows(keys, "eq2_without_kf", d_column, comparison["without_kf"], lr_p)
        try:
            eq4 = fit_scaling_law(group, d_repr_column, False, loss_column, n_column=n_column,
                                  kf_column=kf_column, level=level)
        except ValueError as error:
            if errors == "raise":
                raise ValueError(f"group {keys}: {error}") from error
            rows += _fit_rows(keys, "eq4_d_repr", d_repr_column, None, math.nan, str(error))
        else:
            rows += _fit_rows(keys, "eq4_d_repr", d_repr_column, eq4, math.nan)
    return pd.DataFrame(rows, columns=groups + FIT_COLUMNS)


# -------------------------------------------------------------------------------- correlations

CORRELATION_COLUMNS = ["r", "r_sd", "r_min", "r_max", "n_sizes", "n_datasets", "p_max",
                       "n_significant"]


def sharpness_correlations(attacks: pd.DataFrame, by: Sequence[str] = ("model", "attack", "eps"),
                           *, x: str = "k_f", y: str = "loss_penalty", size_column: str = "n_train",
                           dataset_column: str = "dataset", alpha: float = 0.05) -> pd.DataFrame:
    """Table 1: Pearson r between ``y`` (loss penalty) and ``x`` (K_F) across datasets.

    For each ``by`` group and training-set size, rows are first averaged per dataset (over seeds),
    then r = scipy.stats.pearsonr over the datasets (NaN with fewer than 3 datasets or a constant
    input; rows with a non-finite x or y are left out). One row per ``by`` group: ``r`` (mean over sizes of the finite r), ``r_sd`` (sample
    s.d. over sizes, NaN for one size), ``r_min``, ``r_max``, ``n_sizes`` (sizes with a finite r),
    ``n_datasets`` (fewest datasets at any size), ``p_max`` (largest two-sided p over sizes: r is
    significant at every size when p_max < alpha) and ``n_significant`` (sizes with p < alpha).
    """
    by = list(by)
    _require_columns(attacks, by + [size_column, dataset_column, x, y])
    for column in (x, y):
        _numeric(attacks, column)
    # Non-finite values (K_F = inf for identical images with different labels) are left out, as
    # in Figure 3; a mean with an inf would otherwise turn that size's r into NaN.
    finite = attacks[np.isfinite(_numeric(attacks, x)) & np.isfinite(_numeric(attacks, y))]
    per_dataset = (finite
                   .groupby(by + [size_column, dataset_column], sort=True, dropna=False)[[x, y]]
                   .mean().reset_index())
    per_size = []
    for key, group in per_dataset.groupby(by + [size_column], sort=True, dropna=False):
        xs, ys = group[x].to_numpy(float), group[y].to_numpy(float)
        r = p = math.nan
        if len(group) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
            result = stats.pearsonr(xs, ys)
            r, p = float(result.statistic), float(result.pvalue)
        per_size.append({**dict(zip(by + [size_column], key)), "r": r, "p": p,
                         "n_datasets": len(group)})
    per_size = pd.DataFrame(per_size, columns=by + [size_column, "r", "p", "n_datasets"])
    rows = []
    for key, group in per_size.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        finite = group.dropna(subset=["r"])
        rs = finite["r"].to_numpy(float)
        rows.append({
            **dict(zip(by, key)),
            "r": float(rs.mean()) if len(rs) else math.nan,
            "r_sd": float(rs.std(ddof=1)) if len(rs) > 1 else math.nan,
            "r_min": float(rs.min()) if len(rs) else math.nan,
            "r_max": float(rs.max()) if len(rs) else math.nan,
            "n_sizes": len(rs),
            "n_datasets": int(group["n_datasets"].min()),
            "p_max": float(finite["p"].max()) if len(rs) else math.nan,
            "n_significant": int((finite["p"] < alpha).sum()),
        })
    return pd.DataFrame(rows, columns=by + CORRELATION_COLUMNS)


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
