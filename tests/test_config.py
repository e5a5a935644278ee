"""Configuration: the defaults validate; bad configs fail with a message naming the culprit."""

import copy
import re

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate


@pytest.fixture(scope="module")
def schema(repo):
    return str(repo / "config" / "config.schema.yaml")


@pytest.fixture()
def default_config(repo):
    return yaml.safe_load((repo / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_complete(schema, default_config):
    validate(default_config, schema)
    assert set(default_config["dataset_catalog"]) >= {"digits", "ct_lesion", "synthetic_d2"}
    domains = {spec["domain"] for spec in default_config["dataset_catalog"].values()}
    assert domains == {"natural", "medical", "synthetic"}


def test_schema_fills_defaults(schema):
    config = {"dataset_catalog": {"digits": {"domain": "natural", "source": {"type": "sklearn_digits"}}}}
    validate(config, schema)
    assert config["image"] == {"size": 32, "channels": 1}
    assert config["splits"]["n_train"] == [500, 750, 1000, 1250, 1500, 1750]
    assert config["splits"]["n_test"] == 750
    assert config["properties"]["knn_k"] == 20 and config["properties"]["sharpness_samples"] == 1000
    # the paper's text unless told otherwise
    assert config["training"]["mode"] == "until_fit" and config["training"]["dataset_model_settings"] == {}
    assert config["evaluation"]["representation_layer"] == "final_linear_input"
    assert "channels" not in config["dataset_catalog"]["digits"]  # image.channels applies


@pytest.mark.parametrize(
    ("edit", "culprit"),
    [
        (lambda c: c["splits"].update(n_train=[100, 151]), "151"),
        (lambda c: c["image"].update(channels=2), "2"),
        (lambda c: c["dataset_catalog"]["digits"].update(domain="astronomy"), "astronomy"),
        (lambda c: c["dataset_catalog"]["digits"]["source"].update(type="dicom_magic"), "dicom_magic"),
        (lambda c: c.update(imgae={"size": 32}), "imgae"),
        (lambda c: c["properties"].update(knn_k="twenty"), "twenty"),
        (lambda c: c["training"].update(mode="forever"), "forever"),
        (lambda c: c["training"].update(dataset_model_settings={"digits": {"vgg17": {"batch_size": 4}}}), "vgg17"),
        (lambda c: c["training"].update(dataset_model_settings={"digits": {"vgg13": {"lr": 1e-6}}}), "'lr'"),
        (lambda c: c["training"].update(dataset_model_settings={"digits": {"vgg13": {"learning_rate": -0.5}}}),
         "-0.5"),
        (lambda c: c["training"].update(dataset_model_settings={"digits": {"vgg13": {"batch_size": "six"}}}), "six"),
        (lambda c: c["training"].update(dataset_model_settings={"digits": {"vgg13": {}}}),
         "['dataset_model_settings']['digits']['vgg13']"),
        (lambda c: c["evaluation"].update(representation_layer="penultimate"), "penultimate"),
        (lambda c: c["dataset_catalog"]["digits"].update(channels="rgb"), "rgb"),
    ],
)
def test_bad_config_names_the_culprit(schema, default_config, edit, culprit):
    config = copy.deepcopy(default_config)
    edit(config)
    with pytest.raises(WorkflowError) as error:
        validate(config, schema)
    assert culprit in str(error.value)


def test_authors_code_overlay_validates_over_the_paper_config(schema, repo):
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    overlay_text = (repo / "config" / "authors_code.yaml").read_text()
    overlay = yaml.safe_load(overlay_text)
    merged = copy.deepcopy(paper)
    update_config(merged, overlay)  # what --configfile paper.yaml authors_code.yaml does
    validate(merged, schema)
    training, evaluation = merged["training"], merged["evaluation"]
    assert (training["mode"], training["max_epochs"]) == ("fixed_epochs", 100)
    assert training["dataset_model_settings"] == {"svhn": {m: {"learning_rate": 1e-6} for m in ("vgg13", "vgg16", "vgg19")}}
    assert evaluation["representation_layer"] == "authors_penultimate"
    assert (evaluation["attacks"], evaluation["eps_255"]) == (["fgsm"], [2])
    assert merged["analysis"]["exclude_unfitted"] is False  # the released code keeps every model
    # the rest of the paper's grid is untouched
    assert merged["training"]["model_settings"] == paper["training"]["model_settings"]
    assert merged["dataset_catalog"] == paper["dataset_catalog"]
    # every value names the file and line of the released code it comes from
    for line in overlay_text.splitlines():
        code = line.split("#")[0].strip()
        if code and not code.endswith(":"):
            assert re.search(r"#.*\w+\.py:\d+", line), line


def test_paper_config_sets_rgb_for_the_natural_colour_datasets(repo):
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    assert paper["image"]["channels"] == 1
    rgb = {name for name, entry in paper["dataset_catalog"].items() if entry.get("channels") == 3}
    assert rgb == {"imagenet", "cifar10", "svhn"}
    for name in ("imagenet", "cifar10", "svhn"):
        recipe = yaml.safe_load((repo / "config" / "datasets" / f"{name}.yaml").read_text())
        assert recipe["dataset_catalog"][name]["channels"] == 3
