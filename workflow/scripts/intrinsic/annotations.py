"""Label CSVs built from the collections' official annotation spreadsheets.

The study's authors prepared DBC, OAI and Prostate-MRI-US-Biopsy with their own scripts
(radiologyintrinsicmanifolds: data/dbc/png_extractor.py, data/oai/generate_cls_label.py and
detect_knee/kl_process.py, data/prostate/png_extractor.py). Each builder here applies the same
task definition to the official spreadsheet and returns the table that a reader of
:mod:`intrinsic.sources` consumes, so that nobody writes these CSVs by hand:

    build_dbc       Annotation_Boxes + filepath mapping -> path,label   (dicom, key: path)
    build_oai       kxr_sq_bu00.txt + knee crops        -> path,KLG,ID  (image_csv)
    build_prostate  Target Data                         -> SeriesInstanceUID,score
                                                           (dicom, key: SeriesInstanceUID)

Spreadsheets: ``.xlsx`` (first sheet, openpyxl), ``.csv`` (comma) or ``.txt`` (pipe-separated,
OAI's format), read with pandas; the first row is the header (names stripped of spaces). A
row is named by its line (CSV/TXT) or row (xlsx) number, header = 1.

Privacy: the spreadsheets hold patient ids and UIDs, and so does the CSV written (it stays
with the user's data, outside results/). Messages and summaries name spreadsheet rows by
line number and images by their folder, never by a patient id, UID or a path that holds one.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .cache import DatasetError
from .io import atomic_write

# How many culprits an error lists (the count is always complete).
N_SHOWN = 5
SEPARATORS = {".csv": ",", ".txt": "|"}
EXCEL_SUFFIXES = (".xlsx", ".xlsm")

DBC_BOX_END = ("exclusive", "inclusive")
DBC_MARGIN = 5
DBC_SEQUENCE = "pre"  # the pre-contrast fat-saturated series, the authors' choice
OAI_READING_PROJECT = 15  # the authors keep READPRJ == 15
OAI_SIDES = {1: "R", 2: "L"}  # kxr_sq_bu00 SIDE: 1 = right, 2 = left; crops are {ID}_{R|L}.png
OAI_SIDE_OF_LETTER = {letter: side for side, letter in OAI_SIDES.items()}
OAI_KNEE_NAME = re.compile(r"(\d+)_([RL])\.png", re.IGNORECASE)
OAI_GRADES = range(0, 5)  # Kellgren-Lawrence 0..4
PROSTATE_AGGREGATES = ("max", "first")
PROSTATE_SCORE = "UCLA Score (Similar to PIRADS v2)"


class AnnotationError(DatasetError):
    """An annotation spreadsheet or image folder cannot be turned into labels; the message names
    the file, the column and the line."""


# ----------------------------------------------------------------------------------------------
# Spreadsheets.


@dataclass
class Sheet:
    """One spreadsheet: cells as read (object), columns = stripped header names, index = the
    line (CSV/TXT) or row (xlsx) number of each non-blank row."""

    path: Path
    option: str  # the CLI option (or argument) that named the file, for messages
    frame: pd.DataFrame
    unit: str  # "line" or "row"

    def name(self) -> str:
        return f"{self.option} {str(self.path)!r}"

    def at(self, number: int) -> str:
        return f"{self.name()} {self.unit} {number}"

    def require(self, *columns: str) -> None:
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise AnnotationError(f"{self.name()} has no column {missing[0]!r}; "
                                  f"available columns: {list(self.frame.columns)}")

    def lines(self, numbers) -> str:
        """'line 3, 7, 9 (and 4 more)' for messages."""
        numbers = list(numbers)
        shown = ", ".join(str(n) for n in numbers[:N_SHOWN])
        more = f" (and {len(numbers) - N_SHOWN} more)" if len(numbers) > N_SHOWN else ""
        return f"{self.unit}{'s' if len(numbers) > 1 else ''} {shown}{more}"


def read_sheet(path, option: str) -> Sheet:
    """The spreadsheet ``path`` (.xlsx, .csv, or pipe-separated .txt) as a :class:`Sheet`."""
    path = Path(os.path.expanduser(str(path)))
    shown = f"{option} {str(path)!r}"
    if not path.is_file():
        raise AnnotationError(f"{shown} does not exist or is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in EXCEL_SUFFIXES:
            # header=None: the header row is checked here, and row numbers stay the sheet's
            raw = pd.read_excel(path, sheet_name=0, header=None, dtype=object, engine="openpyxl")
            unit = "row"
        elif suffix in SEPARATORS:
            # every cell as text; blank lines kept so that index + 1 is the line number
            raw = pd.read_csv(path, sep=SEPARATORS[suffix], header=None, dtype=str, keep_default_na=False,
                              skip_blank_lines=False, encoding="utf-8-sig")
            unit = "line"
        else:
            raise AnnotationError(f"{shown}: unsupported file type {path.suffix!r}; "
                                  "give .xlsx, .csv or a pipe-separated .txt")
    except pd.errors.EmptyDataError:
        raise AnnotationError(f"{shown} is empty") from None
    except AnnotationError:
        raise
    except Exception as error:  # noqa: BLE001 - openpyxl/zipfile/parser errors: name the file
        raise AnnotationError(f"cannot read {shown}: {type(error).__name__}: {error}") from None
    if raw.empty:
        raise AnnotationError(f"{shown} is empty")
    header = [_text(cell) for cell in raw.iloc[0]]
    repeated = sorted(name for name, count in Counter(h for h in header if h).items() if count > 1)
    if repeated:
        raise AnnotationError(f"{shown}: column {repeated[0]!r} appears more than once in the header")
    frame = raw.iloc[1:].copy()
    frame.columns = [h if h else f"<unnamed {i + 1}>" for i, h in enumerate(header)]
    frame.index = np.arange(2, len(raw) + 1)
    # vectorised _blank: a missing cell, or text that is only spaces
    blank = np.logical_and.reduce([(frame[c].isna() | (frame[c].astype(str).str.strip() == "")).to_numpy()
                                   for c in frame.columns])
    return Sheet(path, option, frame[~blank], unit)


def _blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _text(value) -> str:
    """A cell as text: blank -> "", integral floats (Excel's numbers) without ".0"."""
    if _blank(value):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _path_column(column: pd.Series) -> pd.Series:
    """A column of paths as stripped text with '/' separators (vectorised; blank -> "")."""
    return column.where(column.notna(), "").astype(str).str.strip().str.replace("\\", "/", regex=False)


_INTEGER = re.compile(r"[+-]?\d+(?:\.0*)?")
# OAI's coded values may carry their label, e.g. "1: Right"
_CODED = re.compile(r"([+-]?\d+)\s*:.*")


def _integer(sheet: Sheet, number: int, column: str, value, show: bool = True, coded: bool = False) -> int:
    """The cell as an integer, or an error naming file, line and column (and the value if
    ``show``: never for id columns)."""
    if isinstance(value, (bool, np.bool_)):
        pass
    elif isinstance(value, (int, np.integer)):
        return int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    text = _text(value)
    if _INTEGER.fullmatch(text):
        return int(text.split(".")[0])
    if coded and _CODED.fullmatch(text):
        return int(_CODED.fullmatch(text).group(1))
    got = "an empty cell" if text == "" else (repr(text) if show else "another value")
    raise AnnotationError(f"{sheet.at(number)}, column {column!r}: expected an integer, got {got}")


def check_out_is_not_input(out, inputs) -> None:
    """Refuse to overwrite one of the input spreadsheets with the labels."""
    out = Path(os.path.expanduser(str(out)))
    for given in inputs:
        if given is None or not out.exists():
            continue
        given = Path(os.path.expanduser(str(given)))
        if given.exists() and os.path.samefile(out, given):
            raise AnnotationError(f"--out {str(out)!r} is one of the input files; write the labels elsewhere")


# ----------------------------------------------------------------------------------------------
# The result of a builder.


@dataclass
class Labels:
    """A built label table: ``frame`` (the CSV's columns), ``label_column``, and counts for the
    summary line (no ids)."""

    dataset: str
    frame: pd.DataFrame
    label_column: str
    counts: dict = field(default_factory=dict)

    def per_label(self) -> dict[str, int]:
        values = Counter(self.frame[self.label_column].tolist())
        return {str(k): values[k] for k in sorted(values)}

    def summary(self, out=None) -> str:
        labels = ", ".join(f"{k}: {n}" for k, n in self.per_label().items()) or "none"
        where = f" to {str(out)!r}" if out is not None else ""
        extra = "".join(f"; {k}: {v}" for k, v in self.counts.items())
        return f"{self.dataset}: {len(self.frame)} rows{where}; {self.label_column} {labels}{extra}"


def write_labels(labels: Labels, out) -> Path:
    """Write the table to ``out`` atomically (a temporary file beside it, then os.replace)."""
    out = Path(out)
    with atomic_write(out, "w") as handle:
        labels.frame.to_csv(handle, index=False, lineterminator="\n")
    return out


# ----------------------------------------------------------------------------------------------
# Duke-Breast-Cancer-MRI.


def dbc_label(slice_index: int, start: int, end: int, margin: int = DBC_MARGIN,
              box_end: str = "exclusive") -> int | None:
    """1 inside the tumour box, 0 outside it by the margin, None in between (left out).

    ``exclusive`` is the authors' rule (png_extractor.py): positive start <= s < End Slice,
    negative s + margin <= start or s - margin > end, so the margin below the box is
    margin - 1 slices wide and above it margin + 1 (End Slice itself is left out).
    ``inclusive`` takes the box as annotated, start <= s <= end, with a symmetric margin:
    negative s <= start - margin or s >= end + margin.
    """
    if box_end == "exclusive":
        if start <= slice_index < end:
            return 1
        if slice_index + margin <= start or slice_index - margin > end:
            return 0
        return None
    if box_end == "inclusive":
        if start <= slice_index <= end:
            return 1
        if slice_index <= start - margin or slice_index >= end + margin:
            return 0
        return None
    raise AnnotationError(f"box_end must be one of {list(DBC_BOX_END)}, got {box_end!r}")


def _dbc_boxes(sheet: Sheet) -> dict[str, tuple[int, int, int]]:
    """Patient ID -> (Start Slice, End Slice, line)."""
    sheet.require("Patient ID", "Start Slice", "End Slice")
    boxes: dict[str, tuple[int, int, int]] = {}
    for number, patient, start, end in zip(sheet.frame.index, sheet.frame["Patient ID"],
                                           sheet.frame["Start Slice"], sheet.frame["End Slice"]):
        patient = _text(patient)
        if not patient:
            raise AnnotationError(f"{sheet.at(number)}, column 'Patient ID': empty cell")
        start = _integer(sheet, number, "Start Slice", start)
        end = _integer(sheet, number, "End Slice", end)
        if end < start:  # the authors assert end_slice >= start_slice
            raise AnnotationError(f"{sheet.at(number)}: End Slice {end} is before Start Slice {start}")
        if patient in boxes:
            raise AnnotationError(f"{sheet.at(number)}: the same Patient ID as {sheet.unit} "
                                  f"{boxes[patient][2]}; one box per patient is expected")
        boxes[patient] = (start, end, number)
    if not boxes:
        raise AnnotationError(f"{sheet.name()} lists no boxes")
    return boxes


def _dbc_fixed_name(relative: str) -> str | None:
    """The authors' fix of a known naming mismatch (save_dcm_slice): "…/1-012.dcm" is stored as
    "…/1-12.dcm", i.e. the first digit after the '-' (a '0') dropped. None if not applicable."""
    folder, _, name = relative.rpartition("/")
    head, dash, tail = name.partition("-")
    if not dash or not tail.startswith("0"):  # the authors assert that digit is a '0'
        return None
    return f"{folder}/{head}-{tail[1:]}" if folder else f"{head}-{tail[1:]}"


_DBC_SLICE = re.compile(r"(\d+)\.dcm$", re.IGNORECASE)


def build_dbc(boxes, mapping, margin: int = DBC_MARGIN, box_end: str = "exclusive", root=None) -> Labels:
    """Slice labels of the pre-contrast fat-saturated series: columns ``path`` (the mapping's
    classic_path, relative to the NBIA download root) and ``label`` (1 inside the box, 0 outside
    it by ``margin``; slices in between are left out, see :func:`dbc_label`).

    With ``root`` every listed file must exist under it; a missing "…/1-012.dcm" found as
    "…/1-12.dcm" is written with the name that exists (the authors' fix).
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise AnnotationError(f"--margin must be a non-negative integer, got {margin!r}")
    if box_end not in DBC_BOX_END:
        raise AnnotationError(f"--box-end must be one of {list(DBC_BOX_END)}, got {box_end!r}")
    box_sheet = boxes if isinstance(boxes, Sheet) else read_sheet(boxes, "--boxes")
    map_sheet = mapping if isinstance(mapping, Sheet) else read_sheet(mapping, "--mapping")
    box_of = _dbc_boxes(box_sheet)
    map_sheet.require("original_path_and_filename", "classic_path")
    frame = map_sheet.frame
    original = _path_column(frame["original_path_and_filename"])
    empty = frame.index[(original == "").to_numpy()]
    if len(empty):
        raise AnnotationError(f"{map_sheet.name()}, column 'original_path_and_filename': empty cell on "
                              f"{map_sheet.lines(empty)}")
    # DICOM_Images/<patient>/<sequence>/<file>: keep the "pre" sequence folder. The authors
    # filtered with str.contains('pre'), which selects the same rows in this collection.
    # A cheap vectorised pre-filter first: the mapping has some 900,000 rows.
    candidate = original.str.contains(f"/{DBC_SEQUENCE}/", regex=False).to_numpy()
    parts = original[candidate].str.split("/")
    keep = (parts.str[-2] == DBC_SEQUENCE).to_numpy()
    parts = parts[keep]
    n_pre = len(parts)
    if not n_pre:
        raise AnnotationError(f"{map_sheet.name()}: no row of column 'original_path_and_filename' is in a "
                              f"{DBC_SEQUENCE!r} sequence folder (<folder>/<patient>/{DBC_SEQUENCE}/<file>)")
    kept = frame[candidate][keep]
    rows = []  # (line, path, label)
    no_box: list[int] = []
    n_left_out = 0
    for number, parts_of, classic in zip(kept.index, parts, kept["classic_path"]):
        found = _DBC_SLICE.search(parts_of[-1])
        if found is None:
            raise AnnotationError(f"{map_sheet.at(number)}, column 'original_path_and_filename': the file name "
                                  "does not end in a slice number (<name>_<number>.dcm)")
        slice_index = int(found.group(1))
        # Joined by Patient ID; the authors took the box of row (patient number - 1) of
        # Annotation_Boxes, which relies on its row order.
        box = box_of.get(parts_of[-3])
        if box is None:
            no_box.append(number)
            continue
        label = dbc_label(slice_index, box[0], box[1], margin, box_end)
        if label is None:
            n_left_out += 1
            continue
        classic = _text(classic).replace("\\", "/")
        if not classic:
            raise AnnotationError(f"{map_sheet.at(number)}, column 'classic_path': empty cell")
        if classic.startswith("/") or re.match(r"[A-Za-z]:/", classic):
            raise AnnotationError(f"{map_sheet.at(number)}, column 'classic_path': an absolute path; "
                                  "a path relative to the download root is expected")
        # as the dicom reader spells paths below root: no "./", no "//"
        rows.append((number, PurePosixPath(classic).as_posix(), label))
    if no_box:
        raise AnnotationError(f"{map_sheet.name()}: {len(no_box)} '{DBC_SEQUENCE}' row(s) belong to a patient "
                              f"without a box in {box_sheet.name()} (column 'Patient ID'); first on "
                              f"{map_sheet.lines(no_box)}")
    counts = {f"'{DBC_SEQUENCE}' files": n_pre, f"left out within the margin ({margin})": n_left_out}
    if root is not None:
        rows, n_fixed = _dbc_check_root(rows, Path(os.path.expanduser(str(root))), map_sheet)
        counts["paths fixed (1-0NN.dcm -> 1-NN.dcm)"] = n_fixed
    seen: dict[str, int] = {}
    for number, path, _ in rows:
        if path in seen:
            raise AnnotationError(f"{map_sheet.name()}, column 'classic_path': {map_sheet.unit} {number} "
                                  f"names the same file as {map_sheet.unit} {seen[path]}")
        seen[path] = number
    table = pd.DataFrame({"path": [r[1] for r in rows], "label": [r[2] for r in rows]})
    return Labels("dbc", table, "label", counts)


def _dbc_check_root(rows: list, root: Path, sheet: Sheet) -> tuple[list, int]:
    if not root.is_dir():
        raise AnnotationError(f"--root {str(root)!r} does not exist or is not a folder")
    checked, missing, n_fixed = [], [], 0
    for number, path, label in rows:
        if not (root / path).is_file():
            fixed = _dbc_fixed_name(path)
            if fixed is not None and (root / fixed).is_file():
                path, n_fixed = fixed, n_fixed + 1
            else:
                missing.append(number)
        checked.append((number, path, label))
    if missing:
        # classic_path starts with the collection's folder (Duke-Breast-Cancer-MRI/Breast_MRI_001/...):
        # a --root one level too deep is the likely mistake
        first = next(path for number, path, _ in checked if number == missing[0])
        above = root.resolve().parent
        hint = ""
        if (above / first).is_file() or (_dbc_fixed_name(first) and (above / _dbc_fixed_name(first)).is_file()):
            hint = (f"; they are found under the folder above it, {str(above)!r}: classic_path is relative to that "
                    "folder, so give it as --root and as the dicom recipe's root")
        raise AnnotationError(f"{len(missing)} of {len(rows)} labelled files of {sheet.name()} (column "
                              f"'classic_path') do not exist under --root {str(root)!r}, even with the "
                              f"1-0NN.dcm -> 1-NN.dcm fix; first on {sheet.lines(missing)}{hint}")
    return checked, n_fixed


# ----------------------------------------------------------------------------------------------
# Osteoarthritis Initiative.


def _oai_missing(value) -> bool:
    """OAI's missing values: blank, or SAS-style '.', '.A', '.: Missing Form/Incomplete Workbook'."""
    return _blank(value) or _text(value).startswith(".")


def _oai_grades(sheet: Sheet) -> tuple[dict[tuple[int, int], tuple[int, int]], dict]:
    """(ID, SIDE) -> (KL grade, line) of the READPRJ 15 rows with a grade, and counts."""
    sheet.require("ID", "SIDE", "READPRJ", "V00XRKL")
    grades: dict[tuple[int, int], tuple[int, int]] = {}
    n_ungraded = n_repeated = 0
    frame = sheet.frame
    for number, project, person, side, grade in zip(frame.index, frame["READPRJ"], frame["ID"], frame["SIDE"],
                                                    frame["V00XRKL"]):
        if _oai_missing(project) or _integer(sheet, number, "READPRJ", project, coded=True) != OAI_READING_PROJECT:
            continue
        person = _integer(sheet, number, "ID", person, show=False)
        side = _integer(sheet, number, "SIDE", side, coded=True)
        if side not in OAI_SIDES:
            raise AnnotationError(f"{sheet.at(number)}, column 'SIDE': expected 1 (right) or 2 (left), got {side}")
        if _oai_missing(grade):
            n_ungraded += 1
            continue
        grade = _integer(sheet, number, "V00XRKL", grade, coded=True)
        if grade not in OAI_GRADES:
            raise AnnotationError(f"{sheet.at(number)}, column 'V00XRKL': expected a KL grade 0-4, got {grade}")
        if (person, side) in grades:
            first, first_line = grades[(person, side)]
            if first != grade:
                raise AnnotationError(f"{sheet.at(number)}: a second READPRJ {OAI_READING_PROJECT} grade for the "
                                      f"same knee (ID, SIDE) as {sheet.unit} {first_line}, and a different one "
                                      f"({grade} vs {first})")
            n_repeated += 1
            continue
        grades[(person, side)] = (grade, number)
    return grades, {"READPRJ 15 rows without a grade": n_ungraded, "repeated identical grade rows": n_repeated}


def build_oai(grades, images, out, missing: str = "drop") -> Labels:
    """Knee crops ``images/**/{ID}_{R|L}.png`` (the authors' kl_process.py naming) joined with
    the READPRJ 15 KL grades of kxr_sq_bu00: columns ``path`` (relative to the folder of the
    CSV ``out``, which the image_csv reader resolves against), ``KLG`` and ``ID``.

    Knees without a grade are dropped and counted (``missing="drop"``) or an error
    (``missing="raise"``).
    """
    if missing not in ("drop", "raise"):
        raise AnnotationError(f"missing must be 'drop' or 'raise', got {missing!r}")
    sheet = grades if isinstance(grades, Sheet) else read_sheet(grades, "--grades")
    images = Path(os.path.expanduser(str(images)))
    if not images.is_dir():
        raise AnnotationError(f"--images {str(images)!r} does not exist or is not a folder")
    grade_of, counts = _oai_grades(sheet)
    # The image_csv reader resolves paths against the CSV's folder and rejects any outside it.
    base = Path(out).parent.resolve()
    resolved_images = images.resolve()
    if not resolved_images.is_relative_to(base):
        raise AnnotationError(f"--images {str(images)!r} is not inside the folder of --out {str(out)!r}; the "
                              "image_csv reader reads paths relative to the CSV's folder and only below it, "
                              "so write the CSV into the images folder or a folder above it")
    knees: dict[tuple[int, int], Path] = {}
    id_text: dict[tuple[int, int], str] = {}
    n_other = 0
    for path in sorted(p for p in resolved_images.rglob("*") if p.is_file()):
        found = OAI_KNEE_NAME.fullmatch(path.name)
        if found is None:
            n_other += 1
            continue
        knee = (int(found.group(1)), OAI_SIDE_OF_LETTER[found.group(2).upper()])
        if not path.resolve().is_relative_to(base):  # a symlink out of the folder: the reader rejects it
            raise AnnotationError(f"--images {str(images)!r}: a knee image in folder "
                                  f"{path.parent.relative_to(resolved_images).as_posix() or '.'!r} is a link to a "
                                  f"file outside the folder of --out {str(out)!r}")
        if knee in knees:  # the folders name the place, not the knee (a file name holds the ID)
            raise AnnotationError(
                f"--images {str(images)!r}: the same knee image name is in two folders, "
                f"{knees[knee].parent.relative_to(resolved_images).as_posix() or '.'!r} and "
                f"{path.parent.relative_to(resolved_images).as_posix() or '.'!r}")
        knees[knee] = path
        id_text[knee] = found.group(1)  # as the file name spells it
    if not knees:
        raise AnnotationError(f"--images {str(images)!r} holds no knee image named <ID>_R.png or <ID>_L.png")
    rows, ungraded = [], 0
    for knee, path in sorted(knees.items(), key=lambda item: item[1]):
        if knee not in grade_of:
            ungraded += 1
            continue
        rows.append((path.relative_to(base).as_posix(), grade_of[knee][0], id_text[knee]))
    if ungraded and missing == "raise":
        raise AnnotationError(f"{ungraded} of {len(knees)} knee images under --images {str(images)!r} have no "
                              f"READPRJ {OAI_READING_PROJECT} grade in {sheet.name()}")
    if not rows:
        raise AnnotationError(f"none of the {len(knees)} knee images under --images {str(images)!r} has a "
                              f"READPRJ {OAI_READING_PROJECT} grade in {sheet.name()}")
    counts = {"knee images without a grade (dropped)": ungraded, "other files ignored": n_other, **counts}
    table = pd.DataFrame(rows, columns=["path", "KLG", "ID"])
    return Labels("oai", table, "KLG", counts)


# ----------------------------------------------------------------------------------------------
# Prostate-MRI-US-Biopsy.


def build_prostate(targets, aggregate: str = "max") -> Labels:
    """One row per 3D ultrasound series (seriesInstanceUID_US): columns ``SeriesInstanceUID``
    and ``score`` (the UCLA score).

    The authors saved each series once per target row, in the folder of that row's score, so a
    series with targets of different scores landed in both classes. Here a series gets one
    score: ``max`` (the most severe target, default) or ``first`` (its first row). Rows without
    a series or a score are dropped and counted (the authors' folders 0-5 never held them).
    """
    if aggregate not in PROSTATE_AGGREGATES:
        raise AnnotationError(f"--aggregate must be one of {list(PROSTATE_AGGREGATES)}, got {aggregate!r}")
    sheet = targets if isinstance(targets, Sheet) else read_sheet(targets, "--targets")
    sheet.require("Patient ID", "seriesInstanceUID_US", PROSTATE_SCORE)
    frame = sheet.frame
    scores: dict[str, list[int]] = {}
    patient_of: dict[str, tuple[str, int]] = {}
    n_no_series = n_no_score = 0
    for number, patient, series, score in zip(frame.index, frame["Patient ID"], frame["seriesInstanceUID_US"],
                                              frame[PROSTATE_SCORE]):
        series = _text(series)
        if not series:
            n_no_series += 1
            continue
        if _blank(score):
            n_no_score += 1
            continue
        score = _integer(sheet, number, PROSTATE_SCORE, score)
        patient = _text(patient)
        if series in patient_of and patient_of[series][0] != patient:
            raise AnnotationError(f"{sheet.at(number)}: its seriesInstanceUID_US is listed under another "
                                  f"Patient ID on {sheet.unit} {patient_of[series][1]}")
        patient_of.setdefault(series, (patient, number))
        scores.setdefault(series, []).append(score)
    if not scores:
        raise AnnotationError(f"{sheet.name()} has no row with both a seriesInstanceUID_US and a score")
    pick = max if aggregate == "max" else (lambda values: values[0])
    table = pd.DataFrame({"SeriesInstanceUID": list(scores), "score": [pick(v) for v in scores.values()]})
    counts = {"target rows": sum(len(v) for v in scores.values()),
              "series with conflicting scores": sum(len(set(v)) > 1 for v in scores.values()),
              "rows without a series (dropped)": n_no_series, "rows without a score (dropped)": n_no_score}
    return Labels("prostate", table, "score", counts)
