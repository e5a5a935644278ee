"""One grid run through the library (runs.run_model), every model of the study, the
model files, and the tidy tables built from the run records."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from intrinsic import grid
from intrinsic.cache import RawDataset, write_cache
from intrinsic.io import write_json
from intrinsic.models import ARCHITECTURES, build_model, load_model, save_model
from intrinsic.runs import checkpoint_path, run_model, train_settings
from intrinsic.splits import make_split
from intrinsic.tables import grid_tables, reference_slice

TRAINING = {
    "max_epochs": 2, "mode": "until_fit", "fit_threshold": 1.0, "fit_patience": 1, "weight_decay": 1e-4, "bf16": True,
    "vgg_pool_size": 7, "device": "cpu",
    "model_settings": {name: {"learning_rate": 1e-3, "batch_size": 8} for name in ARCHITECTURES},
}


def write_squares(folder, split_path):
    """A cache of 60 32x32 images (VGG needs 32 px; class 1 has a bright square) in ``folder``
    and a split of it (N = 16, 20 test images) in ``split_path``; (RawDataset, meta)."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(60):
        image = rng.uniform(0, 0.4, (32, 32))
        if index % 2:
            image[8:24, 8:24] = 1.0
        images.append(image)
        labels.append(index % 2)
    raw = RawDataset("squares", images, np.array(labels), np.arange(60).astype(str), ["plain", "square"])
    meta = write_cache(folder, raw, size=32, channels=1, domain="synthetic")
    split = make_split("squares", raw.labels, raw.groups, raw.classes, n_train=16, n_test=20, seed=0,
                       cache_sha256=meta["sha256"])
    split.save(split_path)
    return raw, meta


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("squares")
    _, meta = write_squares(folder / "cache", folder / "split.npz")
    return folder / "cache", folder / "split.npz", meta


def run_once(tmp_path, dataset, model, training=TRAINING, **evaluation):
    cache, split, _ = dataset
    keys = {"dataset": "squares", "model": model, "noise": 0.0, "variant": "standard", "n_train": 16, "seed": 0}
    config = train_settings(model, training, seed=0, device="cpu")
    options = {"eps": [2 / 255, 8 / 255], "attacks": ["fgsm", "pgd"], "pgd_steps": 2, "knn_k": 5, **evaluation}
    records = run_model(keys, cache, split, config, training_path=tmp_path / "training.json",
                        evaluation_path=tmp_path / "evaluation.json", jacobians_path=tmp_path / "jacobian_norms.npz",
                        model_path=tmp_path / "model.pt", checkpoint_folder=tmp_path / "checkpoints",
                        evaluation=options)
    return keys, config, records["training"], records["evaluation"]


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_every_model_of_the_study_runs_the_grid_path(tmp_path, dataset, model):
    keys, config, trained, evaluated = run_once(tmp_path, dataset, model)
    assert 1 <= trained["epochs"] <= TRAINING["max_epochs"]
    assert trained["settings"]["weight_decay"] == 1e-4 and trained["settings"]["seed"] == 0
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # deleted once the model is saved
    run = evaluated["run"]
    assert {k: run[k] for k in keys} == keys
    assert run["domain"] == "synthetic" and run["n_test"] == 20 and run["epochs"] == trained["epochs"]
    for column in ("train_accuracy", "test_accuracy"):
        assert 0.0 <= run[column] <= 1.0
    assert run["test_loss"] > 0 and run["jacobian_norm"] >= 0 and run["jacobian_norm_train"] >= 0
    assert run["d_repr_twonn"] > 0 and run["d_repr_mle"] > 0
    assert 1 <= run["repr_energy_rank"] <= 16
    assert 1 <= run["filter_energy_rank"] and 1 <= run["filter_update_energy_rank"]
    assert run["num_classes"] == 2 and run["n_excluded"] == 0 and run["n_noise_images"] == 0
    assert run["test_accuracy_real_classes"] == run["test_accuracy"] and np.isnan(run["noise_predicted_fraction"])
    # per-sample Jacobian norms: their means are the run's numbers
    norms = np.load(tmp_path / "jacobian_norms.npz")
    assert norms["test"].shape == (20,) and norms["train"].shape == (16,)
    assert norms["test"].mean() == pytest.approx(run["jacobian_norm"], rel=1e-6)
    assert norms["train"].mean() == pytest.approx(run["jacobian_norm_train"], rel=1e-6)
    # the training record's per-epoch curves, test loss included, are the evaluation's epoch rows
    assert [row["epoch"] for row in evaluated["epochs"]] == list(range(1, trained["epochs"] + 1))
    assert all(row["test_loss"] > 0 and row["pass"] == "final" for row in evaluated["epochs"])
    assert run["training_mode"] == "until_fit" and run["representation_layer"] == "final_linear_input"
    attacks = evaluated["attacks"]
    assert [(a["attack"], a["eps_255"]) for a in attacks] == [("fgsm", 2), ("fgsm", 8), ("pgd", 2), ("pgd", 8)]
    for row in attacks:
        assert row["eps"] == pytest.approx(row["eps_255"] / 255)
        assert row["loss_penalty"] == pytest.approx(row["attacked_loss"] - row["clean_loss"])
        assert row["clean_loss"] == pytest.approx(run["test_loss"])
        assert {k: row[k] for k in keys} == keys
    # the JSON on disk is what the function returned
    assert json.loads((tmp_path / "evaluation.json").read_text()) == json.loads(json.dumps(evaluated))


