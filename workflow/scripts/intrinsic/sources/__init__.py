"""Every dataset source of the catalog behind one entry point: ``load_source(name, source)``.

``source`` is a catalog entry's ``source`` block: ``type`` plus options. :data:`SOURCES` is the
one registry: type -> :class:`~intrinsic.sources.common.SourceType`, whose ``read`` is called the
same way for every type, ``read(name, context, **options) -> RawDataset`` (the context:
:class:`~intrinsic.sources.common.ReadContext`). Its keyword parameters are the type's options,
and config/config.schema.yaml lists the same ones (tests/test_sources.py keeps them in step).

    sklearn_digits, photo_patches, lfw_faces, lesion, synthetic_manifold, low_rank
                  embedded: built from files of installed packages, or synthetic (embedded.py)
    torchvision   MNIST, CIFAR-10, SVHN through torchvision.datasets from a local root
    image_folder  class-folder tree root/<class>/**/*.png|jpg (ImageNet style), or labels/groups
                  taken from the relative path with regular expressions (MURA)
    image_csv     image files listed in a CSV (path, label[, group]) (CheXpert, OAI exports)
    dicom         DICOM files (or the frames of multi-frame files) via pydicom; labels from a CSV
                  keyed by SOPInstanceUID, SeriesInstanceUID or path
    nifti         NIfTI volumes via nibabel, reoriented to RAS+ and sliced along one axis; labels
                  from a mask or a CSV; the authors' BraTS slice filters
    medmnist      MedMNIST .npz files read with numpy

The dispatcher, for every type alike: rejects unknown and missing options (naming the dataset),
joins relative file options to ``base_dir``, and writes the provenance's ``type``, ``options``
(every option as configured, defaults filled in, paths as given, ``group_salt`` left out),
``group_salt`` (``default`` or ``custom``, for types that hash group ids) and ``versions``
(numpy and the type's packages). The reader adds only what it measured (counts, skips).

Common behaviour of the real-data readers (see config/README.md, section "Real datasets"):

* Labels come from the files; ``classes`` maps source label values to the task's classes
  (a list of values, each its own class, or a mapping class name -> values). Values outside
  the task are an error naming the file and the values, or dropped with ``drop_other: true``.
* Everything is read, labelled and checked before anything is written, so a failing reader
  leaves no cache behind. Corrupt or unreadable files are an error naming the file, or are
  skipped and counted with ``on_error: skip``.
* Messages name a source file through :class:`~intrinsic.sources.common.FileNames`, which
  registers its paths with :func:`intrinsic.logs.private`: stderr shows the path (so the user
  can find the file), the rule's log file under results/ only ``<file #index sha:HASH>``. No
  message names a DICOM header value (UIDs, patient ids): files are named by path, rows by CSV line.
* Group ids that come from the data (patient, study, volume, file path) are replaced by
  ``sha256(group_salt + id)[:16]``; the cache holds pixels, labels and these hashes only.
  Provenance holds counts and the options as configured, never header values or file names.
* Decoding and resizing run in ``context.threads`` worker processes (results in input order).
  When the caller passes the cache's ``size``/``channels``, workers resize right away, so the
  parent only collects small arrays; ``cache.prepare`` then has nothing left to resize.
* ``max_per_class`` keeps at most that many images per task class, chosen by a salted hash of
  each item's key (:func:`~intrinsic.sources.common.select_per_class`), before decoding wherever
  the labels are known without the pixels. ``image_max_scaling`` divides each image by its own
  maximum (:func:`~intrinsic.sources.common.scale_by_max`), as the study's authors normalised
  every medical image.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from importlib import metadata
from pathlib import Path

import numpy as np

from ..cache import DatasetError, RawDataset
from . import dicom, embedded, image_csv, image_folder, medmnist, nifti, torchvision_sets
from .common import DEFAULT_GROUP_SALT, ReadContext, SourceType, label_key

SOURCES: dict[str, SourceType] = {
    "sklearn_digits": SourceType(embedded.sklearn_digits, packages=("scikit-learn",)),
    "photo_patches": SourceType(embedded.photo_patches, packages=("scikit-image",)),
    "lfw_faces": SourceType(embedded.lfw_faces, packages=("scikit-image",)),
    "lesion": SourceType(embedded.lesion, packages=("pydicom", "nibabel", "scikit-image")),
    "synthetic_manifold": SourceType(embedded.synthetic_manifold),
    "low_rank": SourceType(embedded.low_rank),
    "torchvision": SourceType(torchvision_sets.read_torchvision, packages=("torchvision",), paths=("root",)),
    "image_folder": SourceType(image_folder.read_image_folder, packages=("pillow",), paths=("root",)),
    "image_csv": SourceType(image_csv.read_image_csv, packages=("pillow",), paths=("csv", "root")),
    "dicom": SourceType(dicom.read_dicom, packages=("pydicom",), paths=("root", "labels_csv")),
    "nifti": SourceType(nifti.read_nifti, packages=("nibabel", "scikit-image", "scipy"),
                        paths=("root", "labels_csv")),
    "medmnist": SourceType(medmnist.read_medmnist, paths=("npz",)),
}
SOURCE_TYPES = list(SOURCES)


def source_options(source_type: SourceType) -> list[inspect.Parameter]:
    """The options of a source type: the keyword parameters of its ``read`` after (name, context)."""
    return list(inspect.signature(source_type.read).parameters.values())[2:]


def load_source(
    name: str,
    source: dict,
    threads: int = 1,
    log: logging.Logger | None = None,
    size: int | None = None,
    channels: int | None = None,
    base_dir: str | os.PathLike | None = None,
) -> RawDataset:
    """The RawDataset of catalog entry ``name``.

    threads: worker processes for decoding real files (the embedded generators compute in one).
    size, channels: the cache geometry; when both are given, readers resize in their workers
    (in parallel) instead of leaving all resizing to ``cache.prepare`` (serial). Either way the
    cache written from the result is the same.
    base_dir: folder that relative file options (``SourceType.paths``) are relative to; the
    workflow passes its own folder, so vendored data (data/) is found from any working directory.
    """
    if not isinstance(source, dict) or "type" not in source:
        raise DatasetError(f"dataset {name!r}: 'source' must be a mapping with a 'type', got {source!r}")
    kind = source["type"]
    if kind not in SOURCES:
        raise DatasetError(f"dataset {name!r}: unknown source type {kind!r}; valid types: {SOURCE_TYPES}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise DatasetError(f"dataset {name!r}: threads must be an integer >= 1, got {threads!r}")
    source_type = SOURCES[kind]
    options = {key: value for key, value in source.items() if key != "type"}
    _check_options(name, kind, source_type, options)
    context = ReadContext(threads=threads, log=log, size=size, channels=channels)
    if log is not None:
        log.info("%s: reading source type %s with %d worker(s)", name, kind, threads)
    raw = source_type.read(name, context, **_resolve_paths(options, source_type.paths, base_dir))
    configured = _configured(kind, source_type, options)
    clash = sorted(set(configured) & set(raw.provenance))
    if clash:  # a reader's own provenance must not shadow what the dispatcher records
        raise RuntimeError(f"source type {kind!r} returned provenance key(s) {clash}, which load_source writes")
    raw.provenance = {**configured, **raw.provenance}
    return raw


def _check_options(name: str, kind: str, source_type: SourceType, options: dict) -> None:
    """DatasetError naming the dataset for an unknown or a missing option."""
    parameters = source_options(source_type)
    valid = [parameter.name for parameter in parameters]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DatasetError(f"dataset {name!r}: source type {kind!r} has no option(s) {unknown}; valid options: {valid}")
    missing = [p.name for p in parameters if p.default is inspect.Parameter.empty and p.name not in options]
    if missing:
        raise DatasetError(f"dataset {name!r}: source type {kind!r} needs option(s) {missing}")


def _configured(kind: str, source_type: SourceType, options: dict) -> dict:
    """The provenance every type shares: type, every option as configured with defaults filled
    in (paths as given in the config: a relative path stays relative, an absolute data root is
    recorded as written; no file below it is named), the salt reduced to
    default/custom, and the versions of numpy and the type's packages."""
    parameters = source_options(source_type)
    shown = {p.name: options.get(p.name, p.default) for p in parameters if p.name != "group_salt"}
    provenance = {"type": kind, "options": json.loads(json.dumps(shown))}  # tuples as lists, as meta.json has them
    if any(p.name == "group_salt" for p in parameters):
        salt = options.get("group_salt", DEFAULT_GROUP_SALT)
        provenance["group_salt"] = "default" if salt == DEFAULT_GROUP_SALT else "custom"
    provenance["versions"] = {package: metadata.version(package) for package in ("numpy", *source_type.packages)}
    return provenance


