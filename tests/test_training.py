"""Training: fits a separable problem, is deterministic, resumes bitwise-identically, validates
checkpoints, and runs every architecture of the study. CPU only, small inputs."""

import logging
import re
import time

import numpy as np
import pytest
import torch

from intrinsic.io import load_verified, save_verified
from intrinsic.models import ARCHITECTURES
from intrinsic.training import TrainConfig, TrainResult, train


def separable(n=64, size=16, seed=0):
    """Noise images; class 1 has a bright square in the middle."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 100, (n, 1, size, size)).astype(np.uint8)
    labels = np.arange(n) % 2
    images[labels == 1, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return images, labels


def random_labels(n=40, size=16, seed=1):
    """Pure noise with random labels: not fitted within a few epochs, so runs last max_epochs."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, size, size)).astype(np.uint8)
    return images, rng.permutation(np.arange(n) % 2)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def losses(result: TrainResult) -> list:
    return [(h["epoch"], h["train_loss"], h["running_accuracy"], h["train_accuracy"], h["eval_loss"])
            for h in result.history]


RESUME_CONFIG = dict(learning_rate=1e-3, batch_size=16, max_epochs=3, seed=3)


def test_fits_separable_problem(caplog):
    images, labels = separable()
    config = TrainConfig(learning_rate=1e-3, batch_size=32, max_epochs=20, seed=0)
    with caplog.at_level(logging.INFO):
        result = train("resnet18", images, labels, config, None, log=logging.getLogger("t"))
    assert result.fitted
    assert result.epochs < config.max_epochs
    assert result.epochs == len(result.history)
    assert result.history[-1]["train_accuracy"] == 1.0
    assert set(result.history[0]) >= {"epoch", "train_loss", "train_accuracy", "seconds"}
    assert not result.model.training
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert result.device == "cpu"
    assert "epoch 1/20" in caplog.text
    # the returned model really classifies the training set
    with torch.no_grad():
        logits = result.model(torch.from_numpy(images).float() / 255)
    assert (logits.argmax(1).numpy() == labels).all()


def test_same_seed_same_weights(tmp_path):
    images, labels = random_labels()
    messages = []
    a = train("resnet18", images, labels, TrainConfig(**{**RESUME_CONFIG, "max_epochs": 2}), None, log=messages.append)
    b = train("resnet18", images, labels, TrainConfig(**{**RESUME_CONFIG, "max_epochs": 2}), None, log=messages.append)
    assert messages and all(isinstance(m, str) for m in messages)
    assert_same_state(a.model, b.model)
    assert losses(a) == losses(b)
    c = train("resnet18", images, labels, TrainConfig(**{**RESUME_CONFIG, "max_epochs": 2, "seed": 4}), None,
              log=messages.append)
    assert losses(a) != losses(c)


class Killed(Exception):
    pass


def test_resume_after_kill_is_identical(tmp_path):
    images, labels = random_labels()
    config = TrainConfig(**RESUME_CONFIG)
    uninterrupted = train("resnet18", images, labels, config, tmp_path / "full.pt", log=lambda _m: None)
    assert uninterrupted.epochs == 3 and not uninterrupted.fitted

    def kill_after_first(epoch, _entry):
        if epoch == 1:
            raise Killed

    checkpoint = tmp_path / "killed.pt"
    with pytest.raises(Killed):
        train("resnet18", images, labels, config, checkpoint, log=lambda _m: None, on_epoch_end=kill_after_first)
    assert checkpoint.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    torch.manual_seed(12345)  # a fresh process would have a different global RNG state
    resumed = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    assert resumed.resumed_from == 1
    assert resumed.epochs == 3
    assert_same_state(uninterrupted.model, resumed.model)
    assert losses(uninterrupted) == losses(resumed)
    # resuming a finished run trains nothing more and gives the same model
    again = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    assert again.epochs == 3 and again.resumed_from == 3
    assert_same_state(uninterrupted.model, again.model)
    # max_epochs may be raised to continue a run
    longer = train("resnet18", images, labels, TrainConfig(**{**RESUME_CONFIG, "max_epochs": 4}), checkpoint,
                   log=lambda _m: None)
    assert longer.epochs == 4 and longer.history[:3] == resumed.history


