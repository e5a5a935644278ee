"""Two appendix experiments of Konz & Mazurowski (ICLR 2024) on the workflow's caches and tables.

1. App. B.1, invariance of the dataset properties to resolution and channels
   (:func:`invariance_record`, :func:`invariance_table`, :func:`figure_invariance`). The cached
   images are resized to r x r with the cache's own filter (``cache.convert_image``: bilinear,
   anti-aliased when shrinking) and converted to c channels (1: grey as the cache converts RGB;
   3: grey replicated, or an RGB cache's own colours), then quantized to uint8 as a cache would
   be. d_data and K_F are then computed by the very functions of rules dataset_properties and
   label_sharpness (``properties.split_properties``, ``properties.dataset_sharpness``) on a view
   of the cache (:class:`ResizedCache`) whose ``read_images`` returns the converted images: the
   same estimators, options, training images and K_F samples. At the cache's own resolution and
   channels the view is the cache itself, so those rows equal the main tables' values.

2. App. C.3, ranking task difficulty by K_F (:func:`task_ranking_table`,
   :func:`figure_task_ranking`): several labelings (tasks) of one image set, grouped by the
   catalog key ``labeling_of``; per task its K_F and d_data, per model its test loss and accuracy
   at the largest N, each task's rank by K_F and by test loss within its group, and Spearman's
   rho between K_F and test loss per group and model.

Intervals are 95% Student-t intervals of a mean (:func:`analysis.mean_t_interval`; one value is
its own interval); non-finite values are left out of a mean and counted.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from . import grid
from .cache import DatasetCache, convert_image, quantize
from .io import read_json
from .properties import dataset_sharpness, split_properties
from .provenance import CODE_FIELDS, code_version, recorded_code
from .splits import Split
from .tables import numeric_column, reference_slice

# The tables and figures need matplotlib, seaborn, scipy and statsmodels (through .analysis and
# .figures): imported where used, so that the 42 rule invariance_properties jobs of the appendix
# demo do not pay ~2 s each for them (the record needs numpy, torch and scikit-image only).

RESOLUTIONS_KEY = "properties.invariance.resolutions"
CHANNELS_KEY = "properties.invariance.channels"
CHANNEL_STYLES = {1: "-", 3: "--"}


# ----------------------------------------------------------------------------- helpers


def _mean_ci(values, level: float = 0.95) -> tuple[float, float, float, int]:
    """``analysis.finite_mean_interval``, imported when first needed: analysis pulls in
    statsmodels (2 s), which the invariance jobs do not otherwise need."""
    from .analysis import finite_mean_interval

    return finite_mean_interval(values, level)


def _finite_mean(values) -> float:
    """The mean of the finite values (NaN when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


# ----------------------------------------------------------------- App. B.1: resized views


def check_resolution(resolution: int, channels: int, cache_resolution: int) -> None:
    """A ValueError naming the config key unless ``resolution`` is a downsampling (or the size)
    of the cache and ``channels`` is 1 or 3: only the cache is resized, never the source."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"{RESOLUTIONS_KEY}: a resolution must be a positive integer, got {resolution!r}")
    if resolution > cache_resolution:
        raise ValueError(f"{RESOLUTIONS_KEY}: resolution {resolution} exceeds the cached {cache_resolution} px "
                         "(image.size): the cache is only downsampled")
    if channels not in (1, 3):
        raise ValueError(f"{CHANNELS_KEY}: channels must be 1 or 3, got {channels!r}")


def resize_images(images: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """Cached uint8 images (n, C, S, S) at (n, channels, resolution, resolution), uint8: each image
    read on [0, 1], converted by ``cache.convert_image`` (the cache's own resize and channel
    conversion) and quantized (``cache.quantize``) as a cache of that size would store it."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) \
            or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected cached uint8 images (n, 1|3, S, S), got {images.dtype} {images.shape}")
    check_resolution(resolution, channels, images.shape[2])
    out = np.empty((len(images), channels, resolution, resolution), dtype=np.uint8)
    for index, image in enumerate(images):
        unit = np.moveaxis(image, 0, -1).astype(np.float32) / np.float32(255)
        out[index] = quantize(convert_image(unit, resolution, channels))
    return out


