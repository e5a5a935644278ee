"""The uint8 cache: round trip, provenance, checksum, atomic writes, bad inputs."""

import json
import os
import re
import stat

import numpy as np
import pytest

from intrinsic.cache import CACHE_FILES, DatasetError, RawDataset, convert_image, load_cache, write_cache
from intrinsic.io import atomic_write


def raw_dataset(n=12, name="toy"):
    rng = np.random.default_rng(0)
    images = [rng.random((20 + i, 24)) for i in range(n // 2)] + [rng.random((16, 16, 3)) for _ in range(n // 2)]
    return RawDataset(
        name=name, images=images, labels=np.arange(n) % 2, groups=[f"g{i // 3}" for i in range(n)],
        classes=["neg", "pos"], provenance={"source": "unit test"},
    )


def test_round_trip(tmp_path):
    raw = raw_dataset()
    meta = write_cache(tmp_path, raw, size=8, channels=3, domain="natural")
    cache = load_cache(tmp_path, verify=True)
    assert cache.images.shape == (12, 3, 8, 8) and cache.images.dtype == np.uint8
    assert np.array_equal(cache.labels, raw.labels)
    assert cache.groups.tolist() == raw.groups.tolist()
    assert cache.classes == ["neg", "pos"]
    assert meta == json.loads((tmp_path / "meta.json").read_text())
    assert meta["class_counts"] == {"neg": 6, "pos": 6} and meta["n_groups"] == 4
    assert meta["domain"] == "natural" and meta["provenance"] == {"source": "unit test"}


def test_values_map_linearly_to_uint8(tmp_path):
    images = [np.full((8, 8), v) for v in (0.0, 0.5, 1.0)]
    write_cache(tmp_path, RawDataset("flat", images, [0, 1, 0], ["a", "b", "c"], ["x", "y"]), 8, 1, "synthetic")
    assert load_cache(tmp_path).images[:, 0, 0, 0].tolist() == [0, 128, 255]


def test_channel_conversion():
    gray = np.linspace(0, 1, 64).reshape(8, 8)
    assert np.allclose(convert_image(gray, 8, 3), np.stack([gray] * 3))
    rgb = np.stack([gray, gray, gray], axis=-1)
    assert np.allclose(convert_image(rgb, 8, 1)[0], gray, atol=1e-6)
    assert convert_image(np.ones((30, 40, 4)), 8, 3).shape == (3, 8, 8)


def flip_byte(path, offset_from_end=1):
    """Flip the low bit of one byte of a file in place (the npy data sits at the end)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 1
    path.write_bytes(bytes(data))


def test_a_flipped_image_byte_is_caught_when_that_image_is_read(tmp_path):
    write_cache(tmp_path, raw_dataset(), size=8, channels=1, domain="medical")
    flip_byte(tmp_path / "images.npy")  # last byte: image 11
    cache = load_cache(tmp_path)  # labels, groups and CRCs are intact
    assert cache.read_images([0, 3, 10]).shape == (3, 1, 8, 8)  # other images verify
    rebuild = re.escape(f"snakemake --forcerun {tmp_path}")
    with pytest.raises(DatasetError, match=rf"images\.npy is corrupt \(1 image.*first index 11\).*{rebuild}"):
        cache.read_images([2, 11])
    with pytest.raises(DatasetError, match=r"images\.npy is corrupt"):
        load_cache(tmp_path, verify=True)


@pytest.mark.parametrize("name", ["labels.npy", "groups.npy", "row_crc32.npy"])
def test_a_flipped_label_group_or_crc_byte_fails_every_load(tmp_path, name):
    write_cache(tmp_path, raw_dataset(), size=8, channels=1, domain="medical")
    flip_byte(tmp_path / name)
    with pytest.raises(DatasetError,
                       match=rf"{tmp_path}: labels\.npy, groups\.npy or row_crc32\.npy is corrupt.*--forcerun"):
        load_cache(tmp_path)


def test_truncated_array_and_damaged_meta_are_named(tmp_path):
    write_cache(tmp_path / "a", raw_dataset(), size=8, channels=1, domain="medical")
    labels = tmp_path / "a" / "labels.npy"
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=r"cannot read labels\.npy.*--forcerun"):
        load_cache(tmp_path / "a")
    write_cache(tmp_path / "b", raw_dataset(), size=8, channels=1, domain="medical")
    meta = tmp_path / "b" / "meta.json"
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(DatasetError, match=rf"meta\.json: cannot read it as JSON.*--forcerun {tmp_path / 'b'}`"):
        load_cache(tmp_path / "b")


def test_stale_staging_folders_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "toy"
    write_cache(target, raw_dataset(), size=8, channels=1, domain="medical")
    killed = [tmp_path / ".toy.999999.tmp", tmp_path / ".toy.999998.old"]
    for folder in killed:
        folder.mkdir()
        (folder / "images.npy").write_bytes(b"partial")
    other_dataset = tmp_path / ".toy.v2.999999.tmp"  # another dataset's staging folder stays
    other_dataset.mkdir()
    write_cache(target, raw_dataset(), size=8, channels=1, domain="medical")
    assert not any(folder.exists() for folder in killed) and other_dataset.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".toy.v2.999999.tmp", "toy"]


# row_crc32.npy missing: a cache of an older version of this workflow, to be rebuilt
@pytest.mark.parametrize("missing", ["meta.json", "row_crc32.npy"])
def test_incomplete_cache_is_named(tmp_path, missing):
    write_cache(tmp_path, raw_dataset(), size=8, channels=1, domain="medical")
    (tmp_path / missing).unlink()
    with pytest.raises(DatasetError, match=rf"incomplete \(missing {re.escape(missing)}.*--forcerun {tmp_path}`"):
        load_cache(tmp_path)


def test_bad_images_are_rejected_and_nothing_is_written(tmp_path):
    raw = raw_dataset()
    raw.images[5] = raw.images[5] * 300  # a reader that forgot to normalize
    with pytest.raises(DatasetError, match=r"dataset 'toy': image 5 has values .* outside \[0, 1\]"):
        write_cache(tmp_path / "cache", raw, size=8, channels=1, domain="natural")
    assert list(tmp_path.iterdir()) == []
    raw.images[5] = np.full((8, 8), np.nan)
    with pytest.raises(DatasetError, match="image 5 has NaN"):
        write_cache(tmp_path / "cache", raw, size=8, channels=1, domain="natural")


def test_a_failed_rewrite_leaves_the_old_cache_and_no_staging_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    write_cache(folder, raw_dataset(), size=8, channels=1, domain="natural")
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    import intrinsic.cache as cache_module

    def broken_save(path, array):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module, "_save_npy", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_cache(folder, raw_dataset(), size=8, channels=1, domain="natural")
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    assert [f.name for f in tmp_path.iterdir()] == ["cache"]
    load_cache(folder, verify=True)


def test_rewriting_replaces_the_whole_folder(tmp_path):
    folder = tmp_path / "cache"
    write_cache(folder, raw_dataset(), size=8, channels=1, domain="natural")
    (folder / "stale.txt").write_text("from an older layout")
    meta = write_cache(folder, raw_dataset(), size=4, channels=1, domain="natural")
    assert sorted(f.name for f in folder.iterdir()) == sorted(CACHE_FILES)
    assert load_cache(folder).images.shape[-1] == 4 and meta["resolution"] == 4
    assert [f.name for f in tmp_path.iterdir()] == ["cache"]
    umask = os.umask(0)
    os.umask(umask)
    # Readable by the rest of a lab, as mkdir and open() would make them (not mkstemp's 0600).
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for name in CACHE_FILES:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o666 & ~umask, name


def test_mismatched_labels_and_bad_label_values():
    with pytest.raises(DatasetError, match="3 images but 2 labels"):
        RawDataset("toy", [np.zeros((4, 4))] * 3, [0, 1], ["a", "b", "c"], ["x", "y"])
    with pytest.raises(DatasetError, match=r"labels must lie in 0..1"):
        RawDataset("toy", [np.zeros((4, 4))] * 2, [0, 2], ["a", "b"], ["x", "y"])


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write(b"partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as handle:
        handle.write(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


# ----------------------------------------------------------------------------------------------
# Optional explicit background masks (background.npy)


def masked_dataset(n=6, side=16):
    rng = np.random.default_rng(1)
    images, masks = [], []
    for i in range(n):
        image = np.zeros((side, side + 2 * i))
        mask = np.ones(image.shape, dtype=bool)
        mask[4:12, 4:12] = False  # the foreground square
        image[~mask] = rng.random(64)
        images.append(image)
        masks.append(mask)
    return RawDataset("masked", images, np.arange(n) % 2, np.arange(n), ["a", "b"], backgrounds=masks)


def test_explicit_masks_round_trip_at_native_size(tmp_path):
    raw = masked_dataset(n=4)
    raw.images = raw.images[:1] * 4  # every image 16 x 16: the native size
    raw.backgrounds = raw.backgrounds[:1] * 4
    meta = write_cache(tmp_path, raw, size=16, channels=1, domain="synthetic")
    assert meta["background"] == "explicit" and len(meta["background_sha256"]) == 64
    cache = load_cache(tmp_path, verify=True)
    assert cache.has_background
    masks = cache.read_background([3, 0])
    assert masks.dtype == bool and masks.shape == (2, 16, 16)
    np.testing.assert_array_equal(masks[0], raw.backgrounds[0])
    stored = np.load(tmp_path / "background.npy")
    assert stored.dtype == bool and stored.shape == (4, 16, 16)


def test_masks_are_resized_by_majority_with_the_images_filter(tmp_path):
    write_cache(tmp_path, masked_dataset(), size=8, channels=3, domain="synthetic")
    cache = load_cache(tmp_path)
    masks = cache.read_background(np.arange(6))
    assert masks.shape == (6, 8, 8)
    # Image 0 is 16 x 16, foreground rows/cols 4..11: exactly the 2 x 2 blocks 2..5 at 8 px.
    expected = np.ones((8, 8), dtype=bool)
    expected[2:6, 2:6] = False
    np.testing.assert_array_equal(masks[0], expected)
    # The masks leave the images as they are: the same sha256 as without them.
    plain = masked_dataset()
    plain.backgrounds = None
    assert write_cache(tmp_path / "plain", plain, 8, 3, "synthetic")["sha256"] == cache.meta["sha256"]


def test_caches_without_masks_stay_valid(tmp_path):
    meta = write_cache(tmp_path, raw_dataset(), size=8, channels=1, domain="natural")
    assert meta["background"] == "threshold" and "background_sha256" not in meta
    assert not (tmp_path / "background.npy").exists()
    assert "background.npy" not in CACHE_FILES
    cache = load_cache(tmp_path, verify=True)
    assert not cache.has_background and cache.read_background([0, 1]) is None
    # a cache written before masks existed: no "background" key in meta.json
    old = json.loads((tmp_path / "meta.json").read_text())
    del old["background"]
    (tmp_path / "meta.json").write_text(json.dumps(old))
    assert load_cache(tmp_path).read_background([0]) is None


def test_a_flipped_mask_byte_is_caught_when_that_mask_is_read(tmp_path):
    write_cache(tmp_path, masked_dataset(), size=8, channels=1, domain="synthetic")
    path = tmp_path / "background.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last pixel of mask 5: True <-> False
    path.write_bytes(bytes(data))
    cache = load_cache(tmp_path)  # the mask CRCs are intact
    assert cache.read_background([0, 4]).shape == (2, 8, 8)
    with pytest.raises(DatasetError,
                       match=rf"background\.npy is corrupt \(1 mask.*first index 5\).*--forcerun {tmp_path}"):
        cache.read_background([5])
    with pytest.raises(DatasetError, match=r"background\.npy is corrupt"):
        load_cache(tmp_path, verify=True)


def test_damaged_missing_or_unexpected_mask_files_are_named(tmp_path):
    write_cache(tmp_path / "a", masked_dataset(), size=8, channels=1, domain="synthetic")
    flip_byte(tmp_path / "a" / "background_crc32.npy")
    with pytest.raises(DatasetError, match=r"background_crc32\.npy is corrupt.*--forcerun"):
        load_cache(tmp_path / "a")
    write_cache(tmp_path / "b", masked_dataset(), size=8, channels=1, domain="synthetic")
    (tmp_path / "b" / "background.npy").unlink()
    with pytest.raises(DatasetError, match=r"background 'explicit' but background\.npy is missing.*--forcerun"):
        load_cache(tmp_path / "b")
    write_cache(tmp_path / "c", masked_dataset(), size=8, channels=1, domain="synthetic")
    truncated = tmp_path / "c" / "background.npy"
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(DatasetError, match=r"cannot read background\.npy.*--forcerun"):
        load_cache(tmp_path / "c")
    write_cache(tmp_path / "d", raw_dataset(), size=8, channels=1, domain="synthetic")
    np.save(tmp_path / "d" / "background.npy", np.ones((12, 8, 8), dtype=bool))
    with pytest.raises(DatasetError, match=r"has background\.npy but meta\.json says background 'threshold'"):
        load_cache(tmp_path / "d")


def test_bad_masks_are_rejected():
    raw = masked_dataset()
    with pytest.raises(DatasetError, match=r"dataset 'masked': 6 images but 5 background masks"):
        RawDataset("masked", raw.images, raw.labels, raw.groups, raw.classes, backgrounds=raw.backgrounds[:5])
    wrong = list(raw.backgrounds)
    wrong[2] = wrong[2][:, :-1]
    with pytest.raises(DatasetError, match=r"dataset 'masked': background mask 2 has dtype bool shape \(16, 19\)"):
        RawDataset("masked", raw.images, raw.labels, raw.groups, raw.classes, backgrounds=wrong)
    wrong[2] = raw.backgrounds[2].astype(np.uint8)
    with pytest.raises(DatasetError, match=r"background mask 2 has dtype uint8"):
        RawDataset("masked", raw.images, raw.labels, raw.groups, raw.classes, backgrounds=wrong)