def fresh_start_after_setting_aside(tmp_path, checkpoint, run, reason):
    """Run ``run()`` on a checkpoint that cannot be resumed: it must be set aside (renamed, kept),
    the reason logged and returned, and training start fresh."""
    messages = []
    result = run(messages.append)
    set_aside = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f"{checkpoint.name}.set-aside-"))
    assert len(set_aside) == 1, set_aside
    assert result.resumed_from == 0 and len(result.set_aside) == 1
    assert re.search(rf"checkpoint {re.escape(str(checkpoint))} set aside as {re.escape(set_aside[0])}: .*{reason}"
                     r".*training starts fresh", result.set_aside[0]), result.set_aside[0]
    assert any(result.set_aside[0] in message for message in messages)
    (tmp_path / set_aside[0]).unlink()
    return result


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (dict(config=dict(learning_rate=1e-4, seed=1)), r"learning_rate \(checkpoint 0\.001, now 0\.0001\); seed"),
        (dict(model="resnet34"), r"model_name \(checkpoint 'resnet18', now 'resnet34'\)"),
        (dict(flip_labels=True), r"training data \(images/labels fingerprint differs\)"),
        (dict(drop_key="optimizer"), r"missing optimizer"),
        (dict(rename_weight=True), r"its state does not fit the model \(RuntimeError"),
    ],
)
def test_a_checkpoint_of_other_settings_model_or_data_is_set_aside(tmp_path, change, reason):
    images, labels = random_labels(n=16, size=8)
    checkpoint = tmp_path / "ck.pt"
    base = dict(learning_rate=1e-3, batch_size=8, max_epochs=1, seed=0)
    train("resnet18", images, labels, TrainConfig(**base), checkpoint, log=lambda _m: None)
    if "drop_key" in change:  # digest-valid but incomplete: resuming would fail on every retry
        state = load_verified(checkpoint)
        del state[change["drop_key"]]
        save_verified(checkpoint, state)
    if "rename_weight" in change:  # digest-valid, complete, but of another architecture's layout
        state = load_verified(checkpoint)
        state["model"]["renamed.weight"] = state["model"].pop("conv1.weight")
        save_verified(checkpoint, state)
    config = TrainConfig(**{**base, **change.get("config", {})})
    model = change.get("model", "resnet18")
    targets = 1 - labels if change.get("flip_labels") else labels
    result = fresh_start_after_setting_aside(
        tmp_path, checkpoint, lambda log: train(model, images, targets, config, checkpoint, log=log), reason)
    clean = train(model, images, targets, config, None, log=lambda _m: None)
    assert losses(result) == losses(clean)  # the same as a run that never saw the checkpoint


def write_bytes_edit(path, edit):
    path.write_bytes(edit(path.read_bytes()))


