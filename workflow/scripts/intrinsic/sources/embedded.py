"""Datasets built from images that ship with installed packages, plus synthetic ones.

Nothing is downloaded: every generator reads files installed with scikit-learn, scikit-image,
pydicom or nibabel, or computes its images. Each is a source type of :data:`intrinsic.sources.SOURCES`,
called like every reader as ``generator(name, context, seed=..., **options)`` through
:func:`intrinsic.sources.load_source`, and returns a :class:`~intrinsic.cache.RawDataset` at
native resolution (resizing happens in ``cache.prepare``). The dispatcher records the options
and package versions in the provenance; a generator adds what it built from them.

Kinds (see config/README.md, section "Embedded datasets", for every option):
    sklearn_digits      scikit-learn's 8x8 handwritten digits, 10 classes
    photo_patches       square patches of scikit-image photos; the class is the source photo
    lfw_faces           scikit-image's LFW subset: faces vs non-faces (+ mirror images)
    lesion              crops of real CT/MR/fundus images; the class is a small inserted lesion
    synthetic_manifold  smooth d-dimensional image manifold with known d and a tunable label margin
    low_rank            rank-r signal on a foreground square, zero background (Zhang et al. 2025)

Every generator is a pure function of (seed, options): it draws only from
``np.random.default_rng`` streams derived from the seed (sklearn_digits and lfw_faces are fixed
sets, on which the seed has no effect).
"""

from __future__ import annotations

import copy
import functools
import math
import os

import numpy as np

from ..cache import DatasetError, RawDataset
from .common import ReadContext

# ----------------------------------------------------------------------------------------------
# Option checking: every message names the dataset and the option.


