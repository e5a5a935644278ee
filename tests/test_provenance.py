"""Every record and table row says which code produced it (intrinsic.provenance)."""

import hashlib
import json
import logging
import shutil
import subprocess
import time

import pandas as pd
import pytest

# The helpers of the modules that already run these functions on tiny inputs.
from helpers import git
from test_grid import TRAINING as GRID_TRAINING, run_once, write_squares
from test_properties import blob_images

from intrinsic import __version__, provenance
from intrinsic.appendix import invariance_table
from intrinsic.cache import RawDataset, load_cache, write_cache
from intrinsic.properties import dataset_sharpness, split_properties
from intrinsic.provenance import (
    CODE_FIELDS, UNKNOWN, check_code, code_version, code_versions, code_versions_table, describe_code, library_hash,
    stamp_code, warn_mixed_code,
)
from intrinsic.splits import load_split, make_split
from intrinsic.tables import grid_tables, property_tables, write_parquet, write_table
from intrinsic.io import write_json

# One epoch is enough to write the records.
TRAINING = {**GRID_TRAINING, "max_epochs": 1}



def package_copy(folder):
    """A copy of the library's sources (no __pycache__) at ``folder``/intrinsic; its path."""
    target = folder / "intrinsic"
    shutil.copytree(provenance.PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


@pytest.fixture
def checkout(tmp_path):
    """A git repository with a committed copy of the library under workflow/scripts/."""
    repo = tmp_path / "repo"
    package = package_copy(repo / "workflow" / "scripts")
    (repo / "README.md").write_text("readme\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return repo, package


def test_code_fields_of_a_git_checkout(checkout):
    repo, package = checkout
    fields = describe_code(package, "9.8.7")
    assert list(fields) == list(CODE_FIELDS)
    assert fields["code_version"] == "9.8.7"
    assert fields["code_commit"] == git(repo, "rev-parse", "HEAD") and len(fields["code_commit"]) == 40
    assert fields["code_dirty"] is False
    assert fields["library_hash"] == library_hash(provenance.PACKAGE_DIR)  # the same sources


def test_dirty_flips_with_an_edit_of_a_tracked_file_or_a_new_library_file(checkout):
    repo, package = checkout
    (repo / "notes.txt").write_text("untracked\n")  # untracked files outside the library: not dirty
    assert describe_code(package)["code_dirty"] is False
    (package / "new_module.py").write_text("x = 1\n")  # a new library file, not yet added: dirty
    assert describe_code(package)["code_dirty"] is True
    (package / "new_module.py").unlink()
    (repo / "README.md").write_text("edited\n")  # a tracked file outside the library
    edited = describe_code(package)
    assert edited["code_dirty"] is True and edited["code_commit"] == git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "-am", "second")
    committed = describe_code(package)
    assert committed["code_dirty"] is False and committed["code_commit"] == git(repo, "rev-parse", "HEAD")
    assert committed["code_commit"] != edited["code_commit"]


def test_outside_git_the_commit_is_unknown(tmp_path):
    package = package_copy(tmp_path / "deployed")
    fields = describe_code(package)
    assert fields["code_commit"] == UNKNOWN and fields["code_dirty"] is None
    assert fields["library_hash"] == library_hash(provenance.PACKAGE_DIR)


def test_a_copy_in_an_ignored_folder_of_a_checkout_is_not_that_checkout(checkout):
    repo, _ = checkout
    (repo / ".gitignore").write_text(".venv/\n")
    installed = package_copy(repo / ".venv" / "site-packages")  # e.g. an installed wheel
    assert describe_code(installed)["code_commit"] == UNKNOWN


def test_git_missing_or_another_git_dir_in_the_environment(checkout, tmp_path, monkeypatch):
    repo, package = checkout
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))  # ignored: the package's own checkout counts
    assert describe_code(package)["code_commit"] == git(repo, "rev-parse", "HEAD")
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert describe_code(package)["code_commit"] == UNKNOWN
    assert describe_code(package)["code_dirty"] is None


