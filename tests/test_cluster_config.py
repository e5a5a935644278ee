"""Cluster settings and partial reruns without a cluster: the paper grid's SLURM submissions
(dry-run with profiles/slurm), config overrides, the rule graph, and what a config edit reruns."""

import json
import math
import re
import shutil

import pytest
import yaml

from intrinsic.models import load_model
from helpers import config_file, job_counts, load_config, rerun_counts, snakemake

# tests/configs/one_run.yaml: one run that keeps its model, for the partial reruns below.
ONE_RUN = load_config("one_run")
RUN = "digits/resnet18/noise0.0/standard/n20_seed0"


def test_paper_grid_submits_one_slurm_job_per_run_and_few_per_dataset(repo, tmp_path):
    # A dry-run needs neither the datasets nor a cluster.
    output = snakemake(repo, tmp_path, "-n", "--profile", str(repo / "profiles/slurm"), "--slurm-no-account",
                       "--configfile", str(repo / "config/paper.yaml")).stdout
    groups = re.findall(r"Group job (\w+) \(", output)
    assert groups.count("runs") == 6 * 11 * 6 * 5  # one run (train + evaluate) per submission
    assert groups.count("splits") == 11  # 30 splits of a dataset each
    # 30 d_data jobs and 1 label_sharpness job per dataset, packed 30 to a submission
    assert groups.count("properties") == math.ceil(11 * 31 / 30)
    single = re.findall(r"^rule (\w+):", output, flags=re.MULTILINE)  # ungrouped jobs
    assert single.count("prepare_dataset") == 11
    # 2014 submissions; the 7 table/figure jobs are localrules.
    assert len(groups) + single.count("prepare_dataset") == 2014


def test_paper_grid_packs_runs_into_fewer_submissions_on_request(repo, tmp_path):
    output = snakemake(repo, tmp_path, "-n", "--profile", str(repo / "profiles/slurm"), "--slurm-no-account",
                       "--configfile", str(repo / "config/paper.yaml"), "--group-components", "runs=6",
                       "splits=30", "properties=30").stdout
    groups = re.findall(r"Group job (\w+) \(", output)
    assert groups.count("runs") == 6 * 11 * 6 * 5 // 6
    assert len(groups) + len(re.findall(r"^rule prepare_dataset:", output, flags=re.MULTILINE)) == 2014 - 1980 + 330


def test_paper_config_names_the_eleven_datasets_and_the_study_grid(repo):
    paper = yaml.safe_load((repo / "config/paper.yaml").read_text())
    assert len(paper["datasets"]) == 11 and set(paper["datasets"]) <= set(paper["dataset_catalog"])
    domains = [paper["dataset_catalog"][name]["domain"] for name in paper["datasets"]]
    assert domains.count("medical") == 7 and domains.count("natural") == 4
    assert paper["splits"]["n_train"] == list(range(500, 1751, 250)) and paper["splits"]["seeds"] == [0, 1, 2, 3, 4]
    assert paper["image"]["size"] == 224 and paper["training"]["gpus"] == 1
    for name in paper["datasets"]:  # the recipe, copied verbatim
        recipe = yaml.safe_load((repo / f"config/datasets/{name}.yaml").read_text())
        assert paper["dataset_catalog"][name] == recipe["dataset_catalog"][name], name


def test_nested_config_override_keeps_the_other_training_keys(repo, tmp_path):
    output = snakemake(repo, tmp_path, "-n", "--config", "training={models: [resnet18]}", "datasets=[digits]").stdout
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--config",
                                  "training={models: [resnet18]}", "datasets=[digits]").stdout)
    assert counts["run_model"] == 3 * 2
    # config/config.yaml's resnet18 requests (20 + 10 min, 2000 MB), not the schema's paper
    # defaults (60 + 30 min, 16000 MB): the override was merged into `training`, not put in its place.
    run_jobs = output.split("rule run_model:")[1:]
    assert run_jobs and all("runtime=30, gpu=0, mem_mb=2000" in job.split("rule ")[0] for job in run_jobs)


