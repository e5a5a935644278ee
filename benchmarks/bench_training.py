#!/usr/bin/env python
"""Benchmark: training throughput of intrinsic.training.train vs a reference-style PNG + DataLoader loop.

Run from the repository root (about 2-3 minutes at the defaults on 2 cores):

    .venv/bin/python benchmarks/bench_training.py

Smoke test / data-bound variant:

    .venv/bin/python benchmarks/bench_training.py --n 128 --size 32 --epochs 1
    .venv/bin/python benchmarks/bench_training.py --size 32 --native-size 224

What is measured, same model (``build_model(--model, 1 channel, 2 classes)``), same data, same
batch size, Adam with the same learning rate, the same number of epochs (see benchmarks/README.md):

* ours, train     - ``intrinsic.training.train(..., checkpoint_path=None)`` with
                    ``max_epochs=--epochs`` and ``fit_patience=--epochs + 1`` (so it can never
                    stop early: the fit streak is at most the number of epochs). Per-epoch time is
                    taken from ``history[i]["seconds"]`` minus the end-of-epoch fit check.
* ours, fit check - the eval-mode full-training-set evaluation that ``train`` runs after every
                    epoch (``evaluation.evaluate``), timed by wrapping ``intrinsic.training.evaluate``.
                    Part of "train until it fits"; the reference loop has no equivalent.
* reference       - images stored as PNG files at ``--native-size`` (default 2 x --size) in a temp
                    folder; a Dataset that opens, decodes (PIL), converts to "L" and resizes
                    (bilinear) every image every time it is read, then ``ToTensor``-style scaling;
                    a DataLoader (shuffle=True, same batch size, not persistent workers) with
                    num_workers=0 and num_workers=2; ``model.train()``, Adam, cross-entropy.
* data fraction   - for ours: a loop doing only what train() does to get a batch (randperm,
                    split, ``batch.to(device)``, ``inputs[batch]``, ``targets[batch]``) for the same
                    number of epochs / batches, divided by ours' training time.

Not a pytest module: no test_ functions, and pytest only collects tests/ (pyproject.toml).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATIO_GOAL = 3.0  # ours / reference images per second (CPU)
DATA_FRACTION_GOAL = 0.10  # GPU goal; the CPU fraction is reported


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=512, help="training images (default 512)")
    p.add_argument("--size", type=int, default=64, help="training image height = width (default 64)")
    p.add_argument("--native-size", type=int, default=None,
                   help="size of the PNG files the reference loop decodes and resizes (default 2 x --size)")
    p.add_argument("--model", default="resnet18", help="model name from intrinsic.models (default resnet18)")
    p.add_argument("--epochs", type=int, default=2, help="epochs for every row (default 2)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--workers", type=int, nargs="*", default=[0, 2],
                   help="DataLoader num_workers values for the reference rows (default 0 2)")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of all rows, interleaved; the fastest round of each row is reported (default 1)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
import intrinsic.training as training
from intrinsic.models import build_model


# ------------------------------------------------------------------------------------------ data
def make_native_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n smooth grayscale uint8 images (n, size, size) and labels in {0, 1}.

    Each image is 8x8 uniform noise upsampled bilinearly to ``size`` (smooth), plus a class
    dependent horizontal (class 0) or vertical (class 1) gradient, so the task is learnable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int64)
    coarse = torch.from_numpy(rng.random((n, 1, 8, 8), dtype=np.float32))
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    ramp = torch.linspace(0.0, 1.0, size)
    horizontal = ramp.view(1, size).expand(size, size)
    gradient = torch.stack([horizontal, horizontal.T])[torch.from_numpy(labels)]
    images = (0.6 * smooth + 0.4 * gradient).clamp(0, 1)
    return (images * 255).round().to(torch.uint8).numpy(), labels


def load_resized(path: Path, size: int) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("L").resize((size, size), Image.BILINEAR)


class PngDataset(Dataset):
    """Reference style: decode + resize the PNG file on every read."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int):
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = load_resized(self.paths[i], self.size)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).float().div_(255.0).unsqueeze(0)
        return x, int(self.labels[i])


