"""Dry-run speed of the paper grid: `snakemake -n` on config/paper.yaml against a bare
Snakefile with the same jobs and rule shapes (same wildcards, inputs, outputs, logs,
benchmarks and groups, but no input functions, params, resources, config or validation). The ratio is the
workflow's own overhead; the goal is <= 1.3 x the bare one and under 10 s on 2 cores.

    python benchmarks/bench_dry_run.py [--repeats 3]

Needs no datasets (a dry-run reads none). Runs both in the same process environment,
interleaved, and reports the minimum of each.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def bare_snakefile(paper: dict) -> str:
    """The paper grid's rule graph with every input a plain pattern."""
    datasets = paper["datasets"]
    splits, training = paper["splits"], paper["training"]
    axes = (f"DATASETS = {datasets!r}\nN_TRAIN = {splits['n_train']!r}\nSEEDS = {splits['seeds']!r}\n"
            f"MODELS = {training['models']!r}\n")
    cache = {name: f"results/cache/{{dataset}}/{name}.{ext}"
             for name, ext in (("images", "npy"), ("labels", "npy"), ("groups", "npy"), ("meta", "json"))}
    cache_inputs = "".join(f"        {name}={path!r},\n" for name, path in cache.items())
    run = "{dataset}/{model}/n{n_train}_seed{seed}"
    split = "results/splits/{dataset}/n{n_train}_seed{seed}.npz"
    aggregate = "".join(
        f"rule {name}:\n    input: {source!r}\n    output: {target!r}\n    shell: 'touch {{output}}'\n\n"
        for name, source, target in (
            ("figure_dataset_properties", "results/tables/dataset_properties.csv", "results/figures/fig1.png"),
            ("scaling_fits", "results/tables/runs.csv", "results/tables/fits.csv"),
            ("sharpness_robustness", "results/tables/runs.csv", "results/tables/table1.csv"),
            ("generalization_figures", "results/tables/runs.csv", "results/figures/fig2.png")))
    return f'''{axes}
rule all:
    input: "results/figures/fig1.png", "results/tables/fits.csv", "results/tables/table1.csv", "results/figures/fig2.png"

rule prepare_dataset:
    output: {", ".join(repr(p) for p in cache.values())}
    log: "results/logs/prepare_dataset/{{dataset}}.log"
    benchmark: "results/benchmarks/prepare_dataset/{{dataset}}.tsv"
    shell: "touch {{output}}"

rule make_split:
    input:
{cache_inputs}    output: {split!r}
    group: "splits"
    log: "results/logs/make_split/{{dataset}}/n{{n_train}}_seed{{seed}}.log"
    benchmark: "results/benchmarks/make_split/{{dataset}}/n{{n_train}}_seed{{seed}}.tsv"
    shell: "touch {{output}}"

rule dataset_properties:
    input:
{cache_inputs}        split={split!r},
    output: "results/properties/{{dataset}}/n{{n_train}}_seed{{seed}}.json"
    group: "properties"
    log: "results/logs/dataset_properties/{{dataset}}/n{{n_train}}_seed{{seed}}.log"
    benchmark: "results/benchmarks/dataset_properties/{{dataset}}/n{{n_train}}_seed{{seed}}.tsv"
    shell: "touch {{output}}"

rule dataset_properties_table:
    input: expand("results/properties/{{dataset}}/n{{n_train}}_seed{{seed}}.json", dataset=DATASETS, n_train=N_TRAIN, seed=SEEDS)
    output: "results/tables/dataset_properties.csv"
    shell: "touch {{output}}"

rule train_model:
    input:
{cache_inputs}        split={split!r},
    output: model="results/models/{run}.pt", record="results/runs/{run}/training.json"
    group: "run"
    log: "results/logs/train_model/{run}.log"
    benchmark: "results/benchmarks/train_model/{run}.tsv"
    shell: "touch {{output}}"

rule evaluate_model:
    input:
{cache_inputs}        split={split!r}, model="results/models/{run}.pt", training="results/runs/{run}/training.json"
    output: "results/runs/{run}/evaluation.json"
    group: "run"
    log: "results/logs/evaluate_model/{run}.log"
    benchmark: "results/benchmarks/evaluate_model/{run}.tsv"
    shell: "touch {{output}}"

rule grid_tables:
    input: expand("results/runs/{run}/evaluation.json", dataset=DATASETS, model=MODELS, n_train=N_TRAIN, seed=SEEDS), "results/tables/dataset_properties.csv"
    output: "results/tables/runs.csv"
    shell: "touch {{output}}"

{aggregate}'''


def dry_run(args: list[str], workdir: Path) -> tuple[float, str]:
    command = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "-d", str(workdir), *args]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def total_jobs(output: str) -> int:
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total":
            return int(parts[1])
    raise ValueError("no job count in the dry-run output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    paper = REPO / "config" / "paper.yaml"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        bare = scratch / "bare.smk"
        bare.write_text(bare_snakefile(yaml.safe_load(paper.read_text())))
        (scratch / "workflow_run").mkdir()
        (scratch / "bare_run").mkdir()
        workflow_args = ["-s", str(REPO / "Snakefile"), "--configfile", str(paper)]
        bare_args = ["-s", str(bare), "--workflow-profile", "none"]
        timings = {"workflow": [], "bare": []}
        jobs = {}
        for _ in range(options.repeats):
            for name, args in (("workflow", workflow_args), ("bare", bare_args)):
                seconds, output = dry_run(args, scratch / f"{name}_run")
                timings[name].append(seconds)
                jobs[name] = total_jobs(output)
    workflow_s, bare_s = min(timings["workflow"]), min(timings["bare"])
    print(f"load average: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}; repeats: {options.repeats}")
    print(f"workflow (config/paper.yaml): {jobs['workflow']} jobs, {workflow_s:.2f} s (min)")
    print(f"bare Snakefile:               {jobs['bare']} jobs, {bare_s:.2f} s (min)")
    print(f"ratio: {workflow_s / bare_s:.2f} (goal <= 1.3); workflow under 10 s: {workflow_s < 10}")


if __name__ == "__main__":
    main()
