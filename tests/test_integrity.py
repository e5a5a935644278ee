"""Integrity of what the workflow writes and reads back: verified torch files, JSON records,
split files, partial files of killed writers, and one trainer per run. Library level; the same
faults injected into a workflow run are tests/test_faults.py."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from intrinsic.cache import DatasetError, RawDataset, load_cache, write_cache
from intrinsic.io import (ArtefactError, LockedError, atomic_write, exclusive_lock, load_verified, read_json,
                          save_verified, stale_partials)
from intrinsic.models import build_model, load_model, save_model
from intrinsic.runs import checkpoint_path, run_model, train_settings
from intrinsic.splits import check_distinct_training_images, load_split, make_split
from intrinsic.training import Interrupted, stop_on_signals
from test_grid import write_squares

# ----------------------------------------------------------------------------------------------
# Verified torch files and model files


def test_verified_file_round_trip_and_every_kind_of_damage_is_named(tmp_path):
    path = tmp_path / "state.pt"
    state = {"weights": torch.arange(1000, dtype=torch.float32), "epoch": 3}
    save_verified(path, state)
    loaded = load_verified(path)
    assert torch.equal(loaded["weights"], state["weights"]) and loaded["epoch"] == 3
    data = path.read_bytes()
    damaged = {
        "flip": data[:500] + bytes([data[500] ^ 1]) + data[501:],
        "truncated": data[: len(data) // 2],
        "digest flipped": data[:-1] + bytes([data[-1] ^ 1]),
        "plain torch.save": None,
    }
    for content in damaged.values():
        if content is None:
            torch.save(state, path)  # what this workflow wrote before files carried a digest
        else:
            path.write_bytes(content)
        with pytest.raises(ArtefactError, match=rf"{path}: (checksum mismatch|not a complete verified)"):
            load_verified(path)
    path.unlink()
    with pytest.raises(ArtefactError, match=rf"{path}: cannot read it"):
        load_verified(path)


def test_a_corrupt_model_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "results" / "models" / "toy" / "resnet18" / "n16_seed0.pt"
    model = build_model("resnet18", 1)
    save_model(path, model, {"name": "resnet18", "in_channels": 1, "num_classes": 2, "vgg_pool_size": 7})
    loaded, _ = load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside a weight tensor: torch.load alone would accept it
    path.write_bytes(bytes(data))
    with pytest.raises(ArtefactError, match=rf"model file {path}: checksum mismatch.*--forcerun {path}`"):
        load_model(path)
    save_verified(path, {"not": "a model"})
    with pytest.raises(ArtefactError, match=rf"model file {path}: not a model file"):
        load_model(path)


# ----------------------------------------------------------------------------------------------
# JSON records


@pytest.mark.parametrize(
    ("content", "message"),
    [("{\"epochs\": 3, \"fit", "cannot read it as JSON"), ("[1, 2]", "expected a JSON object, found list"),
     ("{\"epochs\": 3}", "missing 'fitted'"), (b"\xff\xfe{}", "cannot read it as JSON")],
    ids=["truncated", "not an object", "missing key", "not utf-8"],
)
def test_a_damaged_record_is_an_error_naming_it(tmp_path, content, message):
    path = tmp_path / "training.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ArtefactError, match=rf"{path}: {message}.*snakemake --forcerun {path}`"):
        read_json(path, required=("epochs", "fitted"))


# ----------------------------------------------------------------------------------------------
# Partial files of killed writers


def test_partial_files_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "ck.pt"
    partials = [tmp_path / ".ck.pt.abcd_123.tmp", tmp_path / ".ck.pt.zzzzzzzz.tmp"]
    for partial in partials:
        partial.write_bytes(b"x" * 100)
        os.utime(partial, (time.time() - 120, time.time() - 120))
    unrelated = [tmp_path / ".ck.pt.v2.abcdefgh.tmp", tmp_path / "ck.pt.notes"]  # other targets' names
    for path in unrelated:
        path.write_bytes(b"keep")
    assert stale_partials(target) == sorted(partials)
    with atomic_write(target) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"
    assert stale_partials(target) == [] and all(path.exists() for path in unrelated)


def test_a_write_in_progress_of_the_same_target_is_left_alone(tmp_path):
    target = tmp_path / "ck.pt"
    with atomic_write(target) as handle:
        handle.write(b"first")
        # a concurrent writer's partial file, still being written (modified after we started)
        concurrent = tmp_path / ".ck.pt.qwertyui.tmp"
        concurrent.write_bytes(b"busy")
    assert concurrent.exists()


def test_a_write_killed_midway_leaves_the_target_as_it_was(tmp_path):
    """A process killed (SIGKILL) inside torch.save leaves only a hidden partial file, which the
    next successful write of the same target removes."""
    target = tmp_path / "ck.pt"
    save_verified(target, {"epoch": 1})
    child = textwrap.dedent(f"""
        import os, torch
        from intrinsic import io
        real_save = torch.save
        def save_then_die(obj, handle):
            real_save(obj, handle)
            handle.flush()
            os.kill(os.getpid(), 9)  # killed before the rename
        torch.save = save_then_die
        io.save_verified({str(target)!r}, {{"epoch": 2, "weights": torch.zeros(10_000)}})
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert load_verified(target) == {"epoch": 1}  # untouched
    assert len(stale_partials(target)) == 1
    os.utime(stale_partials(target)[0], (time.time() - 120, time.time() - 120))
    save_verified(target, {"epoch": 3})
    assert load_verified(target) == {"epoch": 3} and stale_partials(target) == []


