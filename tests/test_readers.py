"""Real-dataset readers (the real-data types of intrinsic.sources, through load_source).

Every test writes small files in the real format into tmp_path and prepares them through the
same path as real data: load_source + write_cache.
"""

import hashlib
import json
import logging

import numpy as np
import pytest

from fixtures_real import (
    SECRET_DATE,
    SECRET_NAME,
    mnist_images,
    write_cifar10,
    write_csv,
    write_dicom,
    write_medmnist,
    write_mnist,
    write_nifti,
    write_png,
    write_svhn,
)
from intrinsic.cache import CACHE_FILES, DatasetError, load_cache, write_cache
from intrinsic.sources import load_source
from intrinsic.sources.common import DEFAULT_GROUP_SALT, label_key, salted_hash
from intrinsic.sources.dicom import dicom_to_unit


def prepare_cache(folder, name, source, size=16, channels=1, threads=1, log=None, resize_in_workers=True):
    """What rule prepare_dataset does."""
    geometry = {"size": size, "channels": channels} if resize_in_workers else {}
    raw = load_source(name, source, threads=threads, log=log, **geometry)
    return raw, write_cache(folder, raw, size=size, channels=channels, domain="medical")


def sha16(salt, value):
    return hashlib.sha256(f"{salt}{value}".encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Helpers


@pytest.mark.parametrize(("value", "key"), [(1, "1"), (1.0, "1"), ("1.0", "1"), (" -1.0 ", "-1"), ("", ""),
                                            (float("nan"), ""), ("cat", "cat"), (0.5, "0.5"), (True, "1")])
def test_label_key_canonicalizes_source_values(value, key):
    assert label_key(value) == key


def test_salted_hash_is_sha256_of_salt_and_id():
    assert salted_hash("pepper", "PID-1") == sha16("pepper", "PID-1")
    assert len(salted_hash("pepper", "PID-1")) == 16
    assert salted_hash("pepper", "PID-1") != salted_hash("salt", "PID-1")
    assert salted_hash("pepper", "PID-1") != salted_hash("pepper", "PID-2")


# ----------------------------------------------------------------------------------------------
# torchvision


def test_mnist_idx_files_class_subset_and_splits(tmp_path):
    train_labels, test_labels = np.arange(30) % 10, np.arange(10) % 10
    write_mnist(tmp_path / "root", train_labels, test_labels)
    source = {"type": "torchvision", "dataset": "MNIST", "root": str(tmp_path / "root"), "classes": [3, 8]}
    raw = load_source("mnist", source)
    assert raw.classes == ["3", "8"]
    expected_train = mnist_images(train_labels)[np.isin(train_labels, [3, 8])]
    expected_test = mnist_images(test_labels)[np.isin(test_labels, [3, 8])]
    expected = np.concatenate([expected_train, expected_test]) / 255.0
    assert len(raw.images) == len(expected) == 8
    for image, want in zip(raw.images, expected):
        np.testing.assert_allclose(image, want, atol=1e-6)
    assert list(raw.labels) == [0, 1, 0, 1, 0, 1, 0, 1]
    assert len(set(raw.groups)) == 8
    assert raw.provenance["images_per_split"] == {"train": 30, "test": 10}
    only_test = load_source("mnist", {**source, "split": "test"})
    assert len(only_test.images) == 2 and all(g.startswith("MNIST:test:") for g in only_test.groups)


def test_cifar10_pickled_batches_with_a_class_mapping(tmp_path):
    write_cifar10(tmp_path / "root", per_batch=10)
    source = {"type": "torchvision", "dataset": "CIFAR10", "root": str(tmp_path / "root"), "split": "train",
              "verify_checksums": False, "classes": {"animal": ["cat", "dog"], "vehicle": ["airplane"]}}
    raw = load_source("cifar", source)
    assert raw.classes == ["animal", "vehicle"]
    assert len(raw.images) == 5 * 3  # 5 batches x (airplane, cat, dog)
    first = raw.images[0]  # batch 1, k = 0: airplane
    assert first.shape == (32, 32, 3)
    np.testing.assert_allclose(first[5, 7] * 255, [0, 100, 200], atol=1e-4)
    assert raw.labels[0] == 1
    np.testing.assert_allclose(raw.images[1][0, 0] * 255, [3, 103, 200], atol=1e-4)  # k = 3: cat
    assert raw.labels[1] == 0


def test_cifar10_checksums_are_verified_by_default(tmp_path):
    write_cifar10(tmp_path / "root")
    source = {"type": "torchvision", "dataset": "CIFAR10", "root": str(tmp_path / "root"), "classes": ["cat", "dog"]}
    with pytest.raises(DatasetError, match=r"'cifar'.*CIFAR10.*missing or unreadable"):
        load_source("cifar", source)


def test_svhn_mat_files_map_label_10_to_digit_0(tmp_path):
    write_svhn(tmp_path / "root", {"train": [10, 1, 2, 10, 1], "test": [1, 10]})
    source = {"type": "torchvision", "dataset": "SVHN", "root": str(tmp_path / "root"), "classes": [0, 1],
              "verify_checksums": False}
    raw = load_source("svhn", source)
    assert raw.classes == ["0", "1"]
    assert list(raw.labels) == [0, 1, 0, 1, 1, 0]
    # the fixture's pixel value is 20 * digit + 1
    assert [round(float(image[0, 0, 0]) * 255) for image in raw.images] == [1, 21, 1, 21, 21, 1]
    assert raw.images[0].shape == (32, 32, 3)
    capped = load_source("svhn", {**source, "max_per_class": 2})  # keys: the group strings
    for label, digit in ((0, 10), (1, 1)):
        members = [f"SVHN:{split}:{i}" for split, labels in (("train", [10, 1, 2, 10, 1]), ("test", [1, 10]))
                   for i, y in enumerate(labels) if y == digit]
        assert sorted(g for g, y in zip(capped.groups, capped.labels) if y == label) == chosen_by_hash(members, 2)


# ----------------------------------------------------------------------------------------------
# image_folder / image_csv


def make_class_tree(root, n_per_class=4):
    """root/<class>/<i>.png; image value = 50 * class index + i."""
    for c, name in enumerate(["n01_cat", "n02_dog", "n03_fox"]):
        for i in range(n_per_class):
            write_png(root / name / f"img_{i}.png", np.full((12, 10), 50 * c + i))


def test_image_folder_class_tree(tmp_path):
    make_class_tree(tmp_path / "train")
    write_png(tmp_path / "train" / "stray.png", np.zeros((4, 4)))  # not in a class folder: ignored
    raw = load_source("imnet", {"type": "image_folder", "root": str(tmp_path / "train"),
                                "classes": ["n01_cat", "n03_fox"]})
    assert raw.classes == ["n01_cat", "n03_fox"]
    assert list(raw.labels) == [0] * 4 + [1] * 4
    values = [round(float(image[0, 0]) * 255) for image in raw.images]
    assert values == [0, 1, 2, 3, 100, 101, 102, 103]
    assert raw.images[0].shape == (12, 10)
    assert len(set(raw.groups)) == 8
    assert raw.groups[0] == sha16(DEFAULT_GROUP_SALT, "n01_cat/img_0.png")
    everything = load_source("imnet", {"type": "image_folder", "root": str(tmp_path / "train")})
    assert everything.classes == ["n01_cat", "n02_dog", "n03_fox"] and len(everything.images) == 12


def test_image_folder_jpeg_rgb_and_regexes_like_mura(tmp_path):
    from PIL import Image

    root = tmp_path / "MURA-v1.1"
    layout = [("train/XR_ELBOW/patient00011/study1_positive", 2), ("train/XR_ELBOW/patient00011/study2_negative", 1),
              ("valid/XR_HAND/patient11185/study1_negative", 2), ("train/XR_HAND/patient00020/study1_positive", 1)]
    for folder, n in layout:
        for i in range(n):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((20, 16, 3), 128, np.uint8)).save(root / folder / f"image{i + 1}.jpg", quality=95)
    source = {"type": "image_folder", "root": str(root), "label_regex": r"_(positive|negative)/",
              "group_regex": r"(patient\d+)/", "classes": {"normal": ["negative"], "abnormal": ["positive"]},
              "group_salt": "mura-salt"}
    raw = load_source("mura", source)
    assert len(raw.images) == 6 and raw.images[0].shape == (20, 16, 3)
    assert abs(float(raw.images[0].mean()) - 128 / 255) < 3 / 255  # JPEG is lossy
    order = sorted((f"{folder}/image{i + 1}.jpg", folder) for folder, n in layout for i in range(n))
    assert list(raw.labels) == [1 if "positive" in folder else 0 for _, folder in order]
    patients = [folder.split("/")[2] for _, folder in order]
    assert list(raw.groups) == [sha16("mura-salt", p) for p in patients]
    assert len(set(raw.groups)) == 3


