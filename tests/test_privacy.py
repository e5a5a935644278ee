"""No patient identifier in any file under results/, logs included (issue 11, "Integrity").

Runs the real rule prepare_dataset with Snakemake on DICOM files in a patient-named folder,
one of them corrupt, and scans every byte the run left under results/. The terminal (stderr)
may name the corrupt file, so the user can find it; the rule's log file names its salted hash.
"""

import json
import subprocess

import numpy as np
import pytest

from fixtures_real import SECRET_DATE, SECRET_NAME, write_csv, write_dicom
from helpers import config_file, snakemake
from intrinsic.sources.common import DEFAULT_GROUP_SALT, salted_hash

PATIENT_FOLDER = "DOE^JOHN_PID-SECRET-7"
PATIENT_ID = "PID-SECRET-7"
STUDY_UID = "1.2.826.0.1.3680043.8.777.4242"
VALID_FILES = [f"JOHNDOE_CT_{i:02d}.dcm" for i in range(4)]
CORRUPT_FILE = "JOHNDOE_CT_99.dcm"
CORRUPT_RELATIVE = f"{PATIENT_FOLDER}/{CORRUPT_FILE}"
ENCODINGS = ("utf-8", "utf-16-le", "utf-32-le")  # numpy stores str arrays as UTF-32


def sop_uid(index: int) -> str:
    return f"1.2.826.0.1.3680043.8.777.4242.{index + 1}9"


def secrets() -> list[str]:
    """Everything that identifies the patient: folder, file names, header values."""
    uids = [sop_uid(i) for i in range(len(VALID_FILES))] + [STUDY_UID, STUDY_UID + ".1"]
    return [PATIENT_FOLDER, "DOE^JOHN", PATIENT_ID, SECRET_NAME, SECRET_DATE, CORRUPT_FILE, "JOHNDOE",
            *VALID_FILES, *uids]


def make_patient_folder(root) -> str:
    """Four valid slices and a corrupt file in a folder named after the patient; the labels CSV's path."""
    rows = []
    for index, file_name in enumerate(VALID_FILES):
        pixels = np.full((8, 8), 500 + 10 * index, np.uint16)
        pixels[0, 0] = 400
        write_dicom(root / "dicom" / PATIENT_FOLDER / file_name, pixels, patient_id=PATIENT_ID,
                    study_uid=STUDY_UID, sop_uid=sop_uid(index))
        rows.append([sop_uid(index), index % 2])
    (root / "dicom" / PATIENT_FOLDER / CORRUPT_FILE).write_bytes(b"DICM" + b"\x00garbage" * 10)
    write_csv(root / "labels.csv", ["SOPInstanceUID", "label"], rows)
    return str(root / "labels.csv")


def run_prepare(repo, workdir, on_error: str) -> subprocess.CompletedProcess:
    """Snakemake's prepare_dataset job for the patient folder, with ``on_error``."""
    labels_csv = make_patient_folder(workdir / "data")
    config = {
        "prepare": {"threads": 1},
        "datasets": ["private_ct"],
        "dataset_catalog": {"private_ct": {"domain": "medical", "source": {
            "type": "dicom", "root": str(workdir / "data" / "dicom"), "labels_csv": labels_csv,
            "on_error": on_error}}},
    }
    return snakemake(repo, workdir, "--configfile", config_file(workdir, config), "--cores", "1",
                     "results/cache/private_ct", check=False)


def leaks_under_results(workdir) -> list[str]:
    """'secret (encoding) in file' for every identifier found in any file under results/."""
    found = []
    files = [path for path in sorted((workdir / "results").rglob("*")) if path.is_file()]
    assert files, "the run left no file under results/"
    for path in files:
        data = path.read_bytes()
        for secret in secrets():
            for encoding in ENCODINGS:
                if secret.encode(encoding) in data:
                    found.append(f"{secret!r} ({encoding}) in {path.relative_to(workdir)}")
    return found