# ----------------------------------------------------------------------------------------------
# Split files


@pytest.fixture()
def squares(tmp_path):
    """A cache of 32x32 images (class 1: a bright square) and one split of it."""
    raw, _ = write_squares(tmp_path / "cache", tmp_path / "split.npz")
    return tmp_path / "cache", tmp_path / "split.npz", raw


def test_a_damaged_split_file_is_an_error_naming_it(squares):
    cache_folder, split_path, _ = squares
    cache = load_cache(cache_folder)
    assert len(load_split(split_path, cache).train_idx) == 16
    data = bytearray(split_path.read_bytes())
    data[len(data) // 3] ^= 1
    split_path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=rf"split {split_path}: cannot read it.*--forcerun {split_path}`"):
        load_split(split_path, cache)
    split_path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match=rf"split {split_path}: cannot read it"):
        load_split(split_path, cache)


def test_a_split_of_another_build_of_the_cache_is_refused(squares):
    cache_folder, split_path, raw = squares
    write_cache(cache_folder, raw, size=16, channels=1, domain="synthetic")  # rebuilt at 16 px
    with pytest.raises(DatasetError, match=rf"split {split_path} was made from another build of cache "
                                           rf"{cache_folder}.*--forcerun {split_path}`"):
        load_split(split_path, load_cache(cache_folder))


def test_a_split_whose_labels_disagree_with_the_cache_is_refused(squares):
    cache_folder, split_path, raw = squares
    cache = load_cache(cache_folder)
    split = load_split(split_path, cache)
    split.train_y = 1 - split.train_y
    split.save(split_path)
    with pytest.raises(DatasetError, match=r"train labels disagree with cache"):
        load_split(split_path, cache)


def test_too_few_distinct_training_images_name_knn_k_before_training(tmp_path):
    rng = np.random.default_rng(0)
    base = [rng.uniform(0, 1, (8, 8)) for _ in range(4)]
    images = [base[i % 4] for i in range(40)]  # 4 distinct images, each ten times
    raw = RawDataset("copies", images, np.arange(40) % 2, np.arange(40).astype(str), ["a", "b"])
    meta = write_cache(tmp_path, raw, size=8, channels=1, domain="synthetic")
    cache = load_cache(tmp_path)
    split = make_split("copies", cache.labels, cache.groups, cache.classes, 20, 10, 0, cache_sha256=meta["sha256"])
    assert check_distinct_training_images(cache, split, knn_k=3, where="x") == 4
    with pytest.raises(DatasetError, match=r"dataset 'copies', N=20, seed=0: the training set has 4 distinct "
                                           r"images of 20; .*properties\.knn_k = 4"):
        check_distinct_training_images(cache, split, knn_k=4, where="dataset 'copies', N=20, seed=0")


# ----------------------------------------------------------------------------------------------
# One run: lock, clean-up of the checkpoint folder, records


TRAINING = {
    "max_epochs": 2, "mode": "fixed_epochs", "fit_threshold": 1.0, "fit_patience": 1, "weight_decay": 0.0,
    "bf16": False, "vgg_pool_size": 7, "device": "cpu",
    "model_settings": {"resnet18": {"learning_rate": 1e-3, "batch_size": 8}},
}
KEYS = {"dataset": "squares", "model": "resnet18", "noise": 0.0, "variant": "standard", "n_train": 16, "seed": 0}


EVALUATION = {"eps": [2 / 255], "attacks": ["fgsm"], "pgd_steps": 1, "knn_k": 5}


def train_squares(tmp_path, squares, **options):
    """(config, the training record, the evaluation record) of one run_model call."""
    cache_folder, split_path, _ = squares
    config = train_settings("resnet18", TRAINING, seed=0, device="cpu")
    records = run_model(KEYS, cache_folder, split_path, config, training_path=tmp_path / "training.json",
                        evaluation_path=tmp_path / "evaluation.json", checkpoint_folder=tmp_path / "checkpoints",
                        evaluation=EVALUATION, **options)
    return config, records["training"], records["evaluation"]


