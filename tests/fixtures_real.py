"""Writers of small files in the real datasets' formats, for tests/test_readers*.py.

Each writes exactly what the official distribution contains (file names, layouts, dtypes), so
the readers are tested on the same code path as the real data.
"""

from __future__ import annotations

import csv
import pickle
import struct
from pathlib import Path

import numpy as np

# Header values that must never reach a cache (checked byte by byte).
SECRET_NAME = "SECRET^PATIENT"
SECRET_DATE = "19990102"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file (MNIST's raw format): magic 0x0000 0x08 ndim, big-endian int32 dims, uint8 data.

    Written by hand because no library writes IDX; torchvision only reads it.
    """
    array = np.asarray(array, dtype=np.uint8)
    with open(path, "wb") as handle:
        handle.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        handle.write(struct.pack(f">{array.ndim}i", *array.shape))
        handle.write(array.tobytes())


def mnist_images(labels: np.ndarray) -> np.ndarray:
    """Image i: constant 10 * label + (i % 5), so each image's value tells its label."""
    return np.stack([np.full((28, 28), 10 * int(y) + i % 5, np.uint8) for i, y in enumerate(labels)])


def write_mnist(root: Path, train_labels: np.ndarray, test_labels: np.ndarray) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", mnist_images(labels))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.asarray(labels, np.uint8))


def write_cifar10(root: Path, per_batch: int = 10) -> None:
    """cifar-10-batches-py: pickled dicts with 'data' (n, 3072) channel-major uint8 and 'labels'.

    Image k of a batch: red = k, green = 100 + label, blue = 200, label = k % 10.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [k % 10 for k in range(per_batch)]
        data = np.zeros((per_batch, 3, 32, 32), np.uint8)
        for k, label in enumerate(labels):
            data[k, 0], data[k, 1], data[k, 2] = k, 100 + label, 200
        with open(folder / batch, "wb") as handle:
            pickle.dump({"data": data.reshape(per_batch, -1), "labels": labels, "batch_label": batch}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch}, handle)


def write_svhn(root: Path, labels_by_split: dict[str, list[int]]) -> None:
    """{split}_32x32.mat with X (32, 32, 3, N) uint8 and y (N, 1), where 10 stands for digit 0."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for split, labels in labels_by_split.items():
        n = len(labels)
        X = np.zeros((32, 32, 3, n), np.uint8)
        for i, y in enumerate(labels):
            X[..., i] = 20 * (y % 10) + 1
        savemat(root / f"{split}_32x32.mat", {"X": X, "y": np.asarray(labels, np.uint8).reshape(n, 1)})


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    patient_id: str,
    study_uid: str,
    sop_uid: str,
    slope: float = 2.0,
    intercept: float = -1024.0,
    photometric: str = "MONOCHROME2",
    series_uid: str | None = None,
) -> None:
    """A CT-like DICOM file with identifying header values (name, id, date, UIDs).

    ``pixels`` (frames, rows, columns) writes a multi-frame file (NumberOfFrames = frames) of the
    ultrasound multi-frame class, like the Prostate-MRI-US-Biopsy 3D ultrasound volumes.
    Series UID: ``series_uid``, default the study UID + ".1".
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage

    pixels = np.asarray(pixels)
    sop_class = UltrasoundMultiFrameImageStorage if pixels.ndim == 3 else CTImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or study_uid + ".1"
    ds.PatientName = SECRET_NAME
    ds.PatientID = patient_id
    ds.StudyDate = SECRET_DATE
    ds.PatientBirthDate = SECRET_DATE
    ds.Modality = "US" if pixels.ndim == 3 else "CT"
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = np.asarray(pixels, np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray | None = None) -> None:
    """A NIfTI-1 volume; ``affine`` default the identity (RAS+, stored as the canonical orientation)."""
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.Nifti1Image(np.asarray(volume), np.eye(4) if affine is None else affine).to_filename(str(path))


def write_medmnist(path: Path, sizes: dict[str, int], side: int = 28, rgb: bool = False,
                   n_labels: int = 1, n_classes: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A MedMNIST-style npz; image i of a split has mean brightness tied to its label."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in sizes.items():
        labels = rng.integers(0, n_classes, size=(n, n_labels)).astype(np.uint8)
        shape = (n, side, side, 3) if rgb else (n, side, side)
        noise = rng.integers(0, 60, size=shape)
        level = (40 + 80 * labels[:, 0]).reshape((n,) + (1,) * (len(shape) - 1))
        arrays[f"{split}_images"] = np.clip(noise + level, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays
