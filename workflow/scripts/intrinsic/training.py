"""Training a study CNN from scratch until it fits its training set, resumable and deterministic.

Design:

* The whole training set is converted ONCE to a float32 tensor in [0, 1] (``uint8 / 255``) and
  held in memory on the training device; each epoch draws a permutation from a dedicated,
  seeded ``torch.Generator`` (always on the CPU, so its state is portable) and slices batches
  by index. No DataLoader, no per-epoch decoding or host-to-device copies.
* Optimizer: Adam with ``config.learning_rate`` and ``config.weight_decay`` (the study's code
  uses 1e-4); loss: cross-entropy; no augmentation.
* Fit criterion: at the end of every epoch the model is evaluated in **eval mode** over the
  **full training set** (``history[i]["train_accuracy"]``, ``evaluation.evaluate``). The running accuracy of the
  epoch's batches (``running_accuracy``) is reported too, but it is measured in train mode
  (batch-norm batch statistics, dropout) while the weights change, so it is not the accuracy of
  the model we keep. ``mode="until_fit"`` (the paper's text): training stops once the eval-mode
  train accuracy is >= ``fit_threshold`` for ``fit_patience`` consecutive epochs (default 1:
  stop at the first epoch that fits), or after ``max_epochs``. ``mode="fixed_epochs"`` (the
  authors' released code): exactly ``max_epochs`` epochs, and the last model is kept;
  ``fitted`` then says whether that final model meets the same criterion (its last
  ``fit_patience`` epochs all fit), so analyses can flag runs that did not fit.
* Per-epoch test numbers (``eval_set``): after the fit check, ``evaluation.evaluate`` on the
  given held-out set adds ``test_loss`` / ``test_accuracy`` to the epoch's history entry. It runs
  in eval mode without gradients and draws no random numbers, so the training trajectory is the
  same with or without it (bitwise on the CPU). The eval set is not part of the checkpoint's data
  fingerprint: whether a run resumes does not depend on it (a change is only logged).
* Per-sample correctness (``record_sample_correctness``): per epoch, which training samples the
  model classifies correctly, from the eval-mode fit check's predictions (the model as it stands
  at the end of the epoch, as every reported number). Not the train-mode predictions of the
  epoch's batches: with batch statistics a network memorizes mislabelled samples within a few
  epochs while its eval-mode predictions still follow the rule (measured on a fixture with three
  flipped labels: train mode fits all 32 by epoch 4, eval mode misclassifies exactly the three),
  so train mode would hide the samples Fan & Yezzi call illusive. ``TrainResult.sample_correct``
  is the (epochs, n) bool matrix (used by ``variants`` to find samples that stay misclassified).
  It is checkpointed bit-packed, so a resumed run has all of it.
* A final batch of size 1 is merged into the previous batch (batch norm cannot normalize a
  single sample whose feature map is 1x1).
* Determinism: ``torch.manual_seed(seed)`` before the model is built, the shuffle generator is
  seeded with ``seed``, and on the CPU ``torch.use_deterministic_algorithms(True,
  warn_only=True)`` is enabled for the duration of ``train`` (the previous setting is
  restored afterwards). The same seed gives bitwise-identical weights and losses on the CPU.
* Checkpoints: atomically and with a digest (``io.save_verified``), a dict
  with the model and optimizer state, the epoch, the history, the fit streak, the RNG states
  (global CPU RNG, the shuffle generator, the CUDA RNG of the device if any), the config as a
  dict, the model name, a fingerprint of the data (and, not binding, of the eval set), the
  per-sample correctness so far (bit-packed, or None) and the training seconds so far. If
  ``checkpoint_path`` exists when ``train`` starts, training resumes from it; a run killed after
  epoch k and resumed is bitwise identical (on the CPU) to an uninterrupted run. Whether a run
  resumes depends only on the checkpoint and the configuration, never on history: a checkpoint
  that is unreadable, fails its digest, or cannot lead to the configured result (another model,
  other data, a config field other than ``max_epochs`` differs, it is already past
  ``max_epochs``, or it lacks the per-sample correctness this run records) is set aside
  (renamed to ``<name>.set-aside-<UTC time>``, never deleted here; ``set_aside_checkpoint``),
  the reason is logged and returned in ``TrainResult.set_aside``, and training starts fresh.
  ``max_epochs`` may be raised to continue a run.
* When checkpoints are written (``checkpoint_every_s``): 0 = after every epoch; otherwise at
  the end of the first epoch that ends ``checkpoint_every_s`` seconds or more after the last
  write (or the start), and always after the last epoch (so a run that fails later, e.g. in
  its evaluation, resumes with nothing to train). A VGG-19 checkpoint with Adam state is about
  1.7 GB while its epoch at N = 1750 is about a second of GPU time: on a shared file system a
  checkpoint per epoch costs more than the training. A kill loses at most the epochs since the
  last write; the resumed run is still bitwise the uninterrupted one.
* Stop on a signal (``stop_on_signals``): SIGUSR1 or SIGTERM (SLURM's warning before the time
  limit, ``--signal``, or the TERM of a cancel or of the limit itself) asks training to stop.
  The epoch under way is finished, its checkpoint written whatever the interval, and
  ``Interrupted`` raised, so the job exits with an error and its retry resumes there. The
  signal's lead time must cover one epoch plus a checkpoint write.
* ``bf16``: on CUDA only, training forward passes run under ``torch.autocast(bfloat16)`` (the
  fit check is ``evaluation.evaluate`` in float32, like every reported number) with the model
  and data in channels_last memory format; parameters and optimizer state stay float32. Ignored
  on the CPU. The returned model is float32, contiguous, in eval mode.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .cache import checksum
from .evaluation import evaluate
from .io import ArtefactError, load_verified, save_verified
from .devices import resolve_device
from .models import initial_model

# 3: + "sample_correct" (per-sample correctness, bit-packed, or None) and "eval_fingerprint".
CHECKPOINT_FORMAT = 3
CHECKPOINT_KEYS = ("model_name", "config", "data_fingerprint", "eval_fingerprint", "epoch", "fit_streak",
                   "history", "model", "optimizer", "rng", "sample_correct", "train_seconds")
EVAL_BATCH_SIZE = 256
# Config fields that may differ between a checkpoint and the run resuming it: a longer run, or a
# retry on another node (runs.checkpoint_path leaves both out of the checkpoint's name).
RESUMABLE_FIELDS = ("max_epochs", "device")
MODES = ("until_fit", "fixed_epochs")

_log = logging.getLogger(__name__)

# Checkpoint timing reads this clock (a module attribute, so tests can drive it).
_clock = time.monotonic
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
_stop_request: list[str] = []  # names of the stop signals received inside stop_on_signals


class Interrupted(Exception):
    """Training stopped on a signal after writing its checkpoint; a rerun resumes from it."""

    def __init__(self, message: str, epoch: int, checkpoint: Path | None):
        super().__init__(message)
        self.epoch = epoch
        self.checkpoint = checkpoint


def stop_requested() -> str | None:
    """The name of the first stop signal received inside ``stop_on_signals``, or None."""
    return _stop_request[0] if _stop_request else None


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Within the block, the signals ask ``train`` to stop at the end of its epoch (checkpoint
    written, ``Interrupted`` raised) instead of killing the process. Main thread only."""
    def request(number, _frame):
        _stop_request.append(signal.Signals(number).name)

    previous = {number: signal.signal(number, request) for number in signals}
    _stop_request.clear()
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _stop_request.clear()


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (everything that determines its result).

    learning_rate: Adam learning rate.
    weight_decay: Adam's L2 penalty (torch.optim.Adam ``weight_decay``).
    batch_size: minibatch size.
    max_epochs: until_fit: give up after this many epochs (``fitted`` is then False unless the
        last fit); fixed_epochs: train exactly this many.
    mode: "until_fit" (stop once the training set is fitted) or "fixed_epochs" (train
        ``max_epochs`` epochs whatever the accuracy and keep the last model).
    fit_threshold: eval-mode accuracy over the full training set that counts as "fits".
    fit_patience: consecutive epochs at/above ``fit_threshold`` before stopping (1 = stop at
        the first epoch that fits, which is what "trained until it fits" means).
    seed: seeds weight initialization, dropout and the shuffling generator.
    device: "cpu" or "cuda" (or "cuda:N").
    bf16: bfloat16 autocast + channels_last on CUDA; ignored on the CPU.
    num_classes: size of the classification head.
    vgg_pool_size: see ``models.build_model`` (7 = torchvision's VGG; ignored by ResNets).
    """

    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 100
    mode: str = "until_fit"
    fit_threshold: float = 1.0
    fit_patience: int = 1
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    num_classes: int = 2
    vgg_pool_size: int = 7

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 < self.fit_threshold <= 1.0:
            raise ValueError(f"fit_threshold must be in (0, 1], got {self.fit_threshold}")
        if self.fit_patience < 1:
            raise ValueError(f"fit_patience must be >= 1, got {self.fit_patience}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """model: trained, float32, eval mode, on ``device``. epochs: epochs trained in total
    (including those before a resume). fitted: the returned model meets the fit criterion (its
    last ``fit_patience`` epochs reached ``fit_threshold``; in both modes). history: one dict per
    epoch with keys epoch, train_loss (running mean over the epoch's batches, train mode),
    running_accuracy (same, train mode), train_accuracy and eval_loss (eval mode, full training
    set, end of epoch; train_accuracy is what the fit criterion uses), seconds (wall time).
    resumed_from: epoch of the checkpoint training resumed from (0 for a fresh start).
    train_seconds: wall time of all segments that produced the model, from each segment's
    ``started`` to its last checkpoint (the last segment: to the end of training).
    set_aside: why each checkpoint found at the start was set aside (empty normally).
    With ``eval_set``, history entries also hold test_loss and test_accuracy (eval mode, the eval
    set, end of epoch). sample_correct: with ``record_sample_correctness``, the (epochs, n) bool
    matrix whose row e says which training samples the eval-mode model classified correctly at
    the end of epoch e + 1 (rows of earlier segments come from the checkpoint); else None."""

    model: nn.Module
    epochs: int
    fitted: bool
    history: list[dict] = field(default_factory=list)
    device: str = "cpu"
    resumed_from: int = 0
    train_seconds: float = 0.0
    set_aside: list[str] = field(default_factory=list)
    sample_correct: np.ndarray | None = None


def architecture(model_name: str, in_channels: int, config: TrainConfig) -> dict:
    """The ``models.build_model`` arguments of a run (saved with its weights)."""
    return {"name": model_name, "in_channels": int(in_channels), "num_classes": config.num_classes,
            "vgg_pool_size": config.vgg_pool_size}


def _log_function(log: Any) -> Callable[[str], None]:
    if log is None:
        return _log.info
    if hasattr(log, "info"):
        return log.info
    if callable(log):
        return log
    raise TypeError(f"log must be a logger (with .info) or a callable, got {type(log).__name__}")


def _as_uint8_tensor(images: np.ndarray | torch.Tensor, what: str = "images", minimum: int = 2) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        tensor = images.detach().cpu()
    else:
        array = np.asarray(images)
        if array.dtype != np.uint8:
            raise TypeError(f"{what} must be uint8, got {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype != torch.uint8:
        raise TypeError(f"{what} must be uint8, got {tensor.dtype}")
    if tensor.ndim != 4:
        raise ValueError(f"{what} must have shape (n, C, H, W), got {tuple(tensor.shape)}")
    if len(tensor) < minimum:
        raise ValueError(f"need at least {minimum} {what}, got {len(tensor)}")
    return tensor.contiguous()


def _as_label_tensor(labels: np.ndarray | torch.Tensor, n: int, num_classes: int,
                     what: str = "labels") -> torch.Tensor:
    tensor = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{what} must be integers, got {tensor.dtype}")
    tensor = tensor.to(torch.int64).contiguous()
    if tensor.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {tuple(tensor.shape)}")
    if n and (tensor.min() < 0 or tensor.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}) (num_classes={num_classes}), got range "
                         f"[{int(tensor.min())}, {int(tensor.max())}]")
    return tensor


def _pack_correct(rows: list[np.ndarray], n: int) -> dict:
    """The per-sample correctness matrix for a checkpoint: 1 bit per sample and epoch (a torch
    tensor, which ``load_verified``'s weights_only loading accepts)."""
    matrix = np.stack(rows) if rows else np.zeros((0, n), dtype=bool)
    return {"n": int(n), "packed": torch.from_numpy(np.packbits(matrix, axis=1))}


def _unpack_correct(saved: dict, epochs: int, n: int) -> list[np.ndarray]:
    """The rows ``_pack_correct`` saved; ValueError when they are not (epochs, n)."""
    packed = saved["packed"].numpy() if isinstance(saved["packed"], torch.Tensor) else np.asarray(saved["packed"])
    if int(saved["n"]) != n or packed.shape != (epochs, (n + 7) // 8):
        raise ValueError(f"per-sample correctness of {saved['n']} samples, packed {packed.shape}, expected "
                         f"{epochs} epochs of {n} samples")
    matrix = np.unpackbits(packed, axis=1, count=n).astype(bool)
    return list(matrix)


def _batches(n: int, batch_size: int, permutation: torch.Tensor) -> list[torch.Tensor]:
    batches = list(torch.split(permutation, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


def _rng_state(generator: torch.Generator, device: torch.device) -> dict:
    state = {"torch_cpu": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch_cpu"])
    generator.set_state(state["shuffle"])
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(state["torch_cuda"], device)


def checkpoint_mismatches(ckpt: dict, model_name: str, config: TrainConfig, fingerprint: str,
                          record_sample_correctness: bool = False) -> list[str]:
    """Why ``ckpt`` cannot lead to the configured result (empty: it can be resumed). A run that
    records per-sample correctness needs it for every epoch, so a checkpoint without it cannot
    be resumed by one (the other way round is fine: the saved matrix is dropped)."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        return [f"format {found!r}, expected {CHECKPOINT_FORMAT}"]
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        return [f"missing {', '.join(missing)}"]
    mismatches = []
    if ckpt.get("model_name") != model_name:
        mismatches.append(f"model_name (checkpoint {ckpt.get('model_name')!r}, now {model_name!r})")
    saved = ckpt.get("config", {})
    for key, value in config.to_dict().items():
        if key in RESUMABLE_FIELDS:
            continue
        if key not in saved or saved[key] != value:
            mismatches.append(f"{key} (checkpoint {saved.get(key, '<missing>')!r}, now {value!r})")
    if int(ckpt.get("epoch", 0)) > config.max_epochs:
        # A longer run cannot be rewound: resuming it would return a model trained past
        # max_epochs, unlike an uninterrupted run.
        mismatches.append(f"max_epochs (checkpoint at epoch {ckpt.get('epoch')}, now {config.max_epochs})")
    if ckpt.get("data_fingerprint") != fingerprint:
        mismatches.append("training data (images/labels fingerprint differs)")
    if record_sample_correctness and ckpt.get("sample_correct") is None:
        mismatches.append("per-sample correctness (not recorded in the checkpoint, recorded now)")
    return mismatches


def set_aside_checkpoint(path: Path, problems: list[str], model_name: str, info: Callable[[str], None]) -> str:
    """Rename a checkpoint that must not be resumed, out of the way but kept for inspection; log
    and return why."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.set-aside-{stamp}")
    os.replace(path, target)
    reason = f"checkpoint {path} set aside as {target.name}: " + "; ".join(problems) + "; training starts fresh"
    info(f"{model_name}: {reason}")
    return reason


def _resume_state(path: Path | None, model_name: str, config: TrainConfig, fingerprint: str,
                  record_sample_correctness: bool, info: Callable[[str], None]) -> tuple[dict | None, list[str]]:
    """(the checkpoint to resume from or None, reasons for setting one aside)."""
    if path is None or not path.exists():
        return None, []
    try:
        ckpt = load_verified(path)
        problems = checkpoint_mismatches(ckpt, model_name, config, fingerprint, record_sample_correctness)
    except ArtefactError as error:
        ckpt, problems = None, [str(error)]
    if not problems:
        return ckpt, []
    return None, [set_aside_checkpoint(path, problems, model_name, info)]


def train(
    model_name: str,
    images_uint8: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    config: TrainConfig,
    checkpoint_path: str | Path | None = None,
    log: Any = None,
    progress: bool = False,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    started: float | None = None,
    eval_set: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor] | None = None,
    record_sample_correctness: bool = False,
    checkpoint_every_s: float = 0.0,
) -> TrainResult:
    """Train ``model_name`` from scratch on (n, C, H, W) uint8 images until it fits (or for
    exactly ``config.max_epochs`` epochs when ``config.mode == "fixed_epochs"``).

    checkpoint_path: written atomically (when: ``checkpoint_every_s``); resumed from if it
        exists and can lead to the configured result (else set aside); None disables
        checkpointing.
    checkpoint_every_s: 0 = a checkpoint after every epoch; else after the first epoch ending
        at least this many seconds after the last write, after the last epoch, and on a stop
        signal (``stop_on_signals``), which then raises ``Interrupted``.
    log: a logging.Logger-like object (``.info``) or a callable taking a string; None logs to
        this module's logger.
    progress: print a per-batch progress line to stderr when stderr is a terminal.
    on_epoch_end: test hook, called as ``on_epoch_end(epoch, history_entry)`` at the end of the
        epoch, after its checkpoint if one is written (the tests raise from it to simulate a
        killed job).
    started: ``time.perf_counter()`` at the start of this segment (default: now), from which
        ``train_seconds`` counts; the caller's, to include its loading of the data.
    eval_set: ``(images_uint8 (m, C, H, W), labels (m,))`` of a held-out set (labels in
        [0, num_classes)), or None. When given, every epoch's history entry gains test_loss and
        test_accuracy (``evaluation.evaluate``, eval mode, float32, after the fit check). It
        never changes the training (no gradients, no random numbers) and does not decide
        whether a checkpoint resumes.
    record_sample_correctness: also record, per epoch, which training samples the eval-mode
        model classifies correctly (``TrainResult.sample_correct``; from the fit check).
    """
    if checkpoint_every_s < 0:
        raise ValueError(f"checkpoint_every_s must be >= 0, got {checkpoint_every_s}")
    segment_started = time.perf_counter() if started is None else started
    info = _log_function(log)
    device = resolve_device(config.device)
    use_bf16 = bool(config.bf16) and device.type == "cuda"
    memory_format = torch.channels_last if use_bf16 else torch.contiguous_format
    show_progress = bool(progress) and sys.stderr.isatty()

    images_cpu = _as_uint8_tensor(images_uint8)
    n, channels = images_cpu.shape[:2]
    targets_cpu = _as_label_tensor(labels, n, config.num_classes)
    fingerprint = checksum(images_cpu.numpy(), targets_cpu.numpy())
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    record_sample_correctness = bool(record_sample_correctness)
    eval_cpu = None
    eval_fingerprint = None
    if eval_set is not None:
        if not (isinstance(eval_set, (tuple, list)) and len(eval_set) == 2):
            raise TypeError("eval_set must be a pair (images_uint8, labels) or None")
        eval_images_cpu = _as_uint8_tensor(eval_set[0], "eval_set images", minimum=1)
        if eval_images_cpu.shape[1:] != images_cpu.shape[1:]:
            raise ValueError(f"eval_set images have shape {tuple(eval_images_cpu.shape[1:])} per image, the "
                             f"training images {tuple(images_cpu.shape[1:])}")
        eval_targets_cpu = _as_label_tensor(eval_set[1], len(eval_images_cpu), config.num_classes,
                                            "eval_set labels")
        eval_cpu = (eval_images_cpu, eval_targets_cpu)
        eval_fingerprint = checksum(eval_images_cpu.numpy(), eval_targets_cpu.numpy())

    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        def fresh_start():
            """(model, optimizer, shuffle generator) seeded as at the start of a run."""
            fresh = initial_model(architecture(model_name, channels, config), config.seed).to(device)
            shuffle = torch.Generator(device="cpu")
            shuffle.manual_seed(config.seed)
            fresh = fresh.to(memory_format=memory_format)
            return fresh, torch.optim.Adam(fresh.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay), shuffle

        model, optimizer, generator = fresh_start()
        history: list[dict] = []
        correct_rows: list[np.ndarray] = []  # per-sample correctness, one bool row per epoch
        streak = 0
        start_epoch = 0
        seconds_before = 0.0  # training seconds of earlier segments, up to their last checkpoint
        ckpt, set_aside = _resume_state(path, model_name, config, fingerprint, record_sample_correctness, info)
        if ckpt is not None:
            try:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                _set_rng_state(ckpt["rng"], generator, device)
                history = list(ckpt["history"])
                streak = int(ckpt["fit_streak"])
                start_epoch = int(ckpt["epoch"])
                seconds_before = float(ckpt["train_seconds"])
                if record_sample_correctness:
                    correct_rows = _unpack_correct(ckpt["sample_correct"], start_epoch, n)
                info(f"{model_name}: resumed from {path} at epoch {start_epoch}")
                if ckpt["eval_fingerprint"] != eval_fingerprint:
                    # Not a reason to start over (the eval set does not affect training), but
                    # the history's test numbers before and after this point are not comparable.
                    info(f"{model_name}: the eval set differs from the one of the checkpoint's segments; "
                         f"test_loss/test_accuracy of epochs 1-{start_epoch} (if any) are of that one")
            except Exception as error:  # a state that does not fit this model (e.g. after a library change)
                problem = f"its state does not fit the model ({type(error).__name__}: {str(error).splitlines()[0]})"
                set_aside.append(set_aside_checkpoint(path, [problem], model_name, info))
                model, optimizer, generator = fresh_start()
                history, correct_rows, streak, start_epoch, seconds_before = [], [], 0, 0, 0.0
        resumed_from = start_epoch

        # The data, once: float32 in [0, 1] on the device.
        inputs = images_cpu.to(device).float().div_(255.0).contiguous(memory_format=memory_format)
        targets = targets_cpu.to(device)
        if eval_cpu is not None:
            eval_inputs = eval_cpu[0].to(device).float().div_(255.0).contiguous(memory_format=memory_format)
            eval_targets = eval_cpu[1].to(device)

        def autocast():
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16)

        last_written = _clock()
        epoch = start_epoch
        # fixed_epochs ignores the fit streak for stopping; it still decides `fitted` below.
        stop_when_fitted = config.mode == "until_fit"

        def finished() -> bool:
            return epoch >= config.max_epochs or (stop_when_fitted and streak >= config.fit_patience)

        if stop_when_fitted and streak >= config.fit_patience:
            info(f"{model_name}: checkpoint already fits its training set; nothing to train")
        elif finished():
            info(f"{model_name}: checkpoint is at max_epochs ({config.max_epochs}); nothing to train")
        while not finished():
            epoch += 1
            epoch_started = time.perf_counter()
            model.train()
            permutation = torch.randperm(n, generator=generator)
            batches = _batches(n, config.batch_size, permutation)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for index, batch in enumerate(batches, 1):
                batch = batch.to(device)
                x, y = inputs[batch], targets[batch]
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    logits = model(x)
                logits = logits.float()
                loss = nn.functional.cross_entropy(logits, y)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    loss_sum += loss.detach().double() * len(batch)
                    correct += (logits.argmax(1) == y).sum()
                if show_progress:
                    sys.stderr.write(f"\r{model_name} epoch {epoch}/{config.max_epochs} "
                                     f"batch {index}/{len(batches)} loss {loss.item():.4f}")
                    sys.stderr.flush()
            train_loss = loss_sum.item() / n
            running_accuracy = correct.item() / n
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"{model_name}: training loss became {train_loss} in epoch {epoch}")
            # The fit check is the float32 evaluation used for every reported number.
            fit = evaluate(model, inputs, targets, batch_size=EVAL_BATCH_SIZE, per_sample=record_sample_correctness)
            eval_loss, train_accuracy = fit["loss"], fit["accuracy"]
            streak = streak + 1 if train_accuracy >= config.fit_threshold else 0
            if record_sample_correctness:
                correct_rows.append(fit["correct"].numpy())
            entry = {
                "epoch": epoch,
                "train_loss": train_loss,
                "running_accuracy": running_accuracy,
                "train_accuracy": train_accuracy,
                "eval_loss": eval_loss,
            }
            if eval_cpu is not None:
                held_out = evaluate(model, eval_inputs, eval_targets, batch_size=EVAL_BATCH_SIZE)
                entry["test_loss"], entry["test_accuracy"] = held_out["loss"], held_out["accuracy"]
            entry["seconds"] = time.perf_counter() - epoch_started
            history.append(entry)
            if show_progress:
                sys.stderr.write("\n")
            info(f"{model_name} epoch {epoch}/{config.max_epochs}: loss {train_loss:.4f}, "
                 f"running acc {running_accuracy:.4f}, train acc (eval) {train_accuracy:.4f}, "
                 f"{entry['seconds']:.1f} s")
            stop_signal = stop_requested()
            last_epoch = finished()
            due = checkpoint_every_s == 0 or _clock() - last_written >= checkpoint_every_s
            if path is not None and (due or last_epoch or stop_signal):
                ckpt = {
                    "format": CHECKPOINT_FORMAT,
                    "model_name": model_name,
                    "config": config.to_dict(),
                    "data_fingerprint": fingerprint,
                    "eval_fingerprint": eval_fingerprint,
                    "epoch": epoch,
                    "fit_streak": streak,
                    "history": history,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(generator, device),
                    "sample_correct": _pack_correct(correct_rows, n) if record_sample_correctness else None,
                    "train_seconds": seconds_before + time.perf_counter() - segment_started,
                }
                save_verified(path, ckpt)
                last_written = _clock()
            if stop_signal and not last_epoch:
                where = f"checkpoint {path} written" if path is not None else "no checkpoint (none configured)"
                info(f"{model_name}: stopped on {stop_signal} after epoch {epoch}; {where}; a rerun resumes there")
                raise Interrupted(f"{model_name}: training stopped on {stop_signal} after epoch {epoch}", epoch, path)
            if on_epoch_end is not None:
                on_epoch_end(epoch, entry)

        fitted = streak >= config.fit_patience
        info(f"{model_name}: {'fits' if fitted else 'did NOT fit'} its training set after {epoch} epochs "
             f"(train accuracy {history[-1]['train_accuracy'] if history else float('nan'):.4f})")
        model = model.float().to(memory_format=torch.contiguous_format).eval()
        matrix = None
        if record_sample_correctness:
            matrix = np.stack(correct_rows) if correct_rows else np.zeros((0, n), dtype=bool)
        return TrainResult(model=model, epochs=epoch, fitted=fitted, history=history,
                           device=str(device), resumed_from=resumed_from,
                           train_seconds=seconds_before + time.perf_counter() - segment_started,
                           set_aside=set_aside, sample_correct=matrix)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