@pytest.mark.parametrize("on_error", ["skip", "raise"])
def test_prepare_dataset_writes_no_patient_identifier_under_results(repo, tmp_path, on_error):
    result = run_prepare(repo, tmp_path, on_error)
    output = result.stdout + result.stderr
    log_text = (tmp_path / "results/logs/prepare_dataset/private_ct.log").read_text()
    corrupt_hash = salted_hash(DEFAULT_GROUP_SALT, CORRUPT_RELATIVE)
    assert (result.returncode == 0) == (on_error == "skip"), output
    assert leaks_under_results(tmp_path) == []
    # The log file names the corrupt file by its salted hash and its position in the sorted
    # listing (the fifth of five files) ...
    assert f"<file #4 sha:{corrupt_hash}>" in log_text
    if on_error == "skip":
        meta = json.loads((tmp_path / "results/cache/private_ct/meta.json").read_text())
        assert meta["n_images"] == 4
        assert meta["provenance"]["skipped_files"] == 1
        assert meta["provenance"]["first_skipped_hashed"] == [corrupt_hash]
        assert "skipped 1 unreadable file" in log_text
    else:
        assert not (tmp_path / "results/cache/private_ct").exists()
        assert "failed:" in log_text and "unreadable or corrupt" in log_text
        # ... and the terminal names it, so the user can find it.
        assert CORRUPT_RELATIVE in output and "unreadable or corrupt" in output


# ----------------------------------------------------------------------------------------------
# The same rule for every reader that names files, without Snakemake: logged() + load_source.


def corrupt_png_in_patient_folder(tmp_path) -> tuple[dict, str]:
    """image_folder: two class folders, one holding a patient-named folder with a corrupt PNG."""
    from fixtures_real import write_png

    for label in ("a", "b"):
        write_png(tmp_path / "tree" / label / "ok.png", np.zeros((4, 4)))
    relative = f"b/{PATIENT_FOLDER}/{CORRUPT_FILE}.png"
    (tmp_path / "tree" / relative).parent.mkdir(parents=True)
    (tmp_path / "tree" / relative).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return {"type": "image_folder", "root": str(tmp_path / "tree")}, relative


def escaping_csv_row(tmp_path) -> tuple[dict, str]:
    """image_csv: a row whose path leaves root through a patient-named folder."""
    from fixtures_real import write_png

    write_png(tmp_path / "root" / "ok.png", np.zeros((4, 4)))
    relative = f"../{PATIENT_FOLDER}/{CORRUPT_FILE}.png"
    write_png(tmp_path / PATIENT_FOLDER / f"{CORRUPT_FILE}.png", np.zeros((4, 4)))
    write_csv(tmp_path / "root" / "list.csv", ["path", "label"], [["ok.png", 0], [relative, 1]])
    return {"type": "image_csv", "csv": str(tmp_path / "root" / "list.csv")}, relative


def corrupt_nifti_in_patient_folder(tmp_path) -> tuple[dict, str]:
    """nifti: a readable volume and a truncated one in a patient-named folder."""
    from fixtures_real import write_nifti

    write_nifti(tmp_path / "nii" / "case1.nii.gz", np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    relative = f"{PATIENT_FOLDER}/{CORRUPT_FILE}.nii.gz"
    (tmp_path / "nii" / relative).parent.mkdir(parents=True)
    (tmp_path / "nii" / relative).write_bytes(b"\x1f\x8b truncated gzip")
    write_csv(tmp_path / "slices.csv", ["volume", "slice", "label"], [["case1.nii.gz", s, s % 2] for s in range(4)])
    return {"type": "nifti", "root": str(tmp_path / "nii"), "labels_csv": str(tmp_path / "slices.csv")}, relative


@pytest.mark.parametrize("make", [corrupt_png_in_patient_folder, escaping_csv_row, corrupt_nifti_in_patient_folder])
def test_log_file_names_a_failing_file_by_hash_and_stderr_by_path(tmp_path, capsys, make):
    from intrinsic.cache import DatasetError
    from intrinsic.logs import logged
    from intrinsic.sources import load_source

    source, relative = make(tmp_path)
    log_path = tmp_path / "results" / "logs" / "prepare.log"
    with pytest.raises(DatasetError), logged(str(log_path), "test_privacy") as log:
        load_source("ds", source, log=log)
    log_text = log_path.read_text()
    assert "failed:" in log_text and f"sha:{salted_hash(DEFAULT_GROUP_SALT, relative)}>" in log_text
    assert PATIENT_FOLDER not in log_text and CORRUPT_FILE not in log_text
    assert relative in capsys.readouterr().err  # the user can still find the file


def test_redact_replaces_a_registered_name_in_any_quoting_and_keeps_the_rest():
    from intrinsic.logs import private, redact

    # a path with both quote characters: repr() escapes one of them
    path = "O'NEIL^\"JO\"_PID-77/scan.dcm"
    assert private(path, "<file #3 sha:abc>") == path
    message = f"file {path!r} failed; raw: {path}; listed: {[path]}"
    assert redact(message) == "file <file #3 sha:abc> failed; raw: <file #3 sha:abc>; listed: [<file #3 sha:abc>]"
    assert redact("nothing private here") == "nothing private here"
