"""Source type ``nifti``: NIfTI volumes via nibabel, reoriented to RAS+ and sliced along one
axis; labels from a mask or a CSV; the authors' BraTS slice filters."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..cache import DatasetError, RawDataset, resize_mask
from .common import (
    DEFAULT_GROUP_SALT,
    N_NAMED_SKIPS,
    NO_CSV_ROW,
    FileNames,
    ReadContext,
    Skips,
    TaskLabels,
    check_bool,
    check_choice,
    check_common,
    check_count,
    compile_regex,
    finish,
    label_key,
    match_path,
    parallel_map,
    read_csv_columns,
    require_path,
    salted_hash,
    scale_by_max,
    to_cache_geometry,
)

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
    """Decode one volume in a worker: load, normalise, slice and filter."""

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
        volume, mask = self._load(*paths)
        # Views, not np.take: take copies the whole (Fortran-ordered) volume on every call.
        stack = np.moveaxis(volume, self.axis, 0)
        foreground = (stack > self.foreground_threshold).mean(axis=(1, 2))
        has_mask = np.any(np.moveaxis(mask, self.axis, 0) != 0, axis=(1, 2)) if mask is not None else None
        ambiguous = (ambiguous_slices(has_mask, self.ambiguous_window) if has_mask is not None
                     else np.zeros(len(stack), dtype=bool))
        counts = {"slices": len(stack), "dropped_ambiguous": 0, "dropped_foreground": 0, "dropped_brain_area": 0}
        slices, indices, labels, backgrounds = [], [], [], []
        for index in range(len(stack)):
            dropped_by = self._dropped_by(stack[index], bool(ambiguous[index]), float(foreground[index]))
            if dropped_by is not None:
                counts[dropped_by] += 1
                continue
            plane = scale_by_max(stack[index]) if self.max_scaling else stack[index]
            slices.append(to_cache_geometry(plane, self.size, self.channels))
            background = plane <= self.foreground_threshold
            resized = self.size is not None and self.channels is not None  # as to_cache_geometry
            backgrounds.append(resize_mask(background, self.size) if resized else background)
            indices.append(index)
            if has_mask is not None:
                labels.append("1" if has_mask[index] else "0")
        return slices, indices, labels, counts, backgrounds

    def _load(self, image_path: str, mask_path: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(volume scaled to [0, 1] by its percentiles or min..max, mask or None), both 3D."""
        import nibabel

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
        return volume, mask

    def _dropped_by(self, plane: np.ndarray, ambiguous: bool, foreground: float) -> str | None:
        """The count of the first slice filter that drops ``plane``, or None when it is kept."""
        if ambiguous:
            return "dropped_ambiguous"
        if foreground < self.min_foreground:
            return "dropped_foreground"
        if self.min_brain_area is not None or self.max_brain_regions is not None:
            area, regions = brain_mask(plane)
            if ((self.max_brain_regions is not None and regions > self.max_brain_regions)
                    or (self.min_brain_area is not None and area < self.min_brain_area)):
                return "dropped_brain_area"
        return None


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
    check_common(name, on_error, drop_other, min_per_class, max_per_class)
    root_path = require_path(name, root)
    if (mask_replace is None) == (labels_csv is None):
        raise DatasetError(f"dataset {name!r}: give exactly one of 'mask_replace' and 'labels_csv'")
    orientation = check_choice(name, "orientation", orientation, NIFTI_ORIENTATIONS)
    check_count(name, "ambiguous_window", ambiguous_window, 0)
    if ambiguous_window and labels_csv is not None:
        raise DatasetError(f"dataset {name!r}: option 'ambiguous_window' needs mask labels ('mask_replace'), "
                           "not 'labels_csv'")
    check_count(name, "min_brain_area", min_brain_area, 1)
    check_count(name, "max_brain_regions", max_brain_regions, 1)
    check_bool(name, "image_max_scaling", image_max_scaling)
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise DatasetError(f"dataset {name!r}: option 'axis' must be 0, 1 or 2, got {axis!r}")
    percentiles = _check_percentiles(name, percentiles)
    if not 0 <= float(min_foreground) <= 1:
        raise DatasetError(f"dataset {name!r}: option 'min_foreground' must lie in [0, 1], got {min_foreground!r}")
    group_re = compile_regex(name, "group_regex", group_regex)
    pairs, names = _volume_pairs(name, root_path, pattern, mask_replace, group_salt)
    if labels_csv is not None:
        csv_path = require_path(name, labels_csv, "labels_csv")
        slice_labels = _slice_label_table(name, csv_path, volume_column, slice_column, label_column)
        where = f"labels CSV {str(csv_path)!r}"
    else:
        slice_labels = None
        where = f"masks under {str(root_path)!r}"
    job = _NiftiJob(axis, percentiles, float(foreground_threshold), float(min_foreground), context.size,
                    context.channels, orientation == "canonical", int(ambiguous_window), min_brain_area,
                    max_brain_regions, image_max_scaling)
    skips = Skips(name, on_error, names)
    slices = _read_volumes(name, job, pairs, names, slice_labels, group_re, group_salt, skips, context)
    skips.report(context)
    totals = slices.totals
    if not slices.images:
        raise DatasetError(f"dataset {name!r}: no slice of {slices.volumes} volume(s) under {str(root_path)!r} "
                           f"passes the slice filters (of {totals['slices']} slices dropped: ambiguous "
                           f"{totals['dropped_ambiguous']}, foreground {totals['dropped_foreground']} "
                           f"(min_foreground {min_foreground}), brain area {totals['dropped_brain_area']})")
    task = TaskLabels.from_option(name, classes, slices.values)
    provenance = {**skips.provenance(), "volumes": slices.volumes, "slices_total": totals["slices"],
                  "slices_dropped_ambiguous": totals["dropped_ambiguous"],
                  "slices_dropped_foreground": totals["dropped_foreground"],
                  "slices_dropped_brain_area": totals["dropped_brain_area"],
                  "background": f"explicit: voxels <= foreground_threshold {float(foreground_threshold)}"}
    return finish(name, where, slices.images, slices.values, slices.groups, task, drop_other, min_per_class,
                  provenance, context, backgrounds=slices.backgrounds, max_per_class=max_per_class, keys=slices.keys,
                  salt=group_salt)


