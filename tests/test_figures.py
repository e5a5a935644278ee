"""Figure 1 and the tables, checked on a fixture with known numbers."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from intrinsic.figures import figure_dataset_properties, t_interval
from intrinsic.tables import SPLIT_PROPERTY_COLUMNS, merge_records, write_csv


def fixture_table():
    """Splits: d_mle of seed s at size N is base + s + (N - 150) / 100, so each seed's mean over N
    is base + s; one d_mle is infinite (left out)."""
    rows = []
    for dataset, domain, base in (("photos", "natural", 10.0), ("scans", "medical", 4.0),
                                  ("moles", "dermatology", 7.0)):
        for seed in range(3):
            for n_train in (100, 200):
                shift = (n_train - 150) / 100
                rows.append({
                    "dataset": dataset, "domain": domain, "n_train": n_train, "seed": seed,
                    "classes": "a vs b", "d_mle": base + seed + shift, "d_twonn": base + 2 * seed,
                    "d_true": np.nan,
                })
    table = pd.DataFrame(rows)
    table.loc[(table["dataset"] == "scans") & (table["seed"] == 2) & (table["n_train"] == 100), "d_mle"] = np.inf
    return table


def sharpness_table():
    """photos: three Fig. 1 pairings (K_F 0.01, 0.02, 0.06) and one more pairing that Fig. 1
    leaves out; scans and moles: binary, one pairing each."""
    rows = [
        ("photos", "natural", "cat vs dog", 0.01, True, 0),
        ("photos", "natural", "cat vs car", 0.02, True, 2),
        ("photos", "natural", "dog vs car", 0.06, True, 0),
        ("photos", "natural", "dog vs cow", 1.00, False, 5),
        ("scans", "medical", "benign vs malignant", 0.5, True, 0),
        ("moles", "dermatology", "nevus vs melanoma", 0.3, True, 1),
    ]
    table = pd.DataFrame(rows, columns=["dataset", "domain", "classes", "k_f_255", "fig1", "kf_zero_distance_pairs"])
    return table.assign(k_f=255 * table["k_f_255"], pair_index=range(len(table)), kf_samples=1000)


def test_t_interval_matches_scipy():
    values = [1.0, 2.0, 4.0]
    low, high = t_interval(values)
    expected = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert t_interval([3.0]) == (3.0, 3.0)


def test_figure_summary_has_the_known_means_and_intervals(tmp_path):
    summary = figure_dataset_properties(fixture_table(), sharpness_table(), tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").stat().st_size > 5_000
    row = summary.set_index(["dataset", "measure"])
    # d_mle per-seed means are 10, 11, 12 for photos: mean 11, t-interval over 3 seeds.
    assert row.loc[("photos", "d_mle"), "mean"] == pytest.approx(11.0)
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd(10, 11, 12) / sqrt(3)
    assert row.loc[("photos", "d_mle"), ["ci_low", "ci_high"]].tolist() == pytest.approx([11 - half, 11 + half])
    assert tuple(row.loc[("photos", "d_mle"), ["n", "over"]]) == (3, "seeds")
    assert row.loc[("scans", "d_twonn"), "mean"] == pytest.approx(6.0)
    # The infinite d_mle is left out: scans seed 2 keeps only its N = 200 row (6 + 0.5).
    assert row.loc[("scans", "d_mle"), "mean"] == pytest.approx(np.mean([4.0, 5.0, 6.5]))
    # K_F: mean over photos' three Fig. 1 pairings (0.01, 0.02, 0.06: mean 0.03, sd 0.0264575),
    # a t-interval over pairings; the fourth pairing is not one of Fig. 1's.
    kf = row.loc[("photos", "k_f_255")]
    half = 4.302652729911275 * np.sqrt(0.0007) / np.sqrt(3)
    assert (kf["mean"], kf["n"], kf["over"]) == (pytest.approx(0.03), 3, "class pairings")
    assert [kf["ci_low"], kf["ci_high"]] == pytest.approx([0.03 - half, 0.03 + half])
    assert kf["kf_zero_distance_pairs"] == 2  # the left-out pairing's 5 are not counted
    scans = row.loc[("scans", "k_f_255")]
    assert scans["mean"] == scans["ci_low"] == scans["ci_high"] == 0.5 and scans["n"] == 1  # binary: no interval
    assert row.loc[("moles", "k_f_255"), "domain"] == "dermatology"  # a free-text third domain
    assert pd.isna(row.loc[("photos", "d_mle"), "kf_zero_distance_pairs"])


def test_figure_reads_csv_round_trip_and_names_bad_columns(tmp_path):
    splits, sharpness = fixture_table(), sharpness_table()
    write_csv(sharpness, tmp_path / "s.csv")
    again = figure_dataset_properties(splits, pd.read_csv(tmp_path / "s.csv"), tmp_path / "f.png", tmp_path / "f.pdf")
    assert again.set_index(["dataset", "measure"]).loc[("photos", "k_f_255"), "n"] == 3
    png, pdf = tmp_path / "g.png", tmp_path / "g.pdf"
    with pytest.raises(ValueError, match="fig1"):
        figure_dataset_properties(splits, sharpness.drop(columns="fig1"), png, pdf)
    with pytest.raises(ValueError, match="fig1"):
        figure_dataset_properties(splits, sharpness.assign(fig1="maybe"), png, pdf)
    with pytest.raises(ValueError, match="d_twonn"):
        figure_dataset_properties(splits.drop(columns="d_twonn"), sharpness, png, pdf)
    with pytest.raises(ValueError, match="domain"):
        figure_dataset_properties(splits, sharpness.assign(domain="medical"), png, pdf)
    with pytest.raises(ValueError, match="several rows"):
        figure_dataset_properties(splits, pd.concat([sharpness, sharpness.iloc[:1]]), png, pdf)
    assert not png.exists()


def test_merge_records_is_tidy_and_sorted(tmp_path):
    paths = []
    for i, (dataset, n, seed) in enumerate([("b", 20, 1), ("a", 40, 0), ("a", 20, 1), ("a", 20, 0)]):
        record = {column: 0 for column in SPLIT_PROPERTY_COLUMNS} | {"dataset": dataset, "n_train": n, "seed": seed}
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(record))
    table = merge_records(paths, SPLIT_PROPERTY_COLUMNS)
    assert list(table.columns) == SPLIT_PROPERTY_COLUMNS
    assert list(zip(table["dataset"], table["n_train"], table["seed"])) == [
        ("a", 20, 0), ("a", 20, 1), ("a", 40, 0), ("b", 20, 1)
    ]
    write_csv(table, tmp_path / "t.csv")
    assert pd.read_csv(tmp_path / "t.csv").shape == (4, len(SPLIT_PROPERTY_COLUMNS))
    paths[0].write_text(json.dumps({"dataset": "c"}))
    with pytest.raises(ValueError, match="records lack columns"):
        merge_records(paths, SPLIT_PROPERTY_COLUMNS)