def _resolve_paths(options: dict, paths: tuple[str, ...], base_dir) -> dict:
    """``options`` with the relative file options ``paths`` joined to ``base_dir``."""
    options = dict(options)
    if base_dir is not None:
        for key in paths:
            value = options.get(key)
            if isinstance(value, str) and value and not Path(os.path.expanduser(value)).is_absolute():
                options[key] = str(Path(base_dir) / value)
    return options


def drawn_pair_classes(name: str, source: dict, pairs: int, class_pairs: list | None = None,
                       base_dir: str | os.PathLike | None = None) -> list[str]:
    """The class folders a ``read_classes: drawn_pairs`` cache reads: those of the first ``pairs``
    entries of the dataset's class-pair order over every class folder of the source.

    The order is ``splits.class_pair_order`` over the whole class list (ImageNet: all 1000
    synsets), so the seeds and Fig. 1's pairings get the same pairs as from a cache of every
    class, while only 2 x ``pairs`` folders at most are decoded.
    """
    from ..splits import class_pair_order

    if source.get("type") != "image_folder" or source.get("label_regex") is not None:
        raise DatasetError(f"dataset {name!r}: read_classes: drawn_pairs needs a source of type image_folder "
                           "whose labels are its class folders (no label_regex)")
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise DatasetError(f"dataset {name!r}: the number of drawn class pairs must be an integer >= 1, got {pairs!r}")
    options = _resolve_paths({k: v for k, v in source.items() if k != "type"}, SOURCES["image_folder"].paths,
                             base_dir)
    listed = options.get("classes")
    if listed is None:
        universe = image_folder.list_class_folders(name, options.get("root"), options.get("extensions"))
    elif isinstance(listed, list):
        universe = [label_key(value) for value in listed]  # as the reader's class list spells them
    else:
        raise DatasetError(f"dataset {name!r}: read_classes: drawn_pairs needs 'classes' to be a list of class "
                           f"folders (or absent: every folder), got {listed!r}")
    order = class_pair_order(name, universe, np.arange(len(universe)), class_pairs)
    return sorted({universe[index] for pair in order[:pairs] for index in pair})