def _check_percentiles(name: str, percentiles) -> tuple[float, float] | None:
    if percentiles is None:
        return None
    if (not isinstance(percentiles, (list, tuple)) or len(percentiles) != 2
            or not 0 <= percentiles[0] < percentiles[1] <= 100):
        raise DatasetError(f"dataset {name!r}: option 'percentiles' must be [low, high] with "
                           f"0 <= low < high <= 100, got {percentiles!r}")
    return float(percentiles[0]), float(percentiles[1])


def _volume_pairs(name: str, root_path: Path, pattern: str, mask_replace: dict | None, group_salt: str
                  ) -> tuple[list[tuple[str, str | None]], FileNames]:
    """The (image, mask or None) paths of the volumes ``root/pattern`` matches, and their names.

    With ``mask_replace`` a volume's mask is its path with the replacements applied; the
    pattern may match the masks too (e.g. "*.nii.gz"), but a mask is never its own image."""
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
        mask_set = set(masks) - {p for p, m in zip(files, masks, strict=True) if p == m}
        pairs = [(p, m) for p, m in zip(files, masks, strict=True) if p not in mask_set]
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
    return pairs, names


def _slice_label_table(name: str, csv_path: Path, volume_column: str, slice_column: str, label_column: str
                       ) -> dict[tuple[str, int], str]:
    """{(volume path relative to root, slice index): label} from the labels CSV."""
    table = read_csv_columns(name, csv_path, {"volume_column": volume_column, "slice_column": slice_column,
                                              "label_column": label_column})
    slice_labels: dict[tuple[str, int], str] = {}
    for volume, slice_text, label, line in zip(table["volume_column"], table["slice_column"],
                                               table["label_column"], table["line"], strict=True):
        try:
            slice_labels[(volume, int(float(slice_text)))] = label_key(label)
        except ValueError:
            # the line, not the volume: its path may hold a patient id
            raise DatasetError(f"dataset {name!r}: CSV {str(csv_path)!r} line {line}: slice {slice_text!r} "
                               f"(column {slice_column!r}, option 'slice_column') is not an integer") from None
    return slice_labels


@dataclass
class _Slices:
    """The kept slices of every readable volume, with their label values, groups, keys and backgrounds."""

    images: list[np.ndarray] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # max_per_class keys: <relative volume path>#slice<index>
    backgrounds: list[np.ndarray] = field(default_factory=list)
    volumes: int = 0
    totals: dict = field(default_factory=lambda: {"slices": 0, "dropped_ambiguous": 0, "dropped_foreground": 0,
                                                  "dropped_brain_area": 0})


def _read_volumes(name: str, job: _NiftiJob, pairs: list[tuple[str, str | None]], names: FileNames,
                  slice_labels: dict[tuple[str, int], str] | None, group_re: re.Pattern | None, group_salt: str,
                  skips: Skips, context: ReadContext) -> _Slices:
    """Decode the volumes in parallel; label each kept slice from its mask or ``slice_labels``."""
    read = _Slices()
    relative = names.relative
    for index, (ok, result) in enumerate(parallel_map(job, pairs, context.threads)):
        if not ok:
            problem = result if result.startswith("ShapeMismatch") else f"unreadable or corrupt ({result})"
            skips.handle(index, problem, context)
            continue
        slices, indices, mask_labels, counts, slice_backgrounds = result
        read.volumes += 1
        for count in read.totals:
            read.totals[count] += counts[count]
        volume_id = match_path(name, "group_regex", group_re, names, index) if group_re else relative[index]
        group_hash = salted_hash(group_salt, volume_id)
        for position, slice_index in enumerate(indices):
            read.images.append(slices[position])
            read.backgrounds.append(slice_backgrounds[position])
            read.values.append(mask_labels[position] if slice_labels is None
                               else slice_labels.get((relative[index], slice_index), NO_CSV_ROW))
            read.groups.append(group_hash)
            read.keys.append(f"{relative[index]}#slice{slice_index}")
    return read