@dataclass
class ResizedCache(DatasetCache):
    """A cache whose ``read_images`` returns its verified images resized to ``resolution`` and
    converted to ``out_channels`` (:func:`resize_images`); meta says the new resolution and
    channels. Labels, groups, checksums and classes are the cache's, so its splits apply."""

    resolution: int = 0
    out_channels: int = 1

    def read_images(self, index) -> np.ndarray:
        return resize_images(super().read_images(index), self.resolution, self.out_channels)


def resized_cache(cache: DatasetCache, resolution: int, channels: int) -> ResizedCache:
    """The view of ``cache`` at ``resolution`` px and ``channels`` channels (:class:`ResizedCache`).
    Explicit background masks are dropped: the experiment measures the clean images."""
    native = int(cache.images.shape[2])
    check_resolution(resolution, channels, native)
    meta = {**cache.meta, "resolution": int(resolution), "channels": int(channels),
            "shape": [int(channels), int(resolution), int(resolution)],
            "cache_resolution": native, "cache_channels": int(cache.images.shape[1])}
    parts = {f.name: getattr(cache, f.name) for f in fields(DatasetCache)}
    parts.update(meta=meta, background=None, background_crc32=None)
    return ResizedCache(**parts, resolution=int(resolution), out_channels=int(channels))


def invariance_record(cache: DatasetCache, splits: dict[int, Split], resolution: int, channels: int, *,
                      knn_k: int = 20, twonn_discard_fraction: float = 0.1, rank_energy: float = 0.99,
                      samples: int = 1000, class_pairs: list[list[str]] | None = None) -> dict:
    """d_data and K_F of ``cache`` at ``resolution`` x ``resolution`` px and ``channels`` channels.

    ``splits``: seed -> its split (at the largest N). d_data: ``split_properties`` of each seed's
    training images, clean, with the options of rule dataset_properties (one record per seed in
    ``splits``; ``d_mle`` and ``d_twonn`` are their means). K_F: ``dataset_sharpness`` of the
    seeds' class pairs (each pair once, the sample of rule label_sharpness; ``pairs``), ``k_f``
    and ``k_f_255`` the means over those pairs (NaN ones left out)."""
    started = time.perf_counter()
    if not splits:
        raise ValueError("invariance_record: no splits (seeds) given")
    view = resized_cache(cache, resolution, channels)
    seeds = sorted(int(seed) for seed in splits)
    records = []
    for seed in seeds:
        try:
            records.append(split_properties(view, splits[seed], seed=seed, knn_k=knn_k,
                                            twonn_discard_fraction=twonn_discard_fraction, noise=0.0,
                                            background_threshold=0, rank_energy=rank_energy))
        except ValueError as error:  # e.g. too few distinct images once coarsened
            raise ValueError(f"dataset {cache.meta['dataset']!r} at {resolution} px, {channels} channel(s), seed "
                             f"{seed}: {error}; leave this resolution out of {RESOLUTIONS_KEY} or lower "
                             "properties.knn_k") from None
    pairs = dataset_sharpness(view, seeds, pairings=0, samples=samples, class_pairs=class_pairs)
    by_classes = {pair["classes"]: pair for pair in pairs}
    for record in records:
        if record["classes"] not in by_classes:  # the split and the pair order disagree: a stale split
            raise ValueError(f"invariance_record: dataset {cache.meta['dataset']!r} seed {record['seed']} trains on "
                             f"{record['classes']!r}, which is none of the seeds' class pairs "
                             f"{sorted(by_classes)}; rebuild the split")
    n_train = sorted({record["n_train"] for record in records})
    return {
        "dataset": cache.meta["dataset"],
        "domain": cache.meta["domain"],
        "resolution": int(resolution),
        "channels": int(channels),
        "cache_resolution": view.meta["cache_resolution"],
        "cache_channels": view.meta["cache_channels"],
        "n_features": int(channels * resolution * resolution),
        "n_train": n_train[0] if len(n_train) == 1 else n_train,
        "seeds": seeds,
        "knn_k": int(knn_k),
        "twonn_discard_fraction": float(twonn_discard_fraction),
        "sharpness_samples": int(samples),
        "d_mle": _finite_mean([r["d_mle"] for r in records]),
        "d_twonn": _finite_mean([r["d_twonn"] for r in records]),
        "k_f": _finite_mean([p["k_f"] for p in pairs]),
        "k_f_255": _finite_mean([p["k_f_255"] for p in pairs]),
        "splits": records,
        "pairs": pairs,
        "seconds": round(time.perf_counter() - started, 3),
        **code_version(),
    }


