"""Where a long grid run stands (rule status, ``make status``): per dataset and model, how many
runs are done, running, failed and not started, the hours of the finished ones, and the time left.

It only looks at the files a run leaves (their patterns come from rule run_model,
workflow/rules/grid.smk), so it can run beside the Snakemake process that runs the grid:
    outputs      the run's records; all of them exist once it is done
    log          rewritten by every attempt (``logs.logged``, mode "w"): a line at the start and per
                 epoch; an attempt that fails ends it with "failed:" and the traceback
    checkpoints  a folder holding the run's lock (taken as training starts) and its resume
                 checkpoint (written at most every ``checkpoint_every_s``); a finished run removes it
    benchmark    Snakemake's TSV of a successful job: its wall-clock seconds in column ``s``

A run that is not done is *running* when its log or checkpoint folder changed within its live
window, *failed* when its log holds an error or its files went stale (a killed job leaves no
traceback), and *not started* when it left no file. A SLURM job waiting in the queue for its
retry shows as failed until it starts.
"""

from __future__ import annotations

import csv
import datetime
import html
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STATES = ("done", "running", "failed", "not_started")
# logs.logged writes "<date> <time> LEVEL name: message"; an uncaught error adds a traceback.
_ERROR_LINE = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ", re.MULTILINE)
_TRACEBACK = "Traceback (most recent call last):"


@dataclass(frozen=True)
class RunFiles:
    """Path patterns of one run's files, with the grid axes as {wildcards} (rule run_model)."""

    outputs: Sequence[str]
    log: str
    benchmark: str
    checkpoints: str


def benchmark_seconds(path: str | os.PathLike) -> float:
    """Wall-clock seconds of a Snakemake benchmark TSV: its column ``s``, summed over the rows
    (one per benchmark repeat)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no column 's' in its header {rows[:1]})")
    column = rows[0].index("s")
    total = 0.0
    for line, row in enumerate(rows[1:], start=2):
        try:
            total += float(row[column])
        except (IndexError, ValueError):
            raise ValueError(f"{path}, line {line}: column 's' is not a number of seconds: {row}") from None
    if len(rows) < 2:
        raise ValueError(f"{path}: a benchmark header without a row")
    return total


def _newest_change(log: Path, checkpoints: Path) -> float | None:
    """The latest modification time of the log and of the checkpoint folder and its files."""
    times = []
    for path in (log, checkpoints):
        try:
            times.append(path.stat().st_mtime)
        except FileNotFoundError:
            pass
    try:
        with os.scandir(checkpoints) as entries:
            for entry in entries:
                try:
                    times.append(entry.stat().st_mtime)
                except FileNotFoundError:  # removed meanwhile (a partial write, or the run finished)
                    pass
    except (FileNotFoundError, NotADirectoryError):
        pass
    return max(times) if times else None


def _error_in(log: Path) -> str | None:
    """The last line of the log when it records an error (the exception, as logged), else None."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return None
    if _TRACEBACK not in text and not _ERROR_LINE.search(text):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "error"


def run_states(runs: Sequence[Mapping[str, str]], files: RunFiles, live_window_s: float | Mapping[str, float],
               *, now: float | None = None, root: str | os.PathLike = ".") -> pd.DataFrame:
    """One row per run of ``runs`` (each its wildcards, e.g. {"dataset": ..., "model": ...}): its
    axes, ``state`` (one of STATES), ``log`` (the log's path, relative like the patterns, when it
    exists), ``reason`` (why failed or how long ago a running run was active), ``seconds`` (the
    benchmark's wall-clock seconds; NaN without one) and ``idle_s`` (seconds since its files last
    changed; NaN when it has none).

    ``live_window_s``: how long a run may go without changing its log or checkpoint folder and
    still count as running; one number or one per model. ``now``: the time to judge by (default
    the clock); ``root``: the folder the patterns are relative to."""
    now = time.time() if now is None else now
    root = Path(root)
    rows = []
    for run in runs:
        window = live_window_s[run["model"]] if isinstance(live_window_s, Mapping) else live_window_s
        log_name = files.log.format(**run)
        log = root / log_name
        benchmark = root / files.benchmark.format(**run)
        seconds = benchmark_seconds(benchmark) if benchmark.exists() else np.nan
        row = {**run, "state": "not_started", "log": log_name if log.exists() else "", "reason": "",
               "seconds": seconds, "idle_s": np.nan}
        if all((root / pattern.format(**run)).exists() for pattern in files.outputs):
            row["state"] = "done"
            rows.append(row)
            continue
        changed = _newest_change(log, root / files.checkpoints.format(**run))
        if changed is not None:
            row["idle_s"] = max(0.0, now - changed)
        error = _error_in(log)
        if error is not None:
            row["state"], row["reason"] = "failed", error
        elif changed is None:
            pass
        elif row["idle_s"] <= window:
            row["state"], row["reason"] = "running", f"active {_duration(row['idle_s'])} ago"
        else:
            row["state"] = "failed"
            row["reason"] = (f"no change for {_duration(row['idle_s'])} (live window {_duration(window)}): "
                             "killed, or waiting for its retry")
        rows.append(row)
    return pd.DataFrame(rows, columns=[*(runs[0] if runs else ["dataset", "model"]), "state", "log", "reason",
                                       "seconds", "idle_s"])


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Status:
    """A grid's status: ``table`` per dataset and model (grid order) and its ``totals``,
    ``runs`` per run (``run_states``), the estimate of the time left and how it was made."""

    runs: pd.DataFrame
    table: pd.DataFrame
    totals: dict
    eta_s: float  # NaN until a run has finished
    eta_method: str
    gpus: float
    when: float


