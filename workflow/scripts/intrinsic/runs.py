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
from .background import noisy_images
from .evaluation import (
    attack_penalties, evaluate, filter_rank, jacobian_norms, prediction_summary, representation_dimension,
)
from .io import exclusive_lock, read_json, save_arrays, write_json
from .models import initial_model, load_model, save_model
from .splits import load_split
from .training import TrainConfig, architecture
from .variants import train_variant


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


def _split_arrays(cache_folder, split_path, parts=("train",), *, noise: float = 0.0, seed: int = 0,
                  threshold: int | None = None) -> tuple[dict, dict]:
    """({part: (uint8 images, binary labels, cache indices)} for the split's ``parts``, cache
    meta). Images carry the run's background noise (``background.noisy_images``; none at 0)."""
    cache = load_cache(cache_folder)
    split = load_split(split_path, cache)
    arrays = {}
    for part in parts:
        index = getattr(split, f"{part}_idx")
        order = np.argsort(index)  # images in file order, as training has always seen them
        images = noisy_images(cache, index[order], float(noise), int(seed), int(threshold or 0))
        arrays[part] = images, getattr(split, f"{part}_y")[order], index[order]
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


STANDARD = {"name": "standard"}
CLEAN = {"noise": 0.0, "threshold": None}


def train_run(keys: dict, cache_folder, split_path, config: TrainConfig, model_path, record_path,
              checkpoint_folder, log: Any = None, progress: bool = False, *, variant: dict | None = None,
              background: dict | None = None) -> dict:
    """Train ``keys["model"]`` on the split's training set, as ``variant`` says
    ({"name": one of variants.VARIANTS, **its options}; default standard) on images with
    ``background`` noise ({"noise": sigma, "threshold": ...}; default clean); the test set's
    loss and accuracy are recorded every epoch. Write the model and the record, then remove the
    run's checkpoint folder (its resume state, superseded or set-aside checkpoints and partial
    files of killed writes: the model file now holds the result)."""
    started = time.perf_counter()
    variant = dict(variant or STANDARD)
    background = dict(background or CLEAN)
    name = variant.pop("name")
    folder = Path(checkpoint_folder)
    with exclusive_lock(folder / "lock", f"training of run {keys}"):
        arrays, _ = _split_arrays(cache_folder, split_path, ("train", "test"), noise=background["noise"],
                                  seed=keys["seed"], threshold=background["threshold"])
        images, labels, train_index = arrays["train"]
        test_images, test_labels, _ = arrays["test"]
        outcome = train_variant(name, keys["model"], images, labels, config, options=variant, seed=int(keys["seed"]),
                                checkpoint_path_for=lambda settings: checkpoint_path(folder, settings),
                                eval_set=(test_images, test_labels), log=log, progress=progress, started=started)
        result = outcome.result
        trained_config = outcome.config
        save_model(model_path, result.model, architecture(keys["model"], images.shape[1], trained_config))
        record = {
            **keys,
            "epochs": result.epochs,
            "fitted": result.fitted,
            "resumed_from": result.resumed_from,
            "device": result.device,
            "train_seconds": round(outcome.train_seconds, 3),  # every pass (exclude_illusive: two)
            "checkpoints_set_aside": result.set_aside,
            "settings": trained_config.to_dict(),
            "variant_options": variant,
            "background": background,
            "n_noise_images": outcome.n_noise_images,
            # Cache indices (not positions) of the illusive training images left out: the same
            # image has the same index in every split and run of this cache.
            "excluded": [int(i) for i in train_index[outcome.excluded]],
            "n_excluded": len(outcome.excluded),
            "illusive_unjudged_classes": outcome.unjudged_classes,
            "first_pass_history": outcome.first_pass_history,
            "history": result.history,
        }
        write_json(record_path, record)
    # After the lock is released (an open lock file cannot be removed on NFS); a clean-up error
    # must not fail a run whose outputs are written.
    shutil.rmtree(folder, ignore_errors=True)
    return record