def test_rulegraph_shows_the_pipeline(repo, tmp_path):
    graph = snakemake(repo, tmp_path, "--rulegraph", "--config", "datasets=[digits]").stdout
    assert graph.lstrip().startswith("digraph")
    labels = dict(re.findall(r'(\d+)\[label = "(\w+)"', graph))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"(\d+) -> (\d+)", graph)}
    assert ("make_split", "run_model") in edges and ("prepare_dataset", "run_model") in edges
    assert ("run_model", "grid_tables") in edges


@pytest.fixture(scope="module")
def one_run(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_run")
    snakemake(repo, workdir, "--cores", "2", "--configfile", config_file(workdir, ONE_RUN))
    return workdir


def test_numbers_inside_a_config_mapping_are_strings(repo, tmp_path):
    # Snakemake's --config reads values inside a {mapping} as strings: such numeric edits
    # fail validation (README: use a --configfile for them); top-level numbers and lists work.
    result = snakemake(repo, tmp_path, "-n", "--config", "evaluation={eps_255: [1, 2]}", check=False)
    assert result.returncode != 0 and "'1' is not of type 'number'" in result.stdout + result.stderr


def test_attack_budget_edit_reruns_evaluation_not_training(repo, one_run, tmp_path):
    counts = rerun_counts(repo, one_run, ONE_RUN, {"evaluation": {"eps_255": [1, 2, 4]}})
    assert counts["run_model"] == 1 and "dataset_properties" not in counts and counts["grid_tables"] == 1
    # keep_models keeps the final checkpoint: the rerun resumes it with nothing to train.
    workdir = tmp_path / "copy"
    shutil.copytree(one_run, workdir, symlinks=True)
    before = json.loads((workdir / f"results/runs/{RUN}/training.json").read_text())
    edited = {**ONE_RUN, "evaluation": {**ONE_RUN["evaluation"], "eps_255": [1, 2, 4]}}
    snakemake(repo, workdir, "--cores", "2", "--configfile", config_file(workdir, edited))
    after = json.loads((workdir / f"results/runs/{RUN}/training.json").read_text())
    assert after["resumed_from"] == after["epochs"] == before["epochs"] and after["history"] == before["history"]
    assert "nothing to train" in (workdir / f"results/logs/run_model/{RUN}.log").read_text()
    budgets = json.loads((workdir / f"results/runs/{RUN}/evaluation.json").read_text())["attacks"]
    assert sorted(row["eps_255"] for row in budgets) == [1, 2, 4]


def test_cluster_request_or_other_model_edit_does_not_retrain(repo, one_run):
    counts = rerun_counts(repo, one_run, ONE_RUN, {"training": {"gpus": 1, "threads": 2, "resources": {
        "resnet18": {"train_runtime_min": 99, "eval_runtime_min": 9, "mem_mb": 9999}}}})
    assert counts == {}, counts
    counts = rerun_counts(repo, one_run, ONE_RUN, {"training": {"model_settings": {
        "resnet18": ONE_RUN["training"]["model_settings"]["resnet18"],
        "vgg13": {"learning_rate": 0.5, "batch_size": 3}}}})
    assert counts == {}, counts


def test_training_edit_retrains(repo, one_run):
    counts = rerun_counts(repo, one_run, ONE_RUN, {"training": {"max_epochs": 2}})
    assert counts["run_model"] == 1


def test_authors_code_overlay_dry_runs_with_the_paper_config(repo, tmp_path):
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--configfile",
                                  str(repo / "config/paper.yaml"), str(repo / "config/authors_code.yaml")).stdout)
    assert counts["run_model"] == 6 * 11 * 6 * 5
    assert counts["prepare_dataset"] == 11


def test_dataset_model_override_reruns_only_that_dataset_and_model(repo, one_run):
    override = {"training": {"dataset_model_settings": {"digits": {"resnet18": {"learning_rate": 5e-4}}}}}
    counts = rerun_counts(repo, one_run, ONE_RUN, override)
    assert counts["run_model"] == 1 and "prepare_dataset" not in counts
    # another dataset's override, another model's, or one equal to model_settings: nothing to rerun
    for settings in ({"faces": {"resnet18": {"learning_rate": 5e-4}}},
                     {"digits": {"vgg13": {"learning_rate": 5e-4, "batch_size": 3}}},
                     {"digits": {"resnet18": {"learning_rate": 1e-3}}}):
        counts = rerun_counts(repo, one_run, ONE_RUN, {"training": {"dataset_model_settings": settings}})
        assert counts == {}, (settings, counts)


