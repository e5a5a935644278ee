"""Background masks and deterministic background noise (intrinsic.background)."""

import numpy as np
import pytest

from intrinsic.background import (
    add_background_noise,
    background_masks,
    level_key,
    noisy_images,
    threshold_background,
)
from intrinsic.cache import RawDataset, load_cache, write_cache


def digit_like(n=6, channels=1, size=12, seed=0):
    """uint8 images: zero background, a bright square (values 100..255) at a random place."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, channels, size, size), dtype=np.uint8)
    for image in images:
        y, x = rng.integers(0, size - 4, size=2)
        image[:, y : y + 4, x : x + 4] = rng.integers(100, 256, size=(channels, 4, 4))
    return images


def test_only_background_pixels_change():
    images = digit_like(channels=3)
    background = threshold_background(images)
    noisy = add_background_noise(images, background, sigma=0.3, seed=1, image_ids=np.arange(len(images)))
    assert noisy.dtype == np.uint8 and noisy.shape == images.shape
    foreground = np.broadcast_to(~background[:, None], images.shape)
    np.testing.assert_array_equal(noisy[foreground], images[foreground])
    changed = np.any(noisy != images, axis=1)
    assert not changed[~background].any()
    assert changed[background].mean() > 0.3  # a zero background: about half the noise is clipped away
    assert images.max() > 0 and np.all(images[~foreground] == 0)  # input untouched


def test_noise_is_a_function_of_seed_image_id_and_sigma_only():
    images = digit_like(n=8)
    background = threshold_background(images)
    ids = np.array([3, 17, 4, 99, 0, 5, 6, 123])
    first = add_background_noise(images, background, 0.2, seed=7, image_ids=ids)
    np.testing.assert_array_equal(first, add_background_noise(images, background, 0.2, seed=7, image_ids=ids))
    # Another order and a subset of the same images: the same noise per image.
    order = np.array([5, 1, 7, 2])
    subset = add_background_noise(images[order], background[order], 0.2, seed=7, image_ids=ids[order])
    np.testing.assert_array_equal(subset, first[order])
    # Another seed, sigma or image id: other noise.
    assert not np.array_equal(add_background_noise(images, background, 0.2, seed=8, image_ids=ids), first)
    assert not np.array_equal(add_background_noise(images, background, 0.2000001, seed=7, image_ids=ids), first)
    shifted = add_background_noise(images, background, 0.2, seed=7, image_ids=ids + 1000)
    assert all(not np.array_equal(a, b) for a, b in zip(shifted, first))
    assert level_key(0.2) == 200_000_000 and level_key(0.2000001) != level_key(0.2)


def test_noise_of_a_pixel_does_not_depend_on_the_mask_elsewhere():
    images = np.full((1, 1, 8, 8), 128, dtype=np.uint8)
    everywhere = np.ones((1, 8, 8), dtype=bool)
    left_half = everywhere.copy()
    left_half[:, :, 4:] = False
    full = add_background_noise(images, everywhere, 0.1, 0, [2])
    half = add_background_noise(images, left_half, 0.1, 0, [2])
    np.testing.assert_array_equal(half[..., :4], full[..., :4])
    assert np.all(half[..., 4:] == 128)


def test_sigma_zero_is_an_identical_copy_and_bad_sigma_is_named():
    images = digit_like()
    background = threshold_background(images)
    same = add_background_noise(images, background, 0.0, seed=0, image_ids=np.arange(len(images)))
    np.testing.assert_array_equal(same, images)
    assert same is not images and not np.shares_memory(same, images)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            add_background_noise(images, background, bad, seed=0, image_ids=np.arange(len(images)))
    with pytest.raises(ValueError, match="'0.1'"):
        add_background_noise(images, background, "0.1", seed=0, image_ids=np.arange(len(images)))
    with pytest.raises(ValueError, match="image_ids"):
        add_background_noise(images, background, 0.1, seed=0, image_ids=np.arange(len(images) - 1))
    with pytest.raises(ValueError, match="background mask"):
        add_background_noise(images, background[:, :-1], 0.1, seed=0, image_ids=np.arange(len(images)))


def test_clipping_to_the_unit_range():
    images = np.zeros((2, 1, 16, 16), dtype=np.uint8)
    images[1] = 255
    mask = np.ones((2, 16, 16), dtype=bool)
    noisy = add_background_noise(images, mask, sigma=5.0, seed=0, image_ids=[0, 1])
    # A huge sigma: almost every pixel ends clipped at 0 or 255 (P(0 < 5 z < 1) = 8 %), about
    # half each (zero mean before clipping).
    assert np.mean((noisy == 0) | (noisy == 255)) > 0.85
    assert 0.3 < np.mean(noisy[0] == 255) < 0.7 and 0.3 < np.mean(noisy[1] == 0) < 0.7
    # On a zero background, negative noise clips to 0: never below.
    small = add_background_noise(images[:1], mask[:1], sigma=0.05, seed=0, image_ids=[0])
    assert small.min() == 0 and 0.4 < np.mean(small == 0) < 0.6


def test_empirical_noise_level_matches_sigma_on_mid_grey():
    sigma = 0.02  # 5.1 grey levels; 128 +- 6 sd stays inside 0..255, so nothing is clipped
    images = np.full((100, 3, 32, 32), 128, dtype=np.uint8)
    mask = np.ones((100, 32, 32), dtype=bool)
    noisy = add_background_noise(images, mask, sigma, seed=3, image_ids=np.arange(100))
    added = (noisy.astype(np.float64) - 128) / 255
    n = added.size  # 307,200 samples: the sd of the estimate is sigma / sqrt(2 n) = 0.13 %
    rounding = 1 / (12 * 255**2)  # variance of rounding to the uint8 grid (Sheppard)
    assert np.sqrt(added.var() - rounding) == pytest.approx(sigma, rel=0.01)
    assert abs(added.mean()) < 4 * sigma / np.sqrt(n)
    # Channels get independent noise.
    assert abs(np.corrcoef(added[:, 0].ravel(), added[:, 1].ravel())[0, 1]) < 0.01


def test_threshold_semantics_with_rgb():
    image = np.zeros((1, 3, 2, 3), dtype=np.uint8)
    image[0, :, 0, 0] = (0, 0, 0)        # black: background
    image[0, :, 0, 1] = (5, 0, 0)        # one channel above 0: foreground at threshold 0
    image[0, :, 0, 2] = (10, 10, 10)     # at the threshold 10: background at 10
    image[0, :, 1, 0] = (10, 11, 10)     # one channel above 10: foreground at 10
    image[0, :, 1, 1] = (255, 255, 255)
    image[0, :, 1, 2] = (0, 0, 3)
    assert threshold_background(image, 0).tolist() == [[[True, False, False], [False, False, False]]]
    assert threshold_background(image, 10).tolist() == [[[True, True, True], [False, False, True]]]
    for bad in (-1, 256, 0.5, True):
        with pytest.raises(ValueError, match="threshold"):
            threshold_background(image, bad)


@pytest.fixture()
def caches(tmp_path):
    """The same images written twice: without and with explicit masks (the masks are not the
    zero pixels, so one can tell which was used)."""
    images = digit_like(n=10, size=12, seed=4)
    raw_images = [image[0].astype(np.float64) / 255 for image in images]
    masks = [np.zeros((12, 12), dtype=bool) for _ in images]
    for mask in masks:
        mask[:, :3] = True  # explicit: the three left columns only
    labels, groups = np.arange(10) % 2, np.arange(10)
    write_cache(tmp_path / "plain", RawDataset("plain", raw_images, labels, groups, ["a", "b"]), 12, 1, "natural")
    write_cache(tmp_path / "masked", RawDataset("masked", raw_images, labels, groups, ["a", "b"], backgrounds=masks),
                12, 1, "natural")
    return load_cache(tmp_path / "plain"), load_cache(tmp_path / "masked"), images


def test_background_masks_from_the_cache(caches):
    plain, masked, images = caches
    index = np.array([7, 2, 5])
    np.testing.assert_array_equal(background_masks(plain, index), threshold_background(images[index]))
    np.testing.assert_array_equal(background_masks(plain, index, threshold=150),
                                  threshold_background(images[index], 150))
    explicit = background_masks(masked, index, threshold=150)  # the stored masks win over a threshold
    assert explicit.shape == (3, 12, 12) and explicit[:, :, :3].all() and not explicit[:, :, 3:].any()


def test_noisy_images_of_a_split(caches):
    plain, masked, images = caches
    index = np.array([1, 4, 6, 9])
    np.testing.assert_array_equal(noisy_images(plain, index, 0.0, seed=0), plain.read_images(index))
    noisy = noisy_images(plain, index, 0.3, seed=2)
    expected = add_background_noise(images[index], threshold_background(images[index]), 0.3, 2, index)
    np.testing.assert_array_equal(noisy, expected)
    # An image gets the same noise in every split that holds it, whatever the order.
    other = noisy_images(plain, np.array([9, 0, 4]), 0.3, seed=2)
    np.testing.assert_array_equal(other[0], noisy[3])
    np.testing.assert_array_equal(other[2], noisy[1])
    # With explicit masks: noise only in the three left columns.
    noisy_masked = noisy_images(masked, index, 0.3, seed=2)
    np.testing.assert_array_equal(noisy_masked[..., 3:], images[index][..., 3:])
    assert np.any(noisy_masked[..., :3] != images[index][..., :3])
    with pytest.raises(ValueError, match="threshold"):
        noisy_images(plain, index, 0.0, seed=0, threshold=-1)