def test_image_csv_with_groups_and_chexpert_style_uncertain_labels(tmp_path):
    rows = []
    values = ["1.0", "0.0", "-1.0", "", "1.0", "0.0"]
    for i, value in enumerate(values):
        relative = f"train/patient{i // 2:05d}/study1/view{i}_frontal.png"
        write_png(tmp_path / "CheXpert-v1.0-small" / relative, np.full((8, 8), 10 * i))
        rows.append([f"CheXpert-v1.0-small/{relative}", "Frontal" if i != 5 else "Lateral", value])
    write_csv(tmp_path / "train.csv", ["Path", "Frontal/Lateral", "Pleural Effusion"], rows)
    source = {"type": "image_csv", "csv": str(tmp_path / "train.csv"), "path_column": "Path",
              "label_column": "Pleural Effusion", "group_regex": r"(patient\d+)/",
              "where": {"Frontal/Lateral": ["Frontal"]},
              "classes": {"no_effusion": ["0", ""], "effusion": ["1"]}, "drop_other": True}
    raw = load_source("chexpert", source)
    # rows 0..4 are frontal; row 2 (-1, uncertain) is dropped
    assert list(raw.labels) == [1, 0, 0, 1]
    assert [round(float(im[0, 0]) * 255) for im in raw.images] == [0, 10, 30, 40]
    patients = ["patient00000", "patient00000", "patient00001", "patient00002"]
    assert list(raw.groups) == [sha16(DEFAULT_GROUP_SALT, p) for p in patients]
    assert raw.provenance["dropped_labels"] == {"-1": 1}
    with pytest.raises(DatasetError, match=r"train\.csv.*label values \{'-1': 1\}"):
        load_source("chexpert", {**source, "drop_other": False})


def test_image_csv_missing_column_lists_the_available_columns(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4)))
    write_csv(tmp_path / "labels.csv", ["file", "diagnosis"], [["a.png", "1"]])
    with pytest.raises(DatasetError) as error:
        load_source("ds", {"type": "image_csv", "csv": str(tmp_path / "labels.csv"), "path_column": "file"})
    message = str(error.value)
    assert "labels.csv" in message and "'label'" in message and "['file', 'diagnosis']" in message


def test_image_csv_group_column(tmp_path):
    rows = []
    for i in range(6):
        write_png(tmp_path / "img" / f"{i}.png", np.full((5, 5), i))
        rows.append([f"img/{i}.png", i % 2, f"P{i // 3}"])
    write_csv(tmp_path / "knees.csv", ["path", "kl", "patient"], rows)
    raw = load_source("oai", {"type": "image_csv", "csv": str(tmp_path / "knees.csv"), "label_column": "kl",
                              "group_column": "patient"})
    assert list(raw.labels) == [0, 1, 0, 1, 0, 1]
    assert list(raw.groups) == [sha16(DEFAULT_GROUP_SALT, f"P{i // 3}") for i in range(6)]


# ----------------------------------------------------------------------------------------------
# DICOM


def make_dicom_study(root, window_pixels=None, photometric="MONOCHROME2"):
    """Two patients, three CT slices each; returns the RSNA-style label rows and the UIDs."""
    rows, uids = [], []
    for patient in range(2):
        for s in range(3):
            sop = f"1.2.826.0.1.3680043.8.498.{patient + 1}{s}77"
            pixels = np.full((8, 8), 500 + 10 * s, np.uint16) if window_pixels is None else window_pixels
            pixels = pixels.copy()
            pixels[0, 0] = 400  # a dark pixel, so no image is constant
            write_dicom(root / f"patient{patient}" / f"ID_{patient}{s}.dcm", pixels, patient_id=f"PID-SECRET-{patient}",
                        study_uid=f"1.2.826.0.1.3680043.8.499.{patient}", sop_uid=sop, photometric=photometric)
            label = int(s == 2 or patient == 1 and s == 1)
            rows += [[f"{sop}_any", label], [f"{sop}_epidural", 0]]
            uids.append(sop)
    return rows, uids


def test_dicom_window_rescale_labels_by_uid_and_hashed_patient_groups(tmp_path):
    # stored s -> HU = 2 s - 1024; brain window 40/80 maps HU 0..80 onto 0..1
    stored = np.array([[512, 522, 532, 552], [560, 400, 517, 542]], np.uint16)
    expected = np.array([[0.0, 0.25, 0.5, 1.0], [1.0, 0.0, 0.125, 0.75]], np.float32)  # by hand
    np.testing.assert_allclose(dicom_to_unit(stored, 2, -1024, "MONOCHROME2", (40, 80)), expected, atol=1e-6)
    rows, uids = make_dicom_study(tmp_path / "dcm", window_pixels=np.tile(stored, (2, 2)))
    write_csv(tmp_path / "stage_2_train.csv", ["ID", "Label"], rows)
    source = {"type": "dicom", "root": str(tmp_path / "dcm"), "labels_csv": str(tmp_path / "stage_2_train.csv"),
              "key_column": "ID", "key_regex": r"^(.*)_any$", "label_column": "Label",
              "window": {"center": 40, "width": 80}, "classes": {"no_haemorrhage": [0], "haemorrhage": [1]}}
    raw = load_source("rsna", source)
    assert len(raw.images) == 6
    np.testing.assert_allclose(raw.images[0][:2, :4], expected, atol=1e-6)
    assert raw.images[0][0, 0] == 0.0  # 400 stored -> -224 HU, below the window
    assert list(raw.labels) == [0, 0, 1, 0, 1, 1]
    assert list(raw.groups) == [sha16(DEFAULT_GROUP_SALT, f"PID-SECRET-{p}") for p in (0, 0, 0, 1, 1, 1)]
    other_salt = load_source("rsna", {**source, "group_salt": "another salt"})
    assert set(other_salt.groups).isdisjoint(raw.groups)
    assert len(set(other_salt.groups)) == 2
    by_study = load_source("rsna", {**source, "group": "StudyInstanceUID"})
    assert by_study.groups[0] == sha16(DEFAULT_GROUP_SALT, "1.2.826.0.1.3680043.8.499.0")


def test_dicom_monochrome1_is_inverted_without_window(tmp_path):
    rows, _ = make_dicom_study(tmp_path / "dcm", photometric="MONOCHROME1")
    write_csv(tmp_path / "labels.csv", ["ID", "Label"], rows)
    raw = load_source("cr", {"type": "dicom", "root": str(tmp_path / "dcm"), "labels_csv": str(tmp_path / "labels.csv"),
                             "key_column": "ID", "key_regex": r"^(.*)_any$", "label_column": "Label"})
    image = raw.images[0]
    # min..max normalization, then inverted: the darkest stored pixel (400) is now the brightest
    assert image[0, 0] == pytest.approx(1.0) and image[4, 4] == pytest.approx(0.0)


def test_dicom_labels_by_path_and_group_from_csv(tmp_path):
    _, _ = make_dicom_study(tmp_path / "dcm")
    files = [f"patient{p}/ID_{p}{s}.dcm" for p in range(2) for s in range(3)]
    write_csv(tmp_path / "slices.csv", ["file", "in_box", "subject"],
              [[f, i % 2, f"Breast_MRI_{i // 3:03d}"] for i, f in enumerate(files)])
    raw = load_source("dbc", {"type": "dicom", "root": str(tmp_path / "dcm"),
                              "labels_csv": str(tmp_path / "slices.csv"), "key": "path", "key_column": "file",
                              "label_column": "in_box", "group_column": "subject"})
    assert list(raw.labels) == [0, 1, 0, 1, 0, 1]
    assert list(raw.groups) == [sha16(DEFAULT_GROUP_SALT, f"Breast_MRI_{i // 3:03d}") for i in range(6)]


def test_dicom_file_without_label_row_is_an_error_or_dropped(tmp_path):
    make_dicom_study(tmp_path / "dcm")
    write_csv(tmp_path / "slices.csv", ["path", "label"], [["patient0/ID_00.dcm", 0], ["patient1/ID_10.dcm", 1]])
    source = {"type": "dicom", "root": str(tmp_path / "dcm"), "labels_csv": str(tmp_path / "slices.csv"), "key": "path",
              "key_column": "path"}
    with pytest.raises(DatasetError, match=r"slices\.csv.*<no CSV row>.*patient0/ID_01\.dcm"):
        load_source("dbc", source)
    raw = load_source("dbc", {**source, "drop_other": True})
    assert list(raw.labels) == [0, 1] and raw.provenance["dropped_labels"] == {"<no CSV row>": 4}


def test_dicom_without_a_label_row_by_uid_is_named_by_path_never_by_uid(tmp_path):
    rows, uids = make_dicom_study(tmp_path / "dcm")
    missing = uids[4]  # patient1/ID_11.dcm
    write_csv(tmp_path / "labels.csv", ["ID", "Label"], [row for row in rows if not row[0].startswith(missing)])
    source = {"type": "dicom", "root": str(tmp_path / "dcm"), "labels_csv": str(tmp_path / "labels.csv"),
              "key_column": "ID", "key_regex": r"^(.*)_any$", "label_column": "Label"}
    with pytest.raises(DatasetError, match=r"label values \{'<no CSV row>': 1\} \(value: count\) "
                                           r"\(first: DICOM file 'patient1/ID_11\.dcm'\)") as error:
        load_source("rsna", source)
    assert not any(uid in str(error.value) for uid in uids)  # a UID identifies the image


def test_prepared_dicom_cache_holds_no_header_data(tmp_path):
    rows, uids = make_dicom_study(tmp_path / "dcm")
    (tmp_path / "dcm" / "patient1" / "ID_broken.dcm").write_bytes(b"DICM" + b"\x00garbage" * 10)
    write_csv(tmp_path / "labels.csv", ["ID", "Label"], rows)
    source = {"type": "dicom", "root": str(tmp_path / "dcm"), "labels_csv": str(tmp_path / "labels.csv"),
              "key_column": "ID", "key_regex": r"^(.*)_any$", "label_column": "Label", "on_error": "skip"}
    raw, meta = prepare_cache(tmp_path / "cache", "rsna", source, threads=2)
    assert meta["n_images"] == 6 and meta["n_groups"] == 2
    secrets = [SECRET_NAME, "SECRET", "PID-SECRET-0", "PID-SECRET-1", SECRET_DATE, "1.2.826.0.1.3680043", "patient1"]
    files = sorted((tmp_path / "cache").iterdir())
    assert {f.name for f in files} == set(CACHE_FILES)  # every file of the cache is scanned
    for path in files:
        data = path.read_bytes()
        for secret in secrets + uids:
            for encoding in ("utf-8", "utf-32-le", "utf-16-le"):  # numpy stores str arrays as UTF-32
                assert secret.encode(encoding) not in data, f"{secret!r} ({encoding}) found in {path.name}"
    provenance = json.loads((tmp_path / "cache" / "meta.json").read_text())["provenance"]
    assert provenance["skipped_files"] == 1
    assert provenance["first_skipped_hashed"] == [sha16(DEFAULT_GROUP_SALT, "patient1/ID_broken.dcm")]
    assert provenance["group_salt"] == "default"