def flip_middle_bit(data: bytes) -> bytes:
    data = bytearray(data)
    data[len(data) // 2] ^= 0x10
    return bytes(data)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (flip_middle_bit, "checksum mismatch, the file is corrupt"),
        (lambda data: data[: len(data) // 3], "checksum mismatch|not a complete verified torch file"),
        (lambda data: b"", "not a complete verified torch file"),
    ],
    ids=["bit-flip", "truncated", "empty"],
)
def test_a_corrupt_or_truncated_checkpoint_is_set_aside_and_training_starts_fresh(tmp_path, damage, reason):
    images, labels = random_labels()
    config = TrainConfig(**RESUME_CONFIG)
    uninterrupted = train("resnet18", images, labels, config, None, log=lambda _m: None)
    checkpoint = tmp_path / "ck.pt"

    def kill_after_first(epoch, _entry):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train("resnet18", images, labels, config, checkpoint, log=lambda _m: None, on_epoch_end=kill_after_first)
    write_bytes_edit(checkpoint, damage)
    result = fresh_start_after_setting_aside(
        tmp_path, checkpoint, lambda log: train("resnet18", images, labels, config, checkpoint, log=log), reason)
    assert result.epochs == 3
    assert_same_state(uninterrupted.model, result.model)  # not the damaged state
    assert losses(uninterrupted) == losses(result)
    # a second try does not meet the set-aside file again: a retry succeeds without a person
    again = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    assert again.set_aside == [] and again.resumed_from == 3


def test_train_seconds_add_up_over_resumed_segments(tmp_path):
    images, labels = random_labels()
    config = TrainConfig(**RESUME_CONFIG)
    checkpoint = tmp_path / "ck.pt"

    def slow_then_killed(epoch, _entry):
        if epoch == 1:
            time.sleep(1.0)  # between epochs 1 and 2 of the first segment: counted by its checkpoint
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train("resnet18", images, labels, config, checkpoint, log=lambda _m: None, on_epoch_end=slow_then_killed)
    resumed = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    assert resumed.resumed_from == 2 and resumed.epochs == 3
    epochs = sum(h["seconds"] for h in resumed.history)
    # both segments: the three epochs and the first segment's pause (the last segment alone
    # would be one epoch's seconds)
    assert epochs + 1.0 <= resumed.train_seconds < epochs + 1.0 + 5


def test_input_validation():
    images, labels = random_labels(n=8, size=8)
    config = TrainConfig(max_epochs=1)
    with pytest.raises(TypeError, match="uint8"):
        train("resnet18", images.astype(np.float32), labels, config)
    with pytest.raises(ValueError, match="labels"):
        train("resnet18", images, labels + 1, config)
    with pytest.raises(ValueError, match="unknown model"):
        train("alexnet", images, labels, config)
    with pytest.raises(ValueError, match="fit_patience"):
        TrainConfig(fit_patience=0)
    with pytest.raises(ValueError, match="mode must be one of until_fit, fixed_epochs, got 'forever'"):
        TrainConfig(mode="forever")


# Fits the separable problem in its first epoch (CPU, deterministic), so a longer run goes on
# past the fit.
EARLY_FIT = dict(learning_rate=1e-3, batch_size=32, seed=0)


def test_fixed_epochs_trains_exactly_max_epochs_after_an_early_fit():
    images, labels = separable(n=32, size=16)
    until_fit = train("resnet18", images, labels, TrainConfig(**EARLY_FIT, max_epochs=4), None, log=lambda _m: None)
    assert until_fit.fitted and until_fit.epochs == 1  # until_fit stops at the first fit
    fixed = train("resnet18", images, labels, TrainConfig(**EARLY_FIT, max_epochs=4, mode="fixed_epochs"), None,
                  log=lambda _m: None)
    assert fixed.epochs == len(fixed.history) == 4
    # the same run up to the fit, then more epochs
    assert losses(fixed)[: until_fit.epochs] == losses(until_fit)
    # fitted describes the model kept: the last epoch's, by the same criterion
    assert fixed.fitted == (fixed.history[-1]["train_accuracy"] >= 1.0)
    patient = train("resnet18", images, labels,
                    TrainConfig(**EARLY_FIT, max_epochs=3, mode="fixed_epochs", fit_patience=2), None,
                    log=lambda _m: None)
    assert patient.epochs == 3
    assert patient.fitted == all(h["train_accuracy"] >= 1.0 for h in patient.history[-2:])
    # the model returned is the last epoch's
    with torch.no_grad():
        logits = fixed.model(torch.from_numpy(images).float() / 255)
    assert (logits.argmax(1).numpy() == labels).mean() == fixed.history[-1]["train_accuracy"]


def test_fixed_epochs_resume_after_kill_is_identical(tmp_path):
    images, labels = separable(n=32, size=16)
    config = TrainConfig(**EARLY_FIT, max_epochs=4, mode="fixed_epochs")
    uninterrupted = train("resnet18", images, labels, config, tmp_path / "full.pt", log=lambda _m: None)
    assert uninterrupted.epochs == 4 and uninterrupted.history[0]["train_accuracy"] == 1.0

    def kill_after_second(epoch, _entry):  # after the fit: the resumed run must go on anyway
        if epoch == 2:
            raise Killed

    checkpoint = tmp_path / "killed.pt"
    with pytest.raises(Killed):
        train("resnet18", images, labels, config, checkpoint, log=lambda _m: None, on_epoch_end=kill_after_second)
    torch.manual_seed(12345)
    resumed = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    assert resumed.resumed_from == 2 and resumed.epochs == 4
    assert_same_state(uninterrupted.model, resumed.model)
    assert losses(uninterrupted) == losses(resumed) and resumed.fitted == uninterrupted.fitted


def test_checkpoint_of_another_mode_or_a_longer_run_is_set_aside(tmp_path):
    images, labels = separable(n=32, size=16)
    checkpoint = tmp_path / "ck.pt"
    train("resnet18", images, labels, TrainConfig(**EARLY_FIT, max_epochs=2), checkpoint, log=lambda _m: None)
    # an until_fit checkpoint (stopped at its fit) is not the state of a fixed_epochs run
    fixed = TrainConfig(**EARLY_FIT, max_epochs=2, mode="fixed_epochs")
    result = fresh_start_after_setting_aside(
        tmp_path, checkpoint, lambda log: train("resnet18", images, labels, fixed, checkpoint, log=log),
        r"mode \(checkpoint 'until_fit', now 'fixed_epochs'\)")
    assert result.epochs == 2
    # interrupted (or finished) at epoch 3 and rerun with max_epochs 2: the result is that of a
    # clean 2-epoch run, not the 3-epoch state labelled max_epochs 2
    longer = tmp_path / "longer.pt"
    train("resnet18", images, labels, TrainConfig(**EARLY_FIT, max_epochs=3, mode="fixed_epochs"), longer,
          log=lambda _m: None)
    shorter = fresh_start_after_setting_aside(
        tmp_path, longer, lambda log: train("resnet18", images, labels, fixed, longer, log=log),
        r"max_epochs \(checkpoint at epoch 3, now 2\)")
    clean = train("resnet18", images, labels, fixed, None, log=lambda _m: None)
    assert shorter.epochs == 2 and losses(shorter) == losses(clean)
    assert_same_state(shorter.model, clean.model)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_trains_one_step(name):
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (8, 1, 32, 32)).astype(np.uint8))
    labels = torch.tensor([0, 1] * 4)
    result = train(name, images, labels, TrainConfig(batch_size=8, max_epochs=1, seed=0), None,
                   log=lambda _m: None)
    assert result.epochs == 1 and len(result.history) == 1
    assert np.isfinite(result.history[0]["train_loss"])
    assert not result.model.training