def epoch_rows(keys: dict, trained: dict) -> list[dict]:
    """The per-epoch curves of a training record as rows of epochs.csv: train_loss is the
    eval-mode loss on the whole training set (the history's eval_loss, the one comparable with
    the test loss); ``pass`` is "final" for the model kept, "first" for exclude_illusive's first
    pass."""
    rows = []
    for name, history in (("first", trained.get("first_pass_history") or []), ("final", trained["history"])):
        for entry in history:
            rows.append({**keys, "pass": name, "epoch": entry["epoch"], "train_loss": entry["eval_loss"],
                         "train_accuracy": entry["train_accuracy"], "test_loss": entry.get("test_loss"),
                         "test_accuracy": entry.get("test_accuracy")})
    return rows


def evaluate_run(keys: dict, cache_folder, split_path, model_path, training_record, evaluation_path,
                 jacobians_path=None, *, eps: list[float], attacks: list[str], pgd_steps: int, knn_k: int,
                 batch_size: int = 256, device: str = "auto", representation_layer: str = "final_linear_input",
                 rank_energy: float = 0.99, background: dict | None = None) -> dict:
    """Generalization, robustness (at budgets ``eps`` on the [0, 1] scale), d_repr and rank (at
    ``representation_layer``, models.REPRESENTATION_LAYERS), the rank of the first convolution's
    filters, and the Jacobian norm at test and training points (Novak et al. 2018) of one
    trained model (float32), on the images the model was trained with (``background`` noise).
    ``jacobians_path``: an .npz of the per-sample Jacobian norms ("test", "train") and their
    cache indices."""
    started = time.perf_counter()
    device = resolve_device(device)
    background = dict(background or CLEAN)
    model, built = load_model(model_path, device)
    trained = read_json(training_record, required=("epochs", "fitted", "resumed_from", "train_seconds",
                                                    "device", "settings", "history"))
    arrays, meta = _split_arrays(cache_folder, split_path, ("train", "test"), noise=background["noise"],
                                 seed=keys["seed"], threshold=background["threshold"])
    train_x, train_y = _as_tensors(*arrays["train"][:2])
    test_x, test_y = _as_tensors(*arrays["test"][:2])
    on_train = evaluate(model, train_x, train_y, batch_size)
    on_test = evaluate(model, test_x, test_y, batch_size)
    representation = representation_dimension(model, train_x, k=knn_k, batch_size=batch_size,
                                              layer=representation_layer, rank_energy=rank_energy)
    penalties = attack_penalties(model, test_x, test_y, eps, attacks,
                                 batch_size=batch_size, pgd_steps=pgd_steps, seed=int(keys["seed"]),
                                 clean=on_test)
    norms = {"test": jacobian_norms(model, test_x, batch_size), "train": jacobian_norms(model, train_x, batch_size)}
    with torch.random.fork_rng(devices=[]):  # the global RNG as it was, after rebuilding the initial model
        initial = initial_model(built, int(trained["settings"]["seed"]))
    if jacobians_path is not None:
        save_arrays(jacobians_path, test=norms["test"].numpy(), train=norms["train"].numpy(),
                    test_index=arrays["test"][2], train_index=arrays["train"][2])
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
        "num_classes": int(built["num_classes"]),
        "n_noise_images": int(trained.get("n_noise_images", 0)),
        "n_excluded": int(trained.get("n_excluded", 0)),
        "n_illusive_unjudged_classes": len(trained.get("illusive_unjudged_classes", [])),
        "train_loss": on_train["loss"],
        "train_accuracy": on_train["accuracy"],
        "test_loss": on_test["loss"],
        "test_accuracy": on_test["accuracy"],
        **prediction_summary(model, test_x, test_y, real_classes=2, batch_size=batch_size),
        **representation,
        **filter_rank(model, rank_energy, initial=initial),
        "rank_energy": rank_energy,
        "representation_layer": representation_layer,
        "jacobian_norm": float(norms["test"].double().mean()),
        "jacobian_norm_train": float(norms["train"].double().mean()),
        "n_test": len(test_y),
        "train_seconds": trained["train_seconds"],
        "eval_seconds": round(time.perf_counter() - started, 3),
        "device": trained["device"],
        "eval_device": device,
    }
    # eps_255 of a budget given on the [0, 1] scale is real (0.01 -> 2.55), rounded so that
    # 2/255 reads back as 2.0 exactly.
    attack_rows = [{**keys, **row, "eps_255": round(row["eps"] * 255, 9)} for row in penalties]
    record = {"run": run, "attacks": attack_rows, "epochs": epoch_rows(keys, trained)}
    write_json(evaluation_path, record)
    return record
