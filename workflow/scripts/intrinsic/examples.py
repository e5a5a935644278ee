"""App. D.1 of the paper: clean and FGSM-attacked test images with the model's predictions, one
row per dataset (``figure_attacked_examples``), from the evaluation records of the runs chosen
for it (``attacked.chosen_runs``) and the clean images in their caches (``load_examples``).
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import grid
from .attacked import RECORD_KEY, decode_image, on_255_scale
from .cache import load_cache
from .figures import save_figure
from .io import read_json
from .splits import load_split

# A stored attacked pixel may differ from the clean one by eps_255 (plus float16 rounding).
_CHANGE_TOLERANCE = 0.07
# Up to this many examples a row also shows each attack's difference image (App. D.1 has
# clean and attacked only; the difference shows the perturbation the eye cannot see).
DIFFERENCE_UP_TO = 4


def load_examples(evaluation_path, cache_folder, split_path) -> dict:
    """One row of the figure: the run's keys, domain and class names, the budget, and per example
    its record entry with the clean image (uint8, from the cache) and the attacked one (decoded).

    The clean image is read from the cache, so it must be the image the run attacked: the run is
    of the clean grid (noise 0), each cache index is in the split's test set with the recorded
    label, and no attacked pixel is further than eps from its clean pixel; anything else is an
    error naming the record."""
    record = read_json(evaluation_path, required=("run",))
    if RECORD_KEY not in record:
        raise ValueError(f"{evaluation_path}: the record has no {RECORD_KEY!r}: it was evaluated without "
                         "evaluation.attacked_examples (n > 0); rerun its run_model job")
    run, stored = record["run"], record[RECORD_KEY]
    if float(run.get("noise", 0.0)) != 0.0:
        raise ValueError(f"{evaluation_path}: the run has background noise {run['noise']}, but the clean images "
                         "of the figure come from the cache; attacked examples need a run at noise 0")
    cache = load_cache(cache_folder)
    split = load_split(split_path, cache)
    label_of = dict(zip(split.test_idx.tolist(), split.test_y.tolist()))
    eps_255 = float(stored["eps_255"])
    examples = []
    for number, example in enumerate(stored["examples"]):
        where = f"{evaluation_path}: attacked example {number}"
        index = int(example["cache_index"])
        if label_of.get(index) != int(example["label"]):
            raise ValueError(f"{where}: cache index {index} with label {example['label']} is not in the test set of "
                             f"split {split_path} (a record of another split or cache build?)")
        clean = cache.read_images([index])[0]
        attacked = decode_image(example["attacked_image"], where)
        if attacked.shape != clean.shape:
            raise ValueError(f"{where}: stored image shape {attacked.shape} differs from the cache's {clean.shape}")
        change = float(np.abs(on_255_scale(attacked) - clean.astype(np.float64)).max())
        if change > eps_255 + _CHANGE_TOLERANCE:
            raise ValueError(f"{where}: the attacked image is {change:.3g}/255 from the cache's image, more than "
                             f"eps = {eps_255:g}/255 (a record of another cache build?)")
        examples.append({**example, "clean": clean, "attacked": attacked, "max_change_255": change})
    return {"run": run, "classes": list(split.classes), "attack": stored.get("attack", "fgsm"), "eps_255": eps_255,
            "examples": examples}


def _class_name(classes: list[str], k: int) -> str:
    return classes[k] if 0 <= k < len(classes) else f"output {k}"  # e.g. the noise_class variant's extra class


def _show(ax, image: np.ndarray, scale: float = 255.0, **style) -> None:
    """A (C, H, W) image, pixels as squares: one channel with ``style`` (colour map and limits),
    three as RGB, where 0..``scale`` is the full range of each channel."""
    if image.shape[0] == 1:
        ax.imshow(image[0], interpolation="nearest", **style)
    else:
        ax.imshow(np.clip(np.moveaxis(image, 0, -1) / scale, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def figure_attacked_examples(rows: list[dict], png: str | os.PathLike, pdf: str | os.PathLike, *,
                             difference: bool | None = None) -> pd.DataFrame:
    """App. D.1: per dataset (``rows``: ``load_examples`` results) its examples side by side,
    each as the clean image (title: true class, clean prediction and its softmax probability) and
    the FGSM image (the attacked prediction and probability, red when wrong), both on the same
    fixed 0..255 grey scale (black = 0, white = 255: no per-image contrast stretch), and with
    ``difference`` (default: up to DIFFERENCE_UP_TO examples a row) the attacked minus the clean
    image amplified to the budget (blue -eps, white 0, red +eps; RGB: 0.5 + difference / 2 eps).

    Returns one row per example: the run keys, test and cache index, true class, predictions,
    probabilities, whether the attack flipped the prediction, and the largest pixel change."""
    if not rows:
        raise ValueError("figure_attacked_examples: no records to draw")
    empty = [row["run"].get("dataset") for row in rows if not row["examples"]]
    if empty:
        raise ValueError(f"figure_attacked_examples: no examples recorded for {empty}")
    most = max(len(row["examples"]) for row in rows)
    if difference is None:
        difference = most <= DIFFERENCE_UP_TO
    per = 3 if difference else 2
    fig, axes = plt.subplots(len(rows), most * per, figsize=(1.3 * most * per, 1.75 * len(rows) + 0.4),
                             squeeze=False)
    summary = []
    for r, row in enumerate(rows):
        run, classes, eps_255 = row["run"], row["classes"], row["eps_255"]
        for ax in axes[r, len(row["examples"]) * per:]:
            ax.set_axis_off()
        for j, example in enumerate(row["examples"]):
            clean = example["clean"].astype(np.float64)
            attacked = on_255_scale(example["attacked"])
            true = _class_name(classes, int(example["label"]))
            clean_k, adv_k = int(example["clean_prediction"]), int(example["attacked_prediction"])
            grey = {"cmap": "gray", "vmin": 0, "vmax": 255}
            ax = axes[r, j * per]
            _show(ax, clean, **grey)
            ax.set_title(f"true: {true}\nclean: {_class_name(classes, clean_k)} ({example['clean_probability']:.2f})",
                         fontsize=6.5, color="black" if clean_k == int(example["label"]) else "tab:red")
            ax = axes[r, j * per + 1]
            _show(ax, np.clip(attacked, 0, 255), **grey)
            ax.set_title(f"{row['attack'].upper()} {eps_255:g}/255:\n{_class_name(classes, adv_k)} "
                         f"({example['attacked_probability']:.2f})", fontsize=6.5,
                         color="black" if adv_k == int(example["label"]) else "tab:red")
            if difference:
                ax = axes[r, j * per + 2]
                change = attacked - clean
                if change.shape[0] == 1:
                    _show(ax, change, cmap="RdBu_r", vmin=-eps_255, vmax=eps_255)
                else:
                    _show(ax, 0.5 + change / (2 * eps_255), scale=1.0)
                ax.set_title(f"difference\n(±{eps_255:g}/255)", fontsize=6.5)
            summary.append({
                **{key: run.get(key) for key in ("domain", *grid.AXIS_TYPES)},
                "test_index": int(example["test_index"]), "cache_index": int(example["cache_index"]),
                "true_class": true, "clean_prediction": _class_name(classes, clean_k),
                "clean_probability": float(example["clean_probability"]),
                "attacked_prediction": _class_name(classes, adv_k),
                "attacked_probability": float(example["attacked_probability"]),
                "flipped": clean_k != adv_k, "max_change_255": float(example["max_change_255"]),
            })
        axes[r, 0].set_ylabel(f"{run.get('dataset')}\n{run.get('model')}, N={run.get('n_train')}, "
                              f"seed {run.get('seed')}", fontsize=7)
    budgets = sorted({f"{row['eps_255']:g}/255" for row in rows})
    fig.suptitle(f"Clean and FGSM-attacked test images (eps = {', '.join(budgets)}) with the model's prediction "
                 "and softmax probability; red: wrong", fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, pdf)
    return pd.DataFrame(summary)
