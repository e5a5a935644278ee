"""One grid run: train a model on one split, then evaluate it, in one process (``run_model``,
what the workflow's rule calls): the data is read and torch imported once per run.

A run is identified by its ``keys`` (the grid axes: dataset, model, noise, variant, n_train,
seed, and any axis a later config adds). The keys are copied into every record, so a new axis
becomes a column of the tidy tables without code changes.

Files of one run (paths chosen by the workflow):
    training     JSON: keys, settings, epochs, fitted, per-epoch history, device, seconds
    evaluation   JSON: {"run": one flat row of runs.csv, "attacks": rows of attacks.csv,
                 "epochs": rows of epochs.csv}, and in the runs chosen for App. D.1's figure
                 "attacked_examples" (``evaluate_trained``; not a table)
    jacobians    .npz: per-sample Jacobian norms at the test and training points
    model        (optional) float32 weights + the build_model arguments (``models.save_model``)
    checkpoints  a folder per run: the resume state (``training.train``), checkpoints of earlier
                 settings or set aside, and the run's lock file. It is not a workflow output, so
                 Snakemake keeps it when a job is killed; a successful run removes the whole
                 folder once its records are written (or keeps the final checkpoint, when asked).

One trainer per run at a time: ``run_model`` holds an exclusive lock in the run's checkpoint
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
from .attacked import RECORD_KEY
from .evaluation import (
    attack_penalties, attacked_examples as attack_examples, evaluate, filter_rank, jacobian_norms, prediction_summary,
    representation_dimension,
)
from .io import exclusive_lock, save_arrays, write_json
from .models import initial_model, save_model
from .provenance import code_version
from .splits import load_split
from .training import Interrupted, TrainConfig, architecture, stop_requested
from .variants import train_variant


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
        device=device,  # as configured ("auto" included): training resolves it (devices.resolve_device)
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


def run_model(keys: dict, cache_folder, split_path, config: TrainConfig, *, training_path, evaluation_path,
              checkpoint_folder, evaluation: dict, jacobians_path=None, model_path=None, keep_checkpoint: bool = False,
              checkpoint_every_s: float = 0.0, variant: dict | None = None, background: dict | None = None,
              log: Any = None, progress: bool = False, on_epoch_end=None) -> dict:
    """One run in one process: train, then evaluate the trained model, from one read of the data.

    Training: ``keys["model"]`` on the split's training set, as ``variant`` says ({"name": one
    of variants.VARIANTS, **its options}; default standard), on images with ``background`` noise
    ({"noise": sigma, "threshold": ...}; default clean); the test set's loss and accuracy are
    recorded every epoch; checkpoints every ``checkpoint_every_s`` seconds (0: every epoch), after
    the last epoch and on a stop signal (``training.train``). ``training_path`` gets the training
    record, ``model_path`` (if given) the float32 weights. If a stop signal came during training
    (``training.stop_on_signals``), ``training.Interrupted`` is raised before the evaluation: its
    final checkpoint is written, so the retry resumes with nothing to train.

    Evaluation (``evaluate_trained``): ``evaluation`` holds its options (eps on the [0, 1]
    scale, attacks, pgd_steps, knn_k, batch_size, representation_layer, rank_energy); its record
    goes to ``evaluation_path``, per-sample Jacobian norms to ``jacobians_path``.

    Afterwards the run's checkpoint folder (resume state, superseded or set-aside checkpoints,
    partial files of killed writes) is removed, unless ``keep_checkpoint``: then the final
    checkpoint stays, and a rerun with other evaluation options resumes it with nothing to train
    instead of training again. Returns {"training": record, "evaluation": record}.
    """
    started = time.perf_counter()
    variant = dict(variant or STANDARD)
    background = dict(background or CLEAN)
    name = variant.pop("name")
    folder = Path(checkpoint_folder)
    with exclusive_lock(folder / "lock", f"training of run {keys}"):
        arrays, meta = _split_arrays(cache_folder, split_path, ("train", "test"), noise=background["noise"],
                                     seed=keys["seed"], threshold=background["threshold"])
        images, labels, train_index = arrays["train"]
        test_images, test_labels, _ = arrays["test"]
        outcome = train_variant(name, keys["model"], images, labels, config, options=variant, seed=int(keys["seed"]),
                                checkpoint_path_for=lambda settings: checkpoint_path(folder, settings),
                                eval_set=(test_images, test_labels), log=log, progress=progress, started=started,
                                checkpoint_every_s=checkpoint_every_s, on_epoch_end=on_epoch_end)
        result = outcome.result
        signalled = stop_requested()
        if signalled:
            raise Interrupted(f"{keys['model']}: stopped on {signalled} at the end of training, before the "
                              "evaluation; the final checkpoint is written", result.epochs,
                              checkpoint_path(folder, outcome.config))
        trained_config = outcome.config
        built = architecture(keys["model"], images.shape[1], trained_config)
        if model_path is not None:
            save_model(model_path, result.model, built)
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
            **code_version(),  # the library that trained (provenance: Snakemake does not track it)
            "first_pass_history": outcome.first_pass_history,
            "history": result.history,
        }
        write_json(training_path, record)
        evaluated = evaluate_trained(keys, result.model, built, record, arrays, meta, evaluation_path,
                                     jacobians_path, device=result.device, **evaluation)
    if not keep_checkpoint:
        # After the lock is released (an open lock file cannot be removed on NFS); a clean-up
        # error must not fail a run whose outputs are written.
        shutil.rmtree(folder, ignore_errors=True)
    return {"training": record, "evaluation": evaluated}


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


def evaluate_trained(keys: dict, model, built: dict, trained: dict, arrays: dict, meta: dict, evaluation_path,
                     jacobians_path=None, *, eps: list[float], attacks: list[str], pgd_steps: int, knn_k: int,
                     batch_size: int = 256, device: str = "cpu", representation_layer: str = "final_linear_input",
                     rank_energy: float = 0.99, attacked_examples: dict | None = None) -> dict:
    """Generalization, robustness (at budgets ``eps`` on the [0, 1] scale), d_repr and rank (at
    ``representation_layer``, models.REPRESENTATION_LAYERS), the rank of the first convolution's
    filters, and the Jacobian norm at test and training points (Novak et al. 2018) of one
    trained ``model`` (float32, on ``device``; ``built``: its build_model arguments), on the
    images it was trained with (``arrays``: {part: (uint8 images, labels, cache indices)} of
    the split's train and test sets, background noise included; ``meta``: the cache's).
    ``trained``: the training record. ``jacobians_path``: an .npz of the per-sample Jacobian
    norms ("test", "train") and their cache indices. ``attacked_examples`` ({"n", "eps_255"}; the
    workflow gives it to one run per dataset of a chosen domain, common.smk): with n > 0 the
    record gains "attacked_examples" (``evaluation.attacked_examples``: n test images, their
    FGSM images and the predictions on both), which the tables do not read."""
    started = time.perf_counter()
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
        # The library that evaluated; grid_tables copies it onto the run's attack and epoch rows.
        **code_version(),
    }
    # eps_255 of a budget given on the [0, 1] scale is real (0.01 -> 2.55), rounded so that
    # 2/255 reads back as 2.0 exactly.
    attack_rows = [{**keys, **row, "eps_255": round(row["eps"] * 255, 9)} for row in penalties]
    record = {"run": run, "attacks": attack_rows, "epochs": epoch_rows(keys, trained)}
    if attacked_examples and int(attacked_examples["n"]) > 0:
        record[RECORD_KEY] = attack_examples(model, arrays["test"][0], arrays["test"][1], arrays["test"][2],
                                             int(attacked_examples["n"]), float(attacked_examples["eps_255"]))
    write_json(evaluation_path, record)
    return record
