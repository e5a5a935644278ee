"""What every source type shares: the reader's context, the registry entry, option checks,
task labels, file naming for messages, skips, the worker pool and the final label mapping.

Readers and generators (one module per type in this package) import from here; the dispatcher
(:func:`intrinsic.sources.load_source`) builds the :class:`ReadContext` and records what was
configured, so a reader adds to its provenance only what it measured.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import logging
import math
import multiprocessing
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..cache import DatasetError, RawDataset, convert_image, quantize
from ..logs import private

DEFAULT_GROUP_SALT = "intrinsic-properties/v1"
# The label value of a DICOM file or NIfTI slice that its labels CSV does not list.
NO_CSV_ROW = "<no CSV row>"
# How many skipped files are named in the log and in meta.json (the count is always complete).
N_NAMED_SKIPS = 5
# Worker pool of parallel_map: "process" (default) or "thread"; benchmarks/bench_prepare.py
# measures both (benchmarks/README.md).
POOL_KIND = "process"


@dataclass(frozen=True)
class SourceType:
    """One entry of :data:`intrinsic.sources.SOURCES`.

    read: ``read(name, context, **options) -> RawDataset``; its keyword parameters are the
        type's options (config/config.schema.yaml lists the same ones, tests/test_sources.py).
    packages: whose versions the provenance records (numpy always).
    paths: options naming a file or folder; relative ones are relative to the workflow folder.
    """

    read: Callable[..., RawDataset]
    packages: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


@dataclass
class ReadContext:
    """What a reader or generator needs besides its options: worker count, log, cache geometry."""

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


def numeric_first(key: str):
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def require_path(name: str, root, what: str = "root") -> Path:
    if root is None or str(root).strip() == "":
        raise DatasetError(f"dataset {name!r}: option {what!r} is required")
    path = Path(os.path.expanduser(str(root)))
    if not path.exists():
        raise DatasetError(f"dataset {name!r}: {what} {str(path)!r} does not exist")
    return path


def check_choice(name: str, option: str, value, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise DatasetError(f"dataset {name!r}: option {option!r} must be one of {choices}, got {value!r}")
    return value


def compile_regex(name: str, option: str, pattern):
    if pattern is None:
        return None
    try:
        compiled = re.compile(str(pattern))
    except re.error as error:
        raise DatasetError(f"dataset {name!r}: option {option!r} is not a valid regular expression: {error}") from None
    return compiled


def match_path(name: str, option: str, regex: re.Pattern, names: FileNames, index: int) -> str:
    """The first capture group (or the whole match) of ``regex`` in file ``index``'s relative path."""
    found = regex.search(names.relative[index])
    if found is None:
        raise DatasetError(f"dataset {name!r}: option {option!r} ({regex.pattern!r}) does not match {names(index)}")
    return found.group(1) if regex.groups else found.group(0)


def check_bool(name: str, option: str, value) -> bool:
    if not isinstance(value, bool):
        raise DatasetError(f"dataset {name!r}: option {option!r} must be true or false, got {value!r}")
    return value


def check_count(name: str, option: str, value, minimum: int, optional: bool = True) -> int | None:
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
    counts = {"before": {c: int(n) for c, n in zip(classes, before, strict=True)},
              "after": {c: int(n) for c, n in zip(classes, after, strict=True)}}
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
            values = sorted(set(observed), key=numeric_first)
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
                f"{dict(zip(self.classes, self._values_per_class(), strict=True))}; map them in 'classes' or set "
                "drop_other: true"
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


def to_cache_geometry(image: np.ndarray, size: int | None, channels: int | None) -> np.ndarray:
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


def finish(
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

    ``provenance``: what the reader measured; the labels' counts are added here (the options
    and versions are load_source's).
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
    small = {c: int(n) for index, (c, n) in enumerate(zip(task.classes, counts, strict=True))
             if n < min_per_class and (read_classes is None or index in read_classes)}
    if small:
        raise DatasetError(
            f"dataset {name!r}: {where}: too few images of class(es) {small} (class: count); "
            f"need at least {min_per_class} each (option min_per_class)"
        )
    if dropped:
        context.info("%s: dropped %d image(s) with labels outside the task: %s", name, sum(dropped.values()), dropped)
    provenance["dropped_labels"] = {("<empty>" if k == "" else k): int(v) for k, v in sorted(dropped.items())}
    provenance["class_values"] = dict(zip(task.classes, task._values_per_class(), strict=True))
    return RawDataset(
        name=name,
        images=kept_images,
        labels=labels,
        groups=np.asarray([str(g) for g in kept_groups], dtype=str),
        classes=task.classes,
        provenance=provenance,
        backgrounds=kept_backgrounds,
    )


def check_common(name: str, on_error, drop_other, min_per_class, max_per_class) -> None:
    check_choice(name, "on_error", on_error, ["raise", "skip"])
    check_bool(name, "drop_other", drop_other)
    check_count(name, "min_per_class", min_per_class, 1, optional=False)
    check_count(name, "max_per_class", max_per_class, 1)



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