def summarize(runs: pd.DataFrame, gpus: float, *, now: float | None = None) -> Status:
    """Counts per state, hours and GPU-hours (benchmark seconds x ``gpus`` per run / 3600) per
    dataset and model, and the time left: the runs not done x the median wall time of the done
    runs of their dataset and model (of all done runs where none of theirs finished) / the runs
    running now (at least 1)."""
    now = time.time() if now is None else now
    groups = ["dataset", "model"]
    finished = runs[(runs["state"] == "done") & runs["seconds"].notna()]
    overall_median = finished["seconds"].median() if len(finished) else np.nan
    rows = []
    for (dataset, model), group in runs.groupby(groups, sort=False):
        counts = group["state"].value_counts()
        mine = finished[(finished["dataset"] == dataset) & (finished["model"] == model)]["seconds"]
        median = mine.median() if len(mine) else overall_median
        left = len(group) - int(counts.get("done", 0))
        hours = group["seconds"].sum() / 3600  # NaN (no benchmark) counts as 0
        rows.append({"dataset": dataset, "model": model, "runs": len(group),
                     **{state: int(counts.get(state, 0)) for state in STATES},
                     "hours": hours, "gpu_hours": hours * gpus,
                     "median_run_h": mine.median() / 3600 if len(mine) else np.nan,
                     "_work_left_s": left * median if left else 0.0})
    table = pd.DataFrame(rows, columns=[*groups, "runs", *STATES, "hours", "gpu_hours", "median_run_h",
                                        "_work_left_s"])
    work_left = table.pop("_work_left_s").sum()
    running = int(table["running"].sum())
    parallel = max(running, 1)
    left = int(table["runs"].sum() - table["done"].sum())
    eta = 0.0 if left == 0 else (work_left / parallel if len(finished) else np.nan)
    totals = {"runs": int(table["runs"].sum()), **{state: int(table[state].sum()) for state in STATES},
              "hours": float(table["hours"].sum()), "gpu_hours": float(table["gpu_hours"].sum()),
              "median_run_h": overall_median / 3600,
              "no_benchmark": int((runs["state"] == "done").sum() - len(finished))}
    method = (f"{left} runs not done (running, failed and not started) x the median wall time of the finished runs "
              f"of their dataset and model (of all finished runs where none of theirs has finished) / {parallel} "
              f"run{'s' if parallel != 1 else ''} in parallel (the number running now, at least 1)")
    return Status(runs=runs, table=table, totals=totals, eta_s=float(eta), eta_method=method, gpus=gpus, when=now)


def _run_name(row: pd.Series, axes: Sequence[str]) -> str:
    return " ".join(f"{axis}={row[axis]}" for axis in axes)


def _axes(status: Status) -> list[str]:
    return [c for c in status.runs.columns if c not in ("state", "log", "reason", "seconds", "idle_s")]


def _eta_text(status: Status) -> str:
    if np.isnan(status.eta_s):
        return "unknown until a run has finished"
    if status.eta_s == 0:
        return "none: every run is done"
    return f"about {_duration(status.eta_s)}"


