"""Class-balanced train/test splits that are disjoint by group, nested in N, and seeded.

For one (dataset, seed):
  1. the seed picks the class pair (multi-class sources: entry seed mod C of a fixed order of
     the C candidate pairs, so seeds draw distinct pairs while enough exist) and a random
     order of the groups;
  2. groups are moved, in that order, into the test pool while some class of the pair still
     lacks test images; the test set is n_test/2 random images per class from that pool;
  3. the remaining groups form the training pool, shuffled once per class; the training set of
     size N is the first N/2 images of each class.
Steps 1-2 never look at N, so the test set is the same for every N, and step 3 takes prefixes of
one fixed order, so training sets are nested: train(N1) is a subset of train(N2) for N1 < N2.

A split file records the ``sha256`` of the cache it indexes; ``load_split`` checks it, the
indices and the labels against the cache, so a split is never applied to another build of its
dataset, and a damaged split file is an error naming it.
"""

from __future__ import annotations

import itertools
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from .cache import DatasetCache, DatasetError
from .io import atomic_write, rebuild_hint


@dataclass
class Split:
    """Indices into the dataset cache; labels are binary (0 = classes[0], 1 = classes[1])."""

    train_idx: np.ndarray
    train_y: np.ndarray
    test_idx: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, str]
    class_ids: tuple[int, int]
    cache_sha256: str = ""  # meta["sha256"] of the cache the indices point into

    def save(self, path) -> None:
        # np.savez writes a zip archive, whose per-member CRC-32 np.load checks on reading.
        with atomic_write(path) as handle:
            np.savez(
                handle,
                train_idx=self.train_idx,
                train_y=self.train_y,
                test_idx=self.test_idx,
                test_y=self.test_y,
                classes=np.array(self.classes),
                class_ids=np.array(self.class_ids),
                cache_sha256=np.array(self.cache_sha256),
            )

    @classmethod
    def load(cls, path) -> "Split":
        """Read a split file; a damaged or incomplete one is a DatasetError naming it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    train_idx=data["train_idx"],
                    train_y=data["train_y"],
                    test_idx=data["test_idx"],
                    test_y=data["test_y"],
                    classes=tuple(str(c) for c in data["classes"]),
                    class_ids=tuple(int(c) for c in data["class_ids"]),
                    cache_sha256=str(data["cache_sha256"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise DatasetError(f"split {path}: cannot read it ({type(error).__name__}: {error}); "
                               f"{rebuild_hint(path)}") from None

    def check(self, cache: DatasetCache, path) -> None:
        """The split indexes this build of ``cache``: same checksum, indices in range, each
        index's cache label the class its binary label names."""
        if self.cache_sha256 != cache.meta["sha256"]:
            raise DatasetError(f"split {path} was made from another build of cache {cache.folder} (cache "
                               f"checksum {self.cache_sha256[:12] or '<none>'}, now {cache.meta['sha256'][:12]}); "
                               f"{rebuild_hint(path)}")
        for part in ("train", "test"):
            index, binary = getattr(self, f"{part}_idx"), getattr(self, f"{part}_y")
            if len(index) != len(binary) or (len(index) and (index.min() < 0 or index.max() >= len(cache.labels))):
                raise DatasetError(f"split {path}: {part} indices do not fit cache {cache.folder}; "
                                   f"{rebuild_hint(path)}")
            if not np.isin(binary, (0, 1)).all() or \
                    (cache.labels[index] != np.asarray(self.class_ids)[binary]).any():
                raise DatasetError(f"split {path}: {part} labels disagree with cache {cache.folder}; "
                                   f"{rebuild_hint(path)}")


def load_split(path, cache: DatasetCache) -> Split:
    """``Split.load(path)`` checked against the cache it indexes (``Split.check``)."""
    split = Split.load(path)
    split.check(cache, path)
    return split


def _rng(dataset: str, seed: int) -> np.random.Generator:
    # Mixing in the dataset name keeps datasets' splits independent for the same seed;
    # crc32 (unlike hash()) is stable across processes.
    return np.random.default_rng([seed, zlib.crc32(dataset.encode())])


def class_pair_order(dataset: str, classes: list[str], labels: np.ndarray,
                     pairs: list[list[str]] | None = None) -> list[tuple[int, int]]:
    """Every candidate class pair of the dataset, in one fixed order drawn for the dataset.

    Candidates: the only pair of a binary source, the given class-name ``pairs``, or else every
    pair of the classes present. Seed s takes entry s mod len(order) (``choose_class_pair``), so
    seeds 0..len-1 get distinct pairs, and the first P entries are the P distinct pairings whose
    label sharpness Fig. 1 averages. The order depends only on the dataset and its class list:
    it is drawn over every pair of ``classes`` and the pairs with a class without images are then
    left out, so a cache that holds only the classes of the first P pairs (``read_classes:
    drawn_pairs``, ImageNet) has the same first P pairs as the whole source.
    """
    if len(classes) < 2:
        raise DatasetError(f"dataset {dataset!r} has {len(classes)} class(es); a split needs 2")
    if pairs:
        malformed = [pair for pair in pairs if len(pair) != 2 or len(set(pair)) != 2]
        if malformed:
            raise DatasetError(f"dataset {dataset!r}: each class pair must name two different classes; got {malformed}")
        unknown = sorted({name for pair in pairs for name in pair} - set(classes))
        if unknown:
            raise DatasetError(f"dataset {dataset!r}: class pairs name unknown classes {unknown}; "
                               f"classes are {classes}")
        candidates = sorted({tuple(sorted(classes.index(name) for name in pair)) for pair in pairs})
    else:
        candidates = list(itertools.combinations(range(len(classes)), 2))
    present = set(np.unique(labels).tolist())
    if len(candidates) > 1:
        # A separate stream from the splits' own, so the pair does not shift the sample order.
        order = np.random.default_rng([zlib.crc32(dataset.encode()), 1]).permutation(len(candidates))
        candidates = [candidates[int(i)] for i in order]
    candidates = [pair for pair in candidates if pair[0] in present and pair[1] in present]
    if not candidates:
        raise DatasetError(f"dataset {dataset!r}: no class pair with images in both classes")
    return candidates


