"""The source registry (intrinsic.sources): schema and signatures in step, and the provenance
that load_source records for every type alike."""

import inspect
import json

import numpy as np
import pytest
import yaml

from intrinsic.cache import DatasetError, RawDataset
from intrinsic.sources import SOURCES, SourceType, load_source, source_options
from intrinsic.sources.common import DEFAULT_GROUP_SALT


def schema_source_options(schema: dict) -> tuple[list, dict[str, tuple[set, set]]]:
    """(the schema's enum of source types, {type: (options it allows, options it requires)})
    from the ``if: {type: {const: T}} then: {properties, required}`` blocks of ``source``."""
    source = schema["properties"]["dataset_catalog"]["additionalProperties"]["properties"]["source"]
    per_type = {}
    for block in source["allOf"]:
        condition = block["if"]["properties"]["type"]
        if "const" in condition:
            kind = condition["const"]
            assert kind not in per_type, f"two schema blocks for source type {kind!r}"
            allowed = set(block["then"]["properties"]) - {"type"}
            per_type[kind] = (allowed, set(block["then"].get("required", [])))
        else:  # a block shared by several types (the real-data types' common options)
            assert set(condition["enum"]) <= set(source["properties"]["type"]["enum"])
    return source["properties"]["type"]["enum"], per_type


def mismatches(types: list, per_type: dict, sources: dict[str, SourceType]) -> list[str]:
    """Every way in which the schema and the registered callables disagree, in words."""
    found = []
    if sorted(types) != sorted(sources):
        found.append(f"schema types {sorted(types)} != registered {sorted(sources)}")
    for kind, source_type in sources.items():
        if kind not in per_type:
            found.append(f"{kind}: no schema block of its options")
            continue
        allowed, required = per_type[kind]
        parameters = source_options(source_type)
        keywords = {p.name for p in parameters}
        if allowed != keywords:
            found.append(f"{kind}: schema only {sorted(allowed - keywords)}, "
                         f"signature only {sorted(keywords - allowed)}")
        no_default = {p.name for p in parameters if p.default is inspect.Parameter.empty}
        if not no_default <= required:
            found.append(f"{kind}: options without a default {sorted(no_default - required)} are not required")
    return found


@pytest.fixture(scope="module")
def schema(repo):
    return yaml.safe_load((repo / "config" / "config.schema.yaml").read_text())


def test_schema_lists_each_type_and_exactly_its_signature_options(schema):
    types, per_type = schema_source_options(schema)
    assert mismatches(types, per_type, SOURCES) == []
    assert set(per_type) == set(SOURCES)


def test_the_check_fails_on_a_keyword_the_schema_does_not_list(schema):
    def read_bogus(name, context, d, seed=0, bogus=1):
        raise AssertionError(f"never called ({name}, {context}, {d}, {seed}, {bogus})")

    types, per_type = schema_source_options(schema)
    sources = {**SOURCES, "synthetic_manifold": SourceType(read_bogus)}
    assert mismatches(types, per_type, sources) == ["synthetic_manifold: schema only ['margin', 'n_per_class', "
                                                    "'native_size'], signature only ['bogus']"]
    del sources["low_rank"]
    assert any("registered" in problem for problem in mismatches(types, per_type, sources))


def test_the_shared_real_data_options_block_covers_exactly_the_readers(schema):
    """The schema validates classes, drop_other, ... once for the types that take them: every
    type whose reader hashes group ids (the real-data readers), and no other."""
    source = schema["properties"]["dataset_catalog"]["additionalProperties"]["properties"]["source"]
    shared = [block["if"]["properties"]["type"]["enum"] for block in source["allOf"]
              if "enum" in block["if"]["properties"]["type"]]
    readers = {kind for kind, source_type in SOURCES.items()
               if any(p.name == "group_salt" for p in source_options(source_type))}
    assert len(shared) == 1 and set(shared[0]) == readers


def test_every_reader_and_generator_takes_name_and_context_first():
    for kind, source_type in SOURCES.items():
        first_two = list(inspect.signature(source_type.read).parameters)[:2]
        assert first_two == ["name", "context"], kind


# ----------------------------------------------------------------------------------------------
# Provenance written by the dispatcher


def write_npz(path, labels):
    images = np.arange(len(labels) * 16, dtype=np.uint8).reshape(len(labels), 4, 4)
    np.savez(path, train_images=images, train_labels=np.asarray(labels).reshape(-1, 1))


def test_reader_provenance_holds_the_options_as_configured_with_defaults(tmp_path):
    (tmp_path / "data").mkdir()
    write_npz(tmp_path / "data" / "tiny.npz", [0, 1, 0, 1])
    source = {"type": "medmnist", "npz": "data/tiny.npz", "group_salt": "secret-salt-42"}
    raw = load_source("tiny", source, base_dir=tmp_path)
    provenance = raw.provenance
    assert list(provenance)[:4] == ["type", "options", "group_salt", "versions"]
    assert provenance["type"] == "medmnist"
    # the path as given (relative), not joined to base_dir; every option, defaults filled in
    assert provenance["options"] == {"npz": "data/tiny.npz", "split": "all", "label_column": None, "classes": None,
                                     "drop_other": False, "min_per_class": 1, "max_per_class": None,
                                     "on_error": "raise"}
    assert provenance["group_salt"] == "custom" and "secret-salt-42" not in json.dumps(provenance)
    assert set(provenance["versions"]) == {"numpy"}
    # what the reader measured follows
    assert provenance["images_per_split"] == {"train": 4} and provenance["class_values"] == {"0": ["0"], "1": ["1"]}
    default = load_source("tiny", {"type": "medmnist", "npz": str(tmp_path / "data" / "tiny.npz")})
    assert default.provenance["group_salt"] == "default"


def test_generator_provenance_has_the_same_shape():
    raw = load_source("ct", {"type": "lesion", "n_per_class": 2, "seed": 3})
    provenance = raw.provenance
    assert list(provenance)[:3] == ["type", "options", "versions"] and "group_salt" not in provenance
    assert provenance["options"] == {"seed": 3, "sources": ["ct_small"], "n_per_class": 2, "crop_fraction": 0.6,
                                     "scale_jitter": 1.25, "lesion_radius": 0.06, "lesion_contrast": 0.25,
                                     "grid": 3, "max_side": 256}
    assert set(provenance["versions"]) == {"numpy", "pydicom", "nibabel", "scikit-image"}
    assert provenance["images_per_source"] == {"ct_small": 4}


def test_missing_option_and_shadowed_provenance_are_errors(monkeypatch):
    with pytest.raises(DatasetError, match=r"'syn'.*'synthetic_manifold' needs option\(s\) \['d'\]"):
        load_source("syn", {"type": "synthetic_manifold"})

    def read_clashing(name, context):
        return RawDataset(name, [np.zeros((2, 2))] * 2, [0, 1], ["a", "b"], ["x", "y"], provenance={"options": {}})

    monkeypatch.setitem(SOURCES, "medmnist", SourceType(read_clashing))
    with pytest.raises(RuntimeError, match=r"'medmnist' returned provenance key\(s\) \['options'\]"):
        load_source("ds", {"type": "medmnist"})


def test_default_salt_is_the_one_the_readers_use():
    for kind, source_type in SOURCES.items():
        salts = [p.default for p in source_options(source_type) if p.name == "group_salt"]
        assert salts in ([], [DEFAULT_GROUP_SALT]), kind