INVARIANCE_COLUMNS = [
    "dataset", "domain", "resolution", "channels", "cache_resolution", "cache_channels", "n_features",
    "n_train", "n_seeds", "d_mle", "d_mle_ci_low", "d_mle_ci_high", "d_twonn", "d_twonn_ci_low",
    "d_twonn_ci_high", "n_duplicates", "n_pairs", "k_f", "k_f_ci_low", "k_f_ci_high", "k_f_255",
    "k_f_255_ci_low", "k_f_255_ci_high", "kf_samples", "kf_zero_distance_pairs", "classes", "knn_k", "seconds",
]
RECORD_KEYS = ("dataset", "domain", "resolution", "channels", "cache_resolution", "cache_channels",
               "n_features", "n_train", "knn_k", "splits", "pairs")


def invariance_table(records: list[dict], level: float = 0.95, where: list[str] | None = None) -> pd.DataFrame:
    """One row per (dataset, resolution, channels) of :func:`invariance_record` records: d_mle and
    d_twonn as mean and t-interval over seeds, K_F (``k_f``, ``k_f_255``) as mean and t-interval
    over the seeds' class pairs; duplicates (of d_data) and zero-distance pairs (of K_F) summed.
    ``where``: a name per record for errors (its file)."""
    from .figures import _dataset_order, _domain_order

    where = where or [f"record {i}" for i in range(len(records))]
    rows = []
    for name, record in zip(where, records):
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"{name}: not an invariance record, it lacks {missing}")
        splits, pairs = record["splits"], record["pairs"]
        if not splits or not pairs:
            raise ValueError(f"{name}: an invariance record needs at least one split and one class pair")
        row = {key: record[key] for key in RECORD_KEYS[:-2]}
        row["n_seeds"] = len(splits)
        for column in ("d_mle", "d_twonn"):
            mean, low, high, _ = _mean_ci([s[column] for s in splits], level)
            row.update({column: mean, f"{column}_ci_low": low, f"{column}_ci_high": high})
        row["n_duplicates"] = int(sum(s["n_duplicates"] for s in splits))
        row["n_pairs"] = len(pairs)
        for column in ("k_f", "k_f_255"):
            mean, low, high, _ = _mean_ci([p[column] for p in pairs], level)
            row.update({column: mean, f"{column}_ci_low": low, f"{column}_ci_high": high})
        row["kf_samples"] = int(min(p["kf_samples"] for p in pairs))
        row["kf_zero_distance_pairs"] = int(sum(p["kf_zero_distance_pairs"] for p in pairs))
        row["classes"] = "; ".join(p["classes"] for p in pairs)
        row["seconds"] = float(record.get("seconds", math.nan))
        row.update(recorded_code(record))
        rows.append(row)
    if not rows:
        raise ValueError("invariance_table: no records")
    table = pd.DataFrame(rows, columns=INVARIANCE_COLUMNS + list(CODE_FIELDS))
    clash = table[table.duplicated(["dataset", "resolution", "channels"], keep=False)]
    if len(clash):
        raise ValueError(f"invariance_table: several records of (dataset, resolution, channels) "
                         f"{clash[['dataset', 'resolution', 'channels']].drop_duplicates().values.tolist()}")
    order = {name: i for i, name in enumerate(_dataset_order(table, _domain_order(table["domain"])))}
    return table.sort_values(["dataset", "channels", "resolution"],
                             key=lambda c: c.map(order) if c.name == "dataset" else c,
                             ignore_index=True)


def read_invariance_records(paths) -> pd.DataFrame:
    """:func:`invariance_table` of the JSON records at ``paths``."""
    paths = [str(path) for path in paths]
    return invariance_table([read_json(path, required=RECORD_KEYS) for path in paths], where=paths)


INVARIANCE_PANELS = ["d_mle", "d_twonn", "k_f_255"]


