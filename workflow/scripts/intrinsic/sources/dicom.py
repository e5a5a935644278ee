"""Source type ``dicom``: DICOM files (or the frames of multi-frame files) via pydicom, labelled
from a CSV keyed by SOPInstanceUID, SeriesInstanceUID or path."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import DatasetError, RawDataset, to_unit_range
from .common import (
    DEFAULT_GROUP_SALT,
    NO_CSV_ROW,
    FileNames,
    ReadContext,
    Skips,
    TaskLabels,
    check_bool,
    check_choice,
    check_common,
    compile_regex,
    finish,
    label_key,
    parallel_map,
    read_csv_columns,
    require_path,
    salted_hash,
    select_per_class,
    to_cache_geometry,
)

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
        images = [to_cache_geometry(dicom_to_unit(stack[frame], slope, intercept, photometric, self.window,
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

    Files are decoded only when needed (:func:`_plan_decoding`).
    """
    check_common(name, on_error, drop_other, min_per_class, max_per_class)
    root_path = require_path(name, root)
    csv_path = require_path(name, labels_csv, "labels_csv")
    key = check_choice(name, "key", key, DICOM_KEYS)
    group = check_choice(name, "group", group, DICOM_GROUP_ATTRIBUTES)
    frames = check_choice(name, "frames", frames, DICOM_FRAMES)
    check_bool(name, "modality_lut", modality_lut)
    check_bool(name, "image_max_scaling", image_max_scaling)
    key_re = compile_regex(name, "key_regex", key_regex)
    window_values = _window(name, window)
    if window_values is not None and image_max_scaling:
        raise DatasetError(f"dataset {name!r}: options 'window' and 'image_max_scaling' exclude each other "
                           "(a window maps fixed values to [0, 1]; max scaling divides by each image's maximum)")
    listing = _list_dicom_files(name, root_path, pattern, key, group_salt)
    label_of, group_of = _dicom_label_table(name, csv_path, key_column, key_re, label_column, group_column)
    task = TaskLabels.from_option(name, classes, label_of.values())
    where = f"labels CSV {str(csv_path)!r}"
    skips = Skips(name, on_error, listing.names)
    plan, dropped_before, selection = _plan_decoding(name, listing, frames, label_of, task, where, drop_other,
                                                     max_per_class, group_salt, skips, context)
    job = _DicomJob(window_values, modality_lut, image_max_scaling, frames, None if group_column else group,
                    context.size, context.channels)
    decoded = _decode_planned(job, listing, plan, label_of, group_of if group_column else None, group_salt,
                              skips, context)
    skips.report(context)
    provenance = {**skips.provenance(), "files_matched": len(listing.files), "files_decoded": len(plan),
                  "multiframe_files": decoded.multiframe_files}
    if selection is not None:
        provenance["max_per_class_counts"] = selection
    return finish(name, where, decoded.images, decoded.values, decoded.groups, task, drop_other, min_per_class,
                  provenance, context, dropped_before=dropped_before, items=lambda i: listing.names(decoded.files[i]))


@dataclass
class _DicomListing:
    """The files a dicom source matched, and how a file's key into the labels CSV is formed."""

    files: list[str]  # what is opened
    relative: list[str]  # relative to root: the ``path`` key, group fallback and max_per_class key
    key: str  # option 'key'
    names: FileNames  # messages name files by path through it, never by UID or another header value

    def lookup(self, index: int, sop: str, series: str) -> str:
        """File ``index``'s key into the labels CSV."""
        return {"path": self.relative[index], "SOPInstanceUID": sop, "SeriesInstanceUID": series}[self.key]


def _list_dicom_files(name: str, root_path: Path, pattern: str, key: str, group_salt: str) -> _DicomListing:
    files = sorted(p for p in glob.glob(str(root_path / pattern), recursive=True) if os.path.isfile(p))
    if not files:
        raise DatasetError(f"dataset {name!r}: no files match {pattern!r} under {str(root_path)!r}")
    relative = [Path(p).relative_to(root_path).as_posix() for p in files]
    return _DicomListing(files, relative, key, FileNames("DICOM file", relative, files, group_salt))


