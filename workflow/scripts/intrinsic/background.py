"""Background masks and deterministic background noise (the noise axis of the grid).

Zhang et al. (2025), "Gradient Descent Robustly Learns the Intrinsic Dimension of Data in
Training CNNs": i.i.d. Gaussian noise of level sigma (on the [0, 1] intensity scale) is added to
the background pixels of every image, the foreground left as it is; the data's rank and d_data
grow with sigma while a CNN's learned rank should not.

The background of an image is the cache's explicit mask when it stores one (background.npy, from
a source such as ``embedded.low_rank`` or the NIfTI reader), else the pixels whose every channel
is at or below a threshold (e.g. the zero pixels of MNIST).

Noise is a pure function of (seed, image id, sigma): image i's noise is drawn from
``np.random.default_rng([seed, image_id, round(sigma * 1e9)])`` over its whole (C, H, W) grid,
then applied to its background pixels. So an image gets the same noise in every split, batch
and order it appears in, and a pixel's noise does not depend on the mask of any other pixel.
"""

from __future__ import annotations

import math

import numpy as np

from .cache import DatasetCache, quantize

LEVEL_SCALE = 1e9  # sigma -> integer key of its random stream (sigma resolved to 1e-9)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images of shape (n, C, H, W), got {images.dtype} {images.shape}")
    return images


def check_sigma(sigma) -> float:
    """sigma as a float; negative, non-finite or non-numeric is a ValueError naming it."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise ValueError(f"background noise sigma must be a number, got {sigma!r}")
    value = float(sigma)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"background noise sigma must be finite and >= 0, got {sigma!r}")
    return value


def level_key(sigma: float) -> int:
    """The integer that identifies noise level ``sigma`` in the random stream: round(sigma * 1e9)."""
    return int(round(check_sigma(sigma) * LEVEL_SCALE))


def check_threshold(threshold) -> int:
    """The background threshold as an int in 0..255 (uint8 units); anything else is a ValueError."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or not 0 <= threshold <= 255:
        raise ValueError(f"background threshold must be an integer in 0..255 (uint8 units), got {threshold!r}")
    return int(threshold)


def threshold_background(images_uint8: np.ndarray, threshold: int = 0) -> np.ndarray:
    """bool (n, H, W): True where every channel of a pixel is <= ``threshold`` (uint8 units)."""
    images = _check_images(images_uint8)
    return np.all(images <= check_threshold(threshold), axis=1)


def add_background_noise(images_uint8: np.ndarray, background: np.ndarray, sigma: float, seed: int,
                         image_ids) -> np.ndarray:
    """Images with N(0, sigma^2) noise (on the [0, 1] scale, each channel independently) added
    to their background pixels, clipped to [0, 1] and rounded back to uint8 (``cache.quantize``).

    ``background``: bool (n, H, W), True = background; foreground pixels are never changed.
    ``image_ids``: (n,) non-negative integers naming each image (its cache index): image i's
    noise depends only on (seed, image_ids[i], sigma). sigma == 0 returns an identical copy.
    """
    images = _check_images(images_uint8)
    sigma = check_sigma(sigma)
    background = np.asarray(background)
    n, channels, height, width = images.shape
    if background.dtype != np.bool_ or background.shape != (n, height, width):
        raise ValueError(f"background mask must be bool of shape {(n, height, width)}, "
                         f"got {background.dtype} {background.shape}")
    ids = np.asarray(image_ids)
    if ids.shape != (n,) or (n and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0)):
        raise ValueError(f"image_ids must be {n} non-negative integers, got {ids.dtype} {ids.shape}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"background noise seed must be an integer >= 0, got {seed!r}")
    out = images.copy()
    if sigma == 0:
        return out
    key = level_key(sigma)
    for row, (image, mask, image_id) in enumerate(zip(images, background, ids)):
        if not mask.any():
            continue
        rng = np.random.default_rng([int(seed), int(image_id), key])
        noise = rng.standard_normal((channels, height, width))  # the whole grid: independent of the mask
        noisy = quantize(np.clip(image / 255.0 + sigma * noise, 0.0, 1.0))
        out[row] = np.where(mask[None], noisy, image)
    return out


def background_masks(cache: DatasetCache, index, threshold: int = 0) -> np.ndarray:
    """bool (n, H, W) backgrounds of the cache images at ``index``: the stored explicit masks
    when the cache has them (``threshold`` is then unused), else ``threshold_background``."""
    masks = cache.read_background(index)
    if masks is not None:
        return masks
    return threshold_background(cache.read_images(index), threshold)


def noisy_images(cache: DatasetCache, index, sigma: float, seed: int, threshold: int = 0) -> np.ndarray:
    """The cache images at ``index`` (uint8 (n, C, H, W), in that order) with background noise
    of level ``sigma``; image ids are the cache indices, so an image gets the same noise in every
    split that holds it. sigma == 0 gives exactly ``cache.read_images(index)``. This is the one
    function the workflow uses to get the images of a split at a noise level."""
    sigma = check_sigma(sigma)
    threshold = check_threshold(threshold)
    index = np.asarray(index, dtype=np.int64)
    images = cache.read_images(index)
    if sigma == 0:
        return images
    masks = cache.read_background(index)
    if masks is None:
        masks = threshold_background(images, threshold)
    return add_background_noise(images, masks, sigma, seed, index)
