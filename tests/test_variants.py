"""Fan & Yezzi's training variants (intrinsic.variants): noise images, the noise class, illusive
samples, and train_variant's orchestration, determinism and resumption. CPU only, tiny inputs."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from intrinsic.models import final_linear
from intrinsic.training import TrainConfig, train
from intrinsic.variants import (
    NOISE_CLASS_RATIO, VARIANTS, first_pass_path, illusive_samples, noise_class_images, train_variant,
    unlearned_classes, variant_options, with_noise_class,
)
from test_training import Killed, assert_same_state, random_labels, separable

QUIET = dict(log=lambda _m: None)
FLIPPED = [3, 10, 21]
# On two_squares() this first pass misclassifies exactly the FLIPPED samples in epochs 2-4 (CPU,
# deterministic), and the second pass fits the 29 others in its first epochs.
ILLUSIVE_CONFIG = dict(learning_rate=1e-3, batch_size=32, max_epochs=3, seed=0)
ILLUSIVE_OPTIONS = {"first_pass_epochs": 4, "last_epochs": 3, "min_fraction_wrong": 1.0}


def two_squares(n=32, size=16, seed=0, flipped=FLIPPED):
    """Noise images with a bright square on the left (class 0) or right (class 1); the labels of
    ``flipped`` are wrong, so a model that learns the rule keeps misclassifying them."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 100, (n, 1, size, size)).astype(np.uint8)
    labels = np.arange(n) % 2
    q = size // 4
    images[labels == 0, :, q : 3 * q, : 2 * q] = 255
    images[labels == 1, :, q : 3 * q, 2 * q :] = 255
    labels[list(flipped)] = 1 - labels[list(flipped)]
    return images, labels


def folder_paths(folder):
    """A checkpoint_path_for like runs.py's: one file per settings (max_epochs and device left out)."""
    def path_for(config):
        settings = {k: v for k, v in config.to_dict().items() if k not in ("device", "max_epochs")}
        return folder / f"{hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:12]}.pt"
    return path_for


