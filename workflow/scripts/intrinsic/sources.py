"""One entry point for every dataset source of the catalog: ``load_source(name, source)``.

``source`` is a catalog entry's ``source`` block: ``type`` plus options. Embedded kinds
(sklearn_digits, photo_patches, lfw_faces, lesion, synthetic_manifold) go to
:func:`intrinsic.embedded.generate`; real-data types (torchvision, image_folder, image_csv,
dicom, nifti, medmnist) to :mod:`intrinsic.readers`. Unknown types and options are a
DatasetError naming the dataset.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import numpy as np

from . import embedded, readers
from .cache import DatasetError, RawDataset

SOURCE_TYPES = sorted(embedded.GENERATORS) + sorted(readers.READERS)


def load_source(
    name: str,
    source: dict,
    threads: int = 1,
    log: logging.Logger | None = None,
    size: int | None = None,
    channels: int | None = None,
    base_dir: str | os.PathLike | None = None,
) -> RawDataset:
    """The RawDataset of catalog entry ``name``.

    threads: worker processes for decoding real files (embedded generators ignore it).
    size, channels: the cache geometry; when both are given, readers resize in their workers
    (in parallel) instead of leaving all resizing to ``cache.prepare`` (serial). Either way the
    cache written from the result is the same.
    base_dir: folder that relative file options (``readers.PATH_OPTIONS``) are relative to; the
    workflow passes its own folder, so vendored data (data/) is found from any working directory.
    """
    if not isinstance(source, dict) or "type" not in source:
        raise DatasetError(f"dataset {name!r}: 'source' must be a mapping with a 'type', got {source!r}")
    kind = source["type"]
    options = {key: value for key, value in source.items() if key != "type"}
    if kind in embedded.GENERATORS:
        return embedded.generate(name, kind, **options)
    if kind not in readers.READERS:
        raise DatasetError(f"dataset {name!r}: unknown source type {kind!r}; valid types: {SOURCE_TYPES}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise DatasetError(f"dataset {name!r}: threads must be an integer >= 1, got {threads!r}")
    reader = readers.READERS[kind]
    valid = list(inspect.signature(reader).parameters)[2:]  # after (name, context)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DatasetError(f"dataset {name!r}: source type {kind!r} has no option(s) {unknown}; valid options: {valid}")
    options = _resolve_paths(options, base_dir)
    context = readers.ReadContext(threads=threads, log=log, size=size, channels=channels)
    if log is not None:
        log.info("%s: reading source type %s with %d worker(s)", name, kind, threads)
    return reader(name, context, **options)


def _resolve_paths(options: dict, base_dir) -> dict:
    """``options`` with relative file options (``readers.PATH_OPTIONS``) joined to ``base_dir``."""
    options = dict(options)
    if base_dir is not None:
        for key in readers.PATH_OPTIONS:
            value = options.get(key)
            if isinstance(value, str) and value and not Path(os.path.expanduser(value)).is_absolute():
                options[key] = str(Path(base_dir) / value)
    return options


def drawn_pair_classes(name: str, source: dict, pairs: int, class_pairs: list | None = None,
                       base_dir: str | os.PathLike | None = None) -> list[str]:
    """The class folders a ``read_classes: drawn_pairs`` cache reads: those of the first ``pairs``
    entries of the dataset's class-pair order over every class folder of the source.

    The order is ``splits.class_pair_order`` over the whole class list (ImageNet: all 1000
    synsets), so the seeds and Fig. 1's pairings get the same pairs as from a cache of every
    class, while only 2 x ``pairs`` folders at most are decoded.
    """
    from .splits import class_pair_order

    if source.get("type") != "image_folder" or source.get("label_regex") is not None:
        raise DatasetError(f"dataset {name!r}: read_classes: drawn_pairs needs a source of type image_folder "
                           "whose labels are its class folders (no label_regex)")
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise DatasetError(f"dataset {name!r}: the number of drawn class pairs must be an integer >= 1, got {pairs!r}")
    options = _resolve_paths({k: v for k, v in source.items() if k != "type"}, base_dir)
    listed = options.get("classes")
    if listed is None:
        universe = readers.list_class_folders(name, options.get("root"), options.get("extensions"))
    elif isinstance(listed, list):
        universe = [readers.label_key(value) for value in listed]  # as the reader's class list spells them
    else:
        raise DatasetError(f"dataset {name!r}: read_classes: drawn_pairs needs 'classes' to be a list of class "
                           f"folders (or absent: every folder), got {listed!r}")
    order = class_pair_order(name, universe, np.arange(len(universe)), class_pairs)
    return sorted({universe[index] for pair in order[:pairs] for index in pair})
