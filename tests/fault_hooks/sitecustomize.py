"""Fault injection for tests/test_faults.py, in the processes of a real workflow run.

The fault tests put this folder on PYTHONPATH, so every Python process of their Snakemake runs
imports it at startup; it does nothing unless INTRINSIC_TEST_FAULT names a fault. A fault
kills the process with SIGKILL at a chosen point (as a node failure, the OOM killer or
``scancel`` would), so nothing of the workflow's own clean-up code runs:

    kill_after_epoch:K            after epoch K's checkpoint is written
    kill_in_checkpoint_write:K    half-way through writing the checkpoint of epoch K
    kill_in_cache_write           half-way through writing a cache's images.npy
    kill_in_evaluation            when the run's evaluation starts (training is done)
"""

import os
import signal

FAULT = os.environ.get("INTRINSIC_TEST_FAULT", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(fault: str) -> None:
    name, _, argument = fault.partition(":")
    if name == "kill_after_epoch":
        from intrinsic import training

        real_train = training.train

        def train(*args, **kwargs):
            def hook(epoch, _entry):
                if epoch == int(argument):
                    _die()

            return real_train(*args, **{**kwargs, "on_epoch_end": hook})  # replaces the caller's hook

        training.train = train  # variants.py imports it by name after this module ran
    elif name == "kill_in_checkpoint_write":
        from intrinsic import io, training

        real_save = training.save_verified

        def save_verified(path, obj):
            if isinstance(obj, dict) and obj.get("epoch") == int(argument):
                with io.atomic_write(path) as handle:
                    handle.write(io.VERIFIED_MAGIC + b"\0" * 100_000)
                    handle.flush()
                    _die()
            return real_save(path, obj)

        training.save_verified = save_verified
    elif name == "kill_in_cache_write":
        from intrinsic import cache, io

        real_save_npy = cache._save_npy

        def _save_npy(path, array):
            if path.name == "images.npy":
                with io.atomic_write(path) as handle:
                    handle.write(array.tobytes()[: array.nbytes // 2])
                    handle.flush()
                    _die()
            return real_save_npy(path, array)

        cache._save_npy = _save_npy
    elif name == "kill_in_evaluation":
        from intrinsic import runs

        def evaluate_trained(*_args, **_kwargs):
            _die()

        runs.evaluate_trained = evaluate_trained
    else:
        raise ValueError(f"INTRINSIC_TEST_FAULT: unknown fault {fault!r}")


if FAULT:
    _install(FAULT)
