"""App. D.1's attacked examples: the chosen runs, the record (the attacked image stored exactly),
the figure, and that records without the field still make the tables."""

import base64
import json

import numpy as np
import pytest
import torch
from torch import nn

from intrinsic.attacked import (
    RECORD_KEY, chosen_runs, decode_image, encode_image, exact_uint8, select_examples,
)
from intrinsic.cache import RawDataset, write_cache
from intrinsic.evaluation import attacked_examples, fgsm
from intrinsic.examples import figure_attacked_examples, load_examples
from intrinsic.io import read_json, write_json
from intrinsic.models import initial_model
from intrinsic.runs import _split_arrays, evaluate_trained
from intrinsic.splits import make_split
from intrinsic.tables import grid_tables
from test_grid import evaluation_record, properties_table
from helpers import config_file, snakemake

SIDE = 8


def linear_model(seed=0):
    """flatten + linear, 2 classes, with |W1 - W0| >= 0.2 everywhere: the input gradient of the
    cross-entropy is (p1 - y1) (W1 - W0), so its sign is known in closed form."""
    rng = np.random.default_rng(seed)
    gap = rng.choice([-1.0, 1.0], SIDE * SIDE) * rng.uniform(0.2, 1.0, SIDE * SIDE)
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(np.stack([np.zeros_like(gap), gap]), dtype=torch.float32) * 0.01)
        model[1].bias.copy_(torch.tensor([0.1, -0.1]))
    return model, gap


