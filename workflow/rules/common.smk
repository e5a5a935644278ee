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
CONDA_ENV = "../../envs/intrinsic.yaml"


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)) if DATASETS else "(?!)",
    n_train=r"\d+",
    seed=r"\d+",


def cache_dir(dataset):
    return f"results/cache/{dataset}"


def cache_files(wildcards):
    folder = cache_dir(wildcards.dataset)
    return {
        name: f"{folder}/{name}.{ext}"
        for name, ext in (("images", "npy"), ("labels", "npy"), ("groups", "npy"), ("meta", "json"))
    }


def split_records(pattern):
    return expand(pattern, dataset=DATASETS, n_train=N_TRAIN, seed=SEEDS)
