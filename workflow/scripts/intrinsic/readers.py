"""Readers of real datasets on disk: every one returns a :class:`~intrinsic.cache.RawDataset`.

One interface: ``READERS[type](name, context, **options) -> RawDataset``, called through
:func:`intrinsic.sources.load_source`, which checks the option names against the reader's
signature. Types (see config/README.md, section "Real datasets", for every option):

    torchvision   MNIST, CIFAR-10, SVHN through torchvision.datasets from a local root
    image_folder  class-folder tree root/<class>/**/*.png|jpg (ImageNet style), or labels/groups
                  taken from the relative path with regular expressions (MURA)
    image_csv     image files listed in a CSV (path, label[, group]) (CheXpert, OAI exports)
    dicom         DICOM files (or the frames of multi-frame files) via pydicom; labels from a CSV
                  keyed by SOPInstanceUID, SeriesInstanceUID or path
    nifti         NIfTI volumes via nibabel, reoriented to RAS+ and sliced along one axis; labels
                  from a mask or a CSV; the authors' BraTS slice filters
    medmnist      MedMNIST .npz files read with numpy

Common behaviour:

* Labels come from the files; ``classes`` maps source label values to the task's classes
  (a list of values, each its own class, or a mapping class name -> values). Values outside
  the task are an error naming the file and the values, or dropped with ``drop_other: true``.
* Everything is read, labelled and checked before anything is written, so a failing reader
  leaves no cache behind. Corrupt or unreadable files are an error naming the file, or are
  skipped and counted with ``on_error: skip``.
* Messages name a source file through :class:`FileNames`, which registers its paths with
  :func:`intrinsic.logs.private`: stderr shows the path (so the user can find the file), the
  rule's log file under results/ only ``<file #index sha:HASH>``. No message names a DICOM
  header value (UIDs, patient ids): files are named by path, rows by CSV line.
* Group ids that come from the data (patient, study, volume, file path) are replaced by
  ``sha256(group_salt + id)[:16]``; the cache holds pixels, labels and these hashes only.
  Provenance holds counts and the options as configured (paths as given), never header values.
* Decoding and resizing run in ``context.threads`` worker processes (results in input order).
  When the caller passes the cache's ``size``/``channels``, workers resize right away, so the
  parent only collects small arrays; ``cache.prepare`` then has nothing left to resize.
* ``max_per_class`` keeps at most that many images per task class, chosen by a salted hash of
  each item's key (:func:`select_per_class`), before decoding wherever the labels are known
  without the pixels. ``image_max_scaling`` divides each image by its own maximum
  (:func:`scale_by_max`), as the study's authors normalised every medical image.
"""

from __future__ import annotations

import concurrent.futures
import csv
import glob
import hashlib
import logging
import math
import multiprocessing
import os
import re
import string
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .cache import DatasetError, RawDataset, convert_image, quantize, resize_mask, to_unit_range
from .logs import private

DEFAULT_GROUP_SALT = "intrinsic-properties/v1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# The label value of a DICOM file or NIfTI slice that its labels CSV does not list.
NO_CSV_ROW = "<no CSV row>"
# How many skipped files are named in the log and in meta.json (the count is always complete).
N_NAMED_SKIPS = 5
# Worker pool of parallel_map: "process" (default) or "thread"; benchmarks/bench_prepare.py
# measures both (benchmarks/README.md).
POOL_KIND = "process"


@dataclass
class ReadContext:
    """What a reader needs besides its options: worker count, log, and the cache geometry."""

    threads: int = 1
    log: logging.Logger | None = None
    size: int | None = None  # when set with channels, workers resize to the cache resolution
    channels: int | None = None

    def info(self, message: str, *args) -> None:
        if self.log is not None:
            self.log.info(message, *args)

    def warning(self, message: str, *args) -> None:
        if self.log is not None:
            self.log.warning(message, *args)


# ----------------------------------------------------------------------------------------------
# Small helpers shared by the readers.


def salted_hash(salt: str, value: str) -> str:
    """The group id stored in the cache: sha256(salt + id), first 16 hex digits."""
    return hashlib.sha256((str(salt) + str(value)).encode("utf-8")).hexdigest()[:16]


def label_key(value) -> str:
    """Canonical text of a source label value: 1, 1.0, "1.0" and " 1 " all become "1"."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isnan(number):
        return ""
    return str(int(number)) if number.is_integer() else repr(number)


def _numeric_first(key: str):
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def _root(name: str, root, what: str = "root") -> Path:
    if root is None or str(root).strip() == "":
        raise DatasetError(f"dataset {name!r}: option {what!r} is required")
    path = Path(os.path.expanduser(str(root)))
    if not path.exists():
        raise DatasetError(f"dataset {name!r}: {what} {str(path)!r} does not exist")
    return path


def _check_choice(name: str, option: str, value, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise DatasetError(f"dataset {name!r}: option {option!r} must be one of {choices}, got {value!r}")
    return value


def _regex(name: str, option: str, pattern):
    if pattern is None:
        return None
    try:
        compiled = re.compile(str(pattern))
    except re.error as error:
        raise DatasetError(f"dataset {name!r}: option {option!r} is not a valid regular expression: {error}") from None
    return compiled


def _match(name: str, option: str, regex: re.Pattern, names: FileNames, index: int) -> str:
    """The first capture group (or the whole match) of ``regex`` in file ``index``'s relative path."""
    found = regex.search(names.relative[index])
    if found is None:
        raise DatasetError(f"dataset {name!r}: option {option!r} ({regex.pattern!r}) does not match {names(index)}")
    return found.group(1) if regex.groups else found.group(0)


def _versions(*packages: str) -> dict[str, str]:
    return {package: metadata.version(package) for package in packages}


def _check_bool(name: str, option: str, value) -> bool:
    if not isinstance(value, bool):
        raise DatasetError(f"dataset {name!r}: option {option!r} must be true or false, got {value!r}")
    return value


def _check_count(name: str, option: str, value, minimum: int, optional: bool = True) -> int | None:
    """An integer option >= ``minimum``; with ``optional``, None (off) too."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetError(f"dataset {name!r}: option {option!r} must be an integer >= {minimum}, got {value!r}")
    return value


def scale_by_max(image: np.ndarray) -> np.ndarray:
    """``image / image.max()``: the authors' MedicalDataset.normalize (``img * 255 / img.max()``)
    on the [0, 1] scale. An all-zero image stays zero."""
    peak = float(image.max()) if image.size else 0.0
    return (image / np.float32(peak)).astype(np.float32) if peak > 0 else image.astype(np.float32)


def select_per_class(labels: np.ndarray, keys: list[str], salt: str, max_per_class: int | None,
                     classes: list[str]) -> tuple[np.ndarray, dict | None]:
    """Positions (ascending) of the items ``max_per_class`` keeps, and the per-class counts.

    Within each class, the items with the smallest ``salted_hash(salt, "max_per_class:" + key)``
    are kept: a choice that depends on neither the listing order nor the other items, so adding
    unrelated files (or classes) to a source leaves the chosen ones chosen.
    """
    labels = np.asarray(labels, dtype=np.int64)
    positions = np.arange(len(labels))
    if max_per_class is None:
        return positions, None
    chosen: list[int] = []
    for index in range(len(classes)):
        members = [int(i) for i in positions[labels == index]]
        if len(members) > max_per_class:
            members.sort(key=lambda i: (salted_hash(salt, "max_per_class:" + keys[i]), keys[i]))
            members = members[:max_per_class]
        chosen.extend(members)
    kept = np.asarray(sorted(chosen), dtype=np.int64)
    before = np.bincount(labels, minlength=len(classes)) if len(labels) else np.zeros(len(classes), int)
    after = np.bincount(labels[kept], minlength=len(classes)) if len(kept) else np.zeros(len(classes), int)
    counts = {"before": {c: int(n) for c, n in zip(classes, before)},
              "after": {c: int(n) for c, n in zip(classes, after)}}
    return kept, counts


@dataclass
class TaskLabels:
    """Source label values -> class indices of the task."""

    classes: list[str]
    value_to_class: dict[str, int]

    @classmethod
    def from_option(cls, name: str, option, observed: Iterable[str]) -> "TaskLabels":
        """``classes`` option: None (each observed value a class), a list of values, or name -> values."""
        if option is None:
            values = sorted(set(observed), key=_numeric_first)
            return cls([v for v in values], {v: i for i, v in enumerate(values)})
        if isinstance(option, dict):
            if len(option) < 2:
                raise DatasetError(f"dataset {name!r}: option 'classes' needs at least two classes, got {option!r}")
            mapping: dict[str, int] = {}
            for index, (class_name, values) in enumerate(option.items()):
                values = values if isinstance(values, (list, tuple)) else [values]
                if not values:
                    raise DatasetError(f"dataset {name!r}: class {class_name!r} of option 'classes' lists no values")
                for value in values:
                    key = label_key(value)
                    if key in mapping:
                        raise DatasetError(f"dataset {name!r}: option 'classes' maps source label {key!r} twice")
                    mapping[key] = index
            return cls([str(c) for c in option], mapping)
        if isinstance(option, (list, tuple)) and len(option) >= 2:
            keys = [label_key(v) for v in option]
            if len(set(keys)) != len(keys):
                raise DatasetError(f"dataset {name!r}: option 'classes' lists a value twice: {list(option)}")
            return cls(keys, {k: i for i, k in enumerate(keys)})
        raise DatasetError(
            f"dataset {name!r}: option 'classes' must be a list of at least two source labels or a mapping "
            f"class name -> source labels, got {option!r}"
        )

    def assign(self, name: str, values: list[str], where: str, drop_other: bool,
               items: Callable[[int], str] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
        """(labels, keep mask, {dropped value: count}); error naming ``where`` (and the first few
        items, ``items(index)``: e.g. a :class:`FileNames`) for values outside the task."""
        labels = np.full(len(values), -1, dtype=np.int64)
        for index, value in enumerate(values):
            labels[index] = self.value_to_class.get(value, -1)
        keep = labels >= 0
        outside: dict[str, int] = {}
        for value in np.asarray(values, dtype=object)[~keep]:
            outside[value] = outside.get(value, 0) + 1
        if outside and not drop_other:
            shown = {("<empty>" if k == "" else k): v for k, v in sorted(outside.items())}
            first = ""
            if items is not None:
                first = f" (first: {', '.join(items(int(i)) for i in np.flatnonzero(~keep)[:N_NAMED_SKIPS])})"
            raise DatasetError(
                f"dataset {name!r}: {where} has label values {shown} (value: count){first} outside the task "
                f"{dict(zip(self.classes, self._values_per_class()))}; map them in 'classes' or set drop_other: true"
            )
        return labels[keep], keep, outside

    def _values_per_class(self) -> list[list[str]]:
        per_class: list[list[str]] = [[] for _ in self.classes]
        for value, index in self.value_to_class.items():
            per_class[index].append(value)
        return per_class


@dataclass
class FileNames:
    """How messages name the files of a reader's listing: the one place that builds that text.

    ``names(index)`` is e.g. "DICOM file 'DOE^JOHN/1.dcm'": what an error shows on stderr, so
    the user can find the file. Building it registers the file's paths with
    :func:`intrinsic.logs.private`, so the rule's log file (under results/, and paths may hold
    patient names) shows ``<file #index sha:HASH>`` instead: the position in the listing and
    ``salted_hash(salt, relative path)``, the hash meta.json's ``first_skipped_hashed`` holds.
    Only files a message names are registered.
    """

    kind: str  # "file", "DICOM file", "NIfTI volume"
    relative: list[str]  # as listed (relative to root, or as the CSV spells it)
    paths: list[str]  # what the reader opens (decoder errors may quote it)
    salt: str
    lines: list[int] | None = None  # CSV line of each file (image_csv)
    masks: list[str | None] | None = None  # NIfTI: each volume's mask path
    root: Path | None = None  # masks are named relative to it

    def hash(self, index: int) -> str:
        return salted_hash(self.salt, self.relative[index])

    def __call__(self, index: int, with_line: bool = True) -> str:
        token = f"<file #{index} sha:{self.hash(index)}>"
        text = f"{self.kind} {_register(self.relative[index], self.paths[index], token)!r}"
        if self.masks is not None and self.masks[index] is not None:
            mask = self.masks[index]
            shown = _relative_or_same(mask, self.root)
            text += f" (mask {_register(shown, mask, token.replace('<file', '<mask of file'))!r})"
        if with_line and self.lines is not None:
            text += f" (CSV line {self.lines[index]})"
        return text


def _relative_or_same(path: str, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return path


def _register(relative: str, path: str, token: str) -> str:
    """Register a file's relative path and every spelling of its path as private; ``relative``."""
    for spelling in {path, os.path.abspath(path), os.path.realpath(path)}:
        private(spelling, token)
    return private(relative, token)


