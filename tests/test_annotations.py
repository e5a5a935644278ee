"""Label CSVs from the official annotation spreadsheets (intrinsic.annotations, build_labels.py).

Every test writes small spreadsheets in the collections' formats (xlsx, csv, OAI's
pipe-separated txt) and checks the labels against hand-computed ones.
"""

import subprocess
import sys

import pandas as pd
import pytest

from intrinsic.annotations import (AnnotationError, build_dbc, build_oai, build_prostate, dbc_label, read_sheet,
                                   write_labels)

BOX_COLUMNS = ["Patient ID", "Start Row", "End Row", "Start Column", "End Column", "Start Slice", "End Slice"]
UID_A = "1.3.6.1.4.1.14519.5.2.1.111"
UID_B = "1.3.6.1.4.1.14519.5.2.1.222"
UID_C = "1.3.6.1.4.1.14519.5.2.1.333"


def write_table(path, rows, columns):
    """rows as a spreadsheet: .xlsx through openpyxl, .csv, .txt pipe-separated (OAI)."""
    frame = pd.DataFrame(rows, columns=columns)
    if path.suffix == ".xlsx":
        frame.to_excel(path, index=False, engine="openpyxl")
    else:
        frame.to_csv(path, index=False, sep="|" if path.suffix == ".txt" else ",")
    return path


def patient(number):
    return f"Breast_MRI_{number:03d}"


def mapping_rows(number, slices, sequences=("post_1", "pre", "T1")):
    """The TCIA mapping's rows of one patient: every sequence, pre's classic path ends 1-NNN.dcm."""
    rows = []
    for sequence in sequences:
        for s in slices:
            original = f"DICOM_Images/{patient(number)}/{sequence}/{patient(number)}_{sequence}_{s:03d}.dcm"
            series = {"pre": "3.000000-ax dyn pre-1", "post_1": "4.000000-ax dyn 1st pass-2"}.get(sequence, "5-t1")
            rows.append([original, f"Duke-Breast-Cancer-MRI/{patient(number)}/01-01-1990-study/{series}/1-{s:03d}.dcm"])
    return rows


def dbc_files(tmp_path, suffix, boxes, mapping):
    box_file = write_table(tmp_path / f"Annotation_Boxes{suffix}", boxes, BOX_COLUMNS)
    map_file = write_table(tmp_path / f"mapping{suffix}", mapping, ["original_path_and_filename", "classic_path"])
    return box_file, map_file


def labels_by_slice(labels):
    return {int(p.rsplit("-", 1)[1][:-4]): label for p, label in zip(labels.frame["path"], labels.frame["label"])}


# Start Slice 10, End Slice 20, margin 5, by hand.
EXCLUSIVE = {1: list(range(10, 20)), 0: list(range(1, 6)) + list(range(26, 31))}  # left out 6-9, 20-25
INCLUSIVE = {1: list(range(10, 21)), 0: list(range(1, 6)) + list(range(25, 31))}  # left out 6-9, 21-24


