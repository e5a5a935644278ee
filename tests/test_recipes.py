"""Dataset recipes (config/datasets/*.yaml) and the workflow on a real-format dataset."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from fixtures_real import write_medmnist
from test_workflow import config_file, job_counts, snakemake
from intrinsic.cache import load_cache, write_cache
from intrinsic.sources import load_source

STUDY = {"mnist", "cifar10", "svhn", "imagenet", "brats", "dbc", "prostate_mri", "rsna_ih_ct", "chexpert", "mura", "oai"}


def recipes(repo):
    return sorted((repo / "config" / "datasets").glob("*.yaml"))


def merged(repo, recipe_path):
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    recipe = yaml.safe_load(recipe_path.read_text())
    assert set(recipe) == {"dataset_catalog"}, f"{recipe_path.name}: a recipe holds one dataset_catalog entry"
    config["dataset_catalog"].update(recipe["dataset_catalog"])
    return config, recipe


def test_every_dataset_of_the_study_has_a_recipe(repo):
    names = set()
    for path in recipes(repo):
        names |= set(yaml.safe_load(path.read_text())["dataset_catalog"])
    assert STUDY <= names
    assert any(yaml.safe_load(p.read_text())["dataset_catalog"].popitem()[1]["source"]["type"] == "medmnist"
               for p in recipes(repo))


def test_every_recipe_validates_against_the_schema(repo):
    schema = str(repo / "config" / "config.schema.yaml")
    for path in recipes(repo):
        config, recipe = merged(repo, path)
        validate(config, schema)
        (name, entry), = recipe["dataset_catalog"].items()
        assert path.stem == name
        assert "/path/to/" in path.read_text(), f"{path.name}: document the expected layout with /path/to placeholders"


@pytest.mark.parametrize(
    ("recipe", "edit", "culprit"),
    [
        ("brats", lambda s: s.pop("root"), "'root' is a required property"),
        ("rsna_ih_ct", lambda s: s.update(windw=s.pop("window")), "windw"),
        ("chexpert", lambda s: s.update(on_error="ignore"), "ignore"),
        ("oai", lambda s: s.update(classes=["2"]), "classes"),
        ("mnist", lambda s: s.update(dataset="MNIST2"), "MNIST2"),
        ("brats", lambda s: s.update(labels_csv="/x.csv"), "oneOf"),
    ],
)
def test_misspelled_or_missing_options_are_schema_errors(repo, recipe, edit, culprit):
    config, _ = merged(repo, repo / "config" / "datasets" / f"{recipe}.yaml")
    config = copy.deepcopy(config)
    edit(config["dataset_catalog"][recipe]["source"])
    with pytest.raises(WorkflowError) as error:
        validate(config, str(repo / "config" / "config.schema.yaml"))
    assert culprit in str(error.value)


def test_recipes_load_as_configfiles(repo, tmp_path):
    names = ",".join(sorted(STUDY | {"pneumoniamnist"}))
    output = snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--configfile", *map(str, recipes(repo)),
                       "--config", f"datasets=[{names}]").stdout
    counts = job_counts(output)
    assert counts["prepare_dataset"] == len(STUDY) + 1


def test_workflow_prepares_a_medmnist_file_and_measures_its_properties(repo, tmp_path):
    arrays = write_medmnist(tmp_path / "data" / "pneumoniamnist_64.npz", {"train": 60, "val": 10, "test": 30}, side=64)
    source = {"type": "medmnist", "npz": str(tmp_path / "data" / "pneumoniamnist_64.npz"),
              "classes": {"normal": [0], "pneumonia": [1]}}
    config = {
        "image": {"size": 16, "channels": 1},
        "splits": {"n_train": [20, 40], "n_test": 20, "seeds": [0]},
        "properties": {"knn_k": 5, "sharpness_samples": 20, "threads": 1},
        "prepare": {"threads": 2},
        "datasets": ["pneumonia"],
        "dataset_catalog": {"pneumonia": {"domain": "medical", "source": source}},
    }
    # the target goes first: --configfile takes every following word as a file
    snakemake(repo, tmp_path, "results/tables/dataset_properties.csv", "--cores", "2",
              "--configfile", config_file(tmp_path, config, "run.yaml"))
    cache = load_cache(tmp_path / "results/cache/pneumonia", verify=True)
    labels = np.concatenate([arrays[f"{s}_labels"][:, 0] for s in ("train", "val", "test")])
    np.testing.assert_array_equal(cache.labels, labels)
    assert cache.images.shape == (100, 1, 16, 16)
    assert cache.meta["classes"] == ["normal", "pneumonia"]
    assert cache.meta["provenance"]["type"] == "medmnist"
    # the rule (2 workers) wrote exactly what the library writes in-process, serially
    reference = write_cache(tmp_path / "reference", load_source("pneumonia", source), 16, 1, "medical")
    assert reference["sha256"] == cache.meta["sha256"]
    table = pd.read_csv(tmp_path / "results/tables/dataset_properties.csv")
    assert len(table) == 2 and set(table["dataset"]) == {"pneumonia"}
    assert (table["d_twonn"] > 0).all() and (table["k_f"] > 0).all()
    log = (tmp_path / "results/logs/prepare_dataset/pneumonia.log").read_text()
    assert "reading source type medmnist with 2 worker(s)" in log


def test_prepare_threads_has_a_schema_default(repo):
    config = {"dataset_catalog": {"digits": {"domain": "natural", "source": {"type": "sklearn_digits"}}}}
    validate(config, str(repo / "config" / "config.schema.yaml"))
    assert config["prepare"] == {"threads": 2}
    with pytest.raises(WorkflowError, match="0 is less than the minimum"):
        validate({**config, "prepare": {"threads": 0}}, str(repo / "config" / "config.schema.yaml"))
