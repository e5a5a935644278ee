"""Figure 1 and the tables, checked on a fixture with known numbers."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from intrinsic.figures import figure_dataset_properties, t_interval
from intrinsic.tables import PROPERTY_COLUMNS, merge_records, write_csv


def fixture_table():
    rows = []
    # d_mle of seed s at size N is base + s + (N - 150) / 100, so each seed's mean over N is base + s.
    for dataset, domain, base in (("photos", "natural", 10.0), ("scans", "medical", 4.0)):
        for seed in range(3):
            for n_train in (100, 200):
                shift = (n_train - 150) / 100
                rows.append({
                    "dataset": dataset, "domain": domain, "n_train": n_train, "seed": seed,
                    "d_mle": base + seed + shift, "d_twonn": base + 2 * seed, "k_f": 0.1 * (seed + 1),
                    "d_true": np.nan,
                })
    table = pd.DataFrame(rows)
    table.loc[(table["dataset"] == "scans") & (table["seed"] == 2) & (table["n_train"] == 100), "k_f"] = np.inf
    return table


def test_t_interval_matches_scipy():
    values = [1.0, 2.0, 4.0]
    low, high = t_interval(values)
    expected = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert t_interval([3.0]) == (3.0, 3.0)


def test_figure_summary_has_the_known_means_and_intervals(tmp_path):
    summary = figure_dataset_properties(fixture_table(), tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").stat().st_size > 5_000
    row = summary.set_index(["dataset", "measure"])
    # d_mle per-seed means are 10, 11, 12 for photos: mean 11, t-interval over 3 seeds.
    assert row.loc[("photos", "d_mle"), "mean"] == pytest.approx(11.0)
    low, high = stats.t.interval(0.95, 2, loc=11.0, scale=stats.sem([10.0, 11.0, 12.0]))
    assert row.loc[("photos", "d_mle"), ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    assert row.loc[("scans", "d_twonn"), "mean"] == pytest.approx(6.0)
    # The split with infinite K_F is left out: scans seed 2 keeps only its N=200 row.
    assert row.loc[("scans", "k_f"), "mean"] == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    assert row.loc[("scans", "k_f"), "n_seeds"] == 3
    assert row.loc[("scans", "d_mle"), "mean"] == pytest.approx(np.mean([4.0, 5.0, 6.5]))


def test_merge_records_is_tidy_and_sorted(tmp_path):
    paths = []
    for i, (dataset, n, seed) in enumerate([("b", 20, 1), ("a", 40, 0), ("a", 20, 1), ("a", 20, 0)]):
        record = {column: 0 for column in PROPERTY_COLUMNS} | {"dataset": dataset, "n_train": n, "seed": seed}
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(record))
    table = merge_records(paths, PROPERTY_COLUMNS)
    assert list(table.columns) == PROPERTY_COLUMNS
    assert list(zip(table["dataset"], table["n_train"], table["seed"])) == [
        ("a", 20, 0), ("a", 20, 1), ("a", 40, 0), ("b", 20, 1)
    ]
    write_csv(table, tmp_path / "t.csv")
    assert pd.read_csv(tmp_path / "t.csv").shape == (4, len(PROPERTY_COLUMNS))
    paths[0].write_text(json.dumps({"dataset": "c"}))
    with pytest.raises(ValueError, match="records lack columns"):
        merge_records(paths, PROPERTY_COLUMNS)
