"""`make status` (rule status, intrinsic.status): a partly finished grid written the way the
workflow writes it, classified and summed by hand."""

import os
import time
from html.parser import HTMLParser

import pytest
from helpers import config_path, job_counts, snakemake

from intrinsic.status import RunFiles, benchmark_seconds, grid_status, status_html, status_text

NOW = 1_700_000_000.0
RUN = "{dataset}/{model}/n{n_train}_seed{seed}"
# rule run_model's files (workflow/rules/grid.smk) over a smaller set of axes
FILES = RunFiles(
    outputs=[f"results/runs/{RUN}/training.json", f"results/runs/{RUN}/evaluation.json",
             f"results/runs/{RUN}/jacobian_norms.npz"],
    log=f"results/logs/run_model/{RUN}.log",
    benchmark=f"results/benchmarks/run_model/{RUN}.tsv",
    checkpoints=f"results/checkpoints/{RUN}",
)
RUNS = [{"dataset": dataset, "model": model, "n_train": "20", "seed": seed}
        for dataset in ("a", "b") for model in ("resnet18", "vgg13") for seed in ("0", "1")]
BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
TRACEBACK = (
    "2023-11-14 22:00:00,000 INFO run_model: started, 3.10 s after the process\n"
    "2023-11-14 22:00:05,000 INFO run_model: resnet18 epoch 1/100: loss 0.6931\n"
    "2023-11-14 22:13:10,000 ERROR run_model: failed:\n"
    "Traceback (most recent call last):\n"
    '  File "run_model.py", line 23, in <module>\n'
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
)


