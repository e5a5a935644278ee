"""Fault injection into real workflow runs (issue "Integrity").

A tiny grid (one dataset, one model, one split) runs once undisturbed. Each test copies that
finished working directory, injects one fault (flipped bytes, truncation, a SIGKILL inside a
job by tests/fault_hooks/sitecustomize.py), reruns, and checks the outcome: either the same
numbers as the undisturbed run with no leftover files, or an error that names the damaged
file and the command that rebuilds it.
"""

import json
import os
import re
import shutil

import numpy as np
import pytest

from helpers import config_file, load_config
from helpers import snakemake as workflow

HOOKS = os.path.join(os.path.dirname(__file__), "fault_hooks")
# tests/configs/faults.yaml: one run of exactly 3 epochs, a checkpoint after each.
FAULTS = load_config("faults")
RUN = "digits/resnet18/noise0.0/standard/n20_seed0"
CACHE = "results/cache/digits"
SPLIT = "results/splits/digits/n20_seed0.npz"
PROPERTIES = "results/properties/digits/noise0.0/n20_seed0.json"
SHARPNESS = "results/properties/digits/label_sharpness.json"
TRAINING = f"results/runs/{RUN}/training.json"
EVALUATION = f"results/runs/{RUN}/evaluation.json"
CHECKPOINTS = f"results/checkpoints/{RUN}"
TARGETS = [PROPERTIES, SHARPNESS, EVALUATION]
# Wall-clock times and the history of a run's segments differ between runs; every number the
# run reports must be identical.
BOOKKEEPING = {"seconds", "train_seconds", "eval_seconds", "resumed_from", "checkpoints_set_aside"}


def snakemake(repo, workdir, *args, fault=None, config=FAULTS):
    """Run the workflow in ``workdir`` (config ``config``) with the fault hooks; the CompletedProcess."""
    config_file(workdir, config, "faults.yaml")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HOOKS, os.environ["PYTHONPATH"]]))
    env.pop("INTRINSIC_TEST_FAULT", None)
    if fault:
        env["INTRINSIC_TEST_FAULT"] = fault
    # "--option=value": the options taking several values would swallow the targets otherwise
    return workflow(repo, workdir, "--cores", "2", f"--configfile={workdir / 'faults.yaml'}", *args, check=False,
                    env=env)


def succeeds(result):
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result


def fails(result, *patterns):
    """The run failed and its output (Snakemake's, which includes the job's log) matches every
    pattern."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for pattern in patterns:
        assert re.search(pattern, output), f"{pattern!r} not in:\n{output}"
    return output


def numbers(workdir) -> dict:
    """Every number the run reports, without BOOKKEEPING fields."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in BOOKKEEPING}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {path: strip(json.loads((workdir / path).read_text())) for path in TARGETS + [TRAINING]}