def test_progress_line_only_on_a_terminal(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    images, labels = random_labels(n=8, size=8)
    config = TrainConfig(batch_size=4, max_epochs=1)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    train("resnet18", images, labels, config, None, log=lambda _m: None, progress=True)
    assert "\rresnet18 epoch 1/1 batch 2/2 loss" in terminal.getvalue()
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    train("resnet18", images, labels, config, None, log=lambda _m: None, progress=True)
    assert pipe.getvalue() == ""


def test_a_checkpoint_resumes_on_another_device_or_with_more_epochs(tmp_path):
    """A retry on a CPU node of a run preempted on a GPU node keeps its progress."""
    images, labels = random_labels(n=16, size=8)
    checkpoint = tmp_path / "ck.pt"
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=1, seed=0)
    train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    state = load_verified(checkpoint)
    state["config"]["device"] = "cuda"  # as written on a GPU node
    save_verified(checkpoint, state)
    longer = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=2, seed=0)
    resumed = train("resnet18", images, labels, longer, checkpoint, log=lambda _m: None)
    assert resumed.resumed_from == 1 and resumed.set_aside == [] and resumed.epochs == 2


# ------------------------------------------------------- eval set, per-sample correctness, classes
def _as_float(images):
    return torch.from_numpy(images).float().div_(255.0)


