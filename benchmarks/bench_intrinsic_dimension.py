#!/usr/bin/env python
"""Benchmark: intrinsic dimension (MLE + TwoNN) against a block-by-block matmul floor.

Run from the repository root (2 cores: images ~1 min, mnist ~5 min, cifar ~11 min):

    .venv/bin/python benchmarks/bench_intrinsic_dimension.py --case all --json results/bench_id.json

Smoke test (seconds):

    .venv/bin/python benchmarks/bench_intrinsic_dimension.py --case images --n 300 --size 32
    .venv/bin/python benchmarks/bench_intrinsic_dimension.py --case mnist --n 3000 --skip-memory

Cases (``--case``, several allowed, ``all`` = the three):

* images - N = 1750 synthetic (3, 224, 224) images (``--n``, ``--size``, ``--channels``), the
           size the workflow uses; float32 in the timed run, float32 and uint8 in the memory runs.
* mnist  - the 60,000 training digits (uint8 28 x 28) of ``--mnist`` (default
           ../shared/data/mnist.npz from the repository root, key x_train); ``--n`` takes the first n.
* cifar  - CIFAR-size data: 50,000 synthetic uint8 (3, 32, 32) images of the same generator.

What is measured (see benchmarks/README.md):

* floor  - the matrix products ours cannot avoid, done the same way: for every block of
           ``row_block`` query rows (the estimator's default, ``default_row_block(n)``, or
           ``--row-block``), one float32 ``torch.mm(C[block], C.T, out=buffer)`` against the
           centred float32 data C, converted beforehand outside the timing. Nothing else.
* ours   - one ``intrinsic.estimators.intrinsic_dimension(X, k)`` call (MLE and TwoNN from one
           nearest-neighbour computation) on the case's data as stored (uint8, or float32 images).
* skdim  - images case only: ``skdim.id.MLE().fit(X, n_neighbors=k, comb="mle")`` and
           ``skdim.id.TwoNN(discard_fraction=0.1).fit(X)``, each on the float32 (n, features)
           array (``--skdim-dtype float64``: a float64 copy made outside the timings).
* memory - in a fresh subprocess per input dtype: peak RSS (VmHWM, reset after the data exists)
           during ``intrinsic_dimension``, less the RSS with the data loaded: the memory beyond
           the data.

Goals: ours <= 1.5 x floor in every case; peak memory beyond the data < 2 GB (2000 MB) at
n = 60,000 (and in every case here).

Not a pytest module: no test_ functions, and pytest only collects tests/ (pyproject.toml).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME_GOAL = 1.5  # ours / floor
MEMORY_GOAL_MB = 2000.0  # peak RSS beyond the data, MB (1e6 bytes)
CASES = ("images", "mnist", "cifar")
CASE_DEFAULTS = {  # n, channels, size
    "images": (1750, 3, 224),
    "mnist": (60000, 1, 28),
    "cifar": (50000, 3, 32),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", nargs="+", choices=[*CASES, "all"], default=["images"],
                   help="data set(s) to run (default images; all = images mnist cifar)")
    p.add_argument("--n", type=int, help="number of points (default: 1750 images, 60000 mnist, 50000 cifar)")
    p.add_argument("--size", type=int, help="images/cifar: image height = width (default 224 / 32)")
    p.add_argument("--channels", type=int, help="images/cifar: channels (default 3)")
    p.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "data" / "mnist.npz",
                   help="MNIST npz with x_train (default ../shared/data/mnist.npz from the repository root)")
    p.add_argument("--latent-dim", type=int, default=16, help="latent parameters of the synthetic images (default 16)")
    p.add_argument("--k", type=int, default=20, help="MLE neighbours (default 20)")
    p.add_argument("--row-block", type=int, help="query rows per block, for ours and the floor "
                   "(default: the estimator's default_row_block(n))")
    p.add_argument("--repeats", type=int, default=1, help="runs of each timed thing; the minimum is reported")
    p.add_argument("--threads", type=int, default=2, help="torch / BLAS / OpenMP threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skdim-dtype", choices=["float32", "float64"], default="float32",
                   help="dtype handed to scikit-dimension (float64: copy made outside the timings)")
    p.add_argument("--skip-skdim", action="store_true", help="images case: time only the floor and ours")
    p.add_argument("--skip-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--memory-child", choices=["float32", "uint8"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.case = list(CASES) if "all" in args.case else list(dict.fromkeys(args.case))
    return args


ARGS = parse_args() if __name__ == "__main__" else parse_args([])
# Thread counts must be fixed before numpy / torch / sklearn load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np
import torch

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
from intrinsic.estimators import default_row_block, intrinsic_dimension

torch.set_num_threads(ARGS.threads)


# --------------------------------------------------------------------------------------------
# Data: images that are smooth functions of `latent_dim` parameters.
# --------------------------------------------------------------------------------------------
def make_images(n: int, size: int, channels: int, latent_dim: int, dtype=np.float32,
                seed: int = 0, chunk: int = 32) -> np.ndarray:
    """(n, channels, size, size) images of ceil(latent_dim / 2) coloured Gaussian blobs.

    The latent parameters (uniform on [0, 1]) are the blobs' x and y positions (an odd
    latent_dim leaves the last blob's y fixed at the centre); widths and colours are fixed per
    blob, so the images lie on a smooth latent_dim-dimensional manifold in pixel space.
    Pixel = 0.05 + 0.9 * (1 - exp(-sum of blobs)), in [0.05, 0.95]. Generated `chunk` images at
    a time straight into the preallocated output, so generation needs only the output plus one
    chunk; uint8 output is round(255 * value).
    """
    rng = np.random.default_rng(seed)
    n_blobs = (latent_dim + 1) // 2
    widths = rng.uniform(0.08, 0.16, n_blobs).astype(np.float32)
    colours = rng.uniform(0.3, 1.5, (n_blobs, channels)).astype(np.float32)
    z = rng.random((n, latent_dim))
    pos = np.full((n, n_blobs * 2), 0.5)
    pos[:, :latent_dim] = 0.15 + 0.7 * z
    pos = pos.reshape(n, n_blobs, 2).astype(np.float32)
    t = ((np.arange(size) + 0.5) / size).astype(np.float32)

    out = np.empty((n, channels, size, size), dtype=dtype)
    for start in range(0, n, chunk):
        p = pos[start : start + chunk]  # (m, B, 2)
        gx = np.exp(-((t[None, None, :] - p[:, :, 0:1]) ** 2) / (2 * widths[None, :, None] ** 2))  # (m, B, W)
        gy = np.exp(-((t[None, None, :] - p[:, :, 1:2]) ** 2) / (2 * widths[None, :, None] ** 2))  # (m, B, H)
        a = gy[:, None, :, :] * colours.T[None, :, :, None]  # (m, C, B, H)
        img = np.matmul(a.transpose(0, 1, 3, 2), gx[:, None])  # (m, C, H, W)
        img = 0.05 + 0.9 * (1 - np.exp(-img))
        if dtype == np.uint8:
            out[start : start + chunk] = np.rint(img * 255)
        else:
            out[start : start + chunk] = img
    return out


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def timed(fn, repeats: int):
    """(min seconds, all seconds, last result) of `repeats` calls of fn()."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def proc_status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = proc_status_kib("VmHWM"), proc_status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024


