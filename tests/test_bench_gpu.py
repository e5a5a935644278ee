"""benchmarks/bench_gpu.py on the CPU at a tiny size: it runs every row (eager and compiled
step, workflow epoch, checkpoint, packed runs, projection) and its figures are consistent with
each other and with an independent FLOP count. One subprocess for the whole module (20-30 s on 2 cores);
torch is imported, and the reference FLOPs counted, while it runs (the file's time budget)."""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import yaml

MODEL, SIZE, N_TRAIN, N_TEST, PACKED = "resnet18", 32, 16, 8, 2


@pytest.fixture(scope="module")
def bench(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_gpu") / "bench.json"
    # --compile-backend eager: the compiled path (dynamo) without inductor's slow CPU code generation.
    command = [sys.executable, str(repo / "benchmarks" / "bench_gpu.py"), "--device", "cpu", "--models", MODEL,
               "--size", str(SIZE), "--steps", "2", "--warmup", "1", "--epochs", "2", "--n-train", str(N_TRAIN),
               "--n-test", str(N_TEST), "--packed", str(PACKED), "--threads", "1", "--compile", "both",
               "--compile-backend", "eager", "--json", str(out)]
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        reference = reference_flops()
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stdout + stderr
    return json.loads(out.read_text()), stdout, reference


def reference_flops() -> dict:
    """FlopCounterMode on the model as intrinsic.models builds it (CPU tensors, batch 2), per image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from intrinsic.models import build_model

    torch.manual_seed(0)
    model = build_model(MODEL, 1, 2, 7).train()  # paper.yaml: 1 channel, vgg_pool_size 7
    x, y = torch.rand(2, 1, SIZE, SIZE), torch.tensor([0, 1])
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    train = counter.get_total_flops() / 2
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    per_module = {name: sum(counts.values()) / 2 for name, counts in counter.get_flop_counts().items()}
    return {"train": train, "forward": counter.get_total_flops() / 2, "modules": per_module}


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_every_quantity_is_reported(bench):
    data, stdout, _ = bench
    import torch

    assert data["device"]["type"] == "cpu" and data["device"]["torch"] == torch.__version__
    assert len(data["device"]["load_average_start"]) == 3 and len(data["device"]["load_average_end"]) == 3
    assert positive(data["peak"]["tflops"]) and "measured float32" in data["peak"]["source"]
    row = data["models"][MODEL]
    assert row["bf16"] is False and row["batch_size"] == 40  # paper.yaml's resnet18 batch size
    for section, keys in {
        "flops_per_image": ("train", "forward"),
        "step": ("images_per_s", "step_ms", "tflops", "peak_fraction", "first_step_s"),
        "step_compiled": ("images_per_s", "step_ms", "tflops", "peak_fraction", "compile_s"),
        "checkpoint": ("mb", "seconds"),
        "workflow": ("epoch_s", "first_epoch_s", "train_s", "fit_s", "test_s", "checkpoint_s",
                     "train_images_per_s", "epoch_images_per_s", "outside_compute_share"),
        "per_image_s": ("train", "fit", "test", "forward"),
        "packed": ("total_images_per_s", "single_images_per_s", "gain", "efficiency"),
    }.items():
        for key in keys:
            assert positive(row[section][key]), (section, key, row[section].get(key))
    for key in ("fit", "test", "checkpoint"):
        assert 0 < row["workflow"]["shares"][key] < 1
    assert row["packed"]["k"] == PACKED and len(row["packed"]["per_run_images_per_s"]) == PACKED
    assert all(positive(v) for v in row["packed"]["per_run_images_per_s"])
    projection = data["projection"]
    for key in ("gpu_hours", "gpu_hours_train", "gpu_hours_eval", "flops", "floor_hours", "ratio_to_floor",
                "gpu_hours_packed"):
        assert positive(projection[key]), key
    # The printed report: device, torch version, load average, the table rows.
    assert "torch " + torch.__version__ in stdout and "load average" in stdout
    assert f"| {MODEL} | 40 |" in stdout and "FLOP floor" in stdout


def test_flops_per_image_match_flop_counter(bench):
    data, _, reference = bench
    flops = data["models"][MODEL]["flops_per_image"]
    assert flops["train"] == reference["train"]
    assert flops["forward"] == reference["forward"]
    # By hand: conv1 (7x7, 1 -> 64 channels, stride 2: 16 x 16 outputs) and fc (512 -> 2) forward
    # are 2 FLOPs per multiply-add; backward doubles every layer (input and weight gradients)
    # except conv1, whose input needs no gradient: train = 3 x forward - conv1.
    conv1, fc = 2 * 64 * 49 * 16 * 16, 2 * 512 * 2
    assert reference["modules"]["ResNet.conv1"] == conv1
    assert reference["modules"]["ResNet.fc"] == fc
    assert flops["train"] == 3 * flops["forward"] - conv1


def test_rates_are_consistent(bench):
    data, _, _ = bench
    row, peak = data["models"][MODEL], data["peak"]["tflops"]
    for name in ("step", "step_compiled"):
        step = row[name]
        assert step["images_per_s"] == pytest.approx(row["batch_size"] / (step["step_ms"] / 1e3))
        assert step["tflops"] == pytest.approx(row["flops_per_image"]["train"] * step["images_per_s"] / 1e12)
        assert step["peak_fraction"] == pytest.approx(step["tflops"] / peak)
    wf = row["workflow"]
    assert wf["epoch_s"] == pytest.approx(wf["train_s"] + wf["fit_s"] + wf["test_s"] + wf["checkpoint_s"])
    compute_s = N_TRAIN / row["step"]["images_per_s"]
    assert wf["outside_compute_share"] == pytest.approx(1 - compute_s / wf["epoch_s"])
    assert wf["outside_compute_share_no_checkpoint"] == pytest.approx(
        1 - compute_s / (wf["epoch_s"] - wf["checkpoint_s"]))
    assert row["per_image_s"]["train"] == pytest.approx(wf["train_s"] / N_TRAIN)
    assert row["per_image_s"]["test"] == pytest.approx(wf["test_s"] / N_TEST)
    assert 1 < row["checkpoint"]["mb"] < 1000  # resnet18: 11 M float32 weights + 2 Adam moments, ~134 MB
    packed = row["packed"]
    assert packed["single_images_per_s"] == row["step"]["images_per_s"]
    assert packed["efficiency"] == pytest.approx(
        packed["total_images_per_s"] / (PACKED * packed["single_images_per_s"]))


def test_projection_arithmetic(bench, repo):
    data, _, _ = bench
    p, row = data["projection"], data["models"][MODEL]
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    runs_per_size = len(paper["datasets"]) * len(paper["splits"]["seeds"])  # 1 noise level, 1 variant
    assert p["axes"]["runs"] == 1980 == (runs_per_size * len(paper["training"]["models"])
                                         * len(paper["splits"]["n_train"]))
    # Evaluation: clean + prediction summary + Jacobian (1 + 2 classes) + FGSM (gradient 2 + 4 eps)
    # + PGD 4 eps x (10 steps x 2 + 1), in forward passes.
    assert p["eval_multiples_forward"]["test_image"] == 1 + 1 + 3 + (2 + 4) + 4 * (10 * 2 + 1) == 95
    assert p["eval_multiples_forward"]["train_image"] == 5
    epochs, n_test, t, f = p["epochs_per_run"], paper["splits"]["n_test"], row["per_image_s"], row["flops_per_image"]
    assert epochs == 20
    sizes = paper["splits"]["n_train"]
    # Checkpoints: every epoch, or (training.checkpoint_minutes) one per interval and one at the end.
    base = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    interval = 60 * float({**base["training"], **paper["training"]}.get("checkpoint_minutes", 0))
    assert p["checkpoint_interval_s"] == interval
    train_s = 0.0
    for n in sizes:
        compute = epochs * (n * (t["train"] + t["fit"]) + n_test * t["test"])
        writes = epochs if interval == 0 else min(epochs, 1 + math.floor(compute / interval))
        train_s += runs_per_size * (compute + writes * row["checkpoint_s"])
    eval_s = runs_per_size * sum((5 * n + 95 * n_test) * t["forward"] for n in sizes)
    flops = runs_per_size * sum(epochs * (n * (f["train"] + f["forward"]) + n_test * f["forward"])
                                + (5 * n + 95 * n_test) * f["forward"] for n in sizes)
    assert p["gpu_hours_train"] == pytest.approx(train_s / 3600)
    assert p["gpu_hours_eval"] == pytest.approx(eval_s / 3600)
    assert p["gpu_hours"] == pytest.approx((train_s + eval_s) / 3600)
    assert p["flops"] == pytest.approx(flops)
    assert p["floor_hours"] == pytest.approx(flops / (data["peak"]["tflops"] * 1e12) / 3600)
    assert p["ratio_to_floor"] == pytest.approx(p["gpu_hours"] / p["floor_hours"])
    assert p["gpu_hours_packed"] == pytest.approx(p["gpu_hours"] / row["packed"]["gain"])
    assert p["per_model"][MODEL]["gpu_hours"] == pytest.approx(p["gpu_hours"])


def test_peak_table(repo):
    spec = importlib.util.spec_from_file_location("bench_gpu", repo / "benchmarks" / "bench_gpu.py")
    bench_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_gpu)
    expected = {"NVIDIA H200": 989, "NVIDIA H200 NVL": 835, "NVIDIA GH200 480GB": 989, "NVIDIA H100 80GB HBM3": 989,
                "NVIDIA H100 PCIe": 756, "NVIDIA A100-SXM4-80GB": 312, "NVIDIA A100 80GB PCIe": 312, "NVIDIA L40S": 362,
                "NVIDIA L40": 181, "NVIDIA L4": 121, "NVIDIA A10": 125, "Tesla V100-SXM2-32GB": 125}
    for name, tflops in expected.items():
        assert bench_gpu.table_peak(name)[0] == tflops, name
    for unknown in ("NVIDIA A10G", "NVIDIA GeForce RTX 4090", "Some Future GPU"):  # measured GEMM instead
        assert bench_gpu.table_peak(unknown) == (None, None), unknown
