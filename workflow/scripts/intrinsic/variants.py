"""Training variants of Fan & Yezzi, "Towards an Understanding of Neural Networks in
Natural-Image Spaces" (arXiv 1801.09097): the ``variant`` axis of the training grid.

* ``standard``: one ``training.train`` call, exactly as without this module.
* ``noise_class``: the training set gains an extra category of random-noise images (label 2
  after the binary task's 0/1) and the head one more output (``num_classes = 3``). Fan & Yezzi
  added such a "random-noise" category to CIFAR-10's ten. The fit criterion counts the noise
  images too: the model must fit the whole set it is trained on.
* ``exclude_illusive``: a first pass of ``first_pass_epochs`` fixed epochs records, per epoch,
  which training samples the eval-mode model classifies correctly; samples that stay
  misclassified over the last epochs ("illusive", ``illusive_samples``) are excluded and the
  model is retrained from scratch, with the configured settings, on the rest.

Everything here is a pure function of its arguments (noise images are drawn from a generator
seeded by the run's seed), so a variant's run is as reproducible and resumable as a standard
one: each pass has its own checkpoint, named by the caller's ``checkpoint_path_for`` (the first
pass's with a ``.first-pass`` suffix, as its settings may name the same file as the second's).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .training import TrainConfig, TrainResult, _log_function, train

VARIANTS = ("standard", "noise_class", "exclude_illusive")
# Our reading of Fan & Yezzi: their noise category was one more category of CIFAR-10's training
# set, i.e. as large as each real class; on a class-balanced binary task of N images that is
# N / 2 noise images.
NOISE_CLASS_RATIO = 0.5
NOISE_LABEL = 2  # after the binary task's labels 0 and 1
# Defaults of each variant's options; the same as config/config.schema.yaml's.
DEFAULT_OPTIONS = {
    "standard": {},
    "noise_class": {"ratio": NOISE_CLASS_RATIO},
    "exclude_illusive": {"first_pass_epochs": 10, "last_epochs": 5, "min_fraction_wrong": 1.0},
}
# Mixed into the noise generator's seed so that noise images never share a stream with anything
# else seeded by the run's seed (splits, weights, shuffling).
_NOISE_TAG = 0x6E6F6973  # "nois"
FIRST_PASS_SUFFIX = ".first-pass"


@dataclass
class VariantResult:
    """What one variant's training produced.

    result: the final pass's TrainResult (the model to keep). config: that pass's settings
    (``num_classes`` 3 for noise_class: what ``training.architecture`` needs to rebuild the
    model). n_noise_images: noise images appended (0 unless noise_class). excluded: sorted
    positions into the given training arrays that were left out (exclude_illusive; else empty).
    first_pass_history / first_pass_sample_correct: the first pass's history and (epochs, n)
    correctness matrix (exclude_illusive; else None). training_labels_used: the labels the final
    pass trained on (noise labels appended / excluded samples removed); their range is
    [0, config.num_classes). train_seconds: all passes together. unjudged_classes: classes the
    first pass had not learned, none of whose samples was judged (``unlearned_classes``)."""

    variant: str
    result: TrainResult
    config: TrainConfig
    n_noise_images: int = 0
    excluded: list[int] = dataclasses.field(default_factory=list)
    unjudged_classes: list[int] = dataclasses.field(default_factory=list)
    first_pass_history: list[dict] | None = None
    first_pass_sample_correct: np.ndarray | None = None
    training_labels_used: np.ndarray | None = None
    train_seconds: float = 0.0

    @property
    def num_classes(self) -> int:
        """Outputs of the trained model's head."""
        return self.config.num_classes


# ------------------------------------------------------------------------------------- options
def variant_options(variant: str, options: dict | None) -> dict:
    """``options`` (the config's ``variants.<variant>`` section) with defaults filled in and
    checked; unknown keys and out-of-range values are errors naming the config key."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (variants.run); choose from {', '.join(VARIANTS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS[variant]))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(f'variants.{variant}.{k}' for k in unknown)}; "
                         f"{variant} takes {', '.join(DEFAULT_OPTIONS[variant]) or 'none'}")
    merged = {**DEFAULT_OPTIONS[variant], **options}
    if variant == "noise_class":
        _check_ratio(merged["ratio"])
    if variant == "exclude_illusive":
        epochs = merged["first_pass_epochs"]
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"variants.exclude_illusive.first_pass_epochs must be an integer >= 1, got {epochs!r}")
        _check_window(merged["last_epochs"], merged["min_fraction_wrong"])
    return merged


def _check_ratio(ratio: Any) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)) or not (
            math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"variants.noise_class.ratio must be a finite number > 0, got {ratio!r}")


def _check_window(last_epochs: Any, min_fraction_wrong: Any) -> None:
    if isinstance(last_epochs, bool) or not isinstance(last_epochs, (int, np.integer)) or last_epochs < 1:
        raise ValueError(f"variants.exclude_illusive.last_epochs must be an integer >= 1, got {last_epochs!r}")
    if isinstance(min_fraction_wrong, bool) or not isinstance(min_fraction_wrong, (int, float, np.number)) or not (
            0 < min_fraction_wrong <= 1):
        raise ValueError(f"variants.exclude_illusive.min_fraction_wrong must be in (0, 1], got {min_fraction_wrong!r}")


# ---------------------------------------------------------------------------------- noise class
def noise_class_images(n: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """``n`` images of i.i.d. uniform noise over [0, 1] (uint8 0..255, each value equally
    likely), of per-image ``shape`` (C, H, W): the same images for the same seed."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"the number of noise images must be an integer >= 0, got {n!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"noise image shape must be (C, H, W) with positive sizes, got {shape}")
    rng = np.random.default_rng([int(seed), _NOISE_TAG])
    return rng.integers(0, 256, size=(int(n), *shape), dtype=np.uint8)


