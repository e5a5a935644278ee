"""Tests of the embedded dataset generators (intrinsic.sources.embedded, through load_source)."""

import json

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from intrinsic.cache import DatasetError, load_cache, prepare, write_cache
from intrinsic.sources import SOURCES, embedded, load_source
from intrinsic.sources.embedded import crop_cell, gaussian_blob, insert_lesion

# The embedded source types: those whose generator lives in intrinsic.sources.embedded.
GENERATORS = [kind for kind, source_type in SOURCES.items() if source_type.read.__module__ == embedded.__name__]


def generate(name: str, kind: str, **options):
    """Dataset ``name`` from generator ``kind`` through the one entry point of every source."""
    return load_source(name, {"type": kind, **options})

# Small but representative options per kind, so the whole file stays fast.
SMALL_OPTIONS = {
    "sklearn_digits": {},
    "photo_patches": {"n_per_class": 40},
    "lfw_faces": {},
    "lesion": {"n_per_class": 40, "sources": ["ct_small", "mr_small", "anatomical", "example4d", "retina"]},
    "synthetic_manifold": {"d": 3, "n_per_class": 40},
    "low_rank": {"rank": 3, "n_per_class": 40},
}
# Fixed data sets: the seed has nothing to randomize.
SEED_INDEPENDENT = {"sklearn_digits", "lfw_faces"}


def same_images(a, b) -> bool:
    return len(a.images) == len(b.images) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a.images, b.images)
    )


def twonn_dimension(X: np.ndarray) -> float:
    """Reference TwoNN (Facco et al. 2017), maximum-likelihood form: d = (n - 1) / sum(log r2/r1)."""
    distances, _ = NearestNeighbors(n_neighbors=3).fit(X).kneighbors(X)
    ratios = distances[:, 2] / distances[:, 1]  # column 0 is the point itself
    return (len(X) - 1) / np.log(ratios).sum()


def test_every_kind_has_small_options():
    assert set(SMALL_OPTIONS) == set(GENERATORS)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generator_is_deterministic(kind):
    first = generate("ds", kind, seed=3, **SMALL_OPTIONS[kind])
    again = generate("ds", kind, seed=3, **SMALL_OPTIONS[kind])
    other = generate("ds", kind, seed=4, **SMALL_OPTIONS[kind])
    assert same_images(first, again)
    assert np.array_equal(first.labels, again.labels) and np.array_equal(first.groups, again.groups)
    assert first.provenance == again.provenance
    if kind in SEED_INDEPENDENT:
        assert same_images(first, other)
    else:
        assert not same_images(first, other)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_images_labels_groups_are_well_formed(kind):
    raw = generate("ds", kind, seed=0, **SMALL_OPTIONS[kind])
    assert len(raw.images) == len(raw.labels) == len(raw.groups) > 0
    for image in raw.images:
        assert image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)
        assert min(image.shape[:2]) >= 5
        assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert all(group for group in raw.groups)
    assert raw.provenance["type"] == kind
    json.dumps(raw.provenance, allow_nan=False)  # meta.json must hold it
    # Every image goes through the cache's converter at the default size.
    images, _, _ = prepare(raw, size=32, channels=1)
    assert images.shape == (len(raw.images), 1, 32, 32)


@pytest.mark.parametrize(
    "kind, options, classes, per_class",
    [
        ("photo_patches", {"n_per_class": 40}, list(embedded.DEFAULT_PHOTOS), 40),
        ("lfw_faces", {}, ["non_face", "face"], 200),
        ("lfw_faces", {"hflip": False}, ["non_face", "face"], 100),
        ("lesion", {"n_per_class": 40}, ["no_lesion", "lesion"], 40),
        ("synthetic_manifold", {"d": 2, "n_per_class": 40}, ["z1_low", "z1_high"], 40),
        ("low_rank", {"rank": 2, "n_per_class": 30}, ["z1_low", "z1_high"], 30),
    ],
)
def test_exact_class_counts(kind, options, classes, per_class):
    raw = generate("ds", kind, **options)
    assert raw.classes == classes
    assert np.bincount(raw.labels, minlength=len(classes)).tolist() == [per_class] * len(classes)


