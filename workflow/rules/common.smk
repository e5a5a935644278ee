import itertools
import math
import os
import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The workflow's own library (files.smk put it first on sys.path), for the parse-time imports below
# (stdlib-only modules).
from intrinsic import grid
from intrinsic.attacked import chosen_runs

validate(config, "../../config/config.schema.yaml")


def non_finite_numbers(value, path=""):
    """(key path, value) of every NaN or infinite number in ``value``, e.g.
    ("training.model_settings.resnet18.learning_rate", nan). JSON-schema bounds let NaN through
    (every comparison with it is false), and YAML writes .nan, .inf and -.inf anywhere."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(path, value)]
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            for found in non_finite_numbers(item, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(value, (list, tuple)):
        return [found for i, item in enumerate(value) for found in non_finite_numbers(item, f"{path}[{i}]")]
    return []


_non_finite = non_finite_numbers(config)
if _non_finite:
    raise WorkflowError(
        "config: numbers must be finite, but " + ", ".join(f"{path} is {value}" for path, value in _non_finite)
    )

CATALOG = config["dataset_catalog"]
# Dataset names become folder names (results/cache/<name>, ...). The schema restricts their
# characters and length; two more rules need the whole catalog or are easier to say here.
_WINDOWS_DEVICE_NAME = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])([.]|$)", re.IGNORECASE)
_reserved = [name for name in CATALOG if _WINDOWS_DEVICE_NAME.match(name)]
if _reserved:
    raise WorkflowError(
        f"config: dataset_catalog names {', '.join(map(repr, _reserved))} cannot be folder names: CON, PRN, "
        "AUX, NUL, COM0-9 and LPT0-9 (in any case, with or without an extension) are device names on Windows"
    )
_by_folded_name = {}
for _name in CATALOG:
    _by_folded_name.setdefault(_name.casefold(), []).append(_name)
_case_clashes = [names for names in _by_folded_name.values() if len(names) > 1]
if _case_clashes:
    raise WorkflowError(
        "config: dataset_catalog names "
        + "; ".join(" and ".join(map(repr, names)) for names in _case_clashes)
        + " differ only in case: their folders would be one on a case-insensitive file system "
        "(macOS, Windows); rename one"
    )
DATASETS = config["datasets"] or list(CATALOG)
_unknown = [name for name in DATASETS if name not in CATALOG]
if _unknown:
    raise WorkflowError(f"config: datasets {_unknown} are not in dataset_catalog (known: {', '.join(CATALOG)})")
N_TRAIN = config["splits"]["n_train"]
SEEDS = config["splits"]["seeds"]

# d_data (rule dataset_properties) and d_repr (rule run_model) are estimated on the N
# training images of a split (estimators.intrinsic_dimension): the MLE needs knn_k neighbours of
# every image, so N >= knn_k + 1, and TwoNN keeps int(N (1 - twonn_discard_fraction)) of the
# ratios r2/r1 and needs 2 (d_repr's TwoNN drops the default 0.1, which N >= 4 always satisfies).
# Checked here on the smallest N, before any model is trained; make_split checks the number of
# distinct images, which duplicates can make smaller.
_smallest_n = min(N_TRAIN)
_knn_k = config["properties"]["knn_k"]
if _smallest_n < _knn_k + 1:
    raise WorkflowError(
        f"config: properties.knn_k = {_knn_k} needs at least {_knn_k + 1} training images (the MLE "
        f"of d_data and d_repr uses the {_knn_k} nearest neighbours of each image), but the smallest "
        f"training size in splits.n_train {N_TRAIN} is N = {_smallest_n}: lower properties.knn_k to at "
        f"most {_smallest_n - 1} or leave the sizes below {_knn_k + 1} out of splits.n_train"
    )
_discard = config["properties"]["twonn_discard_fraction"]
if int(_smallest_n * (1 - _discard)) < 2:
    raise WorkflowError(
        f"config: properties.twonn_discard_fraction = {_discard} leaves "
        f"{int(_smallest_n * (1 - _discard))} of the N = {_smallest_n} ratios r2/r1 of the smallest "
        f"training size in splits.n_train {N_TRAIN}, and TwoNN needs at least 2: lower the fraction or "
        "raise the smallest N"
    )
MODELS = config["training"]["models"]
CONDA_ENV = "../../envs/intrinsic.yaml"


# The grid: one training run per combination of the axes of intrinsic/grid.py (names, types, which
# the data depend on), in path order, with their values from the config. A run's files live under
# RUN_PATH and a split's measured properties under PROPERTIES_PATH; every record carries the axes
# as typed columns, and each axis's wildcard only matches its configured values. A new axis is one
# entry in grid.AXIS_TYPES, its config list in _AXIS_VALUES, one path segment in RUN_PATH (and
# PROPERTIES_PATH if the data depend on it) and, where a rule's result depends on it, that rule's
# params; the tables, constraints and records pick it up.
class Axis:
    def __init__(self, name, values):
        self.name = name
        self.kind = grid.AXIS_TYPES[name]  # int, float or str: the column type in every table
        self.values = [grid.parse(name, v) for v in values]
        self.of_data = name in grid.DATA_AXES  # the images of a split depend on it (d_data per value)

    def text(self, value):
        return grid.text(self.name, value)

    def parse(self, text):
        return grid.parse(self.name, text)


_AXIS_VALUES = {
    "dataset": DATASETS,
    "model": MODELS,
    "noise": config["background_noise"]["levels"],
    "variant": config["variants"]["run"],
    "n_train": N_TRAIN,
    "seed": SEEDS,
}
AXES = {name: Axis(name, _AXIS_VALUES[name]) for name in grid.AXIS_TYPES}
RUN_AXES = {name: [axis.text(v) for v in axis.values] for name, axis in AXES.items()}
RUN_PATH = "{dataset}/{model}/noise{noise}/{variant}/n{n_train}_seed{seed}"
# A split (its indices) depends on neither noise nor variant; its images and d_data on the noise.
SPLIT_PATH = "{dataset}/n{n_train}_seed{seed}"
PROPERTIES_PATH = "{dataset}/noise{noise}/n{n_train}_seed{seed}"
DATA_AXES = [name for name, axis in AXES.items() if axis.of_data]
for _path, _axes in ((RUN_PATH, list(AXES)), (PROPERTIES_PATH, DATA_AXES)):
    _missing = [name for name in _axes if f"{{{name}}}" not in _path]
    if _missing:
        raise WorkflowError(f"common.smk: path {_path!r} lacks the axes {_missing}")

# The paper's analyses (fits, Table 1, Figs. 1-5) are of the clean, standard-trained grid: the
# study axes' reference values, which every grid must contain (the studies compare with them).
REFERENCE = grid.REFERENCE
for _name, _value in REFERENCE.items():
    if _value not in AXES[_name].values:
        _key = {"noise": "background_noise.levels", "variant": "variants.run"}[_name]
        raise WorkflowError(
            f"config: {_key} {AXES[_name].values} must contain {_value!r}: it is the reference the "
            "paper's analyses use and the studies compare with"
        )


# Figs. 2 and 4 draw model (panels), dataset (markers), N (sizes) and seed (means) already.
_facet = config["analysis"]["facet"]
_facetable = [name for name in AXES if name not in ("dataset", "model", "n_train", "seed")]
if _facet is not None and _facet not in _facetable:
    raise WorkflowError(
        f"config: analysis.facet {_facet!r} is not an axis the figures can facet on "
        f"(one of {', '.join(_facetable)}, or null)"
    )


wildcard_constraints:
    **{name: "|".join(map(re.escape, texts)) if texts else "(?!)" for name, texts in RUN_AXES.items()},


# Attack budgets on the [0, 1] scale: evaluation.eps_255 / 255 and evaluation.eps, each once.
ATTACK_EPS = sorted(
    {round(e / 255, 12) for e in config["evaluation"]["eps_255"]}
    | {round(float(e), 12) for e in config["evaluation"]["eps"]}
)
if not ATTACK_EPS:
    raise WorkflowError("config: evaluation.eps_255 and evaluation.eps are both empty: give at least one attack budget")


# A dataset's prepared cache: one directory output, so each downstream job has one input edge
# for it rather than four (the dry-run of the paper grid, 4638 jobs, is benchmarks/bench_dry_run.py).
CACHE = "results/cache/{dataset}"


def split_records(pattern):
    """``pattern`` for every split (SPLIT_PATH) or, with {noise}, every split x noise level."""
    return expand(pattern, **{name: RUN_AXES[name] for name in DATA_AXES})


def run_records(pattern):
    """``pattern`` (containing RUN_PATH's wildcards) for every run of the grid."""
    return expand(pattern, **RUN_AXES)


def run_keys(wildcards):
    """The grid axes of one run, as typed values for its records."""
    return {name: axis.parse(wildcards[name]) for name, axis in AXES.items()}


def background_options(wildcards):
    """What background noise a job's images depend on: nothing for the clean grid (so editing
    the threshold reruns only the noisy runs), else the level and the background threshold."""
    noise = AXES["noise"].parse(wildcards.noise)
    if noise == 0:
        return {"noise": noise, "threshold": None}
    # A catalog entry's own background_threshold wins: where the background is dark depends on the source.
    threshold = CATALOG[wildcards.dataset].get("background_threshold", config["background_noise"]["threshold"])
    return {"noise": noise, "threshold": threshold}


def variant_options(wildcards):
    """A run's variant and only its own options (editing one variant's options reruns only it)."""
    return {"name": wildcards.variant, **config["variants"].get(wildcards.variant, {})}


# Keys of `training` that do not change a trained model: cluster requests, bookkeeping, the
# model list. Left out of run_model's params, so that editing them (e.g. a longer runtime, or
# one more model) does not rerun finished trainings through Snakemake's params rerun trigger.
# dataset_model_settings is left out too: its entry for the run's (dataset, model), if any, is
# merged into model_settings, so an edit reruns only that dataset's runs of that model.
NOT_TRAINING_SETTINGS = (
    "models",
    "resources",
    "gpus",
    "keep_models",
    "threads",
    "dataset_model_settings",
    "checkpoint_minutes",
)

_unknown_overrides = [name for name in config["training"]["dataset_model_settings"] if name not in CATALOG]
if _unknown_overrides:
    raise WorkflowError(
        f"config: training.dataset_model_settings names datasets {_unknown_overrides} that are not in "
        f"dataset_catalog (known: {', '.join(CATALOG)})"
    )


def training_settings(wildcards):
    """What one run's training result depends on: `training` without NOT_TRAINING_SETTINGS,
    with only this model's learning rate and batch size, after this dataset's override."""
    training = config["training"]
    settings = {k: v for k, v in training.items() if k not in NOT_TRAINING_SETTINGS}
    override = training["dataset_model_settings"].get(wildcards.dataset, {}).get(wildcards.model, {})
    settings["model_settings"] = {wildcards.model: {**training["model_settings"][wildcards.model], **override}}
    return settings


def run_request(name):
    """A resource of a run's job from training.resources[model][name], growing with
    each attempt: a job that died of its time or memory limit is retried with twice, thrice ..."""
    requests = config["training"]["resources"]

    def request(wildcards, attempt):
        return requests[wildcards.model][name] * attempt

    return request


def run_runtime(wildcards, attempt):
    """Minutes of a run's job: its training and its evaluation budget, times the attempt."""
    budget = config["training"]["resources"][wildcards.model]
    return (budget["train_runtime_min"] + budget["eval_runtime_min"]) * attempt


def model_output(path):
    """The run's weights as an output only when kept (VGG: 0.5 GB at 224 px); otherwise the
    model lives only in the job's memory between training and evaluation."""
    return {"model": path} if config["training"]["keep_models"] else {}


# What a run's evaluation depends on (the same for every run, so built once, not per job): the
# evaluation section with one list of budgets on the [0, 1] scale, the kNN k of d_repr and the
# rank energy.
EVALUATION_SETTINGS = {
    **{key: value for key, value in config["evaluation"].items() if key not in ("eps_255", "eps", "attacked_examples")},
    "eps": ATTACK_EPS,
    "knn_k": config["properties"]["knn_k"],
    "rank_energy": config["rank"]["energy"],
}

# App. D.1's attacked examples, drawn by figure_attacked_examples (grid.smk), are recorded by one
# run per dataset of the listed domains (intrinsic.attacked.chosen_runs, stdlib only, so importable
# here). Only those runs' evaluation params gain the option: enabling or editing it reruns only them.

ATTACKED_EXAMPLES = config["evaluation"]["attacked_examples"]
_n_test = config["splits"]["n_test"]
if ATTACKED_EXAMPLES["n"] > _n_test:
    raise WorkflowError(
        f"config: evaluation.attacked_examples.n = {ATTACKED_EXAMPLES['n']} exceeds the test set's "
        f"splits.n_test = {_n_test} images"
    )
EXAMPLE_RUNS = (
    chosen_runs(
        {name: axis.values for name, axis in AXES.items()},
        {name: CATALOG[name]["domain"] for name in DATASETS},
        ATTACKED_EXAMPLES["domains"],
    )
    if ATTACKED_EXAMPLES["n"] > 0
    else []
)
_EXAMPLE_RUN_TEXTS = {tuple(AXES[name].text(run[name]) for name in AXES) for run in EXAMPLE_RUNS}
_EXAMPLE_OPTIONS = {"n": ATTACKED_EXAMPLES["n"], "eps_255": ATTACKED_EXAMPLES["eps_255"]}


def evaluation_settings(wildcards):
    """A run's evaluation params: EVALUATION_SETTINGS itself, or for a run chosen for the attacked
    examples a copy with the option (every other run's params stay as they were)."""
    if tuple(wildcards[name] for name in AXES) in _EXAMPLE_RUN_TEXTS:
        return {**EVALUATION_SETTINGS, "attacked_examples": _EXAMPLE_OPTIONS}
    return EVALUATION_SETTINGS


def attacked_example_inputs(wildcards):
    """The inputs of figure_attacked_examples: the chosen runs' records, caches and splits, in
    the grid's dataset order (one entry each per run)."""
    if not EXAMPLE_RUNS:
        raise WorkflowError(
            "results/figures/attacked_examples.png: no run records attacked examples; set "
            "evaluation.attacked_examples.n > 0 and list the domain of a dataset of the grid in "
            f"evaluation.attacked_examples.domains (now {ATTACKED_EXAMPLES['domains']}, n = {ATTACKED_EXAMPLES['n']})"
        )
    texts = [{name: AXES[name].text(run[name]) for name in AXES} for run in EXAMPLE_RUNS]
    return {
        "records": [f"results/runs/{RUN_PATH}/evaluation.json".format(**text) for text in texts],
        "caches": [CACHE.format(**text) for text in texts],
        "splits": [f"results/splits/{SPLIT_PATH}.npz".format(**text) for text in texts],
    }


def drawn_pairs(wildcards):
    """What a ``read_classes: drawn_pairs`` cache holds: the classes of the first P pairs of the
    dataset's pair order, P = enough for every seed and Fig. 1's pairings (None: every class, and
    the cache does not depend on the seeds)."""
    entry = CATALOG[wildcards.dataset]
    if entry.get("read_classes", "all") != "drawn_pairs":
        return None
    pairs = max(max(SEEDS) + 1, config["properties"]["sharpness_pairings"])
    return {"pairs": pairs, "class_pairs": entry.get("class_pairs")}


def figure(name, category, key="figure"):
    """A figure's outputs, for a rule's ``output: **figure(...)``: ``key``, its PNG as a report item
    captioned by workflow/report/{name}.rst, and ``key``_pdf, the PDF beside it (the script's
    intrinsic.figures.save_figure writes both). A new figure is this, its rule and its caption."""
    return {
        key: report(f"results/figures/{name}.png", caption=f"../report/{name}.rst", category=category),
        f"{key}_pdf": f"results/figures/{name}.pdf",
    }


def final_outputs():
    """The default target's inputs: the dataset properties and Fig. 1, the grid's tables, fits,
    Table 1 and Figs. 2-5, which code the tables came from (code_versions.csv), and the studies and
    appendix experiments the config asks for."""
    return [
        *rules.dataset_properties_table.output,
        *rules.figure_dataset_properties.output,
        *rules.grid_tables.output,
        *rules.scaling_fits.output,
        *rules.sharpness_robustness.output,
        *rules.generalization_figures.output,
        *rules.code_versions.output,
        *study_outputs(),
        *appendix_outputs(),
    ]


def study_outputs():
    """Outputs of the studies (rules in analysis.smk) a grid can answer: the noise study needs two
    noise levels, the variant study two variants; sensitivity vs generalization any grid."""
    outputs = list(rules.sensitivity_study.output)
    if len(AXES["noise"].values) > 1:
        outputs += list(rules.noise_rank_study.output)
    if len(AXES["variant"].values) > 1:
        outputs += list(rules.variant_study.output)
    return outputs


# App. B.1. The cache is only downsampled: a resolution above image.size would invent detail.
INVARIANCE_RESOLUTIONS = sorted(config["properties"]["invariance"]["resolutions"])
INVARIANCE_CHANNELS = sorted(config["properties"]["invariance"]["channels"])
_upsampled = [r for r in INVARIANCE_RESOLUTIONS if r > config["image"]["size"]]
if _upsampled:
    raise WorkflowError(
        f"config: properties.invariance.resolutions {INVARIANCE_RESOLUTIONS} has {_upsampled} above the cached "
        f"image.size = {config['image']['size']} px: the cache is only downsampled; leave them out or raise image.size"
    )
INVARIANCE_PATH = "results/properties/{dataset}/invariance/r{resolution}_c{channels}.json"

# App. C.3: the grid's tasks per labeling_of, the groups of at least two tasks.
TASK_GROUPS = {}
for _name in DATASETS:
    if CATALOG[_name].get("labeling_of") is not None:
        TASK_GROUPS.setdefault(CATALOG[_name]["labeling_of"], []).append(_name)
TASK_GROUPS = {group: tasks for group, tasks in TASK_GROUPS.items() if len(tasks) >= 2}


def appendix_outputs():
    """Outputs of the appendix experiments (rules in appendix.smk) the config asks for: the
    invariance study when properties.invariance.resolutions is not empty, the task ranking when
    the grid has two tasks with one labeling_of, the attacked examples when enabled and a dataset
    of the grid is of a listed domain."""
    outputs = []
    if EXAMPLE_RUNS:
        outputs += list(rules.figure_attacked_examples.output)
    if INVARIANCE_RESOLUTIONS:
        outputs += list(rules.invariance_study.output)
    if TASK_GROUPS:
        outputs += list(rules.task_ranking.output)
    return outputs


def status_runs(wildcards):
    """Every run of the grid as its wildcards, in the order of run_records (expand's product), for
    rule status (status.smk); a function, so that only a DAG holding the status job spends the
    time on it."""
    return [dict(zip(RUN_AXES, texts)) for texts in itertools.product(*RUN_AXES.values())]


def status_live_windows():
    """Per model, how long a run may leave its log and checkpoint folder unchanged and still count
    as running (the status rule): two checkpoint intervals (a checkpoint waits for the end of an
    epoch), or its evaluation budget (the evaluation logs nothing until it ends), at least 10 min."""
    training = config["training"]
    return {
        model: max(2 * 60 * training["checkpoint_minutes"], 60 * training["resources"][model]["eval_runtime_min"], 600)
        for model in MODELS
    }