def test_corrupt_dicom_is_an_error_naming_the_file_and_nothing_is_written(tmp_path):
    rows, _ = make_dicom_study(tmp_path / "dcm")
    (tmp_path / "dcm" / "patient1" / "ID_broken.dcm").write_bytes(b"not a dicom file at all")
    write_csv(tmp_path / "labels.csv", ["ID", "Label"], rows)
    source = {"type": "dicom", "root": str(tmp_path / "dcm"), "labels_csv": str(tmp_path / "labels.csv"),
              "key_column": "ID", "key_regex": r"^(.*)_any$", "label_column": "Label"}
    with pytest.raises(DatasetError, match=r"'rsna'.*patient1/ID_broken\.dcm.*unreadable or corrupt"):
        prepare_cache(tmp_path / "cache", "rsna", source)
    assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------------------------
# NIfTI


def make_brats(root, shape=(16, 16, 6), tumour_slices=((2, 3), (4,))):
    """Two BraTS-style cases; slice 0 of each volume is empty (air), tumour in the given slices."""
    rng = np.random.default_rng(0)
    for case, slices in enumerate(tumour_slices):
        folder = root / f"BraTS20_Training_{case + 1:03d}"
        volume = rng.uniform(100, 200, size=shape).astype(np.float32)
        volume[..., 0] = 0
        volume[0, 0, 1] = 10_000  # an outlier that percentile normalization clips
        mask = np.zeros(shape, np.uint8)
        for s in slices:
            mask[5:8, 5:8, s] = 2
        write_nifti(folder / f"BraTS20_Training_{case + 1:03d}_flair.nii.gz", volume)
        write_nifti(folder / f"BraTS20_Training_{case + 1:03d}_seg.nii.gz", mask)


BRATS = {"type": "nifti", "pattern": "*/*_flair.nii.gz", "mask_replace": {"_flair.nii.gz": "_seg.nii.gz"},
         "axis": 2, "percentiles": [0.5, 99.5], "min_foreground": 0.5, "group_regex": r"(BraTS20_Training_\d+)/",
         "classes": {"no_tumour": [0], "tumour": [1]}}