def _display_table(status: Status) -> pd.DataFrame:
    total = {"dataset": "total", "model": "", **status.totals}
    table = pd.concat([status.table, pd.DataFrame([total])[status.table.columns]], ignore_index=True)
    return table.rename(columns={"not_started": "not started", "median_run_h": "median run h",
                                 "gpu_hours": "GPU-hours"})


def status_text(status: Status, *, html_path: str | None = None, max_listed: int = 30) -> str:
    """The status as fixed-width text: the table, the failed runs with their logs, the time left."""
    when = datetime.datetime.fromtimestamp(status.when).isoformat(sep=" ", timespec="seconds")
    lines = [f"Grid status at {when}: {status.totals['done']} of {status.totals['runs']} runs done"
             + (f" (page: {html_path})" if html_path else ""), ""]
    lines.append(_display_table(status).to_string(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}"))
    lines.append("")
    axes = _axes(status)
    for state, title in (("failed", "Failed"), ("running", "Running")):
        chosen = status.runs[status.runs["state"] == state]
        if not len(chosen):
            continue
        lines.append(f"{title} ({len(chosen)}):")
        for _, row in chosen.head(max_listed).iterrows():
            where = row["log"] or "no log"
            lines.append(f"  {_run_name(row, axes)}: {where}: {row['reason']}")
        if len(chosen) > max_listed:
            lines.append(f"  ... and {len(chosen) - max_listed} more" + (f" (all in {html_path})" if html_path else ""))
        lines.append("")
    missing = status.totals["no_benchmark"]
    lines.append(f"GPU-hours: {status.totals['gpu_hours']:.2f} = benchmark seconds of the finished runs x "
                 f"{status.gpus:g} GPU(s) per run / 3600 (attempts that failed or are running are not counted"
                 + (f"; {missing} done runs have no benchmark file" if missing else "") + ")")
    lines.append(f"Time left: {_eta_text(status)}" + ("" if np.isnan(status.eta_s) or status.eta_s == 0
                                                      else f" = {status.eta_method}"))
    return "\n".join(lines) + "\n"


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:75em}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:.2em .6em;text-align:right}
th{background:#eee}td:first-child,td:nth-child(2){text-align:left}tr:last-child td{font-weight:bold}
table.runs td{text-align:left}table.runs tr:last-child td{font-weight:normal}"""


def status_html(status: Status) -> str:
    """The status as a small self-contained HTML page (no scripts, no external files)."""
    when = datetime.datetime.fromtimestamp(status.when).isoformat(sep=" ", timespec="seconds")
    table = _display_table(status).to_html(index=False, na_rep="-", float_format=lambda x: f"{x:.2f}",
                                           classes="summary", border=0)
    parts = [f"<h1>Grid status</h1><p>At {html.escape(when)}: {status.totals['done']} of {status.totals['runs']} "
             "runs done.</p>", table]
    axes = _axes(status)
    for state, title in (("failed", "Failed runs"), ("running", "Running runs")):
        chosen = status.runs[status.runs["state"] == state]
        if len(chosen):
            listed = pd.DataFrame({"run": [_run_name(row, axes) for _, row in chosen.iterrows()],
                                   "log": chosen["log"].replace("", "no log").to_numpy(),
                                   "reason": chosen["reason"].to_numpy()})
            parts.append(f"<h2>{title} ({len(chosen)})</h2>" + listed.to_html(index=False, classes="runs", border=0))
    parts.append(f"<p>GPU-hours: {status.totals['gpu_hours']:.2f} = benchmark seconds of the finished runs x "
                 f"{status.gpus:g} GPU(s) per run / 3600; attempts that failed or are running are not counted.</p>")
    eta = _eta_text(status)
    if not (np.isnan(status.eta_s) or status.eta_s == 0):
        eta += f" = {status.eta_method}"
    parts.append(f"<p>Time left: {html.escape(eta)}.</p>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Grid status</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def grid_status(runs: Sequence[Mapping[str, str]], files: RunFiles, live_window_s: float | Mapping[str, float],
                gpus: float, *, now: float | None = None, root: str | os.PathLike = ".") -> Status:
    """``run_states`` and ``summarize`` at one moment."""
    now = time.time() if now is None else now
    return summarize(run_states(runs, files, live_window_s, now=now, root=root), gpus, now=now)