def leftovers(workdir) -> list[str]:
    """Files a finished run must not leave: checkpoints, partial files, staging folders."""
    results = workdir / "results"
    found = [p for p in results.rglob(".*") if p.name.endswith((".tmp", ".old"))]
    checkpoints = results / "checkpoints"
    if checkpoints.exists():
        found += [p for p in checkpoints.rglob("*") if p.is_file()]
    return sorted(str(p.relative_to(workdir)) for p in found)


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def undisturbed(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("undisturbed")
    succeeds(snakemake(repo, workdir, *TARGETS))
    assert leftovers(workdir) == []
    return workdir


@pytest.fixture()
def copy(undisturbed, tmp_path):
    """A copy of the finished run (file times kept, so Snakemake sees it as complete)."""
    workdir = tmp_path / "run"
    shutil.copytree(undisturbed, workdir, symlinks=True)
    return workdir


def test_a_flipped_image_byte_is_named_and_the_rebuild_gives_the_same_numbers(repo, undisturbed, copy):
    images = np.load(copy / CACHE / "images.npy", mmap_mode="r")
    with np.load(copy / SPLIT) as split:
        first = int(split["train_idx"][0])
    row_bytes = int(np.prod(images.shape[1:]))
    flip_byte(copy / CACHE / "images.npy", images.offset + first * row_bytes + row_bytes // 2)
    (copy / PROPERTIES).unlink()
    fails(snakemake(repo, copy, *TARGETS), rf"cache {CACHE}: images\.npy is corrupt .*first index {first}",
          rf"snakemake --forcerun {CACHE}`")
    succeeds(snakemake(repo, copy, *TARGETS, f"--forcerun={CACHE}"))
    assert numbers(copy) == numbers(undisturbed) and leftovers(copy) == []


def test_a_flipped_label_byte_fails_every_job_that_reads_the_cache(repo, copy):
    flip_byte(copy / CACHE / "labels.npy", -1)
    (copy / PROPERTIES).unlink()
    fails(snakemake(repo, copy, *TARGETS), rf"cache {CACHE}: labels\.npy, groups\.npy or row_crc32\.npy is corrupt",
          rf"--forcerun {CACHE}`")


def test_a_damaged_split_file_is_named(repo, copy):
    flip_byte(copy / SPLIT, len((copy / SPLIT).read_bytes()) // 3)
    (copy / PROPERTIES).unlink()
    fails(snakemake(repo, copy, *TARGETS), rf"split {SPLIT}: cannot read it", rf"--forcerun {SPLIT}`")


def test_a_run_killed_in_its_evaluation_resumes_with_nothing_to_train(repo, undisturbed, copy):
    fails(snakemake(repo, copy, *TARGETS, f"--forcerun={TRAINING}", fault="kill_in_evaluation"))
    assert len(list((copy / CHECKPOINTS).glob("*.pt"))) == 1  # the final checkpoint, epoch 3
    succeeds(snakemake(repo, copy, *TARGETS, f"--forcerun={TRAINING}"))
    assert json.loads((copy / TRAINING).read_text())["resumed_from"] == 3
    assert "nothing to train" in (copy / f"results/logs/run_model/{RUN}.log").read_text()
    assert numbers(copy) == numbers(undisturbed) and leftovers(copy) == []


@pytest.mark.parametrize("fault", ["kill_after_epoch:1", "kill_in_checkpoint_write:2"])
def test_a_killed_training_resumes_to_the_same_numbers_and_leaves_nothing(repo, undisturbed, copy, fault):
    fails(snakemake(repo, copy, *TARGETS, f"--forcerun={TRAINING}", fault=fault))
    checkpoints = sorted(p.name for p in (copy / CHECKPOINTS).iterdir())
    assert len([name for name in checkpoints if name.endswith(".pt")]) == 1, checkpoints
    if fault.startswith("kill_in_checkpoint_write"):
        assert any(name.endswith(".tmp") for name in checkpoints), checkpoints  # the killed write's part
    succeeds(snakemake(repo, copy, *TARGETS, f"--forcerun={TRAINING}"))  # the same command again
    assert json.loads((copy / TRAINING).read_text())["resumed_from"] == 1
    assert numbers(copy) == numbers(undisturbed) and leftovers(copy) == []


# A flipped byte: tests/test_training.py; here the truncation that once failed every retry.
def test_a_truncated_checkpoint_is_set_aside_and_training_starts_fresh(repo, undisturbed, copy):
    fails(snakemake(repo, copy, *TARGETS, f"--forcerun={TRAINING}", fault="kill_after_epoch:2"))
    (checkpoint,) = (copy / CHECKPOINTS).glob("*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    succeeds(snakemake(repo, copy, *TARGETS, f"--forcerun={TRAINING}"))
    record = json.loads((copy / TRAINING).read_text())
    assert record["resumed_from"] == 0
    (reason,) = record["checkpoints_set_aside"]
    assert f"checkpoint {CHECKPOINTS}/{checkpoint.name} set aside" in reason
    assert reason in (copy / f"results/logs/run_model/{RUN}.log").read_text()
    assert numbers(copy) == numbers(undisturbed) and leftovers(copy) == []


def test_a_run_interrupted_then_shortened_equals_a_clean_shorter_run(repo, copy, tmp_path):
    fails(snakemake(repo, copy, *TARGETS, f"--forcerun={TRAINING}", fault="kill_after_epoch:2"))
    shorter = {**FAULTS, "training": {**FAULTS["training"], "max_epochs": 1}}
    succeeds(snakemake(repo, copy, *TARGETS, config=shorter))
    record = json.loads((copy / TRAINING).read_text())
    assert record["epochs"] == record["settings"]["max_epochs"] == 1
    assert "max_epochs (checkpoint at epoch 2, now 1)" in record["checkpoints_set_aside"][0]
    clean = tmp_path / "clean"
    clean.mkdir()
    succeeds(snakemake(repo, clean, *TARGETS, config=shorter))
    assert numbers(copy) == numbers(clean) and leftovers(copy) == []


def test_a_killed_cache_write_leaves_the_old_cache_and_its_staging_folder_is_removed(repo, undisturbed, copy):
    fails(snakemake(repo, copy, CACHE, f"--forcerun={CACHE}", fault="kill_in_cache_write"))
    staging = [p.name for p in (copy / "results/cache").iterdir() if p.name.startswith(".digits.")]
    assert len(staging) == 1 and staging[0].endswith(".tmp"), staging
    succeeds(snakemake(repo, copy, *TARGETS, f"--forcerun={CACHE}"))
    meta = json.loads((copy / CACHE / "meta.json").read_text())
    assert meta["sha256"] == json.loads((undisturbed / CACHE / "meta.json").read_text())["sha256"]
    assert numbers(copy) == numbers(undisturbed) and leftovers(copy) == []
