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

from .analysis import as_bool, mean_t_interval, sharpness_correlations, sharpness_points
from .io import atomic_write

DOMAIN_ORDER = ["natural", "medical", "synthetic"]
DOMAIN_PALETTE = {"natural": "#1f77b4", "medical": "#d62728", "synthetic": "#7f7f7f"}


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean (deterministic, unlike a bootstrap)."""
    return mean_t_interval(values, level)[1:]


def natural_key(name: str) -> list:
    """Sort 'synthetic_d2' before 'synthetic_d16'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def save_figure(fig, png: str | os.PathLike, pdf: str | os.PathLike) -> None:
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_write(Path(path)) as handle:
            fig.savefig(handle, format=fmt, dpi=200, bbox_inches="tight")
    plt.close(fig)


D_DATA_COLUMNS = ["d_mle", "d_twonn"]


def _dataset_domains(*tables: pd.DataFrame) -> pd.Series:
    """dataset -> domain over all tables; a dataset with two domains is an error."""
    pairs = pd.concat([t[["dataset", "domain"]] for t in tables]).drop_duplicates()
    clash = pairs[pairs["dataset"].duplicated(keep=False)]
    if len(clash):
        raise ValueError(f"column 'domain' differs for dataset(s) {sorted(set(clash['dataset']))}: "
                         f"{clash.to_dict('records')}")
    return pairs.set_index("dataset")["domain"]


