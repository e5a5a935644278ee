"""Image files (PNG, JPEG, TIFF, ...): the decoding shared by ``image_folder`` and ``image_csv``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cache import RawDataset, to_unit_range
from .common import (
    FileNames,
    ReadContext,
    Skips,
    TaskLabels,
    finish,
    parallel_map,
    scale_by_max,
    select_per_class,
    to_cache_geometry,
)


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
        return to_cache_geometry(scale_by_max(image) if self.max_scaling else image, self.size, self.channels)


def _decode_files(paths: list[str], indices: list[int], context: ReadContext, skips: Skips,
                  max_scaling: bool = False) -> list:
    """Decode the files ``indices`` of the listing in parallel; (index, image) of the readable ones, in order."""
    job = _ImageJob(context.size, context.channels, max_scaling)
    results = parallel_map(job, [paths[i] for i in indices], context.threads)
    decoded = []
    for index, (ok, result) in zip(indices, results, strict=True):
        if ok:
            decoded.append((index, result))
        else:
            skips.handle(index, f"unreadable or corrupt image ({result})", context)
    return decoded


def decode_and_finish(name: str, where: str, names: FileNames, values: list[str], groups: list[str],
                      task: TaskLabels, drop_other: bool, min_per_class: int, on_error: str, group_salt: str,
                      context: ReadContext, *, keys: list[str], max_per_class: int | None, max_scaling: bool,
                      read_classes: set[int] | None = None, extra_provenance: dict | None = None) -> RawDataset:
    """Label, select and decode the listed image files, then :func:`~intrinsic.sources.common.finish`.

    Labels first: a value outside the task fails before a single file is decoded, and files of
    dropped labels, or left out by max_per_class, are never decoded."""
    labels, keep, dropped = task.assign(name, values, where, drop_other, items=names)
    wanted = np.flatnonzero(keep)
    chosen, selection = select_per_class(labels, [keys[i] for i in wanted], group_salt, max_per_class, task.classes)
    skips = Skips(name, on_error, names)
    decoded = _decode_files(names.paths, [int(i) for i in wanted[chosen]], context, skips, max_scaling)
    skips.report(context)
    kept = [index for index, _ in decoded]
    provenance = {**skips.provenance(), "files_listed": len(names.paths), **(extra_provenance or {})}
    if selection is not None:
        provenance["max_per_class_counts"] = selection
    return finish(name, where, [image for _, image in decoded], [values[i] for i in kept],
                  [groups[i] for i in kept], task, drop_other, min_per_class, provenance, context,
                  dropped_before=dropped, items=lambda i: names(kept[i]), read_classes=read_classes)
