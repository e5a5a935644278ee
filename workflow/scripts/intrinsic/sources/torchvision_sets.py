"""Source type ``torchvision``: MNIST, CIFAR-10 and SVHN through torchvision.datasets from a local root.

(Named torchvision_sets so that the module never shadows the torchvision package.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..cache import DatasetError, RawDataset
from .common import (
    DEFAULT_GROUP_SALT,
    ReadContext,
    TaskLabels,
    check_choice,
    check_common,
    finish,
    require_path,
)

TORCHVISION_DATASETS = ("MNIST", "CIFAR10", "SVHN")


def _torchvision_class(dataset: str, verify_checksums: bool):
    """The torchvision dataset class; without checksum verification, a subclass whose md5 are None.

    torchvision's own ``check_integrity(path, md5=None)`` then only checks that the file exists,
    so the library still reads the files; this is for re-packed copies (and for the tests, which
    write small files in the original formats). MNIST checks existence only anyway.
    """
    from torchvision import datasets

    base = {"MNIST": datasets.MNIST, "CIFAR10": datasets.CIFAR10, "SVHN": datasets.SVHN}[dataset]
    if verify_checksums or dataset == "MNIST":
        return base
    if dataset == "CIFAR10":
        return type(
            "CIFAR10WithoutChecksums",
            (base,),
            {
                "train_list": [[f, None] for f, _ in base.train_list],
                "test_list": [[f, None] for f, _ in base.test_list],
                "meta": {**base.meta, "md5": None},
            },
        )
    return type(
        "SVHNWithoutChecksums",
        (base,),
        {"split_list": {k: [url, f, None] for k, (url, f, _) in base.split_list.items()}},
    )


def read_torchvision(
    name: str,
    context: ReadContext,
    root: str | None = None,
    dataset: str | None = None,
    split: str = "both",
    download: bool = False,
    verify_checksums: bool = True,
    classes=None,
    drop_other: bool = True,
    min_per_class: int = 1,
    max_per_class: int | None = None,
    on_error: str = "raise",
    group_salt: str = DEFAULT_GROUP_SALT,
) -> RawDataset:
    """MNIST / CIFAR10 / SVHN from ``root`` in torchvision's layout.

    Source labels: the digit for MNIST and SVHN (SVHN's 10 is digit 0, as torchvision maps it),
    the class name for CIFAR-10 ("airplane", ..., "truck"). ``drop_other`` defaults to true here:
    a class subset of a multi-class set is the normal case. Group = one per image
    (``{dataset}:{split}:{index}``, also the image's ``max_per_class`` key).
    """
    check_common(name, on_error, drop_other, min_per_class, max_per_class)
    dataset = check_choice(name, "dataset", dataset, TORCHVISION_DATASETS)
    split = check_choice(name, "split", split, ["train", "test", "both"])
    root_path = Path(os.path.expanduser(str(root))) if download else require_path(name, root)
    dataset_class = _torchvision_class(dataset, bool(verify_checksums))
    parts = ["train", "test"] if split == "both" else [split]
    images, values, groups, counts = [], [], [], {}
    for part in parts:
        try:
            if dataset == "SVHN":
                loaded = dataset_class(str(root_path), split=part, download=bool(download))
                data = np.transpose(loaded.data, (0, 2, 3, 1))  # torchvision keeps SVHN as (N, C, H, W)
                targets = [str(int(t)) for t in loaded.labels]
            else:
                loaded = dataset_class(str(root_path), train=(part == "train"), download=bool(download))
                data = np.asarray(loaded.data)
                raw_targets = [int(t) for t in np.asarray(loaded.targets)]
                if dataset == "CIFAR10":
                    targets = [loaded.classes[t] for t in raw_targets]
                else:
                    targets = [str(t) for t in raw_targets]
        except (RuntimeError, OSError, ValueError, KeyError, EOFError) as error:
            raise DatasetError(
                f"dataset {name!r}: torchvision {dataset} ({part}) under {str(root_path)!r} is missing or unreadable: "
                f"{type(error).__name__}: {error}"
            ) from None
        counts[part] = int(len(data))
        for index in range(len(data)):
            images.append(np.asarray(data[index]).astype(np.float32) / np.float32(255.0))
            values.append(targets[index])
            groups.append(f"{dataset}:{part}:{index}")
    task = TaskLabels.from_option(name, classes, values)
    where = f"torchvision {dataset} under {str(root_path)!r}"
    return finish(name, where, images, values, groups, task, drop_other, min_per_class, {"images_per_split": counts},
                  context, max_per_class=max_per_class, keys=groups, salt=group_salt)

