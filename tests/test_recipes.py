"""Dataset recipes (config/datasets/*.yaml) and the workflow on a real-format dataset."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from fixtures_real import write_medmnist, write_nifti, write_png
from helpers import config_file, job_counts, snakemake
from intrinsic.cache import load_cache, write_cache
from intrinsic.properties import dataset_sharpness
from intrinsic.sources import load_source
from intrinsic.splits import class_pair_order

# Recipes whose source the study's code reads through torchvision or MedMNIST, with no
# preparation of the authors' own to follow.
NO_AUTHORS_PREPARATION = {"mnist", "cifar10", "svhn", "pneumoniamnist", "imagenet", "chexpert_labelings",
                          "rsna_ih_ct_labelings"}
STUDY = {"mnist", "cifar10", "svhn", "imagenet", "brats", "dbc", "prostate_mri", "rsna_ih_ct", "chexpert", "mura",
         "oai"}


def recipes(repo):
    return sorted((repo / "config" / "datasets").glob("*.yaml"))


def merged(repo, recipe_path):
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    recipe = yaml.safe_load(recipe_path.read_text())
    assert set(recipe) == {"dataset_catalog"}, f"{recipe_path.name}: a recipe holds dataset_catalog entries only"
    config["dataset_catalog"].update(recipe["dataset_catalog"])
    return config, recipe


def test_every_dataset_of_the_study_has_a_recipe(repo):
    names = set()
    for path in recipes(repo):
        names |= set(yaml.safe_load(path.read_text())["dataset_catalog"])
    assert STUDY <= names
    assert any(yaml.safe_load(p.read_text())["dataset_catalog"].popitem()[1]["source"]["type"] == "medmnist"
               for p in recipes(repo))


def test_every_recipe_validates_against_the_schema(repo):
    schema = str(repo / "config" / "config.schema.yaml")
    for path in recipes(repo):
        config, recipe = merged(repo, path)
        validate(config, schema)
        entries = recipe["dataset_catalog"]
        if len(entries) == 1:  # one dataset: the file is named after it
            assert [path.stem] == list(entries)
        else:  # several labelings of one data set (App. C.3): <data set>_labelings.yaml
            assert {entry.get("labeling_of") for entry in entries.values()} == {path.stem.removesuffix("_labelings")}
        assert "/path/to/" in path.read_text(), f"{path.name}: document the expected layout with /path/to placeholders"
        assert "As the authors" in path.read_text() or path.stem in NO_AUTHORS_PREPARATION, \
            f"{path.name}: say how the task matches the study's preparation"


@pytest.mark.parametrize(
    ("recipe", "edit", "culprit"),
    [
        ("brats", lambda s: s.pop("root"), "'root' is a required property"),
        ("rsna_ih_ct", lambda s: s.update(modality_lt=s.pop("modality_lut")), "modality_lt"),
        ("chexpert", lambda s: s.update(on_error="ignore"), "ignore"),
        ("oai", lambda s: s.update(classes=["2"]), "classes"),
        ("mnist", lambda s: s.update(dataset="MNIST2"), "MNIST2"),
        ("brats", lambda s: s.update(labels_csv="/x.csv"), "oneOf"),
    ],
)
def test_misspelled_or_missing_options_are_schema_errors(repo, recipe, edit, culprit):
    config, _ = merged(repo, repo / "config" / "datasets" / f"{recipe}.yaml")
    config = copy.deepcopy(config)
    edit(config["dataset_catalog"][recipe]["source"])
    with pytest.raises(WorkflowError) as error:
        validate(config, str(repo / "config" / "config.schema.yaml"))
    assert culprit in str(error.value)


def test_recipes_load_as_configfiles(repo, tmp_path):
    names = ",".join(sorted(STUDY | {"pneumoniamnist"}))
    output = snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--configfile", *map(str, recipes(repo)),
                       "--config", f"datasets=[{names}]").stdout
    counts = job_counts(output)
    assert counts["prepare_dataset"] == len(STUDY) + 1


def test_workflow_prepares_a_medmnist_file_and_measures_its_properties(repo, tmp_path):
    arrays = write_medmnist(tmp_path / "data" / "pneumoniamnist_64.npz", {"train": 60, "val": 10, "test": 30}, side=64)
    source = {"type": "medmnist", "npz": str(tmp_path / "data" / "pneumoniamnist_64.npz"),
              "classes": {"normal": [0], "pneumonia": [1]}}
    config = {
        "image": {"size": 16, "channels": 1},
        "splits": {"n_train": [20, 40], "n_test": 20, "seeds": [0]},
        "properties": {"knn_k": 5, "sharpness_samples": 20, "threads": 1},
        "prepare": {"threads": 2},
        "datasets": ["pneumonia"],
        "dataset_catalog": {"pneumonia": {"domain": "medical", "source": source}},
    }
    # the target goes first: --configfile takes every following word as a file
    snakemake(repo, tmp_path, "results/tables/dataset_properties.csv", "--cores", "2",
              "--configfile", config_file(tmp_path, config, "run.yaml"))
    cache = load_cache(tmp_path / "results/cache/pneumonia", verify=True)
    labels = np.concatenate([arrays[f"{s}_labels"][:, 0] for s in ("train", "val", "test")])
    np.testing.assert_array_equal(cache.labels, labels)
    assert cache.images.shape == (100, 1, 16, 16)
    assert cache.meta["classes"] == ["normal", "pneumonia"]
    assert cache.meta["provenance"]["type"] == "medmnist"
    # the rule (2 workers) wrote exactly what the library writes in-process, serially
    reference = write_cache(tmp_path / "reference", load_source("pneumonia", source), 16, 1, "medical")
    assert reference["sha256"] == cache.meta["sha256"]
    table = pd.read_csv(tmp_path / "results/tables/dataset_properties.csv")
    assert len(table) == 2 and set(table["dataset"]) == {"pneumonia"}
    assert (table["d_twonn"] > 0).all() and (table["k_f"] > 0).all()
    log = (tmp_path / "results/logs/prepare_dataset/pneumonia.log").read_text()
    assert "reading source type medmnist with 2 worker(s)" in log


def test_prepare_threads_has_a_schema_default(repo):
    config = {"dataset_catalog": {"digits": {"domain": "natural", "source": {"type": "sklearn_digits"}}}}
    validate(config, str(repo / "config" / "config.schema.yaml"))
    assert config["prepare"] == {"threads": 2}
    with pytest.raises(WorkflowError, match="0 is less than the minimum"):
        validate({**config, "prepare": {"threads": 0}}, str(repo / "config" / "config.schema.yaml"))


def test_drawn_pairs_cache_decodes_only_the_pairs_the_grid_uses(repo, tmp_path):
    """read_classes: drawn_pairs (ImageNet's 1000 synsets): the cache holds only the folders of
    the first P = max(max seed + 1, sharpness_pairings) pairs, and the seeds and Fig. 1 get the
    same pairs and the same K_F as from a cache of every class folder."""
    rng = np.random.default_rng(0)
    folders = [f"n{index:08d}" for index in range(12)]
    for folder in folders:
        for image in range(6):
            write_png(tmp_path / "train" / folder / f"{folder}_{image}.png", rng.integers(0, 256, (8, 8)))
    source = {"type": "image_folder", "root": str(tmp_path / "train")}
    config = {
        "image": {"size": 8, "channels": 1},
        "splits": {"n_train": [4], "n_test": 4, "seeds": [0, 1]},
        "properties": {"knn_k": 3, "sharpness_samples": 12, "sharpness_pairings": 3, "threads": 1},
        "datasets": ["net"],
        "dataset_catalog": {"net": {"domain": "natural", "read_classes": "drawn_pairs", "source": source}},
    }
    snakemake(repo, tmp_path, "results/properties/net/label_sharpness.json", "results/splits/net/n4_seed1.npz",
              "--cores", "1", "--configfile", config_file(tmp_path, config, "run.yaml"))
    cache = load_cache(tmp_path / "results/cache/net")
    order = class_pair_order("net", folders, np.arange(len(folders)))
    needed = sorted({folders[i] for pair in order[:3] for i in pair})
    assert cache.meta["classes"] == folders  # every synset is a class, only the needed ones hold images
    assert sorted(name for name, count in cache.meta["class_counts"].items() if count) == needed
    assert len(needed) < len(folders)
    # the same pairs and K_F as a cache of all twelve folders
    full = write_cache(tmp_path / "full", load_source("net", source), size=8, channels=1, domain="natural")
    reference = dataset_sharpness(load_cache(tmp_path / "full"), seeds=[0, 1], pairings=3, samples=12)
    drawn = json.loads((tmp_path / "results/properties/net/label_sharpness.json").read_text())
    records = drawn["pairs"]
    assert [(r["classes"], r["k_f"]) for r in records] == [(r["classes"], r["k_f"]) for r in reference]
    assert full["n_images"] == 72 and cache.meta["n_images"] == 6 * len(needed)
    split = np.load(tmp_path / "results/splits/net/n4_seed1.npz")
    assert [str(c) for c in split["classes"]] == [folders[i] for i in order[1]]
    log = (tmp_path / "results/logs/prepare_dataset/net.log").read_text()
    assert f"reading the {len(needed)} class folders of the first 3 class pairs" in log


def recipe_source(repo, name, **paths):
    """The recipe's source block with its /path/to placeholders replaced by ``paths``."""
    recipe = yaml.safe_load((repo / "config" / "datasets" / f"{name}.yaml").read_text())
    source = dict(recipe["dataset_catalog"][name]["source"])
    assert set(paths) <= set(source), f"{name}: options {sorted(set(paths) - set(source))} are not in the recipe"
    return {**source, **{key: str(value) for key, value in paths.items()}}


def test_brats_recipe_reads_the_slices_the_authors_kept(repo, tmp_path):
    """The recipe's options together on a 240 x 240 x 60 volume with a known mask sequence: a
    brain of ~11,300 px in slices 5..54 (the rest 2,800 px, under min_brain_area 7000), tumour
    in slices 20..34. ambiguous_window 10 drops the 9 slices before each change of label
    (11..19 and 26..34), so kept: no_tumour 5..10 and 35..54, tumour 20..25."""
    yy, xx = np.mgrid[:240, :240]
    radius = np.hypot(yy - 120, xx - 120)
    rng = np.random.default_rng(0)
    volume = np.zeros((240, 240, 60), np.float32)
    for index in range(60):
        brain = radius < (60 if 5 <= index <= 54 else 30)
        volume[..., index][brain] = 100 + rng.normal(0, 5, int(brain.sum()))
    mask = np.zeros(volume.shape, np.uint8)
    mask[110:130, 110:130, 20:35] = 2
    case = tmp_path / "MICCAI_BraTS_2018_Data_Training" / "HGG" / "Brats18_2013_2_1"
    write_nifti(case / "Brats18_2013_2_1_flair.nii.gz", volume)
    write_nifti(case / "Brats18_2013_2_1_seg.nii.gz", mask)
    source = recipe_source(repo, "brats", root=tmp_path / "MICCAI_BraTS_2018_Data_Training")
    raw = load_source("brats", source)
    assert raw.classes == ["no_tumour", "tumour"]
    assert np.bincount(raw.labels).tolist() == [26, 6]
    provenance = raw.provenance
    assert provenance["slices_dropped_ambiguous"] == 18  # 11..19 and 26..34
    assert provenance["slices_dropped_brain_area"] == 10  # 0..4 and 55..59
    # image_max_scaling: every kept slice reaches 1 (its own maximum)
    assert all(float(image.max()) == 1.0 for image in raw.images)


def test_prostate_recipe_reads_the_central_frames_of_the_ultrasound_series(repo, tmp_path):
    """Target Data -> build_labels -> the recipe: the multi-frame ultrasound series of each
    target, frames F//4 .. 3F//4 - 1, UCLA score < 2 vs >= 2; the MR series (no target row) are
    dropped without being decoded."""
    from fixtures_real import write_csv, write_dicom
    from intrinsic.annotations import build_prostate, write_labels

    root = tmp_path / "Prostate-MRI-US-Biopsy"
    rows = []
    for number, score in [(1, 0), (2, 1), (3, 3), (4, 5)]:
        patient = f"Prostate-MRI-US-Biopsy-{number:04d}"
        series = f"1.2.826.{number}.2"
        frames = np.stack([np.full((6, 6), 10 * (frame + 1) * number, np.uint16) for frame in range(8)])
        write_dicom(root / patient / "study" / series / "1-1.dcm", frames, patient, f"1.2.826.{number}",
                    f"1.2.826.{number}.2.1", series_uid=series)
        write_dicom(root / patient / "study" / "mr" / "1-01.dcm", np.full((6, 6), 7, np.uint16), patient,
                    f"1.2.826.{number}", f"1.2.826.{number}.3.1", series_uid=f"1.2.826.{number}.3")
        rows.append([patient, series, score])
    targets = tmp_path / "Target Data.csv"
    write_csv(targets, ["Patient ID", "seriesInstanceUID_US", "UCLA Score (Similar to PIRADS v2)"], rows)
    labels = write_labels(build_prostate(targets), tmp_path / "prostate_series_labels.csv")
    raw = load_source("prostate_mri", recipe_source(repo, "prostate_mri", root=root, labels_csv=labels))
    assert raw.classes == ["score_0_1", "score_2_5"]
    assert raw.labels.tolist() == [0] * 4 + [0] * 4 + [1] * 4 + [1] * 4  # 4 central frames of 8 per series
    assert len(set(raw.groups)) == 4
    # frame max scaling: every frame is constant, so each becomes exactly 1
    assert all(np.all(image == 1.0) for image in raw.images)
    assert raw.provenance["files_decoded"] == 4  # the four MR files were never decoded


# RSNA's files hold "ID_<hex>" as SOPInstanceUID, which pydicom flags as an invalid UI value.
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_rsna_recipe_scales_stored_values_by_the_image_maximum(repo, tmp_path):
    """The authors' RSNA scaling: stored values / image max, no Hounsfield rescale, no window."""
    from fixtures_real import write_csv, write_dicom

    pixels = np.array([[0, 100], [200, 400]], np.uint16)
    write_dicom(tmp_path / "stage_2_train" / "ID_0a.dcm", pixels, "ID_p1", "1.2.3", "ID_0a")
    write_dicom(tmp_path / "stage_2_train" / "ID_0b.dcm", pixels // 2, "ID_p2", "1.2.4", "ID_0b")
    write_csv(tmp_path / "stage_2_train.csv", ["ID", "Label"],
              [["ID_0a_epidural", 1], ["ID_0a_any", 1], ["ID_0b_any", 0], ["ID_0b_subdural", 1]])
    raw = load_source("rsna_ih_ct", recipe_source(repo, "rsna_ih_ct", root=tmp_path / "stage_2_train",
                                                  labels_csv=tmp_path / "stage_2_train.csv"))
    assert raw.labels.tolist() == [1, 0]  # the "any" rows only
    expected = np.array([[0, 0.25], [0.5, 1]], np.float32)  # slope 2, intercept -1024 ignored
    for image in raw.images:
        np.testing.assert_allclose(image, expected, atol=1e-7)


def test_drawn_pair_classes_list_the_folders_the_reader_lists(tmp_path):
    """The pair draw sees the class folders the reader will: with `extensions`, a folder holding
    only other files is no class of either; errors name the dataset and the option."""
    from intrinsic.cache import DatasetError
    from intrinsic.sources import drawn_pair_classes

    for folder, suffix in (("a", "png"), ("b", "png"), ("c", "jpg"), ("d", "png")):
        write_png(tmp_path / folder / f"x.{suffix}", np.zeros((4, 4)))
    source = {"type": "image_folder", "root": str(tmp_path), "extensions": ["png"]}
    universe = ["a", "b", "d"]
    order = class_pair_order("toy", universe, np.arange(3))
    assert drawn_pair_classes("toy", source, 1) == sorted(universe[i] for i in order[0])
    assert drawn_pair_classes("toy", source, 3) == universe
    raw = load_source("toy", {**source, "include_classes": drawn_pair_classes("toy", source, 1)})
    assert raw.classes == universe
    with pytest.raises(DatasetError, match="dataset 'toy': read_classes: drawn_pairs needs a source of type"):
        drawn_pair_classes("toy", {"type": "image_csv", "csv": "x.csv"}, 1)
    with pytest.raises(DatasetError, match="integer >= 1"):
        drawn_pair_classes("toy", source, 0)