def figure_dataset_properties(splits: pd.DataFrame, sharpness: pd.DataFrame, png, pdf, *,
                              kf: str = "k_f_255", level: float = 0.95) -> pd.DataFrame:
    """Figure 1: d_data (MLE and TwoNN) and label sharpness K_F per dataset, coloured by domain.

    ``splits`` has one row per (dataset, n_train, seed) with d_mle and d_twonn (and optionally
    d_true): each seed is averaged over N, then the panel shows the mean and 95% t-interval over
    seeds. ``sharpness`` has one row per (dataset, class pair) with ``kf`` (K_F on the paper's
    0-255 scale), ``fig1`` (one of the dataset's first P pairings) and ``kf_zero_distance_pairs``:
    the K_F panel shows the mean over the fig1 pairings with a 95% t-interval over them (a binary
    dataset has one pairing and no interval). Non-finite values are left out and counted in the
    note, as are excluded zero-distance pairs when there are any.

    Returns one row per dataset and measure (d_mle, d_twonn, ``kf``): ``mean``, ``ci_low``,
    ``ci_high``, ``n`` and ``over`` (what n counts: seeds or class pairings), and
    ``kf_zero_distance_pairs`` (summed over the plotted pairings; empty for the d_data rows).
    """
    _require(splits, ["dataset", "domain", "n_train", "seed"] + D_DATA_COLUMNS, "figure_dataset_properties (splits)")
    _require(sharpness, ["dataset", "domain", "classes", kf, "fig1", "kf_zero_distance_pairs"],
             "figure_dataset_properties (sharpness)")
    duplicated = sharpness.duplicated(["dataset", "classes"], keep=False)
    if duplicated.any():
        raise ValueError("figure_dataset_properties: sharpness has several rows for (dataset, classes) "
                         f"{sharpness.loc[duplicated, ['dataset', 'classes']].drop_duplicates().values.tolist()[:3]}")
    domain_of = _dataset_domains(splits, sharpness)
    rows, n_dropped = [], {}
    for column in D_DATA_COLUMNS:
        finite, n_dropped[column] = _finite_rows(splits, [column])
        seeds = finite.groupby(["dataset", "seed"])[column].mean()  # each seed over N: CI over seeds
        for dataset, values in seeds.groupby(level="dataset"):
            mean, low, high = mean_t_interval(values.to_numpy(float), level)
            rows.append({"dataset": dataset, "measure": column, "mean": mean, "ci_low": low,
                         "ci_high": high, "n": len(values), "over": "seeds"})
    chosen = sharpness[as_bool(sharpness["fig1"], "fig1")]
    pairings, n_dropped[kf] = _finite_rows(chosen, [kf])
    zero_pairs = pd.to_numeric(pairings["kf_zero_distance_pairs"], errors="raise").groupby(pairings["dataset"]).sum()
    for dataset, values in pairings.groupby("dataset")[kf]:
        mean, low, high = mean_t_interval(values.to_numpy(float), level)
        rows.append({"dataset": dataset, "measure": kf, "mean": mean, "ci_low": low, "ci_high": high,
                     "n": len(values), "over": "class pairings",
                     "kf_zero_distance_pairs": int(zero_pairs[dataset])})
    if not rows:
        raise ValueError("figure_dataset_properties: no finite d_mle, d_twonn or K_F to plot")
    summary = pd.DataFrame(rows, columns=["dataset", "measure", "mean", "ci_low", "ci_high", "n", "over",
                                          "kf_zero_distance_pairs"])
    summary.insert(1, "domain", summary["dataset"].map(domain_of))
    summary["kf_zero_distance_pairs"] = summary["kf_zero_distance_pairs"].astype("Int64")

    domains = _domain_order(summary["domain"])
    palette = _palette(domains)
    order = _dataset_order(summary, domains)
    position = {name: i for i, name in enumerate(order)}
    measures = {m: i for i, m in enumerate(D_DATA_COLUMNS + [kf])}
    rank = {"dataset": position, "measure": measures}
    summary = summary.sort_values(["dataset", "measure"], key=lambda column: column.map(rank[column.name]),
                                  ignore_index=True)  # the plotted order
    panels = [("d_mle", AXIS_LABELS["d_mle"]), ("d_twonn", AXIS_LABELS["d_twonn"]),
              (kf, _label(kf))]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.35 * len(order) + 2.0), sharey=True)
    truth = (splits.dropna(subset=["d_true"]).groupby("dataset")["d_true"].first()
             if "d_true" in splits else pd.Series(dtype=float))
    truth = truth[truth.index.isin(order)]
    for ax, (column, label) in zip(axes, panels):
        panel = summary[summary["measure"] == column]
        for row in panel.itertuples():
            y = position[row.dataset]
            ax.errorbar([row.mean], [y], xerr=[[row.mean - row.ci_low], [row.ci_high - row.mean]],
                        fmt="o", color=palette[row.domain], markeredgecolor="black", markeredgewidth=0.4,
                        elinewidth=1.0, capsize=3, zorder=3)
        if column.startswith("d_") and len(truth):
            ax.scatter(truth.values, [position[d] for d in truth.index], marker="x", color="black", zorder=5)
        ax.set_xlabel(label)
    axes[0].set_yticks(range(len(order)), order)
    axes[0].set_ylim(len(order) - 0.5, -0.5)  # first dataset on top
    from matplotlib.lines import Line2D

    handles = _legend_handles(domains, palette)
    if len(truth):
        handles.append(Line2D([], [], marker="x", linestyle="none", color="black", label="true d"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False, fontsize=8)
    most = int(summary.loc[summary["measure"] == kf, "n"].max()) if (summary["measure"] == kf).any() else 0
    notes = [f"$d_{{data}}$: each seed averaged over N; mean and {level:.0%} t-CI over seeds",
             f"$\\hat K_F$: mean and {level:.0%} t-CI over a dataset's first {most} class pairings "
             "(a binary dataset has one pairing: no bar)"]
    zero = summary.dropna(subset=["kf_zero_distance_pairs"])
    zero = zero[zero["kf_zero_distance_pairs"] > 0]
    if len(zero):
        notes.append("pairs of identical images with different labels left out of $\\hat K_F$'s max: "
                     + ", ".join(f"{r.dataset} {int(r.kf_zero_distance_pairs)}" for r in zero.itertuples()))
    dropped = {c: n for c, n in n_dropped.items() if n}
    if dropped:
        notes.append("non-finite values left out: " + ", ".join(f"{n} {c}" for c, n in dropped.items()))
    fig.text(0.01, -0.01, "\n".join(notes), fontsize=7, ha="left", va="top")
    fig.suptitle("Intrinsic dimension and label sharpness of the datasets")
    fig.tight_layout()
    save_figure(fig, png, pdf)
    return summary


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
    "k_f_255": "label sharpness $\\hat K_F$ (0-255 intensity scale)",
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
    """Domain -> colour. Domains are free text: known ones keep their colours, each other domain
    (in the given order) gets the next unused colour, so a third or tenth domain stays distinct."""
    spare = [c for c in sns.color_palette("tab10").as_hex() + sns.color_palette("Dark2").as_hex()
             if c not in DOMAIN_PALETTE.values()]
    extra = [d for d in domains if d not in DOMAIN_PALETTE]
    if len(extra) > len(spare):
        spare += sns.color_palette("husl", len(extra) - len(spare)).as_hex()
    colour = dict(zip(extra, spare))
    return {d: DOMAIN_PALETTE.get(d, colour.get(d)) for d in domains}


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


def _xy_summary(rows: pd.DataFrame, x: str, y: str, keys: list[str] = RUN_KEYS) -> pd.DataFrame:
    """Per ``keys`` (model, dataset, domain, n_train and any facet): x/y column names, their means
    and t-intervals."""
    if x == y:
        raise ValueError(f"x and y are the same column {x!r}")
    summary = _seed_summary(rows, keys, [x, y])
    out = summary[keys].copy()
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


def inverse_d_guide(d, y, *, log_y: bool = True) -> tuple[float, float]:
    """(c0, c1) of the least-squares fit log y = c0 + c1 / d (y = c0 + c1 / d when not ``log_y``).

    At a fixed N the paper's law (Eq. 2) makes log L linear in 1/d, so the guide lines of
    Figures 2 and 4 take that form rather than a straight line in d.
    """
    d, y = np.asarray(d, dtype=float), np.asarray(y, dtype=float)
    if d.shape != y.shape or len(d) < 2 or len(np.unique(d)) < 2:
        raise ValueError("inverse_d_guide: needs at least two points with distinct d")
    if not (np.all(np.isfinite(d)) and np.all(d > 0)):
        raise ValueError("inverse_d_guide: d must be positive and finite")
    if log_y and not np.all(y > 0):
        raise ValueError("inverse_d_guide: y must be positive for log y")
    target = np.log(y) if log_y else y
    (c0, c1), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(d), 1 / d]), target, rcond=None)
    return float(c0), float(c1)