def test_a_model_that_fits_reports_full_training_accuracy(tmp_path, dataset):
    training = {**TRAINING, "max_epochs": 20}
    _, _, trained, evaluated = run_once(tmp_path, dataset, "resnet18", training, attacks=["fgsm"])
    assert trained["fitted"] and evaluated["run"]["fitted"]
    assert evaluated["run"]["train_accuracy"] == 1.0
    assert trained["history"][-1]["train_accuracy"] == 1.0
    # the square is easy: the test set is classified too, and attacks cost loss
    assert evaluated["run"]["test_accuracy"] >= 0.9
    assert all(row["loss_penalty"] > 0 for row in evaluated["attacks"])


def test_fixed_epochs_and_representation_layer_reach_the_run_record(tmp_path, dataset):
    training = {**TRAINING, "mode": "fixed_epochs", "max_epochs": 3}
    _, config, trained, evaluated = run_once(tmp_path, dataset, "resnet18", training, attacks=["fgsm"],
                                             representation_layer="last_conv_block")
    assert config.mode == "fixed_epochs" and trained["settings"]["mode"] == "fixed_epochs"
    assert trained["epochs"] == len(trained["history"]) == 3  # the squares fit in 1-2 epochs
    run = evaluated["run"]
    assert run["training_mode"] == "fixed_epochs" and run["epochs"] == 3
    assert run["fitted"] == (trained["history"][-1]["train_accuracy"] >= 1.0)
    assert run["representation_layer"] == "last_conv_block" and run["d_repr_twonn"] > 0


def test_rerun_is_deterministic_on_cpu(tmp_path, dataset):
    first = run_once(tmp_path / "a", dataset, "resnet18", attacks=["fgsm"])[3]["run"]
    second = run_once(tmp_path / "b", dataset, "resnet18", attacks=["fgsm"])[3]["run"]
    for column in ("train_loss", "test_loss", "test_accuracy", "d_repr_twonn", "jacobian_norm"):
        assert first[column] == second[column], column