def peak_rss_kib(reset_ok: bool) -> int:
    if reset_ok:
        return proc_status_kib("VmHWM")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def case_shape(args, case: str) -> tuple[int, int, int]:
    n, channels, size = CASE_DEFAULTS[case]
    if case == "mnist":
        return args.n or n, channels, size
    return args.n or n, args.channels or channels, args.size or size


def load_case(args, case: str, dtype=None) -> np.ndarray:
    """The case's data as stored: (n, C, H, W); dtype None = the timed run's dtype."""
    n, channels, size = case_shape(args, case)
    if case == "mnist":
        with np.load(args.mnist) as f:
            x = f["x_train"]
        if n > len(x):
            raise SystemExit(f"--n {n}: {args.mnist} has only {len(x)} training digits")
        x = np.ascontiguousarray(x[:n, None])
        return x if dtype in (None, np.uint8) else x.astype(dtype)
    if dtype is None:
        dtype = np.float32 if case == "images" else np.uint8
    return make_images(n, size, channels, args.latent_dim, dtype=dtype, seed=args.seed)


def memory_dtypes(case: str) -> tuple[str, ...]:
    return ("float32", "uint8") if case == "images" else ("uint8",)


def centred_float32(X: np.ndarray) -> torch.Tensor:
    """(n, features) centred float32 copy, made row block by row block (outside any timing)."""
    flat = X.reshape(len(X), -1)
    C = torch.empty(flat.shape, dtype=torch.float32)
    for start in range(0, len(flat), 4096):
        C[start : start + 4096].copy_(torch.from_numpy(flat[start : start + 4096]))
    if X.dtype == np.uint8:
        C /= 255
    C -= C.mean(dim=0)
    return C


