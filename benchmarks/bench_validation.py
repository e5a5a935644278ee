#!/usr/bin/env python
"""Validation: the workflow's estimators on real MNIST and MedMNIST images, beside published values.

Run from the repository root (about 2-4 minutes on 2 cores at the defaults, peak memory ~4 GB):

    .venv/bin/python benchmarks/bench_validation.py
    .venv/bin/python benchmarks/bench_validation.py --n 1000 2000 --kf-sizes 28   # quick (~15 s)

What it computes (see benchmarks/README.md, "Validation against published values"):

* d_data of MNIST (random training digits, one fixed permutation, the first N of it): the MLE at
  k = 3, 5, 10, 20 with both denominators of ``intrinsic.estimators.mle_from_distances``
  ("k-1": the formula printed by Pope et al. 2021 and Konz & Mazurowski 2024; "k-2": Pope et
  al.'s released code), and TwoNN; all from one exact distance computation per N. Twice: on
  the 28 x 28 digits as they are, and as Pope et al.'s data loader feeds them (Grayscale(3),
  ToTensor, then ``interpolate`` to 32 x 32 with torch's default mode "nearest";
  github.com/ppope/dimensions, data/dataloader.py). The 3 identical channels scale every
  distance by sqrt(3), which no estimator sees (they use distance ratios), so 1 channel is used.
* K_F (``intrinsic.estimators.label_sharpness``, M = --kf-m class-balanced samples, several
  seeds) for MNIST digit pairs (labels 0/1), PneumoniaMNIST and BreastMNIST, at 28 x 28 and at
  the workflow's paper geometry (224 x 224, 1 channel: ``intrinsic.cache.convert_image`` +
  ``quantize``, as rule prepare_dataset does), on the [0, 1] scale and divided by 255 (the
  0..255 scale of the paper's numbers), and the medical / natural ratio.

Published values are printed only where they could be checked against a source; nothing here is
a test and nothing is asserted against them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data")

# Konz & Mazurowski (ICLR 2024), Sec. 5.2, as quoted in /work/shared/data/README.md: K_F is
# "typically about 2.5e-4 for medical and 1e-4 for natural datasets at 224x224 on the 0..255
# scale"; only the ratio (about 2.5) is scale-free.
PAPER_KF_MEDICAL_255 = 2.5e-4
PAPER_KF_NATURAL_255 = 1e-4
KF_SOURCE = ("Konz & Mazurowski (ICLR 2024) Sec. 5.2, as quoted in /work/shared/data/README.md: "
             "K_F ~2.5e-4 (medical) and ~1e-4 (natural), 224x224, 0..255 scale")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mnist", type=Path, default=DATA / "mnist.npz")
    p.add_argument("--pneumonia", type=Path, default=DATA / "pneumoniamnist.npz")
    p.add_argument("--breast", type=Path, default=DATA / "breastmnist.npz")
    p.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 5000, 10000],
                   help="numbers of MNIST training digits for d_data (default 1000 2000 5000 10000; "
                        "memory grows as n^2: ~4 GB peak at 10000)")
    p.add_argument("--ks", type=int, nargs="+", default=[3, 5, 10, 20], help="MLE neighbours")
    p.add_argument("--seed", type=int, default=0, help="seed of the MNIST permutation for d_data")
    p.add_argument("--skip-pope-resize", action="store_true",
                   help="only the 28 x 28 digits, not Pope et al.'s 32 x 32 nearest resize")
    p.add_argument("--kf-m", type=int, default=1000, help="K_F sample size M (default 1000)")
    p.add_argument("--kf-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--kf-sizes", type=int, nargs="+", default=[28, 224],
                   help="resolutions for K_F: 28 = as stored, others via the workflow's resize")
    p.add_argument("--digit-pairs", nargs="+", default=["0,1", "1,7", "3,8", "4,9", "5,6"],
                   help="MNIST digit pairs for the natural K_F (default 0,1 1,7 3,8 4,9 5,6)")
    p.add_argument("--skip-kf", action="store_true")
    p.add_argument("--skip-id", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="torch / BLAS threads (default 2)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else parse_args([])
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np
import torch

sys.path.insert(0, str(REPO / "workflow" / "scripts"))
from intrinsic.cache import convert_image, quantize
from intrinsic.estimators import (
    balanced_sample,
    intrinsic_dimension,
    label_sharpness,
    mle_from_distances,
    neighbors_from_sq_distances,
    pairwise_sq_distances,
    twonn_from_distances,
)

torch.set_num_threads(ARGS.threads)
DENOMINATORS = ("k-1", "k-2")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{mem_kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "memory": mem,
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "threads": ARGS.threads}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def load_mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["x_train"], data["y_train"]


def load_medmnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All images of a MedMNIST-layout file (train + val + test pooled), labels flattened."""
    with np.load(path) as data:
        images = np.concatenate([data[f"{s}_images"] for s in ("train", "val", "test")])
        labels = np.concatenate([np.asarray(data[f"{s}_labels"]).reshape(-1) for s in ("train", "val", "test")])
    return images, labels