def test_a_successful_run_removes_its_checkpoint_folder(tmp_path, squares):
    config = train_settings("resnet18", TRAINING, seed=0, device="cpu")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    current = checkpoint_path(folder, config)
    leftovers = [folder / "0123456789ab.pt",  # a checkpoint of settings that changed since
                 folder / f".{current.name}.abcdefgh.tmp",  # a checkpoint write that was killed
                 folder / "0123456789ab.pt.set-aside-20260101T000000.000000Z"]
    for path in leftovers:
        path.write_bytes(b"old")
    _, record, _ = train_squares(tmp_path, squares)
    assert record["epochs"] == 2 and not folder.exists()
    assert json.loads((tmp_path / "training.json").read_text())["train_seconds"] == record["train_seconds"]


def test_a_second_trainer_of_the_same_run_fails_naming_the_first(tmp_path, squares):
    lock = tmp_path / "checkpoints" / "lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from intrinsic.io import exclusive_lock
        with exclusive_lock({str(lock)!r}, "training"):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=rf"training of run .*'squares'.*lock {lock} is held by pid "
                                              rf"{holder.pid} on host .* since "):
            train_squares(tmp_path, squares)
        assert not (tmp_path / "training.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the dead holder's lock: no one has to delete the lock file
    _, record, _ = train_squares(tmp_path, squares)
    assert record["epochs"] == 2


def test_exclusive_lock_is_exclusive_within_a_process_too(tmp_path):
    with exclusive_lock(tmp_path / "lock", "a"):
        with pytest.raises(LockedError, match=rf"pid {os.getpid()}"):
            with exclusive_lock(tmp_path / "lock", "b"):
                pass
    with exclusive_lock(tmp_path / "lock", "c"):
        pass


def test_resumed_run_records_resumed_from_and_total_seconds(tmp_path, squares, monkeypatch):
    import intrinsic.variants as variants  # run_model trains through variants.train_variant

    class Killed(Exception):
        pass

    real_train = variants.train

    def train_killed_after_first_epoch(*args, **kwargs):
        def kill(epoch, _entry):
            time.sleep(0.5)  # after the checkpoint: not counted, like time lost to a kill
            if epoch == 1:
                raise Killed
        return real_train(*args, **{**kwargs, "on_epoch_end": kill})

    monkeypatch.setattr(variants, "train", train_killed_after_first_epoch)
    with pytest.raises(Killed):
        train_squares(tmp_path, squares, checkpoint_every_s=0)
    monkeypatch.setattr(variants, "train", real_train)
    _, record, evaluated = train_squares(tmp_path, squares)
    assert record["resumed_from"] == 1 and record["checkpoints_set_aside"] == []
    assert record["train_seconds"] >= sum(h["seconds"] for h in record["history"])
    assert evaluated["run"]["resumed_from"] == 1
    assert evaluated["run"]["train_seconds"] == record["train_seconds"]


def test_keep_checkpoint_keeps_the_final_state_and_a_rerun_trains_nothing(tmp_path, squares):
    _, first, first_evaluated = train_squares(tmp_path, squares, keep_checkpoint=True)
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1
    _, again, again_evaluated = train_squares(tmp_path, squares, keep_checkpoint=True)
    assert again["resumed_from"] == again["epochs"] == first["epochs"] and again["history"] == first["history"]
    drop = ("train_seconds", "eval_seconds", "resumed_from")
    same = [json.dumps({k: v for k, v in record["run"].items() if k not in drop}, sort_keys=True)  # NaN-safe
            for record in (first_evaluated, again_evaluated)]
    assert same[0] == same[1]


def test_a_stop_signal_during_training_raises_before_the_evaluation(tmp_path, squares, monkeypatch):
    import intrinsic.variants as variants

    real_train = variants.train

    def signalled_in_the_last_epoch(*args, **kwargs):
        def signal_self(epoch, _entry):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGUSR1)
        return real_train(*args, **{**kwargs, "on_epoch_end": signal_self})

    monkeypatch.setattr(variants, "train", signalled_in_the_last_epoch)
    with stop_on_signals(), pytest.raises(Interrupted, match="stopped on SIGUSR1 at the end of training") as stopped:
        train_squares(tmp_path, squares, checkpoint_every_s=3600)
    assert not (tmp_path / "evaluation.json").exists() and stopped.value.checkpoint.exists()
    # max_epochs = 2: the signal came in the last epoch, whose checkpoint is written in any case
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1
    monkeypatch.setattr(variants, "train", real_train)
    _, record, _ = train_squares(tmp_path, squares)
    assert record["resumed_from"] == record["epochs"] == 2




def test_logged_writes_the_process_age_first_and_the_block_time_last(tmp_path):
    # The two lines benchmarks/bench_run_overhead.py reads: a job's fixed cost is its wall
    # time less the block's.
    log = tmp_path / "job.log"
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import time
        time.sleep(0.6)  # standing in for the imports before the block
        from intrinsic.logs import logged
        with logged({str(log)!r}, "job"):
            time.sleep(0.3)
    """)], check=True)
    first, *_, last = log.read_text().splitlines()
    age = float(re.search(r"started, ([0-9.]+) s after the process$", first).group(1))
    block = float(re.search(r"finished in ([0-9.]+) s$", last).group(1))
    assert 0.6 <= age < 30 and 0.3 <= block < 30
