"""Merging per-split JSON records into tidy tables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import grid
from .io import atomic_write, read_json
from .provenance import CODE_FIELDS, join_code, recorded_code, stamp_code, warn_mixed_code, with_code_columns


def numeric_column(table: pd.DataFrame, column: str, what: str = "") -> pd.Series:
    """``table[column]`` as floats; a ValueError naming the column (and ``what``, e.g. the file)
    when a cell is not a number."""
    try:
        return pd.to_numeric(table[column], errors="raise").astype(float)
    except (TypeError, ValueError) as error:
        where = f"{what}: " if what else ""
        raise ValueError(f"{where}column {column!r} is not numeric: {error}") from None

SPLIT_PROPERTY_COLUMNS = [
    "dataset", "domain", "noise", "n_train", "n_test", "seed", "classes", "d_mle", "d_twonn",
    "data_energy_rank", "data_effective_rank", "rank_energy", "background_fraction",
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
    """One row per JSON record, sorted by dataset, noise, n_train and seed."""
    records = [read_json(path) for path in paths]
    table = pd.DataFrame(records)
    if columns:
        for path, record in zip(paths, records):
            missing = [c for c in columns if c not in record]
            if missing:
                raise ValueError(f"records lack columns {missing}: {path}")
        table = table[columns + [c for c in table.columns if c not in columns]]
    sort_by = [c for c in ("dataset", "noise", "n_train", "seed") if c in table.columns]
    return table.sort_values(sort_by, kind="stable").reset_index(drop=True)


def property_tables(split_paths: list[str | os.PathLike], sharpness_paths: list[str | os.PathLike]
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(splits, sharpness): one row per split (d_data) joined with its class pair's K_F, and one
    row per (dataset, class pair) from the per-dataset label_sharpness records."""
    splits = with_code_columns(merge_records(split_paths, SPLIT_PROPERTY_COLUMNS))
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
        rows += [{**pair, **recorded_code(pair)} for pair in pairs]
    sharpness = pd.DataFrame(rows, columns=SHARPNESS_COLUMNS + list(CODE_FIELDS))
    sharpness = sharpness.sort_values(["dataset", "pair_index"], kind="stable").reset_index(drop=True)
    pair_code = sharpness[PAIR_KEYS + SHARPNESS_ON_SPLITS + list(CODE_FIELDS)].rename(
        columns={field: "sharpness_" + field for field in CODE_FIELDS})
    joined = splits.merge(pair_code, on=PAIR_KEYS, how="left", validate="many_to_one", indicator=True)
    orphans = joined[joined.pop("_merge") != "both"]
    if len(orphans):
        first = orphans.iloc[0]
        raise ValueError(f"{len(orphans)} split(s) have no label sharpness of their class pair, e.g. "
                         f"dataset {first['dataset']!r} classes {first['classes']!r} (seed {first['seed']}); "
                         "rerun rule label_sharpness for that dataset")
    joined = join_code(joined, "sharpness_")  # a split's row: its own code and its K_F's
    position = SPLIT_PROPERTY_COLUMNS.index("d_twonn") + 1
    order = SPLIT_PROPERTY_COLUMNS[:position] + SHARPNESS_ON_SPLITS + SPLIT_PROPERTY_COLUMNS[position:]
    return joined[order + list(CODE_FIELDS)], sharpness


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_write(Path(path), "w") as handle:
        table.to_csv(handle, index=False)


def write_table(table: pd.DataFrame, path: str | os.PathLike, log=None, *, sources=None, keys=None) -> pd.DataFrame:
    """Write a table of the workflow as CSV, each row with the code fields of the records it came
    from (intrinsic.provenance), and log a WARNING (on ``log``) when they are of more than one
    version of the library. ``sources``: the table(s) the rows were computed from (a fit from
    runs.csv): each row gets the versions of its source rows (``provenance.stamp_code``,
    matched on ``keys``); without, the rows carry their own (a table of records). Returns the
    table as written."""
    table = with_code_columns(table) if sources is None else stamp_code(table, sources, keys)
    warn_mixed_code(table, Path(path).name, log)
    write_csv(table, path)
    return table


# The split a run trains on, at its noise level: the columns joining a run to its dataset
# properties (K_F is of the clean class pair, the same at every noise level).
SPLIT_KEYS = list(grid.DATA_AXES)
JOINED_PROPERTIES = ["classes", "d_mle", "d_twonn", "data_energy_rank", "data_effective_rank", "background_fraction",
                     "k_f", "k_f_255", "kf_zero_distance_pairs", "d_true"]
