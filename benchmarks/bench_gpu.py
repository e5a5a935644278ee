#!/usr/bin/env python
"""Benchmark: the workflow's training on a GPU (or, small, on the CPU), and the paper grid's cost.

Run from the repository root (see benchmarks/README.md):

    .venv/bin/python benchmarks/bench_gpu.py --json results/bench_gpu.json          # GPU, 224 px
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --size 32 --models resnet18 \
        --steps 2 --warmup 1 --n-train 16 --n-test 8 --packed 2 --threads 1          # CPU smoke

Per model (batch size and learning rate from the config's training.model_settings):

* step        - the bare training step of ``training.train`` (zero_grad, forward under bf16
                autocast + channels_last on CUDA / float32 on the CPU, cross-entropy, backward,
                Adam step) on resident random data; images/s, and with the FLOPs per image
                (FlopCounterMode, forward + backward, counted once) the achieved TFLOP/s and
                their fraction of the device's peak. Eager and/or torch.compile'd.
* workflow    - ``intrinsic.training.train`` itself (fixed_epochs, --epochs epochs, --n-train
                random images, a --n-test eval set, a checkpoint per epoch in a temp dir), its
                last epoch split into train batches, fit check, test eval and checkpoint (by
                wrapping ``training.evaluate`` / ``training.save_verified``); the share of the
                epoch outside the bare-step compute of its training images.
* checkpoint  - model + Adam state written once through ``io.save_verified``: MB, seconds.
* packed      - K fresh processes (forkserver) running the bare step on the same device at once
                (as K Snakemake jobs sharing one allocation): total images/s against K x single.
* projection  - GPU-hours of the configured grid from the measured per-image times, and their
                ratio to the FLOP floor (all FLOPs at the peak rate).

Not a pytest module: no test_ functions, and pytest only collects tests/ (pyproject.toml).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from queue import Empty

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
import intrinsic.training as training
from intrinsic.io import save_verified
from intrinsic.devices import resolve_device
from intrinsic.models import ARCHITECTURES, build_model
from intrinsic.runs import train_settings

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by whole words of the lower-case CUDA device
# name ("a10" is not "a10g"); first match wins, so the more specific names come first. V100 and
# T4 have no bf16: their fp16 peak is given (bf16 autocast then runs slower than that). A device
# not listed falls back to the measured bf16 GEMM rate.
PEAKS = [("gh200", 989.0), ("h200 nvl", 835.0), ("h200", 989.0), ("h100 pcie", 756.0), ("h100 nvl", 835.0),
         ("h100", 989.0), ("h800", 989.0), ("b200", 2250.0), ("a100", 312.0), ("a800", 312.0),
         ("l40s", 362.0), ("l40", 181.0), ("l4", 121.0), ("a10", 125.0), ("v100", 125.0), ("t4", 65.0)]
FORWARDS_PER_INPUT_GRADIENT = 2  # forward + backward to the input only (no weight gradients)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    p.add_argument("--size", type=int, default=224, help="image height = width (default 224)")
    p.add_argument("--channels", type=int, default=None, help="input channels (default: config image.channels)")
    p.add_argument("--batch-size", type=int, default=None, help="override every model's batch size")
    p.add_argument("--steps", type=int, default=20, help="timed bare steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed bare steps first (default 5)")
    p.add_argument("--epochs", type=int, default=2, help="workflow epochs; the last one is reported (default 2)")
    p.add_argument("--n-train", type=int, default=500, help="training images of the workflow epoch (default 500)")
    p.add_argument("--n-test", type=int, default=750, help="eval-set images of the workflow epoch (default 750)")
    p.add_argument("--compile", choices=("off", "on", "both"), default=None,
                   help="torch.compile the bare step (default: both on CUDA, off on the CPU)")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--packed", type=int, default=None, help="concurrent runs per device (default 4 on CUDA, 0 on CPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the device's peak")
    p.add_argument("--epochs-per-run", type=float, default=20.0, help="epochs per grid run, projection (default 20)")
    p.add_argument("--configfile", default=str(REPO / "config" / "paper.yaml"),
                   help="grid to project, merged over config/config.yaml (default config/paper.yaml)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--json", default=None, help="write every figure here")
    args = p.parse_args(argv)
    for name, least in (("steps", 1), ("warmup", 0), ("epochs", 1), ("n_train", 2), ("n_test", 1), ("size", 32)):
        if getattr(args, name) < least:
            p.error(f"--{name.replace('_', '-')} must be >= {least}")
    return args


# ----------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def merged_config(path: str | Path) -> dict:
    """config/config.yaml with ``path`` merged on top as Snakemake does (nested keys, lists replaced)."""
    def merge(base: dict, over: dict) -> dict:
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return merge(base, yaml.safe_load(Path(path).read_text()) or {})


def run_config(name: str, cfg: dict, args, device: torch.device) -> training.TrainConfig:
    """The TrainConfig a grid run of ``name`` gets (runs.train_settings), on ``device``."""
    section = dict(cfg["training"])
    config = train_settings(name, section, 0, device.type)
    if args.batch_size:
        config = dataclasses.replace(config, batch_size=args.batch_size)
    return config


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or 'CPU'} ({os.cpu_count()} cores)"


def table_peak(name: str) -> tuple[float | None, str | None]:
    lower = name.lower()
    for key, tflops in PEAKS:
        if re.search(rf"\b{key}\b", lower):
            return tflops, key
    return None, None


def gemm_tflops(device: torch.device) -> tuple[float, str]:
    """Measured GEMM rate in the training's dtype: bf16 8192^2 on CUDA, float32 1024^2 on the CPU."""
    dtype, n, reps = (torch.bfloat16, 8192, 20) if device.type == "cuda" else (torch.float32, 1024, 4)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best / 1e12, f"{str(dtype).removeprefix('torch.')} {n}x{n} GEMM"


