#!/usr/bin/env python
"""Benchmark: intrinsic dimension (MLE + TwoNN) against a matmul floor and scikit-dimension.

Run from the repository root (takes a few minutes at full size on 2 cores):

    .venv/bin/python benchmarks/bench_intrinsic_dimension.py --json results/bench_id.json

Smoke test (seconds):

    .venv/bin/python benchmarks/bench_intrinsic_dimension.py --n 300 --size 32

What is measured (see benchmarks/README.md):

* floor  - one float32 ``X @ X.T`` with torch on the same (n, features) float32 data
           (``torch.from_numpy``, no copy); the least any exact all-pairs method must do.
* ours   - ``intrinsic.estimators.intrinsic_dimension(X, k)``: MLE and TwoNN together, float32
           input of shape (n, C, H, W).
* skdim  - ``skdim.id.MLE().fit(X, n_neighbors=k, comb="mle")`` and
           ``skdim.id.TwoNN(discard_fraction=0.1).fit(X)``, timed separately, each on the same
           float32 (n, features) array as is (sklearn's check_array keeps float32, so there is no
           conversion at all; sklearn upcasts its own row chunks to float64 internally, which is
           inside the timing). With ``--skdim-dtype float64`` a float64 copy is made once,
           outside every timing, and its cost is printed separately.
* memory - in a fresh subprocess per input dtype (float32 and uint8): peak resident memory of
           ``intrinsic_dimension`` relative to the size of the data as float32.

Goals: ours (MLE + TwoNN together) <= 1.3 x floor; peak RSS of the estimator process, less the
interpreter baseline (RSS after imports, before the data exists), < 2 x the float32 data bytes.

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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME_GOAL = 1.3  # ours / floor
MEMORY_GOAL = 2.0  # (peak RSS - interpreter baseline) / float32 data bytes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1750, help="number of images (default 1750)")
    p.add_argument("--size", type=int, default=224, help="image height = width (default 224)")
    p.add_argument("--channels", type=int, default=3, help="channels (default 3)")
    p.add_argument("--latent-dim", type=int, default=16, help="latent parameters of the images (default 16)")
    p.add_argument("--k", type=int, default=20, help="MLE neighbours (default 20)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each timed thing; the minimum is reported")
    p.add_argument("--threads", type=int, default=2, help="torch / BLAS / OpenMP threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skdim-dtype", choices=["float32", "float64"], default="float32",
                   help="dtype handed to scikit-dimension (float64: copy made outside the timings)")
    p.add_argument("--skip-skdim", action="store_true", help="time only the floor and ours")
    p.add_argument("--skip-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--memory-child", choices=["float32", "uint8"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else parse_args([])
# Thread counts must be fixed before numpy / torch / sklearn load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
from intrinsic.estimators import intrinsic_dimension  # noqa: E402

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


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3f} GiB"


# --------------------------------------------------------------------------------------------
# Memory: fresh subprocess per dtype
# --------------------------------------------------------------------------------------------
def memory_child(args) -> None:
    """Runs in a fresh process: baseline, generate data, reset the peak, run ours, print JSON."""
    dtype = np.uint8 if args.memory_child == "uint8" else np.float32
    # Warm torch's thread pool and allocator on something tiny so the baseline includes them.
    torch.ones(8, 8) @ torch.ones(8, 8)
    rss_interpreter = proc_status_kib("VmRSS")
    X = make_images(args.n, args.size, args.channels, args.latent_dim, dtype=dtype, seed=args.seed)
    rss_data = proc_status_kib("VmRSS")
    reset_ok = reset_peak_rss()
    t0 = time.perf_counter()
    result = intrinsic_dimension(X, k=args.k)
    seconds = time.perf_counter() - t0
    peak = peak_rss_kib(reset_ok)
    float32_bytes = X.size * 4
    print(json.dumps({
        "dtype": args.memory_child,
        "data_bytes": int(X.nbytes),
        "float32_data_bytes": int(float32_bytes),
        "rss_interpreter_bytes": rss_interpreter * 1024,
        "rss_after_data_bytes": rss_data * 1024,
        "peak_rss_bytes": peak * 1024,
        "peak_source": "VmHWM after clear_refs reset" if reset_ok else "ru_maxrss (includes data generation)",
        "seconds": seconds,
        "d_mle": result["d_mle"],
        "d_twonn": result["d_twonn"],
    }))


def run_memory(args, dtype: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", dtype,
           "--n", str(args.n), "--size", str(args.size), "--channels", str(args.channels),
           "--latent-dim", str(args.latent_dim), "--k", str(args.k), "--threads", str(args.threads),
           "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = m["peak_rss_bytes"] - m["rss_after_data_bytes"]
    above_interp = m["peak_rss_bytes"] - m["rss_interpreter_bytes"]
    m["extra_over_data_bytes"] = extra
    m["peak_above_interpreter_over_float32"] = above_interp / m["float32_data_bytes"]
    m["extra_over_float32"] = extra / m["float32_data_bytes"]
    m["pass"] = bool(m["peak_above_interpreter_over_float32"] < MEMORY_GOAL)
    return m


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def main(args) -> dict:
    n_features = args.channels * args.size * args.size
    print(f"# intrinsic-dimension benchmark  {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"# N={args.n} images {args.channels}x{args.size}x{args.size} ({n_features} features), "
          f"latent dim {args.latent_dim}, k={args.k}, threads={args.threads}, repeats={args.repeats} (min reported)")
    load_start = os.getloadavg()
    print(f"# load average at start (1/5/15 min): {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} "
          "(other processes on the machine inflate every timing)")
    print(f"# {platform.platform()}, {os.cpu_count()} logical CPUs, python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}")

    t0 = time.perf_counter()
    X4 = make_images(args.n, args.size, args.channels, args.latent_dim, dtype=np.float32, seed=args.seed)
    gen_s = time.perf_counter() - t0
    X = X4.reshape(args.n, -1)  # view, no copy
    assert np.shares_memory(X, X4)
    print(f"# data: float32 {X.shape}, {gib(X.nbytes)}, generated in {gen_s:.1f} s; "
          f"values in [{X.min():.3f}, {X.max():.3f}]")
    torch.ones(64, 64) @ torch.ones(64, 64)  # warm the thread pool

    res: dict = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                            if k != "memory_child"}}
    res["config"].update(n_features=n_features, data_bytes=int(X.nbytes))
    res["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                      "processor": platform.processor(), "numpy": np.__version__,
                      "torch": torch.__version__, "date": datetime.date.today().isoformat()}
    timings: dict = {}

    # 1./2. floor (one float32 X @ X.T) and ours (MLE + TwoNN together on the float32 (n, C, H, W)
    # array), interleaved per repeat so that load from other processes hits both alike.
    Xt = torch.from_numpy(X)  # shares memory
    floor_all, ours_all = [], []
    for _ in range(args.repeats):
        floor_all.append(timed(lambda: Xt @ Xt.T, 1)[0])
        s, _, ours = timed(lambda: intrinsic_dimension(X4, k=args.k), 1)
        ours_all.append(s)
        print(f"# floor  X@X.T float32 ........ {floor_all[-1]:8.2f} s", flush=True)
        print(f"# ours   MLE+TwoNN ............ {ours_all[-1]:8.2f} s  "
              f"d_mle={ours['d_mle']:.6f} d_twonn={ours['d_twonn']:.6f}", flush=True)
    timings["floor"], timings["ours"] = floor_all, ours_all

    # 3. scikit-dimension
    skdim_res = None
    if not args.skip_skdim:
        import skdim
        from threadpoolctl import threadpool_limits

        res["machine"]["skdim"] = getattr(skdim, "__version__", "?")
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
            print(f"# skdim  MLE (min) ............ {mle_s:8.2f} s  d={mle.dimension_:.6f}")
            two_s, two_all, two = timed(lambda: skdim.id.TwoNN(discard_fraction=0.1).fit(Xs), args.repeats)
            print(f"# skdim  TwoNN (min) .......... {two_s:8.2f} s  d={two.dimension_:.6f}")
        timings.update(skdim_mle=mle_all, skdim_twonn=two_all)
        skdim_res = {"d_mle": float(mle.dimension_), "d_twonn": float(two.dimension_),
                     "input_dtype": args.skdim_dtype, "conversion_seconds": conv_s,
                     "conversion_included": False, "note": note}
        del Xs

    res["timings_all_s"] = timings
    best = {k: min(v) for k, v in timings.items()}
    res["timings_min_s"] = best
    ratios = {"ours/floor": best["ours"] / best["floor"]}
    if skdim_res:
        ratios["skdim_mle/ours"] = best["skdim_mle"] / best["ours"]
        ratios["skdim_twonn/ours"] = best["skdim_twonn"] / best["ours"]
        ratios["(skdim_mle+skdim_twonn)/ours"] = (best["skdim_mle"] + best["skdim_twonn"]) / best["ours"]
    res["ratios"] = ratios
    res["estimates"] = {"ours": {k: ours[k] for k in ("d_mle", "d_twonn", "n_points", "n_duplicates")},
                        "skdim": skdim_res}
    time_pass = ratios["ours/floor"] <= TIME_GOAL
    res["goals"] = {"time": {"goal": f"ours/floor <= {TIME_GOAL}", "pass": time_pass}}
    del Xt, X, X4

    # 4. memory, in fresh subprocesses
    memory = {}
    if not args.skip_memory:
        for dtype in ("float32", "uint8"):
            memory[dtype] = run_memory(args, dtype)
        res["memory"] = memory
        res["goals"]["memory"] = {
            "goal": f"(peak RSS - interpreter RSS) < {MEMORY_GOAL} x float32 data bytes",
            "pass": {d: m["pass"] for d, m in memory.items()},
        }

    # 5. table
    lines = ["", "=" * 78, "TIME (seconds, min of %d)" % args.repeats, "-" * 78]
    lines.append(f"{'floor: torch float32 X @ X.T':46s} {best['floor']:10.2f}")
    lines.append(f"{'ours: intrinsic_dimension (MLE+TwoNN)':46s} {best['ours']:10.2f}")
    if skdim_res:
        lines.append(f"{'skdim MLE(comb=mle, k=%d)' % args.k:46s} {best['skdim_mle']:10.2f}")
        lines.append(f"{'skdim TwoNN(discard_fraction=0.1)':46s} {best['skdim_twonn']:10.2f}")
        lines.append(f"{'skdim MLE + TwoNN':46s} {best['skdim_mle'] + best['skdim_twonn']:10.2f}")
        lines.append(f"  skdim input: {skdim_res['note']}")
    lines += ["-" * 78, "RATIOS"]
    for k, v in ratios.items():
        lines.append(f"{k:46s} {v:10.3f}")
    lines += ["-" * 78, "ESTIMATES", f"{'':14s}{'ours':>14s}{'skdim':>14s}{'rel. diff':>12s}"]
    for name, key in (("MLE", "d_mle"), ("TwoNN", "d_twonn")):
        o = ours[key]
        if skdim_res:
            s = skdim_res[key]
            lines.append(f"{name:14s}{o:14.6f}{s:14.6f}{abs(o - s) / abs(s):12.2e}")
        else:
            lines.append(f"{name:14s}{o:14.6f}{'-':>14s}")
    lines.append(f"(latent dimension of the data: {args.latent_dim}; duplicates dropped: {ours['n_duplicates']})")
    if skdim_res:
        agree = all(abs(ours[k] - skdim_res[k]) <= 1e-4 * abs(skdim_res[k]) for k in ("d_mle", "d_twonn"))
        res["goals"]["agreement"] = {"goal": "|ours - skdim| <= 1e-4 relative", "pass": agree}
        lines.append(f"agreement ours vs skdim within 1e-4 relative: {'PASS' if agree else 'FAIL'}")
    lines += ["-" * 78,
              f"GOAL time: ours (MLE+TwoNN together) <= {TIME_GOAL} x floor: "
              f"{ratios['ours/floor']:.3f} x -> {'PASS' if time_pass else 'FAIL'}"]
    if memory:
        float32_bytes = next(iter(memory.values()))["float32_data_bytes"]
        lines += ["-" * 78,
                  "MEMORY of ours, fresh subprocess per input dtype (RSS from /proc/self/status).",
                  "  interp = RSS after imports, before the data exists; data = RSS after chunk-wise",
                  "  generation; peak = VmHWM (reset to RSS after generation) during intrinsic_dimension.",
                  f"  ratio = (peak - interp) / float32 data bytes ({gib(float32_bytes)}); "
                  f"goal: ratio < {MEMORY_GOAL}",
                  f"{'input':10s}{'interp':>11s}{'data':>11s}{'peak':>11s}{'peak-data':>11s}{'ratio':>8s}{'time s':>8s}"]
        for d, m in memory.items():
            lines.append(f"{d:10s}{m['rss_interpreter_bytes'] / 2**30:10.3f}G{m['rss_after_data_bytes'] / 2**30:10.3f}G"
                         f"{m['peak_rss_bytes'] / 2**30:10.3f}G{m['extra_over_data_bytes'] / 2**30:10.3f}G"
                         f"{m['peak_above_interpreter_over_float32']:8.3f}{m['seconds']:8.2f}")
        for d, m in memory.items():
            lines.append(f"GOAL memory ({d} input): (peak - interp) < {MEMORY_GOAL} x float32 data: "
                         f"{m['peak_above_interpreter_over_float32']:.3f} x -> {'PASS' if m['pass'] else 'FAIL'}")
        lines.append(f"  peak source: {next(iter(memory.values()))['peak_source']}; estimates in the subprocesses: "
                     + ", ".join(f"{d} d_mle={m['d_mle']:.4f} d_twonn={m['d_twonn']:.4f}" for d, m in memory.items()))
    load_end = os.getloadavg()
    res["machine"]["loadavg_start"], res["machine"]["loadavg_end"] = load_start, load_end
    lines.append(f"load average (1 min) at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")
    lines.append("=" * 78)
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