def write(root, pattern, run, text="", age_s=0.0):
    """A file of ``run`` as the workflow names it, last modified ``age_s`` before NOW."""
    path = root / pattern.format(**run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def finish(root, run, *seconds):
    """A done run: its records, and a benchmark with one row per repeat."""
    for pattern in FILES.outputs:
        write(root, pattern, run, "{}", age_s=9000)
    rows = "".join(f"{s:.2f}\t0:00:00\t1\t1\t1\t1\t0\t0\t90\t{s:.2f}\n" for s in seconds)
    write(root, FILES.benchmark, run, BENCHMARK_HEADER + rows, age_s=9000)
    write(root, FILES.log, run, "2023-11-14 20:00:00,000 INFO run_model: finished in 3600 s\n", age_s=9000)


@pytest.fixture
def grid(tmp_path):
    """8 runs: 3 done (1 h, 3000 + 4200 s in two benchmark rows, 0.5 h), 2 running (a log and
    checkpoint written 50 and 100 s ago; a lock taken 5 s ago), 2 failed (a traceback in a fresh
    log; a checkpoint untouched for 5000 s, beyond the 1200 s live window), 1 not started."""
    a_res0, a_res1, a_vgg0, a_vgg1, b_res0, b_res1, b_vgg0, _ = RUNS
    finish(tmp_path, a_res0, 3600)
    finish(tmp_path, a_res1, 3000, 4200)
    finish(tmp_path, b_res1, 1800)
    write(tmp_path, FILES.outputs[0], a_vgg0, "{}", age_s=50)  # trained, being evaluated
    checkpoint = write(tmp_path, FILES.checkpoints + "/3f2a9c1d0b7e.pt", a_vgg0, "weights", age_s=100)
    os.utime(checkpoint.parent, (NOW - 100, NOW - 100))
    write(tmp_path, FILES.log, a_vgg0, "2023-11-14 22:00:00,000 INFO run_model: started\n", age_s=50)
    write(tmp_path, FILES.log, a_vgg1, TRACEBACK, age_s=10)
    write(tmp_path, FILES.checkpoints + "/lock", b_res0, "pid 1 on host n1", age_s=5200)
    checkpoint = write(tmp_path, FILES.checkpoints + "/3f2a9c1d0b7e.pt", b_res0, "weights", age_s=5000)
    os.utime(checkpoint.parent, (NOW - 5000, NOW - 5000))  # the folder changed with its last write
    lock = write(tmp_path, FILES.checkpoints + "/lock", b_vgg0, "pid 2 on host n2", age_s=5)
    os.utime(lock.parent, (NOW - 5, NOW - 5))
    return tmp_path


def test_states_counts_hours_and_time_left(grid):
    status = grid_status(RUNS, FILES, {"resnet18": 1200, "vgg13": 1200}, gpus=2, now=NOW, root=grid)
    states = status.runs.set_index(["dataset", "model", "seed"])["state"]
    assert states.to_dict() == {
        ("a", "resnet18", "0"): "done", ("a", "resnet18", "1"): "done",
        ("a", "vgg13", "0"): "running", ("a", "vgg13", "1"): "failed",
        ("b", "resnet18", "0"): "failed", ("b", "resnet18", "1"): "done",
        ("b", "vgg13", "0"): "running", ("b", "vgg13", "1"): "not_started",
    }
    failed = status.runs[status.runs["state"] == "failed"].set_index("dataset")
    assert failed.loc["a", "log"] == "results/logs/run_model/a/vgg13/n20_seed1.log"
    assert failed.loc["a", "reason"] == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert failed.loc["b", "log"] == "" and failed.loc["b", "reason"].startswith("no change for 83 min")
    table = status.table.set_index(["dataset", "model"])
    assert table[["runs", "done", "running", "failed", "not_started"]].to_dict("index") == {
        ("a", "resnet18"): {"runs": 2, "done": 2, "running": 0, "failed": 0, "not_started": 0},
        ("a", "vgg13"): {"runs": 2, "done": 0, "running": 1, "failed": 1, "not_started": 0},
        ("b", "resnet18"): {"runs": 2, "done": 1, "running": 0, "failed": 1, "not_started": 0},
        ("b", "vgg13"): {"runs": 2, "done": 0, "running": 1, "failed": 0, "not_started": 1},
    }
    # (3600 + 3000 + 4200) s = 3 h and 1800 s = 0.5 h, x 2 GPUs
    assert table.loc[("a", "resnet18"), "hours"] == pytest.approx(3.0)
    assert table.loc[("a", "resnet18"), "gpu_hours"] == pytest.approx(6.0)
    assert table.loc[("a", "resnet18"), "median_run_h"] == pytest.approx(1.5)  # median of 1 h and 2 h
    assert table.loc[("b", "resnet18"), "gpu_hours"] == pytest.approx(1.0)
    assert status.totals["gpu_hours"] == pytest.approx(7.0) and status.totals["hours"] == pytest.approx(3.5)
    # left: a/vgg13 2 runs and b/vgg13 2 runs x the median of all done runs (1800, 3600, 7200 s:
    # 3600 s; no vgg13 run has finished), b/resnet18 1 run x its own 1800 s; over 2 running
    assert status.eta_s == pytest.approx((2 * 3600 + 2 * 3600 + 1 * 1800) / 2)
    assert "5 runs not done" in status.eta_method and "/ 2 runs in parallel" in status.eta_method
    # a live window longer than the checkpoint's 5000 s makes the killed-looking run a live one
    longer = grid_status(RUNS, FILES, {"resnet18": 6000, "vgg13": 1200}, gpus=2, now=NOW, root=grid)
    assert longer.totals["running"] == 3 and longer.totals["failed"] == 1


class Tables(HTMLParser):
    """The cells of every <table> of a page, as lists of rows (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None


def test_text_and_html_pages(grid, tmp_path):
    status = grid_status(RUNS, FILES, 1200, gpus=2, now=NOW, root=grid)
    text = status_text(status, html_path="results/status.html")
    lines = text.splitlines()
    assert lines[0].endswith("3 of 8 runs done (page: results/status.html)")
    total = next(line for line in lines if line.split()[:1] == ["total"])
    assert total.split() == ["total", "8", "3", "2", "2", "1", "3.50", "7.00", "1.00"]
    assert "Running (2):\n  dataset=a model=vgg13 n_train=20 seed=0: results/logs/run_model/a/vgg13/n20_seed0.log: " \
           "active 50 s ago\n  dataset=b model=vgg13 n_train=20 seed=0: no log: active 5 s ago\n" in text
    assert "  dataset=a model=vgg13 n_train=20 seed=1: results/logs/run_model/a/vgg13/n20_seed1.log: " \
           "torch.OutOfMemoryError" in text
    assert "dataset=b model=resnet18 n_train=20 seed=0: no log: no change for 83 min" in text
    assert "Time left: about 2.2 h = 5 runs not done" in text  # 8100 s

    page = status_html(status)
    assert "<script" not in page and "http" not in page  # self-contained
    parser = Tables()
    parser.feed(page)
    summary, failed, running = parser.tables
    header = summary[0]
    assert header[:8] == ["dataset", "model", "runs", "done", "running", "failed", "not started", "hours"]
    rows = {(row[0], row[1]): dict(zip(header, row, strict=True)) for row in summary[1:]}
    assert rows[("total", "")]["GPU-hours"] == "7.00" and rows[("total", "")]["not started"] == "1"
    assert rows[("a", "vgg13")]["median run h"] == "-" and rows[("a", "resnet18")]["hours"] == "3.00"
    assert [row[1] for row in failed[1:]] == ["results/logs/run_model/a/vgg13/n20_seed1.log", "no log"]
    assert [row[0] for row in running[1:]] == ["dataset=a model=vgg13 n_train=20 seed=0",
                                               "dataset=b model=vgg13 n_train=20 seed=0"]


def test_a_bad_benchmark_file_is_named(tmp_path):
    path = tmp_path / "run.tsv"
    path.write_text(BENCHMARK_HEADER + "soon\t0:00:00\n")
    with pytest.raises(ValueError, match=r"run\.tsv, line 2: column 's'"):
        benchmark_seconds(path)
    path.write_text("wall\n1\n")
    with pytest.raises(ValueError, match="not a Snakemake benchmark file"):
        benchmark_seconds(path)


def test_the_status_rule_beside_a_running_workflow(repo, tmp_path):
    """The real rule on the tiny grid: its run list is the workflow's (3 datasets x 2 models x 2 N
    x 2 seeds = 24 runs, from run_records as grid_tables' inputs), it reads the files where
    run_model writes them, ignores another Snakemake's lock and runs nothing else."""
    run = "digits/resnet18/noise0.0/standard/n20_seed0"
    for name in ("training.json", "evaluation.json", "jacobian_norms.npz"):
        (tmp_path / f"results/runs/{run}").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"results/runs/{run}/{name}").write_text("{}")
    (tmp_path / "results/benchmarks/run_model" / run).parent.mkdir(parents=True)
    (tmp_path / f"results/benchmarks/run_model/{run}.tsv").write_text(BENCHMARK_HEADER + "720.00" + "\t0" * 9 + "\n")
    failed = "results/logs/run_model/breast_28/vgg13/noise0.0/standard/n40_seed1.log"
    (tmp_path / failed).parent.mkdir(parents=True)
    (tmp_path / failed).write_text(TRACEBACK)
    live = tmp_path / "results/checkpoints/synthetic_d2/vgg13/noise0.0/standard/n20_seed1/lock"
    live.parent.mkdir(parents=True)
    live.write_text(f"pid 1 since {time.time()}")
    # the tiny grid's live window: 2 x checkpoint_minutes (10) = 1200 s, over eval_runtime_min (10)
    for seed, age_s in ((0, 1500), (1, 900)):
        folder = tmp_path / f"results/checkpoints/digits/vgg13/noise0.0/standard/n20_seed{seed}"
        (folder / "lock").parent.mkdir(parents=True)
        (folder / "lock").write_text("pid 2")
        for path in (folder / "lock", folder):
            os.utime(path, (time.time() - age_s,) * 2)
    # A lock of another Snakemake in this folder, on this very output (without --nolock: LockException)
    (tmp_path / ".snakemake/locks").mkdir(parents=True)
    (tmp_path / ".snakemake/locks/0.output.lock").write_text("results/status.html\n")
    before = {p for p in tmp_path.rglob("*") if p.is_file()}

    result = snakemake(repo, tmp_path, "status", "--nolock", "--force", "--cores", "1",
                       "--configfile", str(config_path("tiny")))
    counts = job_counts(result.stderr)  # the "Job stats" table
    assert counts["status"] == counts["total"] == 1
    assert "1 of 24 runs done (page: results/status.html)" in result.stdout
    made = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()} - {
        p.relative_to(tmp_path).as_posix() for p in before}
    assert {p for p in made if not p.startswith(".snakemake/")} == {"results/status.html", "results/logs/status.log"}
    parser = Tables()
    parser.feed((tmp_path / "results/status.html").read_text())
    summary, failed_runs, running = parser.tables
    rows = {(row[0], row[1]): dict(zip(summary[0], row, strict=True)) for row in summary[1:]}
    assert {key: (row["runs"], row["done"], row["running"], row["failed"], row["not started"])
            for key, row in rows.items()} == {
        ("digits", "resnet18"): ("4", "1", "0", "0", "3"), ("digits", "vgg13"): ("4", "0", "1", "1", "2"),
        ("breast_28", "resnet18"): ("4", "0", "0", "0", "4"), ("breast_28", "vgg13"): ("4", "0", "0", "1", "3"),
        ("synthetic_d2", "resnet18"): ("4", "0", "0", "0", "4"), ("synthetic_d2", "vgg13"): ("4", "0", "1", "0", "3"),
        ("total", ""): ("24", "1", "2", "2", "19"),
    }
    assert rows[("digits", "resnet18")]["hours"] == "0.20"  # 720 s; the tiny grid asks for 0 GPUs
    assert rows[("total", "")]["GPU-hours"] == "0.00"
    assert [row[1] for row in failed_runs[1:]] == ["no log", failed]
    assert [row[0].split()[:2] + row[0].split()[-1:] for row in running[1:]] == [
        ["dataset=digits", "model=vgg13", "seed=1"], ["dataset=synthetic_d2", "model=vgg13", "seed=1"]]