def figure_invariance(table: pd.DataFrame, png, pdf, *, level: float = 0.95) -> None:
    """d_data (MLE), d_data (TwoNN) and K_F (0-255 scale) against the resolution, one panel each:
    one line per (dataset, channels), coloured by domain with a marker per dataset (as Figs. 1-5)
    and a line style per channels; bars: the t-intervals of :func:`invariance_table` (over seeds
    for d_data, over the seeds' class pairs for K_F). K_F is drawn on a log axis (it scales about
    as 1/r). Non-finite means (and K_F <= 0) are left out and counted."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    from .figures import (_dataset_markers, _dataset_order, _domain_order, _frame_points, _label, _legend_handles,
                          _palette, _require, save_figure)

    columns = ["dataset", "domain", "resolution", "channels"]
    for column in INVARIANCE_PANELS:
        columns += [column, f"{column}_ci_low", f"{column}_ci_high"]
    _require(table, columns, "figure_invariance")
    if len(table) == 0:
        raise ValueError("figure_invariance: the table is empty")
    domains = _domain_order(table["domain"])
    palette = _palette(domains)
    datasets = _dataset_order(table, domains)
    markers = _dataset_markers(table, datasets)
    channel_values = sorted(int(c) for c in table["channels"].unique())
    styles = {c: CHANNEL_STYLES.get(c, ":") for c in channel_values}
    resolutions = sorted(int(r) for r in table["resolution"].unique())
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(INVARIANCE_PANELS), figsize=(4.0 * len(INVARIANCE_PANELS), 3.6))
    dropped = 0
    # Channel counts drawn slightly apart in r: d_data of grey replicated into 3 channels equals
    # grey's, and the lines would hide each other.
    shift = {c: 2 ** (0.04 * (i - (len(channel_values) - 1) / 2)) for i, c in enumerate(channel_values)}
    for ax, column in zip(axes, INVARIANCE_PANELS):
        log_y = column.startswith("k_f")  # K_F spans decades (it scales about as 1/r)
        plotted = []
        for (dataset, channels), line in table.groupby(["dataset", "channels"], sort=False):
            line = line.sort_values("resolution")
            values = numeric_column(line, column, "figure_invariance").to_numpy()
            keep = np.isfinite(values) & ((values > 0) if log_y else True)
            dropped += int((~keep).sum())
            line = line[keep]
            if not len(line):
                continue
            marker, domain = markers[dataset]
            yerr = np.vstack([line[column] - line[f"{column}_ci_low"], line[f"{column}_ci_high"] - line[column]])
            ax.errorbar(line["resolution"] * shift[int(channels)], line[column], yerr=yerr, color=palette[domain],
                        marker=marker, linestyle=styles[int(channels)], linewidth=1.0, markersize=5,
                        markeredgecolor="black", markeredgewidth=0.4, elinewidth=0.8, capsize=2, alpha=0.9)
            plotted.append(line[column].to_numpy(float))
        if log_y:
            ax.set_yscale("log")
        if plotted:  # the frame from the means: 3 seeds' t-intervals are wide
            _frame_points(ax, resolutions, np.concatenate(plotted), log_y=log_y, nonnegative=not log_y)
        ax.set_xscale("log", base=2)
        ax.set_xlim(min(resolutions) / 1.3, max(resolutions) * 1.3)
        ax.set_xticks(resolutions, [str(r) for r in resolutions])
        ax.minorticks_off()
        ax.set_xlabel("resolution (px, each side)")
        ax.set_ylabel("label sharpness $\\hat K_F$ (0-255 scale, log)" if log_y else _label(column))
    handles = _legend_handles(domains, palette, datasets, markers)
    handles.append(Line2D([], [], linestyle="none", label="channels"))
    handles += [Line2D([], [], color="black", linestyle=styles[c], label=str(c)) for c in channel_values]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    notes = [f"$d_{{data}}$: mean and {level:.0%} t-CI over seeds (training images at the largest N); "
             f"$\\hat K_F$: mean and {level:.0%} t-CI over the seeds' class pairs (one pair: no bar)"]
    if dropped:
        notes.append(f"{dropped} non-finite (or, for the log axis, non-positive) value(s) left out")
    notes.append("channel counts drawn slightly apart in resolution; bars may reach past the frame, "
                 "which is set by the means")
    fig.text(0.01, -0.02, "\n".join(notes), fontsize=7, ha="left", va="top")
    fig.suptitle("Dataset properties against image resolution and channels (cache resized)")
    fig.tight_layout()
    save_figure(fig, png, pdf)


# --------------------------------------------------------------- App. C.3: task ranking

TASK_RANKING_COLUMNS = [
    "group", "dataset", "domain", "classes", "n_pairs", "k_f", "k_f_255", "d_mle", "d_twonn", "model",
    "n_train", "n_seeds", "test_loss", "test_loss_ci_low", "test_loss_ci_high", "test_accuracy",
    "test_accuracy_ci_low", "test_accuracy_ci_high", "rank_k_f", "rank_test_loss", "n_tasks",
    "spearman_rho", "spearman_p", "note",
]


def _seeds_used(value) -> bool:
    """Whether label_sharpness.csv's ``seeds`` cell lists a seed ("0 1 2", 0, 3.0) or is empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip() != ""