def test_eval_set_adds_test_numbers_without_changing_training():
    from intrinsic.evaluation import evaluate

    images, labels = random_labels(n=24, size=8)
    test_images, test_labels = random_labels(n=10, size=8, seed=7)
    config = TrainConfig(**{**RESUME_CONFIG, "batch_size": 8, "max_epochs": 2})
    plain = train("resnet18", images, labels, config, None, log=lambda _m: None)
    with_test = train("resnet18", images, labels, config, None, log=lambda _m: None,
                      eval_set=(test_images, test_labels))
    assert_same_state(plain.model, with_test.model)  # bitwise: no RNG use, no gradients
    assert losses(plain) == losses(with_test)
    assert all("test_loss" not in h for h in plain.history)
    assert all({"test_loss", "test_accuracy"} <= set(h) for h in with_test.history)
    last = with_test.history[-1]
    held_out = evaluate(with_test.model, _as_float(test_images), torch.from_numpy(test_labels))
    assert (last["test_loss"], last["test_accuracy"]) == (held_out["loss"], held_out["accuracy"])
    # the one-pass fit check reports exactly what evaluate() reports on the training set
    on_train = evaluate(with_test.model, _as_float(images), torch.from_numpy(labels))
    assert (last["eval_loss"], last["train_accuracy"]) == (on_train["loss"], on_train["accuracy"])
    with pytest.raises(ValueError, match=r"eval_set images have shape \(1, 4, 4\) per image"):
        train("resnet18", images, labels, config, None, eval_set=(test_images[:, :, :4, :4], test_labels))
    with pytest.raises(ValueError, match=r"eval_set labels must lie in \[0, 2\)"):
        train("resnet18", images, labels, config, None, eval_set=(test_images, test_labels + 2))


def test_sample_correctness_is_recorded_and_resumes_with_the_history(tmp_path):
    images, labels = random_labels()
    test_set = random_labels(n=10, seed=7)
    config = TrainConfig(**RESUME_CONFIG)
    kwargs = dict(log=lambda _m: None, eval_set=test_set, record_sample_correctness=True)
    uninterrupted = train("resnet18", images, labels, config, tmp_path / "full.pt", **kwargs)
    correct = uninterrupted.sample_correct
    assert correct.dtype == bool and correct.shape == (3, len(labels))
    # row e: the eval-mode model after epoch e + 1; its mean is that epoch's train accuracy
    assert [row.mean() for row in correct] == [h["train_accuracy"] for h in uninterrupted.history]
    with torch.no_grad():
        predicted = uninterrupted.model(_as_float(images)).argmax(1).numpy()
    assert (correct[-1] == (predicted == labels)).all()
    assert train("resnet18", images, labels, config, None, log=lambda _m: None).sample_correct is None

    def kill_after_first(epoch, _entry):
        if epoch == 1:
            raise Killed

    checkpoint = tmp_path / "killed.pt"
    with pytest.raises(Killed):
        train("resnet18", images, labels, config, checkpoint, on_epoch_end=kill_after_first, **kwargs)
    state = load_verified(checkpoint)
    assert state["format"] == 3 and state["sample_correct"]["packed"].shape == (1, (len(labels) + 7) // 8)
    torch.manual_seed(12345)
    resumed = train("resnet18", images, labels, config, checkpoint, **kwargs)
    assert resumed.resumed_from == 1
    assert_same_state(uninterrupted.model, resumed.model)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in uninterrupted.history]
    assert "test_loss" in resumed.history[0]  # the killed segment's epoch, from the checkpoint
    assert np.array_equal(resumed.sample_correct, correct)