# Run columns repeated on every attack row, so attacks.csv stands on its own.
RUN_COLUMNS_ON_ATTACKS = ["domain", "fitted", "test_loss", "test_accuracy", "d_repr_twonn",
                          "d_repr_mle", "jacobian_norm"]


def typed_axes(table: pd.DataFrame, axes, where: str) -> pd.DataFrame:
    """The grid-axis columns ``axes`` of ``table`` cast to their types (intrinsic.grid): wildcards
    and CSV round trips arrive as strings or as the wrong numeric type."""
    table = table.copy()
    for axis in axes:
        try:
            table[axis] = table[axis].map(grid.AXIS_TYPES[axis])
        except (KeyError, TypeError, ValueError) as error:
            kind = grid.AXIS_TYPES[axis].__name__
            raise ValueError(f"{where}: axis column {axis!r} cannot be read as {kind} ({error})") from None
    return table


def grid_tables(evaluation_paths: list[str | os.PathLike],
                properties: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, attacks, epochs): one row per run, one per run x attack x eps and one per run x
    training pass x epoch, joined with the properties of the run's training split at its noise
    level. The grid axes (intrinsic.grid) come first, typed."""
    run_keys = list(grid.AXIS_TYPES)
    records = [read_json(path, required=("run", "attacks", "epochs")) for path in evaluation_paths]
    if not records:
        raise ValueError("no evaluation records to merge")
    runs = with_code_columns(pd.DataFrame([record["run"] for record in records]))
    attacks = pd.DataFrame([row for record in records for row in record["attacks"]])
    epochs = pd.DataFrame([row for record in records for row in record["epochs"]])
    missing = [key for key in run_keys + SPLIT_KEYS if key not in runs.columns]
    if missing:
        raise ValueError(f"evaluation records lack the run keys {missing}")
    runs = typed_axes(runs, run_keys, "evaluation records")
    attacks = typed_axes(attacks, run_keys, "attack rows of the evaluation records")
    epochs = typed_axes(epochs, run_keys, "epoch rows of the evaluation records")
    properties = typed_axes(properties, SPLIT_KEYS, "dataset properties")
    properties = with_code_columns(properties)
    joined = properties[SPLIT_KEYS + JOINED_PROPERTIES + list(CODE_FIELDS)].rename(
        columns={field: "properties_" + field for field in CODE_FIELDS})
    runs = runs.merge(joined, on=SPLIT_KEYS, how="left", validate="many_to_one", indicator=True)
    orphans = runs[runs.pop("_merge") != "both"]
    if len(orphans):
        raise ValueError(f"{len(orphans)} runs have no dataset properties, e.g. "
                         f"{orphans[SPLIT_KEYS].iloc[0].to_dict()}")
    runs = join_code(runs, "properties_")  # a run's row: its own code and its properties'
    code = list(CODE_FIELDS)  # last, and copied onto the run's attack and epoch rows
    order = run_keys + [c for c in runs.columns if c not in run_keys + code] + code
    runs = runs[order].sort_values(run_keys, kind="stable").reset_index(drop=True)
    attacks = attacks.merge(runs[run_keys + RUN_COLUMNS_ON_ATTACKS + JOINED_PROPERTIES + code],
                            on=run_keys, how="left", validate="many_to_one")
    attacks = attacks.sort_values(run_keys + ["attack", "eps"], kind="stable").reset_index(drop=True)
    epochs = epochs.merge(runs[run_keys + ["domain"] + code], on=run_keys, how="left", validate="many_to_one")
    epochs["pass"] = pd.Categorical(epochs["pass"], ["first", "final"])
    epochs = epochs.sort_values(run_keys + ["pass", "epoch"], kind="stable").reset_index(drop=True)
    epochs["pass"] = epochs["pass"].astype(str)
    return runs, attacks, epochs


def reference_slice(table: pd.DataFrame, reference: dict) -> pd.DataFrame:
    """The rows at the study axes' reference values ({"noise": 0.0, "variant": "standard"}): the
    clean, standard-trained grid that the paper's analyses (fits, Table 1, Figs. 2-5) are of."""
    keep = pd.Series(True, index=table.index)
    for axis, value in reference.items():
        if axis in table.columns:
            keep &= (table[axis] == value) if not isinstance(value, float) else np.isclose(table[axis], value)
    return table[keep].reset_index(drop=True)


def write_parquet(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_write(Path(path)) as handle:
        table.to_parquet(handle, index=False)
