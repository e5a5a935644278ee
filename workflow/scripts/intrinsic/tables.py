"""Merging per-split JSON records into tidy tables."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .io import atomic_write, read_json

PROPERTY_COLUMNS = [
    "dataset", "domain", "n_train", "n_test", "seed", "classes", "d_mle", "d_twonn", "k_f",
    "n_duplicates", "n_features", "resolution", "channels", "knn_k", "sharpness_samples",
    "d_true", "seconds",
]


def merge_records(paths: list[str | os.PathLike], columns: list[str] | None = None) -> pd.DataFrame:
    """One row per JSON record, sorted by dataset, n_train and seed."""
    records = [read_json(path) for path in paths]
    table = pd.DataFrame(records)
    if columns:
        for path, record in zip(paths, records):
            missing = [c for c in columns if c not in record]
            if missing:
                raise ValueError(f"records lack columns {missing}: {path}")
        table = table[columns + [c for c in table.columns if c not in columns]]
    sort_by = [c for c in ("dataset", "n_train", "seed") if c in table.columns]
    return table.sort_values(sort_by, kind="stable").reset_index(drop=True)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_write(Path(path), "w") as handle:
        table.to_csv(handle, index=False)