@pytest.mark.parametrize("box_end, expected", [("exclusive", EXCLUSIVE), ("inclusive", INCLUSIVE)])
def test_dbc_label_boundaries_by_hand(box_end, expected):
    got = {s: dbc_label(s, 10, 20, 5, box_end) for s in range(1, 31)}
    assert [s for s, v in got.items() if v == 1] == expected[1]
    assert [s for s, v in got.items() if v == 0] == expected[0]
    left_out = [s for s, v in got.items() if v is None]
    expected_left_out = [6, 7, 8, 9, 20, 21, 22, 23, 24, 25] if box_end == "exclusive" else [6, 7, 8, 9, 21, 22, 23, 24]
    assert left_out == expected_left_out


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
@pytest.mark.parametrize("box_end, expected", [("exclusive", EXCLUSIVE), ("inclusive", INCLUSIVE)])
def test_dbc_builder_labels_pre_slices_joined_by_patient_id(tmp_path, suffix, box_end, expected):
    # Patient 2's box comes first: the authors' row-order join would give patient 1 its box.
    boxes = [[patient(2), 1, 2, 3, 4, 3, 4], [patient(1), 234, 271, 308, 341, 10, 20]]
    mapping = mapping_rows(1, range(1, 31)) + mapping_rows(2, range(1, 11))
    box_file, map_file = dbc_files(tmp_path, suffix, boxes, mapping)
    labels = build_dbc(box_file, map_file, box_end=box_end)
    assert list(labels.frame.columns) == ["path", "label"]
    assert all("/3.000000-ax dyn pre-1/" in p for p in labels.frame["path"])  # only the pre sequence
    one = labels.frame[labels.frame["path"].str.contains(patient(1))]
    by_slice = {int(p.rsplit("-", 1)[1][:-4]): v for p, v in zip(one["path"], one["label"])}
    assert sorted(s for s, v in by_slice.items() if v == 1) == expected[1]
    assert sorted(s for s, v in by_slice.items() if v == 0) == expected[0]
    # patient 2, box 3..4: exclusive positive {3}, negatives s <= -2 (none) or s >= 10;
    # inclusive positive {3, 4}, negatives s >= 9
    two = labels.frame[labels.frame["path"].str.contains(patient(2))]
    by_slice = {int(p.rsplit("-", 1)[1][:-4]): v for p, v in zip(two["path"], two["label"])}
    assert by_slice == ({3: 1, 10: 0} if box_end == "exclusive" else {3: 1, 4: 1, 9: 0, 10: 0})
    assert labels.counts["'pre' files"] == 40
    left_out = 40 - len(labels.frame)
    assert labels.counts["left out within the margin (5)"] == left_out


def test_dbc_margin_option_and_xlsx_equals_csv(tmp_path):
    boxes = [[patient(1), 0, 0, 0, 0, 10, 20]]
    mapping = mapping_rows(1, range(1, 31))
    (tmp_path / "x").mkdir()
    (tmp_path / "c").mkdir()
    from_xlsx = build_dbc(*dbc_files(tmp_path / "x", ".xlsx", boxes, mapping), margin=2)
    from_csv = build_dbc(*dbc_files(tmp_path / "c", ".csv", boxes, mapping), margin=2)
    pd.testing.assert_frame_equal(from_xlsx.frame, from_csv.frame)
    # margin 2, exclusive: positive 10..19; negative s + 2 <= 10 (s <= 8) or s - 2 > 20 (s >= 23)
    by_slice = labels_by_slice(from_csv)
    assert sorted(s for s, v in by_slice.items() if v == 1) == list(range(10, 20))
    assert sorted(s for s, v in by_slice.items() if v == 0) == list(range(1, 9)) + list(range(23, 31))
    assert from_csv.counts["left out within the margin (2)"] == 4  # 9, 20, 21, 22


def test_dbc_root_applies_the_authors_file_name_fix(tmp_path):
    boxes = [[patient(1), 0, 0, 0, 0, 3, 5]]
    mapping = mapping_rows(1, [3, 4, 7, 11, 12], sequences=("pre",))
    box_file, map_file = dbc_files(tmp_path, ".csv", boxes, mapping)
    root = tmp_path / "download"
    series = root / "Duke-Breast-Cancer-MRI" / patient(1) / "01-01-1990-study" / "3.000000-ax dyn pre-1"
    series.mkdir(parents=True)
    # box 3..5: positive 3, 4; 7 left out (its file is absent and not checked); negative 11, 12.
    # 4 and 12 are stored without the leading 0 of their number.
    for name in ("1-003.dcm", "1-04.dcm", "1-011.dcm", "1-12.dcm"):
        (series / name).write_bytes(b"")
    labels = build_dbc(box_file, map_file, root=root)
    names = [p.rsplit("/", 1)[1] for p in labels.frame["path"]]
    assert names == ["1-003.dcm", "1-04.dcm", "1-011.dcm", "1-12.dcm"]
    assert list(labels.frame["label"]) == [1, 1, 0, 0]
    assert labels.counts["paths fixed (1-0NN.dcm -> 1-NN.dcm)"] == 2
    assert all((root / p).is_file() for p in labels.frame["path"])
    # only a leading '0' is dropped (the authors assert it): 1-112.dcm is not 1-12.dcm
    write_table(map_file, mapping + mapping_rows(1, [112], sequences=("pre",)),
                ["original_path_and_filename", "classic_path"])
    with pytest.raises(AnnotationError, match=r"1 of 5 labelled files .* first on line 7$"):
        build_dbc(box_file, map_file, root=root)
    write_table(map_file, mapping, ["original_path_and_filename", "classic_path"])
    # without the fixed names the files are missing: an error with the count and the lines
    (series / "1-04.dcm").unlink()
    (series / "1-12.dcm").unlink()
    with pytest.raises(AnnotationError) as error:
        build_dbc(box_file, map_file, root=root)
    message = str(error.value)
    # the mapping's line 3 is slice 4, line 6 slice 12 (header = line 1)
    assert "2 of 4 labelled files" in message and "lines 3, 6" in message and "'classic_path'" in message
    assert "folder above" not in message and patient(1) not in message
    # --root one level too deep (the collection's folder, which classic_path starts with): a hint
    with pytest.raises(AnnotationError, match=r"4 of 4 labelled files .* found under the folder above it, "
                                              r"'.*download': classic_path is relative to that folder"):
        build_dbc(box_file, map_file, root=root / "Duke-Breast-Cancer-MRI")


