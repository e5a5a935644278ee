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
    if base_dir is not None:
        for key in readers.PATH_OPTIONS:
            value = options.get(key)
            if isinstance(value, str) and value and not Path(os.path.expanduser(value)).is_absolute():
                options[key] = str(Path(base_dir) / value)
    context = readers.ReadContext(threads=threads, log=log, size=size, channels=channels)
    if log is not None:
        log.info("%s: reading source type %s with %d worker(s)", name, kind, threads)
    return reader(name, context, **options)
