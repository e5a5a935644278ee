"""SLURM submissions of a small grid: job groups (as shipped: run_model in the group "runs", one
run per submission) against SLURM job arrays (--slurm-array-jobs run_model, which needs the rule
ungrouped: snakemake-executor-plugin-slurm submits group jobs one by one).

    sudo python benchmarks/bench_slurm_arrays.py [--seeds 0 1 2] [--n-train 20 40]

Starts the single-node test cluster of tests/slurm/cluster.sh (root, slurm-wlm and munge),
runs the same grid through profiles/slurm twice, each in a fresh folder, and counts sbatch
calls, SLURM jobs (array tasks included), GPU allocations and the wall time of each.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import SITE, config_file, load_config, sbatch_calls, snakemake  # tests/helpers.py


def grid(datasets: list[str], n_train: list[int], seeds: list[int]) -> dict:
    """tests/configs/slurm.yaml (the grid of tests/test_slurm.py) over these datasets, sizes and seeds."""
    config = load_config("slurm")
    config["splits"].update(n_train=n_train, seeds=seeds)
    config["datasets"] = datasets
    return config


def ungrouped_copy(target: Path) -> Path:
    """The workflow with run_model outside the "runs" group."""
    target.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target / name)
    rules = target / "workflow" / "rules" / "grid.smk"
    text, count = re.subn(r'^    group:\n        "runs"\n', "", rules.read_text(), flags=re.M)
    if count != 1:
        raise SystemExit(f"expected one 'group: \"runs\"' directive in {rules}, found {count}")
    rules.write_text(text)
    return target


def submitted_jobs(call: str) -> int:
    """SLURM jobs of one sbatch call: 1, or the task count of --array 1-8 / 1,3-5 / 1-8%2."""
    spec = re.search(r"--array[ =](\S+)", call)
    if spec is None:
        return 1
    count = 0
    for part in spec.group(1).split("%")[0].split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def run(workflow: Path, workdir: Path, config: dict, extra: list[str]) -> dict:
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    result = snakemake(workflow, workdir, "--profile", str(REPO / "profiles" / "slurm"), "--configfile",
                       config_file(workdir, config, "grid.yaml"), *SITE, *extra)
    seconds = time.perf_counter() - started
    calls = sbatch_calls(result.stdout + result.stderr)
    tasks = sum(submitted_jobs(call) for call in calls)
    gpu_jobs = sum(submitted_jobs(call) for call in calls if "--gpus" in call)
    return {"sbatch calls": len(calls), "SLURM jobs": tasks, "GPU allocations": gpu_jobs,
            "wall s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "synthetic_d4"])
    parser.add_argument("--n-train", nargs="+", type=int, default=[20, 40])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    options = parser.parse_args()
    config = grid(options.datasets, options.n_train, options.seeds)
    runs = len(options.datasets) * len(options.n_train) * len(options.seeds)
    script = REPO / "tests" / "slurm" / "cluster.sh"
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        started = subprocess.run(["bash", str(script), "start", str(scratch / "slurm")],
                                 capture_output=True, text=True)
        if started.returncode != 0:
            raise SystemExit(f"cannot start the test cluster: {started.stderr.strip()}")
        try:
            ungrouped = ungrouped_copy(scratch / "ungrouped_workflow")
            grouped = run(REPO, scratch / "grouped", config, [])
            print(f"job groups: {grouped}", flush=True)
            arrays = run(ungrouped, scratch / "arrays", config,
                         ["--slurm-array-jobs", "run_model"])
        finally:
            subprocess.run(["bash", str(script), "stop", str(scratch / "slurm")], check=True)
    print(f"grid: {runs} runs (resnet18 x {options.datasets} x N {options.n_train} x seeds {options.seeds})")
    print(f"| mode | {' | '.join(grouped)} |")
    print(f"|---|{'---|' * len(grouped)}")
    print(f"| job groups (shipped) | {' | '.join(map(str, grouped.values()))} |")
    print(f"| ungrouped + --slurm-array-jobs | {' | '.join(map(str, arrays.values()))} |")


if __name__ == "__main__":
    main()
