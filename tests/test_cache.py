"""The uint8 cache: round trip, provenance, checksum, atomic writes, bad inputs."""

import json
import os
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


def test_checksum_detects_corruption(tmp_path):
    write_cache(tmp_path, raw_dataset(), size=8, channels=1, domain="medical")
    images = np.load(tmp_path / "images.npy")
    images[0, 0, 0, 0] ^= 1
    np.save(tmp_path / "images.npy", images)
    load_cache(tmp_path)  # cheap load: shapes only
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_cache(tmp_path, verify=True)


def test_incomplete_cache_is_named(tmp_path):
    write_cache(tmp_path, raw_dataset(), size=8, channels=1, domain="medical")
    (tmp_path / "meta.json").unlink()
    with pytest.raises(DatasetError, match=r"incomplete: missing meta.json"):
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
