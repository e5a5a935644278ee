"""Fixed cost per job of the embedded default: the share of `make run`'s wall time that its jobs
spend outside their own work (interpreter start, imports, Snakemake's job set-up; before issue
13 also writing and re-reading the model between a run's two processes).

    .venv/bin/python benchmarks/bench_run_overhead.py [--cores 2] [--workdir DIR]
    .venv/bin/python benchmarks/bench_run_overhead.py --measure DIR --wall SECONDS --cores 2

The first form runs the workflow (`snakemake --cores N`, the embedded default) in a fresh
folder and times it; the second only reads a finished folder, e.g. one made by an older version.

Per job: wall = the `s` column of its Snakemake benchmark file (the whole job, interpreter
included); work = the "finished in X s" line that `intrinsic.logs.logged` writes at the end of
the rule script's block (everything after the imports). Older versions wrote no such line; for
their train_model and evaluate_model jobs the work is the train_seconds / eval_seconds of the
run's records (measured from the start of the library call), and other jobs are left out.
Fixed cost = wall - work. Share = sum(fixed) / (cores x wall time of the whole workflow): the
fraction of the machine's time that went to per-job fixed costs. Goal (issue 13): under 15%.
"""

import argparse
import csv
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import snakemake  # tests/helpers.py, shared with the tests
FINISHED = re.compile(r"finished in ([0-9.]+) s$", re.MULTILINE)


def jobs(results: Path) -> list[dict]:
    """One row per job: rule, job path, wall seconds, work seconds (None where unknown)."""
    rows = []
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        parts = tsv.relative_to(results / "benchmarks").with_suffix("").parts
        rule, name = parts[0], "/".join(parts[1:])  # a job of the whole grid: benchmarks/<rule>.tsv
        with tsv.open() as handle:
            wall = float(list(csv.DictReader(handle, delimiter="\t"))[-1]["s"])
        log = results / "logs" / rule / f"{name}.log" if name else results / "logs" / f"{rule}.log"
        found = FINISHED.findall(log.read_text()) if log.exists() else []
        work = float(found[-1]) if found else None
        if work is None and rule in ("train_model", "evaluate_model"):
            run = json.loads((results / "runs" / name / "evaluation.json").read_text())["run"]
            work = run["train_seconds" if rule == "train_model" else "eval_seconds"]
        rows.append({"rule": rule, "job": name, "wall": wall, "work": work})
    if not rows:
        raise SystemExit(f"{results}/benchmarks has no benchmark files: is {results} a finished run?")
    return rows


def measure(workdir: Path, wall: float, cores: int) -> dict:
    rows = jobs(workdir / "results")
    per_rule: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "wall_s": 0.0, "fixed_s": 0.0, "unknown": 0})
    for row in rows:
        entry = per_rule[row["rule"]]
        entry["jobs"] += 1
        entry["wall_s"] += row["wall"]
        if row["work"] is None:
            entry["unknown"] += 1
        else:
            entry["fixed_s"] += row["wall"] - row["work"]
    known = sum(entry["fixed_s"] for entry in per_rule.values())
    runs = {row["job"] for row in rows if row["rule"] in ("run_model", "train_model", "evaluate_model")}
    run_fixed = sum(per_rule[rule]["fixed_s"] for rule in ("run_model", "train_model", "evaluate_model")
                    if rule in per_rule)
    return {
        "wall_s": round(wall, 1),
        "cores": cores,
        "jobs": len(rows),
        "runs": len(runs),
        "fixed_per_run_s": round(run_fixed / max(len(runs), 1), 2),
        "run_fixed_share_of_wall": round(run_fixed / (cores * wall), 4),
        "fixed_share_of_wall": round(known / (cores * wall), 4),
        "jobs_without_work_time": sum(entry["unknown"] for entry in per_rule.values()),
        "idle_share_of_wall": round(1 - sum(row["wall"] for row in rows) / (cores * wall), 4),
        "per_rule": {rule: {key: round(value, 1) if isinstance(value, float) else value
                            for key, value in entry.items()} for rule, entry in sorted(per_rule.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="run the workflow here (default: a temporary folder)")
    parser.add_argument("--measure", type=Path, help="only read this finished working directory")
    parser.add_argument("--wall", type=float, help="with --measure: the workflow's wall time in seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.measure:
        if args.wall is None:
            parser.error("--measure needs --wall (the wall time of the run that filled the folder)")
        figures = measure(args.measure, args.wall, args.cores)
    else:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="run_overhead_"))
        started = time.perf_counter()
        snakemake(REPO, workdir, "--cores", str(args.cores), "--quiet")
        figures = measure(workdir, time.perf_counter() - started, args.cores)
        figures["workdir"] = str(workdir)
    for key, value in figures.items():
        if key != "per_rule":
            print(f"{key:>24}: {value}")
    print(f"{'rule':>26} {'jobs':>5} {'wall s':>8} {'fixed s':>8} {'fixed/job':>9} {'unknown':>7}")
    for rule, entry in figures["per_rule"].items():
        print(f"{rule:>26} {entry['jobs']:5d} {entry['wall_s']:8.1f} {entry['fixed_s']:8.1f} "
              f"{entry['fixed_s'] / max(entry['jobs'] - entry['unknown'], 1):9.2f} {entry['unknown']:7d}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