def floor_products(C: torch.Tensor, row_block: int) -> None:
    """The same float32 GEMMs as the estimator: each row block against all points."""
    n = len(C)
    out = torch.empty((min(row_block, n), n), dtype=torch.float32)
    for start in range(0, n, row_block):
        stop = min(start + row_block, n)
        torch.mm(C[start:stop], C.T, out=out[: stop - start])


# --------------------------------------------------------------------------------------------
# Memory: fresh subprocess per dtype
# --------------------------------------------------------------------------------------------
def memory_child(args) -> None:
    """Runs in a fresh process: baseline, load the data, reset the peak, run ours, print JSON."""
    case = args.case[0]
    dtype = np.uint8 if args.memory_child == "uint8" else np.float32
    # Warm torch's thread pool and allocator on something tiny so the baseline includes them.
    torch.ones(8, 8) @ torch.ones(8, 8)
    rss_interpreter = proc_status_kib("VmRSS")
    X = load_case(args, case, dtype)
    rss_data = proc_status_kib("VmRSS")
    reset_ok = reset_peak_rss()
    t0 = time.perf_counter()
    result = intrinsic_dimension(X, k=args.k, row_block=args.row_block)
    seconds = time.perf_counter() - t0
    peak = peak_rss_kib(reset_ok)
    print(json.dumps({
        "dtype": args.memory_child,
        "data_bytes": int(X.nbytes),
        "rss_interpreter_bytes": rss_interpreter * 1024,
        "rss_after_data_bytes": rss_data * 1024,
        "peak_rss_bytes": peak * 1024,
        "peak_source": "VmHWM after clear_refs reset" if reset_ok else "ru_maxrss (includes loading the data)",
        "seconds": seconds,
        "d_mle": result["d_mle"],
        "d_twonn": result["d_twonn"],
    }))


