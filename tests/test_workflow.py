"""The Snakemake workflow itself: dry-run, lint, and a tiny end-to-end run with report."""

import itertools

import pandas as pd
import pytest

from helpers import CONFIGS, config_path, finished_run, job_counts, load_config, rerun_counts, snakemake

# The grids as standalone overlays of config/config.yaml, runnable by hand (see each file's head).
TINY = load_config("tiny")
APPENDIX = load_config("appendix")
RUN_KEYS = ["dataset", "model", "noise", "variant", "n_train", "seed"]


@pytest.mark.parametrize("name, run_models", [("tiny", 3 * 2 * 2 * 2), ("studies", 2 * 2 * 3 * 2),
                                              ("appendix", 3 * 2), ("slurm", 2), ("faults", 1), ("one_run", 1)])
def test_configuration_file_is_a_valid_standalone_overlay(repo, tmp_path, name, run_models):
    """Each tests/configs file dry-runs alone over the default config (schema and workflow
    checks) with the grid it describes, and says in its head comment how to run it by hand."""
    path = config_path(name)
    head = "".join(itertools.takewhile(lambda line: line.startswith("#"), path.read_text().splitlines(True)))
    assert f"snakemake --cores 2 --configfile tests/configs/{name}.yaml --directory /tmp/{name}\n" in head
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--configfile", str(path)).stdout)
    assert counts["run_model"] == run_models, counts


def test_every_configuration_file_is_tested():
    assert {path.stem for path in CONFIGS.glob("*.yaml")} == {"tiny", "studies", "appendix", "slurm", "faults",
                                                               "one_run"}


def test_dry_run_of_the_default_config(repo, tmp_path):
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules").stdout)
    assert counts["prepare_dataset"] == counts["label_sharpness"] == 4  # once per dataset
    assert counts["make_split"] == counts["dataset_properties"] == 4 * 2 * 3  # dataset x N x seed
    assert counts["run_model"] == 4 * 2 * 2 * 3  # x model
    for rule in ("dataset_properties_table", "figure_dataset_properties", "grid_tables", "scaling_fits",
                 "sharpness_robustness", "generalization_figures", "sensitivity_study"):
        assert counts[rule] == 1, rule
    # one noise level and one variant: the noise and variant studies have nothing to compare
    assert "noise_rank_study" not in counts and "variant_study" not in counts


def test_dry_run_of_one_dataset_and_one_model(repo, tmp_path):
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules", "--config", "datasets=[digits]",
                                  "training={models: [resnet50]}").stdout)
    assert counts["prepare_dataset"] == 1 and counts["run_model"] == 2 * 3


def test_unknown_model_is_a_schema_error(repo, tmp_path):
    result = snakemake(repo, tmp_path, "-n", "--config", "training={models: [resnet18, alexnet]}", check=False)
    assert result.returncode != 0
    assert "alexnet" in result.stdout + result.stderr