def test_dbc_errors_name_file_column_and_line(tmp_path):
    mapping = mapping_rows(1, range(1, 5), sequences=("pre",))
    box_file, map_file = dbc_files(tmp_path, ".xlsx", [[patient(1), 0, 0, 0, 0, "ten", 20]], mapping)
    with pytest.raises(AnnotationError, match=r"--boxes '.*Annotation_Boxes.xlsx' row 2, column 'Start Slice': "
                                              r"expected an integer, got 'ten'"):
        build_dbc(box_file, map_file)
    write_table(box_file, [[patient(1), 0, 0, 0, 0, 12, 10]], BOX_COLUMNS)
    with pytest.raises(AnnotationError, match="row 2: End Slice 10 is before Start Slice 12"):
        build_dbc(box_file, map_file)
    write_table(box_file, [[patient(1), 0, 0, 0, 0, 1, 2], [patient(1), 0, 0, 0, 0, 1, 3]], BOX_COLUMNS)
    with pytest.raises(AnnotationError, match="row 3: the same Patient ID as row 2") as error:
        build_dbc(box_file, map_file)
    assert patient(1) not in str(error.value)
    write_table(box_file, [[patient(1), 1, 2]], ["Patient ID", "Start Slice", "Stop"])
    with pytest.raises(AnnotationError, match=r"has no column 'End Slice'; available columns: "
                                              r"\['Patient ID', 'Start Slice', 'Stop'\]"):
        build_dbc(box_file, map_file)
    # a patient of the mapping without a box: the count and the first lines, not the id
    write_table(box_file, [[patient(2), 0, 0, 0, 0, 1, 2]], BOX_COLUMNS)
    with pytest.raises(AnnotationError, match=r"4 'pre' row\(s\) belong to a patient without a box .* "
                                              r"first on rows 2, 3, 4, 5") as error:
        build_dbc(box_file, map_file)
    assert patient(1) not in str(error.value)
    write_table(box_file, [[patient(1), 0, 0, 0, 0, 1, 2]], BOX_COLUMNS)
    bad = mapping[:2] + [[mapping[2][0].replace("_003.dcm", "_x.dcm"), mapping[2][1]]]
    write_table(map_file, bad, ["original_path_and_filename", "classic_path"])
    with pytest.raises(AnnotationError, match=r"--mapping .* row 4, column 'original_path_and_filename': the file "
                                              r"name does not end in a slice number"):
        build_dbc(box_file, map_file)
    with pytest.raises(AnnotationError, match="--margin must be a non-negative integer"):
        build_dbc(box_file, map_file, margin=-1)
    with pytest.raises(AnnotationError, match="--box-end must be one of"):
        build_dbc(box_file, map_file, box_end="open")


