import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


validate(config, "../../config/config.schema.yaml")

CATALOG = config["dataset_catalog"]
DATASETS = config["datasets"] or list(CATALOG)
_unknown = [name for name in DATASETS if name not in CATALOG]
if _unknown:
    raise WorkflowError(
        f"config: datasets {_unknown} are not in dataset_catalog (known: {', '.join(CATALOG)})"
    )
N_TRAIN = config["splits"]["n_train"]
SEEDS = config["splits"]["seeds"]
MODELS = config["training"]["models"]
CONDA_ENV = "../../envs/intrinsic.yaml"

# The grid: one training run per combination of these axes. A run's files live under
# RUN_PATH, and every record carries the axes as columns. A new axis (e.g. background noise)
# is one entry here, one path segment in RUN_PATH and a config list; the tables pick it up.
RUN_AXES = {"dataset": DATASETS, "model": MODELS, "n_train": N_TRAIN, "seed": SEEDS}
RUN_PATH = "{dataset}/{model}/n{n_train}_seed{seed}"
SPLIT_PATH = "{dataset}/n{n_train}_seed{seed}"


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)) if DATASETS else "(?!)",
    model="|".join(map(re.escape, MODELS)),
    n_train=r"\d+",
    seed=r"\d+",


# A dataset's prepared cache: one directory output, so each downstream job has one input edge
# for it rather than four (the dry-run of the paper grid, 4638 jobs, is benchmarks/bench_dry_run.py).
CACHE = "results/cache/{dataset}"


def split_records(pattern):
    return expand(pattern, dataset=DATASETS, n_train=N_TRAIN, seed=SEEDS)


def run_records(pattern):
    """``pattern`` (containing RUN_PATH's wildcards) for every run of the grid."""
    return expand(pattern, **RUN_AXES)


def run_keys(wildcards):
    """The grid axes of one run, as typed values for its records."""
    return {axis: (int(wildcards[axis]) if axis in ("n_train", "seed") else wildcards[axis])
            for axis in RUN_AXES}


# Keys of `training` that do not change a trained model: cluster requests, bookkeeping, the
# model list. Left out of train_model's params, so that editing them (e.g. a longer runtime, or
# one more model) does not rerun finished trainings through Snakemake's params rerun trigger.
# dataset_model_settings is left out too: its entry for the run's (dataset, model), if any, is
# merged into model_settings, so an edit reruns only that dataset's runs of that model.
NOT_TRAINING_SETTINGS = ("models", "resources", "gpus", "keep_models", "threads", "dataset_model_settings")

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
    """A resource of a run's jobs from training.resources[model][name], growing with
    each attempt: a job that died of its time or memory limit is retried with twice, thrice ..."""
    requests = config["training"]["resources"]

    def request(wildcards, attempt):
        return requests[wildcards.model][name] * attempt

    return request


def model_file(path):
    """Weights are large (VGG: 0.5 GB at 224 px): deleted after evaluation unless kept."""
    return path if config["training"]["keep_models"] else temp(path)


def figure_report(name, category):
    """A figure's PNG as a report item, captioned by workflow/report/{name}.rst."""
    return report(f"results/figures/{name}.png", caption=f"../report/{name}.rst", category=category)