def count_flops(name: str, channels: int, size: int, pool: int, batch: int = 2) -> tuple[float, float]:
    """(training step forward + backward, eval forward) FLOPs per image, FlopCounterMode on the
    meta device (shapes only; the counts equal those of real tensors)."""
    with torch.device("meta"):
        model = build_model(name, channels, 2, pool)
        x, y = torch.rand(batch, channels, size, size), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model.train()(x).float(), y).backward()
    train_flops = counter.get_total_flops() / batch
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return train_flops, counter.get_total_flops() / batch


def make_step(name: str, config, channels: int, size: int, device: torch.device, compiled: bool = False,
              backend: str = "inductor"):
    """(step(), model, optimizer): the training loop's step of ``training.train`` on resident data."""
    use_bf16 = bool(config.bf16) and device.type == "cuda"
    memory_format = torch.channels_last if use_bf16 else torch.contiguous_format
    torch.manual_seed(0)
    model = build_model(**training.architecture(name, channels, config)).to(device).to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    x = torch.rand(config.batch_size, channels, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 2, (config.batch_size,), device=device)
    forward = torch.compile(model, backend=backend) if compiled else model
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = forward(x)
        nn.functional.cross_entropy(logits.float(), y).backward()
        optimizer.step()
    return step, model, optimizer


def time_steps(step, warmup: int, steps: int, device: torch.device) -> tuple[float, float]:
    """(seconds per timed step, seconds of the first warm-up step)."""
    t = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t
    for _ in range(max(warmup - 1, 0)):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t) / steps, first


# ------------------------------------------------------------------------------------ rows
def bench_step(name, config, args, device, flops, peak, compiled=False) -> tuple[dict, tuple]:
    if compiled:
        torch._dynamo.reset()
    step, model, optimizer = make_step(name, config, args.channels, args.size, device, compiled, args.compile_backend)
    per_step, first = time_steps(step, args.warmup, args.steps, device)
    images_per_s = config.batch_size / per_step
    tflops = flops * images_per_s / 1e12
    row = {"images_per_s": images_per_s, "step_ms": per_step * 1e3, "tflops": tflops, "peak_fraction": tflops / peak,
           "first_step_s": first}
    if compiled:
        row["compile_s"] = max(first - per_step, 0.0)  # the first call's tracing + code generation
    return row, (model, optimizer)