def test_digits_classes_and_subset():
    raw = generate("digits", "sklearn_digits")
    assert raw.classes == [str(digit) for digit in range(10)]
    assert len(raw.images) == 1797 and raw.images[0].shape == (8, 8)
    assert len(set(raw.groups)) == len(raw.groups)
    subset = generate("digits", "sklearn_digits", classes=["7", "1"])
    assert subset.classes == ["7", "1"]
    full_labels = raw.labels[np.isin(raw.labels, [7, 1])]
    assert np.array_equal(subset.labels, np.where(full_labels == 7, 0, 1))


def test_lfw_flips_share_groups_with_originals():
    raw = generate("faces", "lfw_faces", hflip=True)
    plain = generate("faces", "lfw_faces", hflip=False)
    assert len(raw.images) == 2 * len(plain.images) == 400
    for index, original in enumerate(plain.images):
        positions = np.flatnonzero(raw.groups == plain.groups[index])
        assert len(positions) == 2
        first, second = (raw.images[p] for p in positions)
        assert np.array_equal(first, original)
        assert np.array_equal(second, original[:, ::-1])
        assert raw.labels[positions].tolist() == [plain.labels[index]] * 2
    # The first 100 images of the scikit-image file are the faces.
    assert plain.labels[:100].tolist() == [1] * 100 and plain.labels[100:].tolist() == [0] * 100


def locate(patch: np.ndarray, picture: np.ndarray) -> list[tuple[int, int]]:
    """Every (row, col) where ``patch`` occurs exactly in ``picture``."""
    side = patch.shape[0]
    anchor = patch[0, 0]
    same_pixel = np.all(picture == anchor, axis=-1) if picture.ndim == 3 else picture == anchor
    return [
        (int(y), int(x))
        for y, x in np.argwhere(same_pixel)
        if y + side <= picture.shape[0] and x + side <= picture.shape[1]
        and np.array_equal(picture[y : y + side, x : x + side], patch)
    ]


def test_photo_patch_groups_are_the_cells_of_patch_centres():
    grid = 4
    raw = generate("photos", "photo_patches", seed=1, n_per_class=30, grid=grid)
    rng = np.random.default_rng(0)
    for index in rng.choice(len(raw.images), size=25, replace=False):
        patch, photo = raw.images[index], raw.classes[raw.labels[index]]
        picture = embedded.load_photo(photo)
        assert patch.shape[0] == patch.shape[1] and patch.shape[2:] == picture.shape[2:]
        cells = {crop_cell(y, x, patch.shape[0], *picture.shape[:2], grid) for y, x in locate(patch, picture)}
        assert cells, f"patch {index} not found in {photo}"
        assert raw.groups[index] in {f"{photo}:r{row}c{col}" for row, col in cells}
    # Cell-first sampling spreads patches over all cells of every photo (200 patches, 16 cells).
    default = generate("photos", "photo_patches", seed=1)
    assert len(set(default.groups)) == grid * grid * len(default.classes)


def test_crop_cell_matches_the_crop_centre():
    # 100 x 60 image, 3 x 3 grid: cell borders at rows 33.3 / 66.7 and columns 20 / 40.
    assert crop_cell(0, 0, 10, 100, 60, 3) == (0, 0)
    assert crop_cell(60, 45, 10, 100, 60, 3) == (1, 2)  # centre (65, 50)
    assert crop_cell(62, 15, 10, 100, 60, 3) == (2, 1)  # centre (67, 20): on the column border
    for side in (5, 20, 40):
        for cell in range(3):
            lo, hi = embedded._start_range(100, side, cell, 3)
            for start in range(lo, hi + 1):
                assert crop_cell(start, 0, side, 100, 60, 3)[0] == cell
            assert lo == 0 or crop_cell(lo - 1, 0, side, 100, 60, 3)[0] != cell
            assert hi == 100 - side or crop_cell(hi + 1, 0, side, 100, 60, 3)[0] != cell


