"""The study's figures (seaborn), each saved as PNG and PDF."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from .io import atomic_write

DOMAIN_ORDER = ["natural", "medical", "synthetic"]
DOMAIN_PALETTE = {"natural": "#1f77b4", "medical": "#d62728", "synthetic": "#7f7f7f"}


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean (deterministic, unlike a bootstrap)."""
    values = np.asarray(values, dtype=float)
    mean = values.mean()
    if len(values) < 2:
        return mean, mean
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean - half, mean + half


def natural_key(name: str) -> list:
    """Sort 'synthetic_d2' before 'synthetic_d16'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def save_figure(fig, png: str | os.PathLike, pdf: str | os.PathLike) -> None:
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_write(Path(path)) as handle:
            fig.savefig(handle, format=fmt, dpi=200, bbox_inches="tight")
    plt.close(fig)


def per_seed_means(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Average each seed (class pair) over training sizes: the CI is then over seeds."""
    keys = ["dataset", "domain", "seed"]
    return table.groupby(keys, as_index=False)[columns].mean()


def figure_dataset_properties(table: pd.DataFrame, png, pdf) -> pd.DataFrame:
    """Figure 1: d_data (MLE and TwoNN) and K_F per dataset, coloured by domain, 95% CI over seeds.

    Returns the plotted summary (mean and CI per dataset and measure).
    """
    finite = table[np.isfinite(table["k_f"])]
    seeds = per_seed_means(finite, ["d_mle", "d_twonn", "k_f"])
    domains = [d for d in DOMAIN_ORDER if d in set(seeds["domain"])] + sorted(
        set(seeds["domain"]) - set(DOMAIN_ORDER)
    )
    domain_rank = {d: i for i, d in enumerate(domains)}
    first_domain = seeds.groupby("dataset")["domain"].first()
    order = sorted(first_domain.index, key=lambda name: (domain_rank[first_domain[name]], natural_key(name)))
    panels = [("d_mle", "$d_{data}$ (MLE, k=20)"), ("d_twonn", "$d_{data}$ (TwoNN)"),
              ("k_f", "label sharpness $\\hat K_F$")]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.35 * len(order) + 1.5), sharey=True)
    palette = {d: DOMAIN_PALETTE.get(d, "#2ca02c") for d in domains}
    for ax, (column, label) in zip(axes, panels):
        sns.pointplot(
            data=seeds, x=column, y="dataset", hue="domain", order=order, hue_order=domains,
            palette=palette, errorbar=t_interval, linestyle="none", markers="o", capsize=0.3,
            dodge=False, ax=ax, legend=ax is axes[-1],
        )
        ax.set_xlabel(label)
        ax.set_ylabel("")
        if column.startswith("d_") and "d_true" in table and table["d_true"].notna().any():
            truth = table.dropna(subset=["d_true"]).groupby("dataset")["d_true"].first()
            ax.scatter(truth.values, [order.index(d) for d in truth.index], marker="x",
                       color="black", zorder=5, label="true d")
    axes[-1].legend(title="domain", loc="lower right")
    fig.suptitle("Intrinsic dimension and label sharpness of the training sets (mean, 95% CI over seeds)")
    save_figure(fig, png, pdf)
    summary = seeds.melt(id_vars=["dataset", "domain", "seed"], var_name="measure")
    return summary.groupby(["dataset", "domain", "measure"])["value"].agg(
        mean="mean", ci_low=lambda v: t_interval(v)[0], ci_high=lambda v: t_interval(v)[1], n_seeds="count"
    ).reset_index()


# ------------------------------------------------------------------ Figures 2-5 (the training grid)

RUN_KEYS = ["model", "dataset", "domain", "n_train"]