def pope_resize(images: np.ndarray, size: int = 32) -> np.ndarray:
    """(n, H, W) -> (n, size, size) as torch.nn.functional.interpolate(mode="nearest") does it.

    Source index floor(i * H / size): pure indexing, so uint8 stays uint8 and exact.
    """
    h, w = images.shape[1:]
    rows = np.floor(np.arange(size) * (h / size)).astype(int)
    cols = np.floor(np.arange(size) * (w / size)).astype(int)
    return images[:, rows][:, :, cols]


def check_pope_resize(images: np.ndarray) -> None:
    """The indexing above equals torch's interpolate on the float images (as Pope et al. call it)."""
    ours = pope_resize(images).astype(np.float32) / 255
    theirs = torch.nn.functional.interpolate(torch.from_numpy(images.astype(np.float32) / 255)[:, None],
                                             size=(32, 32)).squeeze(1).numpy()
    if not np.array_equal(ours, theirs):
        raise AssertionError("pope_resize differs from torch.nn.functional.interpolate(mode='nearest')")


def to_workflow_geometry(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, H, W) -> uint8 (n, 1, size, size) through the workflow's own resize + quantise."""
    if images.shape[1:] == (size, size):
        return images[:, None]
    out = np.empty((len(images), 1, size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = quantize(convert_image(image.astype(np.float32) / 255, size, 1))
    return out


def kf_value(result) -> float:
    """label_sharpness returns a record {"k_f", ...} (a bare float in older versions)."""
    return float(result["k_f"]) if isinstance(result, dict) else float(result)


# --------------------------------------------------------------------------------------------
# d_data
# --------------------------------------------------------------------------------------------
def id_rows(x: np.ndarray, ns: list[int], ks: list[int], seed: int, variants: list[str]) -> list[dict]:
    order = np.random.default_rng(seed).permutation(len(x))
    rows = []
    for variant in variants:
        for n in ns:
            chosen = x[order[:n]]
            data = pope_resize(chosen) if variant == "32x32 nearest" else chosen
            start = time.perf_counter()
            sq = pairwise_sq_distances(data)
            neighbors = neighbors_from_sq_distances(sq, max(ks))
            del sq
            mle = {den: {k: mle_from_distances(neighbors.distances, k, denominator=den) for k in ks}
                   for den in DENOMINATORS}
            twonn = twonn_from_distances(neighbors.distances)
            seconds = time.perf_counter() - start
            row = {"variant": variant, "n": n, "mle": mle, "twonn": twonn, "seconds": seconds,
                   "n_duplicates": neighbors.n_duplicates, "features": int(np.prod(data.shape[1:]))}
            if n == min(ns) and 20 in ks:
                # Tie the table to the public entry point: intrinsic_dimension gives the same.
                api = intrinsic_dimension(data, k=20)
                row["api_d_mle_k20"] = api["d_mle"]
                row["api_d_twonn"] = api["d_twonn"]
                if not (np.isclose(api["d_mle"], mle["k-1"][20], rtol=1e-9)
                        and np.isclose(api["d_twonn"], twonn, rtol=1e-9)):
                    raise AssertionError(f"intrinsic_dimension disagrees with the table at n={n}")
            rows.append(row)
            print(f"  d_data {variant:>13} N={n:>6}: MLE(k-1, k=20) {mle['k-1'].get(20, float('nan')):6.2f}  "
                  f"TwoNN {twonn:6.2f}  ({seconds:.1f} s, peak RSS {peak_rss_gib():.2f} GiB)", flush=True)
    return rows


def print_id_table(rows: list[dict], ks: list[int]) -> None:
    head_k = " ".join(f"{'k=' + str(k):>6}" for k in ks)
    print("\nMNIST d_data (random training digits, one permutation, first N)")
    print(f"{'input':>13} {'N':>6} | MLE 'k-1' (papers' formula): {head_k} | MLE 'k-2' (Pope code): {head_k} | "
          f"{'TwoNN':>6} | {'dups':>4} | {'s':>6}")
    for r in rows:
        a = " ".join(f"{r['mle']['k-1'][k]:6.2f}" for k in ks)
        b = " ".join(f"{r['mle']['k-2'][k]:6.2f}" for k in ks)
        print(f"{r['variant']:>13} {r['n']:>6} | {'':29}{a} | {'':23}{b} | {r['twonn']:6.2f} | "
              f"{r['n_duplicates']:>4} | {r['seconds']:6.1f}")
    print("'k-2' / 'k-1' = (k-2)/(k-1) exactly: " + ", ".join(f"k={k}: {(k - 2) / (k - 1):.4f}" for k in ks))
    print("Pope et al. (ICLR 2021) Table 1 MNIST: not printed. The table could not be read from a primary "
          "source with the tools available here (see benchmarks/README.md).")


# --------------------------------------------------------------------------------------------
# K_F
# --------------------------------------------------------------------------------------------
def kf_rows(sets: dict[str, tuple[np.ndarray, np.ndarray, str]], sizes: list[int], m: int,
            seeds: list[int]) -> list[dict]:
    rows = []
    for name, (images, labels, domain) in sets.items():
        y = np.asarray(labels, dtype=np.float64)
        for size in sizes:
            for seed in seeds:
                start = time.perf_counter()
                index = balanced_sample(y, m, seed)
                sample = to_workflow_geometry(images[index], size)
                # The sample is balanced already: label_sharpness takes all of it.
                result = label_sharpness(sample, y[index], m=len(index), seed=seed)
                k_f = kf_value(result)
                record = result if isinstance(result, dict) else {}
                rows.append({"dataset": name, "domain": domain, "size": size, "seed": seed, "k_f": k_f,
                             "k_f_255": k_f / 255, "samples": int(record.get("kf_samples", len(index))),
                             "zero_distance_pairs": record.get("kf_zero_distance_pairs"),
                             "seconds": time.perf_counter() - start})
        print(f"  K_F {name}: done", flush=True)
    return rows


def summarize_kf(rows: list[dict], sizes: list[int]) -> dict:
    summary = {}
    for size in sizes:
        at = [r for r in rows if r["size"] == size]
        per_set = {}
        for r in at:
            per_set.setdefault(r["dataset"], []).append(r)
        means = {name: float(np.mean([r["k_f"] for r in rs])) for name, rs in per_set.items()}
        domain = {name: rs[0]["domain"] for name, rs in per_set.items()}
        natural = [v for k, v in means.items() if domain[k] == "natural"]
        medical = {k: v for k, v in means.items() if domain[k] == "medical"}
        nat = float(np.mean(natural)) if natural else float("nan")
        summary[size] = {"per_dataset_mean": means, "natural_mean": nat,
                         "medical_mean": float(np.mean(list(medical.values()))) if medical else float("nan"),
                         "ratio_each": {k: v / nat for k, v in medical.items()}}
        summary[size]["ratio"] = summary[size]["medical_mean"] / nat
    return summary


def print_kf(rows: list[dict], summary: dict, sizes: list[int], m: int, seeds: list[int]) -> None:
    print(f"\nK_F (label_sharpness, M = {m} class-balanced, seeds {seeds}; mean [min, max] over seeds)")
    print(f"{'dataset':>16} {'domain':>8} {'size':>5} {'M':>5} {'zero':>4} | {'K_F [0,1] scale':>28} | "
          f"{'K_F/255 (0..255 scale)':>32}")
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    for size in sizes:
        for name in names:
            rs = [r for r in rows if r["dataset"] == name and r["size"] == size]
            if not rs:
                continue
            v = np.array([r["k_f"] for r in rs])
            zero = max((r["zero_distance_pairs"] or 0) for r in rs)
            print(f"{name:>16} {rs[0]['domain']:>8} {size:>5} {rs[0]['samples']:>5} {zero:>4} | "
                  f"{v.mean():9.4f} [{v.min():7.4f}, {v.max():7.4f}] | "
                  f"{v.mean() / 255:10.3e} [{v.min() / 255:9.3e}, {v.max() / 255:9.3e}]")
    print()
    for size in sizes:
        s = summary[size]
        each = ", ".join(f"{k} {v:.2f}" for k, v in s["ratio_each"].items())
        print(f"{size:>3} px: natural (MNIST pairs) mean K_F/255 {s['natural_mean'] / 255:.3e}, medical mean "
              f"{s['medical_mean'] / 255:.3e}; medical/natural ratio {s['ratio']:.2f} ({each})")
    print(f"paper: {KF_SOURCE}; ratio {PAPER_KF_MEDICAL_255 / PAPER_KF_NATURAL_255:.1f}")


# --------------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    load_start = os.getloadavg()
    res: dict = {"date": datetime.date.today().isoformat(), "machine": machine(), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print(f"machine: {res['machine']['cpu']}, {res['machine']['cpus']} CPUs, {res['machine']['memory']}, "
          f"torch {torch.__version__}, numpy {np.__version__}, {args.threads} threads; load average "
          f"{load_start[0]:.2f}", flush=True)
    x, y = load_mnist(args.mnist)
    if not args.skip_id:
        variants = ["28x28"] + ([] if args.skip_pope_resize else ["32x32 nearest"])
        if "32x32 nearest" in variants:
            check_pope_resize(x[:64])
        res["id"] = id_rows(x, sorted(args.n), sorted(args.ks), args.seed, variants)
        print_id_table(res["id"], sorted(args.ks))
    if not args.skip_kf:
        sets = {}
        for pair in args.digit_pairs:
            a, b = (int(v) for v in pair.split(","))
            keep = (y == a) | (y == b)
            sets[f"MNIST {a} vs {b}"] = (x[keep], (y[keep] == b).astype(np.uint8), "natural")
        for name, path in (("PneumoniaMNIST", args.pneumonia), ("BreastMNIST", args.breast)):
            images, labels = load_medmnist(path)
            sets[name] = (images, labels, "medical")
        res["kf"] = kf_rows(sets, args.kf_sizes, args.kf_m, args.kf_seeds)
        res["kf_summary"] = {str(k): v for k, v in summarize_kf(res["kf"], args.kf_sizes).items()}
        print_kf(res["kf"], summarize_kf(res["kf"], args.kf_sizes), args.kf_sizes, args.kf_m, args.kf_seeds)
    load_end = os.getloadavg()
    res["machine"]["loadavg_start"], res["machine"]["loadavg_end"] = load_start, load_end
    res["seconds_total"] = time.perf_counter() - started
    res["peak_rss_gib"] = peak_rss_gib()
    print(f"\ntotal {res['seconds_total']:.0f} s, peak RSS {res['peak_rss_gib']:.2f} GiB, load average "
          f"{load_start[0]:.2f} -> {load_end[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1, default=float))
    return res


if __name__ == "__main__":
    main(ARGS)
