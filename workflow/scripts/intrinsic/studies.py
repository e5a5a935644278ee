"""Follow-up studies on the training grid's tidy tables (runs, attacks, epochs).

1. Background noise vs learned rank (Zhang et al. 2025): as the sigma of background Gaussian
   noise grows, the rank of the data grows, while the rank a CNN learns (its final hidden
   representation, its first filters) should change far less if the network learns the intrinsic
   dimension of the clean images. :func:`noise_rank_table`, :func:`noise_rank_claim`,
   :func:`figure_noise_rank`.
2. Fan & Yezzi's variants ("noise_class": an extra class of noise images; "exclude_illusive":
   training again without the illusive samples of a first, fixed-epoch pass) against the
   "standard" training, on clean data: :func:`variant_table`, :func:`figure_variants`,
   :func:`figure_overfitting`.
3. Novak et al. (2018), sensitivity and generalization: the mean Frobenius norm of the input-output
   Jacobian of the softmax against the generalization gap, one point per run:
   :func:`jacobian_generalization_table`, :func:`figure_jacobian_generalization`.

Conventions. Intervals are Student-t intervals of a mean (:func:`analysis.mean_t_interval`; one
value gives the value itself); non-finite values are left out of a mean. Pearson intervals are
Fisher z with standard error 1/sqrt(n - 3) (:func:`analysis.pearson_with_ci`); Spearman intervals
are Fisher z with the Fieller-Hartley-Pearson standard error sqrt(1.06/(n - 3)). Every function
is pure on DataFrames; the figures are written with :func:`figures.save_figure` (PNG and PDF).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from scipy import stats

from . import grid
from .analysis import finite_mean_interval, pearson_with_ci, to_markdown_table
from .figures import (_dataset_order, _domain_order, _facet_axes,
                      _require, natural_key, save_figure)
from .tables import numeric_column

RUN_AXES = list(grid.AXIS_TYPES)
VARIANT_ORDER = ["standard", "noise_class", "exclude_illusive"]
VARIANT_PALETTE = {"standard": "#1f77b4", "noise_class": "#2ca02c", "exclude_illusive": "#ff7f0e"}
ATTACK_STYLE = {"fgsm": "-", "pgd": "--"}

# ------------------------------------------------------------------------------------- helpers


def _slice(table: pd.DataFrame, *, noise: float | None = None, variant: str | None = None,
           what: str) -> pd.DataFrame:
    """Rows at background noise ``noise`` (compared with a tolerance) and of ``variant``; None
    keeps every value of that axis."""
    keep = np.ones(len(table), dtype=bool)
    if noise is not None:
        _require(table, ["noise"], what)
        keep &= np.isclose(numeric_column(table, "noise").to_numpy(), float(noise), rtol=0, atol=1e-9)
    if variant is not None:
        _require(table, ["variant"], what)
        keep &= (table["variant"].astype(str) == str(variant)).to_numpy()
    return table.loc[keep]


def _variant_key(name) -> tuple:
    name = str(name)
    return (VARIANT_ORDER.index(name) if name in VARIANT_ORDER else len(VARIANT_ORDER), natural_key(name))


def _variant_colours(variants) -> dict:
    spare = [c for c in sns.color_palette("tab10").as_hex() if c not in VARIANT_PALETTE.values()]
    extra = [v for v in variants if v not in VARIANT_PALETTE]
    return {v: VARIANT_PALETTE.get(v) or spare[extra.index(v) % len(spare)] for v in variants}


def _model_colours(models) -> dict:
    colours = sns.color_palette("tab10", max(len(models), 1)).as_hex() if len(models) <= 10 else \
        sns.color_palette("husl", len(models)).as_hex()
    return dict(zip(models, colours))


def _sorted(values) -> list:
    return sorted(pd.unique(pd.Series(list(values))), key=lambda v: natural_key(str(v)))


def _datasets_in_order(table: pd.DataFrame) -> list:
    return _dataset_order(table, _domain_order(table["domain"]))


def _ordered(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by ``columns``: datasets by domain then name, variants standard, noise_class,
    exclude_illusive (then others), other text naturally ('d2' before 'd16'), numbers by value."""
    if table.empty:
        return table.reset_index(drop=True)
    ranks = {}
    for column in columns:
        values = table[column]
        if column == "dataset":
            order = _datasets_in_order(table)
        elif column == "variant":
            order = sorted(pd.unique(values), key=_variant_key)
        elif column == "domain":
            order = _domain_order(values)
        elif pd.api.types.is_numeric_dtype(values):
            ranks[column] = values.to_numpy()
            continue
        else:
            order = _sorted(values)
        position = {v: i for i, v in enumerate(order)}
        ranks[column] = values.map(position).to_numpy()
    index = np.lexsort([ranks[c] for c in reversed(list(columns))])
    return table.iloc[index].reset_index(drop=True)


def _yerr(means, lows, highs) -> np.ndarray:
    means, lows, highs = (np.asarray(v, dtype=float) for v in (means, lows, highs))
    return np.vstack([np.nan_to_num(means - lows), np.nan_to_num(highs - means)])


def _finish(fig, notes: list[str], title: str, png, pdf) -> None:
    """The notes under the panels, the title, the layout, then PNG and PDF (every study figure)."""
    if notes:
        fig.text(0.01, -0.01, "\n".join(notes), fontsize=7, ha="left", va="top")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, png, pdf)