@dataclass
class Skips:
    """Files skipped under ``on_error: skip``: counted, the first few named (by ``names``)."""

    name: str
    on_error: str
    names: FileNames
    count: int = 0
    named: list[int] = field(default_factory=list)  # listing indices of the first few

    def handle(self, index: int, problem: str, context: ReadContext) -> None:
        """Raise a DatasetError naming file ``index``, or count it (on_error: skip)."""
        if self.on_error != "skip":
            raise DatasetError(f"dataset {self.name!r}: {self.names(index)}: {problem}")
        self.count += 1
        if len(self.named) < N_NAMED_SKIPS:
            self.named.append(index)
            context.warning("skipping %s: %s", self.names(index), problem)

    def provenance(self) -> dict:
        # Hashes only: meta.json travels with the cache, and paths may hold patient names.
        return {"skipped_files": self.count, "first_skipped_hashed": [self.names.hash(i) for i in self.named]}

    def report(self, context: ReadContext) -> None:
        if self.count:
            context.warning("%s: skipped %d unreadable file(s); first: %s", self.name, self.count,
                            ", ".join(self.names(i) for i in self.named))


def _worker_call(function: Callable, item) -> tuple[bool, object]:
    """Run one decode job; a failure comes back as a message instead of killing the pool."""
    try:
        return True, function(item)
    except Exception as error:  # noqa: BLE001 - every decoder failure is reported per file
        return False, f"{type(error).__name__}: {error}"


class _Call:
    """Picklable ``_worker_call(function, item)`` for process pools."""

    def __init__(self, function: Callable):
        self.function = function

    def __call__(self, item):
        return _worker_call(self.function, item)