def test_saved_model_rebuilds_the_same_function(tmp_path):
    torch.manual_seed(0)
    model = build_model("vgg13", 1, 2, vgg_pool_size=1).eval()
    architecture = {"name": "vgg13", "in_channels": 1, "num_classes": 2, "vgg_pool_size": 1}
    save_model(tmp_path / "m.pt", model, architecture)
    loaded, saved_architecture = load_model(tmp_path / "m.pt")
    assert saved_architecture == architecture and not loaded.training
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_vgg_pool_size_only_changes_the_first_classifier_layer():
    standard, compact = build_model("vgg13", 1, 2), build_model("vgg13", 1, 2, vgg_pool_size=1)
    assert standard.classifier[0].in_features == 512 * 7 * 7
    assert compact.classifier[0].in_features == 512 and compact.avgpool.output_size == (1, 1)
    assert [type(m) for m in standard.features] == [type(m) for m in compact.features]
    assert compact(torch.rand(2, 1, 32, 32)).shape == (2, 2)
    with pytest.raises(ValueError, match="vgg_pool_size"):
        build_model("vgg13", 1, 2, vgg_pool_size=0)


def test_train_settings_come_from_the_config():
    config = train_settings("vgg16",
                            {**TRAINING, "model_settings": {"vgg16": {"learning_rate": 2e-5, "batch_size": 6}}},
                            seed=3, device="auto")
    assert (config.learning_rate, config.batch_size, config.seed) == (2e-5, 6, 3)
    assert config.mode == "until_fit"
    assert train_settings("vgg16", {**TRAINING, "mode": "fixed_epochs"}, seed=3, device="cpu").mode == "fixed_epochs"
    assert config.device == "auto"  # resolved where it trains: devices.resolve_device
    with pytest.raises(KeyError):
        train_settings("resnet50", {**TRAINING, "model_settings": {}}, seed=0, device="cpu")


def test_checkpoint_name_tracks_the_settings_that_change_results(tmp_path):
    base = train_settings("resnet18", TRAINING, seed=0, device="cpu")
    same = train_settings("resnet18", {**TRAINING, "max_epochs": 50}, seed=0, device="cuda")
    other_seed = train_settings("resnet18", TRAINING, seed=1, device="cpu")
    other_lr = train_settings("resnet18",
                              {**TRAINING, "model_settings": {"resnet18": {"learning_rate": 1e-4, "batch_size": 8}}},
                              seed=0, device="cpu")
    other_mode = train_settings("resnet18", {**TRAINING, "mode": "fixed_epochs"}, seed=0, device="cpu")
    assert checkpoint_path(tmp_path, base) == checkpoint_path(tmp_path, same)
    assert len({checkpoint_path(tmp_path, c) for c in (base, other_seed, other_lr, other_mode)}) == 4


# ------------------------------------------------------------------------------ tidy tables
def evaluation_record(dataset, model, n_train, seed, test_loss, noise="0.0", variant="standard"):
    keys = {"dataset": dataset, "model": model, "noise": noise, "variant": variant, "n_train": str(n_train),
            "seed": str(seed)}
    run = {**keys, "domain": "natural", "fitted": True, "test_loss": test_loss, "test_accuracy": 0.9,
           "d_repr_twonn": 3.0, "d_repr_mle": 2.5, "jacobian_norm": 0.1}
    attacks = [{**keys, "attack": "fgsm", "eps": e / 255, "eps_255": e, "loss_penalty": e * test_loss}
               for e in (1, 8)]
    epochs = [{**keys, "pass": "final", "epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": 0.9,
               "test_loss": 1.0, "test_accuracy": 0.8} for epoch in (1, 2)]
    return {"run": run, "attacks": attacks, "epochs": epochs}


def properties_table(noise_levels=(0.0,)):
    rows = [{"dataset": d, "noise": noise, "n_train": n, "seed": s, "classes": "a vs b", "d_mle": d_mle + noise,
             "d_twonn": d_mle + 1, "data_energy_rank": 5 + 10 * noise, "data_effective_rank": 4.0,
             "background_fraction": 0.75 if noise else np.nan,
             "k_f": k_f, "k_f_255": k_f / 255, "kf_zero_distance_pairs": 0, "d_true": np.nan, "domain": "natural"}
            for d, d_mle, k_f in (("digits", 10.0, 2.0), ("faces", 20.0, 5.0))
            for noise in noise_levels for n in (50, 100) for s in (0, 1)]
    return pd.DataFrame(rows)


KEYS = list(grid.AXIS_TYPES)