def task_ranking_table(runs: pd.DataFrame, sharpness: pd.DataFrame, properties: pd.DataFrame,
                       groups: dict[str, list[str]], *, reference: dict | None = None,
                       level: float = 0.95) -> pd.DataFrame:
    """One row per (group, task, model): the task's K_F, d_data and the model's test loss and
    accuracy at the largest N, with the task's ranks within its group and the group's Spearman rho.

    ``groups``: labeling_of -> the tasks (dataset names) that relabel those images. ``sharpness``
    (label_sharpness.csv): a task's ``k_f`` / ``k_f_255`` are the means over its class pairs that
    seeds train on (non-empty ``seeds``). ``properties`` (dataset_properties.csv) and ``runs``
    (runs.csv), at the ``reference`` values (noise 0, standard variant) and each task's largest
    N in ``runs``: ``d_mle`` / ``d_twonn`` are means over seeds; test loss and accuracy means with
    t-intervals over seeds (a seed's runs averaged first). ``rank_k_f`` and ``rank_test_loss``
    rank the tasks of a group from the smallest value (1; ties share their mean rank);
    ``spearman_rho`` / ``spearman_p`` are scipy.stats.spearmanr of K_F and test loss over the
    group's tasks with both finite (``n_tasks``): NaN with fewer than 3, said in ``note``."""
    from .figures import _require, natural_key

    reference = grid.REFERENCE if reference is None else reference
    _require(runs, ["dataset", "model", "n_train", "seed", "test_loss", "test_accuracy"], "task_ranking (runs)")
    _require(sharpness, ["dataset", "classes", "k_f", "k_f_255", "seeds"], "task_ranking (label sharpness)")
    _require(properties, ["dataset", "n_train", "seed", "d_mle", "d_twonn"], "task_ranking (dataset properties)")
    runs = reference_slice(runs, reference)
    properties = reference_slice(properties, reference)  # noise only: properties have no variant
    rows = []
    for group, tasks in sorted(groups.items(), key=lambda item: natural_key(str(item[0]))):
        for task in tasks:
            task_runs = runs[runs["dataset"] == task]
            if task_runs.empty:
                raise ValueError(f"task_ranking: group {group!r}: task {task!r} has no runs in runs.csv "
                                 f"at {reference}")
            n_max = int(numeric_column(task_runs, "n_train", "runs.csv").max())
            task_runs = task_runs[numeric_column(task_runs, "n_train", "runs.csv") == n_max]
            pairs = sharpness[(sharpness["dataset"] == task) & sharpness["seeds"].map(_seeds_used)]
            if pairs.empty:
                raise ValueError(f"task_ranking: task {task!r} has no class pair with seeds in label_sharpness.csv")
            task_properties = properties[(properties["dataset"] == task)
                                         & (numeric_column(properties, "n_train", "dataset_properties.csv") == n_max)]
            if task_properties.empty:
                raise ValueError(f"task_ranking: task {task!r} has no dataset properties at N = {n_max}")
            d_data = task_properties.groupby("seed")[["d_mle", "d_twonn"]].mean()
            domain = task_runs["domain"].iloc[0] if "domain" in task_runs else ""
            base = {"group": group, "dataset": task, "domain": domain, "classes": "; ".join(pairs["classes"]),
                    "n_pairs": len(pairs), "k_f": _mean_ci(numeric_column(pairs, "k_f", "label_sharpness.csv"))[0],
                    "k_f_255": _mean_ci(numeric_column(pairs, "k_f_255", "label_sharpness.csv"))[0],
                    "d_mle": _mean_ci(d_data["d_mle"])[0], "d_twonn": _mean_ci(d_data["d_twonn"])[0]}
            for model, model_runs in task_runs.groupby("model", sort=False):
                seeds = model_runs.groupby("seed")[["test_loss", "test_accuracy"]].mean()
                row = {**base, "model": model, "n_train": n_max, "n_seeds": len(seeds)}
                for column in ("test_loss", "test_accuracy"):
                    mean, low, high, _ = _mean_ci(numeric_column(seeds, column, "runs.csv"), level)
                    row.update({column: mean, f"{column}_ci_low": low, f"{column}_ci_high": high})
                rows.append(row)
    table = pd.DataFrame(rows, columns=TASK_RANKING_COLUMNS)
    if table.empty:
        raise ValueError("task_ranking: no group of at least two tasks")
    return rank_tasks(table)