# ------------------------------------------------------------------------------------------ rows
def run_ours(images: np.ndarray, labels: np.ndarray, args) -> dict:
    eval_seconds: list[float] = []
    original_evaluate = training.evaluate

    def timed_evaluate(*a, **kw):
        t = time.perf_counter()
        out = original_evaluate(*a, **kw)
        eval_seconds.append(time.perf_counter() - t)
        return out

    config = training.TrainConfig(learning_rate=args.lr, batch_size=args.batch_size,
                                  max_epochs=args.epochs, fit_threshold=1.0,
                                  fit_patience=args.epochs + 1, seed=args.seed, device="cpu")
    training.evaluate = timed_evaluate
    try:
        t = time.perf_counter()
        result = training.train(args.model, images[:, None], labels, config,
                                checkpoint_path=None, log=lambda _msg: None)
        total = time.perf_counter() - t
    finally:
        training.evaluate = original_evaluate
    assert result.epochs == args.epochs, (result.epochs, args.epochs)
    epoch_seconds = [h["seconds"] for h in result.history]
    train_seconds = [s - e for s, e in zip(epoch_seconds, eval_seconds)]
    return {"train": train_seconds, "eval": eval_seconds, "total": total,
            "history": result.history}


def run_indexing_only(images: np.ndarray, labels: np.ndarray, args) -> float:
    """What train() does to obtain its batches, without the model: seconds for all epochs."""
    device = torch.device("cpu")
    images_cpu = torch.from_numpy(np.ascontiguousarray(images[:, None]))
    targets_cpu = torch.from_numpy(labels)
    inputs = images_cpu.to(device).float().div_(255.0).contiguous()
    targets = targets_cpu.to(device)
    n = len(inputs)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(args.seed)
    sink = 0.0
    t = time.perf_counter()
    for _ in range(args.epochs):
        permutation = torch.randperm(n, generator=generator)
        for batch in training._batches(n, args.batch_size, permutation):
            batch = batch.to(device)
            x, y = inputs[batch], targets[batch]
            sink += float(x[0, 0, 0, 0]) + int(y[0])  # keep the work observable
    seconds = time.perf_counter() - t
    assert math.isfinite(sink), "gathered batches hold non-finite values"
    return seconds


def run_conversion_once(images: np.ndarray) -> float:
    t = time.perf_counter()
    torch.from_numpy(np.ascontiguousarray(images[:, None])).float().div_(255.0).contiguous()
    return time.perf_counter() - t