def test_library_hash_by_hand(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    (tmp_path / "sub" / "b.py").write_bytes(b"y = 2\n")
    digest = hashlib.sha256()
    for name, content in ((b"a.py", b"x = 1\n"), (b"sub/b.py", b"y = 2\n")):
        digest.update(len(name).to_bytes(8, "big") + name + len(content).to_bytes(8, "big") + content)
    assert library_hash(tmp_path) == "sha256:" + digest.hexdigest()[:16]
    (tmp_path / "sub" / "b.py").write_bytes(b"y = 2\r\n")  # a Windows checkout: the same source
    assert library_hash(tmp_path) == "sha256:" + digest.hexdigest()[:16]


def test_library_hash_covers_source_and_not_compiled_or_other_files(checkout):
    _, package = checkout
    before = library_hash(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "io.cpython-311.pyc").write_bytes(b"\x00compiled")
    (package / "stray.pyc").write_bytes(b"\x00compiled")
    (package / "notes.txt").write_text("not code\n")
    (package / "__pycache__" / "ghost.py").write_text("x = 1\n")
    assert library_hash(package) == before
    (package / "sources").mkdir(exist_ok=True)
    (package / "sources" / "new_reader.py").write_text("def read():\n    pass\n")  # a subpackage's module
    with_module = library_hash(package)
    assert with_module != before
    (package / "sources" / "new_reader.py").write_text("def read():\n    return 1\n")
    assert library_hash(package) not in (before, with_module)
    (package / "sources" / "new_reader.py").unlink()
    assert library_hash(package) == before


def test_code_version_of_this_process():
    started = time.perf_counter()
    fields = code_version()
    assert time.perf_counter() - started < 5  # git is called with a timeout; measured ~30 ms
    assert list(fields) == list(CODE_FIELDS) and fields["code_version"] == __version__
    assert fields["library_hash"] == library_hash()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=provenance.PACKAGE_DIR, capture_output=True, text=True)
    assert fields["code_commit"] == (head.stdout.strip() if head.returncode == 0 else UNKNOWN)
    fields["code_version"] = "changed"  # a copy: records cannot alter the process's fields
    assert code_version()["code_version"] == __version__
    started = time.perf_counter()
    code_version()
    assert time.perf_counter() - started < 0.01  # once per process


# --- mixed versions ---------------------------------------------------------------------------------

A = {"code_version": "0.1.0", "code_commit": "a" * 40, "code_dirty": False, "library_hash": "sha256:aaaa"}
B = {"code_version": "0.1.0", "code_commit": "b" * 40, "code_dirty": True, "library_hash": "sha256:bbbb"}


def hand_made_runs():
    rows = [{"dataset": "d1", "model": "m", "seed": 0, **A}, {"dataset": "d1", "model": "m", "seed": 1, **A},
            {"dataset": "d2", "model": "m", "seed": 0, **A}, {"dataset": "d2", "model": "m", "seed": 1, **B}]
    return pd.DataFrame(rows)


def test_one_version_gives_no_warning():
    table = hand_made_runs().iloc[:3]
    versions, message = check_code(table, "runs.csv")
    assert message is None
    assert versions.to_dict("records") == [{**{k: str(v) for k, v in A.items()}, "rows": 3}]
    # another commit of the same library source: the same code, no warning (but listed)
    other_commit = table.assign(code_commit="c" * 40)
    versions, message = check_code(pd.concat([table, other_commit]), "runs.csv")
    assert message is None and list(versions["rows"]) == [3, 3]


def test_mixed_versions_are_named_with_their_rows(caplog):
    table = hand_made_runs()
    versions, message = check_code(table.to_dict("records"), "runs.csv")  # a list of records works too
    assert list(versions["library_hash"]) == ["sha256:aaaa", "sha256:bbbb"] and list(versions["rows"]) == [3, 1]
    assert message == (
        "runs.csv: its 4 row(s) come from 2 versions of the library code: "
        f"library_hash sha256:aaaa (version 0.1.0, commit {'a' * 12}): 3 row(s) | "
        f"library_hash sha256:bbbb (version 0.1.0, commit {'b' * 12}, with uncommitted changes): 1 row(s), "
        f"e.g. dataset=d2 model=m seed=1. {provenance.RERUN_HINT}.")
    log = logging.getLogger("test_provenance")
    with caplog.at_level(logging.WARNING, logger="test_provenance"):
        warn_mixed_code(table, "runs.csv", log)
    assert [r.levelname for r in caplog.records] == ["WARNING"] and caplog.records[0].getMessage() == message


def test_records_without_code_fields_are_a_version_of_their_own():
    old = pd.DataFrame([{"dataset": "d0", "model": "m", "seed": 0}])
    table = pd.concat([hand_made_runs().iloc[:3], old], ignore_index=True)
    versions, message = check_code(table, "runs.csv")
    assert list(versions["library_hash"]) == ["sha256:aaaa", "unrecorded"]
    assert "unrecorded (version unrecorded, commit unrecorded): 1 row(s), e.g. dataset=d0 model=m seed=0" in message