def run_memory(args, case: str, dtype: str) -> dict:
    n, channels, size = case_shape(args, case)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", dtype, "--case", case,
           "--n", str(n), "--size", str(size), "--channels", str(channels), "--mnist", str(args.mnist),
           "--latent-dim", str(args.latent_dim), "--k", str(args.k), "--threads", str(args.threads),
           "--seed", str(args.seed)]
    if args.row_block:
        cmd += ["--row-block", str(args.row_block)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    m["beyond_data_mb"] = (m["peak_rss_bytes"] - m["rss_after_data_bytes"]) / 1e6
    m["pass"] = bool(m["beyond_data_mb"] < MEMORY_GOAL_MB)
    return m


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def run_skdim(args, X: np.ndarray) -> tuple[dict, dict]:
    import skdim
    from threadpoolctl import threadpool_limits

    if args.skdim_dtype == "float64":
        t0 = time.perf_counter()
        Xs = X.astype(np.float64)
        conv_s = time.perf_counter() - t0
        note = f"float64 copy made once in {conv_s:.2f} s, NOT included in the skdim timings"
    else:
        Xs, conv_s = X, 0.0
        note = "float32 array passed as is (no conversion; sklearn upcasts row chunks internally, included)"
    print(f"# skdim input: {note}")
    with threadpool_limits(limits=args.threads):
        mle_s, mle_all, mle = timed(lambda: skdim.id.MLE().fit(Xs, n_neighbors=args.k, comb="mle"), args.repeats)
        print(f"# skdim  MLE (min) ............ {mle_s:8.2f} s  d={mle.dimension_:.6f}", flush=True)
        two_s, two_all, two = timed(lambda: skdim.id.TwoNN(discard_fraction=0.1).fit(Xs), args.repeats)
        print(f"# skdim  TwoNN (min) .......... {two_s:8.2f} s  d={two.dimension_:.6f}", flush=True)
    return ({"skdim_mle": mle_all, "skdim_twonn": two_all},
            {"d_mle": float(mle.dimension_), "d_twonn": float(two.dimension_),
             "version": getattr(skdim, "__version__", "?"), "input_dtype": args.skdim_dtype,
             "conversion_seconds": conv_s, "note": note})


def run_case(args, case: str) -> dict:
    t0 = time.perf_counter()
    X4 = load_case(args, case)
    load_s = time.perf_counter() - t0
    X = X4.reshape(len(X4), -1)
    n, n_features = X.shape
    row_block = args.row_block or default_row_block(n)
    print(f"\n# case {case}: n={n}, {X4.shape[1:]} = {n_features} features, {X.dtype}, {X.nbytes / 1e6:.0f} MB, "
          f"{'loaded' if case == 'mnist' else 'generated'} in {load_s:.1f} s; k={args.k}, row_block={row_block} "
          f"({-(-n // row_block)} blocks)", flush=True)
    C = centred_float32(X)
    floor_products(C[: min(n, 256)], row_block)  # warm the thread pool and the GEMM kernels
    floor_all, ours_all = [], []
    for _ in range(args.repeats):  # interleaved, so that background load hits both alike
        floor_all.append(timed(partial(floor_products, C, row_block), 1)[0])
        s, _, ours = timed(partial(intrinsic_dimension, X4, k=args.k, row_block=args.row_block), 1)
        ours_all.append(s)
        print(f"# floor  row-block float32 GEMMs  {floor_all[-1]:8.2f} s", flush=True)
        print(f"# ours   MLE+TwoNN ............ {ours_all[-1]:8.2f} s  "
              f"d_mle={ours['d_mle']:.6f} d_twonn={ours['d_twonn']:.6f} duplicates={ours['n_duplicates']}", flush=True)
    del C
    timings = {"floor": floor_all, "ours": ours_all}
    res = {"case": case, "n": n, "features": n_features, "dtype": str(X.dtype), "data_bytes": int(X.nbytes),
           "row_block": row_block, "estimates": {k: ours[k] for k in ("d_mle", "d_twonn", "n_points", "n_duplicates")}}
    if case == "images" and not args.skip_skdim:
        skdim_timings, res["skdim"] = run_skdim(args, X.astype(np.float32, copy=False))
        timings.update(skdim_timings)
    del X, X4
    res["timings_all_s"] = timings
    best = res["timings_min_s"] = {k: min(v) for k, v in timings.items()}
    res["ratio"] = best["ours"] / best["floor"]
    res["time_pass"] = bool(res["ratio"] <= TIME_GOAL)
    if not args.skip_memory:
        res["memory"] = {d: run_memory(args, case, d) for d in memory_dtypes(case)}
        for d, m in res["memory"].items():
            print(f"# memory {d:8s} beyond data {m['beyond_data_mb']:8.0f} MB (data {m['data_bytes'] / 1e6:.0f} MB), "
                  f"{m['seconds']:.2f} s", flush=True)
    return res


def report(results: list[dict]) -> list[str]:
    lines = ["", "=" * 96,
             f"{'case':8s}{'n':>7s}{'features':>9s}{'dtype':>8s}{'row_block':>10s}{'floor s':>9s}{'ours s':>9s}"
             f"{'ratio':>7s}{'beyond data MB':>26s}{'d_mle':>9s}{'d_twonn':>9s}",
             "-" * 96]
    for r in results:
        best = r["timings_min_s"]
        mem = ", ".join(f"{d} {m['beyond_data_mb']:.0f}" for d, m in r.get("memory", {}).items()) or "-"
        lines.append(f"{r['case']:8s}{r['n']:7d}{r['features']:9d}{r['dtype']:>8s}{r['row_block']:10d}"
                     f"{best['floor']:9.2f}{best['ours']:9.2f}{r['ratio']:7.3f}{mem:>26s}"
                     f"{r['estimates']['d_mle']:9.3f}{r['estimates']['d_twonn']:9.3f}")
    lines.append("-" * 96)
    for r in results:
        lines.append(f"GOAL time   {r['case']:8s} ours <= {TIME_GOAL} x floor: {r['ratio']:.3f} x -> "
                     f"{'PASS' if r['time_pass'] else 'FAIL'}")
        for d, m in r.get("memory", {}).items():
            lines.append(f"GOAL memory {r['case']:8s} {d:8s} beyond data < {MEMORY_GOAL_MB:.0f} MB: "
                         f"{m['beyond_data_mb']:.0f} MB -> {'PASS' if m['pass'] else 'FAIL'} "
                         f"(peak {m['peak_rss_bytes'] / 1e6:.0f} MB, "
                         f"with data {m['rss_after_data_bytes'] / 1e6:.0f} MB, "
                         f"interpreter {m['rss_interpreter_bytes'] / 1e6:.0f} MB; {m['peak_source']})")
        if "skdim" in r:
            best, s = r["timings_min_s"], r["skdim"]
            lines.append(f"skdim     {r['case']:8s} MLE {best['skdim_mle']:.2f} s, TwoNN {best['skdim_twonn']:.2f} s, "
                         f"together {(best['skdim_mle'] + best['skdim_twonn']) / best['ours']:.2f} x ours; "
                         f"estimates {s['d_mle']:.6f} / {s['d_twonn']:.6f} (ours {r['estimates']['d_mle']:.6f} / "
                         f"{r['estimates']['d_twonn']:.6f}); {s['note']}")
    return lines


def main(args) -> dict:
    print(f"# intrinsic-dimension benchmark  {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"# cases {args.case}, k={args.k}, threads={args.threads}, repeats={args.repeats} (min reported)")
    load_start = os.getloadavg()
    print(f"# load average at start (1/5/15 min): {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} "
          "(other processes on the machine inflate every timing)")
    print(f"# {platform.platform()}, {os.cpu_count()} logical CPUs, python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}")
    res: dict = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                            if k != "memory_child"}}
    res["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                      "processor": platform.processor(), "numpy": np.__version__,
                      "torch": torch.__version__, "date": datetime.date.today().isoformat()}
    res["cases"] = [run_case(args, case) for case in args.case]
    load_end = os.getloadavg()
    res["machine"]["loadavg_start"], res["machine"]["loadavg_end"] = load_start, load_end
    lines = report(res["cases"])
    lines.append(f"load average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")
    lines.append("=" * 96)
    print("\n".join(lines), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=float))
        print(f"# wrote {args.json}")
    return res


if __name__ == "__main__":
    if ARGS.memory_child:
        memory_child(ARGS)
    else:
        main(ARGS)
