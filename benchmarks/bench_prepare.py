#!/usr/bin/env python
"""Benchmark: preparing real-format files into the 224 x 224 cache, 1 worker vs several.

Run from the repository root (about 3-4 minutes at the defaults on 2 cores):

    .venv/bin/python benchmarks/bench_prepare.py
    .venv/bin/python benchmarks/bench_prepare.py --quick          # 1000 PNGs, 4 volumes, ~30 s

What is timed, per data set and worker count (``--threads``, default 1 and 2), the whole of what
rule prepare_dataset does: ``load_source(name, source, threads=t, size=224, channels=1)`` then
``write_cache`` (decode, normalise, resize, quantise, write the .npy files):

* png    ``--n-png`` 256 x 256 8-bit gray PNGs (smooth random images, so PNG compression is
         realistic) in two class folders, source type ``image_folder``;
* nifti  ``--n-volumes`` 240 x 240 x 155 float32 .nii.gz volumes with a seg mask (the BraTS
         geometry), source type ``nifti`` with percentile normalisation and foreground drop.

threads = 1 runs everything in the calling process (the single-process baseline); threads = t
uses a pool of t workers (``intrinsic.sources.common.POOL_KIND``: processes by default; ``--pool
thread`` measures a thread pool instead). The files are generated once into ``--data`` (default
a temporary folder, deleted at the end) and every configuration reads the same files; the OS
page cache is warm for all but the first run, so a cold first run is excluded by a warm-up read.
Each configuration runs ``--repeats`` times; the minimum is reported.

Not a pytest module: no test_ functions, and pytest only collects tests/.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from intrinsic.cache import write_cache
from intrinsic.sources import common, load_source


def smooth_image(rng: np.random.Generator, side: int) -> np.ndarray:
    """Low-frequency noise upsampled to side x side, uint8: compresses like a photo, not like noise."""
    from skimage.transform import resize

    coarse = rng.uniform(0, 255, size=(side // 16, side // 16))
    image = resize(coarse, (side, side), order=3, preserve_range=True) + rng.normal(0, 4, size=(side, side))
    return np.clip(image, 0, 255).astype(np.uint8)


def make_pngs(folder: Path, n: int, side: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        target = folder / ("class_a" if i % 2 == 0 else "class_b") / f"img_{i:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(rng, side)).save(target)


def make_volumes(folder: Path, n: int, shape=(240, 240, 155), seed: int = 0) -> None:
    import nibabel

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    head = (zz ** 2 + yy ** 2 + (xx * 1.2) ** 2) < 0.8  # an ellipsoid "head"; outer slices are air
    for v in range(n):
        case = folder / f"case_{v:03d}"
        case.mkdir(parents=True, exist_ok=True)
        volume = np.where(head, rng.normal(300, 40, size=shape), 0).astype(np.float32)
        mask = np.zeros(shape, np.uint8)
        centre = rng.integers(60, 95)
        mask[100:140, 100:140, centre - 15:centre + 15] = 1
        nibabel.Nifti1Image(volume, np.eye(4)).to_filename(str(case / f"case_{v:03d}_flair.nii.gz"))
        nibabel.Nifti1Image(mask, np.eye(4)).to_filename(str(case / f"case_{v:03d}_seg.nii.gz"))


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its reaped children (the pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_prepare(name: str, source: dict, threads: int, size: int, out: Path, repeats: int
                 ) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, images) of the fastest of ``repeats`` runs."""
    best, cpu, n = float("inf"), 0.0, 0
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        start, start_cpu = time.perf_counter(), cpu_seconds()
        raw = load_source(name, source, threads=threads, size=size, channels=1)
        meta = write_cache(out, raw, size=size, channels=1, domain="medical")
        seconds = time.perf_counter() - start
        if seconds < best:
            best, cpu = seconds, cpu_seconds() - start_cpu
        n = meta["n_images"]
        del raw
    return best, cpu, n


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def control_speedup(workers: int, n: int = 10_000_000) -> float:
    """Speed-up of a trivially parallel pure-Python loop: what the machine offers right now.

    Other processes on a 2-core machine take cores away; then no decoder can scale either.
    """
    import concurrent.futures

    start = time.perf_counter()
    for _ in range(workers):
        burn(n)
    serial = time.perf_counter() - start
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        list(pool.map(burn, [n] * workers))
    return serial / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-png", type=int, default=10_000)
    parser.add_argument("--png-side", type=int, default=256)
    parser.add_argument("--n-volumes", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pool", choices=["process", "thread"], default="process")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None, help="keep the generated files here (reused if present)")
    parser.add_argument("--quick", action="store_true", help="1000 PNGs and 4 volumes")
    args = parser.parse_args()
    if args.quick:
        args.n_png, args.n_volumes = 1000, 4
    common.POOL_KIND = args.pool
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")  # one BLAS thread per worker: workers are the parallelism

    temporary = args.data is None
    data = Path(tempfile.mkdtemp(prefix="bench_prepare_")) if temporary else args.data
    png_root, nifti_root = data / f"png_{args.n_png}_{args.png_side}", data / f"nifti_{args.n_volumes}"
    try:
        start = time.perf_counter()
        if not png_root.exists():
            make_pngs(png_root, args.n_png, args.png_side)
        if not nifti_root.exists():
            make_volumes(nifti_root, args.n_volumes)
        print(f"generated/found data in {time.perf_counter() - start:.1f} s under {data}")
        sources = {
            "png": {"type": "image_folder", "root": str(png_root)},
            "nifti": {"type": "nifti", "root": str(nifti_root), "pattern": "*/*_flair.nii.gz",
                      "mask_replace": {"_flair.nii.gz": "_seg.nii.gz"}, "percentiles": [0.5, 99.5],
                      "min_foreground": 0.1, "group_regex": r"(case_\d+)/"},
        }
        for path in png_root.rglob("*.png"):  # warm the page cache so the first run is not penalised
            path.read_bytes()
        print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"python {platform.python_version()}, pool: {args.pool}, load average {os.getloadavg()[0]:.2f}")
        workers = max(args.threads)
        print(f"control: a pure-Python loop in {workers} processes runs {control_speedup(workers):.2f}x "
              f"as fast as serially (the attainable speed-up now)")
        print("\n| data | images | workers | seconds | images/s | speed-up | CPU seconds |\n"
              "|---|---:|---:|---:|---:|---:|---:|")
        for label, source in sources.items():
            baseline = None
            for threads in args.threads:
                seconds, cpu, n = time_prepare(label, source, threads, args.size, data / "cache", args.repeats)
                baseline = baseline or seconds
                print(f"| {label} | {n} | {threads} | {seconds:.1f} | {n / seconds:.0f} | {baseline / seconds:.2f} "
                      f"| {cpu:.1f} |", flush=True)
        print(f"\ncontrol at the end: {control_speedup(workers):.2f}x; load average {os.getloadavg()[0]:.2f}")
    finally:
        if temporary:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
