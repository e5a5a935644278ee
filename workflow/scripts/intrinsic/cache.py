"""The prepared-dataset cache: every image decoded, resized and quantized once.

Layout of one dataset's cache folder::

    images.npy     uint8, shape (n, channels, size, size), values 0..255 for [0, 1]
    labels.npy     int64, shape (n,), indices into meta["classes"]
    groups.npy     str, shape (n,), patient/study/source id; splits never cut a group
    row_crc32.npy  uint32, shape (n,), CRC-32 of each image's bytes
    meta.json      provenance, class names and counts, shapes, sha256 of the image, label and
                   group arrays (``sha256``) and of the label, group and CRC arrays (``index_sha256``)

Optional, only when the source gives explicit background masks (``RawDataset.backgrounds``;
meta ``"background": "explicit"``, else ``"threshold"``: users derive the background from the
pixel values, ``background.threshold_background``)::

    background.npy         bool, shape (n, size, size), True where a pixel is background
    background_crc32.npy   uint32, shape (n,), CRC-32 of each mask's bytes

with ``background_sha256`` (the masks) and ``background_index_sha256`` (their CRCs) in meta.

The folder is written beside its final path and renamed into place, so a cache folder is
complete or absent (it is one `directory()` output for Snakemake: one input edge per job).

Verification: every ``load_cache`` checks the small arrays (labels, groups, row CRCs: bytes per
image) against ``index_sha256``, and ``DatasetCache.read_images`` checks each image it reads
against its CRC. A job thus verifies exactly the bytes it uses, at a cost far below the job's
(CRC-32 runs at about 2.4 GB/s here, faster than the memory-mapped read itself;
benchmarks/bench_prepare.py measures it on a 224 px cache), and never the whole cache: a
200,000-image cache is not read in full for a 1,750-image split. A mismatch is a
``DatasetError`` naming the file and the command that rebuilds the cache. Background masks are
verified the same way: their CRCs on every load, each mask when ``read_background`` reads it,
and all of them against ``background_sha256`` with ``load_cache(verify=True)``.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .io import ArtefactError, atomic_directory, atomic_write, read_json, rebuild_hint, write_json

CACHE_FILES = ("images.npy", "labels.npy", "groups.npy", "row_crc32.npy", "meta.json")
# Optional: written only for sources with explicit background masks (see the module docstring).
BACKGROUND_FILES = ("background.npy", "background_crc32.npy")


class DatasetError(ValueError):
    """A dataset or its cache is unusable; the message names the dataset and the cause."""


@dataclass
class RawDataset:
    """Decoded images of one dataset before resizing, as a reader or generator returns them.

    images: one float array per image, shape (H, W) or (H, W, C), values in [0, 1]. Sizes may
        differ between images. The reader chooses the linear normalization (x/255, a CT window,
        per-volume percentiles), because the right one depends on the source.
    labels: class index per image, into ``classes``.
    groups: group id per image (patient, study, source photo); images of one group always land
        on the same side of a split.
    backgrounds: optional explicit background mask per image, bool (H, W) with the image's H, W,
        True where a pixel is background (e.g. off the signal region of a synthetic source, or
        below a NIfTI reader's foreground threshold). None: the background is derived from the
        pixel values when needed (``background.threshold_background``).
    """

    name: str
    images: list[np.ndarray]
    labels: np.ndarray
    groups: np.ndarray
    classes: list[str]
    provenance: dict = field(default_factory=dict)
    backgrounds: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.groups = np.asarray(self.groups).astype(str)
        n = len(self.images)
        if len(self.labels) != n or len(self.groups) != n:
            raise DatasetError(
                f"dataset {self.name!r}: {n} images but {len(self.labels)} labels "
                f"and {len(self.groups)} group ids"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DatasetError(
                f"dataset {self.name!r}: labels must lie in 0..{len(self.classes) - 1} "
                f"(classes {self.classes}), found {self.labels.min()}..{self.labels.max()}"
            )
        if self.backgrounds is not None:
            if len(self.backgrounds) != n:
                raise DatasetError(f"dataset {self.name!r}: {n} images but {len(self.backgrounds)} background masks")
            masks = []
            for index, (mask, image) in enumerate(zip(self.backgrounds, self.images)):
                mask = np.asarray(mask)
                if mask.dtype != np.bool_ or mask.shape != np.shape(image)[:2]:
                    raise DatasetError(
                        f"dataset {self.name!r}: background mask {index} has dtype {mask.dtype} shape {mask.shape}; "
                        f"expected bool of the image's (H, W) {np.shape(image)[:2]}"
                    )
                masks.append(mask)
            self.backgrounds = masks


@dataclass
class DatasetCache:
    """A prepared dataset loaded from its cache folder. ``images`` is memory-mapped and not
    verified; read images through ``read_images``, which verifies each one it returns."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    meta: dict
    row_crc32: np.ndarray
    folder: Path
    background: np.ndarray | None = None  # memory-mapped bool (n, H, W), unverified; use read_background
    background_crc32: np.ndarray | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def has_background(self) -> bool:
        """Whether the cache stores explicit background masks (background.npy)."""
        return self.background is not None

    def read_background(self, index) -> np.ndarray | None:
        """The explicit background masks at ``index`` (in that order), bool (n, H, W), True =
        background, each checked against its CRC-32; None when the cache has no background.npy."""
        if self.background is None:
            return None
        return self._verified_rows(self.background, self.background_crc32, index, "background.npy", "mask(s)")

    def _verified_rows(self, array: np.ndarray, crcs: np.ndarray, index, file: str, what: str) -> np.ndarray:
        """``array[index]`` (in that order) in memory, each row checked against its CRC-32."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self.images)):
            raise DatasetError(f"cache {self.folder}: image index {int(index.min())}..{int(index.max())} "
                               f"outside 0..{len(self.images) - 1}")
        order = np.argsort(index, kind="stable")  # a memory-mapped file reads fastest in file order
        rows = np.empty((len(index), *array.shape[1:]), dtype=array.dtype)
        rows[order] = array[index[order]]
        corrupt = [int(i) for i, row in zip(index, rows) if zlib.crc32(row) != crcs[i]]
        if corrupt:
            raise DatasetError(f"cache {self.folder}: {file} is corrupt ({len(corrupt)} {what} fail their "
                               f"CRC-32, first index {corrupt[0]}); {rebuild_hint(self.folder)}")
        return rows

    def read_images(self, index) -> np.ndarray:
        """The images at ``index`` (in that order) as an in-memory uint8 array, each checked
        against its CRC-32; a mismatch is a DatasetError naming images.npy and the rebuild."""
        return self._verified_rows(self.images, self.row_crc32, index, "images.npy", "image(s)")


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """Linearly map an image's own min..max onto [0, 1] (a constant image maps to 0)."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return np.zeros_like(image)
    return (image - lo) / (hi - lo)


def convert_image(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Resize one [0, 1] image to (channels, size, size) float32, anti-aliased."""
    # Imported here: only preparing a cache needs scikit-image, and its import (0.36 s) would
    # otherwise be paid by every job that reads a cache.
    from skimage.color import rgb2gray
    from skimage.transform import resize

    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]  # drop alpha
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise DatasetError(f"expected an image of shape (H, W) or (H, W, 1|3|4), got {image.shape}")
    if channels == 1 and image.shape[-1] == 3:
        image = rgb2gray(image)[..., None].astype(np.float32)
    elif channels == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[:2] != (size, size):
        image = resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return np.moveaxis(image, -1, 0).astype(np.float32)


def quantize(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 (round to nearest)."""
    return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A bool (H, W) background mask at (size, size): unchanged when already that size, else
    resized with the image's own filter (``convert_image``: bilinear, anti-aliased when
    shrinking) and thresholded at > 0.5, so a pixel is background when its resized value comes
    mostly from background pixels (a tie counts as foreground)."""
    from skimage.transform import resize  # see convert_image

    mask = np.asarray(mask, dtype=bool)
    if mask.shape == (size, size):
        return mask.copy()
    resized = resize(mask.astype(np.float32), (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return resized > 0.5


def prepare_backgrounds(raw: RawDataset, size: int) -> np.ndarray | None:
    """The explicit background masks of ``raw`` at the cache size, bool (n, size, size), or None."""
    if raw.backgrounds is None:
        return None
    out = np.empty((len(raw.backgrounds), size, size), dtype=np.bool_)
    for index, mask in enumerate(raw.backgrounds):
        out[index] = resize_mask(mask, size)
    return out


def prepare(raw: RawDataset, size: int, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a RawDataset into (uint8 images (n, C, size, size), labels, groups)."""
    if channels not in (1, 3):
        raise DatasetError(f"dataset {raw.name!r}: channels must be 1 or 3, got {channels}")
    out = np.empty((len(raw.images), channels, size, size), dtype=np.uint8)
    for index, image in enumerate(raw.images):
        image = np.asarray(image)
        if not np.isfinite(image).all():
            raise DatasetError(f"dataset {raw.name!r}: image {index} has NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise DatasetError(
                f"dataset {raw.name!r}: image {index} has values {lo:.4g}..{hi:.4g} outside [0, 1]; "
                "the reader must normalize it"
            )
        out[index] = quantize(convert_image(image, size, channels))
    return out, raw.labels, raw.groups


def row_crc32(images: np.ndarray) -> np.ndarray:
    """CRC-32 of each image's bytes (uint32, one per image). CRC-32, not a cryptographic hash:
    it only has to catch corruption, and it is the fastest in the standard library (zlib)."""
    return np.fromiter((zlib.crc32(np.ascontiguousarray(image)) for image in images), dtype=np.uint32,
                       count=len(images))


def checksum(*arrays: np.ndarray) -> str:
    """sha256 over the dtype, shape and bytes of each array, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as handle:
        np.save(handle, array, allow_pickle=False)


def write_cache(
    folder: str | os.PathLike,
    raw: RawDataset,
    size: int,
    channels: int,
    domain: str,
) -> dict:
    """Prepare ``raw`` and write its cache folder atomically (``io.atomic_directory``): a failure
    leaves any previous cache as it was. Returns meta."""
    folder = Path(folder)
    if len(raw.images) == 0:
        raise DatasetError(f"dataset {raw.name!r}: no images")
    images, labels, groups = prepare(raw, size, channels)
    backgrounds = prepare_backgrounds(raw, size)
    with atomic_directory(folder) as staged:
        _save_npy(staged / "images.npy", images)
        _save_npy(staged / "labels.npy", labels)
        _save_npy(staged / "groups.npy", groups)
        crcs = row_crc32(images)
        _save_npy(staged / "row_crc32.npy", crcs)
        counts = np.bincount(labels, minlength=len(raw.classes))
        meta = {
            "dataset": raw.name,
            "domain": domain,
            "n_images": int(len(labels)),
            "shape": list(images.shape[1:]),
            "resolution": int(size),
            "channels": int(channels),
            "classes": list(raw.classes),
            "class_counts": {name: int(c) for name, c in zip(raw.classes, counts)},
            "n_groups": int(len(np.unique(groups))),
            "sha256": checksum(images, labels, groups),
            "index_sha256": checksum(labels, groups, crcs),
            "background": "threshold" if backgrounds is None else "explicit",
            "provenance": raw.provenance,
            "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if backgrounds is not None:
            background_crcs = row_crc32(backgrounds)
            _save_npy(staged / "background.npy", backgrounds)
            _save_npy(staged / "background_crc32.npy", background_crcs)
            meta["background_sha256"] = checksum(backgrounds)
            meta["background_index_sha256"] = checksum(background_crcs)
        write_json(staged / "meta.json", meta)
    return meta


def load_cache(folder: str | os.PathLike, verify: bool = False, mmap: bool = True) -> DatasetCache:
    """Load a cache folder, its labels, groups and row CRCs verified; ``verify`` also checks
    every image (reads every byte; jobs verify the images they read, ``read_images``)."""
    folder = Path(folder)
    missing = [name for name in CACHE_FILES if not (folder / name).exists()]
    if missing:
        raise DatasetError(f"cache {folder} is incomplete (missing {', '.join(missing)}; perhaps written by an "
                           f"older version of this workflow); {rebuild_hint(folder)}")
    try:
        meta = read_json(folder / "meta.json", required=("shape", "n_images", "classes", "sha256", "index_sha256"),
                         rebuild=folder)
    except ArtefactError as error:
        raise DatasetError(f"cache {folder}: {error}") from None
    arrays = {}
    for name, mode in (("images", "r" if mmap else None), ("labels", None), ("groups", None), ("row_crc32", None)):
        try:
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise DatasetError(f"cache {folder}: cannot read {name}.npy ({error}); {rebuild_hint(folder)}") from None
    images, labels, groups, crcs = arrays["images"], arrays["labels"], arrays["groups"], arrays["row_crc32"]
    if images.dtype != np.uint8 or images.ndim != 4 or list(images.shape[1:]) != meta["shape"]:
        raise DatasetError(
            f"cache {folder}: images.npy has dtype {images.dtype} shape {images.shape}, "
            f"meta.json says uint8 (n, {', '.join(map(str, meta['shape']))}); {rebuild_hint(folder)}"
        )
    if not (len(images) == len(labels) == len(groups) == len(crcs) == meta["n_images"]):
        raise DatasetError(
            f"cache {folder}: {len(images)} images, {len(labels)} labels, {len(groups)} groups, {len(crcs)} CRCs, "
            f"meta.json says {meta['n_images']}; {rebuild_hint(folder)}"
        )
    if checksum(labels, groups, crcs) != meta["index_sha256"]:
        raise DatasetError(f"cache {folder}: labels.npy, groups.npy or row_crc32.npy is corrupt (checksum "
                           f"mismatch with meta.json); {rebuild_hint(folder)}")
    cache = DatasetCache(images=images, labels=labels, groups=groups, meta=meta, row_crc32=crcs, folder=folder)
    _load_background(cache, mmap)
    if verify:
        for start in range(0, len(images), 1024):  # in chunks: memory stays small for any cache
            cache.read_images(np.arange(start, min(start + 1024, len(images))))
        if cache.has_background and checksum(cache.background) != meta["background_sha256"]:
            raise DatasetError(f"cache {folder}: background.npy is corrupt (checksum mismatch with meta.json); "
                               f"{rebuild_hint(folder)}")
    return cache


def _load_background(cache: DatasetCache, mmap: bool) -> None:
    """Attach the optional explicit background masks to ``cache``, their CRCs verified.

    Caches without them (meta "background" absent or "threshold", no background files) stay
    valid; a cache whose meta and files disagree, or whose masks are damaged, is a DatasetError
    naming the file."""
    folder, meta = cache.folder, cache.meta
    present = [name for name in BACKGROUND_FILES if (folder / name).exists()]
    explicit = meta.get("background") == "explicit"
    if not present and not explicit:
        return
    if not explicit:
        raise DatasetError(f"cache {folder}: has {', '.join(present)} but meta.json says background "
                           f"{meta.get('background', 'threshold')!r}; {rebuild_hint(folder)}")
    missing = [name for name in BACKGROUND_FILES if name not in present]
    if missing:
        raise DatasetError(f"cache {folder}: meta.json says background 'explicit' but {', '.join(missing)} "
                           f"is missing; {rebuild_hint(folder)}")
    if "background_sha256" not in meta or "background_index_sha256" not in meta:
        raise DatasetError(f"cache {folder}: meta.json lacks background_sha256 or background_index_sha256 for "
                           f"background.npy; {rebuild_hint(folder)}")
    arrays = {}
    for name, mode in (("background", "r" if mmap else None), ("background_crc32", None)):
        try:
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise DatasetError(f"cache {folder}: cannot read {name}.npy ({error}); {rebuild_hint(folder)}") from None
    masks, crcs = arrays["background"], arrays["background_crc32"]
    expected = (len(cache.images), *cache.images.shape[2:])
    if masks.dtype != np.bool_ or masks.shape != expected or crcs.shape != (len(cache.images),):
        raise DatasetError(f"cache {folder}: background.npy has dtype {masks.dtype} shape {masks.shape} and "
                           f"background_crc32.npy shape {crcs.shape}; expected bool {expected} and "
                           f"({len(cache.images)},); {rebuild_hint(folder)}")
    if checksum(crcs) != meta["background_index_sha256"]:
        raise DatasetError(f"cache {folder}: background_crc32.npy is corrupt (checksum mismatch with meta.json); "
                           f"{rebuild_hint(folder)}")
    cache.background, cache.background_crc32 = masks, crcs
