"""Splits: balanced, disjoint, nested in N, fixed test set, group-disjoint, deterministic."""

import numpy as np
import pytest

from intrinsic.cache import DatasetError
from intrinsic.splits import Split, class_pair_order, make_split

SIZES = (20, 40, 60)


def make_labels(n_per_class=(80, 80, 80), group_size=1):
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    groups = np.array([f"patient{i // group_size}" for i in range(len(labels))])
    return labels, groups, [f"class{c}" for c in range(len(n_per_class))]


def splits_over_sizes(labels, groups, classes, seed, dataset="toy", n_test=30):
    return [make_split(dataset, labels, groups, classes, n, n_test, seed) for n in SIZES]


def test_balanced_and_disjoint():
    labels, groups, classes = make_labels()
    for split in splits_over_sizes(labels, groups, classes, seed=0):
        assert np.bincount(split.train_y).tolist() == [len(split.train_y) // 2] * 2
        assert np.bincount(split.test_y).tolist() == [15, 15]
        assert not set(split.train_idx) & set(split.test_idx)
        assert len(set(split.train_idx)) == len(split.train_idx)
        # binary labels agree with the source labels of the chosen pair
        assert np.array_equal(labels[split.train_idx], np.array(split.class_ids)[split.train_y])
        assert np.array_equal(labels[split.test_idx], np.array(split.class_ids)[split.test_y])


def test_nested_in_n_and_test_set_fixed():
    labels, groups, classes = make_labels(group_size=3)
    small, medium, large = splits_over_sizes(labels, groups, classes, seed=4)
    assert set(small.train_idx) < set(medium.train_idx) < set(large.train_idx)
    assert np.array_equal(small.test_idx, large.test_idx)
    assert small.classes == large.classes


def test_group_disjoint():
    labels, groups, classes = make_labels(group_size=7)  # patients with 7 images, mixed classes
    for seed in range(5):
        split = make_split("toy", labels, groups, classes, 60, 30, seed)
        assert not set(groups[split.train_idx]) & set(groups[split.test_idx])


def test_deterministic_and_seed_dependent():
    labels, groups, classes = make_labels()
    a = make_split("toy", labels, groups, classes, 40, 30, seed=1)
    b = make_split("toy", labels, groups, classes, 40, 30, seed=1)
    c = make_split("toy", labels, groups, classes, 40, 30, seed=2)
    assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.test_idx, b.test_idx)
    assert not (np.array_equal(a.train_idx, c.train_idx) and np.array_equal(a.test_idx, c.test_idx))


def test_each_seed_draws_its_own_class_pair():
    labels, groups, classes = make_labels(n_per_class=[60] * 10)
    pairs = [make_split("toy", labels, groups, classes, 20, 20, seed).classes for seed in range(50)]
    assert len(set(pairs[:45])) == 45  # 45 pairs of 10 classes: the first 45 seeds all differ
    assert pairs[45:] == pairs[:5]  # then the order repeats
    assert all(a < b for a, b in pairs)  # pair order is canonical: label 0 = first class name
    order = class_pair_order("toy", classes, labels)
    assert [tuple(classes[i] for i in pair) for pair in order] == pairs[:45]


def test_class_pairs_restrict_the_draw():
    labels, groups, classes = make_labels(n_per_class=[60] * 10)
    pairs = [["class3", "class8"], ["class1", "class2"]]
    drawn = [make_split("toy", labels, groups, classes, 20, 20, s, pairs=pairs).classes for s in range(10)]
    assert set(drawn[:2]) == {("class3", "class8"), ("class1", "class2")}  # distinct while they last
    assert set(drawn) == set(drawn[:2])
    with pytest.raises(DatasetError, match="unknown classes"):
        make_split("toy", labels, groups, classes, 20, 20, 0, pairs=[["class3", "nope"]])
    for bad in ([["class3", "class3"]], [["class1", "class2", "class3"]]):
        with pytest.raises(DatasetError, match="two different classes"):
            class_pair_order("toy", classes, labels, bad)
    # Only one class has images: no pair, a clear error (not a division by zero downstream).
    with pytest.raises(DatasetError, match="no class pair with images in both classes"):
        class_pair_order("toy", classes, np.zeros(10, int))


def test_too_few_images_names_dataset_class_and_counts():
    labels, groups, classes = make_labels(n_per_class=(80, 30))
    with pytest.raises(DatasetError, match=r"dataset 'toy': class 'class1' has 30 images.*needs 25 but only 15 remain"):
        make_split("toy", labels, groups, classes, 50, 30, seed=0)
    with pytest.raises(DatasetError, match=r"class 'class1' has 30 images; the test set needs 40"):
        make_split("toy", labels, groups, classes, 20, 80, seed=0)


def test_odd_sizes_and_single_class_are_rejected():
    labels, groups, classes = make_labels()
    with pytest.raises(DatasetError, match="n_train=21 must be even"):
        make_split("toy", labels, groups, classes, 21, 30, seed=0)
    with pytest.raises(DatasetError, match="1 class"):
        make_split("toy", np.zeros(10, int), groups[:10], ["only"], 4, 4, seed=0)


def test_save_load_round_trip(tmp_path):
    labels, groups, classes = make_labels()
    split = make_split("toy", labels, groups, classes, 40, 30, seed=0)
    split.save(tmp_path / "s.npz")
    loaded = Split.load(tmp_path / "s.npz")
    for field in ("train_idx", "train_y", "test_idx", "test_y"):
        assert np.array_equal(getattr(split, field), getattr(loaded, field))
    assert loaded.classes == split.classes and loaded.class_ids == split.class_ids