def _check_int(name: str, option: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DatasetError(f"dataset {name!r}: option {option!r} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise DatasetError(f"dataset {name!r}: option {option!r} must be {bound}, got {value}")
    return int(value)


def _check_float(name: str, option: str, value, low: float, high: float,
                 low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DatasetError(f"dataset {name!r}: option {option!r} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise DatasetError(f"dataset {name!r}: option {option!r} must lie in {interval}, got {value}")
    return value


def _check_bool(name: str, option: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise DatasetError(f"dataset {name!r}: option {option!r} must be true or false, got {value!r}")
    return bool(value)


def _check_names(name: str, option: str, value, allowed: list[str]) -> list[str]:
    """A non-empty list of distinct names, each one of ``allowed``."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise DatasetError(f"dataset {name!r}: option {option!r} must be a non-empty list, got {value!r}")
    names = [str(v) for v in value]
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise DatasetError(f"dataset {name!r}: option {option!r} names unknown {unknown}; valid: {allowed}")
    if len(set(names)) != len(names):
        raise DatasetError(f"dataset {name!r}: option {option!r} lists a name twice: {names}")
    return names


# ----------------------------------------------------------------------------------------------
# Square crops whose centre lies in a chosen cell of a coarse grid over the source image.


def crop_cell(start_y: int, start_x: int, side: int, height: int, width: int, grid: int) -> tuple[int, int]:
    """(row, col) of the grid x grid cell over a height x width image holding a crop's centre.

    Integer arithmetic on twice the centre (start + side / 2): exact, so a centre on a cell
    border belongs to the cell below / right of it both here and in the crop sampler.
    """
    row = (2 * start_y + side) * grid // (2 * height)
    col = (2 * start_x + side) * grid // (2 * width)
    return min(row, grid - 1), min(col, grid - 1)


def _start_range(length: int, side: int, cell: int, grid: int) -> tuple[int, int]:
    """Inclusive range of integer crop starts along one axis whose centre lies in ``cell``."""
    lo = -((side * grid - 2 * cell * length) // (2 * grid))  # ceil((2*cell*length - side*grid) / 2grid)
    hi = -((side * grid - 2 * (cell + 1) * length) // (2 * grid)) - 1
    return max(0, lo), min(length - side, hi)


def _sample_crop(rng: np.random.Generator, height: int, width: int, side: int, cell: tuple[int, int],
                 grid: int) -> tuple[int, int, int]:
    """(start_y, start_x, side) of a crop inside the image with its centre in ``cell``.

    Border cells cannot hold the centre of a crop wider than 2/grid of the image, so the side
    shrinks until the cell is reachable; this keeps the groups (cells) about equally large,
    which uniformly placed crops would not (they pile up in the central cells).
    """
    side = max(1, min(side, height, width))
    while True:
        y_lo, y_hi = _start_range(height, side, cell[0], grid)
        x_lo, x_hi = _start_range(width, side, cell[1], grid)
        if y_lo <= y_hi and x_lo <= x_hi:
            break
        side -= 1
        if side < 1:  # cannot happen while grid <= the image size; guards the loop
            raise ValueError(f"grid {grid} is finer than the {height}x{width} image")
    return int(rng.integers(y_lo, y_hi + 1)), int(rng.integers(x_lo, x_hi + 1)), side


def _jittered_side(rng: np.random.Generator, fraction: float, jitter: float, shorter_side: int) -> int:
    """Crop side: fraction of the shorter image side times a log-uniform factor in [1/jitter, jitter]."""
    factor = math.exp(rng.uniform(-math.log(jitter), math.log(jitter))) if jitter > 1 else 1.0
    return max(1, min(shorter_side, int(round(fraction * factor * shorter_side))))


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _skimage_file(filename: str) -> str:
    import skimage.data

    return os.path.join(os.path.dirname(skimage.data.__file__), filename)


# ----------------------------------------------------------------------------------------------
# sklearn_digits


DIGIT_CLASSES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")


def sklearn_digits(name: str, context: ReadContext, seed: int = 0, classes: tuple | list = DIGIT_CLASSES
                   ) -> RawDataset:
    """scikit-learn's 1797 handwritten digits, 8x8, values 0..16 mapped to [0, 1].

    The data set is fixed, so ``seed`` has no effect. ``classes`` keeps a subset of the digits,
    in the given order (labels index that list).
    """
    from sklearn.datasets import load_digits

    _check_int(name, "seed", seed, 0)
    kept = _check_names(name, "classes", classes, list(DIGIT_CLASSES))
    digits = load_digits()
    targets = np.asarray(digits.target)
    images, labels, groups = [], [], []
    for index, (image, target) in enumerate(zip(digits.images, targets, strict=True)):
        if str(target) in kept:
            images.append((np.asarray(image, dtype=np.float32) / 16.0).clip(0, 1))
            labels.append(kept.index(str(target)))
            groups.append(f"digits:{index}")
    return RawDataset(
        name=name,
        images=images,
        labels=np.asarray(labels),
        groups=np.asarray(groups),
        classes=kept,
        provenance={
            "source": "sklearn.datasets.load_digits (digits.csv.gz shipped with scikit-learn)",
            "normalization": "value / 16",
            "group": "one per image",
        },
    )


# ----------------------------------------------------------------------------------------------
# photo_patches

PHOTO_FILES = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "coins": "coins.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "moon": "moon.png",
}
DEFAULT_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins")


@functools.lru_cache(maxsize=None)
def load_photo(photo: str) -> np.ndarray:
    """A scikit-image photo as a read-only float32 array in [0, 1]: (H, W) gray or (H, W, 3) RGB."""
    from skimage import io

    image = io.imread(_skimage_file(PHOTO_FILES[photo]))
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    return _readonly(image.astype(np.float32) / 255.0)


def photo_patches(name: str, context: ReadContext, seed: int = 0, photos: tuple | list = DEFAULT_PHOTOS,
                  n_per_class: int = 200, patch_fraction: float = 0.25, scale_jitter: float = 1.25,
                  grid: int = 4) -> RawDataset:
    """Square patches of scikit-image photos; the class is the source photo.

    Each patch: a grid cell drawn uniformly, a side of patch_fraction x the photo's shorter side
    times a log-uniform factor in [1/scale_jitter, scale_jitter], and a position drawn uniformly
    among those with the patch centre in that cell. Group ``photo:r{row}c{col}`` (the cell), so
    the split keeps regions of a photo apart. Patches are read-only views into the photo.
    """
    seed = _check_int(name, "seed", seed, 0)
    photos = _check_names(name, "photos", photos, list(PHOTO_FILES))
    n_per_class = _check_int(name, "n_per_class", n_per_class, 1)
    patch_fraction = _check_float(name, "patch_fraction", patch_fraction, 0.0, 1.0, low_open=True)
    scale_jitter = _check_float(name, "scale_jitter", scale_jitter, 1.0, 4.0)
    grid = _check_int(name, "grid", grid, 1, 16)

    rng = np.random.default_rng(seed)
    images, labels, groups = [], [], []
    for label, photo in enumerate(photos):
        picture = load_photo(photo)
        height, width = picture.shape[:2]
        for _ in range(n_per_class):
            cell = (int(rng.integers(grid)), int(rng.integers(grid)))
            side = _jittered_side(rng, patch_fraction, scale_jitter, min(height, width))
            y, x, side = _sample_crop(rng, height, width, side, cell, grid)
            images.append(picture[y : y + side, x : x + side])
            labels.append(label)
            groups.append(f"{photo}:r{cell[0]}c{cell[1]}")
    return RawDataset(
        name=name,
        images=images,
        labels=np.asarray(labels),
        groups=np.asarray(groups),
        classes=list(photos),
        provenance={
            "source_files": {photo: PHOTO_FILES[photo] for photo in photos},
            "normalization": "value / 255; RGB photos stay RGB, grayscale photos are 2D",
            "group": "photo:r{row}c{col}, the grid cell holding the patch centre",
        },
    )


# ----------------------------------------------------------------------------------------------
# lfw_faces

LFW_FILE = "lfw_subset.npy"
LFW_N_FACES = 100  # skimage.data.lfw_subset: "100 first images are faces and subsequent 100 are non-faces"


def lfw_faces(name: str, context: ReadContext, seed: int = 0, hflip: bool = True) -> RawDataset:
    """scikit-image's LFW subset, 25x25: classes ["non_face", "face"] (label 1 = face).

    ``hflip`` adds each image's horizontal mirror with the same group id ``lfw:{index}`` as its
    original, so a mirror never lands on the other side of a split. The data set is fixed, so
    ``seed`` has no effect.
    """
    _check_int(name, "seed", seed, 0)
    hflip = _check_bool(name, "hflip", hflip)
    stack = np.load(_skimage_file(LFW_FILE), allow_pickle=False).astype(np.float32).clip(0, 1)
    images, labels, groups = [], [], []
    for index, image in enumerate(stack):
        label = 1 if index < LFW_N_FACES else 0
        variants = [image, np.ascontiguousarray(image[:, ::-1])] if hflip else [image]
        for variant in variants:
            images.append(variant)
            labels.append(label)
            groups.append(f"lfw:{index}")
    return RawDataset(
        name=name,
        images=images,
        labels=np.asarray(labels),
        groups=np.asarray(groups),
        classes=["non_face", "face"],
        provenance={
            "source_files": [LFW_FILE],
            "source_layout": "first 100 faces, last 100 non-faces (scikit-image docs)",
            "normalization": "stored floats in [0, 1], unchanged",
            "group": "lfw:{index}; a mirror image shares its original's group",
        },
    )


# ----------------------------------------------------------------------------------------------
# lesion

# Registry of real anatomy: source name -> (package, file, description of the slicing).
LESION_SOURCES = {
    "ct_small": ("pydicom", "CT_small.dcm", "one 128x128 CT slice, HU via RescaleSlope/Intercept"),
    "mr_small": ("pydicom", "MR_small.dcm", "one 64x64 MR slice"),
    "anatomical": ("nibabel", "anatomical.nii", "MR volume (33, 41, 25), slices along the last axis"),
    "example4d": ("nibabel", "example4d.nii.gz", "first volume of (128, 96, 24, 2), slices along axis 2"),
    "functional": ("nibabel", "functional.nii", "time-averaged (17, 21, 3, 20) fMRI, slices along axis 2"),
    "retina": ("scikit-image", "retina.jpg", "1411x1411 fundus photo, green channel"),
    "microaneurysms": ("scikit-image", "microaneurysms.png", "102x102 fundus green-channel crop"),
}
# A pixel is foreground above this normalized intensity; crops need this foreground fraction and
# slices a quarter of it, so crops of air or of the black fundus border are skipped.
FOREGROUND_LEVEL = 0.1
MIN_CROP_FOREGROUND = 0.5
LESION_TRUNCATION = 3.0  # the blob is zero beyond this many standard deviations from its centre
MAX_ATTEMPTS_PER_IMAGE = 200


def _dicom_pixels(filename: str) -> np.ndarray:
    import pydicom
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file(filename))
    pixels = dataset.pixel_array.astype(np.float64)
    slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
    intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
    return pixels * slope + intercept


def _nifti_volume(filename: str) -> np.ndarray:
    import nibabel
    from nibabel.testing import data_path

    return np.asarray(nibabel.load(os.path.join(data_path, filename)).get_fdata(), dtype=np.float64)


def _raw_lesion_volume(source: str) -> np.ndarray:
    """The source as a (H, W, slices) float64 array in its native units."""
    filename = LESION_SOURCES[source][1]
    if source in ("ct_small", "mr_small"):
        return _dicom_pixels(filename)[..., None]
    if source == "anatomical":
        return _nifti_volume(filename)
    if source == "example4d":
        return _nifti_volume(filename)[..., 0]
    if source == "functional":
        return _nifti_volume(filename).mean(axis=-1)  # 20 near-identical frames: averaging cuts noise
    from skimage import io

    image = io.imread(_skimage_file(filename)).astype(np.float64)
    if image.ndim == 3:
        image = image[..., 1]  # the green channel carries the fundus contrast
    return image[..., None]


@functools.lru_cache(maxsize=None)
def load_lesion_source(source: str, max_side: int) -> tuple[tuple[np.ndarray, ...], dict]:
    """Slices of a registry source, normalized to [0, 1], read-only, at most max_side pixels wide.

    Normalization is linear per volume with clipping at its 1st and 99th percentiles, so all
    slices of a volume share one intensity scale. Slices with less than a quarter of
    MIN_CROP_FOREGROUND foreground are dropped; the info dict records what was done.
    """
    from skimage.transform import resize

    volume = _raw_lesion_volume(source)
    low, high = np.percentile(volume, [1, 99])
    normalized = np.clip((volume - low) / max(high - low, 1e-12), 0, 1)
    height, width = normalized.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    slices, kept = [], []
    for index in range(normalized.shape[-1]):
        image = normalized[..., index]
        if (image > FOREGROUND_LEVEL).mean() < MIN_CROP_FOREGROUND / 4:
            continue
        if scale < 1.0:
            shape = (max(1, round(height * scale)), max(1, round(width * scale)))
            image = np.clip(resize(image, shape, order=1, anti_aliasing=True, preserve_range=True), 0, 1)
        slices.append(_readonly(image.astype(np.float32)))
        kept.append(index)
    info = {
        "file": LESION_SOURCES[source][1],
        "package": LESION_SOURCES[source][0],
        "description": LESION_SOURCES[source][2],
        "native_shape": list(volume.shape),
        "percentile_1_99": [float(low), float(high)],
        "downscale": float(scale),
        "slices_used": kept,
    }
    return tuple(slices), info


def gaussian_blob(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    """Gaussian bump of peak 1 with half width at half maximum ``radius`` pixels, zero beyond 3 sd."""
    sigma = radius / math.sqrt(2 * math.log(2))
    rows = np.arange(shape[0])[:, None] - center[0]
    cols = np.arange(shape[1])[None, :] - center[1]
    squared = (rows**2 + cols**2) / sigma**2
    return np.where(squared <= LESION_TRUNCATION**2, np.exp(-0.5 * squared), 0.0).astype(np.float32)


def insert_lesion(crop: np.ndarray, center: tuple[float, float], radius: float, contrast: float) -> np.ndarray:
    """A copy of ``crop`` with a Gaussian lesion of the given contrast added, clipped to [0, 1]."""
    return np.clip(crop + contrast * gaussian_blob(crop.shape, center, radius), 0, 1).astype(np.float32)


def _lesion_center(rng: np.random.Generator, crop: np.ndarray, radius: float) -> tuple[int, int]:
    """A random foreground pixel at least ``radius`` from the crop border (any pixel if none)."""
    margin = min(math.ceil(radius), (min(crop.shape) - 1) // 2)
    inner = crop[margin : crop.shape[0] - margin, margin : crop.shape[1] - margin]
    candidates = np.argwhere(inner > FOREGROUND_LEVEL)
    if len(candidates) == 0:
        candidates = np.argwhere(np.ones_like(inner, dtype=bool))
    row, col = candidates[rng.integers(len(candidates))]
    return int(row) + margin, int(col) + margin


def lesion(name: str, context: ReadContext, seed: int = 0, sources: tuple | list = ("ct_small",),
           n_per_class: int = 200, crop_fraction: float = 0.6, scale_jitter: float = 1.25,
           lesion_radius: float = 0.06, lesion_contrast: float = 0.25, grid: int = 3,
           max_side: int = 256) -> RawDataset:
    """Lesion detection on real anatomy: classes ["no_lesion", "lesion"], n_per_class each.

    Each image: a source drawn uniformly, then one of its slices, then a grid cell of that
    slice; a square crop (crop_fraction x the slice's shorter side, log-uniform jitter in
    [1/scale_jitter, scale_jitter]) with its centre in that cell, redrawn until at least
    MIN_CROP_FOREGROUND of it is foreground. Positives get a Gaussian blob (half width at half
    maximum lesion_radius x crop side, peak lesion_contrast, negative = dark) centred on a
    foreground pixel. Group ``source:slice:r{row}c{col}``. Sources larger than max_side pixels
    are downscaled first (bounds memory; raise it for image sizes above ~150).
    """
    seed = _check_int(name, "seed", seed, 0)
    sources = _check_names(name, "sources", sources, list(LESION_SOURCES))
    n_per_class = _check_int(name, "n_per_class", n_per_class, 1)
    crop_fraction = _check_float(name, "crop_fraction", crop_fraction, 0.0, 1.0, low_open=True)
    scale_jitter = _check_float(name, "scale_jitter", scale_jitter, 1.0, 4.0)
    lesion_radius = _check_float(name, "lesion_radius", lesion_radius, 0.0, 0.5, low_open=True)
    lesion_contrast = _check_float(name, "lesion_contrast", lesion_contrast, -1.0, 1.0)
    grid = _check_int(name, "grid", grid, 1, 8)
    max_side = _check_int(name, "max_side", max_side, 16)

    loaded = {source: load_lesion_source(source, max_side) for source in sources}
    empty = [source for source, (slices, _) in loaded.items() if not slices]
    if empty:
        raise DatasetError(f"dataset {name!r}: option 'sources': {empty} have no slice with enough foreground")

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat([0, 1], n_per_class))
    images, groups = [], []
    per_source = {source: 0 for source in sources}
    for label in labels:
        for _ in range(MAX_ATTEMPTS_PER_IMAGE):
            source = sources[int(rng.integers(len(sources)))]
            slices, info = loaded[source]
            slice_index = int(rng.integers(len(slices)))
            image = slices[slice_index]
            height, width = image.shape
            cell = (int(rng.integers(grid)), int(rng.integers(grid)))
            side = _jittered_side(rng, crop_fraction, scale_jitter, min(height, width))
            y, x, side = _sample_crop(rng, height, width, side, cell, grid)
            crop = image[y : y + side, x : x + side]
            if (crop > FOREGROUND_LEVEL).mean() >= MIN_CROP_FOREGROUND:
                break
        else:
            raise DatasetError(
                f"dataset {name!r}: found no crop with {MIN_CROP_FOREGROUND:.0%} foreground in "
                f"{MAX_ATTEMPTS_PER_IMAGE} attempts; lower 'crop_fraction' or 'grid', or change 'sources'"
            )
        if label == 1:
            radius = lesion_radius * side
            crop = insert_lesion(crop, _lesion_center(rng, crop, radius), radius, lesion_contrast)
        else:
            crop = crop.copy()
        images.append(crop)
        groups.append(f"{source}:{info['slices_used'][slice_index]}:r{cell[0]}c{cell[1]}")
        per_source[source] += 1
    return RawDataset(
        name=name,
        images=images,
        labels=labels,
        groups=np.asarray(groups),
        classes=["no_lesion", "lesion"],
        provenance={
            "sources": {source: copy.deepcopy(info) for source, (_, info) in loaded.items()},
            "images_per_source": per_source,
            "lesion": {"profile": "gaussian", "radius": "half width at half maximum, fraction of crop side",
                       "truncation_sd": LESION_TRUNCATION, "added_then_clipped_to": [0, 1]},
            "foreground": {"level": FOREGROUND_LEVEL, "min_crop_fraction": MIN_CROP_FOREGROUND},
            "group": "source:slice:r{row}c{col}, the grid cell of the slice holding the crop centre",
        },
    )


# ----------------------------------------------------------------------------------------------
# synthetic_manifold

SMALLEST_MAX_FREQUENCY = 4


def _frequency_candidates(max_frequency: int) -> list[tuple[int, int]]:
    """Integer 2D frequencies with |f| <= max_frequency per axis, one of each +-f pair, no zero."""
    return [(fy, fx) for fy in range(-max_frequency, max_frequency + 1)
            for fx in range(-max_frequency, max_frequency + 1) if (fy, fx) > (0, 0)]


def manifold_basis(seed: int, d: int, native_size: int) -> dict[str, np.ndarray]:
    """Fourier modes of the synthetic manifold: depends only on (seed, d, native_size).

    d distinct frequencies (none the negative of another), so on the native_size grid the modes
    are orthogonal and each latent moves the image in its own 2D plane.
    """
    max_frequency = SMALLEST_MAX_FREQUENCY
    while len(_frequency_candidates(max_frequency)) < d:
        max_frequency += 1
    candidates = _frequency_candidates(max_frequency)
    rng = np.random.default_rng([seed, d, native_size, 0])
    chosen = rng.choice(len(candidates), size=d, replace=False)
    return {
        "frequencies": np.array([candidates[i] for i in chosen], dtype=np.int64),
        "phases": rng.uniform(0, 2 * np.pi, size=d),
        # Near-equal amplitudes: every latent matters about equally, so d is what is measured.
        "amplitudes": rng.uniform(0.75, 1.0, size=d),
    }


def render_manifold(latents: np.ndarray, basis: dict[str, np.ndarray], native_size: int) -> np.ndarray:
    """Images (n, size, size) in [0, 1]: 0.5 + sum_i a_i cos(2 pi f_i.(u, v) + phi_i + pi z_i) / (2 sum a).

    The affine map is fixed by the basis (sum of amplitudes bounds the sum), not per image,
    so no image is clipped and the set stays a smooth embedding of the latent cube.
    """
    coords = (np.arange(native_size) + 0.5) / native_size
    v, u = np.meshgrid(coords, coords, indexing="ij")
    frequencies = basis["frequencies"]
    angle = 2 * np.pi * (np.outer(frequencies[:, 0], v.ravel()) + np.outer(frequencies[:, 1], u.ravel()))
    angle += basis["phases"][:, None]
    shift = np.pi * np.asarray(latents, dtype=np.float64)
    amplitudes = basis["amplitudes"]
    # cos(angle + shift) = cos(angle) cos(shift) - sin(angle) sin(shift): two matrix products.
    total = (amplitudes * np.cos(shift)) @ np.cos(angle) - (amplitudes * np.sin(shift)) @ np.sin(angle)
    images = 0.5 + total / (2 * amplitudes.sum())
    return np.clip(images, 0, 1).reshape(len(latents), native_size, native_size).astype(np.float32)


def synthetic_manifold(name: str, context: ReadContext, d: int, seed: int = 0, n_per_class: int = 200,
                       native_size: int = 32, margin: float = 0.1) -> RawDataset:
    """Images on a d-dimensional manifold; label 1[z_1 > 0.5] with a margin around the boundary.

    Latents z ~ Uniform[0, 1]^d, except z_1, which avoids (0.5 - margin/2, 0.5 + margin/2):
    a wider margin separates the classes more (smaller label sharpness K_F). Ground truth in
    provenance: d_true, margin, the basis.
    """
    seed = _check_int(name, "seed", seed, 0)
    d = _check_int(name, "d", d, 1)
    n_per_class = _check_int(name, "n_per_class", n_per_class, 1)
    native_size = _check_int(name, "native_size", native_size, 8)
    margin = _check_float(name, "margin", margin, 0.0, 1.0, high_open=True)
    if len(_frequency_candidates(native_size // 2 - 1)) < d:
        raise DatasetError(f"dataset {name!r}: option 'd'={d} needs more distinct frequencies than a "
                           f"native_size={native_size} grid resolves; raise 'native_size'")

    basis = manifold_basis(seed, d, native_size)
    rng = np.random.default_rng([seed, d, native_size, 1])
    labels = rng.permutation(np.repeat([0, 1], n_per_class))
    latents = rng.uniform(0, 1, size=(len(labels), d))
    half_width = (1 - margin) / 2  # each class's z_1 interval has this length
    latents[:, 0] = np.where(labels == 1, 1 - half_width, 0.0) + half_width * rng.uniform(0, 1, size=len(labels))
    images = render_manifold(latents, basis, native_size)
    return RawDataset(
        name=name,
        images=list(images),
        labels=labels,
        groups=np.asarray([f"synthetic:{index}" for index in range(len(labels))]),
        classes=["z1_low", "z1_high"],
        provenance={
            "d_true": d,
            "margin": margin,
            "label": "1 if z_1 > 0.5; z_1 avoids (0.5 - margin/2, 0.5 + margin/2)",
            "image": "0.5 + sum_i a_i cos(2 pi f_i.(u, v) + phi_i + pi z_i) / (2 sum_i a_i), (u, v) in [0, 1)^2",
            "basis": {key: value.tolist() for key, value in basis.items()},
            "group": "one per image",
        },
    )


# ----------------------------------------------------------------------------------------------
# low_rank


def foreground_square(native_size: int, foreground_fraction: float) -> tuple[int, int]:
    """(start, side) of the centred square foreground covering about ``foreground_fraction`` of
    a native_size x native_size image (side = round(native_size * sqrt(fraction)), >= 1)."""
    side = min(native_size, max(1, int(round(native_size * math.sqrt(foreground_fraction)))))
    return (native_size - side) // 2, side


def low_rank_basis(seed: int, rank: int, pixels: int) -> np.ndarray:
    """(pixels, rank) orthonormal patterns: QR of a Gaussian matrix; depends only on (seed, rank, pixels)."""
    rng = np.random.default_rng([seed, rank, pixels, 2])
    basis, _ = np.linalg.qr(rng.standard_normal((pixels, rank)))
    return basis


def low_rank(name: str, context: ReadContext, seed: int = 0, rank: int = 4, n_per_class: int = 200,
             native_size: int = 32, foreground_fraction: float = 0.25, margin: float = 0.1) -> RawDataset:
    """Zhang et al. (2025)'s data model: a rank-``rank`` signal on a foreground region, the rest
    background; label 1[z_1 > 0] with a margin.

    Image: 0 on the background; on a centred square covering about ``foreground_fraction`` of
    the pixels, 0.5 + a * sum_i z_i B_i with B_1..B_rank orthonormal patterns on the square
    (``low_rank_basis``) and a = 0.5 / max_pixel sum_i |B_i| (so values stay in [0, 1] for any
    latent, never clipped). Latents z ~ Uniform[-1, 1]^rank, except z_1, which avoids
    (-margin, margin) (the same fraction of its range as synthetic_manifold's margin). The
    centred data matrix thus has rank exactly ``rank``; energy_rank at energy e recovers it
    while each direction holds more than 1 - e of the energy (rank below about 1 / (1 - e)).
    ``backgrounds`` holds the explicit mask (True off the square), which the cache stores.
    """
    seed = _check_int(name, "seed", seed, 0)
    rank = _check_int(name, "rank", rank, 1)
    n_per_class = _check_int(name, "n_per_class", n_per_class, 1)
    native_size = _check_int(name, "native_size", native_size, 8)
    foreground_fraction = _check_float(name, "foreground_fraction", foreground_fraction, 0.0, 1.0, low_open=True)
    margin = _check_float(name, "margin", margin, 0.0, 1.0, high_open=True)
    start, side = foreground_square(native_size, foreground_fraction)
    if side * side < rank:
        raise DatasetError(f"dataset {name!r}: option 'rank'={rank} needs at least {rank} foreground pixels, but "
                           f"native_size={native_size} and foreground_fraction={foreground_fraction} give "
                           f"{side}x{side}; raise 'native_size' or 'foreground_fraction'")
    if 2 * n_per_class <= rank:
        raise DatasetError(f"dataset {name!r}: option 'n_per_class'={n_per_class} gives {2 * n_per_class} images, "
                           f"too few for a centred rank of {rank}; need 2 * n_per_class > rank")

    basis = low_rank_basis(seed, rank, side * side)
    amplitude = 0.5 / float(np.abs(basis).sum(axis=1).max())
    rng = np.random.default_rng([seed, rank, native_size, 3])
    labels = rng.permutation(np.repeat([0, 1], n_per_class))
    latents = rng.uniform(-1, 1, size=(len(labels), rank))
    latents[:, 0] = np.where(labels == 1, 1.0, -1.0) * (margin + (1 - margin) * rng.uniform(0, 1, size=len(labels)))
    images = np.zeros((len(labels), native_size, native_size), dtype=np.float64)
    signal = (0.5 + amplitude * latents @ basis.T).reshape(-1, side, side)
    images[:, start : start + side, start : start + side] = signal
    background = np.ones((native_size, native_size), dtype=bool)
    background[start : start + side, start : start + side] = False
    background = _readonly(background)
    return RawDataset(
        name=name,
        images=list(np.clip(images, 0, 1).astype(np.float32)),  # the clip only absorbs round-off
        labels=labels,
        groups=np.asarray([f"synthetic:{index}" for index in range(len(labels))]),
        classes=["z1_low", "z1_high"],
        backgrounds=[background] * len(labels),
        provenance={
            "rank_true": rank,
            "d_true": rank,
            "margin": margin,
            "description": "Zhang et al. (2025) data model: a rank-r signal on a centred foreground square, "
                           "zero background; background noise is added later (background.noisy_images)",
            "label": "1 if z_1 > 0; z_1 avoids (-margin, margin)",
            "image": "0 off the foreground; 0.5 + a * sum_i z_i B_i on it, B orthonormal, "
                     "a = 0.5 / max_pixel sum_i |B_i|, z ~ U[-1, 1]^rank",
            "foreground": {"start": start, "side": side, "fraction": side * side / native_size**2},
            "amplitude": amplitude,
            "background": "explicit mask, True off the foreground square",
            "group": "one per image",
        },
    )
