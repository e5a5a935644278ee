"""Configuration: the defaults validate; bad configs fail with a message naming the culprit."""

import copy
import re

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from helpers import snakemake


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
        # free text, but a folder-safe word
        (lambda c: c["dataset_catalog"]["digits"].update(domain="astro/physics"), "astro/physics"),
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
        # a class pair naming one class twice: the dataset and the pair
        (lambda c: c["dataset_catalog"]["digits"].update(class_pairs=[["1", "7"], ["3", "3"]]),
         ("['dataset_catalog']['digits']['class_pairs'][1]", "['3', '3']")),
        # dataset names become folder names: a safe character set, at most 64 characters
        (lambda c: c["dataset_catalog"].update({"a..b": c["dataset_catalog"]["digits"]}), "'a..b'"),
        (lambda c: c["dataset_catalog"].update({"digits.": c["dataset_catalog"]["digits"]}), "'digits.'"),
        (lambda c: c["dataset_catalog"].update({".digits": c["dataset_catalog"]["digits"]}), "'.digits'"),
        (lambda c: c["dataset_catalog"].update({"my digits": c["dataset_catalog"]["digits"]}), "'my digits'"),
        (lambda c: c["dataset_catalog"].update({"a/b": c["dataset_catalog"]["digits"]}), "'a/b'"),
        (lambda c: c["dataset_catalog"].update({"d" * 65: c["dataset_catalog"]["digits"]}), "d" * 65),
    ],
)
def test_bad_config_names_the_culprit(schema, default_config, edit, culprit):
    config = copy.deepcopy(default_config)
    edit(config)
    with pytest.raises(WorkflowError) as error:
        validate(config, schema)
    for part in culprit if isinstance(culprit, tuple) else (culprit,):
        assert part in str(error.value)


@pytest.mark.parametrize("name", ["d" * 64, "mnist.v2", "a_b-c.d", "CIFAR10", "x"])
def test_safe_dataset_names_validate(schema, default_config, name):
    config = copy.deepcopy(default_config)
    config["dataset_catalog"][name] = config["dataset_catalog"]["digits"]
    validate(config, schema)


def test_every_shipped_catalog_validates(schema, repo, default_config):
    """The dataset names of the default, the paper's config and every recipe pass the name rules."""
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    for config in (default_config, paper):
        validate(copy.deepcopy(config), schema)
    for recipe in sorted((repo / "config" / "datasets").glob("*.yaml")):
        merged = copy.deepcopy(default_config)
        update_config(merged, yaml.safe_load(recipe.read_text()))
        validate(merged, schema)


# Checks of workflow/rules/common.smk beyond the schema: a dry-run with the config merged over
# the default one (YAML text, so that .nan and .inf arrive as YAML writes them).
@pytest.mark.parametrize(
    ("overlay", "culprits"),
    [
        # the MLE needs knn_k neighbours of every training image: N >= knn_k + 1
        ("splits: {n_train: [20, 40]}\nproperties: {knn_k: 20}\n",
         ("properties.knn_k = 20", "splits.n_train", "N = 20", "at least 21")),
        ("splits: {n_train: [64, 10]}\nproperties: {knn_k: 10}\n",
         ("properties.knn_k = 10", "N = 10")),
        # TwoNN keeps int(N (1 - fraction)) ratios and needs 2 of them
        ("properties: {twonn_discard_fraction: 0.95}\n",
         ("properties.twonn_discard_fraction = 0.95", "splits.n_train", "N = 32")),
        # non-finite numbers anywhere, named by their key path
        ("training: {model_settings: {resnet18: {learning_rate: .nan, batch_size: 8}}}\n",
         ("training.model_settings.resnet18.learning_rate", "nan")),
        ("training: {weight_decay: .inf}\n", ("training.weight_decay", "inf")),
        ("training: {fit_threshold: .NaN}\n", ("training.fit_threshold",)),
        ("dataset_catalog: {retina_lesion: {source: {lesion_contrast: -.inf}}}\n",
         ("dataset_catalog.retina_lesion.source.lesion_contrast", "-inf")),
        ("dataset_catalog: {mr_x: {domain: medical, source: {type: nifti, root: x, mask_replace: {a: b},"
         " percentiles: [1, .nan]}}}\n",
         ("dataset_catalog.mr_x.source.percentiles[1]",)),
        # names that differ only in case share one folder on a case-insensitive file system
        ("dataset_catalog: {Digits: {domain: natural, source: {type: sklearn_digits}}}\n",
         ("'Digits'", "'digits'")),
        # names Windows reserves for devices, with or without an extension
        ("dataset_catalog: {con: {domain: natural, source: {type: sklearn_digits}}}\n", ("'con'",)),
        ("dataset_catalog: {LPT1.x: {domain: natural, source: {type: sklearn_digits}}}\n", ("'LPT1.x'",)),
    ],
    ids=["knn_k_vs_n", "knn_k_vs_unsorted_n", "twonn_discard", "nan", "inf", "NaN_spelling", "minus_inf",
         "nan_in_list", "case_clash", "windows_device", "windows_device_with_extension"],
)
def test_bad_config_stops_the_dry_run_naming_the_culprit(repo, tmp_path, overlay, culprits):
    (tmp_path / "overlay.yaml").write_text(overlay)
    result = snakemake(repo, tmp_path, "-n", "--configfile", str(tmp_path / "overlay.yaml"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for culprit in culprits:
        assert culprit in output, output
    assert "WorkflowError" in output or "Error" in output, output


def test_smallest_n_equal_to_knn_k_plus_one_dry_runs(repo, tmp_path):
    """The bound is tight: the smallest N = knn_k + 1 (knn_k 11, N 12) is accepted."""
    (tmp_path / "overlay.yaml").write_text("splits: {n_train: [12, 40]}\nproperties: {knn_k: 11}\n")
    snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--configfile", str(tmp_path / "overlay.yaml"))


def test_authors_code_overlay_validates_over_the_paper_config(schema, repo):
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    overlay_text = (repo / "config" / "authors_code.yaml").read_text()
    overlay = yaml.safe_load(overlay_text)
    merged = copy.deepcopy(paper)
    update_config(merged, overlay)  # what --configfile paper.yaml authors_code.yaml does
    validate(merged, schema)
    training, evaluation = merged["training"], merged["evaluation"]
    assert (training["mode"], training["max_epochs"]) == ("fixed_epochs", 100)
    assert training["dataset_model_settings"] == {
        "svhn": {m: {"learning_rate": 1e-6} for m in ("vgg13", "vgg16", "vgg19")}}
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