def test_dataset_model_override_of_an_unknown_dataset_is_a_clear_error(repo, tmp_path):
    result = snakemake(repo, tmp_path, "-n", "--configfile", config_file(tmp_path, {
        "training": {"dataset_model_settings": {"svnh": {"vgg13": {"learning_rate": 1e-6}}}}}), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "training.dataset_model_settings names datasets ['svnh']" in output


def test_training_mode_edit_retrains_and_layer_edit_reevaluates(repo, one_run):
    counts = rerun_counts(repo, one_run, ONE_RUN, {"training": {"mode": "fixed_epochs"}})
    assert counts["run_model"] == 1
    counts = rerun_counts(repo, one_run, ONE_RUN, {"evaluation": {"representation_layer": "last_conv_block"}})
    assert counts["run_model"] == 1 and "dataset_properties" not in counts


def test_dataset_channels_edit_reprepares_only_that_dataset(repo, one_run):
    rgb_digits = {"digits": {"domain": "natural", "source": {"type": "sklearn_digits"}, "channels": 3}}
    counts = rerun_counts(repo, one_run, {**ONE_RUN, "dataset_catalog": {}}, {"dataset_catalog": rgb_digits})
    assert counts["prepare_dataset"] == 1 and counts["run_model"] == 1
    # the catalog entry repeating image.channels, or a class_pairs edit, re-decodes nothing
    grey_digits = {"digits": {**rgb_digits["digits"], "channels": 1}}
    assert rerun_counts(repo, one_run, {**ONE_RUN, "dataset_catalog": {}}, {"dataset_catalog": grey_digits}) == {}
    paired_digits = {"digits": {**grey_digits["digits"], "class_pairs": [["3", "8"]]}}
    counts = rerun_counts(repo, one_run, {**ONE_RUN, "dataset_catalog": {}}, {"dataset_catalog": paired_digits})
    assert "prepare_dataset" not in counts and counts["make_split"] == 1


RGB_RUN = {
    **ONE_RUN,
    "training": {**ONE_RUN["training"],
                 "dataset_model_settings": {"digits": {"resnet18": {"learning_rate": 5e-4, "batch_size": 4}}}},
    "dataset_catalog": {"digits": {"domain": "natural", "source": {"type": "sklearn_digits"}, "channels": 3}},
}


def test_rgb_dataset_gets_an_rgb_cache_a_three_channel_model_and_its_override(repo, tmp_path):
    run = "digits/resnet18/noise0.0/standard/n20_seed0"
    # the target before --configfile, which takes several files
    snakemake(repo, tmp_path, "--cores", "2", f"results/runs/{run}/training.json",
              "--configfile", config_file(tmp_path, RGB_RUN))
    meta = json.loads((tmp_path / "results/cache/digits/meta.json").read_text())
    assert meta["channels"] == 3 and meta["shape"][0] == 3
    model, architecture = load_model(tmp_path / f"results/models/{run}.pt")
    assert architecture["in_channels"] == 3 and model.conv1.in_channels == 3
    settings = json.loads((tmp_path / f"results/runs/{run}/training.json").read_text())["settings"]
    assert (settings["learning_rate"], settings["batch_size"]) == (5e-4, 4)  # the override, merged
    assert settings["weight_decay"] == 1e-4  # the rest of `training` as configured


def test_large_n_overlay_dry_runs_over_the_paper_config(repo, tmp_path):
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--configfile",
                                  str(repo / "config/paper.yaml"), str(repo / "config/large_n.yaml")).stdout)
    assert counts["prepare_dataset"] == 3 and counts["dataset_properties"] == 3 * 5 * 3
    assert counts["run_model"] == 6 * 3 * 5 * 3