def _plain_log_ticks(ax, axis: str = "y") -> None:
    """Plain numbers (30, not 3 x 10^1) on a log axis; minor labels only within about a decade."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    target.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    def minor(value, _):  # 2, 3 and 5 times a power of ten, so labels do not crowd
        mantissa = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
        return f"{value:g}" if any(math.isclose(mantissa, m) for m in (2, 3, 5)) else ""

    narrow = low > 0 and high / low < 12
    target.set_minor_formatter(ticker.FuncFormatter(minor) if narrow else ticker.NullFormatter())


def _interval_text(low, high) -> str:
    return "" if pd.isna(low) or pd.isna(high) else f"[{low:.3g}, {high:.3g}]"


def _with_ci(table: pd.DataFrame, column: str, prefix: str = "") -> list[str]:
    """'mean [low, high]' cells (blank when the mean is missing) for a markdown table."""
    cells = []
    for mean, low, high in zip(table[f"{prefix}{column}"], table[f"{prefix}{column}_ci_low"],
                               table[f"{prefix}{column}_ci_high"]):
        cells.append("" if pd.isna(mean) else f"{mean:.3g} {_interval_text(low, high)}".strip())
    return cells


# ------------------------------------------------------------ 1. background noise vs learned rank

NOISE_RANK_MEASURES = ["data_energy_rank", "d_mle", "d_twonn", "filter_energy_rank", "filter_update_energy_rank",
                       "repr_energy_rank", "repr_effective_rank", "d_repr_mle", "test_accuracy"]
NOISE_KEYS = ["dataset", "domain", "model"]
DATA_PANEL = ["data_energy_rank", "d_mle"]
# The filters' learned part, W - W_0: W itself keeps the near-full rank of its random init.
MODEL_PANEL = ["repr_energy_rank", "filter_update_energy_rank", "d_repr_mle"]
MEASURE_LABELS = {
    "data_energy_rank": "data rank (99% energy)",
    "d_mle": "$d_{data}$ (MLE)",
    "d_twonn": "$d_{data}$ (TwoNN)",
    "repr_energy_rank": "representation rank (99% energy)",
    "repr_effective_rank": "representation effective rank",
    "filter_energy_rank": "first-layer filter rank (99% energy)",
    "filter_update_energy_rank": "first-layer filter update rank, $W - W_0$ (99% energy)",
    "d_repr_mle": "$d_{repr}$ (MLE)",
    "test_accuracy": "test accuracy",
}
MEASURE_MARKERS = {"data_energy_rank": "o", "d_mle": "s", "repr_energy_rank": "o", "filter_energy_rank": "^",
                   "filter_update_energy_rank": "^", "d_repr_mle": "s"}
MEASURE_LINES = {"data_energy_rank": "-", "d_mle": "--", "repr_energy_rank": "-", "filter_energy_rank": ":",
                 "filter_update_energy_rank": ":", "d_repr_mle": "--"}


def noise_rank_table(runs: pd.DataFrame, *, measures: Sequence[str] = tuple(NOISE_RANK_MEASURES),
                     by_n_train: bool = False, level: float = 0.95) -> pd.DataFrame:
    """Data and model ranks per background-noise level: "standard" runs only.

    One row per (dataset, domain, model, noise) (and n_train with ``by_n_train``). Each seed is
    averaged over the training sizes N first (unless ``by_n_train``), so the interval is over
    seeds: ``<m>``, ``<m>_ci_low``, ``<m>_ci_high`` (``level`` Student-t, non-finite values left
    out) for every measure m; ``<m>_ratio_to_clean`` is the mean over the mean of the same
    (dataset, model[, n_train]) at noise 0 (NaN when noise 0 is absent or its mean is 0 or NaN).
    ``n_seeds`` counts the seeds, ``n_sizes`` the training sizes, ``n_runs`` the runs.
    """
    measures = list(measures)
    keys = NOISE_KEYS + (["n_train"] if by_n_train else [])
    _require(runs, RUN_AXES + ["domain"] + measures, "noise_rank_table")
    rows = _slice(runs, variant="standard", what="noise_rank_table").copy()
    rows["noise"] = numeric_column(rows, "noise")
    for column in measures:
        rows[column] = numeric_column(rows, column)
    columns = keys + ["noise", "n_seeds", "n_sizes", "n_runs"] + [
        f"{m}{s}" for m in measures for s in ("", "_ci_low", "_ci_high", "_ratio_to_clean")]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    seeds = rows.groupby(keys + ["noise", "seed"], sort=True)[measures].mean().reset_index()
    sizes = rows.groupby(keys + ["noise"], sort=True).agg(n_sizes=("n_train", "nunique"),
                                                          n_runs=("n_train", "size"))
    out = []
    for key, group in seeds.groupby(keys + ["noise"], sort=True):
        row = dict(zip(keys + ["noise"], key))
        row["n_seeds"] = int(group["seed"].nunique())
        row["n_sizes"] = int(sizes.loc[key, "n_sizes"])
        row["n_runs"] = int(sizes.loc[key, "n_runs"])
        for column in measures:
            mean, low, high, _ = finite_mean_interval(group[column], level)
            row.update({column: mean, f"{column}_ci_low": low, f"{column}_ci_high": high})
        out.append(row)
    table = pd.DataFrame(out)
    match = [k for k in keys if k != "domain"]
    clean = table[np.isclose(table["noise"], 0.0, rtol=0, atol=1e-9)]
    clean = clean.groupby(match)[measures].mean()  # one row per key (noise 0 is one level)
    base = table[match].merge(clean, left_on=match, right_index=True, how="left")
    for column in measures:
        denominator = base[column].astype(float).where(lambda b: b != 0)
        table[f"{column}_ratio_to_clean"] = table[column] / denominator.to_numpy()
    return _ordered(table, keys[:1] + keys[2:] + ["noise"])[columns]


CLAIM_MEASURES = {"data_rank": "data_energy_rank", "model_rank": "repr_energy_rank",
                  "filter_rank": "filter_energy_rank", "filter_update_rank": "filter_update_energy_rank",
                  "d_data": "d_mle", "d_repr": "d_repr_mle"}


def noise_rank_claim(table: pd.DataFrame) -> pd.DataFrame:
    """The claim per (dataset, domain, model[, n_train]) of a :func:`noise_rank_table`.

    For data_rank (data_energy_rank), model_rank (repr_energy_rank), filter_rank
    (filter_energy_rank), d_data (d_mle) and d_repr (d_repr_mle): ``<name>_low`` and
    ``<name>_high``, the means at the lowest and highest noise level, and ``<name>_rel_change``
    = (high - low) / abs(low) (NaN when low is 0 or a mean is missing). ``model_rank_changes_less``
    is abs(model_rank_rel_change) < abs(data_rank_rel_change) (nullable boolean: NA with a
    ``note`` when there is a single noise level or a change is undefined).
    """
    keys = NOISE_KEYS + (["n_train"] if "n_train" in table.columns else [])
    _require(table, keys + ["noise"] + list(CLAIM_MEASURES.values()), "noise_rank_claim")
    out = []
    for key, group in table.groupby(keys, sort=False):
        group = group.sort_values("noise")
        low, high = group.iloc[0], group.iloc[-1]
        row = dict(zip(keys, key))
        row.update(noise_low=float(low["noise"]), noise_high=float(high["noise"]),
                   n_noise_levels=int(group["noise"].nunique()))
        for name, column in CLAIM_MEASURES.items():
            a, b = float(low[column]), float(high[column])
            change = (b - a) / abs(a) if np.isfinite(a) and np.isfinite(b) and a != 0 else math.nan
            row.update({f"{name}_low": a, f"{name}_high": b, f"{name}_rel_change": change})
        data, model = row["data_rank_rel_change"], row["model_rank_rel_change"]
        if row["n_noise_levels"] < 2:
            row.update(model_rank_changes_less=pd.NA, note="a single noise level: no change to compare")
        elif not (np.isfinite(data) and np.isfinite(model)):
            row.update(model_rank_changes_less=pd.NA,
                       note="a rank is missing or 0 at the lowest noise level: relative change undefined")
        else:
            row.update(model_rank_changes_less=bool(abs(model) < abs(data)), note="")
        out.append(row)
    columns = keys + ["noise_low", "noise_high", "n_noise_levels"] + [
        f"{n}_{s}" for n in CLAIM_MEASURES for s in ("low", "high", "rel_change")] + [
        "model_rank_changes_less", "note"]
    claim = pd.DataFrame(out, columns=columns)
    claim["model_rank_changes_less"] = claim["model_rank_changes_less"].astype("boolean")
    return claim


def noise_rank_markdown(table: pd.DataFrame, claim: pd.DataFrame | None = None) -> str:
    """Markdown of a :func:`noise_rank_table` (means with their intervals, ratios to noise 0) and
    of its :func:`noise_rank_claim` (computed when not given)."""
    claim = noise_rank_claim(table) if claim is None else claim
    keys = [k for k in NOISE_KEYS + ["n_train"] if k in table.columns]
    shown = ["data_energy_rank", "d_mle", "repr_energy_rank", "filter_energy_rank", "d_repr_mle", "test_accuracy"]
    shown = [m for m in shown if m in table.columns]
    wide = table[keys + ["noise", "n_seeds"]].copy()
    for m in shown:
        wide[f"{m} [95% CI]"] = _with_ci(table, m)
        wide[f"{m} / clean"] = table[f"{m}_ratio_to_clean"]
    brief = claim[[c for c in claim.columns if c in keys or c in (
        "noise_low", "noise_high", "data_rank_rel_change", "model_rank_rel_change", "filter_rank_rel_change",
        "d_data_rel_change", "d_repr_rel_change", "model_rank_changes_less", "note")]]
    return ("# Background noise vs learned rank (standard runs)\n\n"
            "Means over seeds (each seed averaged over N) [95% Student-t intervals over seeds]; "
            "`/ clean`: ratio to the same dataset and model at noise 0.\n\n"
            + to_markdown_table(wide, floatfmt={"noise": "g"})
            + "\n## Claim: the model's rank changes less than the data's\n\n"
              "Relative change from the lowest to the highest noise level, (high - low) / abs(low).\n\n"
            + to_markdown_table(brief, floatfmt={"noise_low": "g", "noise_high": "g"}))


def figure_noise_rank(runs: pd.DataFrame, png, pdf, *, level: float = 0.95) -> pd.DataFrame:
    """Data rank and model rank against the background noise sigma, one row of panels per dataset.

    Left: data rank (99% energy) and d_data (MLE) of the training split; right: the model's
    ranks (representation and first-layer filters, 99% energy) and d_repr (MLE). One colour per
    model, one marker and line style per measure; each point is the mean over seeds (each seed
    averaged over N) with a ``level`` Student-t bar over seeds (:func:`noise_rank_table`). The y
    axis is logarithmic, so equal slopes are equal relative changes. Points of different models
    are drawn slightly apart in sigma so that identical data curves stay visible; a single noise
    level gives points without lines.

    Returns the plotted numbers, one row per (dataset, domain, model, noise, measure): ``panel``
    ("data" or "model"), ``mean``, ``ci_low``, ``ci_high``, ``n_seeds`` (non-positive means, which
    a log axis cannot show, are left out and counted in the note).
    """
    table = noise_rank_table(runs, measures=DATA_PANEL + MODEL_PANEL, level=level)
    if table.empty:
        raise ValueError("figure_noise_rank: no 'standard' runs to plot")
    long = []
    for panel, measures in (("data", DATA_PANEL), ("model", MODEL_PANEL)):
        for m in measures:
            part = table[NOISE_KEYS + ["noise", "n_seeds"]].copy()
            part.insert(4, "measure", m)
            part.insert(4, "panel", panel)
            part["mean"], part["ci_low"], part["ci_high"] = table[m], table[f"{m}_ci_low"], table[f"{m}_ci_high"]
            long.append(part)
    points = pd.concat(long, ignore_index=True)
    plotted = points["mean"].gt(0) & np.isfinite(points["mean"])
    n_left_out = int((~plotted).sum())
    points = points[plotted].reset_index(drop=True)
    if points.empty:
        raise ValueError("figure_noise_rank: no finite positive rank or dimension to plot")

    datasets = _datasets_in_order(points)
    models = _sorted(points["model"])
    colour = _model_colours(models)
    noises = np.sort(points["noise"].unique())
    span = float(noises[-1] - noises[0]) if len(noises) > 1 else 1.0
    dodge = {m: (i - (len(models) - 1) / 2) * 0.012 * span for i, m in enumerate(models)}
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.2 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        domain = points.loc[points["dataset"] == dataset, "domain"].iloc[0]
        for col, (panel, measures) in enumerate((("data", DATA_PANEL), ("model", MODEL_PANEL))):
            ax = axes[row, col]
            for model in models:
                for m in measures:
                    line = points[(points["dataset"] == dataset) & (points["model"] == model)
                                  & (points["measure"] == m)].sort_values("noise")
                    if line.empty:
                        continue
                    x = line["noise"].to_numpy(float) + dodge[model]
                    ax.errorbar(x, line["mean"], yerr=_yerr(line["mean"], line["ci_low"], line["ci_high"]),
                                fmt=MEASURE_MARKERS[m], linestyle=MEASURE_LINES[m] if len(line) > 1 else "none",
                                color=colour[model], markeredgecolor="black", markeredgewidth=0.4,
                                markersize=4.5, elinewidth=0.8, capsize=2, linewidth=1.0, alpha=0.9)
            ax.set_yscale("log")
            _plain_log_ticks(ax)
            ax.set_xticks(noises)
            ax.set_xticklabels([f"{n:g}" for n in noises])
            if len(noises) == 1:
                ax.set_xlim(noises[0] - 0.5, noises[0] + 0.5)
            ax.set_xlabel("background noise $\\sigma$")
            ax.set_ylabel("rank / intrinsic dimension (log scale)")
            what = "data" if panel == "data" else "model"
            ax.set_title(f"{dataset} ({domain}): {what}", fontsize=9)
    handles = [Line2D([], [], linestyle="none", label="model")]
    handles += [Line2D([], [], marker="o", linestyle="none", color=colour[m], markeredgecolor="black",
                       markeredgewidth=0.4, label=str(m)) for m in models]
    handles.append(Line2D([], [], linestyle="none", label="measure"))
    handles += [Line2D([], [], marker=MEASURE_MARKERS[m], linestyle=MEASURE_LINES[m], color="gray",
                       markeredgecolor="black", markeredgewidth=0.4, label=MEASURE_LABELS[m])
                for m in DATA_PANEL + MODEL_PANEL]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.97), frameon=False, fontsize=7)
    notes = [f"standard runs; mean over seeds (each seed averaged over N), bars: {level:.0%} Student-t CI "
             "over seeds; models drawn slightly apart in $\\sigma$",
             "claim: if the network learns the clean data's intrinsic dimension, the model curves (right) stay "
             "flat while the data rank (left) grows with $\\sigma$"]
    if len(noises) == 1:
        notes.append(f"a single noise level ($\\sigma$ = {noises[0]:g}): no trend to read")
    if n_left_out:
        notes.append(f"{n_left_out} missing or non-positive mean(s) left out (log axis)")
    _finish(fig, notes, "Data rank vs learned rank under background noise", png, pdf)
    return points


# ---------------------------------------------------------------------- 2. Fan & Yezzi variants

VARIANT_KEYS = ["dataset", "domain", "model", "variant"]
PAIR_KEYS = ["dataset", "model", "n_train", "seed"]
VARIANT_MEASURES = ["test_accuracy", "test_accuracy_real_classes", "test_loss", "generalization_gap",
                    "noise_predicted_fraction", "n_excluded", "n_noise_images"]
PAIRED_MEASURES = ["test_accuracy", "test_loss", "generalization_gap"]


def _eps_255(values) -> pd.Series:
    return pd.to_numeric(values, errors="raise").astype(float).round(6)


def _attack_key(attack) -> tuple:
    attack = str(attack)
    return (list(ATTACK_STYLE).index(attack) if attack in ATTACK_STYLE else len(ATTACK_STYLE), natural_key(attack))


def _attack_column(attack, eps_255) -> str:
    return f"{attack}_acc_eps{float(eps_255):g}"


def _attack_wide(attacks: pd.DataFrame | None, eps_255_for_table=None) -> tuple[pd.DataFrame, list[str]]:
    """Per run (noise 0): attacked_accuracy in one column per attack x eps, and those names."""
    keys = PAIR_KEYS + ["variant"]
    if attacks is None or len(attacks) == 0:
        return pd.DataFrame(columns=keys), []
    _require(attacks, RUN_AXES + ["attack", "eps_255", "attacked_accuracy"], "variant_table (attacks)")
    rows = _slice(attacks, noise=0.0, what="variant_table (attacks)").copy()
    rows["eps_255"] = _eps_255(rows["eps_255"])
    if eps_255_for_table is not None:
        wanted = np.atleast_1d(np.asarray(eps_255_for_table, dtype=float))
        rows = rows[np.isclose(rows["eps_255"].to_numpy()[:, None], wanted[None, :]).any(axis=1)]
    if rows.empty:
        return pd.DataFrame(columns=keys), []
    rows["attacked_accuracy"] = numeric_column(rows, "attacked_accuracy")
    rows["column"] = [_attack_column(a, e) for a, e in zip(rows["attack"], rows["eps_255"])]
    budgets = rows[["attack", "eps_255", "column"]].drop_duplicates().itertuples(index=False)
    names = [b.column for b in sorted(budgets, key=lambda b: (_attack_key(b.attack), b.eps_255))]
    wide = rows.pivot_table(index=keys, columns="column", values="attacked_accuracy", aggfunc="mean")
    return wide.reindex(columns=names).reset_index(), names


def _per_run(runs: pd.DataFrame, attacks, eps_255_for_table) -> tuple[pd.DataFrame, list[str]]:
    """Runs at noise 0, one row per (dataset, domain, model, n_train, seed, variant), with the gap
    and the wide attacked accuracies."""
    _require(runs, RUN_AXES + ["domain", "train_loss", "test_loss", "test_accuracy",
                               "test_accuracy_real_classes", "noise_predicted_fraction", "n_excluded",
                               "n_noise_images"], "variant_table")
    rows = _slice(runs, noise=0.0, what="variant_table").copy()
    for column in ["train_loss", "test_loss", "test_accuracy", "test_accuracy_real_classes",
                   "noise_predicted_fraction", "n_excluded", "n_noise_images"]:
        rows[column] = numeric_column(rows, column)
    rows["variant"] = rows["variant"].astype(str)
    rows["generalization_gap"] = rows["test_loss"] - rows["train_loss"]
    keys = PAIR_KEYS + ["variant"]
    per_run = rows.groupby(keys + ["domain"], sort=True)[VARIANT_MEASURES].mean().reset_index()
    wide, attack_columns = _attack_wide(attacks, eps_255_for_table)
    if attack_columns:
        wide["variant"] = wide["variant"].astype(str)
        per_run = per_run.merge(wide, on=keys, how="left")
    return per_run, attack_columns


def variant_table(runs: pd.DataFrame, attacks: pd.DataFrame | None = None, eps_255_for_table=None, *,
                  level: float = 0.95) -> pd.DataFrame:
    """Fan & Yezzi's variants against standard training, on clean data (noise 0 only).

    One row per (dataset, domain, model, variant), variants in the order standard, noise_class,
    exclude_illusive (then others): ``n_runs`` and, over runs, the mean ``<m>`` and its ``level``
    Student-t interval ``<m>_ci_low``/``<m>_ci_high`` of test_accuracy, test_accuracy_real_classes,
    test_loss, generalization_gap (test_loss - train_loss), noise_predicted_fraction, n_excluded,
    n_noise_images and the attacked accuracy of each attack x eps, ``<attack>_acc_eps<eps_255:g>``
    (``eps_255_for_table``: a budget or a list of budgets in 1/255 units; None: all). Non-finite
    values are left out of a mean.

    Paired differences: a variant's run is paired with the standard run of the same (dataset,
    model, n_train, seed); ``n_pairs`` counts the pairs, ``diff_<m>`` is the mean of variant minus
    standard, ``diff_<m>_ci_low``/``_ci_high`` its t-interval, for test_accuracy, test_loss,
    generalization_gap and every attacked accuracy. The standard rows have n_pairs 0 and NaN
    differences. The per-run rows are in ``result.attrs["per_run"]``.
    """
    per_run, attack_columns = _per_run(runs, attacks, eps_255_for_table)
    measures = VARIANT_MEASURES + attack_columns
    paired = PAIRED_MEASURES + attack_columns
    columns = VARIANT_KEYS + ["n_runs"] + [f"{m}{s}" for m in measures for s in ("", "_ci_low", "_ci_high")] + [
        "n_pairs"] + [f"diff_{m}{s}" for m in paired for s in ("", "_ci_low", "_ci_high")]
    if per_run.empty:
        table = pd.DataFrame(columns=columns)
        table.attrs["per_run"] = per_run
        return table
    standard = per_run[per_run["variant"] == "standard"].set_index(PAIR_KEYS)[paired]
    out = []
    for key, group in per_run.groupby(VARIANT_KEYS, sort=False):
        row = dict(zip(VARIANT_KEYS, key))
        row["n_runs"] = len(group)
        for m in measures:
            mean, low, high, _ = finite_mean_interval(group[m], level)
            row.update({m: mean, f"{m}_ci_low": low, f"{m}_ci_high": high})
        if row["variant"] == "standard":
            row["n_pairs"] = 0
            row.update({f"diff_{m}{s}": math.nan for m in paired for s in ("", "_ci_low", "_ci_high")})
        else:
            joined = group.set_index(PAIR_KEYS)[paired].merge(standard.add_suffix("_standard"), how="inner",
                                                              left_index=True, right_index=True)
            row["n_pairs"] = len(joined)
            for m in paired:
                mean, low, high, _ = finite_mean_interval(joined[m] - joined[f"{m}_standard"], level)
                row.update({f"diff_{m}": mean, f"diff_{m}_ci_low": low, f"diff_{m}_ci_high": high})
        out.append(row)
    table = _ordered(pd.DataFrame(out, columns=columns), ["dataset", "model", "variant"])
    table.attrs["per_run"] = per_run
    return table


def variant_markdown(table: pd.DataFrame) -> str:
    """Markdown of a :func:`variant_table`: the means (with intervals) per variant, then the paired
    differences against standard training."""
    diffs = [c[len("diff_"):] for c in table.columns
             if c.startswith("diff_") and not c.endswith(("_ci_low", "_ci_high"))]
    means = [c for c in table.columns if f"{c}_ci_low" in table.columns and not c.startswith("diff_")]
    first = table[VARIANT_KEYS + ["n_runs"]].copy()
    for m in means:
        first[f"{m} [95% CI]"] = _with_ci(table, m)
    others = table[table["variant"] != "standard"]
    second = others[VARIANT_KEYS + ["n_pairs"]].copy()
    for m in diffs:
        second[f"{m} - standard [95% CI]"] = _with_ci(others, m, prefix="diff_")
    return ("# Fan & Yezzi variants vs standard training (noise 0)\n\n"
            "Means over runs [95% Student-t intervals]; generalization_gap = test loss - train loss.\n\n"
            + to_markdown_table(first)
            + "\n## Paired differences (variant - standard, same dataset, model, N and seed)\n\n"
            + to_markdown_table(second))


def figure_variants(runs: pd.DataFrame, attacks: pd.DataFrame | None, png, pdf, *,
                    level: float = 0.95) -> pd.DataFrame:
    """Clean and adversarial test accuracy by variant: a row of panels per dataset, a column per model.

    In each panel x is the attack budget eps (1/255 units): the point at 0 is the clean test
    accuracy, the FGSM curve (solid) and the PGD curve (dashed, when present) start from it.
    Colour is the variant. Points are means over runs (noise 0) with ``level`` Student-t bars;
    variants are drawn slightly apart in eps.

    Returns the plotted numbers: one row per (dataset, domain, model, variant, attack, eps_255)
    with ``accuracy``, ``ci_low``, ``ci_high``, ``n_runs``; attack "clean" (eps_255 0) is the test
    accuracy.
    """
    per_run, attack_columns = _per_run(runs, attacks, None)
    if per_run.empty:
        raise ValueError("figure_variants: no runs at noise 0")
    meta = {}
    if attack_columns:
        pairs = _slice(attacks, noise=0.0, what="figure_variants").copy()
        pairs["eps_255"] = _eps_255(pairs["eps_255"])
        meta = {_attack_column(a, e): (a, e) for a, e in zip(pairs["attack"], pairs["eps_255"])}
    out = []
    for key, group in per_run.groupby(VARIANT_KEYS, sort=False):
        for column, (attack, eps) in [("test_accuracy", ("clean", 0.0))] + [(c, meta[c]) for c in attack_columns]:
            mean, low, high, n = finite_mean_interval(group[column], level)
            if n:
                out.append({**dict(zip(VARIANT_KEYS, key)), "attack": attack, "eps_255": eps,
                            "accuracy": mean, "ci_low": low, "ci_high": high, "n_runs": n})
    points = pd.DataFrame(out, columns=VARIANT_KEYS + ["attack", "eps_255", "accuracy", "ci_low", "ci_high",
                                                       "n_runs"])
    datasets = _datasets_in_order(points)
    models = _sorted(points["model"])
    variants = sorted(points["variant"].unique(), key=_variant_key)
    colour = _variant_colours(variants)
    attacks_present = [a for a in points["attack"].unique() if a != "clean"]
    attacks_present = sorted(attacks_present, key=_attack_key)
    extra_styles = ["-.", (0, (1, 1)), (0, (5, 1, 1, 1))]
    style = {a: ATTACK_STYLE.get(a, extra_styles[i % 3]) for i, a in enumerate(attacks_present)}
    budgets = np.sort(points["eps_255"].unique())
    span = float(budgets[-1] - budgets[0]) if len(budgets) > 1 else 1.0
    dodge = {v: (i - (len(variants) - 1) / 2) * 0.015 * span for i, v in enumerate(variants)}
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(len(datasets), len(models), figsize=(3.8 * len(models), 3.1 * len(datasets)),
                             squeeze=False)
    for i, dataset in enumerate(datasets):
        for j, model in enumerate(models):
            ax = axes[i, j]
            panel = points[(points["dataset"] == dataset) & (points["model"] == model)]
            if panel.empty:
                ax.set_visible(False)
                continue
            for variant in variants:
                rows = panel[panel["variant"] == variant]
                clean = rows[rows["attack"] == "clean"]
                for attack in attacks_present or [None]:
                    curve = pd.concat([clean, rows[rows["attack"] == attack]]).sort_values("eps_255")
                    if curve.empty:
                        continue
                    ax.errorbar(curve["eps_255"] + dodge[variant], curve["accuracy"],
                                yerr=_yerr(curve["accuracy"], curve["ci_low"], curve["ci_high"]),
                                fmt="o", linestyle=style.get(attack, "none") if len(curve) > 1 else "none",
                                color=colour[variant], markeredgecolor="black", markeredgewidth=0.4,
                                markersize=4, elinewidth=0.8, capsize=2, linewidth=1.0, alpha=0.9)
            ax.set_xticks(budgets)
            ax.set_xticklabels([f"{b:g}" for b in budgets])
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("attack budget $\\epsilon$ (1/255; 0 = clean)")
            ax.set_ylabel("test accuracy")
            domain = panel["domain"].iloc[0]
            ax.set_title(f"{dataset} ({domain}), {model}", fontsize=9)
    handles = [Line2D([], [], linestyle="none", label="variant")]
    handles += [Line2D([], [], marker="o", linestyle="none", color=colour[v], markeredgecolor="black",
                       markeredgewidth=0.4, label=str(v)) for v in variants]
    if attacks_present:
        handles.append(Line2D([], [], linestyle="none", label="attack"))
        handles += [Line2D([], [], linestyle=style[a], color="gray", label=str(a).upper()) for a in attacks_present]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.97), frameon=False, fontsize=7)
    notes = [f"noise 0; mean over runs (N and seeds), bars: {level:.0%} Student-t CI over runs; "
             "variants drawn slightly apart in $\\epsilon$",
             "eps 0: test_accuracy, the argmax over every output (the noise class included), as the attacked "
             "accuracies"]
    missing = [v for v in VARIANT_ORDER if v not in variants]
    if missing:
        notes.append("no runs of variant(s): " + ", ".join(missing))
    if not attacks_present:
        notes.append("no attack results: clean accuracy only")
    _finish(fig, notes, "Clean and adversarial test accuracy of Fan & Yezzi's variants", png, pdf)
    return points


OVERFITTING_VARIANTS = ["standard", "exclude_illusive"]


def figure_overfitting(epochs: pd.DataFrame, png, pdf, *, show_first_pass: bool = True) -> pd.DataFrame:
    """Train and test loss per epoch of standard vs exclude_illusive training (noise 0).

    One panel per (dataset, model). Colour is the variant; thick lines are the test loss, thin
    lines the training loss (evaluated in eval mode on the training set). The kept models
    (``pass`` "final") are solid; the first, fixed-epoch pass of exclude_illusive runs (which finds
    the illusive samples) is dashed, or left out with ``show_first_pass=False``. Runs of one curve
    may stop at different epochs: each epoch's mean is over the runs that reached it, and the note
    says when the number of runs falls. The y axis is logarithmic when every plotted loss is
    positive.

    Returns the plotted numbers: one row per (dataset, domain, model, variant, pass, epoch) with
    ``train_loss``, ``test_loss`` (means over runs), ``n_runs`` (runs that reached the epoch) and
    ``n_runs_total`` (runs of that curve).
    """
    _require(epochs, RUN_AXES + ["domain", "epoch", "train_loss", "test_loss", "pass"], "figure_overfitting")
    rows = _slice(epochs, noise=0.0, what="figure_overfitting").copy()
    rows["variant"] = rows["variant"].astype(str)
    rows["pass"] = rows["pass"].astype(str)
    rows = rows[rows["variant"].isin(OVERFITTING_VARIANTS)]
    passes = ["final", "first"] if show_first_pass else ["final"]
    rows = rows[rows["pass"].isin(passes)]
    if rows.empty:
        raise ValueError("figure_overfitting: no standard or exclude_illusive epochs at noise 0")
    for column in ("epoch", "train_loss", "test_loss"):
        rows[column] = numeric_column(rows, column)
    curve = ["dataset", "domain", "model", "variant", "pass"]
    run = curve + ["n_train", "seed"]
    per_run = rows.groupby(run + ["epoch"], sort=True)[["train_loss", "test_loss"]].mean().reset_index()
    totals = per_run.groupby(curve)[["n_train", "seed"]].apply(lambda g: len(g.drop_duplicates()))
    points = per_run.groupby(curve + ["epoch"], sort=True).agg(
        train_loss=("train_loss", "mean"), test_loss=("test_loss", "mean"),
        n_runs=("seed", "size")).reset_index()
    points["n_runs_total"] = [int(totals.loc[tuple(k)]) for k in points[curve].itertuples(index=False, name=None)]
    points = _ordered(points, ["dataset", "model", "variant", "pass", "epoch"])

    datasets = _datasets_in_order(points)
    models = _sorted(points["model"])
    panels = [(d, m) for d in datasets for m in models
              if ((points["dataset"] == d) & (points["model"] == m)).any()]
    colour = _variant_colours(OVERFITTING_VARIANTS)
    losses = points[["train_loss", "test_loss"]].to_numpy(float)
    log_y = bool(np.all(losses[np.isfinite(losses)] > 0))
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = _facet_axes(len(panels), ncols=min(len(models), 4), width=4.0, height=3.2)
    for ax, (dataset, model) in zip(axes, panels):
        panel = points[(points["dataset"] == dataset) & (points["model"] == model)]
        for (variant, pass_), line in panel.groupby(["variant", "pass"], sort=False):
            dashed = pass_ == "first"
            for column, width in (("test_loss", 1.8), ("train_loss", 0.9)):
                ax.plot(line["epoch"], line[column], color=colour[variant], linewidth=width,
                        linestyle="--" if dashed else "-", alpha=0.6 if dashed else 0.95)
        if log_y:
            ax.set_yscale("log")
            _plain_log_ticks(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" + (" (log scale)" if log_y else ""))
        ax.set_title(f"{dataset} ({panel['domain'].iloc[0]}), {model}", fontsize=9)
    handles = [Line2D([], [], color=colour[v], linewidth=1.8, label=v) for v in OVERFITTING_VARIANTS
               if v in set(points["variant"])]
    handles += [Line2D([], [], color="gray", linewidth=1.8, label="test loss"),
                Line2D([], [], color="gray", linewidth=0.9, label="train loss")]
    if show_first_pass and (points["pass"] == "first").any():
        handles.append(Line2D([], [], color=colour["exclude_illusive"], linestyle="--", alpha=0.6,
                              label="first pass (exclude_illusive)"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    notes = ["noise 0; mean over runs (N and seeds) of the train loss (eval mode) and the test loss per epoch",
             ("dashed: the first, fixed-epoch pass of exclude_illusive runs (finds the illusive samples); "
              "solid: the kept models" if show_first_pass else
              "the first, fixed-epoch pass of exclude_illusive runs is not drawn")]
    shrinking = points.groupby(curve)["n_runs"].agg(["min", "max"])
    shrinking = shrinking[shrinking["min"] < shrinking["max"]]
    if len(shrinking):
        notes.append("runs stop at different epochs: each epoch averages the runs that reached it "
                     f"({len(shrinking)} curve(s) lose runs along the way)")
    missing = [v for v in OVERFITTING_VARIANTS if v not in set(points["variant"])]
    if missing:
        notes.append("no epochs of variant(s): " + ", ".join(missing))
    _finish(fig, notes, "Overfitting: standard vs exclude_illusive training", png, pdf)
    return points


# ------------------------------------------------- 3. Novak et al. 2018: sensitivity vs generalization

GAPS = {"loss_gap": "test loss - train loss", "accuracy_gap": "train accuracy - test accuracy"}
JACOBIAN_COLUMNS = ("jacobian_norm", "jacobian_norm_train")
CORRELATION_COLUMNS = ["x_column", "gap", "n", "r", "r_p_value", "r_ci_low", "r_ci_high", "rho", "rho_p_value",
                       "rho_ci_low", "rho_ci_high", "note"]
SPEARMAN_SE_FACTOR = 1.06  # Fieller, Hartley & Pearson (1957): var(atanh rho) ~ 1.06 / (n - 3)


EXACT_SPEARMAN_MAX_N = 8  # up to 8! = 40,320 orderings: exact p-values in well under a second


def spearman_with_ci(x, y, level: float = 0.95) -> dict:
    """Spearman's rho (scipy.stats.spearmanr) with its p-value and a Fisher-z interval
    tanh(atanh(rho) -/+ z_{(1+level)/2} sqrt(1.06 / (n - 3))) (Fieller-Hartley-Pearson). The
    p-value is scipy's t approximation, or for n <= EXACT_SPEARMAN_MAX_N the exact permutation
    p-value (noted).

    Returns {rho, p_value, ci_low, ci_high, n, note}; NaN with a ``note`` for fewer than 4 pairs
    or a constant input; rho = +-1 gives the interval [rho, rho].
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    out = {"rho": math.nan, "p_value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n, "note": ""}
    if n < 4:
        out["note"] = f"{n} run(s): needs at least 4"
        return out
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        out["note"] = "a constant column: correlation undefined"
        return out
    result = stats.spearmanr(x, y)
    rho = float(np.clip(result.statistic, -1.0, 1.0))
    p_value = float(result.pvalue)
    if n <= EXACT_SPEARMAN_MAX_N:
        # scipy's t approximation is far off for a handful of runs (n = 4, rho = 1: p = 0, while
        # 2 of the 24 orderings are as extreme): the exact permutation p-value instead.
        # One sample permuted against the other fixed: n! orderings, the statistic vectorized.
        y_ranks = stats.rankdata(y)
        y_centred = y_ranks - y_ranks.mean()

        def rank_correlation(a, axis=-1):
            a_ranks = stats.rankdata(a, axis=axis)
            a_centred = a_ranks - a_ranks.mean(axis=axis, keepdims=True)
            return (a_centred @ y_centred) / np.sqrt((a_centred ** 2).sum(axis=axis) * (y_centred @ y_centred))

        exact = stats.permutation_test((x,), rank_correlation, permutation_type="pairings",
                                       n_resamples=math.inf, vectorized=True)
        p_value = float(exact.pvalue)
        out["note"] = "exact permutation p"
    with np.errstate(divide="ignore"):
        z = float(np.arctanh(rho))
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt(SPEARMAN_SE_FACTOR / (n - 3))
    out.update(rho=rho, p_value=p_value, ci_low=float(np.tanh(z - half)), ci_high=float(np.tanh(z + half)))
    return out


def _correlation_row(x, y, level: float) -> dict:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    n = len(x)
    row = {"n": n, **{c: math.nan for c in CORRELATION_COLUMNS[3:-1]}, "note": ""}
    if n < 4:
        row["note"] = f"{n} run(s): needs at least 4"
        return row
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        row["note"] = "a constant column: correlation undefined"
        return row
    pearson = pearson_with_ci(x, y, level)
    spearman = spearman_with_ci(x, y, level)
    row.update(r=pearson["r"], r_p_value=pearson["p_value"], r_ci_low=pearson["ci_low"],
               r_ci_high=pearson["ci_high"], rho=spearman["rho"], rho_p_value=spearman["p_value"],
               rho_ci_low=spearman["ci_low"], rho_ci_high=spearman["ci_high"],
               note="; ".join(note for note in (pearson["note"], spearman["note"] and f"rho: {spearman['note']}")
                              if note))
    return row


def jacobian_points(runs: pd.DataFrame, *, variant: str | None = "standard", noise: float | None = 0.0,
                    x_columns: Sequence[str] = JACOBIAN_COLUMNS) -> pd.DataFrame:
    """The runs of the slice (``variant``, ``noise``; None keeps all) with ``loss_gap`` = test_loss -
    train_loss and ``accuracy_gap`` = train_accuracy - test_accuracy added."""
    _require(runs, ["train_loss", "test_loss", "train_accuracy", "test_accuracy", *x_columns],
             "jacobian_generalization")
    rows = _slice(runs, noise=noise, variant=variant, what="jacobian_generalization").copy()
    for column in ["train_loss", "test_loss", "train_accuracy", "test_accuracy", *x_columns]:
        rows[column] = numeric_column(rows, column)
    rows["loss_gap"] = rows["test_loss"] - rows["train_loss"]
    rows["accuracy_gap"] = rows["train_accuracy"] - rows["test_accuracy"]
    return rows.reset_index(drop=True)


def jacobian_generalization_table(runs: pd.DataFrame, groups: Sequence[str] = ("domain", "model"), *,
                                  variant: str | None = "standard", noise: float | None = 0.0,
                                  x_columns: Sequence[str] = JACOBIAN_COLUMNS,
                                  level: float = 0.95) -> pd.DataFrame:
    """Novak et al. (2018): correlation of the Jacobian norm with the generalization gap, per run.

    The slice is ``variant`` and ``noise`` (None keeps every value). Each run is one point; x is
    each of ``x_columns`` (jacobian_norm: mean Frobenius norm of d softmax / dx at test points,
    as Novak et al.; jacobian_norm_train: at training points), y each gap: ``loss_gap`` = test_loss
    - train_loss, ``accuracy_gap`` = train_accuracy - test_accuracy. Rows: each group of ``groups``
    and then all runs of the slice pooled ("all" in every group column); within a group, x_column
    then gap. Columns: the groups, ``x_column``, ``gap``, ``n`` (runs with a finite x and gap),
    Pearson ``r``, ``r_p_value``, ``r_ci_low``/``r_ci_high`` (Fisher z,
    :func:`analysis.pearson_with_ci`), Spearman ``rho``, ``rho_p_value`` (scipy), ``rho_ci_low``/
    ``rho_ci_high`` (Fisher z with standard error sqrt(1.06/(n-3))) and ``note`` (why NaN: n < 4 or a
    constant column). The slice is in ``result.attrs["slice"]``.
    """
    points = jacobian_points(runs, variant=variant, noise=noise, x_columns=x_columns)
    table = _correlation_table(points, groups, x_columns, level)
    table.attrs["slice"] = {"variant": variant, "noise": noise}
    return table


def _correlation_table(points: pd.DataFrame, groups: Sequence[str], x_columns: Sequence[str],
                       level: float) -> pd.DataFrame:
    groups = list(groups)
    _require(points, groups, "jacobian_generalization_table")
    out = []
    blocks = [(dict(zip(groups, key if isinstance(key, tuple) else (key,))), group)
              for key, group in (points.groupby(groups, sort=False) if groups else [])]
    if groups:
        order = {g: _sorted(points[g]) if g != "domain" else _domain_order(points[g]) for g in groups}
        blocks.sort(key=lambda b: tuple(order[g].index(b[0][g]) for g in groups))
    blocks.append(({g: "all" for g in groups}, points))
    for labels, group in blocks:
        for x in x_columns:
            for gap in GAPS:
                out.append({**labels, "x_column": x, "gap": gap, **_correlation_row(group[x], group[gap], level)})
    table = pd.DataFrame(out, columns=groups + CORRELATION_COLUMNS)
    table["n"] = table["n"].astype(int)
    return table


def jacobian_generalization_markdown(table: pd.DataFrame) -> str:
    """Markdown of a :func:`jacobian_generalization_table` with its slice."""
    where = table.attrs.get("slice", {})
    text = ", ".join(f"{k} = {'any' if v is None else v}" for k, v in where.items()) or "as given"
    return ("# Jacobian norm vs generalization gap (Novak et al. 2018)\n\n"
            f"One point per run ({text}); Pearson r with a 95% Fisher-z CI, Spearman rho with a 95% "
            "Fisher-z CI (standard error sqrt(1.06/(n-3))); p two-sided, Spearman's exact (all n! orderings) "
            f"up to n = {EXACT_SPEARMAN_MAX_N}.\n\n"
            + to_markdown_table(table, floatfmt={"r_p_value": ".3g", "rho_p_value": ".3g"}))


def figure_jacobian_generalization(runs: pd.DataFrame, png, pdf, *, variant: str | None = "standard",
                                   noise: float | None = 0.0, x: str = "jacobian_norm",
                                   level: float = 0.95) -> pd.DataFrame:
    """Generalization gap against the Jacobian norm, one point per run, a column of panels per domain.

    x is the mean Jacobian norm at test points (``x``; log scale), y the loss gap (top row) and the
    accuracy gap (bottom row); colour is the model. Each panel title has Pearson's r and
    Spearman's rho over the domain's runs (all models pooled), exactly
    :func:`jacobian_generalization_table` with groups ("domain",) (r on the raw, not the logged,
    norm). Runs without a finite positive x are left out and counted in the note.

    Returns the plotted runs: dataset, domain, model, n_train, seed, ``x``, loss_gap, accuracy_gap;
    the correlations are ``result.attrs["correlations"]``.
    """
    points = jacobian_points(runs, variant=variant, noise=noise, x_columns=[x])
    _require(points, ["dataset", "domain", "model", "n_train", "seed"], "figure_jacobian_generalization")
    keep = np.isfinite(points[x]) & (points[x] > 0)
    n_left_out = int((~keep).sum())
    points = points.loc[keep, ["dataset", "domain", "model", "n_train", "seed", x, "loss_gap",
                               "accuracy_gap"]].reset_index(drop=True)
    if points.empty:
        raise ValueError(f"figure_jacobian_generalization: no run of the slice has a finite positive {x!r}")
    correlations = _correlation_table(points, ["domain"], [x], level)
    correlations.attrs["slice"] = {"variant": variant, "noise": noise}
    by = correlations.set_index(["domain", "gap"])
    domains = _domain_order(points["domain"])
    models = _sorted(points["model"])
    colour = _model_colours(models)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(2, len(domains), figsize=(4.0 * len(domains), 6.4), squeeze=False)
    for j, domain in enumerate(domains):
        panel = points[points["domain"] == domain]
        for i, gap in enumerate(GAPS):
            ax = axes[i, j]
            for model in models:
                runs_of = panel[panel["model"] == model]
                if len(runs_of):
                    ax.scatter(runs_of[x], runs_of[gap], s=18, color=colour[model], edgecolor="black",
                               linewidth=0.3, alpha=0.85, zorder=3)
            ax.set_xscale("log")
            _plain_log_ticks(ax, "x")
            stat = by.loc[(domain, gap)]
            r = "n/a" if pd.isna(stat["r"]) else f"{stat['r']:.2f}"
            rho = "n/a" if pd.isna(stat["rho"]) else f"{stat['rho']:.2f}"
            ax.set_title(f"{domain}: r = {r}, $\\rho$ = {rho} (n = {int(stat['n'])})", fontsize=9)
            ax.set_xlabel("mean Jacobian norm at " + ("training" if x.endswith("_train") else "test")
                          + " points (log scale)")
            ax.set_ylabel(GAPS[gap].replace(" - ", " $-$ "))
    handles = [Line2D([], [], marker="o", linestyle="none", color=colour[m], markeredgecolor="black",
                      markeredgewidth=0.3, label=str(m)) for m in models]
    fig.legend(handles=handles, title="model", loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False,
               fontsize=7, title_fontsize=7)
    slice_text = ", ".join(f"{k} {'any' if v is None else v}" for k, v in (("variant", variant), ("noise", noise)))
    notes = [f"one point per run ({slice_text}); r: Pearson on the raw norm, $\\rho$: Spearman, over a domain's "
             "runs of all models"]
    if n_left_out:
        notes.append(f"{n_left_out} run(s) without a finite positive {x} left out")
    _finish(fig, notes, "Input-output Jacobian norm vs generalization gap (Novak et al. 2018)", png, pdf)
    points.attrs["correlations"] = correlations
    return points


__all__ = [
    "noise_rank_table", "noise_rank_claim", "noise_rank_markdown", "figure_noise_rank",
    "variant_table", "variant_markdown", "figure_variants", "figure_overfitting",
    "spearman_with_ci", "jacobian_points", "jacobian_generalization_table",
    "jacobian_generalization_markdown", "figure_jacobian_generalization",
    "VARIANT_PALETTE",
]
