"""One grid run: train a model on one split, then evaluate it. What the workflow's rules call.

A run is identified by its ``keys`` (the grid axes: dataset, model, n_train, seed, and any axis a
later config adds). The keys are copied into every record, so a new axis becomes a column of the
tidy tables without code changes.

Files of one run (paths chosen by the workflow):
    model        float32 weights + the build_model arguments (``models.save_model``)
    training     JSON: keys, settings, epochs, fitted, per-epoch history, device, seconds
    checkpoints  a folder per run: the resume state (written every epoch, ``training.train``),
                 checkpoints of earlier settings or set aside, and the run's lock file. It is
                 not a workflow output, so Snakemake keeps it when a job is killed; a successful
                 training removes the whole folder once the model and record are written.
    evaluation   JSON: {"run": one flat row of runs.csv, "attacks": rows of attacks.csv}

One trainer per run at a time: ``train_run`` holds an exclusive lock in the run's checkpoint
folder, so a second trainer (e.g. a rerun while the job of a Snakemake process that died is
still training) fails at once, naming the holder, instead of training from the same checkpoint.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import load_cache
from .evaluation import attack_penalties, evaluate, jacobian_norm, representation_dimension
from .io import exclusive_lock, read_json, write_json
from .models import load_model, save_model
from .splits import load_split
from .training import TrainConfig, architecture, train


def resolve_device(name: str) -> str:
    """"auto" means the GPU when there is one; otherwise the name as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def train_settings(model: str, training: dict, seed: int, device: str) -> TrainConfig:
    """The TrainConfig of one run from the config's ``training`` section (whose
    ``model_settings`` already hold any dataset override: common.smk, training_settings)."""
    per_model = training["model_settings"][model]
    return TrainConfig(
        learning_rate=float(per_model["learning_rate"]),
        batch_size=int(per_model["batch_size"]),
        weight_decay=float(training["weight_decay"]),
        max_epochs=int(training["max_epochs"]),
        mode=str(training["mode"]),
        fit_threshold=float(training["fit_threshold"]),
        fit_patience=int(training["fit_patience"]),
        seed=int(seed),
        device=resolve_device(device),
        bf16=bool(training["bf16"]),
        vgg_pool_size=int(training["vgg_pool_size"]),
    )


def _split_arrays(cache_folder, split_path, parts=("train",)) -> tuple[dict, dict]:
    """({part: (uint8 images, binary labels)} for the split's ``parts``, cache meta)."""
    cache = load_cache(cache_folder)
    split = load_split(split_path, cache)
    arrays = {}
    for part in parts:
        index = getattr(split, f"{part}_idx")
        order = np.argsort(index)  # images in file order, as training has always seen them
        arrays[part] = cache.read_images(index[order]), getattr(split, f"{part}_y")[order]
    return arrays, cache.meta


def _as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 images in [0, 1] and int64 labels, as every measurement takes them."""
    return torch.from_numpy(images).float().div_(255.0), torch.from_numpy(np.asarray(labels, dtype=np.int64))


def checkpoint_path(folder: str | Path, config: TrainConfig) -> Path:
    """The checkpoint of one run's settings: a changed setting starts fresh instead of failing
    on a stale checkpoint. Device and max_epochs may change without losing the checkpoint; the
    training mode may not (an until_fit run stops where a fixed_epochs run goes on)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("device", "max_epochs")}
    tag = "_".join(f"{k}={settings[k]}" for k in sorted(settings))
    return Path(folder) / f"{hashlib.sha256(tag.encode()).hexdigest()[:12]}.pt"


def train_run(keys: dict, cache_folder, split_path, config: TrainConfig, model_path, record_path,
              checkpoint_folder, log: Any = None, progress: bool = False) -> dict:
    """Train ``keys["model"]`` on the split's training set; write the model and the record, then
    remove the run's checkpoint folder (its resume state, superseded or set-aside checkpoints and
    partial files of killed writes: the model file now holds the result)."""
    started = time.perf_counter()
    folder = Path(checkpoint_folder)
    with exclusive_lock(folder / "lock", f"training of run {keys}"):
        arrays, _ = _split_arrays(cache_folder, split_path)
        images, labels = arrays["train"]
        result = train(keys["model"], images, labels, config, checkpoint_path=checkpoint_path(folder, config),
                       log=log, progress=progress, started=started)
        save_model(model_path, result.model, architecture(keys["model"], images.shape[1], config))
        record = {
            **keys,
            "epochs": result.epochs,
            "fitted": result.fitted,
            "resumed_from": result.resumed_from,
            "device": result.device,
            "train_seconds": round(result.train_seconds, 3),
            "checkpoints_set_aside": result.set_aside,
            "settings": config.to_dict(),
            "history": result.history,
        }
        write_json(record_path, record)
    # After the lock is released (an open lock file cannot be removed on NFS); a clean-up error
    # must not fail a run whose outputs are written.
    shutil.rmtree(folder, ignore_errors=True)
    return record


def evaluate_run(keys: dict, cache_folder, split_path, model_path, training_record, evaluation_path,
                 *, eps_255: list[int], attacks: list[str], pgd_steps: int, knn_k: int,
                 batch_size: int = 256, device: str = "auto",
                 representation_layer: str = "final_linear_input") -> dict:
    """Generalization, robustness, d_repr (at ``representation_layer``, models.REPRESENTATION_LAYERS)
    and Jacobian norm of one trained model (float32)."""
    started = time.perf_counter()
    device = resolve_device(device)
    model, _ = load_model(model_path, device)
    trained = read_json(training_record, required=("epochs", "fitted", "resumed_from", "train_seconds",
                                                    "device", "settings"))
    arrays, meta = _split_arrays(cache_folder, split_path, ("train", "test"))
    train_x, train_y = _as_tensors(*arrays["train"])
    test_x, test_y = _as_tensors(*arrays["test"])
    on_train = evaluate(model, train_x, train_y, batch_size)
    on_test = evaluate(model, test_x, test_y, batch_size)
    representation = representation_dimension(model, train_x, k=knn_k, batch_size=batch_size,
                                              layer=representation_layer)
    penalties = attack_penalties(model, test_x, test_y, [e / 255 for e in eps_255], attacks,
                                 batch_size=batch_size, pgd_steps=pgd_steps, seed=int(keys["seed"]),
                                 clean=on_test)
    run = {
        **keys,
        "domain": meta["domain"],
        "epochs": trained["epochs"],
        "max_epochs": trained["settings"]["max_epochs"],
        "training_mode": trained["settings"]["mode"],
        "fitted": trained["fitted"],
        "resumed_from": trained["resumed_from"],
        "learning_rate": trained["settings"]["learning_rate"],
        "batch_size": trained["settings"]["batch_size"],
        "train_loss": on_train["loss"],
        "train_accuracy": on_train["accuracy"],
        "test_loss": on_test["loss"],
        "test_accuracy": on_test["accuracy"],
        **representation,
        "representation_layer": representation_layer,
        "jacobian_norm": jacobian_norm(model, test_x, batch_size),
        "n_test": len(test_y),
        "train_seconds": trained["train_seconds"],
        "eval_seconds": round(time.perf_counter() - started, 3),
        "device": trained["device"],
        "eval_device": device,
    }
    attack_rows = [{**keys, **row, "eps_255": int(round(row["eps"] * 255))} for row in penalties]
    record = {"run": run, "attacks": attack_rows}
    write_json(evaluation_path, record)
    return record
