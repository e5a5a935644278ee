"""Source type ``medmnist``: MedMNIST .npz files read with numpy."""

from __future__ import annotations

import numpy as np

from ..cache import DatasetError, RawDataset
from .common import (
    DEFAULT_GROUP_SALT,
    ReadContext,
    TaskLabels,
    check_choice,
    check_common,
    finish,
    label_key,
    require_path,
)

MEDMNIST_SPLITS = ("train", "val", "test")


def read_medmnist(
    name: str,
    context: ReadContext,
    npz: str | None = None,
    split: str = "all",
    label_column: int | None = None,
    classes=None,
    drop_other: bool = False,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """A MedMNIST .npz (``{split}_images`` (N, H, W) or (N, H, W, 3) uint8, ``{split}_labels``
    (N, 1) or (N, K) multi-label, where ``label_column`` picks the task's column).

    MedMNIST ships no patient ids, so every image is its own group: images of one patient can
    land on both sides of a split (a documented caveat of these data sets). The group string
    ``medmnist:{split}:{index}`` is also the image's ``max_per_class`` key.
    """
    check_common(name, on_error, drop_other, min_per_class, max_per_class)
    npz_path = require_path(name, npz, "npz")
    split = check_choice(name, "split", split, ["all", *MEDMNIST_SPLITS])
    parts = list(MEDMNIST_SPLITS) if split == "all" else [split]
    images, values, groups, counts = [], [], [], {}
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            keys = set(archive.files)
            for part in parts:
                if f"{part}_images" not in keys or f"{part}_labels" not in keys:
                    if split == "all":
                        continue
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r} has no {part}_images/{part}_labels; "
                                       f"keys: {sorted(keys)}")
                data = archive[f"{part}_images"]
                labels = archive[f"{part}_labels"]
                if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[-1] not in (1, 3)):
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r}: {part}_images has shape {data.shape}; "
                                       "expected (N, H, W) or (N, H, W, 3)")
                labels = labels.reshape(len(labels), -1)
                if len(labels) != len(data):
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r}: {len(data)} {part} images but "
                                       f"{len(labels)} labels")
                if labels.shape[1] > 1 and label_column is None:
                    raise DatasetError(f"dataset {name!r}: {str(npz_path)!r} is multi-label ({labels.shape[1]} "
                                       "columns); choose the task with option 'label_column'")
                column = 0 if labels.shape[1] == 1 else label_column
                if isinstance(column, bool) or not isinstance(column, int) or not 0 <= column < labels.shape[1]:
                    raise DatasetError(f"dataset {name!r}: option 'label_column' must be in 0..{labels.shape[1] - 1}"
                                       f" for {str(npz_path)!r}, got {label_column!r}")
                scale = np.float32(255.0) if data.dtype == np.uint8 else np.float32(max(1.0, float(data.max())))
                counts[part] = int(len(data))
                for index in range(len(data)):
                    images.append(data[index].astype(np.float32) / scale)
                    values.append(label_key(labels[index, column]))
                    groups.append(f"medmnist:{part}:{index}")
    except (OSError, ValueError, EOFError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"dataset {name!r}: cannot read MedMNIST file {str(npz_path)!r}: "
                           f"{type(error).__name__}: {error}") from None
    if not images:
        raise DatasetError(f"dataset {name!r}: {str(npz_path)!r} holds none of the splits {parts}")
    task = TaskLabels.from_option(name, classes, values)
    provenance = {"images_per_split": counts,
                  "caveat": "MedMNIST has no patient ids: one group per image, a patient may span splits"}
    return finish(name, f"MedMNIST file {str(npz_path)!r}", images, values, groups, task, drop_other,
                  min_per_class, provenance, context, max_per_class=max_per_class, keys=groups, salt=group_salt)
