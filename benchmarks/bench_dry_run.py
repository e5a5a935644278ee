"""Dry-run speed of the paper grid: `snakemake -n` on config/paper.yaml against a bare
Snakefile with the same jobs and rule shapes: the same rules, wildcards, inputs, outputs
(a directory() cache), logs, benchmarks, groups, conda environment and scripts, but no input
functions, params, resources, config or validation. The ratio is the workflow's own
overhead; the goal is <= 1.3 x the bare one and under 10 s on 2 cores.

    python benchmarks/bench_dry_run.py [--repeats 3]

Needs no datasets (a dry-run reads none). Runs both in the same process environment,
interleaved, and reports the minimum of each.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import job_counts, snakemake  # tests/helpers.py, shared with the tests


def bare_rule(name: str, body: str) -> str:
    """One rule with the workflow's conda environment and its real script (a dry-run only
    checks that both exist), so that Snakemake's own per-job cost of these directives is in
    the baseline too."""
    env, script = REPO / "envs" / "intrinsic.yaml", REPO / "workflow" / "scripts" / f"{name}.py"
    return f"rule {name}:\n{body}    conda: {str(env)!r}\n    script: {str(script)!r}\n\n"


def bare_snakefile(paper: dict) -> str:
    """The paper grid's rule graph with every input a plain pattern."""
    datasets = paper["datasets"]
    splits, training = paper["splits"], paper["training"]
    axes = (f"DATASETS = {datasets!r}\nN_TRAIN = {splits['n_train']!r}\nSEEDS = {splits['seeds']!r}\n"
            f"MODELS = {training['models']!r}\nNOISE = ['0.0']\nVARIANTS = ['standard']\n")
    cache = "results/cache/{dataset}"
    run = "{dataset}/{model}/noise{noise}/{variant}/n{n_train}_seed{seed}"
    split = "results/splits/{dataset}/n{n_train}_seed{seed}.npz"
    properties = "results/properties/{dataset}/noise{noise}/n{n_train}_seed{seed}.json"
    evaluation = f"results/runs/{run}/evaluation.json"

    def logs(name: str, wildcards: str) -> str:
        return (f"    log: 'results/logs/{name}/{wildcards}.log'\n"
                f"    benchmark: 'results/benchmarks/{name}/{wildcards}.tsv'\n")

    per_split = "{dataset}/n{n_train}_seed{seed}"
    per_properties = "{dataset}/noise{noise}/n{n_train}_seed{seed}"
    rules = [
        ("prepare_dataset", f"    output: directory({cache!r})\n" + logs("prepare_dataset", "{dataset}")),
        ("make_split", f"    input: cache={cache!r}\n    output: {split!r}\n    group: 'splits'\n"
         + logs("make_split", per_split)),
        ("dataset_properties", f"    input: cache={cache!r}, split={split!r}\n    output: {properties!r}\n"
         f"    group: 'properties'\n" + logs("dataset_properties", per_properties)),
        ("dataset_properties_table",
         f"    input: expand({properties!r}, dataset=DATASETS, noise=NOISE, n_train=N_TRAIN, seed=SEEDS)\n"
         "    output: 'results/tables/dataset_properties.csv'\n"),
        ("run_model", f"    input: cache={cache!r}, split={split!r}\n"
         f"    output: training='results/runs/{run}/training.json', evaluation={evaluation!r}, "
         f"jacobians='results/runs/{run}/jacobian_norms.npz'\n    group: 'runs'\n" + logs("run_model", run)),
        ("grid_tables", f"    input: expand({evaluation!r}, dataset=DATASETS, model=MODELS, noise=NOISE, "
         "variant=VARIANTS, n_train=N_TRAIN, seed=SEEDS), 'results/tables/dataset_properties.csv'\n"
         "    output: 'results/tables/runs.csv'\n"),
    ] + [(name, f"    input: {source!r}\n    output: {target!r}\n") for name, source, target in (
        ("figure_dataset_properties", "results/tables/dataset_properties.csv", "results/figures/fig1.png"),
        ("scaling_fits", "results/tables/runs.csv", "results/tables/fits.csv"),
        ("sharpness_robustness", "results/tables/runs.csv", "results/tables/table1.csv"),
        ("generalization_figures", "results/tables/runs.csv", "results/figures/fig2.png"),
        ("sensitivity_study", "results/tables/runs.csv", "results/tables/jacobian_generalization.csv"))]
    targets = "'results/figures/fig1.png', 'results/tables/fits.csv', 'results/tables/table1.csv', " \
              "'results/figures/fig2.png', 'results/tables/jacobian_generalization.csv'"
    return f"{axes}\nrule all:\n    input: {targets}\n\n" + "".join(bare_rule(*rule) for rule in rules)


def dry_run(snakefile: Path, workdir: Path, *args: str) -> tuple[float, int]:
    """Seconds of `snakemake -n` in ``workdir`` and the number of jobs it would run."""
    started = time.perf_counter()
    output = snakemake(snakefile, workdir, "-n", "--quiet", "rules", *args).stdout
    seconds = time.perf_counter() - started
    return seconds, job_counts(output)["total"]


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
        runs = {"workflow": (REPO / "Snakefile", "--configfile", str(paper)),
                "bare": (bare, "--workflow-profile", "none")}
        timings = {"workflow": [], "bare": []}
        jobs = {}
        for _ in range(options.repeats):
            for name, (snakefile, *args) in runs.items():
                seconds, jobs[name] = dry_run(snakefile, scratch / f"{name}_run", *args)
                timings[name].append(seconds)
    workflow_s, bare_s = min(timings["workflow"]), min(timings["bare"])
    print(f"load average: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}; repeats: {options.repeats}")
    print(f"workflow (config/paper.yaml): {jobs['workflow']} jobs, {workflow_s:.2f} s (min)")
    print(f"bare Snakefile:               {jobs['bare']} jobs, {bare_s:.2f} s (min)")
    print(f"ratio: {workflow_s / bare_s:.2f} (goal <= 1.3); workflow under 10 s: {workflow_s < 10}")


if __name__ == "__main__":
    main()