def with_noise_class(images: np.ndarray, labels: np.ndarray, ratio: float = NOISE_CLASS_RATIO,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(images, labels, n_noise): the binary training set (labels 0/1) followed by
    n_noise = round(ratio * N) uniform-noise images labelled ``NOISE_LABEL`` (2).

    ratio 0.5 (``NOISE_CLASS_RATIO``) makes the noise class as large as each class of a
    class-balanced binary task. That equal size is our reading of Fan & Yezzi, whose noise
    category was one more category of CIFAR-10's training set; the paper gives no ratio for
    other tasks. The original images and their order are unchanged (positions 0..N-1)."""
    _check_ratio(ratio)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 of shape (N, C, H, W), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NOISE_LABEL):
        raise ValueError(f"noise_class expects binary labels 0/1 (the noise class is {NOISE_LABEL}), got range "
                         f"[{labels.min()}, {labels.max()}]")
    n_noise = int(round(ratio * len(images)))
    if n_noise < 1:
        raise ValueError(f"variants.noise_class.ratio {ratio} of {len(images)} training images gives no noise image")
    noise = noise_class_images(n_noise, images.shape[1:], seed)
    return (np.concatenate([images, noise]),
            np.concatenate([labels.astype(np.int64), np.full(n_noise, NOISE_LABEL, dtype=np.int64)]),
            n_noise)


# ----------------------------------------------------------------------------- illusive samples
def illusive_samples(correct: np.ndarray, last_epochs: int, min_fraction_wrong: float) -> np.ndarray:
    """Which samples are illusive: bool (n,), True for a sample misclassified in at least
    ``min_fraction_wrong`` of the last ``last_epochs`` epochs of ``correct`` (all epochs if fewer
    were recorded).

    correct: (epochs, n) bool, row e = which samples were classified correctly after epoch e+1
    (``TrainResult.sample_correct``). "At least a fraction f of k epochs" means at least
    ceil(f * k) epochs, with a tolerance of 1e-9 so that a decimal f such as 0.3 of 10 epochs
    means 3 epochs, not 4 (0.3 * 10 is 3.0000000000000004 in floating point).
    """
    _check_window(last_epochs, min_fraction_wrong)
    correct = np.asarray(correct)
    if correct.dtype != bool:
        raise TypeError(f"correct must be a bool matrix, got {correct.dtype}")
    if correct.ndim != 2 or correct.shape[0] < 1:
        raise ValueError(f"correct must have shape (epochs >= 1, n), got {correct.shape}")
    window = correct[-int(last_epochs):]
    needed = math.ceil(float(min_fraction_wrong) * len(window) - 1e-9)
    return (~window).sum(axis=0) >= needed


# -------------------------------------------------------------------------------- orchestration
# A class counts as learned by the first pass when its final model classifies at least this
# share of the class's training samples correctly (better than a constant prediction of the other
# class); only then are its consistently misclassified samples "illusive" in Fan & Yezzi's sense.
LEARNED_CLASS_ACCURACY = 0.5


def unlearned_classes(final_correct: np.ndarray, labels: np.ndarray, num_classes: int) -> list[int]:
    """The classes of which the first pass's final (eval-mode) model classifies fewer than
    LEARNED_CLASS_ACCURACY of the training samples correctly. Early in training at small N, batch
    norm's running statistics lag and the eval-mode model can predict one class for every image;
    a whole class then looks "consistently misclassified" although nothing about its samples is
    learned. Such a class's samples are not judged (none excluded)."""
    final_correct = np.asarray(final_correct, dtype=bool)
    labels = np.asarray(labels)
    return [label for label in range(num_classes)
            if (labels == label).any() and final_correct[labels == label].mean() < LEARNED_CLASS_ACCURACY]


def first_pass_path(path: Path | None) -> Path | None:
    """The first pass's checkpoint beside the final pass's: the first pass's settings differ in
    mode and max_epochs only, which a caller's naming may ignore (runs.checkpoint_path leaves
    max_epochs out), and a shared file would be set aside by each pass in turn."""
    if path is None:
        return None
    path = Path(path)
    return path.with_name(f"{path.stem}{FIRST_PASS_SUFFIX}{path.suffix}")


def train_variant(
    variant: str,
    model_name: str,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    *,
    options: dict | None = None,
    seed: int = 0,
    checkpoint_path_for: Callable[[TrainConfig], Path | None] | None = None,
    eval_set: tuple[np.ndarray, np.ndarray] | None = None,
    log: Any = None,
    progress: bool = False,
    started: float | None = None,
    on_epoch_end: Callable[[str, int, dict], None] | None = None,
    checkpoint_every_s: float = 0.0,
) -> VariantResult:
    """Train ``model_name`` on the binary training set (uint8 ``images``, 0/1 ``labels``) as
    ``variant`` says (see the module docstring).

    options: the variant's own config section (``variants.<variant>``; defaults filled in,
        ``variant_options``). seed: the run's seed, from which noise images are drawn (the
        training seed is ``config.seed``). checkpoint_path_for: the checkpoint of a pass, given
        that pass's config (None, or returning None: no checkpoints). eval_set: passed to every
        pass (``training.train``): test loss/accuracy per epoch. on_epoch_end: test hook,
        ``on_epoch_end(pass_name, epoch, entry)`` with pass_name "first_pass" or "final".
        checkpoint_every_s: when each pass writes its checkpoint (``training.train``).
    A standard run is exactly ``train(model_name, images, labels, config, ...)``.
    """
    options = variant_options(variant, options)
    info = _log_function(log)

    def path_for(settings: TrainConfig) -> Path | None:
        return None if checkpoint_path_for is None else checkpoint_path_for(settings)

    def hook(pass_name: str):
        if on_epoch_end is None:
            return None
        return lambda epoch, entry: on_epoch_end(pass_name, epoch, entry)

    common = dict(log=log, progress=progress, eval_set=eval_set, checkpoint_every_s=checkpoint_every_s)
    labels = np.asarray(labels)

    if variant == "standard":
        result = train(model_name, images, labels, config, path_for(config), started=started,
                       on_epoch_end=hook("final"), **common)
        return VariantResult(variant, result, config, training_labels_used=labels,
                             train_seconds=result.train_seconds)

    if variant == "noise_class":
        images3, labels3, n_noise = with_noise_class(images, labels, options["ratio"], seed)
        settings = dataclasses.replace(config, num_classes=NOISE_LABEL + 1)
        info(f"{model_name}: noise_class: {n_noise} uniform-noise images (label {NOISE_LABEL}) added to "
             f"{len(images)} training images")
        result = train(model_name, images3, labels3, settings, path_for(settings), started=started,
                       on_epoch_end=hook("final"), **common)
        return VariantResult(variant, result, settings, n_noise_images=n_noise, training_labels_used=labels3,
                             train_seconds=result.train_seconds)

    # exclude_illusive
    first_settings = dataclasses.replace(config, mode="fixed_epochs", max_epochs=int(options["first_pass_epochs"]))
    first = train(model_name, images, labels, first_settings, first_pass_path(path_for(first_settings)),
                  started=started, on_epoch_end=hook("first_pass"), record_sample_correctness=True, **common)
    second_started = time.perf_counter()
    illusive = illusive_samples(first.sample_correct, options["last_epochs"], options["min_fraction_wrong"])
    unjudged = unlearned_classes(first.sample_correct[-1], labels, config.num_classes)
    for label in unjudged:
        illusive[labels == label] = False
    if unjudged:
        info(f"{model_name}: exclude_illusive: the first pass's final model classifies fewer than "
             f"{LEARNED_CLASS_ACCURACY:.0%} of class(es) {unjudged} correctly: it has not learned them, so none of "
             "their samples is judged illusive (raise variants.exclude_illusive.first_pass_epochs)")
    first_history, first_correct, first_seconds = first.history, first.sample_correct, first.train_seconds
    del first  # its model is not needed any more (device memory for the second pass)
    excluded = np.flatnonzero(illusive)
    keep = ~illusive
    remaining = labels[keep]
    for label in range(config.num_classes):
        total, left = int((labels == label).sum()), int((remaining == label).sum())
        if left < 2:
            raise ValueError(
                f"exclude_illusive: only {left} of {total} training samples of class {label} would remain after "
                f"excluding {len(excluded)} illusive samples of {len(labels)} (need >= 2 per class); raise "
                f"variants.exclude_illusive.min_fraction_wrong or variants.exclude_illusive.first_pass_epochs")
    info(f"{model_name}: exclude_illusive: {len(excluded)} of {len(labels)} training samples misclassified in >= "
         f"{options['min_fraction_wrong']} of the last {min(options['last_epochs'], len(first_correct))} first-pass "
         f"epochs are excluded; retraining on {int(keep.sum())}")
    result = train(model_name, np.asarray(images)[keep], remaining, config, path_for(config),
                   started=second_started, on_epoch_end=hook("final"), **common)
    return VariantResult(variant, result, config, excluded=[int(i) for i in excluded], unjudged_classes=unjudged,
                         first_pass_history=first_history, first_pass_sample_correct=first_correct,
                         training_labels_used=remaining, train_seconds=first_seconds + result.train_seconds)
