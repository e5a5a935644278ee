"""Configuration: the defaults validate; bad configs fail with a message naming the culprit."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


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


@pytest.mark.parametrize(
    ("edit", "culprit"),
    [
        (lambda c: c["splits"].update(n_train=[100, 151]), "151"),
        (lambda c: c["image"].update(channels=2), "2"),
        (lambda c: c["dataset_catalog"]["digits"].update(domain="astronomy"), "astronomy"),
        (lambda c: c["dataset_catalog"]["digits"]["source"].update(type="dicom_magic"), "dicom_magic"),
        (lambda c: c.update(imgae={"size": 32}), "imgae"),
        (lambda c: c["properties"].update(knn_k="twenty"), "twenty"),
    ],
)
def test_bad_config_names_the_culprit(schema, default_config, edit, culprit):
    config = copy.deepcopy(default_config)
    edit(config)
    with pytest.raises(WorkflowError) as error:
        validate(config, schema)
    assert culprit in str(error.value)