def rank_tasks(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (group, dataset, model, k_f, test_loss) with ``rank_k_f`` and ``rank_test_loss``
    (1 = smallest within the group and model; ties: mean rank; NaN values unranked), ``n_tasks``,
    ``spearman_rho``, ``spearman_p`` (scipy.stats.spearmanr over the tasks with a finite K_F and
    test loss; NaN with fewer than 3) and ``note``; sorted by group, model and K_F."""
    from scipy import stats

    from .figures import _require, natural_key

    _require(table, ["group", "dataset", "model", "k_f", "test_loss"], "rank_tasks")
    table = table.copy()
    for column in ("rank_k_f", "rank_test_loss", "spearman_rho", "spearman_p"):
        table[column] = math.nan
    table["n_tasks"] = 0
    table["note"] = ""
    for _, rows in table.groupby(["group", "model"], sort=False):
        duplicated = rows["dataset"].duplicated()
        if duplicated.any():
            raise ValueError(f"rank_tasks: task {rows.loc[duplicated, 'dataset'].iloc[0]!r} appears twice in group "
                             f"{rows['group'].iloc[0]!r} for model {rows['model'].iloc[0]!r}")
        for column, rank in (("k_f", "rank_k_f"), ("test_loss", "rank_test_loss")):
            values = numeric_column(rows, column, "rank_tasks")
            finite = values[np.isfinite(values)]
            table.loc[finite.index, rank] = stats.rankdata(finite.to_numpy(), method="average")
        both = rows[np.isfinite(numeric_column(rows, "k_f", "rank_tasks"))
                    & np.isfinite(numeric_column(rows, "test_loss", "rank_tasks"))]
        table.loc[rows.index, "n_tasks"] = len(both)
        if len(both) < 3:
            table.loc[rows.index, "note"] = f"{len(both)} task(s) with a finite K_F and test loss: rho needs at least 3"
            continue
        with warnings.catch_warnings():  # a constant input warns and gives NaN: said in the note instead
            warnings.simplefilter("ignore")
            result = stats.spearmanr(both["k_f"].astype(float), both["test_loss"].astype(float))
        table.loc[rows.index, ["spearman_rho", "spearman_p"]] = [float(result.statistic), float(result.pvalue)]
        if not np.isfinite(result.statistic):
            table.loc[rows.index, "note"] = "K_F or test loss is the same for every task: rho undefined"
    table["n_tasks"] = table["n_tasks"].astype(int)
    order = {name: i for i, name in enumerate(sorted(table["group"].unique(), key=lambda g: natural_key(str(g))))}
    models = {name: i for i, name in enumerate(sorted(table["model"].unique(), key=lambda m: natural_key(str(m))))}
    key = {"group": order, "model": models}
    return table.sort_values(["group", "model", "k_f", "dataset"], na_position="last", kind="stable",
                             key=lambda c: c.map(key[c.name]) if c.name in key else c, ignore_index=True)


def figure_task_ranking(table: pd.DataFrame, png, pdf, *, kf: str = "k_f_255", level: float = 0.95) -> None:
    """Per group of tasks, one row of two panels with the tasks sorted by K_F (lowest on top):
    left K_F (domain colour), right each model's test loss at the largest N (mean and t-interval
    over seeds), the panel's title giving Spearman's rho per model (n/a with fewer than 3 tasks)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    from .figures import (_domain_order, _frame_points, _label, _legend_handles, _palette, _require, natural_key,
                          save_figure)

    _require(table, ["group", "dataset", "domain", "model", "n_train", kf, "test_loss", "test_loss_ci_low",
                     "test_loss_ci_high", "spearman_rho", "n_tasks"], "figure_task_ranking")
    if table.empty:
        raise ValueError("figure_task_ranking: the table is empty")
    groups = sorted(table["group"].unique(), key=lambda g: natural_key(str(g)))
    models = sorted(table["model"].unique(), key=lambda m: natural_key(str(m)))
    # Not tab10: its first colours are the domains' (natural blue, medical red) of the K_F bars.
    colours = dict(zip(models, sns.color_palette("Dark2", max(len(models), 8)).as_hex()))
    model_markers = dict(zip(models, ["o", "s", "^", "D", "v", "P"] * (len(models) // 6 + 1)))
    domains = _domain_order(table["domain"].astype(str))
    palette = _palette(domains)
    sns.set_theme(style="whitegrid", context="paper")
    most = max(table.groupby("group")["dataset"].nunique())
    fig, axes = plt.subplots(len(groups), 2, figsize=(9.0, (0.45 * most + 1.6) * len(groups)), squeeze=False)
    for (ax_kf, ax_loss), group in zip(axes, groups):
        rows = table[table["group"] == group]
        tasks = (rows.drop_duplicates("dataset").assign(kf_value=lambda t: pd.to_numeric(t[kf], errors="coerce"))
                 .sort_values(["kf_value", "dataset"], na_position="last"))
        position = {name: i for i, name in enumerate(tasks["dataset"])}
        for task in tasks.itertuples():
            ax_kf.barh(position[task.dataset], task.kf_value, color=palette[str(task.domain)],
                       edgecolor="black", linewidth=0.4, height=0.6)
        offsets = np.linspace(-0.2, 0.2, len(models)) if len(models) > 1 else [0.0]
        rho_text = []
        for offset, model in zip(offsets, models):
            points = rows[rows["model"] == model]
            if points.empty:
                continue
            y = points["dataset"].map(position).to_numpy(float) + offset
            x = points["test_loss"].to_numpy(float)
            xerr = np.vstack([x - points["test_loss_ci_low"].to_numpy(float),
                              points["test_loss_ci_high"].to_numpy(float) - x])
            ax_loss.errorbar(x, y, xerr=xerr, fmt=model_markers[model], color=colours[model],
                             markeredgecolor="black", markeredgewidth=0.4, elinewidth=0.8, capsize=2,
                             label=str(model))
            rho = float(points["spearman_rho"].iloc[0])
            rho_text.append(f"{model} {rho:.2f}" if np.isfinite(rho) else f"{model} n/a")
        # The loss axis from the means (losses are >= 0): 3 seeds' t-intervals are wide.
        _frame_points(ax_loss, rows["test_loss"].to_numpy(float), [], nonnegative=True)
        for ax in (ax_kf, ax_loss):
            ax.set_yticks(range(len(position)), list(position))
            ax.set_ylim(len(position) - 0.5, -0.5)  # lowest K_F on top
        n_train = sorted(pd.unique(rows["n_train"]))
        ax_kf.set_title(f"{group}: tasks by label sharpness", fontsize=9)
        ax_kf.set_xlabel(_label(kf))
        ax_loss.set_title(f"test loss at N = {', '.join(map(str, n_train))}; Spearman $\\rho$ ($\\hat K_F$, loss): "
                          + ", ".join(rho_text), fontsize=8)
        ax_loss.set_xlabel("test loss")
        ax_loss.tick_params(labelleft=False)
    handles = [Line2D([], [], linestyle="none", label="model")]
    handles += [Line2D([], [], marker=model_markers[m], linestyle="none", color=colours[m], markeredgecolor="black",
                       markeredgewidth=0.4, label=str(m)) for m in models]
    handles += _legend_handles(domains, palette)
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=7)
    fig.text(0.01, -0.01, f"test loss: mean and {level:.0%} t-CI over seeds (the frame is set by the means); "
             "$\\hat K_F$: mean over the seeds' class pairs; $\\rho$ n/a with fewer than 3 tasks",
             fontsize=7, ha="left", va="top")
    fig.suptitle("Task difficulty ranked by label sharpness (several labelings of one image set)")
    fig.tight_layout()
    save_figure(fig, png, pdf)