def test_inserted_lesion_changes_only_a_small_disc():
    crop = np.full((60, 60), 0.4, dtype=np.float32)
    radius, center = 4.0, (20, 35)
    lesioned = insert_lesion(crop, center, radius, contrast=0.25)
    changed = np.argwhere(lesioned != crop)
    sigma = radius / np.sqrt(2 * np.log(2))
    distances = np.hypot(changed[:, 0] - center[0], changed[:, 1] - center[1])
    assert distances.max() <= embedded.LESION_TRUNCATION * sigma
    assert lesioned[center] == pytest.approx(0.65)
    # Half maximum at the radius, by definition of lesion_radius.
    assert gaussian_blob((60, 60), (20.0, 35.0), radius)[20, 39] == pytest.approx(0.5, abs=1e-6)
    # Dark lesions and clipping at the ends of [0, 1].
    assert insert_lesion(crop, center, radius, contrast=-0.6)[center] == 0.0
    assert insert_lesion(crop, center, radius, contrast=0.9)[center] == 1.0
    assert np.array_equal(crop, np.full((60, 60), 0.4, dtype=np.float32))  # input untouched


def test_lesion_crops_come_from_the_slice_and_differ_only_locally():
    raw = generate("ct", "lesion", seed=2, n_per_class=6, sources=["ct_small"], lesion_radius=0.06)
    (slice_image,), _ = embedded.load_lesion_source("ct_small", 256)
    assert set(raw.provenance["images_per_source"]) == {"ct_small"}
    for image, label, group in zip(raw.images, raw.labels, raw.groups):
        side = image.shape[0]
        windows = np.lib.stride_tricks.sliding_window_view(slice_image, (side, side))
        agreement = (windows == image).mean(axis=(2, 3))
        y, x = np.unravel_index(np.argmax(agreement), agreement.shape)
        assert group == "ct_small:0:r{}c{}".format(*crop_cell(y, x, side, *slice_image.shape, 3))
        changed = np.argwhere(windows[y, x] != image)
        if label == 0:
            assert len(changed) == 0
        else:
            sigma = 0.06 * side / np.sqrt(2 * np.log(2))
            assert len(changed) > 0
            extent = changed.max(axis=0) - changed.min(axis=0)
            assert extent.max() <= 2 * embedded.LESION_TRUNCATION * sigma + 1


def test_lesion_groups_and_provenance():
    raw = generate("mr", "lesion", seed=0, n_per_class=50, sources=["mr_small", "anatomical"], grid=3)
    sources = {group.split(":")[0] for group in raw.groups}
    assert sources == {"mr_small", "anatomical"}
    single_slice_cells = {group for group in raw.groups if group.startswith("mr_small:")}
    assert len(single_slice_cells) > 1  # a one-slice source still gives several groups
    assert raw.provenance["options"]["lesion_contrast"] == 0.25
    assert raw.provenance["sources"]["anatomical"]["file"] == "anatomical.nii"


def test_synthetic_basis_does_not_depend_on_sample_size():
    small = generate("syn", "synthetic_manifold", seed=5, d=6, n_per_class=10)
    large = generate("syn", "synthetic_manifold", seed=5, d=6, n_per_class=300)
    assert small.provenance["basis"] == large.provenance["basis"]
    assert small.provenance["d_true"] == 6
    assert generate("syn", "synthetic_manifold", seed=6, d=6).provenance["basis"] != small.provenance["basis"]