def test_nifti_slices_labels_from_mask_percentiles_and_foreground_drop(tmp_path):
    import nibabel

    make_brats(tmp_path / "brats")
    raw = load_source("brats", {**BRATS, "root": str(tmp_path / "brats")})
    assert len(raw.images) == 2 * 5  # slice 0 of each volume has no foreground: dropped
    assert list(raw.labels) == [0, 1, 1, 0, 0] + [0, 0, 0, 1, 0]
    assert raw.provenance["slices_dropped_foreground"] == 2 and raw.provenance["volumes"] == 2
    volume = np.asarray(nibabel.load(tmp_path / "brats/BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz").dataobj)
    lo, hi = np.percentile(volume, [0.5, 99.5])
    expected = np.clip((volume[:, :, 3] - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(raw.images[2], expected, atol=1e-5)  # slice 3 of case 1
    assert raw.images[0][0, 0] == 1.0  # the outlier is clipped, not stretching the range
    assert len(set(raw.groups[:5])) == 1 and len(set(raw.groups[5:])) == 1 and raw.groups[0] != raw.groups[5]
    assert raw.groups[0] == sha16(DEFAULT_GROUP_SALT, "BraTS20_Training_001")


def test_nifti_labels_from_csv_and_other_axis(tmp_path):
    make_brats(tmp_path / "prostate")
    volume = "BraTS20_Training_002/BraTS20_Training_002_flair.nii.gz"
    write_csv(tmp_path / "slices.csv", ["volume", "slice", "label"], [[volume, s, "high" if s % 2 else "low"]
                                                                      for s in range(16)])
    source = {"type": "nifti", "root": str(tmp_path / "prostate"), "pattern": "*/*002_flair.nii.gz",
              "labels_csv": str(tmp_path / "slices.csv"), "axis": 0, "classes": ["low", "high"]}
    raw = load_source("prostate", source)
    assert len(raw.images) == 16 and raw.images[0].shape == (16, 6)
    assert list(raw.labels) == [s % 2 for s in range(16)]


def test_nifti_mask_shape_mismatch_names_both_files_and_shapes(tmp_path):
    make_brats(tmp_path / "brats")
    write_nifti(tmp_path / "brats/BraTS20_Training_002/BraTS20_Training_002_seg.nii.gz",
                np.zeros((16, 16, 5), np.uint8))
    with pytest.raises(DatasetError) as error:
        load_source("brats", {**BRATS, "root": str(tmp_path / "brats")})
    message = str(error.value)
    for part in ("BraTS20_Training_002_seg.nii.gz", "(16, 16, 5)", "BraTS20_Training_002_flair.nii.gz", "(16, 16, 6)"):
        assert part in message
    skipped = load_source("brats", {**BRATS, "root": str(tmp_path / "brats"), "on_error": "skip"})
    assert len(skipped.images) == 5 and skipped.provenance["skipped_files"] == 1


def test_corrupt_nifti_is_an_error_or_skipped_and_counted(tmp_path, caplog):
    make_brats(tmp_path / "brats", tumour_slices=((2, 3), (4,), (1,)))
    broken = tmp_path / "brats/BraTS20_Training_003/BraTS20_Training_003_flair.nii.gz"
    broken.write_bytes(b"\x1f\x8b truncated gzip")
    with pytest.raises(DatasetError, match=r"BraTS20_Training_003_flair\.nii\.gz.*unreadable or corrupt"):
        load_source("brats", {**BRATS, "root": str(tmp_path / "brats")})
    log = logging.getLogger("test_readers")
    with caplog.at_level(logging.INFO, logger="test_readers"):
        raw, meta = prepare_cache(tmp_path / "cache", "brats", {**BRATS, "root": str(tmp_path / "brats"),
                                                                  "on_error": "skip"}, log=log)
    assert meta["n_images"] == 10 and meta["provenance"]["skipped_files"] == 1
    assert "BraTS20_Training_003_flair.nii.gz" in caplog.text and "skipped 1" in caplog.text
    # the skipped file is named in the log only; meta.json has a salted hash of its name
    assert "BraTS20_Training_003" not in (tmp_path / "cache/meta.json").read_text()
    assert len(meta["provenance"]["first_skipped_hashed"]) == 1


# ----------------------------------------------------------------------------------------------
# MedMNIST


def test_medmnist_gray_with_a_label_mapping(tmp_path):
    arrays = write_medmnist(tmp_path / "pneumoniamnist.npz", {"train": 30, "val": 6, "test": 10}, n_classes=3)
    source = {"type": "medmnist", "npz": str(tmp_path / "pneumoniamnist.npz"),
              "classes": {"normal": [0], "abnormal": [1, 2]}}
    raw = load_source("pneumonia", source)
    all_labels = np.concatenate([arrays[f"{s}_labels"][:, 0] for s in ("train", "val", "test")])
    assert list(raw.labels) == list((all_labels > 0).astype(int))
    np.testing.assert_allclose(raw.images[0], arrays["train_images"][0] / 255.0, atol=1e-6)
    assert raw.groups[0] == "medmnist:train:0" and len(set(raw.groups)) == 46
    test_only = load_source("pneumonia", {**source, "split": "test"})
    assert len(test_only.images) == 10


def test_medmnist_rgb_and_multilabel(tmp_path):
    arrays = write_medmnist(tmp_path / "chest.npz", {"train": 20, "test": 8}, side=64, rgb=True, n_labels=4)
    source = {"type": "medmnist", "npz": str(tmp_path / "chest.npz")}
    with pytest.raises(DatasetError, match=r"chest\.npz.*multi-label \(4 columns\).*label_column"):
        load_source("chest", source)
    raw = load_source("chest", {**source, "label_column": 2})
    assert raw.images[0].shape == (64, 64, 3)
    assert list(raw.labels) == list(np.concatenate([arrays["train_labels"][:, 2], arrays["test_labels"][:, 2]]))
    with pytest.raises(DatasetError, match=r"label_column.*0\.\.3"):
        load_source("chest", {**source, "label_column": 4})


# ----------------------------------------------------------------------------------------------
# Bad input shared by all readers


def test_missing_root_names_the_path(tmp_path):
    for source in ({"type": "image_folder", "root": str(tmp_path / "nowhere")},
                   {"type": "medmnist", "npz": str(tmp_path / "nowhere.npz")},
                   {"type": "torchvision", "dataset": "MNIST", "root": str(tmp_path / "nowhere")}):
        with pytest.raises(DatasetError, match=r"'ds'.*nowhere.*does not exist"):
            load_source("ds", source)


def test_corrupt_png_is_an_error_or_skipped(tmp_path, caplog):
    make_class_tree(tmp_path / "tree")
    (tmp_path / "tree/n02_dog/img_9.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    source = {"type": "image_folder", "root": str(tmp_path / "tree")}
    with pytest.raises(DatasetError, match=r"n02_dog/img_9\.png.*unreadable or corrupt"):
        prepare_cache(tmp_path / "cache", "ds", source)
    assert not (tmp_path / "cache").exists()
    raw, meta = prepare_cache(tmp_path / "cache", "ds", {**source, "on_error": "skip"}, threads=2)
    assert meta["n_images"] == 12
    assert meta["provenance"]["skipped_files"] == 1
    # hashed like DICOM's: a folder or file name may identify a person in any image set
    assert meta["provenance"]["first_skipped_hashed"] == [sha16(DEFAULT_GROUP_SALT, "n02_dog/img_9.png")]
    assert "first_skipped" not in meta["provenance"]


def test_labels_outside_the_task_are_an_error_naming_file_and_values(tmp_path):
    write_medmnist(tmp_path / "m.npz", {"train": 40}, n_classes=3)
    source = {"type": "medmnist", "npz": str(tmp_path / "m.npz"), "classes": {"a": [0], "b": [1]}}
    with pytest.raises(DatasetError, match=r"m\.npz.*label values \{'2': \d+\}"):
        load_source("ds", source)
    raw = load_source("ds", {**source, "drop_other": True})
    assert set(raw.labels) == {0, 1} and raw.provenance["dropped_labels"]["2"] > 0


def test_too_few_images_of_a_class(tmp_path):
    make_class_tree(tmp_path / "tree", n_per_class=3)
    with pytest.raises(DatasetError, match=r"too few images of class\(es\) \{'n01_cat': 3, 'n02_dog': 3\}"):
        load_source("ds", {"type": "image_folder", "root": str(tmp_path / "tree"),
                           "classes": ["n01_cat", "n02_dog"], "min_per_class": 4})


def test_unknown_option_and_type(tmp_path):
    with pytest.raises(DatasetError, match=r"'ds'.*no option\(s\) \['roots'\]"):
        load_source("ds", {"type": "image_folder", "roots": "x"})
    with pytest.raises(DatasetError, match=r"unknown source type 'dicom_magic'"):
        load_source("ds", {"type": "dicom_magic"})


def test_embedded_kinds_still_route_to_the_generators():
    raw = load_source("digits", {"type": "sklearn_digits", "classes": [1, 7]})
    assert raw.classes == ["1", "7"] and len(raw.images) > 300


# ----------------------------------------------------------------------------------------------
# Parallel decode: same result as serial, and the same cache as resizing in prepare()


def test_parallel_decode_is_deterministic_and_matches_serial(tmp_path):
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        for i in range(20):
            write_png(tmp_path / "tree" / c / f"{i:02d}.png", rng.integers(0, 256, size=(40, 30)))
    source = {"type": "image_folder", "root": str(tmp_path / "tree")}
    serial, meta_serial = prepare_cache(tmp_path / "c1", "ds", source, threads=1, resize_in_workers=False)
    parallel, meta_parallel = prepare_cache(tmp_path / "c2", "ds", source, threads=2)
    assert meta_serial["sha256"] == meta_parallel["sha256"]
    np.testing.assert_array_equal(serial.labels, parallel.labels)
    np.testing.assert_array_equal(serial.groups, parallel.groups)
    make_brats(tmp_path / "brats")
    one = load_source("brats", {**BRATS, "root": str(tmp_path / "brats")}, threads=1, size=8, channels=1)
    two = load_source("brats", {**BRATS, "root": str(tmp_path / "brats")}, threads=2, size=8, channels=1)
    assert all(np.array_equal(x, y) for x, y in zip(one.images, two.images)) and len(one.images) == 10
    assert load_cache(tmp_path / "c2", verify=True).meta["n_images"] == 40


def test_sixteen_bit_png_is_scaled_by_the_type_range(tmp_path):
    from PIL import Image

    (tmp_path / "tree" / "a").mkdir(parents=True)
    (tmp_path / "tree" / "b").mkdir(parents=True)
    for folder, value in (("a", 1000), ("b", 65535)):
        Image.fromarray(np.full((6, 6), value, np.uint16)).save(tmp_path / "tree" / folder / "x.png")
    raw = load_source("xr", {"type": "image_folder", "root": str(tmp_path / "tree")})
    assert raw.images[0][0, 0] == pytest.approx(1000 / 65535) and raw.images[1][0, 0] == pytest.approx(1.0)


def test_image_listed_in_csv_but_missing_is_an_error_or_skipped(tmp_path):
    for i in range(4):
        write_png(tmp_path / f"{i}.png", np.full((5, 5), i))
    write_csv(tmp_path / "list.csv", ["path", "label"], [[f"{i}.png", i % 2] for i in range(5)])  # 4.png is absent
    source = {"type": "image_csv", "csv": str(tmp_path / "list.csv")}
    with pytest.raises(DatasetError, match=r"'4\.png'.*unreadable or corrupt.*FileNotFoundError"):
        load_source("ds", source)
    raw = load_source("ds", {**source, "on_error": "skip"})
    assert list(raw.labels) == [0, 1, 0, 1] and raw.provenance["skipped_files"] == 1


# ------------------------------------------------------------------------- vendored real data

def test_vendored_data_matches_its_readme_and_reads_through_the_reader(repo):
    """data/ holds what data/README.md says (sha256), and the embedded default's relative paths
    resolve against the workflow folder, whatever the working directory."""
    import re

    readme = (repo / "data/README.md").read_text()
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M))
    assert set(listed) == {"mnist_subset.npz", "pneumoniamnist.npz", "breastmnist.npz"}
    for name, digest in listed.items():
        assert hashlib.sha256((repo / "data" / name).read_bytes()).hexdigest() == digest, name
    raw = load_source("breastmnist", {"type": "medmnist", "npz": "data/breastmnist.npz",
                                      "classes": {"malignant": [0], "normal_or_benign": [1]}}, base_dir=repo)
    assert raw.classes == ["malignant", "normal_or_benign"]
    assert np.bincount(raw.labels).tolist() == [210, 570]
    mnist = load_source("mnist", {"type": "medmnist", "npz": "data/mnist_subset.npz"}, base_dir=repo)
    assert mnist.classes == [str(d) for d in range(10)] and np.bincount(mnist.labels).tolist() == [600] * 10
    with pytest.raises(DatasetError, match="does not exist"):
        load_source("mnist", {"type": "medmnist", "npz": "data/mnist_subset.npz"}, base_dir=repo / "nowhere")


# ----------------------------------------------------------------------------------------------
# image_csv: every listed path lies under root, and each image is listed once


def write_listed_images(folder, names):
    """One 4x4 PNG per name under ``folder``; image i has the constant value 10 * i."""
    for i, relative in enumerate(names):
        write_png(folder / relative, np.full((4, 4), 10 * i))


def test_image_csv_path_escaping_root_with_dotdot_names_csv_line_and_option(tmp_path):
    write_listed_images(tmp_path / "root", ["a.png", "b.png"])
    write_png(tmp_path / "outside.png", np.zeros((4, 4)))
    write_csv(tmp_path / "root" / "list.csv", ["path", "label"], [["a.png", 0], ["b.png", 1], ["../outside.png", 1]])
    with pytest.raises(DatasetError, match=r"'ds'.*list\.csv.*'\.\./outside\.png' \(CSV line 4\).*"
                                           r"option 'path_column'.*outside root"):
        load_source("ds", {"type": "image_csv", "csv": str(tmp_path / "root" / "list.csv")})


def test_image_csv_absolute_path_outside_root_is_an_error(tmp_path):
    write_listed_images(tmp_path / "root", ["a.png", "b.png"])
    write_png(tmp_path / "elsewhere" / "c.png", np.zeros((4, 4)))
    outside = str(tmp_path / "elsewhere" / "c.png")
    write_csv(tmp_path / "list.csv", ["path", "label"], [[outside, 0], ["a.png", 0], ["b.png", 1]])
    source = {"type": "image_csv", "csv": str(tmp_path / "list.csv"), "root": str(tmp_path / "root")}
    with pytest.raises(DatasetError, match=r"list\.csv.*c\.png' \(CSV line 2\).*option 'path_column'.*outside root"):
        load_source("ds", source)
    # an absolute path under root is fine: the same file as its relative spelling
    write_csv(tmp_path / "inside.csv", ["path", "label"], [[str(tmp_path / "root" / "a.png"), 0], ["b.png", 1]])
    raw = load_source("ds", {**source, "csv": str(tmp_path / "inside.csv")})
    assert [round(float(image[0, 0]) * 255) for image in raw.images] == [0, 10]


def test_image_csv_symlink_escaping_root_is_an_error(tmp_path):
    write_listed_images(tmp_path / "root", ["a.png", "b.png"])
    write_png(tmp_path / "secret" / "x.png", np.zeros((4, 4)))
    (tmp_path / "root" / "link.png").symlink_to(tmp_path / "secret" / "x.png")
    write_csv(tmp_path / "root" / "list.csv", ["path", "label"], [["a.png", 0], ["link.png", 0], ["b.png", 1]])
    with pytest.raises(DatasetError, match=r"'link\.png' \(CSV line 3\).*option 'path_column'.*outside root"):
        load_source("ds", {"type": "image_csv", "csv": str(tmp_path / "root" / "list.csv")})


def test_image_csv_same_image_with_conflicting_labels_is_always_an_error(tmp_path):
    write_listed_images(tmp_path, ["a.png", "b.png"])
    write_csv(tmp_path / "list.csv", ["path", "label"], [["a.png", 0], ["b.png", 1], ["a.png", 1]])
    for duplicates in ("raise", "drop"):
        source = {"type": "image_csv", "csv": str(tmp_path / "list.csv"), "duplicates": duplicates}
        with pytest.raises(DatasetError, match=r"list\.csv.*'a\.png'.*conflicting labels: "
                                               r"line 2: '0', line 4: '1'"):
            load_source("ds", source)


def test_image_csv_duplicate_rows_raise_by_default_or_are_dropped_and_counted(tmp_path, caplog):
    write_listed_images(tmp_path, ["a.png", "b.png", "c.png"])
    rows = [["a.png", 0], ["b.png", 1], ["a.png", 0], ["c.png", 1], ["a.png", 0]]
    write_csv(tmp_path / "list.csv", ["path", "label"], rows)
    source = {"type": "image_csv", "csv": str(tmp_path / "list.csv")}
    with pytest.raises(DatasetError, match=r"list\.csv.*'a\.png' more than once: lines 2, 4, 6.*duplicates: drop"):
        load_source("ds", source)
    log = logging.getLogger("test_readers")
    with caplog.at_level(logging.INFO, logger="test_readers"):
        raw = load_source("ds", {**source, "duplicates": "drop"}, log=log)
    # the first listing of a.png is kept: images a, b, c with values 0, 10, 20
    assert [round(float(image[0, 0]) * 255) for image in raw.images] == [0, 10, 20]
    assert list(raw.labels) == [0, 1, 1]
    assert raw.provenance["duplicate_rows_dropped"] == 2 and raw.provenance["files_listed"] == 3
    assert "dropped 2 duplicate row(s)" in caplog.text
    with pytest.raises(DatasetError, match=r"option 'duplicates' must be one of \['raise', 'drop'\]"):
        load_source("ds", {**source, "duplicates": "keep"})


def test_image_csv_same_image_spelled_two_ways_is_a_duplicate(tmp_path):
    write_listed_images(tmp_path, ["a/b.png", "a/c.png"])
    write_csv(tmp_path / "list.csv", ["path", "label"], [["a/b.png", 0], ["a/c.png", 1], ["a/./b.png", 0]])
    source = {"type": "image_csv", "csv": str(tmp_path / "list.csv")}
    with pytest.raises(DatasetError, match=r"'a/b\.png' more than once: lines 2, 4"):
        load_source("ds", source)
    raw = load_source("ds", {**source, "duplicates": "drop"})
    assert list(raw.labels) == [0, 1] and raw.provenance["duplicate_rows_dropped"] == 1
    # one image, one group: the default group is the image's path, however it is spelled
    assert list(raw.groups) == [sha16(DEFAULT_GROUP_SALT, "a/b.png"), sha16(DEFAULT_GROUP_SALT, "a/c.png")]


def test_nifti_background_is_the_voxels_at_or_below_the_foreground_threshold(tmp_path):
    import nibabel

    make_brats(tmp_path / "brats")
    # Darken a corner of every slice of case 1 so each slice has a known background.
    path = tmp_path / "brats/BraTS20_Training_001/BraTS20_Training_001_flair.nii.gz"
    volume = np.asarray(nibabel.load(path).dataobj, dtype=np.float32)
    volume[:6, :6, :] = 0
    write_nifti(path, volume)
    source = {**BRATS, "root": str(tmp_path / "brats"), "min_foreground": 0.0, "foreground_threshold": 0.3}
    raw = load_source("brats", source)
    assert raw.backgrounds is not None and len(raw.backgrounds) == len(raw.images) == 12
    for image, mask in zip(raw.images, raw.backgrounds):
        assert mask.dtype == bool and mask.shape == image.shape
        np.testing.assert_array_equal(mask, image <= 0.3)
    assert raw.backgrounds[0].all()  # slice 0: air
    assert raw.backgrounds[1][:6, :6].all() and not raw.backgrounds[1][8:, 8:].all()
    assert raw.provenance["background"] == "explicit: voxels <= foreground_threshold 0.3"
    # Through the cache: resized in the workers or in prepare(), the same stored masks.
    _, meta = prepare_cache(tmp_path / "c1", "brats", source, size=8, resize_in_workers=True)
    _, meta2 = prepare_cache(tmp_path / "c2", "brats", source, size=8, resize_in_workers=False)
    assert meta["background"] == "explicit" and meta["background_sha256"] == meta2["background_sha256"]
    cache = load_cache(tmp_path / "c1", verify=True)
    masks = cache.read_background(np.arange(12))
    assert masks.shape == (12, 8, 8) and masks[0].all() and masks[1][:3, :3].all()
    # Slices dropped for too little foreground take their masks with them.
    dropped = load_source("brats", {**BRATS, "root": str(tmp_path / "brats")})
    assert len(dropped.backgrounds) == len(dropped.images) == 10
    assert not any(mask.all() for mask in dropped.backgrounds)


# ----------------------------------------------------------------------------------------------
# Options that define a task as the study's authors prepared it: max_per_class,
# image_max_scaling, image_csv path_template, image_folder include_classes, DICOM frames /
# series keys / modality_lut, NIfTI orientation / ambiguous slices / brain area.


def chosen_by_hash(keys, n, salt=DEFAULT_GROUP_SALT):
    """What max_per_class should keep of one class: the n keys with the smallest salted hash."""
    return sorted(sorted(keys, key=lambda k: sha16(salt, "max_per_class:" + k))[:n])


def kept_paths(raw, values_to_path):
    """The relative paths of a RawDataset's images, told by their pixel value."""
    return [values_to_path[round(float(image.flat[0]) * 255)] for image in raw.images]


def make_valued_tree(root, classes, n_per_class, start=0):
    """root/<class>/img_<i>.png holding the constant value start + 10 * class + i (i < 10)."""
    path_of = {}
    for c, folder in enumerate(classes):
        for i in range(n_per_class):
            value = start + 10 * c + i
            write_png(root / folder / f"img_{i}.png", np.full((4, 4), value))
            path_of[value] = f"{folder}/img_{i}.png"
    return path_of


def test_max_per_class_keeps_the_smallest_salted_hashes_whatever_else_the_folder_holds(tmp_path):
    path_of = make_valued_tree(tmp_path / "tree", ["a", "b"], 6)
    source = {"type": "image_folder", "root": str(tmp_path / "tree"), "max_per_class": 2}
    raw = load_source("ds", source)
    expected = chosen_by_hash([f"a/img_{i}.png" for i in range(6)], 2) + chosen_by_hash(
        [f"b/img_{i}.png" for i in range(6)], 2)
    assert kept_paths(raw, path_of) == expected
    assert list(raw.labels) == [0, 0, 1, 1]
    assert raw.provenance["max_per_class_counts"] == {"before": {"a": 6, "b": 6}, "after": {"a": 2, "b": 2}}
    assert raw.provenance["options"]["max_per_class"] == 2
    again = load_source("ds", source)
    assert all(np.array_equal(x, y) for x, y in zip(raw.images, again.images))
    # another salt, another (equally deterministic) choice
    salted = load_source("ds", {**source, "group_salt": "pepper"})
    assert kept_paths(salted, path_of) == chosen_by_hash([f"a/img_{i}.png" for i in range(6)], 2, "pepper") + \
        chosen_by_hash([f"b/img_{i}.png" for i in range(6)], 2, "pepper")
    # Unrelated files: a third class, and files of class a that rank after the chosen ones.
    make_valued_tree(tmp_path / "tree", ["c"], 3, start=100)
    limit = max(sha16(DEFAULT_GROUP_SALT, "max_per_class:" + k) for k in expected[:2])
    extra = [f"extra_{i}.png" for i in range(40)
             if sha16(DEFAULT_GROUP_SALT, f"max_per_class:a/extra_{i}.png") > limit][:5]
    for file_name in extra:
        write_png(tmp_path / "tree" / "a" / file_name, np.full((4, 4), 200))
    more = load_source("ds", {**source, "classes": ["a", "b"], "drop_other": True})
    assert kept_paths(more, path_of) == expected
    assert more.provenance["max_per_class_counts"]["before"] == {"a": 11, "b": 6}
    for bad in (0, True, 1.5):
        with pytest.raises(DatasetError, match=r"'ds'.*option 'max_per_class' must be an integer >= 1"):
            load_source("ds", {**source, "max_per_class": bad})


def test_max_per_class_never_decodes_the_files_it_leaves_out(tmp_path):
    names = [f"img_{i}.png" for i in range(6)]
    ranked = sorted(names, key=lambda n: sha16(DEFAULT_GROUP_SALT, f"max_per_class:a/{n}"))
    for file_name in names:
        write_png(tmp_path / "tree" / "a" / file_name, np.full((4, 4), 7))
        write_png(tmp_path / "tree" / "b" / file_name, np.full((4, 4), 9))
    (tmp_path / "tree" / "a" / ranked[-1]).write_bytes(b"\x89PNG\r\n\x1a\n broken")  # never chosen
    folder = {"type": "image_folder", "root": str(tmp_path / "tree"), "max_per_class": 5}
    assert len(load_source("ds", folder).images) == 10
    listed = {"type": "image_csv", "csv": str(tmp_path / "tree" / "list.csv"), "max_per_class": 5}
    write_csv(tmp_path / "tree" / "list.csv", ["path", "label"], [[f"{c}/{n}", c] for c in "ab" for n in names])
    assert len(load_source("ds", listed).images) == 10
    # The same corrupt file, chosen, is decoded and fails: the test above can fail.
    (tmp_path / "tree" / "a" / ranked[0]).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    for source in (folder, listed):
        with pytest.raises(DatasetError, match=rf"a/{ranked[0]}.*unreadable or corrupt"):
            load_source("ds", source)


def test_max_per_class_on_nifti_slices_and_medmnist_images(tmp_path):
    make_brats(tmp_path / "brats")
    source = {**BRATS, "root": str(tmp_path / "brats"), "min_foreground": 0.0, "max_per_class": 2}
    full = load_source("brats", {**source, "max_per_class": None})
    raw = load_source("brats", source)
    volumes = [f"BraTS20_Training_00{c}/BraTS20_Training_00{c}_flair.nii.gz" for c in (1, 2)]
    tumour = {(0, 2), (0, 3), (1, 4)}
    keys = {label: [f"{volumes[v]}#slice{s}" for v in (0, 1) for s in range(6) if ((v, s) in tumour) == label]
            for label in (False, True)}
    chosen = set(chosen_by_hash(keys[False], 2) + chosen_by_hash(keys[True], 2))
    order = [f"{volumes[v]}#slice{s}" for v in (0, 1) for s in range(6)]
    expected = [order.index(k) for k in order if k in chosen]
    assert all(np.array_equal(raw.images[i], full.images[j]) for i, j in enumerate(expected))
    assert list(raw.labels) == [full.labels[j] for j in expected]
    assert raw.provenance["max_per_class_counts"] == {"before": {"no_tumour": 9, "tumour": 3},
                                                      "after": {"no_tumour": 2, "tumour": 2}}
    write_medmnist(tmp_path / "m.npz", {"train": 12, "test": 6})
    everything = load_source("m", {"type": "medmnist", "npz": str(tmp_path / "m.npz")})
    capped = load_source("m", {"type": "medmnist", "npz": str(tmp_path / "m.npz"), "max_per_class": 3})
    for label in (0, 1):
        members = [g for g, y in zip(everything.groups, everything.labels) if y == label]
        assert sorted(g for g, y in zip(capped.groups, capped.labels) if y == label) == chosen_by_hash(members, 3)


def test_image_max_scaling_divides_each_image_by_its_maximum(tmp_path):
    write_png(tmp_path / "tree" / "a" / "x.png", np.array([[0, 51], [102, 51]]))  # /255: 0, .2, .4
    write_png(tmp_path / "tree" / "b" / "zero.png", np.zeros((2, 2)))
    source = {"type": "image_folder", "root": str(tmp_path / "tree"), "image_max_scaling": True}
    raw = load_source("ds", source)
    np.testing.assert_allclose(raw.images[0], [[0.0, 0.5], [1.0, 0.5]], atol=1e-6)  # by hand: / 0.4
    np.testing.assert_array_equal(raw.images[1], np.zeros((2, 2)))  # all-zero stays zero
    assert raw.provenance["options"]["image_max_scaling"] is True
    plain = load_source("ds", {**source, "image_max_scaling": False})
    np.testing.assert_allclose(plain.images[0], [[0.0, 0.2], [0.4, 0.2]], atol=1e-6)
    write_csv(tmp_path / "tree" / "list.csv", ["path", "label"], [["a/x.png", 1], ["b/zero.png", 0]])
    listed = load_source("ds", {"type": "image_csv", "csv": str(tmp_path / "tree" / "list.csv"),
                                "image_max_scaling": True})
    np.testing.assert_allclose(listed.images[0], [[0.0, 0.5], [1.0, 0.5]], atol=1e-6)
    # Scaled before resizing: a lone bright pixel averaged away by the downsampling still sets the scale.
    from intrinsic.cache import convert_image, quantize

    spot = np.full((4, 4), 51)
    spot[0, 0] = 102
    write_png(tmp_path / "spot" / "a" / "x.png", spot)
    write_png(tmp_path / "spot" / "b" / "x.png", spot)
    small = load_source("ds", {**source, "root": str(tmp_path / "spot")}, size=2, channels=1)
    scaled_first = quantize(convert_image(spot / 102.0, 2, 1))[0] / 255.0
    resized = convert_image(spot / 255.0, 2, 1)
    resized_first = quantize(resized / resized.max())[0] / 255.0
    np.testing.assert_allclose(small.images[0][..., 0], scaled_first, atol=1e-6)
    assert not np.allclose(scaled_first, resized_first)
    with pytest.raises(DatasetError, match=r"option 'image_max_scaling' must be true or false"):
        load_source("ds", {**source, "image_max_scaling": "yes"})


def test_image_csv_path_template_turns_an_id_into_the_image_path(tmp_path):
    # ISIC 2019: ISIC_2019_Training_GroundTruth.csv lists "ISIC_0000000", the file is <folder>/ISIC_0000000.jpg
    for i in range(3):
        write_png(tmp_path / "ISIC_2019_Training_Input" / f"ISIC_000000{i}.png", np.full((4, 4), 10 * i))
    write_csv(tmp_path / "GroundTruth.csv", ["image", "MEL", "NV"],
              [[f"ISIC_000000{i}", 0.0, float(i != 1)] for i in range(3)])
    source = {"type": "image_csv", "csv": str(tmp_path / "GroundTruth.csv"), "path_column": "image",
              "label_column": "NV", "path_template": "ISIC_2019_Training_Input/{}.png"}
    raw = load_source("isic", source)
    assert [round(float(im[0, 0]) * 255) for im in raw.images] == [0, 10, 20]
    assert list(raw.labels) == [1, 0, 1]
    assert raw.groups[1] == sha16(DEFAULT_GROUP_SALT, "ISIC_2019_Training_Input/ISIC_0000001.png")
    assert raw.provenance["options"]["path_template"] == "ISIC_2019_Training_Input/{}.png"
    with pytest.raises(DatasetError, match=r"file 'ISIC_0000000' \(CSV line 2\).*"
                                           r"unreadable or corrupt"):
        load_source("isic", {**source, "path_template": None})
    for bad, problem in (("images/x.png", r"has no \{\} field"), ("{name}.png", "is not a valid str.format"),
                         ("{}/{}.png", "is not a valid str.format"), ("{.png", "is not a valid str.format")):
        with pytest.raises(DatasetError, match=rf"'isic'.*option 'path_template' {problem}"):
            load_source("isic", {**source, "path_template": bad})


def test_include_classes_reads_some_folders_but_keeps_every_class(tmp_path):
    from intrinsic.sources.image_folder import list_class_folders

    path_of = make_valued_tree(tmp_path / "tree", ["n04", "n01", "n03", "n02"], 3)
    (tmp_path / "tree" / "empty").mkdir()
    (tmp_path / "tree" / "notes").mkdir()
    (tmp_path / "tree" / "notes" / "readme.txt").write_text("no image")
    assert list_class_folders("imnet", str(tmp_path / "tree")) == ["n01", "n02", "n03", "n04"]
    # an image further down makes a class folder; the order is the reader's (numbers numerically)
    write_png(tmp_path / "other" / "deep" / "a" / "b" / "x.png", np.zeros((4, 4)))
    for folder in ("10", "9"):
        write_png(tmp_path / "other" / folder / "x.png", np.zeros((4, 4)))
    assert list_class_folders("o", str(tmp_path / "other")) == ["9", "10", "deep"]
    assert load_source("o", {"type": "image_folder", "root": str(tmp_path / "other")}).classes == ["9", "10", "deep"]
    with pytest.raises(DatasetError, match=r"'o'.*nowhere.*does not exist"):
        list_class_folders("o", str(tmp_path / "nowhere"))
    source = {"type": "image_folder", "root": str(tmp_path / "tree"), "include_classes": ["n04", "n02"]}
    raw = load_source("imnet", source, log=logging.getLogger("test"))
    assert raw.classes == ["n01", "n02", "n03", "n04"] == load_source(
        "imnet", {"type": "image_folder", "root": str(tmp_path / "tree")}).classes
    assert list(raw.labels) == [3, 3, 3, 1, 1, 1]
    assert kept_paths(raw, path_of) == [f"n04/img_{i}.png" for i in range(3)] + [f"n02/img_{i}.png" for i in range(3)]
    # only the included classes have to reach min_per_class; the others hold no image by design
    assert len(load_source("imnet", {**source, "min_per_class": 3}).images) == 6
    with pytest.raises(DatasetError, match=r"too few images of class\(es\) \{'n02': 3, 'n04': 3\}"):
        load_source("imnet", {**source, "min_per_class": 4})
    with_classes = load_source("imnet", {**source, "classes": ["n02", "n03", "n04"]})
    assert with_classes.classes == ["n02", "n03", "n04"] and list(with_classes.labels) == [2, 2, 2, 0, 0, 0]
    with pytest.raises(DatasetError, match=r"'include_classes' names \['n05'\], which are not class folders"):
        load_source("imnet", {**source, "include_classes": ["n02", "n05"]})
    with pytest.raises(DatasetError, match=r"'include_classes' names \['n01'\].*named in 'classes'"):
        load_source("imnet", {**source, "include_classes": ["n01"], "classes": ["n02", "n03"]})
    with pytest.raises(DatasetError, match=r"'include_classes'.*cannot be combined with 'label_regex'"):
        load_source("imnet", {**source, "label_regex": "(n0[12])"})
    with pytest.raises(DatasetError, match=r"'include_classes' must be a list of distinct"):
        load_source("imnet", {**source, "include_classes": ["n02", "n02"]})


def test_dicom_image_max_scaling_and_modality_lut_by_hand():
    stored = np.array([[0, 100, 400]], np.uint16)
    # the authors' pixel_array * 255 / max, on the [0, 1] scale
    np.testing.assert_allclose(dicom_to_unit(stored, 1, 0, "MONOCHROME2", None, max_scaling=True), [[0, .25, 1]])
    # slope 2, intercept -100: values -100, 100, 700; / 700, the negative clipped to 0
    np.testing.assert_allclose(dicom_to_unit(stored, 2, -100, "MONOCHROME2", None, modality_lut=True,
                                             max_scaling=True), [[0, 1 / 7, 1]], atol=1e-7)
    np.testing.assert_allclose(dicom_to_unit(stored, 2, -100, "MONOCHROME2", None, modality_lut=False,
                                             max_scaling=True), [[0, .25, 1]])
    np.testing.assert_allclose(dicom_to_unit(stored, 2, -100, "MONOCHROME1", None, modality_lut=False,
                                             max_scaling=True), [[1, .75, 0]])
    # no minimum subtracted: stored 100, 200, 400 -> .25, .5, 1 (min..max would give 0, 1/3, 1)
    np.testing.assert_allclose(dicom_to_unit(stored + 100 * (stored < 100), 1, 0, "MONOCHROME2", None,
                                             max_scaling=True), [[.25, .25, 1]])
    np.testing.assert_array_equal(dicom_to_unit(np.zeros((2, 2), np.uint16), 1, 0, "MONOCHROME2", None,
                                                max_scaling=True), np.zeros((2, 2)))
    # a window on the stored values (modality_lut false): 40 -> (40 - 0) / 80
    np.testing.assert_allclose(dicom_to_unit(np.array([[40]]), 2, -1024, "MONOCHROME2", (40, 80),
                                             modality_lut=False), [[0.5]])


def test_dicom_reader_max_scaling_without_rescale_and_its_conflict_with_a_window(tmp_path):
    rows, _ = make_dicom_study(tmp_path / "dcm")  # stored 500 + 10 s, one pixel 400; slope 2, intercept -1024
    write_csv(tmp_path / "labels.csv", ["ID", "Label"], rows)
    source = {"type": "dicom", "root": str(tmp_path / "dcm"), "labels_csv": str(tmp_path / "labels.csv"),
              "key_column": "ID", "key_regex": r"^(.*)_any$", "label_column": "Label", "modality_lut": False,
              "image_max_scaling": True}
    raw = load_source("rsna", source)
    assert raw.images[0][0, 0] == pytest.approx(400 / 500) and raw.images[0][4, 4] == pytest.approx(1.0)
    assert raw.images[2][0, 0] == pytest.approx(400 / 520)
    # HU = 2 v - 1024: slice s = 2 holds 16 HU and -224 HU (clipped to 0) -> 1 and 0; slice 0's
    # maximum, -24 HU, is not positive: an all-zero image
    with_lut = load_source("rsna", {**source, "modality_lut": True})
    assert with_lut.images[2][0, 0] == 0.0 and with_lut.images[2][4, 4] == pytest.approx(1.0)
    assert not with_lut.images[0].any()
    assert raw.provenance["options"]["modality_lut"] is False
    with pytest.raises(DatasetError, match=r"'rsna'.*options 'window' and 'image_max_scaling' exclude each other"):
        load_source("rsna", {**source, "window": {"center": 40, "width": 80}})
    with pytest.raises(DatasetError, match=r"'rsna'.*option 'modality_lut' must be true or false"):
        load_source("rsna", {**source, "modality_lut": 1})


def write_ultrasound_series(root):
    """Patient 0: one 8-frame and one 5-frame multi-frame file (two series); patient 1: a series of
    two single-frame files. Frame k of a multi-frame file holds 10 (k + 1) (pixel [0, 0]: 0)."""
    series = {}
    for n_frames, folder, uid in ((8, "p0/us1", "1.2.3.1"), (5, "p0/us2", "1.2.3.2")):
        frames = np.stack([np.full((4, 4), 10 * (k + 1), np.uint16) for k in range(n_frames)])
        frames[:, 0, 0] = 0
        write_dicom(root / folder / "1-1.dcm", frames, patient_id="PID-SECRET-0", study_uid="1.2.3",
                    sop_uid=f"{uid}.1", series_uid=uid, slope=1, intercept=0)
        series[folder] = uid
    for s in range(2):
        write_dicom(root / "p1/mr" / f"1-{s}.dcm", np.full((4, 4), 90, np.uint16), patient_id="PID-SECRET-1",
                    study_uid="1.2.4", sop_uid=f"1.2.4.1.{s}", series_uid="1.2.4.1", slope=1, intercept=0)
    return series


def test_dicom_frames_of_multiframe_files_share_their_label_and_group(tmp_path):
    write_ultrasound_series(tmp_path / "us")
    write_csv(tmp_path / "series.csv", ["SeriesInstanceUID", "score"],
              [["1.2.3.1", 2], ["1.2.3.2", 1], ["1.2.4.1", 3], ["1.2.3.1", 2]])  # an identical repeat: fine
    source = {"type": "dicom", "root": str(tmp_path / "us"), "labels_csv": str(tmp_path / "series.csv"),
              "key": "SeriesInstanceUID", "key_column": "SeriesInstanceUID", "label_column": "score",
              "window": {"center": 50, "width": 100}, "modality_lut": False,  # stored v -> v / 100
              "classes": {"low": [0, 1], "high": [2, 3, 4, 5]}}
    with pytest.raises(DatasetError, match=r"p0/us1/1-1\.dcm.*multi-frame DICOM \(8 frames\).*option 'frames'"):
        load_source("us", source)
    every = load_source("us", {**source, "frames": "all"})
    values = [round(float(image[1, 1]) * 100) for image in every.images]
    assert values == [10, 20, 30, 40, 50, 60, 70, 80] + [10, 20, 30, 40, 50] + [90, 90]
    assert list(every.labels) == [1] * 8 + [0] * 5 + [1] * 2
    assert list(every.groups) == [sha16(DEFAULT_GROUP_SALT, "PID-SECRET-0")] * 13 + [
        sha16(DEFAULT_GROUP_SALT, "PID-SECRET-1")] * 2
    central = load_source("us", {**source, "frames": "central_half"})
    # 8 frames: 8 // 4 = 2 .. 24 // 4 - 1 = 5; 5 frames: 1 .. 15 // 4 - 1 = 2; single-frame files: their image
    values = [round(float(image[1, 1]) * 100) for image in central.images]
    assert values == [30, 40, 50, 60] + [20, 30] + [90, 90]
    assert central.provenance["multiframe_files"] == 2 and central.provenance["options"]["frames"] == "central_half"
    with pytest.raises(DatasetError, match=r"option 'frames' must be one of \['single', 'all', 'central_half'\]"):
        load_source("us", {**source, "frames": "middle"})


def test_dicom_series_key_conflicting_rows_are_named_by_line_never_by_uid(tmp_path):
    write_ultrasound_series(tmp_path / "us")
    write_csv(tmp_path / "series.csv", ["SeriesInstanceUID", "score"],
              [["1.2.3.1", 2], ["1.2.3.2", 1], ["1.2.4.1", 3], ["1.2.3.1", 4]])
    source = {"type": "dicom", "root": str(tmp_path / "us"), "labels_csv": str(tmp_path / "series.csv"),
              "key": "SeriesInstanceUID", "key_column": "SeriesInstanceUID", "label_column": "score",
              "frames": "all"}
    with pytest.raises(DatasetError, match=r"series\.csv.*lines 2 and 5 hold the same key \(column "
                                           r"'SeriesInstanceUID', option 'key_column'\) with different labels "
                                           r"'2' and '4'") as error:
        load_source("us", source)
    assert "1.2.3.1" not in str(error.value)
    # the same rule for every key, and for the groups of group_column (values not shown)
    write_csv(tmp_path / "groups.csv", ["SeriesInstanceUID", "score", "patient"],
              [["1.2.3.1", 2, "A"], ["1.2.3.2", 1, "A"], ["1.2.4.1", 3, "B"], ["1.2.3.1", 2, "C"]])
    with pytest.raises(DatasetError, match=r"lines 2 and 5 hold the same key.*different groups \(column 'patient', "
                                           r"values not shown\)"):
        load_source("us", {**source, "labels_csv": str(tmp_path / "groups.csv"), "group_column": "patient"})


def test_dicom_header_pass_leaves_unlabelled_and_unselected_files_undecoded(tmp_path):
    import pydicom

    write_ultrasound_series(tmp_path / "us")
    # A file whose pixel data is cut short: its header reads, decoding it fails.
    broken = tmp_path / "us/p2/mr/1-0.dcm"
    write_dicom(broken, np.full((4, 4), 5, np.uint16), patient_id="PID-SECRET-2", study_uid="1.2.5",
                sop_uid="1.2.5.1.0", series_uid="1.2.5.1")
    dataset = pydicom.dcmread(broken)
    dataset.PixelData = dataset.PixelData[:6]
    dataset.save_as(broken)
    rows = [["1.2.3.1", 2], ["1.2.3.2", 1], ["1.2.4.1", 3]]
    write_csv(tmp_path / "series.csv", ["SeriesInstanceUID", "score"], rows)
    source = {"type": "dicom", "root": str(tmp_path / "us"), "labels_csv": str(tmp_path / "series.csv"),
              "key": "SeriesInstanceUID", "key_column": "SeriesInstanceUID", "label_column": "score",
              "frames": "all", "classes": {"low": [0, 1], "high": [2, 3, 4, 5]}}
    # Without drop_other an unlabelled file is an error anyway, so every file is decoded: the broken one fails.
    with pytest.raises(DatasetError, match=r"p2/mr/1-0\.dcm.*unreadable or corrupt"):
        load_source("us", source)
    raw = load_source("us", {**source, "drop_other": True})
    assert len(raw.images) == 15 and raw.provenance["dropped_labels"] == {"<no CSV row>": 1}
    assert raw.provenance["files_decoded"] == 4 and raw.provenance["files_matched"] == 5
    # Labelled, the broken file is decoded and fails (so the run above did not decode it).
    write_csv(tmp_path / "series.csv", ["SeriesInstanceUID", "score"], rows + [["1.2.5.1", 0]])
    with pytest.raises(DatasetError, match=r"p2/mr/1-0\.dcm.*unreadable or corrupt"):
        load_source("us", {**source, "drop_other": True})
    # max_per_class: frames chosen by the salted hash of "<path>#frame<k>" (single-frame files: the path)
    capped = load_source("us", {**source, "drop_other": True, "max_per_class": 3, "on_error": "skip"})
    keys = {0: [f"p0/us2/1-1.dcm#frame{k}" for k in range(5)] + ["p2/mr/1-0.dcm"],
            1: [f"p0/us1/1-1.dcm#frame{k}" for k in range(8)] + ["p1/mr/1-0.dcm", "p1/mr/1-1.dcm"]}
    chosen = {label: chosen_by_hash(members, 3) for label, members in keys.items()}
    decoded_low = [k for k in chosen[0] if not k.startswith("p2/")]  # the broken file, if chosen, is skipped
    assert capped.provenance["max_per_class_counts"] == {"before": {"low": 6, "high": 10},
                                                         "after": {"low": 3, "high": 3}}
    assert np.bincount(capped.labels).tolist() == [len(decoded_low), 3]
    assert capped.provenance["skipped_files"] == (3 - len(decoded_low))


def test_nifti_ambiguous_slices_follow_the_authors_rule():
    from intrinsic.sources.nifti import ambiguous_slices

    labels = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    # i in range(8 - 3): windows [0,0,1] [0,1,1] [1,1,1] [1,1,0] [1,0,0]; mixed ones flag slice i
    assert ambiguous_slices(labels, 3).tolist() == [True, True, False, True, True, False, False, False]
    # the last w slices are never flagged, even where their window would be mixed
    assert not ambiguous_slices(np.array([0, 0, 0, 0, 0, 1]), 2).any()
    assert not ambiguous_slices(labels, 0).any() and not ambiguous_slices(labels, 9).any()
    assert not ambiguous_slices(labels, 1).any()  # a window of one slice is never mixed


def test_nifti_ambiguous_window_drops_slices_near_the_tumour_border(tmp_path):
    make_brats(tmp_path / "brats", shape=(16, 16, 8), tumour_slices=((3, 4), (6,)))
    source = {**BRATS, "root": str(tmp_path / "brats"), "ambiguous_window": 2}
    raw = load_source("brats", source)
    # case 1, labels 0 0 0 1 1 0 0 0: i in 0..5, windows (2,3) and (4,5) are mixed -> slices 2 and 4
    # (slices 6, 7 are never checked); slice 0 has no foreground. Case 2, labels 0 0 0 0 0 0 1 0:
    # window (5,6) -> slice 5; window (6,7) is not checked.
    assert raw.provenance["slices_dropped_ambiguous"] == 3
    assert raw.provenance["slices_dropped_foreground"] == 2
    assert list(raw.labels) == [0, 1, 0, 0, 0] + [0, 0, 0, 0, 1, 0]  # slices 1 3 5 6 7, 1 2 3 4 6 7
    assert raw.provenance["options"]["ambiguous_window"] == 2
    plain = load_source("brats", {**BRATS, "root": str(tmp_path / "brats")})
    assert plain.provenance["slices_dropped_ambiguous"] == 0 and len(plain.images) == 14
    write_csv(tmp_path / "slices.csv", ["volume", "slice", "label"], [])
    with pytest.raises(DatasetError, match=r"'brats'.*option 'ambiguous_window' needs mask labels"):
        load_source("brats", {"type": "nifti", "root": str(tmp_path / "brats"),
                              "labels_csv": str(tmp_path / "slices.csv"), "ambiguous_window": 2})
    with pytest.raises(DatasetError, match=r"option 'ambiguous_window' must be an integer >= 0"):
        load_source("brats", {**source, "ambiguous_window": -1})


def brain_volume():
    """40 x 40 x 5, one shape per slice (value 1, background 0).

    By hand, for a square of side s away from the border: erosion with disk(2) leaves side s - 4;
    closing keeps a square; Roberts' 2x2 differences mark the ring one pixel above/left of it and
    its own last row/column; filling gives a square of side s - 3. Area (s - 3)^2.
    """
    volume = np.zeros((40, 40, 5), np.float32)
    volume[5:25, 5:25, 1] = 1  # s = 20: area 17^2 = 289, one region
    volume[5:17, 5:17, 2] = 1  # s = 12: area 81
    volume[3:15, 3:15, 3] = volume[22:34, 22:34, 3] = 1  # two of side 12: area 162, two regions
    volume[5:18, 5:18, 4] = 1  # s = 13: area 100
    return volume


def test_nifti_brain_area_and_region_filter_counts_by_hand(tmp_path):
    from intrinsic.sources.nifti import brain_mask

    volume = brain_volume()
    assert [brain_mask(volume[:, :, k]) for k in range(5)] == [(0, 0), (289, 1), (81, 1), (162, 2), (100, 1)]
    write_nifti(tmp_path / "v/case_img.nii.gz", volume)
    mask = np.zeros(volume.shape, np.uint8)
    mask[10, 10, 1] = 1
    write_nifti(tmp_path / "v/case_seg.nii.gz", mask)
    source = {"type": "nifti", "root": str(tmp_path / "v"), "pattern": "*_img.nii.gz",
              "mask_replace": {"_img": "_seg"}, "min_brain_area": 100, "max_brain_regions": 1}
    raw = load_source("b", source)
    # slice 0 (area 0), 2 (81 < 100) and 3 (two regions) are dropped; 4 (area exactly 100) is kept
    assert raw.provenance["slices_dropped_brain_area"] == 3 and len(raw.images) == 2
    np.testing.assert_array_equal(raw.images[1], volume[:, :, 4])
    assert list(raw.labels) == [1, 0]
    assert load_source("b", {**source, "min_brain_area": None}).provenance["slices_dropped_brain_area"] == 1
    only_area = load_source("b", {**source, "max_brain_regions": None})
    assert only_area.provenance["slices_dropped_brain_area"] == 2  # slices 0 and 2
    assert load_source("b", {**source, "min_brain_area": 101}).provenance["slices_dropped_brain_area"] == 4
    for option in ("min_brain_area", "max_brain_regions"):
        with pytest.raises(DatasetError, match=rf"'b'.*option '{option}' must be an integer >= 1"):
            load_source("b", {**source, option: 0})


def test_nifti_canonical_orientation_makes_the_stored_layout_irrelevant(tmp_path):
    rng = np.random.default_rng(3)
    volume = rng.uniform(1, 2, size=(6, 7, 5)).astype(np.float32)
    mask = np.zeros(volume.shape, np.uint8)
    mask[2:4, 2:4, 1] = 1
    flip = np.diag([-1.0, 1, 1, 1])
    flip[0, 3] = 5  # voxel i -> x = 5 - i
    permute = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # (i, j, k) -> (j, k, i)
    layouts = {"ras": (volume, mask, np.eye(4)), "flipped": (volume[::-1], mask[::-1], flip),
               "permuted": (volume.transpose(2, 0, 1), mask.transpose(2, 0, 1), permute)}
    for layout, (image, seg, affine) in layouts.items():
        write_nifti(tmp_path / layout / "case_img.nii.gz", image, affine)
        write_nifti(tmp_path / layout / "case_seg.nii.gz", seg, affine)
    source = {"type": "nifti", "pattern": "*_img.nii.gz", "mask_replace": {"_img": "_seg"}}
    read = {(layout, orientation): load_source("o", {**source, "root": str(tmp_path / layout),
                                                     "orientation": orientation})
            for layout in layouts for orientation in ("canonical", "stored")}
    reference = read[("ras", "stored")]
    expected = (volume - volume.min()) / (volume.max() - volume.min())
    assert len(reference.images) == 5 and list(reference.labels) == [0, 1, 0, 0, 0]
    np.testing.assert_allclose(reference.images[3], expected[:, :, 3], atol=1e-6)
    for layout in layouts:
        canonical = read[(layout, "canonical")]
        assert list(canonical.labels) == [0, 1, 0, 0, 0]
        assert all(np.array_equal(x, y) for x, y in zip(canonical.images, reference.images))
    assert not np.array_equal(read[("flipped", "stored")].images[0], reference.images[0])
    assert read[("permuted", "stored")].images[0].shape == (5, 6) and len(read[("permuted", "stored")].images) == 7
    assert read[("ras", "canonical")].provenance["options"]["orientation"] == "canonical"
    with pytest.raises(DatasetError, match=r"option 'orientation' must be one of \['canonical', 'stored'\]"):
        load_source("o", {**source, "root": str(tmp_path / "ras"), "orientation": "LPS"})


def test_nifti_image_max_scaling_per_slice_by_hand(tmp_path):
    volume = np.zeros((4, 4, 3), np.float32)
    volume[:, :, 1] = [[0, 1, 2, 2]] * 4  # volume min..max 0..4: slice 1 -> 0, .25, .5; / .5 -> 0, .5, 1
    volume[:, :, 2] = 4
    volume[0, 0, 2] = 0
    write_nifti(tmp_path / "v/case_img.nii.gz", volume)
    write_nifti(tmp_path / "v/case_seg.nii.gz", np.zeros(volume.shape, np.uint8))
    source = {"type": "nifti", "root": str(tmp_path / "v"), "pattern": "*_img.nii.gz",
              "mask_replace": {"_img": "_seg"}, "image_max_scaling": True, "foreground_threshold": 0.3}
    raw = load_source("v", source)
    np.testing.assert_array_equal(raw.images[0], np.zeros((4, 4)))  # all-zero slice stays zero
    np.testing.assert_allclose(raw.images[1], [[0, .5, 1, 1]] * 4)
    np.testing.assert_allclose(raw.images[2][0], [0, 1, 1, 1])
    # the background is that of the slice as stored: voxels <= 0.3 after scaling
    np.testing.assert_array_equal(raw.backgrounds[1], raw.images[1] <= 0.3)