def entries(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# ---------------------------------------------------------------------------------- pure parts
def test_noise_images_are_deterministic_and_uniform():
    a = noise_class_images(200, (3, 16, 16), seed=5)
    assert a.dtype == np.uint8 and a.shape == (200, 3, 16, 16)
    assert np.array_equal(a, noise_class_images(200, (3, 16, 16), seed=5))
    assert not np.array_equal(a, noise_class_images(200, (3, 16, 16), seed=6))
    assert a.min() == 0 and a.max() == 255
    assert abs(a.mean() / 255 - 0.5) < 0.01
    counts = np.bincount(a.ravel(), minlength=256)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    assert noise_class_images(0, (1, 4, 4), 0).shape == (0, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        noise_class_images(2, (4, 4), 0)


def test_with_noise_class_appends_round_ratio_n_images_labelled_2():
    images, labels = separable(n=10, size=8)
    out_images, out_labels, n_noise = with_noise_class(images, labels, 0.45, seed=1)  # round(4.5) = 4
    assert n_noise == 4 and out_images.shape == (14, 1, 8, 8) and out_images.dtype == np.uint8
    assert np.array_equal(out_images[:10], images) and np.array_equal(out_labels[:10], labels)
    assert out_labels.dtype == np.int64 and (out_labels[10:] == 2).all()
    assert np.array_equal(out_images[10:], noise_class_images(4, (1, 8, 8), 1))
    assert with_noise_class(images, labels, seed=1)[2] == round(NOISE_CLASS_RATIO * 10) == 5
    for bad in (0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"variants\.noise_class\.ratio must be a finite number > 0"):
            with_noise_class(images, labels, bad)
    with pytest.raises(ValueError, match=r"variants\.noise_class\.ratio 0\.01 of 10 training images gives no"):
        with_noise_class(images, labels, 0.01)
    with pytest.raises(ValueError, match=r"binary labels 0/1 .* got range \[1, 2\]"):
        with_noise_class(images, labels + 1, 0.5)


def test_illusive_samples_known_answers():
    # columns: samples; rows: epochs 1..4 (True = correct)
    correct = np.array([
        [0, 0, 1, 1, 0],
        [0, 1, 0, 1, 0],
        [0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1],
    ], dtype=bool)
    # last 2 epochs: wrong counts [2, 2, 1, 0, 0]
    assert illusive_samples(correct, 2, 1.0).tolist() == [True, True, False, False, False]
    assert illusive_samples(correct, 2, 0.5).tolist() == [True, True, True, False, False]  # 1 of 2 is a tie: in
    # last 3 epochs: wrong counts [3, 2, 2, 0, 1]; 2/3 is reached exactly by 2 of 3
    assert illusive_samples(correct, 3, 2 / 3).tolist() == [True, True, True, False, False]
    assert illusive_samples(correct, 3, 0.67).tolist() == [True, False, False, False, False]
    # fewer epochs than the window: all 4; wrong counts [4, 3, 2, 0, 2]
    assert illusive_samples(correct, 10, 1.0).tolist() == [True, False, False, False, False]
    assert illusive_samples(correct, 10, 0.5).tolist() == [True, True, True, False, True]
    # a decimal fraction of a decimal window: 0.3 of 10 epochs is 3 epochs, not 4
    ten = np.ones((10, 2), dtype=bool)
    ten[:3, 0] = False
    ten[:2, 1] = False
    assert illusive_samples(ten, 10, 0.3).tolist() == [True, False]


def test_illusive_samples_and_options_are_validated():
    correct = np.ones((3, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"variants\.exclude_illusive\.last_epochs must be an integer >= 1, got 0"):
        illusive_samples(correct, 0, 1.0)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"variants\.exclude_illusive\.min_fraction_wrong must be in \(0, 1\]"):
            illusive_samples(correct, 2, bad)
    with pytest.raises(TypeError, match="bool"):
        illusive_samples(correct.astype(int), 2, 1.0)
    with pytest.raises(ValueError, match=r"shape \(epochs >= 1, n\)"):
        illusive_samples(np.ones((0, 4), dtype=bool), 2, 1.0)
    assert variant_options("noise_class", {}) == {"ratio": NOISE_CLASS_RATIO}
    assert variant_options("exclude_illusive", {"last_epochs": 2})["last_epochs"] == 2
    assert variant_options("standard", None) == {}
    with pytest.raises(ValueError, match=r"unknown option\(s\) variants\.noise_class\.ration"):
        variant_options("noise_class", {"ration": 0.5})
    with pytest.raises(ValueError, match=r"variants\.exclude_illusive\.first_pass_epochs must be an integer >= 1"):
        variant_options("exclude_illusive", {"first_pass_epochs": 0})
    with pytest.raises(ValueError, match=r"unknown variant 'mixup' \(variants\.run\)"):
        variant_options("mixup", {})
    assert VARIANTS == ("standard", "noise_class", "exclude_illusive")
    assert first_pass_path(None) is None
    assert first_pass_path(Path("/x/abc.pt")).name == "abc.first-pass.pt"


# ------------------------------------------------------------------------------- train_variant
def test_standard_variant_is_exactly_train(tmp_path):
    images, labels = random_labels(n=16, size=8)
    test_set = random_labels(n=6, size=8, seed=9)
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=2, seed=0)
    direct = train("resnet18", images, labels, config, None, eval_set=test_set, **QUIET)
    paths = []
    via = train_variant("standard", "resnet18", images, labels, config, options={}, seed=0,
                        checkpoint_path_for=lambda c: paths.append(c) or tmp_path / "std.pt", eval_set=test_set,
                        **QUIET)
    assert paths == [config] and (tmp_path / "std.pt").exists()
    assert_same_state(direct.model, via.result.model)
    assert entries(direct.history) == entries(via.result.history)
    assert via.config == config and via.num_classes == 2 and via.n_noise_images == 0 and via.excluded == []
    assert via.first_pass_history is None and np.array_equal(via.training_labels_used, labels)


def test_noise_class_has_three_outputs_and_trains(tmp_path):
    images, labels = separable(n=16, size=8)
    test_set = separable(n=6, size=8, seed=4)
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=2, seed=0)
    out = train_variant("noise_class", "resnet18", images, labels, config, options={"ratio": 0.5}, seed=3,
                        checkpoint_path_for=folder_paths(tmp_path), eval_set=test_set, **QUIET)
    assert final_linear(out.result.model).out_features == 3 and out.num_classes == out.config.num_classes == 3
    assert out.config == TrainConfig(**{**config.to_dict(), "num_classes": 3})
    assert out.n_noise_images == 8 and len(out.training_labels_used) == 24
    assert (out.training_labels_used[16:] == 2).all() and np.array_equal(out.training_labels_used[:16], labels)
    assert out.result.epochs >= 1 and all(np.isfinite(h["train_loss"]) and "test_loss" in h for h in out.result.history)
    # the same as training directly on the augmented set
    images3, labels3, _ = with_noise_class(images, labels, 0.5, seed=3)
    direct = train("resnet18", images3, labels3, out.config, None, **QUIET)
    assert_same_state(direct.model, out.result.model)
    # the noise images' seed matters
    other = train_variant("noise_class", "resnet18", images, labels, config, options={}, seed=4, **QUIET)
    assert not all(torch.equal(a, b) for a, b in zip(other.result.model.state_dict().values(),
                                                     out.result.model.state_dict().values()))


def test_exclude_illusive_drops_the_mislabelled_samples_and_retrains_on_the_rest(tmp_path):
    images, labels = two_squares()
    config = TrainConfig(**ILLUSIVE_CONFIG)
    test_set = two_squares(n=8, seed=5, flipped=[])
    out = train_variant("exclude_illusive", "resnet18", images, labels, config, options=ILLUSIVE_OPTIONS, seed=0,
                        checkpoint_path_for=folder_paths(tmp_path), eval_set=test_set, **QUIET)
    matrix = out.first_pass_sample_correct
    assert matrix.shape == (4, 32) and len(out.first_pass_history) == 4
    assert out.excluded == np.flatnonzero(illusive_samples(matrix, 3, 1.0)).tolist()
    assert out.excluded == FLIPPED
    keep = np.setdiff1d(np.arange(32), FLIPPED)
    assert np.array_equal(out.training_labels_used, labels[keep])
    assert "test_loss" in out.first_pass_history[0] and "test_loss" in out.result.history[0]
    assert out.config == config and out.result.fitted  # the rest is separable
    # the second pass is a plain run of the configured settings on the N - excluded samples
    direct = train("resnet18", images[keep], labels[keep], config, None, **QUIET)
    assert_same_state(direct.model, out.result.model)
    assert out.train_seconds > out.result.train_seconds