def parallel_map(function: Callable, items: list, threads: int) -> list[tuple[bool, object]]:
    """[(ok, result or error message)] in input order, computed by ``threads`` processes.

    Processes by default, not threads: PIL releases the GIL while decoding, but the resize
    (scikit-image/scipy.ndimage), pydicom and the per-slice Python work need not, and processes
    scale either way. ``POOL_KIND = "thread"`` switches to threads (benchmarks/bench_prepare.py
    --pool thread measures both).
    """
    call = _Call(function)
    if threads <= 1 or len(items) <= 1:
        return [call(item) for item in items]
    workers = min(threads, len(items))
    if POOL_KIND == "thread":
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(call, items))
    chunksize = max(1, min(64, len(items) // (workers * 8)))
    # fork, explicitly (Python 3.14 defaults to forkserver): spawn and forkserver re-import the
    # main module in each worker, and Snakemake's copy of a rule script has no __main__ guard,
    # so a worker would run the whole rule again.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(call, items, chunksize=chunksize))


def _to_cache_geometry(image: np.ndarray, size: int | None, channels: int | None) -> np.ndarray:
    """Resize in the worker when the cache geometry is known; float32 (H, W[, C]) in [0, 1]."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if size is None or channels is None:
        return image
    converted = convert_image(image, size, channels)  # (C, size, size)
    # uint8 is what the cache stores anyway; it quarters what crosses the process boundary and
    # prepare() maps x/255 back onto the same uint8 exactly.
    return np.moveaxis(quantize(converted), 0, -1)


def _from_worker(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    return image


def _finish(
    name: str,
    where: str,
    images: list[np.ndarray],
    values: list[str],
    groups: list[str],
    task: TaskLabels,
    drop_other: bool,
    min_per_class: int,
    provenance: dict,
    context: ReadContext,
    dropped_before: dict | None = None,
    items: Callable[[int], str] | None = None,
    backgrounds: list[np.ndarray] | None = None,
    max_per_class: int | None = None,
    keys: list[str] | None = None,
    salt: str = DEFAULT_GROUP_SALT,
    read_classes: set[int] | None = None,
) -> RawDataset:
    """Map source labels onto the task, drop or reject the rest, check class sizes.

    ``dropped_before``: {value: count} a reader already dropped before decoding.
    ``items``: image index -> text naming its file, for the error on labels outside the task.
    ``backgrounds``: explicit background mask per image (``RawDataset.backgrounds``), or None.
    ``max_per_class``, ``keys``, ``salt``: :func:`select_per_class` on the labelled images (for
    readers that learn the labels only by decoding). ``read_classes``: the class indices the
    reader read (image_folder's include_classes); only these must reach ``min_per_class``."""
    labels, keep, dropped = task.assign(name, values, where, drop_other, items=items)
    for value, count in (dropped_before or {}).items():
        dropped[value] = dropped.get(value, 0) + count
    positions = np.flatnonzero(keep)
    provenance = dict(provenance)
    if max_per_class is not None:
        chosen, provenance["max_per_class_counts"] = select_per_class(
            labels, [keys[i] for i in positions], salt, max_per_class, task.classes)
        positions, labels = positions[chosen], labels[chosen]
    kept_images = [_from_worker(images[i]) for i in positions]
    kept_backgrounds = None if backgrounds is None else [backgrounds[i] for i in positions]
    kept_groups = [groups[i] for i in positions]
    counts = np.bincount(labels, minlength=len(task.classes)) if len(labels) else np.zeros(len(task.classes), int)
    small = {c: int(n) for index, (c, n) in enumerate(zip(task.classes, counts))
             if n < min_per_class and (read_classes is None or index in read_classes)}
    if small:
        raise DatasetError(
            f"dataset {name!r}: {where}: too few images of class(es) {small} (class: count); "
            f"need at least {min_per_class} each (option min_per_class)"
        )
    if dropped:
        context.info("%s: dropped %d image(s) with labels outside the task: %s", name, sum(dropped.values()), dropped)
    provenance["dropped_labels"] = {("<empty>" if k == "" else k): int(v) for k, v in sorted(dropped.items())}
    provenance["class_values"] = dict(zip(task.classes, task._values_per_class()))
    return RawDataset(
        name=name,
        images=kept_images,
        labels=labels,
        groups=np.asarray([str(g) for g in kept_groups], dtype=str),
        classes=task.classes,
        provenance=provenance,
        backgrounds=kept_backgrounds,
    )


def _common_provenance(kind: str, options: dict, group_salt: str, packages: tuple[str, ...]) -> dict:
    """Options as configured (paths as given), the salt reduced to default/custom, versions."""
    shown = {k: v for k, v in options.items() if k != "group_salt"}
    return {
        "type": kind,
        "options": shown,
        "group_salt": "default" if group_salt == DEFAULT_GROUP_SALT else "custom",
        "versions": _versions("numpy", *packages),
    }


def _check_common(name: str, on_error, drop_other, min_per_class, max_per_class) -> None:
    _check_choice(name, "on_error", on_error, ["raise", "skip"])
    _check_bool(name, "drop_other", drop_other)
    _check_count(name, "min_per_class", min_per_class, 1, optional=False)
    _check_count(name, "max_per_class", max_per_class, 1)


# ----------------------------------------------------------------------------------------------
# torchvision: MNIST, CIFAR-10, SVHN.

TORCHVISION_DATASETS = ("MNIST", "CIFAR10", "SVHN")


def _torchvision_class(dataset: str, verify_checksums: bool):
    """The torchvision dataset class; without checksum verification, a subclass whose md5 are None.

    torchvision's own ``check_integrity(path, md5=None)`` then only checks that the file exists,
    so the library still reads the files; this is for re-packed copies (and for the tests, which
    write small files in the original formats). MNIST checks existence only anyway.
    """
    from torchvision import datasets

    base = {"MNIST": datasets.MNIST, "CIFAR10": datasets.CIFAR10, "SVHN": datasets.SVHN}[dataset]
    if verify_checksums or dataset == "MNIST":
        return base
    if dataset == "CIFAR10":
        return type(
            "CIFAR10WithoutChecksums",
            (base,),
            {
                "train_list": [[f, None] for f, _ in base.train_list],
                "test_list": [[f, None] for f, _ in base.test_list],
                "meta": {**base.meta, "md5": None},
            },
        )
    return type(
        "SVHNWithoutChecksums",
        (base,),
        {"split_list": {k: [url, f, None] for k, (url, f, _) in base.split_list.items()}},
    )


def read_torchvision(
    name: str,
    context: ReadContext,
    root: str | None = None,
    dataset: str | None = None,
    split: str = "both",
    download: bool = False,
    verify_checksums: bool = True,
    classes=None,
    drop_other: bool = True,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """MNIST / CIFAR10 / SVHN from ``root`` in torchvision's layout.

    Source labels: the digit for MNIST and SVHN (SVHN's 10 is digit 0, as torchvision maps it),
    the class name for CIFAR-10 ("airplane", ..., "truck"). ``drop_other`` defaults to true here:
    a class subset of a multi-class set is the normal case. Group = one per image
    (``{dataset}:{split}:{index}``, also the image's ``max_per_class`` key).
    """
    _check_common(name, on_error, drop_other, min_per_class, max_per_class)
    dataset = _check_choice(name, "dataset", dataset, TORCHVISION_DATASETS)
    split = _check_choice(name, "split", split, ["train", "test", "both"])
    root_path = Path(os.path.expanduser(str(root))) if download else _root(name, root)
    dataset_class = _torchvision_class(dataset, bool(verify_checksums))
    parts = ["train", "test"] if split == "both" else [split]
    images, values, groups, counts = [], [], [], {}
    for part in parts:
        try:
            if dataset == "SVHN":
                loaded = dataset_class(str(root_path), split=part, download=bool(download))
                data = np.transpose(loaded.data, (0, 2, 3, 1))  # torchvision keeps SVHN as (N, C, H, W)
                targets = [str(int(t)) for t in loaded.labels]
            else:
                loaded = dataset_class(str(root_path), train=(part == "train"), download=bool(download))
                data = np.asarray(loaded.data)
                raw_targets = [int(t) for t in np.asarray(loaded.targets)]
                targets = [loaded.classes[t] for t in raw_targets] if dataset == "CIFAR10" else [str(t) for t in raw_targets]
        except (RuntimeError, OSError, ValueError, KeyError, EOFError) as error:
            raise DatasetError(
                f"dataset {name!r}: torchvision {dataset} ({part}) under {str(root_path)!r} is missing or unreadable: "
                f"{type(error).__name__}: {error}"
            ) from None
        counts[part] = int(len(data))
        for index in range(len(data)):
            images.append(np.asarray(data[index]).astype(np.float32) / np.float32(255.0))
            values.append(targets[index])
            groups.append(f"{dataset}:{part}:{index}")
    task = TaskLabels.from_option(name, classes, values)
    options = dict(root=root, dataset=dataset, split=split, download=download, verify_checksums=verify_checksums,
                   classes=classes, drop_other=drop_other, max_per_class=max_per_class)
    provenance = _common_provenance("torchvision", options, group_salt, ("torchvision",))
    provenance["images_per_split"] = counts
    where = f"torchvision {dataset} under {str(root_path)!r}"
    return _finish(name, where, images, values, groups, task, drop_other, min_per_class, provenance, context,
                   max_per_class=max_per_class, keys=groups, salt=group_salt)


# ----------------------------------------------------------------------------------------------
# Image files: class-folder trees and CSV lists.


def decode_image_file(path: str) -> np.ndarray:
    """One PNG/JPEG/... as float32 in [0, 1]: (H, W) for gray, (H, W, 3) for colour."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float32)
            # 16-bit grayscale (e.g. radiographs): scale by the type's range, not the image's.
            return array / np.float32(65535.0 if array.max() <= 65535 else array.max())
        if image.mode == "F":
            return to_unit_range(np.asarray(image, dtype=np.float32))
        if image.mode in ("1", "L", "LA"):
            return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255.0)
        return np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)


@dataclass
class _ImageJob:
    size: int | None
    channels: int | None
    max_scaling: bool = False

    def __call__(self, path: str) -> np.ndarray:
        image = decode_image_file(path)
        return _to_cache_geometry(scale_by_max(image) if self.max_scaling else image, self.size, self.channels)


def _decode_files(paths: list[str], indices: list[int], context: ReadContext, skips: Skips,
                  max_scaling: bool = False) -> list:
    """Decode the files ``indices`` of the listing in parallel; (index, image) of the readable ones, in order."""
    job = _ImageJob(context.size, context.channels, max_scaling)
    results = parallel_map(job, [paths[i] for i in indices], context.threads)
    decoded = []
    for index, (ok, result) in zip(indices, results):
        if ok:
            decoded.append((index, result))
        else:
            skips.handle(index, f"unreadable or corrupt image ({result})", context)
    return decoded


def _image_provenance_and_finish(name, kind, where, names: FileNames, values, groups, task, drop_other,
                                 min_per_class, on_error, group_salt, options, context, *, keys: list[str],
                                 max_per_class: int | None, max_scaling: bool,
                                 read_classes: set[int] | None = None,
                                 extra_provenance: dict | None = None) -> RawDataset:
    # Labels first: a value outside the task fails before a single file is decoded, and files of
    # dropped labels, or left out by max_per_class, are never decoded.
    labels, keep, dropped = task.assign(name, values, where, drop_other, items=names)
    wanted = np.flatnonzero(keep)
    chosen, selection = select_per_class(labels, [keys[i] for i in wanted], group_salt, max_per_class, task.classes)
    skips = Skips(name, on_error, names)
    decoded = _decode_files(names.paths, [int(i) for i in wanted[chosen]], context, skips, max_scaling)
    skips.report(context)
    kept = [index for index, _ in decoded]
    provenance = _common_provenance(kind, options, group_salt, ("pillow",))
    provenance.update(skips.provenance(), files_listed=len(names.paths), **(extra_provenance or {}))
    if selection is not None:
        provenance["max_per_class_counts"] = selection
    return _finish(name, where, [image for _, image in decoded], [values[i] for i in kept],
                   [groups[i] for i in kept], task, drop_other, min_per_class, provenance, context,
                   dropped_before=dropped, items=lambda i: names(kept[i]), read_classes=read_classes)


def _suffixes(extensions) -> tuple[str, ...]:
    return tuple(s.lower() if s.startswith(".") else "." + s.lower() for s in (extensions or IMAGE_SUFFIXES))


def _is_image_name(filename: str, suffixes: tuple[str, ...]) -> bool:
    return filename.lower().endswith(suffixes) and not filename.startswith(".")


def _holds_image(folder: str, suffixes: tuple[str, ...]) -> bool:
    """Whether ``folder`` or a folder below it holds an image file; stops at the first one.

    os.scandir, not os.walk: walk lists a whole folder before yielding it (an ImageNet class
    folder holds ~1300 files). Symlinked folders are not followed, as os.walk's default.
    """
    pending = [folder]
    while pending:
        below = []
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    if not entry.is_symlink():
                        below.append(entry.path)
                elif _is_image_name(entry.name, suffixes) and entry.is_file():
                    return True
        pending.extend(sorted(below, reverse=True))
    return False


def list_class_folders(name: str, root, extensions: list | None = None) -> list[str]:
    """The class folders of an image_folder tree: the folders directly under ``root`` that hold an
    image file (at any depth), in the order the reader gives the classes (numbers numerically,
    then text: plain sorted order for ImageNet's synsets). Cheap: nothing is decoded, and each
    folder is scanned only up to its first image file.
    """
    root_path = _root(name, root)
    suffixes = _suffixes(extensions)
    with os.scandir(root_path) as entries:
        folders = [entry.name for entry in entries if entry.is_dir() and not entry.is_symlink()]
    return sorted((f for f in folders if _holds_image(str(root_path / f), suffixes)), key=_numeric_first)


def read_image_folder(
    name: str,
    context: ReadContext,
    root: str | None = None,
    extensions: list | None = None,
    label_regex: str | None = None,
    group_regex: str | None = None,
    include_classes: list | None = None,
    image_max_scaling: bool = False,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """Images under ``root``, found recursively; label = first folder below root (ImageNet layout)
    or the first capture group of ``label_regex`` in the relative path (e.g. MURA's
    ``_(positive|negative)/``). Group = capture of ``group_regex`` in the relative path (e.g.
    ``(patient\\d+)/``), else the relative path itself; always salted-hashed. An image's
    ``max_per_class`` key is its relative path.

    With a ``classes`` list/mapping and no ``label_regex``, only the named class folders are
    listed, so a subset of ImageNet's 1000 folders is cheap. ``include_classes``: read only these
    class folders, while the task's classes stay every class folder (:func:`list_class_folders`)
    or ``classes``; the other classes are in ``RawDataset.classes`` with no image.
    """
    _check_common(name, on_error, drop_other, min_per_class, max_per_class)
    _check_bool(name, "image_max_scaling", image_max_scaling)
    root_path = _root(name, root)
    suffixes = _suffixes(extensions)
    label_re, group_re = _regex(name, "label_regex", label_regex), _regex(name, "group_regex", group_regex)
    task = read_classes = None
    if include_classes is not None:
        task, read_classes = _included_classes(name, root_path, include_classes, label_re, classes, extensions)
        folders = [root_path / folder for folder in include_classes]
    elif label_re is None and classes is not None and not drop_other:
        wanted = TaskLabels.from_option(name, classes, []).value_to_class
        folders = [root_path / value for value in wanted]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise DatasetError(f"dataset {name!r}: class folder(s) {missing} do not exist")
    else:
        folders = [root_path]
    relative: list[str] = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for filename in sorted(filenames):
                if _is_image_name(filename, suffixes):
                    relative.append(Path(dirpath, filename).relative_to(root_path).as_posix())
    if label_re is None:
        relative = [r for r in relative if "/" in r]  # files directly in root have no class folder
    if not relative:
        raise DatasetError(f"dataset {name!r}: no image files ({', '.join(suffixes)}) under {str(root_path)!r}")
    names = FileNames("file", relative, [str(root_path / r) for r in relative], group_salt)
    values = [label_key(_match(name, "label_regex", label_re, names, i)) if label_re else r.split("/", 1)[0]
              for i, r in enumerate(relative)]
    groups = [salted_hash(group_salt, _match(name, "group_regex", group_re, names, i) if group_re else r)
              for i, r in enumerate(relative)]
    if task is None:
        task = TaskLabels.from_option(name, classes, values)
    options = dict(root=root, extensions=extensions, label_regex=label_regex, group_regex=group_regex,
                   include_classes=include_classes, image_max_scaling=image_max_scaling, classes=classes,
                   drop_other=drop_other, min_per_class=min_per_class, max_per_class=max_per_class, on_error=on_error)
    return _image_provenance_and_finish(name, "image_folder", f"image folder {str(root_path)!r}", names,
                                        values, groups, task, drop_other, min_per_class, on_error, group_salt,
                                        options, context, keys=relative, max_per_class=max_per_class,
                                        max_scaling=image_max_scaling, read_classes=read_classes)


def _included_classes(name: str, root_path: Path, include_classes, label_re, classes, extensions
                      ) -> tuple[TaskLabels, set[int]]:
    """image_folder's ``include_classes``: the task over every class folder (or ``classes``) and
    the indices of the included ones."""
    if label_re is not None:
        raise DatasetError(f"dataset {name!r}: option 'include_classes' names class folders; it cannot be "
                           "combined with 'label_regex'")
    if (not isinstance(include_classes, list) or not include_classes
            or not all(isinstance(c, str) and c for c in include_classes)
            or len(set(include_classes)) != len(include_classes)):
        raise DatasetError(f"dataset {name!r}: option 'include_classes' must be a list of distinct class folder "
                           f"names, got {include_classes!r}")
    if classes is None:
        task = TaskLabels.from_option(name, None, list_class_folders(name, root_path, extensions))
        unknown = [c for c in include_classes if c not in task.value_to_class]
        where = f"class folders (holding an image) under {str(root_path)!r}"
    else:
        task = TaskLabels.from_option(name, classes, [])
        unknown = [c for c in include_classes if c not in task.value_to_class or not (root_path / c).is_dir()]
        where = f"class folders under {str(root_path)!r} named in 'classes'"
    if unknown:
        raise DatasetError(f"dataset {name!r}: option 'include_classes' names {unknown}, which are not {where}")
    return task, {task.value_to_class[c] for c in include_classes}


def read_csv_columns(name: str, csv_path: Path, columns: dict[str, str | None], where_filter: dict | None = None
                     ) -> dict[str, list[str]]:
    """The named columns of a CSV (option -> column name), rows filtered by ``where_filter``;
    ``"line"``: each kept row's line number in the file, for messages that name a row.

    csv.DictReader, not pandas: every cell stays text (pandas would turn "1" into 1.0 and blank
    cells into NaN, which then need undoing for label matching).
    """
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            wanted = {option: column for option, column in columns.items() if column is not None}
            for column in list(wanted.values()) + list((where_filter or {}).keys()):
                if column not in header:
                    option = next((o for o, c in wanted.items() if c == column), "where")
                    raise DatasetError(
                        f"dataset {name!r}: CSV {str(csv_path)!r} has no column {column!r} (option {option!r}); "
                        f"available columns: {header}"
                    )
            allowed = {c: {label_key(v) for v in (vs if isinstance(vs, list) else [vs])}
                       for c, vs in (where_filter or {}).items()}
            out: dict[str, list] = {option: [] for option in wanted}
            out["line"] = []
            for row in reader:
                if any(label_key(row[c] or "") not in values for c, values in allowed.items()):
                    continue
                for option, column in wanted.items():
                    out[option].append((row[column] or "").strip())
                # the row's last line: the same as its first unless a quoted cell spans lines
                out["line"].append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"dataset {name!r}: cannot read CSV {str(csv_path)!r}: {error}") from None
    return out


def read_image_csv(
    name: str,
    context: ReadContext,
    csv: str | None = None,  # noqa: A002 - the option's name in the config
    root: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    group_column: str | None = None,
    group_regex: str | None = None,
    where: dict | None = None,
    duplicates: str = "raise",
    path_template: str | None = None,
    image_max_scaling: bool = False,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """Images listed in a CSV: ``path_column`` (relative to ``root``, default the CSV's folder;
    ``path_template``, e.g. ``"ISIC_2019_Training_Input/{}.jpg"``, turns a cell into that path),
    ``label_column``; group from ``group_column``, else ``group_regex`` on the path, else the
    image's path below root (also its ``max_per_class`` key). ``where`` keeps only rows whose
    columns hold one of the listed values (e.g. frontal views).

    Every listed path must resolve (``..`` and symlinks followed) to a file under root. An image
    listed twice (the same resolved path) with different labels or groups is an error; identical
    repeats are an error too, or with ``duplicates: drop`` only the first listing is kept.
    """
    _check_common(name, on_error, drop_other, min_per_class, max_per_class)
    _check_bool(name, "image_max_scaling", image_max_scaling)
    duplicates = _check_choice(name, "duplicates", duplicates, ["raise", "drop"])
    _check_path_template(name, path_template)
    csv_path = _root(name, csv, "csv")
    root_path = _root(name, root) if root is not None else csv_path.parent
    group_re = _regex(name, "group_regex", group_regex)
    if where is not None and not isinstance(where, dict):
        raise DatasetError(f"dataset {name!r}: option 'where' must map column names to lists of values, got {where!r}")
    table = read_csv_columns(name, csv_path, {"path_column": path_column, "label_column": label_column,
                                              "group_column": group_column}, where)
    relative, lines = table["path_column"], table["line"]
    if path_template is not None:
        relative = [path_template.format(cell) for cell in relative]
    if not relative:
        raise DatasetError(f"dataset {name!r}: CSV {str(csv_path)!r} lists no images")
    shown_csv = f"CSV {str(csv_path)!r}"
    # An absolute cell replaces root in the join; resolve() follows ".." and symlinks.
    resolved_root = root_path.resolve()
    names = FileNames("file", relative, [str(root_path / r) for r in relative], group_salt, lines=lines)
    resolved = []
    for index, r in enumerate(relative):
        try:
            resolved.append((root_path / r).resolve())
        except (OSError, RuntimeError) as error:  # a symlink loop; the message names the path
            raise DatasetError(f"dataset {name!r}: {shown_csv}: {names(index)} cannot be resolved "
                               f"({type(error).__name__}: {error})") from None
    names.paths = [str(p) for p in resolved]
    for index, path in enumerate(resolved):
        if not path.is_relative_to(resolved_root):
            raise DatasetError(
                f"dataset {name!r}: {shown_csv}: {names(index)} in column {path_column!r} (option 'path_column') "
                f"resolves outside root {str(root_path)!r} (option 'root'); every listed image must lie under root"
            )
    values = [label_key(v) for v in table["label_column"]]
    if group_column is not None:
        raw_groups = table["group_column"]
    elif group_re is not None:
        raw_groups = [_match(name, "group_regex", group_re, names, i) for i in range(len(relative))]
    else:  # the image's own path, however the CSV spells it
        raw_groups = [p.relative_to(resolved_root).as_posix() for p in resolved]
    keys = [p.relative_to(resolved_root).as_posix() for p in resolved]
    keep = _drop_duplicate_rows(name, shown_csv, names, resolved, values, raw_groups, label_column, duplicates)
    n_dropped = len(relative) - len(keep)
    if n_dropped:
        context.info("%s: dropped %d duplicate row(s) of %s (duplicates: drop)", name, n_dropped, shown_csv)
        names = FileNames("file", [relative[i] for i in keep], [names.paths[i] for i in keep], group_salt,
                          lines=[lines[i] for i in keep])
        values, raw_groups = [values[i] for i in keep], [raw_groups[i] for i in keep]
        keys = [keys[i] for i in keep]
    groups = [salted_hash(group_salt, g) for g in raw_groups]
    task = TaskLabels.from_option(name, classes, values)
    options = dict(csv=csv, root=root, path_column=path_column, label_column=label_column, group_column=group_column,
                   group_regex=group_regex, where=where, duplicates=duplicates, path_template=path_template,
                   image_max_scaling=image_max_scaling, classes=classes, drop_other=drop_other,
                   min_per_class=min_per_class, max_per_class=max_per_class, on_error=on_error)
    return _image_provenance_and_finish(name, "image_csv", shown_csv, names, values, groups, task, drop_other,
                                        min_per_class, on_error, group_salt, options, context, keys=keys,
                                        max_per_class=max_per_class, max_scaling=image_max_scaling,
                                        extra_provenance={"duplicate_rows_dropped": n_dropped})


def _check_path_template(name: str, template) -> None:
    """image_csv's ``path_template``: a str.format template with positional fields only."""
    if template is None:
        return
    problem = None
    if not isinstance(template, str):
        problem = "must be a string"
    else:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
            template.format("cell")
        except (ValueError, IndexError, KeyError, AttributeError) as error:
            problem = f"is not a valid str.format template ({type(error).__name__}: {error})"
        else:
            if not fields:
                problem = "has no {} field for the cell"
    if problem:
        raise DatasetError(f"dataset {name!r}: option 'path_template' {problem}, got {template!r}; "
                           "e.g. \"images/{}.jpg\"")


def _drop_duplicate_rows(name: str, shown_csv: str, names: FileNames, resolved: list[Path], values: list[str],
                         groups: list[str], label_column: str, duplicates: str) -> list[int]:
    """Indices of the rows to keep: the first listing of each image (same resolved path).

    Repeats with another label or group are always an error (which one would be right?); the
    group values are not shown, as they may be patient ids. Identical repeats: an error with
    ``duplicates: raise``, dropped with ``drop``.
    """
    first_of: dict[Path, int] = {}
    repeats: dict[int, list[int]] = {}  # first listing -> the later ones
    for index, path in enumerate(resolved):
        first = first_of.setdefault(path, index)
        if first != index:
            repeats.setdefault(first, []).append(index)
    for first, later in repeats.items():
        rows = [first, *later]
        if len({values[i] for i in rows}) > 1:
            shown = ", ".join(f"line {names.lines[i]}: {values[i]!r}" for i in rows)
            raise DatasetError(f"dataset {name!r}: {shown_csv} lists {names(first, with_line=False)} with "
                               f"conflicting labels: {shown} (column {label_column!r}); keep one row per image")
        if len({groups[i] for i in rows}) > 1:
            shown = ", ".join(str(names.lines[i]) for i in rows)
            raise DatasetError(f"dataset {name!r}: {shown_csv} lists {names(first, with_line=False)} with different "
                               f"groups on lines {shown} (values not shown); keep one row per image")
    if repeats and duplicates == "raise":
        first, later = next(iter(repeats.items()))
        shown = ", ".join(str(names.lines[i]) for i in [first, *later])
        more = f" ({len(repeats) - 1} more image(s) listed more than once)" if len(repeats) > 1 else ""
        raise DatasetError(f"dataset {name!r}: {shown_csv} lists {names(first, with_line=False)} more than once: "
                           f"lines {shown}{more}; remove the repeated rows, or set duplicates: drop to keep the "
                           "first listing of each image (option 'duplicates')")
    dropped = {i for later in repeats.values() for i in later}
    return [i for i in range(len(resolved)) if i not in dropped]


# ----------------------------------------------------------------------------------------------
# DICOM.

DICOM_GROUP_ATTRIBUTES = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")
DICOM_KEYS = ("SOPInstanceUID", "SeriesInstanceUID", "path")
DICOM_FRAMES = ("single", "all", "central_half")


def dicom_to_unit(pixels: np.ndarray, slope: float, intercept: float, photometric: str,
                  window: tuple[float, float] | None, modality_lut: bool = True,
                  max_scaling: bool = False) -> np.ndarray:
    """Stored values -> [0, 1]: the modality rescale (``modality_lut``: x slope + intercept), then
    the window, or with ``max_scaling`` the values divided by the image's maximum (negatives
    clipped to 0, no minimum subtracted: the authors' ``pixel_array * 255 / max``), or else the
    image's own min..max; then MONOCHROME1 inverted so that bright always means high
    attenuation/signal.

    Window: linear from center - width/2 (0) to center + width/2 (1), clipped; the simple form
    most papers mean by "brain window 40/80" (DICOM's VOI LUT differs by half a value).
    """
    values = pixels.astype(np.float64)
    if modality_lut:
        values = values * float(slope) + float(intercept)
    if window is not None and max_scaling:
        raise ValueError("a window and max scaling exclude each other")
    if window is not None:
        center, width = window
        unit = np.clip((values - (center - width / 2.0)) / width, 0.0, 1.0)
    elif max_scaling:
        peak = float(values.max()) if values.size else 0.0
        unit = np.clip(values / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(values)
    else:
        unit = to_unit_range(values)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return unit.astype(np.float32)


def dicom_frames(mode: str, n_frames: int) -> list[int]:
    """The frames of a file that become images: a single-frame file its one image; a multi-frame
    file (NumberOfFrames > 1) is an error with ``single``, every frame with ``all``, frames
    F//4 .. 3F//4 - 1 with ``central_half`` (the authors' prostate notebook:
    ``range(total_slices // 4, (3 * total_slices) // 4)``)."""
    if n_frames <= 1:
        return [0]
    if mode == "single":
        raise ValueError(f"multi-frame DICOM ({n_frames} frames); expected one 2D image per file "
                         "(option 'frames': all or central_half reads the frames)")
    if mode == "all":
        return list(range(n_frames))
    return list(range(n_frames // 4, (3 * n_frames) // 4))


def _n_frames(dataset) -> int:
    return int(dataset.get("NumberOfFrames", 1) or 1)


def _frame_key(relative: str, n_frames: int, frame: int) -> str:
    """An image's max_per_class key: the file's relative path, plus the frame where a file has several."""
    return relative if n_frames <= 1 else f"{relative}#frame{frame}"


@dataclass
class _DicomHeaderJob:
    """The header alone (no pixel data read): what labels a file before it is decoded."""

    frames: str

    def __call__(self, path: str) -> tuple[str, str, int]:
        """(SOPInstanceUID, SeriesInstanceUID, number of frames); the UIDs serve the label lookup only."""
        import pydicom

        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        n_frames = _n_frames(dataset)
        dicom_frames(self.frames, n_frames)  # a multi-frame file with frames: single fails here already
        return (str(dataset.get("SOPInstanceUID", "")).strip(), str(dataset.get("SeriesInstanceUID", "")).strip(),
                n_frames)


@dataclass
class _DicomJob:
    window: tuple[float, float] | None
    modality_lut: bool
    max_scaling: bool
    frames: str
    group_attribute: str | None
    size: int | None
    channels: int | None

    def __call__(self, item: tuple[str, tuple[int, ...] | None]
                 ) -> tuple[list[np.ndarray], list[int], int, str, str, str]:
        """(images, their frame indices, number of frames, SOPInstanceUID, SeriesInstanceUID, group
        id from the header or "") of one file; ``item``: (path, the frames to decode, or None for
        every frame ``frames`` selects). Nothing else leaves the worker."""
        import pydicom

        path, wanted = item
        dataset = pydicom.dcmread(path)
        photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ValueError(f"photometric interpretation {photometric} is not grayscale")
        n_frames = _n_frames(dataset)
        frames = dicom_frames(self.frames, n_frames) if wanted is None else list(wanted)
        pixels = dataset.pixel_array
        stack = pixels[np.newaxis] if n_frames <= 1 else pixels
        if stack.ndim != 3 or len(stack) != max(n_frames, 1):
            raise ValueError(f"pixel array of shape {pixels.shape}; expected "
                             + ("2D" if n_frames <= 1 else f"({n_frames}, rows, columns)"))
        slope = dataset.get("RescaleSlope", 1)
        intercept = dataset.get("RescaleIntercept", 0)
        slope, intercept = 1 if slope in (None, "") else slope, 0 if intercept in (None, "") else intercept
        images = [_to_cache_geometry(dicom_to_unit(stack[frame], slope, intercept, photometric, self.window,
                                                   self.modality_lut, self.max_scaling), self.size, self.channels)
                  for frame in frames]
        uid = str(dataset.get("SOPInstanceUID", "")).strip()
        series = str(dataset.get("SeriesInstanceUID", "")).strip()
        group = str(dataset.get(self.group_attribute, "")).strip() if self.group_attribute else ""
        if self.group_attribute and not group:
            raise ValueError(f"header has no {self.group_attribute}")
        return images, frames, n_frames, uid, series, group


def _window(name: str, window) -> tuple[float, float] | None:
    if window is None:
        return None
    if isinstance(window, dict) and set(window) == {"center", "width"}:
        center, width = window["center"], window["width"]
    else:
        raise DatasetError(f"dataset {name!r}: option 'window' must be {{center: C, width: W}}, got {window!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (center, width)) or width <= 0:
        raise DatasetError(f"dataset {name!r}: option 'window' needs numbers and width > 0, got {window!r}")
    return float(center), float(width)


def _dicom_label_table(name: str, csv_path: Path, key_column: str, key_re: re.Pattern | None, label_column: str,
                       group_column: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """({key: label}, {key: group}) from the labels CSV. A key listed twice with another label (or
    group) is an error naming both lines, never the key: a UID or path may identify a patient."""
    table = read_csv_columns(name, csv_path, {"key_column": key_column, "label_column": label_column,
                                              "group_column": group_column})
    label_of: dict[str, str] = {}
    group_of: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for index, cell in enumerate(table["key_column"]):
        if key_re is not None:
            found = key_re.search(cell)
            if found is None:
                continue
            cell = found.group(1) if key_re.groups else found.group(0)
        value, line = label_key(table["label_column"][index]), table["line"][index]
        group_value = table["group_column"][index] if group_column is not None else ""
        if cell in label_of:
            where = (f"dataset {name!r}: labels CSV {str(csv_path)!r}: lines {line_of[cell]} and {line} hold the "
                     f"same key (column {key_column!r}, option 'key_column')")
            if label_of[cell] != value:
                raise DatasetError(f"{where} with different labels {label_of[cell]!r} and {value!r} (column "
                                   f"{label_column!r}); keep one label per key")
            if group_of.get(cell, "") != group_value:
                raise DatasetError(f"{where} with different groups (column {group_column!r}, values not shown); "
                                   "keep one group per key")
            continue
        label_of[cell], line_of[cell] = value, line
        if group_column is not None:
            group_of[cell] = group_value
    return label_of, group_of


def read_dicom(
    name: str,
    context: ReadContext,
    root: str | None = None,
    pattern: str = "**/*.dcm",
    labels_csv: str | None = None,
    key: str = "SOPInstanceUID",
    key_column: str = "SOPInstanceUID",
    key_regex: str | None = None,
    label_column: str = "label",
    group: str = "PatientID",
    group_column: str | None = None,
    window: dict | None = None,
    frames: str = "single",
    modality_lut: bool = True,
    image_max_scaling: bool = False,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """DICOM files ``root/pattern`` labelled from ``labels_csv``.

    key: ``SOPInstanceUID`` (the CSV's ``key_column`` holds the UID; ``key_regex`` extracts it
    from the cell and drops rows that do not match, e.g. RSNA's ``^(ID_[0-9a-f]+)_any$``),
    ``SeriesInstanceUID`` (every file and frame of the series gets the row's label) or ``path``
    (the CSV holds the file path relative to root). Group: the header attribute ``group``
    (PatientID, StudyInstanceUID, SeriesInstanceUID), or ``group_column`` of the CSV. Files
    without a CSV row are labels outside the task (error, or dropped with drop_other).
    ``frames``: what a multi-frame file yields (:func:`dicom_frames`); its frames share its label
    and group. Intensities: :func:`dicom_to_unit`.

    Files are decoded only when needed: with key ``path`` the labels are known from the listing;
    with a UID key (or multi-frame files), when drop_other or max_per_class can leave files out,
    a header-only pass labels the files (and counts their frames) first.
    """
    _check_common(name, on_error, drop_other, min_per_class, max_per_class)
    root_path = _root(name, root)
    csv_path = _root(name, labels_csv, "labels_csv")
    key = _check_choice(name, "key", key, DICOM_KEYS)
    group = _check_choice(name, "group", group, DICOM_GROUP_ATTRIBUTES)
    frames = _check_choice(name, "frames", frames, DICOM_FRAMES)
    _check_bool(name, "modality_lut", modality_lut)
    _check_bool(name, "image_max_scaling", image_max_scaling)
    key_re = _regex(name, "key_regex", key_regex)
    window_values = _window(name, window)
    if window_values is not None and image_max_scaling:
        raise DatasetError(f"dataset {name!r}: options 'window' and 'image_max_scaling' exclude each other "
                           "(a window maps fixed values to [0, 1]; max scaling divides by each image's maximum)")
    files = sorted(p for p in glob.glob(str(root_path / pattern), recursive=True) if os.path.isfile(p))
    if not files:
        raise DatasetError(f"dataset {name!r}: no files match {pattern!r} under {str(root_path)!r}")
    relative = [Path(p).relative_to(root_path).as_posix() for p in files]
    label_of, group_of = _dicom_label_table(name, csv_path, key_column, key_re, label_column, group_column)
    task = TaskLabels.from_option(name, classes, label_of.values())
    where = f"labels CSV {str(csv_path)!r}"
    # Messages name files by path (through names), never by UID or another header value.
    names = FileNames("DICOM file", relative, files, group_salt)
    skips = Skips(name, on_error, names)

    def lookup(index: int, sop: str, series: str) -> str:  # file ``index``'s key into the CSV
        return {"path": relative[index], "SOPInstanceUID": sop, "SeriesInstanceUID": series}[key]

    dropped_before: dict = {}
    selection = None
    plan = {index: None for index in range(len(files))}  # file index -> its frames to decode (None: all)
    header_pass = (drop_other or max_per_class is not None) and (key != "path" or frames != "single")
    if key == "path" or header_pass:  # labels known before decoding: reject, drop, select first
        headers = parallel_map(_DicomHeaderJob(frames), files, context.threads) if header_pass else None
        file_of, frame_of, item_keys, item_values = [], [], [], []
        for index in range(len(files)):
            sop = series = ""
            frame_list, n_frames = [None], 1
            if headers is not None:
                ok, result = headers[index]
                if not ok:
                    skips.handle(index, f"unreadable or corrupt ({result})", context)
                    continue
                sop, series, n_frames = result
                frame_list = dicom_frames(frames, n_frames)
            value = label_of.get(lookup(index, sop, series), NO_CSV_ROW)
            for frame in frame_list:
                file_of.append(index)
                frame_of.append(frame)
                item_keys.append(_frame_key(relative[index], n_frames, frame))
                item_values.append(value)
        labels, keep, dropped_before = task.assign(name, item_values, where, drop_other,
                                                   items=lambda i: names(file_of[i]))
        wanted = np.flatnonzero(keep)
        chosen, selection = select_per_class(labels, [item_keys[i] for i in wanted], group_salt, max_per_class,
                                             task.classes)
        plan = {}
        for item in wanted[chosen]:
            plan.setdefault(file_of[item], []).append(frame_of[item])
        plan = {index: None if frame_list == [None] else tuple(frame_list) for index, frame_list in plan.items()}
    job = _DicomJob(window_values, modality_lut, image_max_scaling, frames, None if group_column else group,
                    context.size, context.channels)
    images, values, groups, kept = [], [], [], []
    n_multiframe = 0
    results = parallel_map(job, [(files[index], frame_list) for index, frame_list in plan.items()], context.threads)
    for index, (ok, result) in zip(plan, results):
        if not ok:
            skips.handle(index, f"unreadable or corrupt ({result})", context)
            continue
        frame_images, _, n_frames, uid, series, header_group = result
        n_multiframe += n_frames > 1
        lookup_key = lookup(index, uid, series)
        raw_group = group_of.get(lookup_key, "") if group_column else header_group
        group_hash = salted_hash(group_salt, raw_group if raw_group else relative[index])
        for image in frame_images:
            images.append(image)
            kept.append(index)
            values.append(label_of.get(lookup_key, NO_CSV_ROW))
            groups.append(group_hash)
    skips.report(context)
    options = dict(root=root, pattern=pattern, labels_csv=labels_csv, key=key, key_column=key_column,
                   key_regex=key_regex, label_column=label_column, group=group, group_column=group_column,
                   window=window, frames=frames, modality_lut=modality_lut, image_max_scaling=image_max_scaling,
                   classes=classes, drop_other=drop_other, min_per_class=min_per_class, max_per_class=max_per_class,
                   on_error=on_error)
    provenance = _common_provenance("dicom", options, group_salt, ("pydicom",))
    provenance.update(skips.provenance(), files_matched=len(relative), files_decoded=len(plan),
                      multiframe_files=int(n_multiframe))
    if selection is not None:
        provenance["max_per_class_counts"] = selection
    return _finish(name, where, images, values, groups, task, drop_other, min_per_class,
                   provenance, context, dropped_before=dropped_before, items=lambda i: names(kept[i]))


# ----------------------------------------------------------------------------------------------
# NIfTI volumes, sliced.

NIFTI_ORIENTATIONS = ("canonical", "stored")


def ambiguous_slices(has_mask: np.ndarray, window: int) -> np.ndarray:
    """The authors' BraTS rule (readimg_brats notebook, ``label_slices``), one bool per slice:
    slice i is ambiguous when the mask labels of slices i .. i+window-1 are mixed, for i in
    ``range(n_slices - window)``, so the last ``window`` slices are never ambiguous. 0: none."""
    labels = np.asarray(has_mask, dtype=np.int64)
    ambiguous = np.zeros(len(labels), dtype=bool)
    for index in range(len(labels) - window if window > 0 else 0):
        total = int(labels[index:index + window].sum())
        ambiguous[index] = 0 < total < window
    return ambiguous


def brain_mask(image: np.ndarray) -> tuple[int, int]:
    """(area in pixels, number of regions) of the authors' brain mask of a slice (readimg_brats
    notebook, ``get_mask``): voxels > 0, eroded and then closed with disk(2), Roberts edges,
    holes filled, regions labelled with skimage's default (full) connectivity.

    scipy.ndimage's binary erosion/dilation with skimage's border values (erosion: outside is
    foreground; dilation: background) stand in for skimage.morphology.binary_erosion and
    binary_closing, which skimage 0.26 deprecates; for the symmetric disk they are the same.
    """
    from scipy import ndimage
    from skimage.filters import roberts
    from skimage.measure import label
    from skimage.morphology import disk

    footprint = disk(2)
    binary = ndimage.binary_erosion(image > 0, structure=footprint, border_value=1)
    binary = ndimage.binary_dilation(binary, structure=footprint, border_value=0)
    binary = ndimage.binary_erosion(binary, structure=footprint, border_value=1)
    filled = ndimage.binary_fill_holes(roberts(binary))
    return int(filled.sum()), int(label(filled).max())


@dataclass
class _NiftiJob:
    axis: int
    percentiles: tuple[float, float] | None
    foreground_threshold: float
    min_foreground: float
    size: int | None
    channels: int | None
    canonical: bool = True
    ambiguous_window: int = 0
    min_brain_area: int | None = None
    max_brain_regions: int | None = None
    max_scaling: bool = False

    def __call__(self, paths: tuple[str, str | None]) -> tuple[list[np.ndarray], list[int], list[str], dict,
                                                               list[np.ndarray]]:
        """(slices, slice indices, mask labels "0"/"1" or [], counts, background masks) of one
        volume. A slice's background: its voxels at or below ``foreground_threshold`` (on the
        scale of the slice as returned), resized like the slice when the cache size is known.

        Slice filters, each slice counted under the first that drops it: ambiguous (computed on
        the mask labels of all slices), too little foreground, brain area/regions."""
        import nibabel

        image_path, mask_path = paths
        image = nibabel.load(image_path)
        mask_image = nibabel.load(mask_path) if mask_path is not None else None
        if self.canonical:  # RAS+, so that axis 2 is axial whatever the stored orientation
            image = nibabel.as_closest_canonical(image)
            mask_image = nibabel.as_closest_canonical(mask_image) if mask_image is not None else None
        volume = np.asarray(image.dataobj, dtype=np.float32)
        if volume.ndim == 4 and volume.shape[3] == 1:
            volume = volume[..., 0]
        if volume.ndim != 3:
            raise ValueError(f"image has shape {volume.shape}; expected a 3D volume")
        mask = None
        if mask_image is not None:
            mask = np.asarray(mask_image.dataobj)
            if mask.shape != volume.shape:
                # no file names here: the message naming the volume (and mask) adds them
                shown = " (reoriented to RAS+, option 'orientation')" if self.canonical else ""
                raise ShapeMismatch(f"the mask has shape {mask.shape} but the image has shape {volume.shape}{shown}")
        finite = volume[np.isfinite(volume)]
        if finite.size == 0:
            raise ValueError("volume has no finite voxel")
        volume = np.nan_to_num(volume, nan=float(finite.min()))
        if self.percentiles is not None:
            lo, hi = np.percentile(finite, self.percentiles)
        else:
            lo, hi = float(finite.min()), float(finite.max())
        volume = np.clip((volume - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(volume)
        # Views, not np.take: take copies the whole (Fortran-ordered) volume on every call.
        stack = np.moveaxis(volume, self.axis, 0)
        foreground = (stack > self.foreground_threshold).mean(axis=(1, 2))
        has_mask = np.any(np.moveaxis(mask, self.axis, 0) != 0, axis=(1, 2)) if mask is not None else None
        ambiguous = (ambiguous_slices(has_mask, self.ambiguous_window) if has_mask is not None
                     else np.zeros(len(stack), dtype=bool))
        brain_filter = self.min_brain_area is not None or self.max_brain_regions is not None
        counts = {"slices": len(stack), "dropped_ambiguous": 0, "dropped_foreground": 0, "dropped_brain_area": 0}
        slices, indices, labels, backgrounds = [], [], [], []
        for index in range(len(stack)):
            if ambiguous[index]:
                counts["dropped_ambiguous"] += 1
                continue
            if float(foreground[index]) < self.min_foreground:
                counts["dropped_foreground"] += 1
                continue
            if brain_filter:
                area, regions = brain_mask(stack[index])
                if ((self.max_brain_regions is not None and regions > self.max_brain_regions)
                        or (self.min_brain_area is not None and area < self.min_brain_area)):
                    counts["dropped_brain_area"] += 1
                    continue
            plane = scale_by_max(stack[index]) if self.max_scaling else stack[index]
            slices.append(_to_cache_geometry(plane, self.size, self.channels))
            background = plane <= self.foreground_threshold
            resized = self.size is not None and self.channels is not None  # as _to_cache_geometry
            backgrounds.append(resize_mask(background, self.size) if resized else background)
            indices.append(index)
            if has_mask is not None:
                labels.append("1" if has_mask[index] else "0")
        return slices, indices, labels, counts, backgrounds


class ShapeMismatch(ValueError):
    """A segmentation mask whose shape differs from its image's."""


def read_nifti(
    name: str,
    context: ReadContext,
    root: str | None = None,
    pattern: str = "**/*.nii*",
    mask_replace: dict | None = None,
    labels_csv: str | None = None,
    volume_column: str = "volume",
    slice_column: str = "slice",
    label_column: str = "label",
    axis: int = 2,
    percentiles: list | None = None,
    foreground_threshold: float = 0.05,
    min_foreground: float = 0.0,
    group_regex: str | None = None,
    orientation: str = "canonical",
    ambiguous_window: int = 0,
    min_brain_area: int | None = None,
    max_brain_regions: int | None = None,
    image_max_scaling: bool = False,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """Slices of NIfTI volumes ``root/pattern`` along ``axis`` of the volume reoriented to RAS+
    (``orientation: canonical``, nibabel.as_closest_canonical; axis 2 is then axial) or of the
    array as stored (``stored``).

    Labels: from a mask found by ``mask_replace`` ({old: new} substring replacements in the image
    path, e.g. {"_flair.nii.gz": "_seg.nii.gz"}); source label "1" when the mask has a non-zero
    voxel in the slice, else "0". Or from ``labels_csv`` rows (volume path relative to root,
    slice index, label). Intensities: linear per volume from its ``percentiles`` [low, high]
    (e.g. [0.5, 99.5]) or its min..max, clipped to [0, 1]. Slices whose fraction of voxels above
    ``foreground_threshold`` (on that [0, 1] scale) is below ``min_foreground`` are dropped;
    so are, with ``ambiguous_window`` (mask labels only), the slices :func:`ambiguous_slices`
    flags, and with ``min_brain_area`` / ``max_brain_regions`` those whose :func:`brain_mask`
    is smaller or has more regions (the authors' BraTS filters). ``image_max_scaling`` then
    divides each slice by its maximum.
    Background (``RawDataset.backgrounds``, stored in the cache): a slice's voxels at or below
    ``foreground_threshold``, the explicit mask that background noise is added to.
    Group: the volume's relative path, or the capture of ``group_regex`` in it (patient id).
    A slice's ``max_per_class`` key: ``<relative volume path>#slice<index>``.
    """
    _check_common(name, on_error, drop_other, min_per_class, max_per_class)
    root_path = _root(name, root)
    if (mask_replace is None) == (labels_csv is None):
        raise DatasetError(f"dataset {name!r}: give exactly one of 'mask_replace' and 'labels_csv'")
    orientation = _check_choice(name, "orientation", orientation, NIFTI_ORIENTATIONS)
    _check_count(name, "ambiguous_window", ambiguous_window, 0)
    if ambiguous_window and labels_csv is not None:
        raise DatasetError(f"dataset {name!r}: option 'ambiguous_window' needs mask labels ('mask_replace'), "
                           "not 'labels_csv'")
    _check_count(name, "min_brain_area", min_brain_area, 1)
    _check_count(name, "max_brain_regions", max_brain_regions, 1)
    _check_bool(name, "image_max_scaling", image_max_scaling)
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise DatasetError(f"dataset {name!r}: option 'axis' must be 0, 1 or 2, got {axis!r}")
    if percentiles is not None:
        if (not isinstance(percentiles, (list, tuple)) or len(percentiles) != 2
                or not 0 <= percentiles[0] < percentiles[1] <= 100):
            raise DatasetError(f"dataset {name!r}: option 'percentiles' must be [low, high] with "
                               f"0 <= low < high <= 100, got {percentiles!r}")
        percentiles = (float(percentiles[0]), float(percentiles[1]))
    if not 0 <= float(min_foreground) <= 1:
        raise DatasetError(f"dataset {name!r}: option 'min_foreground' must lie in [0, 1], got {min_foreground!r}")
    group_re = _regex(name, "group_regex", group_regex)
    files = sorted(p for p in glob.glob(str(root_path / pattern), recursive=True) if os.path.isfile(p))
    if mask_replace is not None:
        if not isinstance(mask_replace, dict) or not mask_replace:
            raise DatasetError(f"dataset {name!r}: option 'mask_replace' must map old -> new path parts, "
                               f"got {mask_replace!r}")
        masks = []
        for path in files:
            mask = path
            for old, new in mask_replace.items():
                mask = mask.replace(str(old), str(new))
            masks.append(mask)
        # The pattern may match the masks too (e.g. "*.nii.gz"): a mask is never its own image.
        mask_set = set(masks) - set(p for p, m in zip(files, masks) if p == m)
        pairs = [(p, m) for p, m in zip(files, masks) if p not in mask_set]
    else:
        pairs = [(p, None) for p in files]
    if not pairs:
        raise DatasetError(f"dataset {name!r}: no NIfTI files match {pattern!r} under {str(root_path)!r}")
    relative = [Path(p).relative_to(root_path).as_posix() for p, _ in pairs]
    names = FileNames("NIfTI volume", relative, [p for p, _ in pairs], group_salt)
    if mask_replace is not None:
        unpaired = [i for i, (p, m) in enumerate(pairs) if p == m]
        if unpaired:
            raise DatasetError(f"dataset {name!r}: mask_replace {mask_replace} does not change the path of "
                               f"{', '.join(names(i) for i in unpaired[:N_NAMED_SKIPS])}")
        names = replace(names, masks=[m for _, m in pairs], root=root_path)
    slice_labels: dict[tuple[str, int], str] = {}
    if labels_csv is not None:
        csv_path = _root(name, labels_csv, "labels_csv")
        table = read_csv_columns(name, csv_path, {"volume_column": volume_column, "slice_column": slice_column,
                                                  "label_column": label_column})
        for volume, slice_text, label, line in zip(table["volume_column"], table["slice_column"],
                                                   table["label_column"], table["line"]):
            try:
                slice_labels[(volume, int(float(slice_text)))] = label_key(label)
            except ValueError:
                # the line, not the volume: its path may hold a patient id
                raise DatasetError(f"dataset {name!r}: CSV {str(csv_path)!r} line {line}: slice {slice_text!r} "
                                   f"(column {slice_column!r}, option 'slice_column') is not an integer") from None
        where = f"labels CSV {str(csv_path)!r}"
    else:
        where = f"masks under {str(root_path)!r}"
    job = _NiftiJob(axis, percentiles, float(foreground_threshold), float(min_foreground), context.size,
                    context.channels, orientation == "canonical", int(ambiguous_window), min_brain_area,
                    max_brain_regions, image_max_scaling)
    skips = Skips(name, on_error, names)
    images, values, groups, backgrounds, keys = [], [], [], [], []
    totals = {"slices": 0, "dropped_ambiguous": 0, "dropped_foreground": 0, "dropped_brain_area": 0}
    n_volumes = 0
    for index, (ok, result) in enumerate(parallel_map(job, pairs, context.threads)):
        if not ok:
            problem = result if result.startswith("ShapeMismatch") else f"unreadable or corrupt ({result})"
            skips.handle(index, problem, context)
            continue
        slices, indices, mask_labels, counts, slice_backgrounds = result
        n_volumes += 1
        for count in totals:
            totals[count] += counts[count]
        volume_id = _match(name, "group_regex", group_re, names, index) if group_re else relative[index]
        group_hash = salted_hash(group_salt, volume_id)
        for position, slice_index in enumerate(indices):
            images.append(slices[position])
            backgrounds.append(slice_backgrounds[position])
            values.append(mask_labels[position] if labels_csv is None
                          else slice_labels.get((relative[index], slice_index), NO_CSV_ROW))
            groups.append(group_hash)
            keys.append(f"{relative[index]}#slice{slice_index}")
    skips.report(context)
    if not images:
        raise DatasetError(f"dataset {name!r}: no slice of {n_volumes} volume(s) under {str(root_path)!r} passes "
                           f"the slice filters (of {totals['slices']} slices dropped: ambiguous "
                           f"{totals['dropped_ambiguous']}, foreground {totals['dropped_foreground']} "
                           f"(min_foreground {min_foreground}), brain area {totals['dropped_brain_area']})")
    task = TaskLabels.from_option(name, classes, values)
    options = dict(root=root, pattern=pattern, mask_replace=mask_replace, labels_csv=labels_csv,
                   volume_column=volume_column, slice_column=slice_column, label_column=label_column, axis=axis,
                   percentiles=list(percentiles) if percentiles else None, foreground_threshold=foreground_threshold,
                   min_foreground=min_foreground, group_regex=group_regex, orientation=orientation,
                   ambiguous_window=ambiguous_window, min_brain_area=min_brain_area,
                   max_brain_regions=max_brain_regions, image_max_scaling=image_max_scaling, classes=classes,
                   drop_other=drop_other, min_per_class=min_per_class, max_per_class=max_per_class,
                   on_error=on_error)
    provenance = _common_provenance("nifti", options, group_salt, ("nibabel", "scikit-image", "scipy"))
    provenance.update(skips.provenance(), volumes=n_volumes, slices_total=totals["slices"],
                      slices_dropped_ambiguous=totals["dropped_ambiguous"],
                      slices_dropped_foreground=totals["dropped_foreground"],
                      slices_dropped_brain_area=totals["dropped_brain_area"])
    provenance["background"] = f"explicit: voxels <= foreground_threshold {float(foreground_threshold)}"
    return _finish(name, where, images, values, groups, task, drop_other, min_per_class, provenance, context,
                   backgrounds=backgrounds, max_per_class=max_per_class, keys=keys, salt=group_salt)


# ----------------------------------------------------------------------------------------------
# MedMNIST .npz


MEDMNIST_SPLITS = ("train", "val", "test")


def read_medmnist(
    name: str,
    context: ReadContext,
    npz: str | None = None,
    split: str = "all",
    label_column: int | None = None,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """A MedMNIST .npz (``{split}_images`` (N, H, W) or (N, H, W, 3) uint8, ``{split}_labels``
    (N, 1) or (N, K) multi-label, where ``label_column`` picks the task's column).

    MedMNIST ships no patient ids, so every image is its own group: images of one patient can
    land on both sides of a split (a documented caveat of these data sets). The group string
    ``medmnist:{split}:{index}`` is also the image's ``max_per_class`` key.
    """
    _check_common(name, on_error, drop_other, min_per_class, max_per_class)
    npz_path = _root(name, npz, "npz")
    split = _check_choice(name, "split", split, ["all", *MEDMNIST_SPLITS])
    parts = list(MEDMNIST_SPLITS) if split == "all" else [split]
    images, values, groups, counts = [], [], [], {}
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            keys = set(archive.files)
            for part in parts:
                if f"{part}_images" not in keys or f"{part}_labels" not in keys:
                    if split == "all":
                        continue
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r} has no {part}_images/{part}_labels; "
                                       f"keys: {sorted(keys)}")
                data = archive[f"{part}_images"]
                labels = archive[f"{part}_labels"]
                if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[-1] not in (1, 3)):
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r}: {part}_images has shape {data.shape}; "
                                       "expected (N, H, W) or (N, H, W, 3)")
                labels = labels.reshape(len(labels), -1)
                if len(labels) != len(data):
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r}: {len(data)} {part} images but "
                                       f"{len(labels)} labels")
                if labels.shape[1] > 1 and label_column is None:
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r} is multi-label ({labels.shape[1]} "
                                       "columns); choose the task with option 'label_column'")
                column = 0 if labels.shape[1] == 1 else label_column
                if isinstance(column, bool) or not isinstance(column, int) or not 0 <= column < labels.shape[1]:
                    raise DatasetError(f"dataset {name!r}: option 'label_column' must be in 0..{labels.shape[1] - 1}"
                                       f" for {str(npz_path)!r}, got {label_column!r}")
                scale = np.float32(255.0) if data.dtype == np.uint8 else np.float32(max(1.0, float(data.max())))
                counts[part] = int(len(data))
                for index in range(len(data)):
                    images.append(data[index].astype(np.float32) / scale)
                    values.append(label_key(labels[index, column]))
                    groups.append(f"medmnist:{part}:{index}")
    except (OSError, ValueError, EOFError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"dataset {name!r}: cannot read MedMNIST file {str(npz_path)!r}: "
                           f"{type(error).__name__}: {error}") from None
    if not images:
        raise DatasetError(f"dataset {name!r}: {str(npz_path)!r} holds none of the splits {parts}")
    task = TaskLabels.from_option(name, classes, values)
    options = dict(npz=npz, split=split, label_column=label_column, classes=classes, drop_other=drop_other,
                   min_per_class=min_per_class, max_per_class=max_per_class)
    provenance = _common_provenance("medmnist", options, group_salt, ())
    provenance.update(images_per_split=counts,
                      caveat="MedMNIST has no patient ids: one group per image, a patient may span splits")
    return _finish(name, f"MedMNIST file {str(npz_path)!r}", images, values, groups, task, drop_other,
                   min_per_class, provenance, context, max_per_class=max_per_class, keys=groups, salt=group_salt)


# Options that name a file or folder (relative ones are resolved by sources.load_source).
PATH_OPTIONS = ("root", "csv", "labels_csv", "npz")

READERS: dict[str, Callable[..., RawDataset]] = {
    "torchvision": read_torchvision,
    "image_folder": read_image_folder,
    "image_csv": read_image_csv,
    "dicom": read_dicom,
    "nifti": read_nifti,
    "medmnist": read_medmnist,
}