def inverse_d_curve(d, c0: float, c1: float, *, log_y: bool = True) -> np.ndarray:
    """The guide's y at d: exp(c0 + c1 / d), or c0 + c1 / d when not ``log_y``."""
    fit = c0 + c1 / np.asarray(d, dtype=float)
    return np.exp(fit) if log_y else fit


def _symbol(column: str) -> str:
    """The quantity's symbol without its estimator, for formulas in notes."""
    return "$d_{repr}$" if column.startswith("d_repr") else "$d_{data}$" if column.startswith("d_") else column


def _dataset_markers(summary: pd.DataFrame, datasets: list[str]) -> dict:
    """dataset -> (marker, domain); markers cycle within each domain, so colour + marker names a dataset."""
    first_domain = summary.groupby("dataset")["domain"].first()
    dataset_marker, count = {}, {}
    for name in datasets:
        domain = first_domain[name]
        dataset_marker[name] = (MARKERS[count.get(domain, 0) % len(MARKERS)], domain)
        count[domain] = count.get(domain, 0) + 1
    return dataset_marker


def figure_generalization(runs: pd.DataFrame, png, pdf, *, x: str = "d_mle", y: str = "test_loss",
                          log_y: bool = True, facet: str | None = None) -> pd.DataFrame:
    """Figures 2 and 4: test loss (or accuracy) against an intrinsic dimension, one panel per model
    (per model and value of the grid axis ``facet``, e.g. "noise", when given).

    Each point is one (model, dataset, N): the mean over seeds, with 95% Student-t intervals over
    seeds in y and x. Colour = domain, marker = dataset, marker size grows with N and a thin line
    joins a dataset's points in N order. The dashed curve per domain is :func:`inverse_d_guide`
    over its plotted points: log y (y when not ``log_y``) = c0 + c1 / x, the law's form. Rows
    with a non-finite x or y (or y <= 0 on a log axis) are left out and counted in a note.

    Returns one row per (model, dataset, domain, n_train): ``x``, ``x_mean``, ``x_ci_low``,
    ``x_ci_high``, ``y``, ``y_mean``, ``y_ci_low``, ``y_ci_high`` (column names in ``x``/``y``),
    ``n_seeds`` and, when runs has ``fitted``, ``n_unfitted`` (seeds whose model did not fit its
    training set; they are plotted, not dropped). The guide coefficients (model, domain, c0, c1,
    n_points; and the facet's column) are in ``result.attrs["guides"]``; with ``facet`` the
    summary has that column too.
    """
    keys = RUN_KEYS + ([facet] if facet else [])
    if facet in RUN_KEYS + ["seed"]:
        raise ValueError(f"figure_generalization: facet {facet!r} is drawn already (panels per model, markers "
                         "per dataset, sizes per N, means over seeds); facet on another axis")
    _require(runs, keys + ["seed", x, y], "figure_generalization")
    if len(runs) == 0:
        raise ValueError("figure_generalization: runs is empty")
    rows, n_dropped = _finite_rows(runs, [x, y], positive=(y,) if log_y else ())
    if len(rows) == 0:
        raise ValueError(f"figure_generalization: no row has a finite {x!r} and {y!r}")
    summary = _xy_summary(rows, x, y, keys)
    if "fitted" in rows.columns:
        unfitted = (~rows["fitted"].astype(bool)).groupby([rows[k] for k in keys]).sum()
        summary["n_unfitted"] = [int(unfitted.get(tuple(k), 0))
                                 for k in summary[keys].itertuples(index=False, name=None)]

    models = sorted(summary["model"].unique(), key=lambda m: natural_key(str(m)))
    # One panel per model, or per (model, facet value) in the axis's order.
    panels = [(model, None) for model in models] if not facet else [
        (model, value) for model in models
        for value in sorted(summary[facet].unique(), key=lambda v: natural_key(str(v)))]
    domains = _domain_order(summary["domain"])
    palette = _palette(domains)
    datasets = _dataset_order(summary, domains)
    dataset_marker = _dataset_markers(summary, datasets)
    sizes = _size_of(summary["n_train"])

    plot = summary.rename(columns={"x_mean": "xv", "x_ci_low": "xv_ci_low", "x_ci_high": "xv_ci_high",
                                   "y_mean": "yv", "y_ci_low": "yv_ci_low", "y_ci_high": "yv_ci_high"})
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = _facet_axes(len(panels), ncols=4)
    guides = []
    for ax, (model, value) in zip(axes, panels):
        panel = plot[(plot["model"] == model) & ((plot[facet] == value) if facet else True)]
        for (dataset, domain), points in panel.groupby(["dataset", "domain"], sort=False):
            _errorbars(ax, points, "xv", "yv", color=palette[domain], marker=dataset_marker[dataset][0],
                       size=points["n_train"].map(sizes).to_numpy(), line=True)
        for domain, points in panel.groupby("domain"):
            points = points[points["xv"] > 0]  # 1/d needs d > 0
            if points["xv"].nunique() < 2:
                continue
            c0, c1 = inverse_d_guide(points["xv"], points["yv"], log_y=log_y)
            grid = np.linspace(points["xv"].min(), points["xv"].max(), 100)
            ax.plot(grid, inverse_d_curve(grid, c0, c1, log_y=log_y), color=palette[domain], linestyle="--",
                    linewidth=1.0, alpha=0.8, zorder=1)
            guides.append({"model": model, "domain": domain, "c0": c0, "c1": c1, "n_points": len(points),
                           **({facet: value} if facet else {})})
        if log_y:
            ax.set_yscale("log")
        _frame_points(ax, panel["xv"], panel["yv"], log_y=log_y)
        ax.set_title(str(model) if not facet else f"{model}, {facet} = {value}")
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y) + (" (log scale)" if log_y else ""))
    notes = []
    if n_dropped:
        notes.append(f"{n_dropped} run(s) without a finite {x} / {y}" + (" > 0" if log_y else "") + " left out")
    if "n_unfitted" in summary and summary["n_unfitted"].sum():
        notes.append(f"{int(summary['n_unfitted'].sum())} run(s) did not fit their training set (plotted)")
    if guides:
        notes.append("dashed: least-squares fit of " + ("log y" if log_y else "y") + " = c0 + c1 / "
                     + _symbol(x) + " over a domain's points ("
                     + ("the scaling law's form at fixed N" if log_y else "the loss law's 1/d form")
                     + "; a guide only)")
    if notes:
        fig.text(0.01, -0.02, "; ".join(notes), fontsize=7, ha="left", va="top")
    fig.legend(handles=_legend_handles(domains, palette, datasets, dataset_marker, sizes),
               loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    fig.suptitle(f"{_label(y)} vs {_label(x)} per dataset and training size N\n({CI_NOTE})")
    fig.tight_layout()
    save_figure(fig, png, pdf)
    summary.attrs["guides"] = pd.DataFrame(guides, columns=["model", "domain", "c0", "c1", "n_points"]
                                           + ([facet] if facet else []))
    return summary


def _eps_text(eps_255) -> str:
    return f"{float(eps_255):g}/255"


def figure_sharpness_robustness(attacks: pd.DataFrame, png, pdf, *, attack: str = "fgsm",
                                eps_255: float | None = 2, y: str = "loss_penalty",
                                kf: str = "k_f_255", level: float = 0.95) -> pd.DataFrame:
    """Figure 3: an attack's loss penalty (or ``y``) against label sharpness K_F, one panel per model.

    Each point is a dataset: its mean over N of the per-N means over seeds, with a 95% t-interval
    over those per-N means (:func:`analysis.sharpness_points`, so one N gives no interval);
    colour = domain, marker = dataset. Each panel's title has Table 1's r for those rows
    (:func:`analysis.sharpness_correlations`, same rows, same statistic) with its p-value.

    ``eps_255`` picks the budget in 1/255 units (the paper's Figure 3: 2/255); when it is not
    among the attack's budgets the smallest is shown and the figure says so. ``eps_255=None``
    draws every budget: one row per model, one column per eps. Rows with a non-finite K_F or ``y``
    are left out and counted in the note.

    Returns Table 1's rows for the plotted panels (model, attack, eps_255 and the columns of
    sharpness_correlations) plus ``n_dropped_nonfinite`` (for the whole attack); the plotted
    points are ``result.attrs["points"]`` and the budget note ``result.attrs["eps_note"]``.
    """
    keys = ["model", "attack", "eps_255"]
    _require(attacks, keys + ["dataset", "domain", "n_train", kf, y], "figure_sharpness_robustness")
    chosen = attacks[attacks["attack"] == attack]
    if len(chosen) == 0:
        raise ValueError(f"figure_sharpness_robustness: no rows for attack {attack!r}; "
                         f"attacks present: {sorted(attacks['attack'].unique())}")
    try:
        budgets = sorted(pd.to_numeric(chosen["eps_255"], errors="raise").unique())
    except (TypeError, ValueError) as error:
        raise ValueError(f"figure_sharpness_robustness: column 'eps_255' is not numeric: {error}") from error
    eps_note = ""
    if eps_255 is None:
        epsilons = budgets
    elif any(np.isclose(eps_255, b) for b in budgets):
        epsilons = [b for b in budgets if np.isclose(eps_255, b)]
    else:
        epsilons = budgets[:1]
        eps_note = (f"$\\epsilon$ = {_eps_text(eps_255)} is not among the budgets "
                    f"({', '.join(_eps_text(b) for b in budgets)}): the smallest, {_eps_text(budgets[0])}, is shown")
    chosen = chosen[chosen["eps_255"].isin(epsilons)]
    points = sharpness_points(chosen, keys, x=kf, y=y, level=level)
    n_dropped = points.attrs["n_dropped"]
    if len(points) == 0:
        raise ValueError(f"figure_sharpness_robustness: no {attack!r} row has a finite {kf!r} and {y!r}")
    correlations = sharpness_correlations(chosen, keys, x=kf, y=y, level=level)
    correlations["n_dropped_nonfinite"] = n_dropped

    models = sorted(points["model"].unique(), key=lambda m: natural_key(str(m)))
    domains = _domain_order(points["domain"])
    palette = _palette(domains)
    datasets = _dataset_order(points, domains)
    dataset_marker = _dataset_markers(points, datasets)
    by_panel = correlations.set_index(["model", "eps_255"])
    sns.set_theme(style="whitegrid", context="paper")
    if eps_255 is None:  # a grid: rows = models, columns = eps
        fig, grid = plt.subplots(len(models), len(epsilons), figsize=(3.3 * len(epsilons), 2.9 * len(models)),
                                 squeeze=False)
        panels = [(grid[i, j], m, e) for i, m in enumerate(models) for j, e in enumerate(epsilons)]
    else:
        fig, axes = _facet_axes(len(models), ncols=4, width=4.0, height=3.4)
        panels = [(ax, m, epsilons[0]) for ax, m in zip(axes, models)]
    penalty = f"{attack.upper()} {_label(y).replace('adversarial ', '')}"
    for ax, model, eps in panels:
        panel = points[(points["model"] == model) & (points["eps_255"] == eps)]
        for row in panel.itertuples(index=False):
            row = row._asdict()
            ax.errorbar([row[kf]], [row[y]],
                        xerr=[[row[kf] - row[f"{kf}_ci_low"]], [row[f"{kf}_ci_high"] - row[kf]]],
                        yerr=[[row[y] - row[f"{y}_ci_low"]], [row[f"{y}_ci_high"] - row[y]]],
                        fmt=dataset_marker[row["dataset"]][0], color=palette[row["domain"]],
                        markeredgecolor="black", markeredgewidth=0.4, markersize=6, elinewidth=0.9,
                        capsize=2, alpha=0.9, zorder=3)
        _frame_points(ax, panel[kf], panel[y])
        stats_row = by_panel.loc[(model, eps)] if (model, eps) in by_panel.index else None
        if stats_row is None or not np.isfinite(stats_row["r"]):
            r_text = "r = n/a"
        else:
            p = stats_row["p_value"]
            r_text = f"r = {stats_row['r']:.2f} (p {'< 0.001' if p < 0.001 else f'= {p:.3f}'})"
        title = f"{model}, $\\epsilon$ = {_eps_text(eps)}" if eps_255 is None else str(model)
        ax.set_title(f"{title}\n{r_text}", fontsize=8)
        ax.set_xlabel(_label(kf))
        ax.set_ylabel(penalty)
    notes = [f"each point a dataset: mean over N of the means over seeds; bars: {level:.0%} t-CI over N; "
             "r: Pearson r across datasets of these means (Table 1)"]
    if eps_note:
        notes.append(eps_note)
    if n_dropped:
        notes.append(f"{n_dropped} row(s) with a non-finite $\\hat K_F$ or {y} left out")
    fig.text(0.01, -0.01, "\n".join(notes), fontsize=7, ha="left", va="top")
    fig.legend(handles=_legend_handles(domains, palette, datasets, dataset_marker), loc="upper left",
               bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    budget = "" if eps_255 is None else f" at $\\epsilon$ = {_eps_text(epsilons[0])}"
    fig.suptitle(f"{penalty}{budget} vs label sharpness, per dataset")
    fig.tight_layout()
    save_figure(fig, png, pdf)
    correlations.attrs["points"] = points
    correlations.attrs["eps_note"] = eps_note
    return correlations


# Figure 5 compares d_repr with d_data measured by the same estimator (main: MLE; App. E.2: TwoNN).
REPR_VS_DATA_COLUMNS = {"mle": ("d_mle", "d_repr_mle"), "twonn": ("d_twonn", "d_repr_twonn")}


def figure_repr_vs_data(runs: pd.DataFrame, png, pdf, *, estimator: str = "mle") -> tuple[pd.DataFrame, float]:
    """Figure 5: intrinsic dimension of the learned representation against that of the data.

    Both axes use one ``estimator`` (:data:`REPR_VS_DATA_COLUMNS`): "mle" plots d_repr_mle
    against d_mle (the paper's Figure 5), "twonn" d_repr_twonn against d_twonn (App. E.2).
    Points are (model, dataset, N) means over seeds with 95% Student-t intervals over seeds in
    both axes; colour = domain, marker = model. The dotted line is y = x. The fraction of plotted
    points with mean d_repr <= mean d_data is written on the figure and returned. Rows with a
    non-finite x or y are left out (counted in the note).

    Returns (summary, fraction): summary has one row per (model, dataset, domain, n_train) with
    ``x``, ``x_mean``, ``x_ci_low``, ``x_ci_high``, ``y``, ``y_mean``, ``y_ci_low``, ``y_ci_high``,
    ``n_seeds`` and ``repr_le_data`` (y_mean <= x_mean).
    """
    if estimator not in REPR_VS_DATA_COLUMNS:
        raise ValueError(f"figure_repr_vs_data: estimator must be one of {list(REPR_VS_DATA_COLUMNS)}, "
                         f"not {estimator!r}")
    x, y = REPR_VS_DATA_COLUMNS[estimator]
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
    name = {"mle": "MLE", "twonn": "TwoNN"}[estimator]
    ax.set_title(f"Representation vs data intrinsic dimension, both by {name}\n"
                 f"per model, dataset and N ({CI_NOTE})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, png, pdf)
    return summary, fraction