def test_a_checkpoint_without_sample_correctness_is_set_aside_when_recording(tmp_path):
    images, labels = random_labels(n=16, size=8)
    checkpoint = tmp_path / "ck.pt"
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=2, seed=0)
    train("resnet18", images, labels, TrainConfig(**{**config.to_dict(), "max_epochs": 1}), checkpoint,
          log=lambda _m: None)
    result = fresh_start_after_setting_aside(
        tmp_path, checkpoint,
        lambda log: train("resnet18", images, labels, config, checkpoint, log=log, record_sample_correctness=True),
        r"per-sample correctness \(not recorded in the checkpoint, recorded now\)")
    assert result.sample_correct.shape == (2, 16)
    # the other way round resumes (the saved matrix is not needed)
    plain = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    assert plain.resumed_from == 2 and plain.set_aside == [] and plain.sample_correct is None


def test_a_checkpoint_of_an_older_format_is_set_aside(tmp_path):
    images, labels = random_labels(n=16, size=8)
    checkpoint = tmp_path / "ck.pt"
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=1, seed=0)
    train("resnet18", images, labels, config, checkpoint, log=lambda _m: None)
    state = load_verified(checkpoint)
    state["format"] = 2
    for key in ("sample_correct", "eval_fingerprint"):
        del state[key]
    save_verified(checkpoint, state)
    fresh_start_after_setting_aside(
        tmp_path, checkpoint, lambda log: train("resnet18", images, labels, config, checkpoint, log=log),
        r"format 2, expected 3")


def test_three_classes_train_end_to_end():
    from intrinsic.evaluation import evaluate
    from intrinsic.models import final_linear

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 1, 8, 8)).astype(np.uint8)
    labels = np.arange(24) % 3
    config = TrainConfig(learning_rate=1e-3, batch_size=8, max_epochs=2, seed=0, num_classes=3)
    result = train("resnet18", images, labels, config, None, log=lambda _m: None,
                   eval_set=(images[:6], labels[:6] % 2), record_sample_correctness=True)
    assert final_linear(result.model).out_features == 3
    assert result.epochs == 2 and all(np.isfinite(h["train_loss"]) and np.isfinite(h["test_loss"])
                                      for h in result.history)
    on_train = evaluate(result.model, _as_float(images), torch.from_numpy(labels))
    assert on_train["accuracy"] == result.history[-1]["train_accuracy"]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\) \(num_classes=2\), got range \[0, 2\]"):
        train("resnet18", images, labels, TrainConfig(max_epochs=1), None)


def test_initial_model_rebuilds_the_weights_a_run_starts_from():
    """models.initial_model(architecture, seed) is the model train() starts from: after one epoch
    at a vanishing learning rate the trained weights still equal it, and another seed differs."""
    from intrinsic.models import initial_model
    from intrinsic.training import architecture

    images, labels = random_labels()
    config = TrainConfig(learning_rate=1e-12, batch_size=8, max_epochs=1, seed=5, weight_decay=0.0)
    result = train("resnet18", images, labels, config, None, log=lambda _m: None)
    start = initial_model(architecture("resnet18", images.shape[1], config), seed=5)
    for name, value in start.state_dict().items():
        if value.is_floating_point() and "running" not in name:
            assert torch.allclose(value, result.model.state_dict()[name], atol=1e-9), name
    other = initial_model(architecture("resnet18", images.shape[1], config), seed=6)
    assert not torch.allclose(other.conv1.weight, start.conv1.weight)