AXIS_LABELS = {
    "d_mle": "$d_{data}$ (MLE, k=20)",
    "d_twonn": "$d_{data}$ (TwoNN)",
    "d_repr_twonn": "$d_{repr}$ (TwoNN)",
    "d_repr_mle": "$d_{repr}$ (MLE)",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy",
    "train_loss": "train loss",
    "train_accuracy": "train accuracy",
    "k_f": "label sharpness $\\hat K_F$",
    "loss_penalty": "adversarial loss penalty",
    "accuracy_penalty": "adversarial accuracy penalty",
    "jacobian_norm": "Jacobian norm",
}

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p"]
CI_NOTE = "mean over seeds; bars: 95% Student-t CI over seeds"


def _require(table: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: table lacks column(s) {missing}; it has {list(table.columns)}")


def _label(column: str) -> str:
    return AXIS_LABELS.get(column, column.replace("_", " "))


def _domain_order(domains) -> list[str]:
    present = set(domains)
    return [d for d in DOMAIN_ORDER if d in present] + sorted(present - set(DOMAIN_ORDER), key=natural_key)


def _palette(domains: list[str]) -> dict[str, str]:
    extra = iter(c for c in sns.color_palette("tab10").as_hex() if c not in DOMAIN_PALETTE.values())
    return {d: DOMAIN_PALETTE[d] if d in DOMAIN_PALETTE else next(extra, "#2ca02c") for d in domains}


def _dataset_order(table: pd.DataFrame, domains: list[str]) -> list[str]:
    rank = {d: i for i, d in enumerate(domains)}
    first_domain = table.groupby("dataset")["domain"].first()
    return sorted(first_domain.index, key=lambda name: (rank[first_domain[name]], natural_key(str(name))))


def _finite_rows(table: pd.DataFrame, columns, positive=()) -> tuple[pd.DataFrame, int]:
    """Rows with a finite number in every column (and > 0 in ``positive``) and how many were dropped."""
    keep = np.ones(len(table), dtype=bool)
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        keep &= np.isfinite(values)
        if column in positive:
            keep &= values > 0
    return table.loc[keep], int((~keep).sum())


def _seed_summary(table: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds of each column, one row per key: <col>, <col>_ci_low/high."""
    # Rows repeated within a seed (an extra axis the figure ignores) are averaged first, so the
    # interval is over seeds.
    seeds = table.groupby(keys + ["seed"], sort=True)[columns].mean().reset_index()
    rows = []
    for key, group in seeds.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        for column in columns:
            values = group[column].to_numpy(dtype=float)
            low, high = t_interval(values)
            row.update({column: float(values.mean()), f"{column}_ci_low": float(low),
                        f"{column}_ci_high": float(high)})
        row["n_seeds"] = len(group)
        rows.append(row)
    stats_columns = [f"{c}{s}" for c in columns for s in ("", "_ci_low", "_ci_high")]
    return pd.DataFrame(rows, columns=keys + stats_columns + ["n_seeds"])


def _xy_summary(rows: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per (model, dataset, domain, n_train): x/y column names, their means and t-intervals."""
    if x == y:
        raise ValueError(f"x and y are the same column {x!r}")
    summary = _seed_summary(rows, RUN_KEYS, [x, y])
    out = summary[RUN_KEYS].copy()
    for axis, column in (("x", x), ("y", y)):
        out[axis] = column
        out[f"{axis}_mean"] = summary[column]
        out[f"{axis}_ci_low"] = summary[f"{column}_ci_low"]
        out[f"{axis}_ci_high"] = summary[f"{column}_ci_high"]
    out["n_seeds"] = summary["n_seeds"]
    return out


def _errorbars(ax, points: pd.DataFrame, x: str, y: str, *, color, marker, size, label=None,
               line=False, xerr=True) -> None:
    """Points with asymmetric t-interval bars in y (and x); the interval of one seed is the point."""
    points = points.sort_values("n_train")
    yerr = np.vstack([points[y] - points[f"{y}_ci_low"], points[f"{y}_ci_high"] - points[y]])
    xerr_values = (np.vstack([points[x] - points[f"{x}_ci_low"], points[f"{x}_ci_high"] - points[x]])
                   if xerr else None)
    ax.errorbar(points[x], points[y], yerr=yerr, xerr=xerr_values, fmt="none", ecolor=color,
                elinewidth=0.8, alpha=0.6, capsize=1.5, zorder=2)
    if line and len(points) > 1:
        ax.plot(points[x], points[y], color=color, linewidth=0.7, alpha=0.5, zorder=2)
    ax.scatter(points[x], points[y], s=size, marker=marker, color=color, edgecolor="black",
               linewidth=0.4, zorder=3, label=label)


def _frame_points(ax, xs, ys, *, log_y: bool = False, nonnegative: bool = False) -> None:
    """Axis limits from the plotted means, not their intervals: with two seeds a 95% t-interval
    is 12.7 standard errors wide and would squeeze the points into a corner. Bars that reach past
    the frame are clipped by it."""
    def limits(values, log):
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values) & ((values > 0) if log else True)]
        if not len(values):
            return None
        lo, hi = values.min(), values.max()
        if log:
            span = max(np.log10(hi / lo), 0.5)
            return lo / 10 ** (0.15 * span), hi * 10 ** (0.15 * span)
        pad = 0.15 * (hi - lo) if hi > lo else max(abs(hi) * 0.15, 0.5)
        low = lo - pad
        return (max(low, 0.0) if nonnegative else low), hi + pad

    x_limits, y_limits = limits(xs, False), limits(ys, log_y)
    if x_limits:
        ax.set_xlim(*x_limits)
    if y_limits:
        ax.set_ylim(*y_limits)