def test_lint_is_clean(repo, tmp_path):
    result = snakemake(repo, tmp_path, "--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_unknown_dataset_is_a_clear_error(repo, tmp_path):
    result = snakemake(repo, tmp_path, "-n", "--config", "datasets=[digits,cifar11]", check=False)
    assert result.returncode != 0
    assert "['cifar11'] are not in dataset_catalog" in result.stdout + result.stderr


def test_tiny_run_produces_table_and_figure(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/dataset_properties.csv")
    assert len(table) == 3 * 2 * 2
    assert set(table["dataset"]) == set(TINY["datasets"])
    assert set(table["domain"]) == {"natural", "medical", "synthetic"}
    assert sorted(table["n_train"].unique()) == [20, 40] and sorted(table["seed"].unique()) == [0, 1]
    for column in ("d_mle", "d_twonn", "k_f", "k_f_255"):
        assert (table[column] > 0).all() and table[column].notna().all()
    # K_F belongs to the class pair: the same for every N, and each digits seed has its own pair.
    assert (table.groupby(["dataset", "classes"])["k_f"].nunique() == 1).all()
    assert table[table["dataset"] == "digits"].groupby("seed")["classes"].first().nunique() == 2
    sharpness = pd.read_csv(tiny_run / "results/tables/label_sharpness.csv")
    assert set(sharpness["dataset"]) == set(TINY["datasets"])
    assert (sharpness["kf_samples"] == 30).all() and (sharpness["kf_zero_distance_pairs"] >= 0).all()
    fig1 = sharpness[sharpness["fig1"]]
    assert fig1.groupby("dataset").size().to_dict() == {"breast_28": 1, "digits": 25, "synthetic_d2": 1}
    assert (table["n_features"] == 32 * 32).all() and (table["resolution"] == 32).all()
    assert (table.loc[table["dataset"] == "synthetic_d2", "d_true"] == 2).all()
    for suffix in ("png", "pdf"):
        assert (tiny_run / f"results/figures/fig1_dataset_properties.{suffix}").stat().st_size > 10_000
    assert (tiny_run / "results/logs/prepare_dataset/digits.log").read_text().strip()
    assert (tiny_run / "results/benchmarks/prepare_dataset/digits.tsv").exists()


def test_tiny_run_produces_the_grid_tables(tiny_run):
    runs = pd.read_csv(tiny_run / "results/tables/runs.csv")
    assert len(runs) == 3 * 2 * 2 * 2 and list(runs.columns[:6]) == RUN_KEYS
    assert set(runs["noise"]) == {0.0} and set(runs["variant"]) == {"standard"}
    assert not runs.duplicated(RUN_KEYS).any()
    assert set(runs["model"]) == {"resnet18", "vgg13"} and (runs["epochs"] == 1).all()
    for column in ("test_loss", "train_loss", "d_repr_twonn", "d_repr_mle", "jacobian_norm", "d_mle", "k_f"):
        assert runs[column].notna().all(), column
    assert runs["test_accuracy"].between(0, 1).all() and (runs["device"] == "cpu").all()
    properties = pd.read_csv(tiny_run / "results/tables/dataset_properties.csv")
    joined = runs.merge(properties, on=["dataset", "noise", "n_train", "seed"], suffixes=("", "_split"))
    assert len(joined) == len(runs) and (joined["d_mle"] == joined["d_mle_split"]).all()
    for column in ("jacobian_norm_train", "repr_energy_rank", "filter_energy_rank", "data_energy_rank"):
        assert runs[column].notna().all() and (runs[column] > 0).all(), column
    epochs = pd.read_csv(tiny_run / "results/tables/epochs.csv")
    assert len(epochs) == len(runs) and epochs["test_loss"].notna().all()  # one epoch each
    assert (tiny_run / "results/tables/jacobian_generalization.csv").exists()
    attacks = pd.read_csv(tiny_run / "results/tables/attacks.csv")
    assert len(attacks) == len(runs) * 2 * 4
    assert set(attacks["eps_255"]) == {1, 2, 4, 8} and set(attacks["attack"]) == {"fgsm", "pgd"}
    assert ((attacks["loss_penalty"] - (attacks["attacked_loss"] - attacks["clean_loss"])).abs() < 1e-12).all()
    assert pd.read_parquet(tiny_run / "results/tables/runs.parquet").equals(runs)
    assert len(pd.read_parquet(tiny_run / "results/tables/attacks.parquet")) == len(attacks)
    assert not list((tiny_run / "results").glob("models/**/*.pt"))  # temporary weights are gone
    # successful runs remove their checkpoint folders (resume state, lock) and no partial file stays
    assert not [p for p in (tiny_run / "results").glob("checkpoints/**/*") if p.is_file()]
    assert not [p for p in (tiny_run / "results").rglob(".*") if p.name.endswith((".tmp", ".old"))]


def test_tiny_run_produces_fits_table1_and_figures(tiny_run):
    fits = pd.read_csv(tiny_run / "results/tables/fits.csv")
    assert set(fits["law"]) == {"eq2_with_kf", "eq2_without_kf", "eq4_d_repr"}
    assert set(fits["domain"]) == {"natural", "medical", "synthetic"}
    assert set(fits["model"]) == {"all", "resnet18", "vgg13"}
    pooled = fits[(fits["model"] == "all") & (fits["error"].isna())]
    assert len(pooled) and pooled["estimate"].notna().all()
    table1 = pd.read_csv(tiny_run / "results/tables/table1_sharpness_correlations.csv")
    assert len(table1) == 2 * 2 * 4  # model x attack x eps
    assert table1["r"].between(-1, 1).all()
    markdown = (tiny_run / "results/tables/table1_sharpness_correlations.md").read_text()
    assert "eps = 8/255" in markdown and "vgg13" in markdown
    for name in ("fig2_generalization_loss", "fig2_generalization_accuracy", "fig3_sharpness_robustness",
                 "fig4_repr_generalization_loss", "fig4_repr_generalization_accuracy", "fig5_repr_vs_data"):
        for suffix in ("png", "pdf"):
            assert (tiny_run / f"results/figures/{name}.{suffix}").stat().st_size > 10_000, name


def test_tiny_run_is_complete_and_resumable(repo, tiny_run):
    result = snakemake(repo, tiny_run, "-n", "--configfile", str(config_path("tiny")))
    assert "Nothing to be done" in result.stdout + result.stderr


def test_attack_budget_edit_reruns_every_run(repo, tiny_run):
    # README, "Partial reruns": a run trains and evaluates in one job, so new budgets rerun it;
    # with keep_models false (here) it trains again, with keep_models true it resumes its kept
    # final checkpoint and only evaluates (tests/test_cluster_config.py).
    counts = rerun_counts(repo, tiny_run, TINY, {"evaluation": {"eps_255": [1, 2]}})
    assert counts["run_model"] == 24, counts
    assert "make_split" not in counts and "dataset_properties" not in counts


def test_adding_a_noise_level_or_variant_recomputes_nothing_that_does_not_depend_on_it(repo, tiny_run):
    """Issue 12: a new level trains and measures only the new (noise, variant) runs and the new
    level's d_data; caches, splits, K_F and every existing run stay."""
    counts = rerun_counts(repo, tiny_run, TINY, {"background_noise": {"levels": [0.0, 0.2]},
                                                 "variants": {"run": ["standard", "noise_class"]}})
    per_cell = 3 * 2 * 2 * 2  # dataset x model x N x seed
    assert counts["run_model"] == 3 * per_cell, counts  # all but (0.0, standard)
    assert counts["dataset_properties"] == 3 * 2 * 2, counts  # the new noise level's splits only
    for rule in ("prepare_dataset", "make_split", "label_sharpness"):
        assert rule not in counts, (rule, counts)
    assert counts["noise_rank_study"] == counts["variant_study"] == 1


def test_report_has_the_figure_and_caption(repo, tiny_run):
    snakemake(repo, tiny_run, "--configfile", str(config_path("tiny")), "--report", str(tiny_run / "report.zip"))
    import zipfile

    with zipfile.ZipFile(tiny_run / "report.zip") as archive:
        names = archive.namelist()
        for figure in ("fig1_dataset_properties.png", "fig2_generalization_loss.png", "fig5_repr_vs_data.png"):
            assert any(name.endswith(figure) for name in names), figure
        text = "".join(archive.read(n).decode("utf-8", "ignore") for n in names if n.endswith((".html", ".js")))
    assert "label sharpness" in text and "Pearson" in text


# The three related studies as grid axes (config/extensions.yaml in miniature): every new table
# and figure, from a real run of the workflow.
@pytest.fixture(scope="module")
def studies_run(repo, tmp_path_factory):
    return finished_run(repo, tmp_path_factory.mktemp("studies"), config_path("studies"))


def test_studies_run_types_every_axis_and_measures_each_noise_level(studies_run):
    runs = pd.read_csv(studies_run / "results/tables/runs.csv")
    assert len(runs) == 2 * 2 * 3 * 2 and list(runs.columns[:6]) == RUN_KEYS  # dataset x noise x variant x seed
    assert runs["noise"].dtype.kind == "f" and set(runs["noise"]) == {0.0, 0.3}
    assert set(runs["variant"]) == {"standard", "noise_class", "exclude_illusive"}
    for name in ("attacks", "epochs"):
        table = pd.read_csv(studies_run / f"results/tables/{name}.csv")
        assert table["noise"].dtype.kind == "f" and set(table["variant"]) == set(runs["variant"]), name
    properties = pd.read_csv(studies_run / "results/tables/dataset_properties.csv")
    assert len(properties) == 2 * 2 * 2  # dataset x noise x seed: d_data per noise level, not per variant
    low_rank = properties[properties["dataset"] == "low_rank_r4"].set_index(["noise", "seed"])
    assert (low_rank.loc[0.0, "data_energy_rank"] == 4).all()  # the clean signal's known rank
    assert (low_rank.loc[0.3, "data_energy_rank"] > 4).all()
    assert (low_rank.loc[0.3, "d_mle"] > low_rank.loc[0.0, "d_mle"]).all()
    # K_F is of the clean class pair: the same at every noise level
    assert (properties.groupby(["dataset", "classes"])["k_f"].nunique() == 1).all()
    # Fan & Yezzi
    noise_class = runs[runs["variant"] == "noise_class"]
    assert (noise_class["num_classes"] == 3).all() and (noise_class["n_noise_images"] == 12).all()
    assert noise_class["noise_predicted_fraction"].between(0, 1).all()
    assert runs.loc[runs["variant"] != "noise_class", "noise_predicted_fraction"].isna().all()
    epochs = pd.read_csv(studies_run / "results/tables/epochs.csv")
    first = epochs[epochs["pass"] == "first"]
    assert set(first["variant"]) == {"exclude_illusive"} and (first.groupby(RUN_KEYS).size() == 3).all()
    attacks = pd.read_csv(studies_run / "results/tables/attacks.csv")
    assert sorted(attacks["eps_255"].unique()) == pytest.approx([2.0, 0.05 * 255])


def test_studies_run_records_the_excluded_samples_by_cache_index(studies_run):
    import json

    import numpy as np

    for record_path in studies_run.glob("results/runs/*/resnet18/noise*/exclude_illusive/*/training.json"):
        record = json.loads(record_path.read_text())
        split = np.load(studies_run / f"results/splits/{record['dataset']}/n24_seed{record['seed']}.npz")
        assert set(record["excluded"]) <= set(split["train_idx"].tolist())
        assert record["n_excluded"] == len(record["excluded"])
        assert len(record["first_pass_history"]) == 3
        assert all(h["test_loss"] > 0 for h in record["first_pass_history"] + record["history"])


def test_studies_run_writes_the_three_analyses_and_their_report(repo, studies_run):
    tables = studies_run / "results/tables"
    claim = pd.read_csv(tables / "noise_rank_claim.csv")
    assert set(claim["dataset"]) == {"digits", "low_rank_r4"} and set(claim["noise_high"]) == {0.3}
    variants = pd.read_csv(tables / "variants.csv")
    assert set(variants["variant"]) == {"standard", "noise_class", "exclude_illusive"}
    jacobian = pd.read_csv(tables / "jacobian_generalization.csv")
    assert {"r", "rho", "r_ci_low", "rho_ci_high"} <= set(jacobian.columns)
    pooled = jacobian[(jacobian["domain"] == "all") & (jacobian["x_column"] == "jacobian_norm")]
    assert (pooled["n"] == 2 * 2 * 2).all()  # every standard run, both noise levels
    for name in ("noise_rank", "variants", "overfitting", "jacobian_generalization"):
        for suffix in ("png", "pdf"):
            assert (studies_run / f"results/figures/{name}.{suffix}").stat().st_size > 5_000, name
    # the paper's analyses keep to the clean, standard runs
    summary = pd.read_csv(tables / "figure_summaries.csv")
    assert summary.groupby(["figure", "model", "dataset", "n_train"])["n_seeds"].max().max() == 2
    snakemake(repo, studies_run, "--configfile", str(config_path("studies")), "--report",
              str(studies_run / "report.zip"))
    import zipfile

    with zipfile.ZipFile(studies_run / "report.zip") as archive:
        names = archive.namelist()
    for figure in ("noise_rank.png", "variants.png", "overfitting.png", "jacobian_generalization.png"):
        assert any(name.endswith(figure) for name in names), figure


# The appendix experiments (config/appendix.yaml in miniature): App. B.1's invariance, App. C.3's
# task ranking and App. D.1's attacked examples, from a real run of the workflow and its report.
@pytest.fixture(scope="module")
def appendix_run(repo, tmp_path_factory):
    return finished_run(repo, tmp_path_factory.mktemp("appendix"), config_path("appendix"))


def test_appendix_run_writes_the_three_experiments_and_their_report(repo, appendix_run):
    import json
    import zipfile

    tables = appendix_run / "results/tables"
    invariance = pd.read_csv(tables / "invariance.csv")
    assert len(invariance) == 3 * 2 * 2  # dataset x resolution x channels
    assert set(invariance["resolution"]) == {8, 16} and set(invariance["channels"]) == {1, 3}
    grey = invariance.set_index(["dataset", "resolution", "channels"])
    # replicating grey into 3 channels keeps d_data and scales every distance by sqrt(3)
    for dataset in APPENDIX["datasets"]:
        for resolution in (8, 16):
            one, three = grey.loc[(dataset, resolution, 1)], grey.loc[(dataset, resolution, 3)]
            assert three["d_mle"] == pytest.approx(one["d_mle"], rel=1e-4)
            assert three["k_f"] == pytest.approx(one["k_f"] / 3 ** 0.5, rel=1e-6)
    ranking = pd.read_csv(tables / "task_ranking.csv")
    assert set(ranking["group"]) == {"mnist_subset"} and set(ranking["dataset"]) == {"mnist_0v1", "mnist_4v9"}
    assert sorted(ranking["rank_k_f"]) == [1, 2] and ranking["spearman_rho"].isna().all()  # 2 tasks: no rho
    # App. D.1: one run of the medical dataset records 2 examples; the figure draws them
    chosen = [json.loads(path.read_text()) for path in appendix_run.glob("results/runs/*/*/*/*/*/evaluation.json")]
    recorded = [record for record in chosen if "attacked_examples" in record]
    assert len(recorded) == 1 and len(chosen) == 3 * 2
    assert (appendix_run / "results/figures/attacked_examples.png").stat().st_size > 5_000
    snakemake(repo, appendix_run, "--configfile", str(config_path("appendix")), "--report",
              str(appendix_run / "report.zip"))
    with zipfile.ZipFile(appendix_run / "report.zip") as archive:
        names = archive.namelist()
    for figure in ("invariance.png", "task_ranking.png", "attacked_examples.png"):
        assert any(name.endswith(figure) for name in names), figure
