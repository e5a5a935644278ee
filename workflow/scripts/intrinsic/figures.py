"""The study's figures (seaborn), each saved as PNG and PDF."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from .io import atomic_write

DOMAIN_ORDER = ["natural", "medical", "synthetic"]
DOMAIN_PALETTE = {"natural": "#1f77b4", "medical": "#d62728", "synthetic": "#7f7f7f"}


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean (deterministic, unlike a bootstrap)."""
    values = np.asarray(values, dtype=float)
    mean = values.mean()
    if len(values) < 2:
        return mean, mean
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean - half, mean + half


def natural_key(name: str) -> list:
    """Sort 'synthetic_d2' before 'synthetic_d16'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def save_figure(fig, png: str | os.PathLike, pdf: str | os.PathLike) -> None:
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_write(Path(path)) as handle:
            fig.savefig(handle, format=fmt, dpi=200, bbox_inches="tight")
    plt.close(fig)


def per_seed_means(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Average each seed (class pair) over training sizes: the CI is then over seeds."""
    keys = ["dataset", "domain", "seed"]
    return table.groupby(keys, as_index=False)[columns].mean()


def figure_dataset_properties(table: pd.DataFrame, png, pdf) -> pd.DataFrame:
    """Figure 1: d_data (MLE and TwoNN) and K_F per dataset, coloured by domain, 95% CI over seeds.

    Returns the plotted summary (mean and CI per dataset and measure).
    """
    finite = table[np.isfinite(table["k_f"])]
    seeds = per_seed_means(finite, ["d_mle", "d_twonn", "k_f"])
    domains = [d for d in DOMAIN_ORDER if d in set(seeds["domain"])] + sorted(
        set(seeds["domain"]) - set(DOMAIN_ORDER)
    )
    domain_rank = {d: i for i, d in enumerate(domains)}
    first_domain = seeds.groupby("dataset")["domain"].first()
    order = sorted(first_domain.index, key=lambda name: (domain_rank[first_domain[name]], natural_key(name)))
    panels = [("d_mle", "$d_{data}$ (MLE, k=20)"), ("d_twonn", "$d_{data}$ (TwoNN)"),
              ("k_f", "label sharpness $\\hat K_F$")]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.35 * len(order) + 1.5), sharey=True)
    palette = {d: DOMAIN_PALETTE.get(d, "#2ca02c") for d in domains}
    for ax, (column, label) in zip(axes, panels):
        sns.pointplot(
            data=seeds, x=column, y="dataset", hue="domain", order=order, hue_order=domains,
            palette=palette, errorbar=t_interval, linestyle="none", markers="o", capsize=0.3,
            dodge=False, ax=ax, legend=ax is axes[-1],
        )
        ax.set_xlabel(label)
        ax.set_ylabel("")
        if column.startswith("d_") and "d_true" in table and table["d_true"].notna().any():
            truth = table.dropna(subset=["d_true"]).groupby("dataset")["d_true"].first()
            ax.scatter(truth.values, [order.index(d) for d in truth.index], marker="x",
                       color="black", zorder=5, label="true d")
    axes[-1].legend(title="domain", loc="lower right")
    fig.suptitle("Intrinsic dimension and label sharpness of the training sets (mean, 95% CI over seeds)")
    save_figure(fig, png, pdf)
    summary = seeds.melt(id_vars=["dataset", "domain", "seed"], var_name="measure")
    return summary.groupby(["dataset", "domain", "measure"])["value"].agg(
        mean="mean", ci_low=lambda v: t_interval(v)[0], ci_high=lambda v: t_interval(v)[1], n_seeds="count"
    ).reset_index()