def test_read_sheet_errors(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(AnnotationError, match=r"unsupported file type '.json'"):
        read_sheet(tmp_path / "a.json", "--boxes")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(AnnotationError, match=r"--boxes '.*empty.csv' is empty"):
        read_sheet(tmp_path / "empty.csv", "--boxes")
    (tmp_path / "twice.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(AnnotationError, match="column 'a' appears more than once"):
        read_sheet(tmp_path / "twice.csv", "--boxes")
    (tmp_path / "fake.xlsx").write_text("not a zip file")
    with pytest.raises(AnnotationError, match=r"cannot read --mapping '.*fake.xlsx'"):
        read_sheet(tmp_path / "fake.xlsx", "--mapping")
    with pytest.raises(AnnotationError, match="does not exist"):
        read_sheet(tmp_path / "nowhere.csv", "--boxes")
    # blank lines are skipped and the line numbers stay the file's
    (tmp_path / "gaps.csv").write_text("x,y\n1,2\n\n3,4\n")
    sheet = read_sheet(tmp_path / "gaps.csv", "--boxes")
    assert list(sheet.frame.index) == [2, 4] and list(sheet.frame["x"]) == ["1", "3"]


# ----------------------------------------------------------------------------------------------
# OAI


OAI_COLUMNS = ["ID", "SIDE", "READPRJ", "VERSION", "V00XRKL"]


def oai_setup(tmp_path, grade_rows):
    grades = write_table(tmp_path / "kxr_sq_bu00.txt", grade_rows, OAI_COLUMNS)
    images = tmp_path / "OAI_img"
    # the authors' layout: 0/ for KL 0-1, 1/ for KL 2-4, {ID}_{R|L}.png
    for folder, name in [("0", "9000001_R.png"), ("1", "9000001_L.png"), ("1", "9000002_R.png"),
                         ("0", "9000002_L.png"), ("0", "9000003_R.png")]:
        (images / folder).mkdir(parents=True, exist_ok=True)
        (images / folder / name).write_bytes(b"png")
    (images / "0" / "notes.txt").write_text("not a knee")
    return grades, images


def test_oai_join_keeps_readprj_15_and_maps_sides(tmp_path):
    rows = [
        [9000001, 1, 15, "1.2", 1], [9000001, 2, 15, "1.2", 3],  # right 1, left 3
        [9000001, 1, 37, "1.2", 4], [9000001, 2, 37, "1.2", 0],  # another reading project: ignored
        [9000002, 1, 15, "1.2", 2], [9000002, 2, 15, "1.2", 0],
        [9000002, 2, 15, "1.2", 0],  # an identical repeat is fine
        [9000003, 1, 37, "1.2", 2],  # 9000003_R has no READPRJ 15 grade: dropped, counted
        [9000004, 1, 15, "1.2", 4],  # a grade without an image: unused
    ]
    grades, images = oai_setup(tmp_path, rows)
    out = tmp_path / "oai_knees.csv"
    labels = build_oai(grades, images, out)
    write_labels(labels, out)
    written = pd.read_csv(out, dtype=str)
    assert list(written.columns) == ["path", "KLG", "ID"]
    got = {(p, k, i) for p, k, i in written.itertuples(index=False)}
    assert got == {("OAI_img/0/9000001_R.png", "1", "9000001"), ("OAI_img/1/9000001_L.png", "3", "9000001"),
                   ("OAI_img/1/9000002_R.png", "2", "9000002"), ("OAI_img/0/9000002_L.png", "0", "9000002")}
    assert all((tmp_path / p).is_file() for p in written["path"])  # relative to the CSV's folder
    assert labels.counts["knee images without a grade (dropped)"] == 1
    assert labels.counts["other files ignored"] == 1
    assert labels.counts["repeated identical grade rows"] == 1
    # the CSV inside the images folder: paths relative to it
    inside = build_oai(grades, images, images / "labels.csv")
    assert sorted(inside.frame["path"]) == ["0/9000001_R.png", "0/9000002_L.png", "1/9000001_L.png",
                                            "1/9000002_R.png"]
    with pytest.raises(AnnotationError, match=r"1 of 5 knee images .* have no READPRJ 15 grade") as error:
        build_oai(grades, images, out, missing="raise")
    assert "9000003" not in str(error.value)


def test_oai_coded_and_missing_values(tmp_path):
    # OAI's coded ("1: Right") and missing (".", ".: Missing ...") values
    rows = [[9000001, "1: Right", "15", "1.2", "2"], [9000001, "2: Left", 15, "1.2", "."],
            [9000002, 1, 15, "1.2", ".: Missing Form/Incomplete Workbook"], [9000002, 2, 15, "1.2", "0"]]
    grades, images = oai_setup(tmp_path, rows)
    labels = build_oai(grades, images, tmp_path / "o.csv")
    assert dict(zip(labels.frame["path"], labels.frame["KLG"])) == {"OAI_img/0/9000001_R.png": 2,
                                                                    "OAI_img/0/9000002_L.png": 0}
    assert labels.counts["READPRJ 15 rows without a grade"] == 2
    assert labels.counts["knee images without a grade (dropped)"] == 3


def test_oai_errors(tmp_path):
    grades, images = oai_setup(tmp_path, [[9000001, 1, 15, "1.2", 1], [9000002, 2, 37, "1.2", 0],
                                          [9000001, 1, 15, "1.2", 2]])
    with pytest.raises(AnnotationError, match=r"--grades '.*kxr_sq_bu00.txt' line 4: a second READPRJ 15 grade "
                                              r"for the same knee \(ID, SIDE\) as line 2, and a different one "
                                              r"\(2 vs 1\)") as error:
        build_oai(grades, images, tmp_path / "o.csv")
    assert "9000001" not in str(error.value)
    write_table(grades, [[9000001, 1, 15, "1.2", "two"]], OAI_COLUMNS)
    with pytest.raises(AnnotationError, match=r"line 2, column 'V00XRKL': expected an integer, got 'two'"):
        build_oai(grades, images, tmp_path / "o.csv")
    write_table(grades, [[9000001, 1, 15, "1.2", 5]], OAI_COLUMNS)
    with pytest.raises(AnnotationError, match=r"column 'V00XRKL': expected a KL grade 0-4, got 5"):
        build_oai(grades, images, tmp_path / "o.csv")
    write_table(grades, [[9000001, 3, 15, "1.2", 1]], OAI_COLUMNS)
    with pytest.raises(AnnotationError, match=r"column 'SIDE': expected 1 \(right\) or 2 \(left\), got 3"):
        build_oai(grades, images, tmp_path / "o.csv")
    write_table(grades, [["P9000001", 1, 15, "1.2", 1]], OAI_COLUMNS)
    with pytest.raises(AnnotationError, match=r"line 2, column 'ID': expected an integer, got another value$"):
        build_oai(grades, images, tmp_path / "o.csv")
    write_table(grades, [[9000001, 1, 15, 1]], ["ID", "SIDE", "READPRJ", "XRKL"])
    with pytest.raises(AnnotationError, match=r"has no column 'V00XRKL'"):
        build_oai(grades, images, tmp_path / "o.csv")
    write_table(grades, [[9000001, 1, 15, "1.2", 1]], OAI_COLUMNS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(AnnotationError, match=r"--images .* is not inside the folder of --out"):
        build_oai(grades, images, elsewhere / "o.csv")
    (images / "1" / "9000001_R.png").write_bytes(b"png")  # also in 0/
    with pytest.raises(AnnotationError, match=r"the same knee image name is in two folders, '0' and '1'") as error:
        build_oai(grades, images, tmp_path / "o.csv")
    assert "9000001" not in str(error.value)


# ----------------------------------------------------------------------------------------------
# Prostate-MRI-US-Biopsy


PROSTATE_COLUMNS = ["Patient ID", "Study Date", "seriesInstanceUID_US", "UCLA Score (Similar to PIRADS v2)"]


def prostate_rows():
    return [
        ["Prostate-MRI-US-Biopsy-0001", "2019", UID_A, 2],
        ["Prostate-MRI-US-Biopsy-0001", "2019", UID_A, 4],  # the same series, a more severe target
        ["Prostate-MRI-US-Biopsy-0002", "2019", UID_B, 3],
        ["Prostate-MRI-US-Biopsy-0002", "2019", UID_B, 3],
        ["Prostate-MRI-US-Biopsy-0003", "2019", UID_C, None],  # no score: dropped
        ["Prostate-MRI-US-Biopsy-0003", "2019", UID_C, 1],
        ["Prostate-MRI-US-Biopsy-0003", "2019", UID_C, 5],
        ["Prostate-MRI-US-Biopsy-0003", "2019", UID_C, 2],
    ]


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
@pytest.mark.parametrize("aggregate, expected", [("max", {UID_A: 4, UID_B: 3, UID_C: 5}),
                                                 ("first", {UID_A: 2, UID_B: 3, UID_C: 1})])
def test_prostate_one_row_per_series(tmp_path, suffix, aggregate, expected):
    targets = write_table(tmp_path / f"Target Data{suffix}", prostate_rows(), PROSTATE_COLUMNS)
    labels = build_prostate(targets, aggregate=aggregate)
    assert list(labels.frame.columns) == ["SeriesInstanceUID", "score"]
    assert dict(zip(labels.frame["SeriesInstanceUID"], labels.frame["score"])) == expected
    assert labels.counts["series with conflicting scores"] == 2  # A (2, 4) and C (1, 5, 2); B agrees
    assert labels.counts["rows without a score (dropped)"] == 1
    assert labels.counts["target rows"] == 7
    summary = labels.summary()
    assert "score" in summary and UID_A not in summary and "0001" not in summary


def test_prostate_errors(tmp_path):
    rows = prostate_rows()
    rows[2][3] = "3a"
    targets = write_table(tmp_path / "Target Data.csv", rows, PROSTATE_COLUMNS)
    with pytest.raises(AnnotationError, match=r"--targets '.*Target Data.csv' line 4, column 'UCLA Score \(Similar "
                                              r"to PIRADS v2\)': expected an integer, got '3a'"):
        build_prostate(targets)
    rows = prostate_rows()
    rows[2][0] = "Prostate-MRI-US-Biopsy-0001"  # series B under two patients
    write_table(targets, rows, PROSTATE_COLUMNS)
    with pytest.raises(AnnotationError, match="line 5: its seriesInstanceUID_US is listed under another Patient "
                                              "ID on line 4") as error:
        build_prostate(targets)
    assert UID_B not in str(error.value)
    write_table(targets, [["P1", UID_A, 3]], ["Patient ID", "SeriesInstanceUID", "UCLA Score (Similar to PIRADS v2)"])
    with pytest.raises(AnnotationError, match="has no column 'seriesInstanceUID_US'"):
        build_prostate(targets)
    with pytest.raises(AnnotationError, match="--aggregate must be one of"):
        build_prostate(targets, aggregate="mean")


# ----------------------------------------------------------------------------------------------
# The command line


def test_cli_writes_the_dbc_csv_and_reports_errors(repo, tmp_path):
    script = repo / "workflow" / "scripts" / "build_labels.py"
    boxes = [[patient(1), 0, 0, 0, 0, 10, 20]]
    box_file, map_file = dbc_files(tmp_path, ".csv", boxes, mapping_rows(1, range(1, 31)))
    out = tmp_path / "labels" / "dbc_slice_labels.csv"
    command = [sys.executable, str(script), "dbc", "--boxes", str(box_file), "--mapping", str(map_file),
               "--out", str(out), "--box-end", "inclusive"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    # inclusive, box 10..20, margin 5: positive 10..20, negative 1..5 and 25..30
    assert "dbc: 22 rows" in result.stdout and "label 0: 11, 1: 11" in result.stdout
    assert patient(1) not in result.stdout
    written = pd.read_csv(out)
    assert list(written.columns) == ["path", "label"] and len(written) == 22
    first = f"Duke-Breast-Cancer-MRI/{patient(1)}/01-01-1990-study/3.000000-ax dyn pre-1/1-001.dcm"
    assert written["path"].iloc[0] == first
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left
    # an error: exit 1, the message on stderr, the earlier CSV untouched
    before = out.read_bytes()
    write_table(box_file, [[patient(1), 0, 0, 0, 0, 10, "end"]], BOX_COLUMNS)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert "build_labels.py dbc: error: --boxes" in result.stderr
    assert "line 2, column 'End Slice': expected an integer, got 'end'" in result.stderr
    assert "Traceback" not in result.stderr and out.read_bytes() == before
    # refuses to overwrite an input
    result = subprocess.run(command[:-4] + ["--out", str(box_file)], capture_output=True, text=True)
    assert result.returncode == 1 and "is one of the input files" in result.stderr


# ----------------------------------------------------------------------------------------------
# The built CSVs feed the workflow's readers as the recipes configure them


def test_built_csvs_are_read_by_the_dicom_and_image_csv_readers(tmp_path):
    import numpy as np

    from fixtures_real import write_dicom, write_png
    from intrinsic.sources import load_source

    # DBC: the pre series on disk (slice 4 stored as 1-04.dcm), plus a post series file
    boxes = [[patient(1), 0, 0, 0, 0, 3, 5]]
    mapping = mapping_rows(1, [3, 4, 7, 11, 12], sequences=("pre", "post_1"))
    box_file, map_file = dbc_files(tmp_path, ".xlsx", boxes, mapping)
    root = tmp_path / "download"
    study = root / "Duke-Breast-Cancer-MRI" / patient(1) / "01-01-1990-study"
    for folder, name, value in [("3.000000-ax dyn pre-1", "1-003.dcm", 3), ("3.000000-ax dyn pre-1", "1-04.dcm", 4),
                                ("3.000000-ax dyn pre-1", "1-011.dcm", 11), ("3.000000-ax dyn pre-1", "1-007.dcm", 7),
                                ("4.000000-ax dyn 1st pass-2", "1-003.dcm", 30)]:
        write_dicom(study / folder / name, np.full((4, 4), 100, np.uint16), patient(1), "1.2.3", f"1.2.3.{value}")
    with pytest.raises(AnnotationError, match="1 of 4 labelled files"):  # slice 12 (negative) is absent
        build_dbc(box_file, map_file, root=root)
    write_dicom(study / "3.000000-ax dyn pre-1" / "1-012.dcm", np.full((4, 4), 100, np.uint16), patient(1),
                "1.2.3", "1.2.3.12")
    labels = build_dbc(box_file, map_file, root=root)
    out = write_labels(labels, tmp_path / "dbc_slice_labels.csv")
    source = {"type": "dicom", "root": str(root), "pattern": "**/*.dcm", "labels_csv": str(out), "key": "path",
              "key_column": "path", "label_column": "label", "group": "PatientID", "drop_other": True,
              "classes": {"outside_box": [0], "inside_box": [1]}}
    raw = load_source("dbc", source)
    # sorted files: pre 1-003 (1), 1-007 (left out), 1-011 (0), 1-012 (0), 1-04 (1); post: no row, dropped
    assert list(raw.labels) == [1, 0, 0, 1]
    assert len(set(raw.groups)) == 1

    # OAI: the authors' layout, the CSV beside the images folder
    images = tmp_path / "oai" / "OAI_img"
    for folder, name in [("0", "9000001_R.png"), ("1", "9000001_L.png"), ("1", "9000002_R.png")]:
        write_png(images / folder / name, np.zeros((8, 8), np.uint8))
    grades = write_table(tmp_path / "kxr_sq_bu00.txt", [[9000001, 1, 15, "1.2", 0], [9000001, 2, 15, "1.2", 3],
                                                       [9000002, 1, 15, "1.2", 4]], OAI_COLUMNS)
    out = tmp_path / "oai" / "oai_knees.csv"
    write_labels(build_oai(grades, images, out), out)
    raw = load_source("oai", {"type": "image_csv", "csv": str(out), "path_column": "path", "label_column": "KLG",
                              "group_column": "ID", "classes": {"kl_0_1": [0, 1], "kl_2_4": [2, 3, 4]}})
    assert list(raw.labels) == [0, 1, 1]  # 0/9000001_R (KL 0), 1/9000001_L (3), 1/9000002_R (4)
    assert raw.groups[0] == raw.groups[1] != raw.groups[2]