def run_reference(paths: list[Path], labels: np.ndarray, args, workers: int) -> dict:
    torch.manual_seed(args.seed)
    model = build_model(args.model, 1, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = DataLoader(PngDataset(paths, labels, args.size), batch_size=args.batch_size,
                        shuffle=True, num_workers=workers)
    seconds, data_seconds = [], []
    for _ in range(args.epochs):
        model.train()
        t = time.perf_counter()
        waiting = 0.0
        w = time.perf_counter()
        for x, y in loader:
            waiting += time.perf_counter() - w
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            w = time.perf_counter()
        seconds.append(time.perf_counter() - t)
        data_seconds.append(waiting)
    return {"train": seconds, "data": data_seconds}


def warm_up(args) -> None:
    """A few untimed training steps, so one-off kernel/allocator set-up is not charged to row 1."""
    torch.manual_seed(args.seed)
    model = build_model(args.model, 1, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    x = torch.rand(args.batch_size, 1, args.size, args.size)
    y = torch.arange(args.batch_size) % 2
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(args) -> None:
    torch.set_num_threads(args.threads)
    native = args.native_size or 2 * args.size
    n, epochs = args.n, args.epochs
    print(f"bench_training {datetime.date.today()}  torch {torch.__version__}  cpu: {cpu_name()}  "
          f"threads {torch.get_num_threads()}  load avg {os.getloadavg()[0]:.2f}")
    print(f"model {args.model} (1 channel, 2 classes), n {n}, {args.size}x{args.size} "
          f"(reference PNGs {native}x{native}), batch {args.batch_size}, epochs {epochs}, lr {args.lr}, "
          f"repeats {args.repeats} (min reported)")

    native_images, labels = make_native_images(n, native, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        paths = []
        for i, img in enumerate(native_images):
            path = Path(tmp) / f"{i:06d}.png"
            Image.fromarray(img, mode="L").save(path)
            paths.append(path)
        png_mb = sum(p.stat().st_size for p in paths) / 2**20
        # The in-memory training set for ours: the same decode + resize, once (how the workflow
        # prepares its arrays); timed and reported as a one-off, not part of images/s.
        t = time.perf_counter()
        images = np.stack([np.asarray(load_resized(p, args.size), dtype=np.uint8) for p in paths])
        decode_once = time.perf_counter() - t
        conversion_once = run_conversion_once(images)

        warm_up(args)
        rounds = []
        for _ in range(args.repeats):  # interleaved, so background load hits every row alike
            rounds.append((run_ours(images, labels, args), run_indexing_only(images, labels, args),
                           {w: run_reference(paths, labels, args, w) for w in args.workers}))
        ours = min((r[0] for r in rounds), key=lambda o: sum(o["train"]))
        index_only = min(r[1] for r in rounds)
        refs = {w: min((r[2][w] for r in rounds), key=lambda o: sum(o["train"])) for w in args.workers}

    seen = n * epochs
    ours_train = sum(ours["train"])
    ours_eval = sum(ours["eval"])
    rows = [("ours: train() epochs, training only", ours_train, seen),
            ("ours: train() per-epoch fit check (eval)", ours_eval, seen),
            ("ours: train() epochs incl. fit check", ours_train + ours_eval, seen),
            ("ours: whole train() call", ours["total"], seen)]
    for w, r in refs.items():
        rows.append((f"reference: PNG+PIL resize, DataLoader workers={w}", sum(r["train"]), seen))

    print()
    print(f"| row | seconds ({epochs} epochs) | images/s |")
    print("|---|---:|---:|")
    for name, sec, count in rows:
        print(f"| {name} | {sec:.2f} | {count / sec:.1f} |")
    print()
    print("| ratio (images/s) | value |")
    print("|---|---:|")
    ours_ips = seen / ours_train
    ours_fit_ips = seen / (ours_train + ours_eval)
    for w, r in refs.items():
        ref_ips = seen / sum(r["train"])
        verdict = "PASS" if ours_ips / ref_ips >= RATIO_GOAL else "FAIL"
        print(f"| ours training / reference workers={w} | {ours_ips / ref_ips:.2f} "
              f"(goal >= {RATIO_GOAL:g}: {verdict}) |")
        print(f"| ours incl. fit check / reference workers={w} | {ours_fit_ips / ref_ips:.2f} |")
    print()
    print("| data handling | seconds | fraction |")
    print("|---|---:|---:|")
    print(f"| ours: batch indexing only (randperm + split + index), {epochs} epochs | {index_only:.4f} | "
          f"{index_only / ours_train:.2%} of ours' training time (GPU goal < {DATA_FRACTION_GOAL:.0%}) |")
    print(f"| ours: one-off uint8 -> float32 conversion | {conversion_once:.4f} | "
          f"{conversion_once / ours_train:.2%} |")
    print(f"| one-off PNG decode + resize of the training set (prepares ours' array) | {decode_once:.3f} | "
          f"{decode_once / ours_train:.2%} |")
    for w, r in refs.items():
        d = sum(r["data"])
        print(f"| reference workers={w}: time waiting for the DataLoader | {d:.3f} | "
              f"{d / sum(r['train']):.2%} of its training time |")
    print()
    print(f"(PNG folder {png_mb:.1f} MiB; per-epoch ours train {['%.2f' % s for s in ours['train']]}, "
          f"fit check {['%.2f' % s for s in ours['eval']]}; reference "
          + ", ".join(f"w={w} {['%.2f' % s for s in r['train']]}" for w, r in refs.items())
          + f"; ours final train accuracy {ours['history'][-1]['train_accuracy']:.3f}; "
          f"load avg at end {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main(ARGS)