def test_exclude_illusive_refuses_to_leave_fewer_than_two_samples_of_a_class(monkeypatch):
    import intrinsic.variants as variants

    images, labels = random_labels(n=12, size=8)
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=1, seed=0)
    # every class-1 sample but one is "illusive"
    illusive = (labels == 1) & (np.cumsum(labels == 1) > 1)
    monkeypatch.setattr(variants, "illusive_samples", lambda *_a: illusive)
    monkeypatch.setattr(variants, "unlearned_classes", lambda *_a: [])
    with pytest.raises(ValueError, match=r"only 1 of 6 training samples of class 1 would remain after excluding 5 "
                                         r"illusive samples of 12 \(need >= 2 per class\)"):
        train_variant("exclude_illusive", "resnet18", images, labels, config,
                      options={"first_pass_epochs": 1, "last_epochs": 1}, **QUIET)


def test_exclude_illusive_judges_no_sample_of_a_class_the_first_pass_has_not_learned(monkeypatch):
    import intrinsic.variants as variants

    images, labels = random_labels(n=12, size=8)
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=1, seed=0)
    first_class_0 = int(np.flatnonzero(labels == 0)[0])
    illusive = (labels == 1).copy()
    illusive[first_class_0] = True
    monkeypatch.setattr(variants, "illusive_samples", lambda *_a: illusive.copy())
    monkeypatch.setattr(variants, "unlearned_classes", lambda *_a: [1])
    out = train_variant("exclude_illusive", "resnet18", images, labels, config,
                        options={"first_pass_epochs": 1, "last_epochs": 1}, **QUIET)
    assert out.excluded == [first_class_0] and out.unjudged_classes == [1]
    assert len(out.training_labels_used) == 11


@pytest.mark.parametrize("variant", ["noise_class", "exclude_illusive"])
def test_each_pass_resumes_bitwise_identically(tmp_path, variant):
    if variant == "noise_class":
        images, labels = random_labels(n=16, size=8)
        config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=3, seed=1)
        options, kills = {"ratio": 0.5}, [("final", 1)]
    else:
        images, labels = two_squares()
        config = TrainConfig(**{**ILLUSIVE_CONFIG, "mode": "fixed_epochs"})  # the first pass's mode too
        options, kills = ILLUSIVE_OPTIONS, [("first_pass", 2), ("final", 1)]
    test_set = (images[:4], labels[:4])
    run = dict(options=options, seed=2, eval_set=test_set, **QUIET)
    full = train_variant(variant, "resnet18", images, labels, config, checkpoint_path_for=folder_paths(tmp_path / "a"),
                         **run)
    folder = tmp_path / "b"
    for stage, at in kills:
        def kill(pass_name, epoch, _entry, stage=stage, at=at):
            if (pass_name, epoch) == (stage, at):
                raise Killed
        with pytest.raises(Killed):
            train_variant(variant, "resnet18", images, labels, config, checkpoint_path_for=folder_paths(folder),
                          on_epoch_end=kill, **run)
    if variant == "exclude_illusive":
        # both passes' checkpoints, side by side: the first pass's is not the second's
        names = sorted(p.name for p in folder.iterdir())
        assert len(names) == 2 and names[0].endswith(".first-pass.pt") == (not names[1].endswith(".first-pass.pt"))
    torch.manual_seed(12345)
    resumed = train_variant(variant, "resnet18", images, labels, config, checkpoint_path_for=folder_paths(folder),
                            **run)
    assert resumed.result.resumed_from == kills[-1][1] and resumed.result.set_aside == []
    assert_same_state(full.result.model, resumed.result.model)
    assert entries(full.result.history) == entries(resumed.result.history)
    assert full.excluded == resumed.excluded and full.n_noise_images == resumed.n_noise_images
    if variant == "exclude_illusive":
        assert entries(full.first_pass_history) == entries(resumed.first_pass_history)
        assert np.array_equal(full.first_pass_sample_correct, resumed.first_pass_sample_correct)
        assert full.excluded == FLIPPED


def test_a_class_the_first_pass_has_not_learned_is_not_judged():
    """A final first-pass model that predicts class 0 for everything misclassifies all of class
    1 "consistently": that says nothing about which samples are illusive."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    collapsed = labels == 0
    assert unlearned_classes(collapsed, labels, 2) == [1]
    learned = np.array([True, True, False, True, True, True, False, True])  # 3 of 4 per class
    assert unlearned_classes(learned, labels, 2) == []
    half = np.array([True, True, False, False, True, False, True, True])  # 2 of 4: learned (>= 0.5)
    assert unlearned_classes(half, labels, 2) == []