def test_rows_pooled_over_versions_join_them_and_count_toward_each(tmp_path):
    runs = hand_made_runs()
    fits = pd.DataFrame([{"dataset": "d1", "model": "m", "n": 2}, {"dataset": "d2", "model": "m", "n": 2},
                         {"dataset": "d2", "model": "all", "n": 2}, {"dataset": "all", "model": "all", "n": 4}])
    stamped = stamp_code(fits, runs)
    assert list(stamped.columns) == ["dataset", "model", "n", *CODE_FIELDS]
    # one version: its values; code_dirty as text, since other rows join two versions' ("False;True")
    assert stamped.loc[0, CODE_FIELDS].to_dict() == {**A, "code_dirty": "False"}
    assert stamp_code(fits.iloc[:1], runs).loc[0, CODE_FIELDS].to_dict() == A  # alone: code_dirty a bool
    both = {"code_version": "0.1.0;0.1.0", "code_commit": f"{'a' * 40};{'b' * 40}", "code_dirty": "False;True",
            "library_hash": "sha256:aaaa;sha256:bbbb"}
    for row in (1, 2, 3):  # d2's runs are of both; model "all" and dataset "all" pool
        assert stamped.loc[row, CODE_FIELDS].to_dict() == both
    versions = code_versions(stamped)
    assert versions.set_index("library_hash")["rows"].to_dict() == {"sha256:aaaa": 4, "sha256:bbbb": 3}
    # a CSV round trip and a Parquet one read the same versions back
    assert code_versions(pd.read_csv(pd.io.common.StringIO(stamped.to_csv(index=False)))).equals(versions)
    write_parquet(stamped, tmp_path / "fits.parquet")
    assert code_versions(pd.read_parquet(tmp_path / "fits.parquet")).equals(versions)


def test_write_table_stamps_warns_and_writes(tmp_path, caplog):
    runs = hand_made_runs()
    fits = pd.DataFrame([{"dataset": "d1", "r": 0.5}, {"dataset": "d2", "r": 0.7}])
    log = logging.getLogger("test_provenance")
    with caplog.at_level(logging.WARNING, logger="test_provenance"):
        write_table(fits, tmp_path / "fits.csv", log, sources=runs)
    written = pd.read_csv(tmp_path / "fits.csv")
    assert list(written.columns) == ["dataset", "r", *CODE_FIELDS]
    assert written.loc[0, "library_hash"] == "sha256:aaaa"
    assert written.loc[1, "library_hash"] == "sha256:aaaa;sha256:bbbb"
    assert len(caplog.records) == 1 and caplog.records[0].getMessage().startswith("fits.csv: its 2 row(s) come from 2")


def test_code_versions_table_marks_the_current_library():
    summary = code_versions_table({"runs.csv": hand_made_runs(), "dataset_properties.csv": hand_made_runs().iloc[:1]},
                                  current=B)
    assert summary[["table", "library_hash", "rows", "current"]].values.tolist() == [
        ["runs.csv", "sha256:aaaa", 3, False], ["runs.csv", "sha256:bbbb", 1, True],
        ["dataset_properties.csv", "sha256:aaaa", 1, False]]


# --- the records and tables of the workflow ------------------------------------------------------------


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """test_grid's cache of 60 squares images and its split (N = 16): (cache, split, meta)."""
    folder = tmp_path_factory.mktemp("squares")
    _, meta = write_squares(folder / "cache", folder / "split.npz")
    return folder / "cache", folder / "split.npz", meta


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """120 blob images (test_properties.blob_images), four classes by u."""
    images, latent = blob_images(120)
    raw = RawDataset("blobs", images, (latent[:, 0] * 4).astype(int), range(120), list("abcd"))
    folder = tmp_path_factory.mktemp("blobs")
    write_cache(folder, raw, size=32, channels=1, domain="synthetic")
    return load_cache(folder)