@pytest.mark.parametrize("d", [2, 4])
def test_synthetic_intrinsic_dimension_is_recovered(d):
    # Measured TwoNN (MLE) on the uint8 cache, 32x32, n_per_class=500, seeds 0 / 1 / 2:
    #   d=2: 2.15 / 2.19 / 2.10 (float images before quantization: 1.97 / 2.03 / 1.90)
    #   d=4: 3.83 / 3.80 / 3.61
    # Tolerance: 15% of d_true (0.3 at d=2, 0.6 at d=4).
    raw = generate("syn", "synthetic_manifold", seed=0, d=d, n_per_class=500)
    images, _, _ = prepare(raw, size=32, channels=1)
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    estimate = twonn_dimension(X)
    assert abs(estimate - d) <= 0.15 * d, f"TwoNN estimate {estimate:.2f} for d_true={d}"


def test_synthetic_8bit_quantization_keeps_images_distinct_at_d32():
    raw = generate("syn", "synthetic_manifold", seed=0, d=32, n_per_class=100)
    images, _, _ = prepare(raw, size=32, channels=1)
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    distances, _ = NearestNeighbors(n_neighbors=2).fit(X).kneighbors(X)
    quantization_noise = np.sqrt(X.shape[1] / 12) / 255  # norm of a uniform rounding error
    assert distances[:, 1].min() > 10 * quantization_noise


def min_cross_class_distance(raw) -> float:
    X = np.stack(raw.images).reshape(len(raw.images), -1).astype(np.float64)
    low, high = X[raw.labels == 0], X[raw.labels == 1]
    distances, _ = NearestNeighbors(n_neighbors=1).fit(high).kneighbors(low)
    return float(distances.min())


def test_larger_margin_separates_the_classes_more():
    narrow = generate("syn", "synthetic_manifold", seed=0, d=2, n_per_class=200, margin=0.0)
    wide = generate("syn", "synthetic_manifold", seed=0, d=2, n_per_class=200, margin=0.4)
    z1_gap_images = min_cross_class_distance(wide)
    assert z1_gap_images > 3 * min_cross_class_distance(narrow)
    assert wide.provenance["margin"] == 0.4


@pytest.mark.parametrize(
    "kind, options, mentions",
    [
        ("no_such_kind", {}, ["valid types", "sklearn_digits", "synthetic_manifold"]),
        ("photo_patches", {"n_per_klass": 3}, ["n_per_klass", "valid options"]),
        ("photo_patches", {"photos": ["astronaut", "mona_lisa"]}, ["photos", "mona_lisa"]),
        ("photo_patches", {"n_per_class": 0}, ["n_per_class"]),
        ("photo_patches", {"patch_fraction": "big"}, ["patch_fraction"]),
        ("lfw_faces", {"hflip": "yes"}, ["hflip"]),
        ("lesion", {"lesion_contrast": 2.0}, ["lesion_contrast"]),
        ("lesion", {"sources": "ct_small"}, ["sources"]),
        ("synthetic_manifold", {}, ["'d'"]),
        ("synthetic_manifold", {"d": 0}, ["'d'"]),
        ("synthetic_manifold", {"d": 2, "margin": 1.0}, ["margin"]),
        ("sklearn_digits", {"seed": -1}, ["seed"]),
        ("low_rank", {"rank": 0}, ["'rank'"]),
        ("low_rank", {"rank": 2.5}, ["'rank'", "integer"]),
        ("low_rank", {"foreground_fraction": 0.0}, ["foreground_fraction"]),
        ("low_rank", {"foreground_fraction": 1.5}, ["foreground_fraction"]),
        ("low_rank", {"margin": 1.0}, ["margin"]),
        ("low_rank", {"native_size": 4}, ["native_size"]),
        ("low_rank", {"rank": 80, "native_size": 8}, ["'rank'=80", "4x4", "native_size"]),
        ("low_rank", {"rank": 10, "n_per_class": 5}, ["n_per_class", "2 * n_per_class > rank"]),
    ],
)
def test_bad_kind_or_option_names_the_dataset(kind, options, mentions):
    with pytest.raises(DatasetError) as error:
        generate("my_dataset", kind, **options)
    message = str(error.value)
    assert "my_dataset" in message
    for word in mentions:
        assert word in message


# ----------------------------------------------------------------------------------------------
# low_rank: a rank-r signal on a foreground square, zero background (Zhang et al. 2025)