class Clock:
    """A stand-in for training._clock that advances ``step`` seconds at every reading."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def written_epochs(monkeypatch):
    """The epochs whose checkpoint train() writes, in order."""
    import intrinsic.training as training

    epochs = []
    real_save = training.save_verified

    def save(path, obj):
        epochs.append(obj["epoch"])
        real_save(path, obj)

    monkeypatch.setattr(training, "save_verified", save)
    return epochs


def test_checkpoints_follow_the_interval_and_always_end_with_the_last_epoch(tmp_path, monkeypatch):
    import intrinsic.training as training

    images, labels = random_labels()
    config = TrainConfig(**{**RESUME_CONFIG, "max_epochs": 7, "mode": "fixed_epochs"})
    epochs = written_epochs(monkeypatch)
    # The clock is read at the start and twice per epoch (the interval check and after a
    # write): 2 s per reading; a write is due 5 s after the last one.
    monkeypatch.setattr(training, "_clock", Clock(step=2.0))
    train("resnet18", images, labels, config, tmp_path / "a.pt", log=lambda _m: None, checkpoint_every_s=5.0)
    # start t=2; epoch 1 checks at 4 (2 s: no), epoch 2 at 6 (4 s: no), epoch 3 at 8 (6 s):
    # write, read 10; epoch 4 at 12 (2 s), 5 at 14 (4 s), 6 at 16 (6 s): write; 7: the last
    assert epochs == [3, 6, 7]
    epochs.clear()
    train("resnet18", images, labels, config, tmp_path / "b.pt", log=lambda _m: None, checkpoint_every_s=0)
    assert epochs == [1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="checkpoint_every_s must be >= 0"):
        train("resnet18", images, labels, config, None, log=lambda _m: None, checkpoint_every_s=-1)


def test_a_kill_between_interval_checkpoints_resumes_from_the_last_one_identically(tmp_path, monkeypatch):
    import intrinsic.training as training

    images, labels = random_labels()
    config = TrainConfig(**{**RESUME_CONFIG, "max_epochs": 4, "mode": "fixed_epochs"})
    uninterrupted = train("resnet18", images, labels, config, None, log=lambda _m: None)
    epochs = written_epochs(monkeypatch)
    monkeypatch.setattr(training, "_clock", Clock(step=2.0))

    def kill_after_third(epoch, _entry):
        if epoch == 3:
            raise Killed

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Killed):
        train("resnet18", images, labels, config, checkpoint, log=lambda _m: None, checkpoint_every_s=3.0,
              on_epoch_end=kill_after_third)
    assert epochs == [2]  # epoch 3 was lost with the kill
    resumed = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None, checkpoint_every_s=3.0)
    assert resumed.resumed_from == 2 and resumed.epochs == 4
    assert_same_state(uninterrupted.model, resumed.model)
    assert losses(uninterrupted) == losses(resumed)


@pytest.mark.parametrize("name", ["SIGUSR1", "SIGTERM"])
def test_a_stop_signal_writes_the_checkpoint_at_the_end_of_the_epoch_and_raises(tmp_path, monkeypatch, name):
    import os
    import signal

    from intrinsic.training import Interrupted, stop_on_signals, stop_requested

    images, labels = random_labels()
    config = TrainConfig(**{**RESUME_CONFIG, "max_epochs": 4, "mode": "fixed_epochs"})
    uninterrupted = train("resnet18", images, labels, config, None, log=lambda _m: None)
    epochs = written_epochs(monkeypatch)

    def signal_in_epoch_two(epoch, _entry):  # called after epoch 1's checkpoint decision
        if epoch == 1:
            os.kill(os.getpid(), getattr(signal, name))

    checkpoint = tmp_path / "run.pt"
    messages = []
    before = signal.getsignal(getattr(signal, name))
    with stop_on_signals(), pytest.raises(Interrupted, match=f"stopped on {name} after epoch 2") as stopped:
        train("resnet18", images, labels, config, checkpoint, log=messages.append, checkpoint_every_s=3600,
              on_epoch_end=signal_in_epoch_two)
    assert stopped.value.epoch == 2 and stopped.value.checkpoint == checkpoint
    assert epochs == [2] and any(f"stopped on {name} after epoch 2; checkpoint" in m for m in messages)
    assert signal.getsignal(getattr(signal, name)) == before and stop_requested() is None  # restored
    resumed = train("resnet18", images, labels, config, checkpoint, log=lambda _m: None, checkpoint_every_s=3600)
    assert resumed.resumed_from == 2
    assert_same_state(uninterrupted.model, resumed.model)
    assert losses(uninterrupted) == losses(resumed)


def test_one_device_resolver_for_every_device_option():
    from intrinsic.devices import resolve_device

    model = torch.nn.Linear(2, 2)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(None, model) == torch.device("cpu")  # where the model is
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda"):
        resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda:0")
