#!/usr/bin/env python
"""Benchmark: what verifying the cache, model files and checkpoints costs.

Run from the repository root (about 1-2 minutes at the defaults on 2 cores):

    .venv/bin/python benchmarks/bench_verification.py
    .venv/bin/python benchmarks/bench_verification.py --quick    # 500 images, ResNet-18 only

Each measurement is a ratio against a baseline timed in the same run, on the same files:

* cache: a 224 x 224 x 3 uint8 cache of ``--n-images`` images (``write_cache``) and a training
  split of ``--n-train`` random indices. Baseline: the unverified read a job did before
  (``np.asarray(cache.images[sorted indices])`` from the memory map). Verified:
  ``load_cache`` (labels, groups and row CRCs against ``index_sha256``) plus
  ``DatasetCache.read_images`` (each image against its CRC-32). Also the full-cache check
  (``load_cache(verify=True)``) against a plain full read.
* model files and checkpoints: ``io.save_verified`` / ``io.load_verified`` (torch.save's bytes
  plus a sha256 of them) against plain ``torch.save`` / ``torch.load`` of the same state, for
  the model's weights and for a checkpoint (weights + Adam state, about 3x the weights).

The files live in ``--data`` (default: a temporary folder); the page cache is warm (every
configuration runs ``--repeats`` times, the minimum is reported), so the ratios show the CPU
cost of verification, not the disk's speed: on a shared file system the read dominates both.

Not a pytest module: no test_ functions, and pytest only collects tests/.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from intrinsic.cache import RawDataset, load_cache, write_cache
from intrinsic.io import load_verified, save_verified
from intrinsic.models import build_model


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def build_cache(folder: Path, n: int, side: int) -> None:
    rng = np.random.default_rng(0)
    # Images already at the cache's size: write_cache then only quantizes (no resize).
    images = [rng.random((side, side, 3), dtype=np.float32) for _ in range(n)]
    raw = RawDataset("bench", images, np.arange(n) % 2, np.arange(n).astype(str), ["a", "b"])
    write_cache(folder, raw, size=side, channels=3, domain="natural")


def cache_rows(folder: Path, n_train: int, repeats: int) -> list[tuple[str, float, float]]:
    cache = load_cache(folder)
    index = np.sort(np.random.default_rng(1).choice(len(cache.images), n_train, replace=False))
    plain_split = best_of(repeats, lambda: np.asarray(load_cache_plain(folder)[index]))
    verified_split = best_of(repeats, lambda: load_cache(folder).read_images(index))
    plain_full = best_of(repeats, lambda: np.asarray(load_cache_plain(folder)).sum(dtype=np.uint64))
    verified_full = best_of(repeats, lambda: load_cache(folder, verify=True))
    return [(f"cache: read a {n_train}-image split", plain_split, verified_split),
            (f"cache: check all {len(cache.images)} images", plain_full, verified_full)]


def load_cache_plain(folder: Path) -> np.ndarray:
    """The images' memory map as jobs opened it before verification (no checks)."""
    return np.load(folder / "images.npy", mmap_mode="r")


def torch_rows(folder: Path, model_name: str, side: int, repeats: int) -> list[tuple[str, float, float]]:
    model = build_model(model_name, 3)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 3, side, side)).sum().backward()
    optimizer.step()  # Adam's state now exists, as in a real checkpoint
    rows = []
    for what, state in (("weights", {"state_dict": model.state_dict()}),
                        ("checkpoint", {"model": model.state_dict(), "optimizer": optimizer.state_dict()})):
        plain, verified = folder / f"{what}.plain.pt", folder / f"{what}.verified.pt"
        save_plain = best_of(repeats, lambda: torch.save(state, plain))
        save_checked = best_of(repeats, lambda: save_verified(verified, state))
        load_plain = best_of(repeats, lambda: torch.load(plain, map_location="cpu", weights_only=True))
        load_checked = best_of(repeats, lambda: load_verified(verified))
        size = verified.stat().st_size / 2**20
        rows.append((f"{model_name} {what} ({size:.0f} MiB): save", save_plain, save_checked))
        rows.append((f"{model_name} {what} ({size:.0f} MiB): load", load_plain, load_checked))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=3000)
    parser.add_argument("--n-train", type=int, default=1750)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--models", nargs="+", default=["resnet18", "vgg19"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n_images, args.n_train, args.models = 500, 400, ["resnet18"]
    data = args.data or Path(tempfile.mkdtemp(prefix="bench_verification_"))
    try:
        build_cache(data / "cache", args.n_images, args.side)
        rows = cache_rows(data / "cache", args.n_train, args.repeats)
        for model_name in args.models:
            rows += torch_rows(data, model_name, args.side, args.repeats)
    finally:
        if args.data is None:
            shutil.rmtree(data, ignore_errors=True)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"numpy {np.__version__}, {torch.get_num_threads()} threads")
    print("| what | baseline (s) | verified (s) | ratio |\n|---|---:|---:|---:|")
    for what, baseline, verified in rows:
        print(f"| {what} | {baseline:.3f} | {verified:.3f} | {verified / baseline:.2f} |")


if __name__ == "__main__":
    main()