def choose_class_pair(dataset: str, classes: list[str], labels: np.ndarray, seed: int,
                      pairs: list[list[str]] | None = None) -> tuple[int, int]:
    """The class pair of this seed: entry seed mod C of ``class_pair_order`` (C candidates), so
    seeds draw distinct pairs while enough exist."""
    order = class_pair_order(dataset, classes, labels, pairs)
    return order[seed % len(order)]


def make_split(
    dataset: str,
    labels: np.ndarray,
    groups: np.ndarray,
    classes: list[str],
    n_train: int,
    n_test: int,
    seed: int,
    pairs: list[list[str]] | None = None,
    cache_sha256: str = "",
) -> Split:
    """Class-balanced, group-disjoint split; see the module docstring for the guarantees.
    ``cache_sha256``: the checksum of the cache ``labels`` and ``groups`` come from."""
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    for name, size in (("n_train", n_train), ("n_test", n_test)):
        if size < 2 or size % 2:
            raise DatasetError(f"dataset {dataset!r}: {name}={size} must be even and >= 2 (half per class)")
    pair = choose_class_pair(dataset, classes, labels, seed, pairs)
    rng = _rng(dataset, seed)

    in_pair = np.flatnonzero(np.isin(labels, pair))
    group_names, group_of = np.unique(groups[in_pair], return_inverse=True)
    order = rng.permutation(len(group_names))

    # Per-group counts of each class of the pair, to fill the test pool group by group.
    counts = np.zeros((len(group_names), 2), dtype=np.int64)
    np.add.at(counts, (group_of, (labels[in_pair] == pair[1]).astype(int)), 1)
    need = np.array([n_test // 2, n_test // 2])
    test_groups = np.zeros(len(group_names), dtype=bool)
    for g in order:
        if not (need > 0).any():
            break
        if (counts[g][need > 0] > 0).any():
            test_groups[g] = True
            need -= counts[g]
    if (need > 0).any():
        short = int(np.argmax(need > 0))
        have = int(counts[:, short].sum())
        raise DatasetError(
            f"dataset {dataset!r}: class {classes[pair[short]]!r} has {have} images; the test set "
            f"needs {n_test // 2} of them (and the training set {n_train // 2} more from other groups)"
        )

    test_idx, test_y, train_idx, train_y = [], [], [], []
    for binary, cls in enumerate(pair):
        members = in_pair[labels[in_pair] == cls]
        member_groups = group_of[np.searchsorted(in_pair, members)]
        in_test = test_groups[member_groups]
        chosen_test = rng.choice(members[in_test], n_test // 2, replace=False)
        train_order = rng.permutation(members[~in_test])
        if len(train_order) < n_train // 2:
            raise DatasetError(
                f"dataset {dataset!r}: class {classes[cls]!r} has {len(members)} images, "
                f"{int(in_test.sum())} of them in test groups; the training set of N={n_train} needs "
                f"{n_train // 2} but only {len(train_order)} remain"
            )
        test_idx.append(np.sort(chosen_test))
        test_y.append(np.full(n_test // 2, binary))
        train_idx.append(np.sort(train_order[: n_train // 2]))
        train_y.append(np.full(n_train // 2, binary))

    return Split(
        train_idx=np.concatenate(train_idx),
        train_y=np.concatenate(train_y),
        test_idx=np.concatenate(test_idx),
        test_y=np.concatenate(test_y),
        classes=(classes[pair[0]], classes[pair[1]]),
        class_ids=(int(pair[0]), int(pair[1])),
        cache_sha256=cache_sha256,
    )


def check_distinct_training_images(cache: DatasetCache, split: Split, knn_k: int, where: str) -> int:
    """The number of distinct training images; fewer than ``knn_k`` + 1 is a DatasetError
    naming ``properties.knn_k`` (the MLE of d_data and d_repr needs k neighbours of each point
    among the distinct ones), raised before any model is trained on the split."""
    # Identical images share their CRC, so at least as many images as CRCs are distinct: only
    # when the CRCs alone do not show enough are the images compared byte for byte.
    distinct = len(np.unique(cache.row_crc32[split.train_idx]))
    if distinct <= knn_k:
        rows = cache.read_images(split.train_idx)
        distinct = len(np.unique(rows.reshape(len(rows), -1), axis=0))
    if distinct <= knn_k:
        raise DatasetError(f"{where}: the training set has {distinct} distinct images of {len(split.train_idx)}; "
                           f"d_data and d_repr need more than properties.knn_k = {knn_k} of them: lower "
                           "properties.knn_k or raise the smallest splits.n_train")
    return distinct