def uint8_test_set(n=10, seed=1):
    """uint8 (n, 1, 8, 8) images with pixels at both ends of the range (where FGSM clips)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 1, SIDE, SIDE)).astype(np.uint8)
    images[:, 0, 0, :4] = [0, 1, 254, 255]
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1])[:n]
    return images, labels, np.arange(100, 100 + n)  # cache indices


def test_stored_attacked_image_is_fgsm_exactly_for_uint8_images():
    model, gap = linear_model()
    images, labels, index = uint8_test_set()
    record = attacked_examples(model, images, labels, index, n=4, eps_255=2)
    assert record["attack"] == "fgsm" and record["eps_255"] == 2.0 and record["eps"] == 2 / 255
    examples = record["examples"]
    # both classes, alternately, in test order: class 0 at 0, 1, 2; class 1 at 3, 5
    assert [e["test_index"] for e in examples] == [0, 3, 1, 5]
    assert [e["cache_index"] for e in examples] == [100, 103, 101, 105]
    assert [e["label"] for e in examples] == [0, 1, 0, 1]
    chosen = [e["test_index"] for e in examples]
    x = torch.from_numpy(images[chosen]).float() / 255
    adv = fgsm(model, x, torch.from_numpy(labels[chosen]), 2 / 255).numpy()
    for row, example in enumerate(examples):
        stored = example["attacked_image"]
        assert stored["encoding"] == "uint8" and stored["shape"] == [1, SIDE, SIDE]
        decoded = decode_image(stored)
        assert decoded.dtype == np.uint8
        assert len(base64.b64decode(stored["data"])) == SIDE * SIDE  # one byte a pixel
        # evaluation.fgsm's output is on the 1/255 grid and the stored bytes are it, exactly
        assert np.abs(adv[row] * 255 - decoded).max() < 1e-3
        assert np.array_equal(np.rint(adv[row] * 255).astype(np.uint8), decoded)
        # ... and it is clip(u + 2 sign((p1 - y1)(W1 - W0)), 0, 255), computed by hand
        u = images[chosen[row]].astype(np.int64)
        logits = model(torch.from_numpy(images[chosen[row]][None]).float() / 255)[0].detach().double().numpy()
        p1 = np.exp(logits[1]) / np.exp(logits).sum()
        sign = np.sign((p1 - example["label"]) * gap).reshape(u.shape)
        assert np.array_equal(decoded, np.clip(u + 2 * sign, 0, 255).astype(np.uint8))
        # the predictions are the model's on the clean and on fgsm's image
        for name, image in (("clean", x[row]), ("attacked", torch.from_numpy(adv[row]))):
            with torch.no_grad():
                p = torch.softmax(model(image[None]), dim=1)[0]
            assert example[f"{name}_prediction"] == int(p.argmax())
            assert example[f"{name}_probability"] == pytest.approx(float(p.max()), abs=1e-7)
    assert decoded[0, 0, 0] in (0, 2) and decoded[0, 0, 3] in (253, 255)  # clipped at the ends


def test_a_non_integer_budget_stores_float16():
    model, _ = linear_model()
    images, labels, index = uint8_test_set()
    record = attacked_examples(model, images, labels, index, n=2, eps_255=0.5)
    chosen = [e["test_index"] for e in record["examples"]]
    x = torch.from_numpy(images[chosen]).float() / 255
    adv = fgsm(model, x, torch.from_numpy(labels[chosen]), 0.5 / 255).numpy()
    for row, example in enumerate(record["examples"]):
        decoded = decode_image(example["attacked_image"])
        assert example["attacked_image"]["encoding"] == "float16" and decoded.dtype == np.float16
        assert np.abs(decoded.astype(np.float64) - adv[row]).max() <= 2.5e-4
    assert exact_uint8(2) and exact_uint8(2.0) and not exact_uint8(0.5)


def test_an_image_off_the_1_255_grid_is_not_stored_as_uint8():
    with pytest.raises(ValueError, match="not on the 1/255 grid"):
        encode_image(np.full((1, 2, 2), 0.5 / 255), eps_255=2)
    with pytest.raises(ValueError, match="not on the 1/255 grid"):
        encode_image(np.full((1, 2, 2), 256 / 255), eps_255=2)  # on the grid, but past 255
    with pytest.raises(ValueError, match="cannot decode"):
        decode_image({"encoding": "uint8", "shape": [3, 3], "data": "AAAA"}, "record x")


def test_selection_alternates_the_classes_and_checks_n():
    assert select_examples([1, 1, 1, 0], 3) == [3, 0, 1]  # class 0 first, then class 1's next ones
    assert select_examples([0, 1], 0) == []
    with pytest.raises(ValueError, match="n = 5 must lie in 0..4"):
        select_examples([0, 1, 0, 1], 5)


def test_chosen_runs_take_one_run_per_dataset_of_a_listed_domain():
    axes = {"dataset": ["ct", "digits", "mr"], "model": ["vgg13", "resnet18"], "noise": [0.1, 0.0],
            "variant": ["noise_class", "standard"], "n_train": [64, 128, 32], "seed": [2, 0]}
    domain_of = {"ct": "medical", "digits": "natural", "mr": "medical"}
    expected = [{"dataset": name, "model": "vgg13", "noise": 0.0, "variant": "standard", "n_train": 128, "seed": 2}
                for name in ("ct", "mr")]
    runs = chosen_runs(axes, domain_of, ["medical"])
    assert runs == expected and [list(run) for run in runs] == [list(axes)] * 2  # keys in axis order
    assert [run["dataset"] for run in chosen_runs(axes, domain_of, ["natural", "medical"])] == ["ct", "digits", "mr"]
    assert chosen_runs(axes, domain_of, ["synthetic"]) == []
    # a grid without the preferred values, and an axis a later config adds: their first values
    other = {"dataset": ["ct"], "noise": [0.2, 0.1], "variant": ["noise_class"], "width": [3, 1], "n_train": [8]}
    assert chosen_runs(other, domain_of, ["medical"]) == [
        {"dataset": "ct", "noise": 0.2, "variant": "noise_class", "width": 3, "n_train": 8}]


def test_the_workflow_draws_the_chosen_runs_when_enabled(repo, tmp_path):
    """Dry-run of rule all: the figure is among its jobs and reads one record per medical dataset,
    of the first model, the largest N and the first seed."""
    config = {"datasets": ["pneumonia_28", "mnist_subset", "breast_28"],
              "splits": {"n_train": [32, 64], "seeds": [1, 0]}, "training": {"models": ["vgg13", "resnet18"]},
              "evaluation": {"attacked_examples": {"n": 2, "eps_255": 2, "domains": ["medical"]}}}
    result = snakemake(repo, tmp_path, "-n", "--configfile", config_file(tmp_path, config))
    lines = result.stdout.splitlines()
    start = lines.index("rule figure_attacked_examples:")
    inputs = next(line for line in lines[start:] if line.strip().startswith("input: ")).split("input: ")[1].split(", ")
    assert [path for path in inputs if path.endswith(".json")] == [
        f"results/runs/{name}/vgg13/noise0.0/standard/n64_seed1/evaluation.json"
        for name in ("pneumonia_28", "breast_28")]
    assert {path for path in inputs if not path.endswith(".json")} == {
        "results/cache/pneumonia_28", "results/cache/breast_28", "results/splits/pneumonia_28/n64_seed1.npz",
        "results/splits/breast_28/n64_seed1.npz"}


# ------------------------------------------------------------------------------------ the figure
def write_tiny(folder):
    """A 16x16 cache of 24 images (class 1 brighter) with a split (N = 8, 8 test images)."""
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 0.5, (16, 16)) + 0.4 * (i % 2) for i in range(24)]
    raw = RawDataset("tiny", images, np.arange(24) % 2, np.arange(24).astype(str), ["dark", "bright"])
    meta = write_cache(folder / "cache", raw, size=16, channels=1, domain="medical")
    split = make_split("tiny", raw.labels, raw.groups, raw.classes, n_train=8, n_test=8, seed=0,
                       cache_sha256=meta["sha256"])
    split.save(folder / "split.npz")
    return folder / "cache", folder / "split.npz", split


def hand_made_record(path, split, cache_folder, shift=2):
    """An evaluation record with two attacked examples: each clean image + ``shift`` levels, clipped."""
    from intrinsic.cache import load_cache

    order = np.argsort(split.test_idx)
    index, labels = split.test_idx[order], split.test_y[order]
    first = [int(np.flatnonzero(labels == cls)[0]) for cls in (0, 1)]
    clean = load_cache(cache_folder).read_images(index[first]).astype(np.int64)
    examples = [{"test_index": pos, "cache_index": int(index[pos]), "label": int(labels[pos]),
                 "clean_prediction": int(labels[pos]), "clean_probability": 0.9,
                 "attacked_prediction": 1 - int(labels[pos]) if k == 0 else int(labels[pos]),
                 "attacked_probability": 0.6,
                 "attacked_image": encode_image(np.clip(clean[k] + shift, 0, 255) / 255, 2)}
                for k, pos in enumerate(first)]
    run = {"dataset": "tiny", "domain": "medical", "model": "resnet18", "noise": 0.0, "variant": "standard",
           "n_train": 8, "seed": 0}
    write_json(path, {"run": run, "attacks": [], "epochs": [],
                      RECORD_KEY: {"attack": "fgsm", "eps_255": 2.0, "eps": 2 / 255, "examples": examples}})


def test_figure_draws_clean_and_attacked_on_one_grey_scale(tmp_path, monkeypatch):
    cache, split_path, split = write_tiny(tmp_path)
    hand_made_record(tmp_path / "evaluation.json", split, cache)
    row = load_examples(tmp_path / "evaluation.json", cache, split_path)
    assert row["classes"] == ["dark", "bright"] and row["eps_255"] == 2.0
    assert [e["clean"].dtype for e in row["examples"]] == [np.uint8, np.uint8]
    drawn = {}
    import intrinsic.examples as examples

    def keep(fig, png, pdf):
        drawn["fig"] = fig
        fig.savefig(png)
        fig.savefig(pdf)

    monkeypatch.setattr(examples, "save_figure", keep)
    summary = figure_attacked_examples([row, row], tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0
    assert len(summary) == 4 and list(summary["true_class"][:2]) == ["dark", "bright"]
    assert list(summary["flipped"][:2]) == [True, False]
    assert list(summary["attacked_prediction"][:2]) == ["bright", "bright"]
    assert summary["max_change_255"].max() == 2.0
    axes = drawn["fig"].axes
    assert len(axes) == 2 * 2 * 3  # 2 rows x 2 examples x (clean, attacked, difference): n <= 4
    for ax in axes[:2] + axes[3:5]:  # clean and attacked: the fixed 0..255 grey scale
        image = ax.images[0]
        assert image.get_clim() == (0, 255) and image.get_cmap().name == "gray"
    assert axes[2].images[0].get_clim() == (-2.0, 2.0)  # the difference, amplified to +-eps
    assert "true: dark" in axes[0].get_title() and "FGSM 2/255" in axes[1].get_title()
    assert "bright (0.60)" in axes[1].get_title() and axes[1].title.get_color() == "tab:red"
    summary = figure_attacked_examples([row], tmp_path / "g.png", tmp_path / "g.pdf", difference=False)
    assert len(drawn["fig"].axes) == 4
    # RGB: each channel's 0..255 is drawn as 0..1, the difference as 0.5 +- 0.5 at +-eps
    rgb = {**row, "examples": [{**row["examples"][0], "clean": np.repeat(row["examples"][0]["clean"], 3, axis=0),
                                "attacked": np.repeat(row["examples"][0]["attacked"], 3, axis=0)}]}
    figure_attacked_examples([rgb], tmp_path / "h.png", tmp_path / "h.pdf")
    clean, attacked, change = (ax.images[0].get_array() for ax in drawn["fig"].axes)
    expected = np.moveaxis(rgb["examples"][0]["clean"], 0, -1) / 255
    assert clean.shape == (16, 16, 3) and np.allclose(clean, expected)
    assert np.allclose(attacked, np.minimum(expected + 2 / 255, 1.0))
    assert set(np.unique(np.round(change, 6))) <= {0.5, 1.0}  # +eps, or 0 where clipped at 255


def test_figure_inputs_must_match_the_cache_and_split(tmp_path):
    cache, split_path, split = write_tiny(tmp_path)
    hand_made_record(tmp_path / "far.json", split, cache, shift=3)
    with pytest.raises(ValueError, match="3/255 from the cache's image, more than eps = 2/255"):
        load_examples(tmp_path / "far.json", cache, split_path)
    record = read_json(tmp_path / "far.json")
    record[RECORD_KEY]["examples"][0]["cache_index"] = int(split.train_idx[0])
    write_json(tmp_path / "train.json", record)
    with pytest.raises(ValueError, match="train.json: attacked example 0: cache index .* not in the test set"):
        load_examples(tmp_path / "train.json", cache, split_path)
    del record[RECORD_KEY]
    write_json(tmp_path / "plain.json", record)
    with pytest.raises(ValueError, match="plain.json: the record has no 'attacked_examples'"):
        load_examples(tmp_path / "plain.json", cache, split_path)


# --------------------------------------------------------------------- the run and its tables
def test_an_evaluation_records_examples_only_when_asked_and_the_tables_ignore_them(tmp_path):
    """evaluate_trained (what run_model calls with the rule's evaluation params; without the option
    its default is None) on an untrained ResNet-18: the field only with n > 0, the rest of the
    record the same, and the tables alike."""
    cache, split_path, _ = write_tiny(tmp_path)
    keys = {"dataset": "tiny", "model": "resnet18", "noise": 0.0, "variant": "standard", "n_train": 8, "seed": 0}
    built = {"name": "resnet18", "in_channels": 1, "num_classes": 2, "vgg_pool_size": 1}
    model = initial_model(built, 0)
    arrays, meta = _split_arrays(cache, split_path, ("train", "test"))
    trained = {"epochs": 0, "fitted": False, "resumed_from": None, "train_seconds": 0.0, "device": "cpu",
               "history": [], "settings": {"max_epochs": 1, "mode": "until_fit", "learning_rate": 1e-3,
                                           "batch_size": 8, "seed": 0}}
    options = {"eps": [2 / 255], "attacks": ["fgsm"], "pgd_steps": 1, "knn_k": 5}
    records = {}
    for name, extra in (("off", {"attacked_examples": {"n": 0, "eps_255": 2}}),
                        ("chosen", {"attacked_examples": {"n": 3, "eps_255": 2}})):
        records[name] = evaluate_trained(keys, model, built, trained, arrays, meta, tmp_path / f"{name}.json",
                                         **options, **extra)
        assert read_json(tmp_path / f"{name}.json") == json.loads(json.dumps(records[name]))
    assert RECORD_KEY not in records["off"] and set(records["off"]) == {"run", "attacks", "epochs"}
    stored = records["chosen"][RECORD_KEY]
    assert [e["label"] for e in stored["examples"]] == [0, 1, 0] and stored["eps_255"] == 2.0
    assert [e["cache_index"] for e in stored["examples"]] == [int(arrays["test"][2][e["test_index"]])
                                                              for e in stored["examples"]]
    assert records["chosen"]["attacks"] == records["off"]["attacks"]
    row = load_examples(tmp_path / "chosen.json", cache, split_path)
    assert all(e["max_change_255"] == 2.0 for e in row["examples"])  # every image has pixels moved by the budget
    # the tables: a record with the field gives the same rows and columns as one without
    plain = evaluation_record("digits", "resnet18", 50, 0, 1.0)
    write_json(tmp_path / "a.json", plain)
    write_json(tmp_path / "b.json", {**plain, RECORD_KEY: stored})
    without = grid_tables([tmp_path / "a.json"], properties_table())
    with_field = grid_tables([tmp_path / "b.json"], properties_table())
    for table, other in zip(without, with_field):
        assert table.equals(other)