def test_property_records_and_their_tables_carry_the_code(tmp_path, blobs):
    split = make_split("blobs", blobs.labels, blobs.groups, blobs.classes, 40, 10, seed=0)
    record = split_properties(blobs, split, seed=0, knn_k=5)
    pairs = dataset_sharpness(blobs, [0], pairings=2, samples=40)
    assert len(pairs) == 2
    for found in [record, *pairs]:
        assert {field: found[field] for field in CODE_FIELDS} == code_version()
    write_json(tmp_path / "split.json", record)
    write_json(tmp_path / "sharpness.json", {"pairs": pairs})
    splits, sharpness = property_tables([tmp_path / "split.json"], [tmp_path / "sharpness.json"])
    for table in (splits, sharpness):
        assert list(table.columns[-4:]) == list(CODE_FIELDS)
        assert table[list(CODE_FIELDS)].to_dict("records") == [code_version()] * len(table)
    # a record of code before provenance: its rows say so
    write_json(tmp_path / "old.json", {k: v for k, v in record.items() if k not in CODE_FIELDS})
    old, _ = property_tables([tmp_path / "old.json"], [tmp_path / "sharpness.json"])
    # joined with K_F of the current code: the row is of both, and the table a mix
    assert set(old.loc[0, "library_hash"].split(";")) == {code_version()["library_hash"], "unrecorded"}
    _, message = check_code(old, "dataset_properties.csv")
    assert message is not None and "2 versions" in message


def test_invariance_rows_carry_their_record_code():
    record = {"dataset": "d", "domain": "natural", "resolution": 8, "channels": 1, "cache_resolution": 8,
              "cache_channels": 1, "n_features": 64, "n_train": 10, "knn_k": 5,
              "splits": [{"d_mle": 2.0, "d_twonn": 2.0, "n_duplicates": 0}],
              "pairs": [{"k_f": 1.0, "k_f_255": 1 / 255, "kf_samples": 10, "kf_zero_distance_pairs": 0,
                         "classes": "a vs b"}], **B}
    table = invariance_table([record])
    assert table.loc[0, list(CODE_FIELDS)].to_dict() == B


def test_run_records_and_grid_tables_carry_the_code(tmp_path, squares):
    dataset = squares
    _, _, trained, evaluated = run_once(tmp_path, dataset, "resnet18", training=TRAINING, attacks=["fgsm"],
                                        eps=[2 / 255])
    assert {field: trained[field] for field in CODE_FIELDS} == code_version()
    assert {field: evaluated["run"][field] for field in CODE_FIELDS} == code_version()
    on_disk = json.loads((tmp_path / "training.json").read_text())
    assert {field: on_disk[field] for field in CODE_FIELDS} == code_version()
    cache = load_cache(dataset[0])
    properties = split_properties(cache, load_split(dataset[1], cache), seed=0, knn_k=5)
    write_json(tmp_path / "split.json", properties)
    write_json(tmp_path / "sharpness.json", {"pairs": dataset_sharpness(cache, [0], pairings=1, samples=20)})
    splits, _ = property_tables([tmp_path / "split.json"], [tmp_path / "sharpness.json"])
    # a second run record of other code (its library edited in between)
    other = json.loads((tmp_path / "evaluation.json").read_text())
    other["run"] |= {"seed": 0, "model": "other", **B}
    for row in other["attacks"] + other["epochs"]:
        row["model"] = "other"
    write_json(tmp_path / "other.json", other)
    runs, attacks, epochs = grid_tables([tmp_path / "evaluation.json", tmp_path / "other.json"], splits)
    current = code_version()["library_hash"]
    for table in (runs, attacks, epochs):
        assert list(table.columns[-4:]) == list(CODE_FIELDS)
        by_model = table.groupby("model")["library_hash"].unique().to_dict()
        # the other run's row: its own code and that of the properties joined onto it
        assert {m: [set(h.split(";")) for h in hashes] for m, hashes in by_model.items()} == {
            "resnet18": [{current}], "other": [{B["library_hash"], current}]}
    _, message = check_code(runs, "runs.csv")
    assert message.startswith("runs.csv: its 2 row(s) come from 2 versions") and "model=other" in message
    # a row joining two versions' code_dirty ("False;True", the other run's) is stored in Parquet too
    # (bools and text in one column are not: a checkout edited during a grid failed grid_tables)
    other_dirty = runs.loc[runs["model"] == "other", "code_dirty"].item()
    current_dirty = {True: "True", False: "False", None: "unknown"}[code_version()["code_dirty"]]
    assert sorted(other_dirty.split(";")) == sorted(["True", current_dirty])
    for name, table in {"runs": runs, "attacks": attacks, "epochs": epochs}.items():
        write_parquet(table, tmp_path / f"{name}.parquet")
        assert code_versions(pd.read_parquet(tmp_path / f"{name}.parquet")).equals(code_versions(table))
