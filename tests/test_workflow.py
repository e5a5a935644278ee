"""The Snakemake workflow itself: dry-run, lint, and a tiny end-to-end run with report."""

import subprocess
import sys

import pandas as pd
import pytest
import yaml

TINY = {
    "image": {"size": 16, "channels": 1},
    "splits": {"n_train": [20, 40], "n_test": 20, "seeds": [0, 1]},
    "properties": {"knn_k": 10, "sharpness_samples": 30, "threads": 1},
    "datasets": ["digits", "ct_lesion", "synthetic_d2"],
}


def snakemake(repo, workdir, *args, check=True):
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry-run: rule name -> number of jobs."""
    rows = (line.split() for line in output.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def test_dry_run_of_the_default_config(repo, tmp_path):
    counts = job_counts(snakemake(repo, tmp_path, "-n", "--quiet", "rules").stdout)
    assert counts["prepare_dataset"] == 11  # one cache per dataset
    assert counts["make_split"] == counts["dataset_properties"] == 11 * 3 * 3  # dataset x N x seed
    assert counts["dataset_properties_table"] == counts["figure_dataset_properties"] == 1


def test_lint_is_clean(repo, tmp_path):
    result = snakemake(repo, tmp_path, "--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_unknown_dataset_is_a_clear_error(repo, tmp_path):
    result = snakemake(repo, tmp_path, "-n", "--config", "datasets=[digits,cifar11]", check=False)
    assert result.returncode != 0
    assert "['cifar11'] are not in dataset_catalog" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def tiny_run(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(repo, workdir, "--cores", "2", "--configfile", str(workdir / "tiny.yaml"))
    return workdir


def test_tiny_run_produces_table_and_figure(tiny_run):
    table = pd.read_csv(tiny_run / "results/tables/dataset_properties.csv")
    assert len(table) == 3 * 2 * 2
    assert set(table["dataset"]) == set(TINY["datasets"])
    assert set(table["domain"]) == {"natural", "medical", "synthetic"}
    assert sorted(table["n_train"].unique()) == [20, 40] and sorted(table["seed"].unique()) == [0, 1]
    for column in ("d_mle", "d_twonn", "k_f"):
        assert (table[column] > 0).all() and table[column].notna().all()
    assert (table["n_features"] == 16 * 16).all() and (table["resolution"] == 16).all()
    assert (table.loc[table["dataset"] == "synthetic_d2", "d_true"] == 2).all()
    for suffix in ("png", "pdf"):
        assert (tiny_run / f"results/figures/fig1_dataset_properties.{suffix}").stat().st_size > 10_000
    assert (tiny_run / "results/logs/prepare_dataset/digits.log").read_text().strip()
    assert (tiny_run / "results/benchmarks/prepare_dataset/digits.tsv").exists()


def test_tiny_run_is_complete_and_resumable(repo, tiny_run):
    result = snakemake(repo, tiny_run, "-n", "--configfile", str(tiny_run / "tiny.yaml"))
    assert "Nothing to be done" in result.stdout + result.stderr


def test_report_has_the_figure_and_caption(repo, tiny_run):
    snakemake(repo, tiny_run, "--configfile", str(tiny_run / "tiny.yaml"), "--report", str(tiny_run / "report.zip"))
    import zipfile

    with zipfile.ZipFile(tiny_run / "report.zip") as archive:
        names = archive.namelist()
        assert any(name.endswith("fig1_dataset_properties.png") for name in names)
        text = "".join(archive.read(n).decode("utf-8", "ignore") for n in names if n.endswith((".html", ".js")))
    assert "label sharpness" in text