def _size_of(n_values) -> dict:
    """Marker area per training size: larger N drawn larger."""
    sizes = sorted(set(n_values))
    return {n: 18 + 42 * i / max(len(sizes) - 1, 1) for i, n in enumerate(sizes)}


def _legend_handles(domains, palette, datasets=None, dataset_marker=None, sizes=None):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", label="domain")]
    handles += [Line2D([], [], marker="o", linestyle="none", color=palette[d], markeredgecolor="black",
                       markeredgewidth=0.4, label=d) for d in domains]
    if datasets:
        handles.append(Line2D([], [], linestyle="none", label="dataset"))
        handles += [Line2D([], [], marker=dataset_marker[name][0], linestyle="none",
                           color=palette[dataset_marker[name][1]], markeredgecolor="black",
                           markeredgewidth=0.4, label=name) for name in datasets]
    if sizes:
        handles.append(Line2D([], [], linestyle="none", label="N (train)"))
        handles += [Line2D([], [], marker="o", linestyle="none", color="lightgray", markeredgecolor="black",
                           markeredgewidth=0.4, markersize=np.sqrt(area), label=str(n))
                    for n, area in sizes.items()]
    return handles


def _facet_axes(n_panels: int, ncols: int, width: float = 4.0, height: float = 3.4):
    ncols = max(1, min(ncols, n_panels))
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def figure_generalization(runs: pd.DataFrame, png, pdf, *, x: str = "d_mle", y: str = "test_loss",
                          log_y: bool = True) -> pd.DataFrame:
    """Figures 2 and 4: test loss (or accuracy) against an intrinsic dimension, one panel per model.

    Each point is one (model, dataset, N): the mean over seeds, with 95% Student-t intervals over
    seeds in y and x. Colour = domain, marker = dataset, marker size grows with N and a thin line
    joins a dataset's points in N order. The dashed line per domain is the least-squares fit of
    log y (y when not ``log_y``) on x over the plotted points. Rows with a non-finite x or y (or
    y <= 0 on a log axis) are left out and counted in a note on the figure.

    Returns one row per (model, dataset, domain, n_train): ``x``, ``x_mean``, ``x_ci_low``,
    ``x_ci_high``, ``y``, ``y_mean``, ``y_ci_low``, ``y_ci_high`` (column names in ``x``/``y``),
    ``n_seeds`` and, when runs has ``fitted``, ``n_unfitted`` (seeds whose model did not fit its
    training set; they are plotted, not dropped).
    """
    _require(runs, RUN_KEYS + ["seed", x, y], "figure_generalization")
    if len(runs) == 0:
        raise ValueError("figure_generalization: runs is empty")
    rows, n_dropped = _finite_rows(runs, [x, y], positive=(y,) if log_y else ())
    if len(rows) == 0:
        raise ValueError(f"figure_generalization: no row has a finite {x!r} and {y!r}")
    summary = _xy_summary(rows, x, y)
    if "fitted" in rows.columns:
        unfitted = (~rows["fitted"].astype(bool)).groupby([rows[k] for k in RUN_KEYS]).sum()
        summary["n_unfitted"] = [int(unfitted.get(tuple(k), 0))
                                 for k in summary[RUN_KEYS].itertuples(index=False, name=None)]

    models = sorted(summary["model"].unique(), key=lambda m: natural_key(str(m)))
    domains = _domain_order(summary["domain"])
    palette = _palette(domains)
    datasets = _dataset_order(summary, domains)
    first_domain = summary.groupby("dataset")["domain"].first()
    dataset_marker, count = {}, {}
    for name in datasets:  # markers cycle within each domain, so colour + marker names a dataset
        domain = first_domain[name]
        dataset_marker[name] = (MARKERS[count.get(domain, 0) % len(MARKERS)], domain)
        count[domain] = count.get(domain, 0) + 1
    sizes = _size_of(summary["n_train"])

    plot = summary.rename(columns={"x_mean": "xv", "x_ci_low": "xv_ci_low", "x_ci_high": "xv_ci_high",
                                   "y_mean": "yv", "y_ci_low": "yv_ci_low", "y_ci_high": "yv_ci_high"})
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = _facet_axes(len(models), ncols=4)
    n_fits = 0
    for ax, model in zip(axes, models):
        panel = plot[plot["model"] == model]
        for (dataset, domain), points in panel.groupby(["dataset", "domain"], sort=False):
            _errorbars(ax, points, "xv", "yv", color=palette[domain], marker=dataset_marker[dataset][0],
                       size=points["n_train"].map(sizes).to_numpy(), line=True)
        for domain, points in panel.groupby("domain"):
            if points["xv"].nunique() < 2:
                continue
            target = np.log(points["yv"]) if log_y else points["yv"]
            slope, intercept = np.polyfit(points["xv"], target, 1)
            grid = np.linspace(points["xv"].min(), points["xv"].max(), 50)
            fit = intercept + slope * grid
            ax.plot(grid, np.exp(fit) if log_y else fit, color=palette[domain], linestyle="--",
                    linewidth=1.0, alpha=0.8, zorder=1)
            n_fits += 1
        if log_y:
            ax.set_yscale("log")
        _frame_points(ax, panel["xv"], panel["yv"], log_y=log_y)
        ax.set_title(str(model))
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y) + (" (log scale)" if log_y else ""))
    notes = []
    if n_dropped:
        notes.append(f"{n_dropped} run(s) without a finite {x} / {y}" + (" > 0" if log_y else "") + " left out")
    if "n_unfitted" in summary and summary["n_unfitted"].sum():
        notes.append(f"{int(summary['n_unfitted'].sum())} run(s) did not fit their training set (plotted)")
    if n_fits:
        notes.append("dashed: least-squares fit of " + ("log " if log_y else "") + "y on x over a domain's points")
    if notes:
        fig.text(0.01, -0.02, "; ".join(notes), fontsize=7, ha="left", va="top")
    fig.legend(handles=_legend_handles(domains, palette, datasets, dataset_marker, sizes),
               loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    fig.suptitle(f"{_label(y)} vs {_label(x)} per dataset and training size N\n({CI_NOTE})")
    fig.tight_layout()
    save_figure(fig, png, pdf)
    return summary


def figure_sharpness_robustness(attacks: pd.DataFrame, png, pdf, *, attack: str = "fgsm") -> pd.DataFrame:
    """Figure 3: adversarial loss penalty against label sharpness K_F; rows = model, columns = eps.

    Points are (dataset, N) means over seeds (the very points whose Pearson r across datasets,
    averaged over N, is Table 1's r) with 95% Student-t intervals over seeds; colour = domain,
    marker size grows with N. Each panel's r is ``analysis.sharpness_correlations`` of the same
    rows. Rows with a non-finite K_F (a split with identical images of different labels) or loss
    penalty are dropped first and counted in a note on the figure.

    Returns one row per panel: model, attack, eps, eps_255, r and the other columns of
    sharpness_correlations (r_sd, r_min, r_max, n_sizes, n_datasets, p_max, n_significant), plus
    ``n_points`` and ``n_dropped_nonfinite`` (the latter for the whole attack). The plotted points
    are in ``result.attrs["points"]``.
    """
    from .analysis import sharpness_correlations

    keys = ["model", "dataset", "domain", "n_train", "seed", "attack", "eps", "eps_255"]
    _require(attacks, keys + ["k_f", "loss_penalty"], "figure_sharpness_robustness")
    chosen = attacks[attacks["attack"] == attack]
    if len(chosen) == 0:
        raise ValueError(f"figure_sharpness_robustness: no rows for attack {attack!r}; "
                         f"attacks present: {sorted(attacks['attack'].unique())}")
    rows, n_dropped = _finite_rows(chosen, ["k_f", "loss_penalty"])
    if len(rows) == 0:
        raise ValueError(f"figure_sharpness_robustness: no {attack!r} row has a finite k_f and loss_penalty")
    correlations = sharpness_correlations(rows, by=("model", "attack", "eps"))
    eps_255 = rows.groupby("eps")["eps_255"].first()
    correlations.insert(3, "eps_255", correlations["eps"].map(eps_255).to_numpy())
    points = _seed_summary(rows, ["model", "eps", "dataset", "domain", "n_train"], ["k_f", "loss_penalty"])
    counts = points.groupby(["model", "eps"]).size()
    correlations["n_points"] = [int(counts.get((m, e), 0)) for m, e in zip(correlations["model"], correlations["eps"])]
    correlations["n_dropped_nonfinite"] = n_dropped

    models = sorted(points["model"].unique(), key=lambda m: natural_key(str(m)))
    epsilons = sorted(points["eps"].unique())
    domains = _domain_order(points["domain"])
    palette = _palette(domains)
    sizes = _size_of(points["n_train"])
    r_of = correlations.set_index(["model", "eps"])["r"]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(len(models), len(epsilons), figsize=(3.3 * len(epsilons), 2.9 * len(models)),
                             squeeze=False, sharex=True)
    for i, model in enumerate(models):
        for j, eps in enumerate(epsilons):
            ax = axes[i, j]
            panel = points[(points["model"] == model) & (points["eps"] == eps)]
            for domain, group in panel.groupby("domain"):
                _errorbars(ax, group, "k_f", "loss_penalty", color=palette[domain], marker="o",
                           size=group["n_train"].map(sizes).to_numpy())
            _frame_points(ax, panel["k_f"], panel["loss_penalty"])
            r = r_of.get((model, eps), np.nan)
            r_text = "r = n/a" if not np.isfinite(r) else f"r = {r:.2f}"
            ax.set_title(f"{model}, $\\epsilon$ = {eps_255[eps]}/255, {r_text}", fontsize=8)
            ax.set_xlabel(_label("k_f") if i == len(models) - 1 else "")
            ax.set_ylabel(f"{attack.upper()} loss penalty" if j == 0 else "")
    note = ("r: Pearson r across datasets at each N, averaged over N (Table 1)"
            + (f"; {n_dropped} row(s) with non-finite $\\hat K_F$ or loss penalty left out" if n_dropped else ""))
    fig.text(0.01, -0.01, note, fontsize=7, ha="left", va="top")
    fig.legend(handles=_legend_handles(domains, palette, sizes=sizes), loc="upper left",
               bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    fig.suptitle(f"{attack.upper()} loss penalty vs label sharpness per dataset and N\n({CI_NOTE})")
    fig.tight_layout()
    save_figure(fig, png, pdf)
    correlations.attrs["points"] = points
    return correlations


def figure_repr_vs_data(runs: pd.DataFrame, png, pdf, *, x: str = "d_mle",
                        y: str = "d_repr_twonn") -> tuple[pd.DataFrame, float]:
    """Figure 5: intrinsic dimension of the learned representation against that of the data.

    Points are (model, dataset, N) means over seeds with 95% Student-t intervals over seeds in
    both axes; colour = domain, marker = model. The dotted line is y = x. The fraction of plotted
    points with mean d_repr <= mean d_data is written on the figure and returned. Rows with a
    non-finite x or y are left out (counted in the note).

    Returns (summary, fraction): summary has one row per (model, dataset, domain, n_train) with
    ``x``, ``x_mean``, ``x_ci_low``, ``x_ci_high``, ``y``, ``y_mean``, ``y_ci_low``, ``y_ci_high``,
    ``n_seeds`` and ``repr_le_data`` (y_mean <= x_mean).
    """
    _require(runs, RUN_KEYS + ["seed", x, y], "figure_repr_vs_data")
    rows, n_dropped = _finite_rows(runs, [x, y])
    if len(rows) == 0:
        raise ValueError(f"figure_repr_vs_data: no row has a finite {x!r} and {y!r}")
    summary = _xy_summary(rows, x, y)
    summary["repr_le_data"] = summary["y_mean"] <= summary["x_mean"]
    fraction = float(summary["repr_le_data"].mean())

    models = sorted(summary["model"].unique(), key=lambda m: natural_key(str(m)))
    domains = _domain_order(summary["domain"])
    palette = _palette(domains)
    model_marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    plot = summary.rename(columns={"x_mean": "xv", "x_ci_low": "xv_ci_low", "x_ci_high": "xv_ci_high",
                                   "y_mean": "yv", "y_ci_low": "yv_ci_low", "y_ci_high": "yv_ci_high"})
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for (model, domain), group in plot.groupby(["model", "domain"], sort=False):
        _errorbars(ax, group, "xv", "yv", color=palette[domain], marker=model_marker[model], size=30)
    # One frame for both axes, from the means (dimensions are positive), so y = x is the diagonal.
    both = np.concatenate([plot["xv"].to_numpy(float), plot["yv"].to_numpy(float)])
    _frame_points(ax, both, both, nonnegative=True)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    ax.plot([min(x0, y0), max(x1, y1)], [min(x0, y0), max(x1, y1)], color="black", linestyle=":",
            linewidth=1, label="$y = x$", zorder=1)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    below = int(summary["repr_le_data"].sum())
    ax.text(0.03, 0.97, f"$d_{{repr}} \\leq d_{{data}}$: {below}/{len(summary)} points ({fraction:.0%})",
            transform=ax.transAxes, ha="left", va="top", fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    from matplotlib.lines import Line2D

    handles = _legend_handles(domains, palette)
    handles.append(Line2D([], [], linestyle="none", label="model"))
    handles += [Line2D([], [], marker=model_marker[m], linestyle="none", color="gray", markeredgecolor="black",
                       markeredgewidth=0.4, label=str(m)) for m in models]
    handles.append(Line2D([], [], color="black", linestyle=":", label="$y = x$"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=7)
    if n_dropped:
        fig.text(0.01, -0.01, f"{n_dropped} run(s) without a finite {x} / {y} left out", fontsize=7,
                 ha="left", va="top")
    ax.set_title(f"Representation vs data intrinsic dimension\nper model, dataset and N ({CI_NOTE})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, png, pdf)
    return summary, fraction