def test_grid_tables_join_runs_with_the_properties_of_their_split(tmp_path):
    paths = []
    for index, (dataset, model, n, seed) in enumerate(
            [(d, m, n, s) for d in ("faces", "digits") for m in ("vgg13", "resnet18")
             for n in (100, 50) for s in (0, 1)]):
        path = tmp_path / f"{index}.json"
        write_json(path, evaluation_record(dataset, model, n, seed, test_loss=1.0 + index))
        paths.append(path)
    runs, attacks, epochs = grid_tables(paths, properties_table())
    assert len(runs) == 16 and len(attacks) == 32 and len(epochs) == 32
    assert list(runs.columns[:6]) == KEYS
    assert runs["n_train"].dtype.kind == "i" and runs["seed"].dtype.kind == "i" and runs["noise"].dtype.kind == "f"
    assert runs[KEYS].equals(runs[KEYS].sort_values(KEYS))
    assert list(epochs.columns[:6]) == KEYS and set(epochs["domain"]) == {"natural"}
    digits = runs[runs["dataset"] == "digits"]
    assert (digits["d_mle"] == 10.0).all() and (digits["k_f"] == 2.0).all()
    assert (runs.loc[runs["dataset"] == "faces", "k_f"] == 5.0).all()
    # every attack row carries its run's test loss and its split's K_F
    merged = attacks.merge(runs[KEYS + ["test_loss"]], on=KEYS, suffixes=("", "_run"))
    assert np.allclose(merged["test_loss"], merged["test_loss_run"])
    assert np.allclose(merged["loss_penalty"], merged["eps_255"] * merged["test_loss"])
    assert set(attacks.loc[attacks["dataset"] == "faces", "k_f"]) == {5.0}


def test_grid_tables_name_runs_without_properties(tmp_path):
    write_json(tmp_path / "r.json", evaluation_record("digits", "resnet18", 75, 0, 1.0))
    with pytest.raises(ValueError, match="no dataset properties.*'n_train': 75"):
        grid_tables([tmp_path / "r.json"], properties_table())


def test_a_new_axis_value_reaches_every_table_as_a_typed_column(tmp_path):
    """Records carry wildcards as strings; every table types each axis, and a run joins the
    properties of its split at its own noise level."""
    paths = []
    for index, (noise, variant) in enumerate([("0.0", "standard"), ("0.3", "standard"), ("0.3", "noise_class")]):
        record = evaluation_record("digits", "resnet18", 50, 0, 1.0, noise=noise, variant=variant)
        paths.append(tmp_path / f"{index}.json")
        write_json(paths[-1], record)
    runs, attacks, epochs = grid_tables(paths, properties_table((0.0, 0.3)))
    for table in (runs, attacks, epochs):
        assert table["noise"].dtype.kind == "f" and set(table["noise"]) == {0.0, 0.3}
        assert set(table["variant"]) == {"standard", "noise_class"}
    assert runs.set_index(["noise", "variant"])["d_mle"].to_dict() == {
        (0.0, "standard"): 10.0, (0.3, "standard"): 10.3, (0.3, "noise_class"): 10.3}
    assert runs.set_index(["noise", "variant"])["data_energy_rank"][(0.3, "noise_class")] == 8.0
    # a CSV round trip keeps the axis types
    runs.to_csv(tmp_path / "runs.csv", index=False)
    again = pd.read_csv(tmp_path / "runs.csv")
    assert again["noise"].dtype.kind == "f" and again["seed"].dtype.kind == "i"
    # the reference slice of the paper's analyses: clean and standard only
    reference = reference_slice(runs, {"noise": 0.0, "variant": "standard"})
    assert len(reference) == 1 and reference.loc[0, "noise"] == 0.0


def test_an_axis_that_cannot_be_typed_is_named(tmp_path):
    write_json(tmp_path / "r.json", evaluation_record("digits", "resnet18", 50, 0, 1.0, noise="loud"))
    with pytest.raises(ValueError, match="axis column 'noise' cannot be read as float"):
        grid_tables([tmp_path / "r.json"], properties_table())