@pytest.mark.parametrize("rank", [1, 4, 12])
def test_low_rank_images_have_exactly_the_rank(rank):
    from intrinsic.rank import energy_rank, singular_values

    raw = generate("lr", "low_rank", seed=0, rank=rank, n_per_class=100)
    X = np.stack(raw.images).astype(np.float64)
    assert X.shape == (200, 32, 32) and X.min() >= 0 and X.max() <= 1
    assert energy_rank(X, 0.99) == rank
    values = singular_values(X)
    assert values[rank] < 1e-5 * values[0]  # float32 round-off only beyond the rank
    assert raw.provenance["rank_true"] == raw.provenance["d_true"] == rank
    assert raw.provenance["options"]["rank"] == rank


def test_low_rank_background_is_exactly_zero_and_is_the_returned_mask():
    raw = generate("lr", "low_rank", seed=1, rank=4, n_per_class=50, native_size=20, foreground_fraction=0.36)
    start, side = raw.provenance["foreground"]["start"], raw.provenance["foreground"]["side"]
    assert (start, side) == (4, 12)  # round(20 * 0.6) = 12, centred
    X = np.stack(raw.images)
    mask = raw.backgrounds[0]
    assert mask.shape == (20, 20) and mask.sum() == 20 * 20 - 12 * 12
    assert all(np.array_equal(m, mask) for m in raw.backgrounds)
    assert np.all(X[:, mask] == 0)
    assert np.all(X[:, ~mask] > 0) and X[:, ~mask].max() < 1  # 0.5 +- at most 0.5: never clipped


def test_low_rank_label_is_the_sign_of_z1_with_a_margin():
    raw = generate("lr", "low_rank", seed=2, rank=3, n_per_class=200, margin=0.3)
    start, side = raw.provenance["foreground"]["start"], raw.provenance["foreground"]["side"]
    from intrinsic.sources.embedded import low_rank_basis

    basis = low_rank_basis(2, 3, side * side)
    X = np.stack(raw.images)[:, start : start + side, start : start + side].reshape(len(raw.images), -1)
    latents = (X.astype(np.float64) - 0.5) @ basis / raw.provenance["amplitude"]
    assert np.all(np.abs(latents) <= 1 + 1e-5)
    z1 = latents[:, 0]
    assert np.array_equal(raw.labels, (z1 > 0).astype(int))
    assert np.abs(z1).min() >= 0.3 - 1e-5


def test_low_rank_cache_keeps_the_rank_and_stores_the_mask(tmp_path):
    from intrinsic.rank import energy_rank

    raw = generate("lr", "low_rank", seed=0, rank=6, n_per_class=150)
    meta = write_cache(tmp_path, raw, size=32, channels=1, domain="synthetic")
    assert meta["background"] == "explicit" and meta["provenance"]["rank_true"] == 6
    cache = load_cache(tmp_path, verify=True)
    images = cache.read_images(np.arange(len(cache.images)))
    assert energy_rank(images, 0.99) == 6  # 8-bit quantization noise holds far under 1 % of the energy
    masks = np.load(tmp_path / "background.npy")
    assert masks.shape == (300, 32, 32)
    np.testing.assert_array_equal(masks, np.stack(raw.backgrounds))
    assert np.all(images[:, 0][masks] == 0)


def test_low_rank_is_deterministic_per_seed():
    first = generate("lr", "low_rank", seed=5, rank=3, n_per_class=20)
    again = generate("lr", "low_rank", seed=5, rank=3, n_per_class=20)
    other = generate("lr", "low_rank", seed=6, rank=3, n_per_class=20)
    assert same_images(first, again) and np.array_equal(first.labels, again.labels)
    assert not same_images(first, other)
    # The patterns depend on (seed, rank, foreground size) only, not on the sample size.
    large = generate("lr", "low_rank", seed=5, rank=3, n_per_class=200)
    assert first.provenance["amplitude"] == large.provenance["amplitude"]
