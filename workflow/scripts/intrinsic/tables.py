"""Merging per-split JSON records into tidy tables."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .io import atomic_write, read_json

SPLIT_PROPERTY_COLUMNS = [
    "dataset", "domain", "n_train", "n_test", "seed", "classes", "d_mle", "d_twonn",
    "n_duplicates", "n_features", "resolution", "channels", "knn_k", "d_true", "seconds",
]
SHARPNESS_COLUMNS = [
    "dataset", "domain", "classes", "pair_index", "k_f", "k_f_255", "kf_samples",
    "kf_zero_distance_pairs", "n_pool", "seeds", "fig1", "resolution", "channels", "seconds",
]
# The class pair's K_F joined to each split (and through it to each run).
PAIR_KEYS = ["dataset", "classes"]
SHARPNESS_ON_SPLITS = ["pair_index", "k_f", "k_f_255", "kf_samples", "kf_zero_distance_pairs"]


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


def property_tables(split_paths: list[str | os.PathLike], sharpness_paths: list[str | os.PathLike]
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(splits, sharpness): one row per split (d_data) joined with its class pair's K_F, and one
    row per (dataset, class pair) from the per-dataset label_sharpness records."""
    splits = merge_records(split_paths, SPLIT_PROPERTY_COLUMNS)
    rows = []
    for path in sharpness_paths:
        record = read_json(path)
        pairs = record.get("pairs") if isinstance(record, dict) else None
        if not isinstance(pairs, list):
            raise ValueError(f"{path}: expected {{'pairs': [...]}}, a label_sharpness record")
        for pair in pairs:
            missing = [c for c in SHARPNESS_COLUMNS if c not in pair]
            if missing:
                raise ValueError(f"{path}: a class pair record lacks {missing}")
        rows += pairs
    sharpness = pd.DataFrame(rows, columns=SHARPNESS_COLUMNS)
    sharpness = sharpness.sort_values(["dataset", "pair_index"], kind="stable").reset_index(drop=True)
    joined = splits.merge(sharpness[PAIR_KEYS + SHARPNESS_ON_SPLITS], on=PAIR_KEYS, how="left",
                          validate="many_to_one", indicator=True)
    orphans = joined[joined.pop("_merge") != "both"]
    if len(orphans):
        first = orphans.iloc[0]
        raise ValueError(f"{len(orphans)} split(s) have no label sharpness of their class pair, e.g. "
                         f"dataset {first['dataset']!r} classes {first['classes']!r} (seed {first['seed']}); "
                         "rerun rule label_sharpness for that dataset")
    order = SPLIT_PROPERTY_COLUMNS[:8] + SHARPNESS_ON_SPLITS + SPLIT_PROPERTY_COLUMNS[8:]
    return joined[order], sharpness


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_write(Path(path), "w") as handle:
        table.to_csv(handle, index=False)


# The split a run trains on: the columns joining a run to its dataset properties.
SPLIT_KEYS = ["dataset", "n_train", "seed"]
JOINED_PROPERTIES = ["classes", "d_mle", "d_twonn", "k_f", "k_f_255", "kf_zero_distance_pairs",
                     "d_true"]
# Run columns repeated on every attack row, so attacks.csv stands on its own.
RUN_COLUMNS_ON_ATTACKS = ["domain", "fitted", "test_loss", "test_accuracy", "d_repr_twonn",
                          "d_repr_mle", "jacobian_norm"]


def grid_tables(evaluation_paths: list[str | os.PathLike], properties: pd.DataFrame,
                run_keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, attacks): one row per run and one per run x attack x eps, joined with the
    properties of the run's training split. ``run_keys`` are the grid axes (dataset, model, ...)."""
    records = [read_json(path, required=("run", "attacks")) for path in evaluation_paths]
    if not records:
        raise ValueError("no evaluation records to merge")
    runs = pd.DataFrame([record["run"] for record in records])
    attacks = pd.DataFrame([row for record in records for row in record["attacks"]])
    missing = [key for key in run_keys + SPLIT_KEYS if key not in runs.columns]
    if missing:
        raise ValueError(f"evaluation records lack the run keys {missing}")
    for key in ("n_train", "seed"):  # wildcards arrive as strings
        runs[key] = runs[key].astype(int)
        attacks[key] = attacks[key].astype(int)
    joined = properties[SPLIT_KEYS + JOINED_PROPERTIES]
    runs = runs.merge(joined, on=SPLIT_KEYS, how="left", validate="many_to_one", indicator=True)
    orphans = runs[runs.pop("_merge") != "both"]
    if len(orphans):
        raise ValueError(f"{len(orphans)} runs have no dataset properties, e.g. "
                         f"{orphans[SPLIT_KEYS].iloc[0].to_dict()}")
    order = run_keys + [c for c in runs.columns if c not in run_keys]
    runs = runs[order].sort_values(run_keys, kind="stable").reset_index(drop=True)
    attacks = attacks.merge(runs[run_keys + RUN_COLUMNS_ON_ATTACKS + JOINED_PROPERTIES],
                            on=run_keys, how="left", validate="many_to_one")
    attacks = attacks.sort_values(run_keys + ["attack", "eps"], kind="stable").reset_index(drop=True)
    return runs, attacks


def write_parquet(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_write(Path(path)) as handle:
        table.to_parquet(handle, index=False)