def bench_checkpoint(model, optimizer, device, folder: Path) -> dict:
    """The workflow's per-epoch checkpoint payload (model + Adam state) through save_verified."""
    path = folder / "checkpoint.pt"
    sync(device)
    t = time.perf_counter()
    save_verified(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    seconds = time.perf_counter() - t
    megabytes = path.stat().st_size / 1e6
    path.unlink()
    return {"mb": megabytes, "seconds": seconds}


def bench_workflow(name, config, args, device, folder: Path) -> dict:
    """training.train for --epochs fixed epochs; the last epoch's parts."""
    rng = np.random.default_rng(0)
    shape = (args.channels, args.size, args.size)
    images = rng.integers(0, 256, (args.n_train, *shape), dtype=np.uint8)
    test = rng.integers(0, 256, (args.n_test, *shape), dtype=np.uint8)
    labels, test_labels = np.arange(args.n_train) % 2, np.arange(args.n_test) % 2
    calls = {"evaluate": [], "save": []}
    originals = training.evaluate, training.save_verified

    def timed(kind, function):
        def wrapper(*a, **kw):
            sync(device)
            t = time.perf_counter()
            out = function(*a, **kw)
            sync(device)
            calls[kind].append(time.perf_counter() - t)
            return out
        return wrapper

    config = dataclasses.replace(config, mode="fixed_epochs", max_epochs=args.epochs)
    training.evaluate, training.save_verified = timed("evaluate", originals[0]), timed("save", originals[1])
    try:
        result = training.train(name, images, labels, config, checkpoint_path=folder / f"{name}.pt",
                                log=lambda _msg: None, eval_set=(test, test_labels))
    finally:
        training.evaluate, training.save_verified = originals
        (folder / f"{name}.pt").unlink(missing_ok=True)  # else a second run would resume from it
    assert result.epochs == args.epochs and len(calls["evaluate"]) == 2 * args.epochs, (result.epochs, calls)
    fit, test_s, ckpt = calls["evaluate"][-2], calls["evaluate"][-1], calls["save"][-1]
    seconds = result.history[-1]["seconds"]  # epoch start .. after the test eval (before the checkpoint)
    train_s = seconds - fit - test_s
    epoch = seconds + ckpt
    first = result.history[0]["seconds"] + calls["save"][0]  # with warm-up (allocator, cuDNN)
    del result
    return {"epoch_s": epoch, "first_epoch_s": first,
            "train_s": train_s, "fit_s": fit, "test_s": test_s, "checkpoint_s": ckpt,
            "train_images_per_s": args.n_train / train_s, "epoch_images_per_s": args.n_train / epoch}


def _packed_worker(rank, name, config, args, device_type, barrier, queue):
    try:
        device = torch.device(device_type)
        if device.type == "cpu":
            torch.set_num_threads(max(1, (args.threads or os.cpu_count()) // args.packed))
        step, _, _ = make_step(name, config, args.channels, args.size, device)
        for _ in range(max(args.warmup, 1)):
            step()
        sync(device)
        barrier.wait(timeout=300)
        t0 = time.perf_counter()  # CLOCK_MONOTONIC: one clock for all processes
        for _ in range(args.steps):
            step()
        sync(device)
        queue.put((rank, t0, time.perf_counter(), args.steps * config.batch_size, None))
    except BaseException as error:  # never leave the others waiting at the barrier
        barrier.abort()
        queue.put((rank, 0.0, 0.0, 0, f"{type(error).__name__}: {error}"))


def bench_packed(name, config, args, device, single: float) -> dict:
    # Fresh processes like K Snakemake jobs, forked from a server that imported torch and the
    # library once but never touched the device: CUDA-safe (unlike fork), and half the start-up
    # of spawn on 2 cores. ("__main__" in the preload list is ignored by Python 3.11's forkserver.)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "torch", "torchvision", "yaml", "intrinsic.training", "intrinsic.runs"])
    barrier, queue = ctx.Barrier(args.packed), ctx.Queue()
    workers = [ctx.Process(target=_packed_worker, args=(r, name, config, args, device.type, barrier, queue))
               for r in range(args.packed)]
    for w in workers:
        w.start()
    results = {}
    while len(results) < len(workers):
        try:
            rank, *rest = queue.get(timeout=5)
            results[rank] = rest
        except Empty:
            if not any(w.is_alive() for w in workers) and queue.empty():
                break  # a worker died without reporting (killed, out of memory)
    for w in workers:
        w.join(timeout=60)
    errors = [r[3] for r in results.values() if r[3]]
    errors += [f"worker {w.pid} exited with {w.exitcode} without a result"
               for r, w in enumerate(workers) if r not in results]
    if errors:
        return {"k": args.packed, "error": "; ".join(sorted(set(errors)))}
    window = max(r[1] for r in results.values()) - min(r[0] for r in results.values())
    total = sum(r[2] for r in results.values()) / window
    return {"k": args.packed, "total_images_per_s": total, "single_images_per_s": single,
            "per_run_images_per_s": [r[2] / (r[1] - r[0]) for _, r in sorted(results.items())],
            "gain": total / single, "efficiency": total / (args.packed * single)}


def bench_model(name, cfg, args, device, peak, folder: Path) -> dict:
    cuda = device.type == "cuda"
    config = run_config(name, cfg, args, device)
    train_flops, forward_flops = count_flops(name, args.channels, args.size, config.vgg_pool_size)
    row = {"batch_size": config.batch_size, "learning_rate": config.learning_rate, "bf16": config.bf16 and cuda,
           "flops_per_image": {"train": train_flops, "forward": forward_flops}}
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    if args.compile in ("off", "both"):
        row["step"], state = bench_step(name, config, args, device, train_flops, peak)
    else:  # the checkpoint needs a model with Adam state
        step, *state = make_step(name, config, args.channels, args.size, device)
        step()
    row["checkpoint"] = bench_checkpoint(*state, device, folder)
    del state
    if args.compile in ("on", "both"):
        try:
            row["step_compiled"], _ = bench_step(name, config, args, device, train_flops, peak, compiled=True)
        except Exception as error:  # a compile failure must not cost the other rows
            row["step_compiled"] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        torch._dynamo.reset()  # drop the compiled graphs (and the weights they hold)
    compute = row.get("step") or row["step_compiled"]
    if cuda:
        row["max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        gc.collect()
        torch.cuda.empty_cache()
    wf = row["workflow"] = bench_workflow(name, config, args, device, folder)
    # The bare-step compute of the epoch's training images (eager when measured: train() is eager).
    compute_s = args.n_train / compute["images_per_s"] if "images_per_s" in compute else math.nan
    wf["outside_compute_share"] = 1 - compute_s / wf["epoch_s"]
    # The same without the checkpoint: the workflow writes one per training.checkpoint_minutes.
    wf["outside_compute_share_no_checkpoint"] = 1 - compute_s / (wf["epoch_s"] - wf["checkpoint_s"])
    wf["shares"] = {"fit": wf["fit_s"] / wf["epoch_s"], "test": wf["test_s"] / wf["epoch_s"],
                    "checkpoint": wf["checkpoint_s"] / wf["epoch_s"],
                    "data_and_overhead": (wf["train_s"] - compute_s) / wf["epoch_s"]}
    row["checkpoint_s"] = wf["checkpoint_s"]
    row["per_image_s"] = {"train": wf["train_s"] / args.n_train, "fit": wf["fit_s"] / args.n_train,
                          "test": wf["test_s"] / args.n_test, "forward": wf["fit_s"] / args.n_train}
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    if args.packed > 0 and "images_per_s" in compute:
        row["packed"] = bench_packed(name, config, args, device, compute["images_per_s"])
    return row


# ------------------------------------------------------------------------------ projection
def grid_axes(cfg: dict) -> dict:
    datasets = cfg.get("datasets") or list(cfg["dataset_catalog"])
    variants = cfg["variants"]["run"]
    costs = {}
    for v in variants:  # relative training cost of a variant: more images, or a first pass
        options = cfg["variants"].get(v, {})
        costs[v] = {"n_factor": 1.0 + float(options.get("ratio", 0.0)) if v == "noise_class" else 1.0,
                    "extra_epochs": float(options.get("first_pass_epochs", 0)) if v == "exclude_illusive" else 0.0}
    axes = {"datasets": len(datasets), "models": list(cfg["training"]["models"]),
            "noise_levels": len(cfg["background_noise"]["levels"]), "variants": costs,
            "n_train": [int(n) for n in cfg["splits"]["n_train"]], "seeds": len(cfg["splits"]["seeds"]),
            "n_test": int(cfg["splits"]["n_test"])}
    axes["runs"] = (axes["datasets"] * len(axes["models"]) * axes["noise_levels"] * len(variants)
                    * len(axes["n_train"]) * axes["seeds"])
    return axes


def eval_multiples(cfg: dict) -> dict:
    """Forward-pass equivalents per image of runs.evaluate_run (an input-gradient pass = 2)."""
    ev = cfg["evaluation"]
    n_eps = len({round(e / 255, 12) for e in ev["eps_255"]} | {round(float(e), 12) for e in ev.get("eps", [])})
    g, classes = FORWARDS_PER_INPUT_GRADIENT, 2
    parts = {"clean_eval": 1, "prediction_summary": 1, "jacobian": 1 + classes,
             "fgsm": (g + n_eps) if "fgsm" in ev["attacks"] else 0,
             "pgd": n_eps * (int(ev["pgd_steps"]) * g + 1) if "pgd" in ev["attacks"] else 0}
    return {"test_image": sum(parts.values()), "train_image": 1 + 1 + (1 + classes), "test_parts": parts,
            "train_parts": {"eval": 1, "representations": 1, "jacobian": 1 + classes}}


def project(cfg: dict, models: dict, peak: float, epochs: float) -> dict:
    axes, mult = grid_axes(cfg), eval_multiples(cfg)
    n_test = axes["n_test"]
    # Checkpoint writes per run: every epoch (0), else one per interval of training and one at the end.
    interval = 60.0 * float(cfg["training"].get("checkpoint_minutes", 0))
    per_model, totals = {}, {"train_s": 0.0, "eval_s": 0.0, "flops": 0.0, "packed_s": 0.0}
    for name, row in models.items():
        if name not in axes["models"] or "per_image_s" not in row:
            continue
        t, f = row["per_image_s"], row["flops_per_image"]
        runs_per_size = axes["datasets"] * axes["noise_levels"] * axes["seeds"]
        train_s = eval_s = flops = 0.0
        for v in axes["variants"].values():
            e = epochs + v["extra_epochs"]
            for n in axes["n_train"]:
                n_eff = n * v["n_factor"]
                base = e * (n_eff * (t["train"] + t["fit"]) + n_test * t["test"])
                writes = e if interval == 0 else min(e, 1 + math.floor(base / interval))
                train_s += runs_per_size * (base + writes * row["checkpoint_s"])
                eval_s += runs_per_size * (n * mult["train_image"] + n_test * mult["test_image"]) * t["forward"]
                flops += runs_per_size * (e * (n_eff * (f["train"] + f["forward"]) + n_test * f["forward"])
                                          + (n * mult["train_image"] + n_test * mult["test_image"]) * f["forward"])
        gain = row.get("packed", {}).get("gain")
        per_model[name] = {"gpu_hours_train": train_s / 3600, "gpu_hours_eval": eval_s / 3600,
                           "gpu_hours": (train_s + eval_s) / 3600, "flops": flops,
                           "floor_hours": flops / (peak * 1e12) / 3600}
        totals["train_s"] += train_s
        totals["eval_s"] += eval_s
        totals["flops"] += flops
        totals["packed_s"] += (train_s + eval_s) / gain if gain else math.nan
    hours = (totals["train_s"] + totals["eval_s"]) / 3600
    floor = totals["flops"] / (peak * 1e12) / 3600
    packed = totals["packed_s"] / 3600
    return {"axes": axes, "eval_multiples_forward": mult, "epochs_per_run": epochs, "peak_tflops": peak,
            "checkpoint_interval_s": interval,
            "models_projected": list(per_model), "per_model": per_model,
            "gpu_hours_train": totals["train_s"] / 3600, "gpu_hours_eval": totals["eval_s"] / 3600,
            "gpu_hours": hours, "flops": totals["flops"], "floor_hours": floor,
            "ratio_to_floor": hours / floor if floor else None,
            "gpu_hours_packed": packed if math.isfinite(packed) else None}


# ------------------------------------------------------------------------------------ main
def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except RuntimeError as error:
        sys.exit(f"--device {args.device}: {error}")
    cuda = device.type == "cuda"
    args.compile = args.compile or ("both" if cuda else "off")
    args.packed = (4 if cuda else 0) if args.packed is None else args.packed
    torch.set_num_threads(args.threads or os.cpu_count())
    cfg = merged_config(args.configfile)
    args.channels = args.channels or int(cfg["image"]["channels"])
    load_start = os.getloadavg()
    name = device_name(device)
    gemm, gemm_what = gemm_tflops(device)
    table, key = table_peak(name) if cuda else (None, None)
    peak, source = ((args.peak_tflops, "--peak-tflops") if args.peak_tflops else
                    (table, f"table ({key}, dense bf16)") if table else (gemm, f"measured {gemm_what}"))
    print(f"device {name} ({device}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {' '.join(f'{x:.2f}' for x in load_start)}")
    print(f"peak {peak:.4g} TFLOP/s from {source}; measured {gemm_what}: {gemm:.4g} TFLOP/s")
    out = {"device": {"name": name, "type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "python": platform.python_version(), "load_average_start": list(load_start)},
           "settings": {k: v for k, v in vars(args).items()},
           "peak": {"tflops": peak, "source": source, "gemm_tflops": gemm, "gemm": gemm_what}, "models": {}}
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for model_name in dict.fromkeys(args.models):
            try:
                out["models"][model_name] = bench_model(model_name, cfg, args, device, peak, Path(tmp))
            except Exception as error:  # one model's failure (e.g. out of memory) must not cost the others
                traceback.print_exc()
                out["models"][model_name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
                failed.append(model_name)
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
            print(f"  {model_name} done", flush=True)
            if args.json:  # after every model: a run cut short keeps what it measured
                write_json(args.json, out)
    out["projection"] = project(cfg, out["models"], peak, args.epochs_per_run)
    out["device"]["load_average_end"] = list(os.getloadavg())
    report(out)
    if args.json:
        write_json(args.json, out)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (see the traceback above)")
    return out


def write_json(path, out: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(finite(out), indent=1, allow_nan=False, default=str))


def finite(value):
    """``value`` with every non-finite float as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def fmt(value, spec=".1f", missing="n/a"):
    return missing if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def report(out: dict) -> None:
    s = out["settings"]
    print(f"\n{s['size']} px, {s['channels']} channel(s); bare step: {s['steps']} steps after {s['warmup']} warm-up; "
          f"workflow: epoch {s['epochs']} of {s['epochs']}, {s['n_train']} train + {s['n_test']} test images")
    print("| model | batch | GFLOP/img (fwd+bwd) | step img/s | TFLOP/s | of peak | compiled img/s | compiled of peak "
          "| compile s | ckpt MB | ckpt s | packed K | K runs img/s | x single | of K x single |")
    print("|---|" + "---:|" * 14)
    rows = {name: r for name, r in out["models"].items() if "error" not in r}
    for name, r in out["models"].items():
        if "error" in r:
            print(f"| {name} | failed: {r['error']} |")
    for name, r in rows.items():
        st, co, ck, pk = r.get("step", {}), r.get("step_compiled", {}), r["checkpoint"], r.get("packed", {})
        print(f"| {name} | {r['batch_size']} | {r['flops_per_image']['train'] / 1e9:.3g} "
              f"| {fmt(st.get('images_per_s'))} "
              f"| {fmt(st.get('tflops'), '.3g')} | {fmt(st.get('peak_fraction'), '.1%')} "
              f"| {fmt(co.get('images_per_s'), '.1f', co.get('error', 'off')[:40])} "
              f"| {fmt(co.get('peak_fraction'), '.1%')} | {fmt(co.get('compile_s'))} | {ck['mb']:.0f} "
              f"| {ck['seconds']:.2f} | {pk.get('k', 0)} "
              f"| {fmt(pk.get('total_images_per_s'), '.1f', pk.get('error', 'n/a')[:60])} "
              f"| {fmt(pk.get('gain'), '.2f')} | {fmt(pk.get('efficiency'), '.2f')} |")
    print("\n| model | workflow train img/s | epoch img/s | epoch s | train batches s | fit check s | test eval s "
          "| checkpoint s | outside step compute | same w/o checkpoint | of which data + overhead | first epoch s |")
    print("|---|" + "---:|" * 11)
    for name, r in rows.items():
        wf, sh = r["workflow"], r["workflow"]["shares"]
        print(f"| {name} | {wf['train_images_per_s']:.1f} | {wf['epoch_images_per_s']:.1f} | {wf['epoch_s']:.2f} "
              f"| {wf['train_s']:.2f} | {wf['fit_s']:.2f} ({sh['fit']:.0%}) | {wf['test_s']:.2f} ({sh['test']:.0%}) "
              f"| {wf['checkpoint_s']:.2f} ({sh['checkpoint']:.0%}) | {fmt(wf['outside_compute_share'], '.0%')} "
              f"| {fmt(wf['outside_compute_share_no_checkpoint'], '.0%')} "
              f"| {fmt(sh['data_and_overhead'], '.0%')} | {wf['first_epoch_s']:.2f} |")
    p = out["projection"]
    ax, m = p["axes"], p["eval_multiples_forward"]
    every = p["checkpoint_interval_s"]
    when = f"every {every / 60:g} min and at the end" if every else "every epoch"
    print(f"\nprojection ({ax['runs']} runs of the grid: {ax['datasets']} datasets x {len(ax['models'])} models x "
          f"{ax['noise_levels']} noise x {len(ax['variants'])} variants x {len(ax['n_train'])} sizes x {ax['seeds']} "
          f"seeds; {p['epochs_per_run']:g} epochs per run incl. fit check and test eval; a checkpoint {when}; "
          f"at {s['size']} px)")
    print(f"  evaluation per test image = {m['test_image']} forward equivalents ({m['test_image'] / 3:.1f} fwd+bwd): "
          f"{m['test_parts']}; per training image = {m['train_image']} ({m['train_parts']})")
    for name, r in p["per_model"].items():
        print(f"  {name:9s} {r['gpu_hours']:10.1f} GPU-h (train {r['gpu_hours_train']:.1f}, eval "
              f"{r['gpu_hours_eval']:.1f}); FLOP floor {r['floor_hours']:.2f} h")
    print(f"  total {p['gpu_hours']:.1f} GPU-h for the {len(p['models_projected'])} model(s) measured; FLOP floor "
          f"{p['floor_hours']:.2f} h at {p['peak_tflops']:.4g} TFLOP/s: {fmt(p['ratio_to_floor'])} x the floor; "
          f"packed: {fmt(p['gpu_hours_packed'])} GPU-h")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in out['device']['load_average_end'])}")


if __name__ == "__main__":
    main()