def _plan_decoding(name: str, listing: _DicomListing, frames: str, label_of: dict[str, str], task: TaskLabels,
                   where: str, drop_other: bool, max_per_class: int | None, group_salt: str, skips: Skips,
                   context: ReadContext) -> tuple[dict[int, tuple[int, ...] | None], dict, dict | None]:
    """(file index -> the frames to decode (None: every frame ``frames`` selects), labels dropped
    before decoding, max_per_class counts or None).

    With key ``path`` the labels are known from the listing; with a UID key (or multi-frame
    files), when drop_other or max_per_class can leave files out, a header-only pass labels the
    files (and counts their frames) first. Otherwise every file is decoded and labelled after."""
    header_pass = (drop_other or max_per_class is not None) and (listing.key != "path" or frames != "single")
    if listing.key != "path" and not header_pass:
        return {index: None for index in range(len(listing.files))}, {}, None
    headers = parallel_map(_DicomHeaderJob(frames), listing.files, context.threads) if header_pass else None
    file_of, frame_of, item_keys, item_values = [], [], [], []
    for index in range(len(listing.files)):
        sop = series = ""
        frame_list, n_frames = [None], 1
        if headers is not None:
            ok, result = headers[index]
            if not ok:
                skips.handle(index, f"unreadable or corrupt ({result})", context)
                continue
            sop, series, n_frames = result
            frame_list = dicom_frames(frames, n_frames)
        value = label_of.get(listing.lookup(index, sop, series), NO_CSV_ROW)
        for frame in frame_list:
            file_of.append(index)
            frame_of.append(frame)
            item_keys.append(_frame_key(listing.relative[index], n_frames, frame))
            item_values.append(value)
    labels, keep, dropped_before = task.assign(name, item_values, where, drop_other,
                                               items=lambda i: listing.names(file_of[i]))
    wanted = np.flatnonzero(keep)
    chosen, selection = select_per_class(labels, [item_keys[i] for i in wanted], group_salt, max_per_class,
                                         task.classes)
    planned: dict[int, list] = {}
    for item in wanted[chosen]:
        planned.setdefault(file_of[item], []).append(frame_of[item])
    plan = {index: None if frame_list == [None] else tuple(frame_list) for index, frame_list in planned.items()}
    return plan, dropped_before, selection


@dataclass
class _Decoded:
    """The images of the decoded DICOM files, each with its label value, group hash and file index."""

    images: list[np.ndarray] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    files: list[int] = field(default_factory=list)
    multiframe_files: int = 0


def _decode_planned(job: _DicomJob, listing: _DicomListing, plan: dict[int, tuple[int, ...] | None],
                    label_of: dict[str, str], group_of: dict[str, str] | None, group_salt: str, skips: Skips,
                    context: ReadContext) -> _Decoded:
    """Decode the planned files in parallel. Group: the CSV's group column (``group_of``), else
    the header attribute the job read; a file without one is its own group (its path)."""
    decoded = _Decoded()
    results = parallel_map(job, [(listing.files[index], frame_list) for index, frame_list in plan.items()],
                           context.threads)
    for index, (ok, result) in zip(plan, results, strict=True):
        if not ok:
            skips.handle(index, f"unreadable or corrupt ({result})", context)
            continue
        frame_images, _, n_frames, uid, series, header_group = result
        decoded.multiframe_files += int(n_frames > 1)
        lookup_key = listing.lookup(index, uid, series)
        raw_group = group_of.get(lookup_key, "") if group_of is not None else header_group
        group_hash = salted_hash(group_salt, raw_group if raw_group else listing.relative[index])
        for image in frame_images:
            decoded.images.append(image)
            decoded.files.append(index)
            decoded.values.append(label_of.get(lookup_key, NO_CSV_ROW))
            decoded.groups.append(group_hash)
    return decoded
