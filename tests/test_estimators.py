"""Intrinsic dimension and label sharpness against ground truth and brute force."""

import tracemalloc

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from intrinsic.estimators import (
    FLOAT32_ERROR_RELATIVE,
    KNN_SLACK,
    balanced_sample,
    intrinsic_dimension,
    label_sharpness,
    mle_from_distances,
    mle_id,
    nearest_neighbors,
    pairwise_sq_distances,
    twonn_from_distances,
    twonn_id,
)


def embed(latent, ambient_dim, rng):
    """Isometric embedding of (n, d) points into R^ambient_dim by a random orthonormal map."""
    basis, _ = np.linalg.qr(rng.normal(size=(ambient_dim, latent.shape[1])))
    return (latent @ basis.T).astype(np.float32)


def sphere(n, d, rng):
    """Uniform points on the unit d-sphere S^d in R^(d+1): a manifold of dimension d, no boundary."""
    points = rng.normal(size=(n, d + 1))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


# Measured with n=2000 points in R^300, seeds 0 and 1 (MLE / TwoNN):
#   S^1: 0.99-1.00 / 0.95-0.98   S^2: 2.01-2.02 / 2.03-2.05   S^3: 2.97-3.00 / 3.03
#   S^5: 4.83-4.93 / 4.92-5.00   S^8: 7.39-7.43 / 7.58-7.76   S^12: 10.35-10.36 / 10.73-10.92
# Both estimators are biased low as d grows at fixed n (too few points per neighbourhood), a
# known property, so the tolerance is 10% up to d=5 and 12% at d=8.
@pytest.mark.parametrize(("d", "tolerance"), [(1, 0.10), (2, 0.10), (3, 0.10), (5, 0.10), (8, 0.12)])
def test_recovers_dimension_of_spheres(d, tolerance):
    rng = np.random.default_rng(0)
    X = embed(sphere(2000, d, rng), 300, rng)
    result = intrinsic_dimension(X, k=20)
    assert result["d_mle"] == pytest.approx(d, rel=tolerance)
    assert result["d_twonn"] == pytest.approx(d, rel=tolerance)


def test_recovers_dimension_of_a_nonlinear_manifold():
    """Swiss roll (d=2) curled in 3D, then embedded in 100 dimensions."""
    rng = np.random.default_rng(1)
    t = 1.5 * np.pi * (1 + 2 * rng.random(2000))
    height = 20 * rng.random(2000)
    roll = np.column_stack([t * np.cos(t), height, t * np.sin(t)])
    X = embed(roll, 100, rng)
    result = intrinsic_dimension(X)
    assert result["d_mle"] == pytest.approx(2, rel=0.1)
    assert result["d_twonn"] == pytest.approx(2, rel=0.1)


def test_higher_dimension_is_underestimated_but_ordered():
    rng = np.random.default_rng(2)
    estimates = [mle_id(embed(sphere(1500, d, rng), 200, rng)) for d in (4, 8, 16)]
    assert estimates[0] < estimates[1] < estimates[2] < 16


def test_matches_scikit_dimension_formulas():
    skdim = pytest.importorskip("skdim")
    rng = np.random.default_rng(3)
    X = embed(sphere(800, 4, rng), 50, rng).astype(np.float64)
    ours = intrinsic_dimension(X, k=20)
    theirs_mle = skdim.id.MLE().fit(X, n_neighbors=20, comb="mle").dimension_
    theirs_twonn = skdim.id.TwoNN(discard_fraction=0.1).fit(X).dimension_
    assert ours["d_mle"] == pytest.approx(theirs_mle, rel=1e-5)
    assert ours["d_twonn"] == pytest.approx(theirs_twonn, rel=1e-5)


def test_mle_formula_by_hand():
    # One point, k=3: distances 1, 2, 4 -> inverse estimate = (log 4 + log 2) / 2.
    distances = np.array([[1.0, 2.0, 4.0]])
    assert mle_from_distances(distances, k=3) == pytest.approx(2 / np.log(8))


def test_twonn_formula_by_hand():
    # Ratios mu = e, e^2, e^3, e^4; discarding half keeps x = log mu = [1, 2] with
    # y = -log(1 - F) = [log(4/3), log 2], and the slope through the origin is x.y / x.x.
    distances = np.array([[1.0, np.e], [1.0, np.e**2], [1.0, np.e**3], [1.0, np.e**4]])
    assert twonn_from_distances(distances, discard_fraction=0.5) == pytest.approx(
        (1 * np.log(4 / 3) + 2 * np.log(2)) / (1 + 4)
    )


def test_distances_are_exact_for_all_chunkings_and_layouts():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(60, 3, 16, 16), dtype=np.uint8)
    flat = images.reshape(60, -1).astype(np.float64) / 255
    reference = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    for chunk in (7, 100, 768, 10_000):
        assert np.allclose(pairwise_sq_distances(images, feature_chunk=chunk), reference, rtol=1e-6, atol=1e-9)
    assert np.allclose(pairwise_sq_distances(flat.astype(np.float32)), reference, rtol=1e-5, atol=1e-6)
    assert np.allclose(pairwise_sq_distances(torch.from_numpy(images)), reference, rtol=1e-6, atol=1e-9)


def test_near_duplicates_keep_their_precision():
    """Two far-apart clusters of nearly identical points: centring cannot remove the large norms,
    so float32 |a|^2 + |b|^2 - 2ab alone would cancel catastrophically within a cluster."""
    rng = np.random.default_rng(5)
    base = 100 * rng.random(5000)
    offsets = 1e-2 * rng.random((4, 5000))
    X = np.concatenate([base + offsets, -base + offsets]).astype(np.float32)
    wide = X.astype(np.float64)
    exact = ((wide[:, None] - wide[None]) ** 2).sum(-1)
    computed = pairwise_sq_distances(X)
    assert np.allclose(computed, exact, rtol=1e-6, atol=0)
    within = np.ix_(range(4), range(4))  # squared distances ~0.08 against norms ~1.7e7
    assert np.allclose(computed[within], exact[within], rtol=1e-12, atol=0)


def test_inputs_are_left_untouched():
    rng = np.random.default_rng(10)
    for X in (rng.random((30, 50)).astype(np.float32), torch.rand(30, 50)):
        before = np.asarray(X).copy()
        intrinsic_dimension(X, k=5)
        label_sharpness(X, np.repeat([0, 1], 15), m=30)
        assert np.array_equal(np.asarray(X), before)


def test_duplicates_are_counted_once():
    rng = np.random.default_rng(6)
    X = embed(sphere(1000, 3, rng), 40, rng)
    with_copies = np.concatenate([X, X[:100], X[:10]])
    clean = intrinsic_dimension(X)
    dup = intrinsic_dimension(with_copies)
    assert dup["n_duplicates"] == 110
    assert dup["d_mle"] == pytest.approx(clean["d_mle"], rel=1e-6)
    assert dup["d_twonn"] == pytest.approx(clean["d_twonn"], rel=1e-6)


def test_image_shapes_and_uint8_scale_agree():
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(100, 3, 8, 8), dtype=np.uint8)
    as_float = images.reshape(100, -1).astype(np.float32) / 255
    a, b = intrinsic_dimension(images, k=10), intrinsic_dimension(as_float, k=10)
    assert a["d_mle"] == pytest.approx(b["d_mle"], rel=1e-5)
    assert twonn_id(images) == pytest.approx(b["d_twonn"], rel=1e-5)


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="more than k=20 distinct points"):
        intrinsic_dimension(np.random.default_rng(0).random((15, 4)))


def brute_force_sharpness(X, y):
    X = X.reshape(len(X), -1).astype(np.float64)
    best = 0.0
    for j in range(len(X)):
        for k in range(len(X)):
            if y[j] != y[k]:
                best = max(best, abs(y[j] - y[k]) / np.linalg.norm(X[j] - X[k]))
    return best


def test_label_sharpness_equals_brute_force():
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, size=(80, 1, 6, 6), dtype=np.uint8)
    y = np.repeat([0, 1], 40)
    # m >= n: every sample is used, so the brute force over all pairs is the reference.
    assert label_sharpness(images, y, m=80, seed=0)["k_f"] == pytest.approx(
        brute_force_sharpness(images.astype(np.float64) / 255, y), rel=1e-9
    )
    X = rng.random((50, 20))
    y_real = rng.random(50)  # graded labels: |y_j - y_k| varies by pair
    assert label_sharpness(X, y_real, m=50, seed=0)["k_f"] == pytest.approx(
        brute_force_sharpness(X, y_real), rel=1e-9)


def test_label_sharpness_uses_the_balanced_sample():
    rng = np.random.default_rng(9)
    X = rng.random((300, 10))
    y = np.repeat([0, 1], [200, 100])
    index = balanced_sample(y, m=120, seed=3)
    assert np.bincount(y[index]).tolist() == [60, 60]
    result = label_sharpness(X, y, m=120, seed=3)
    assert result["k_f"] == pytest.approx(brute_force_sharpness(X[index], y[index]))
    assert result["kf_samples"] == 120 and result["kf_zero_distance_pairs"] == 0
    assert np.array_equal(index, balanced_sample(y, m=120, seed=3))


def test_label_sharpness_of_a_known_margin():
    """Two classes on a line separated by a gap g: K_F = 1/g exactly."""
    left = np.linspace(0, 1, 50)
    right = np.linspace(1.25, 3, 50)
    X = np.concatenate([left, right])[:, None]
    y = np.repeat([0, 1], 50)
    assert label_sharpness(X, y, m=100)["k_f"] == pytest.approx(1 / 0.25)


def test_identical_images_with_different_labels_are_left_out_and_counted():
    """Zero-distance pairs with different labels never give inf: they are excluded (as in the
    authors' code) and counted; the maximum is over the remaining pairs."""
    X = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    y = np.array([0, 1, 1, 0, 1])
    result = label_sharpness(X, y, m=10)
    # Pairs (0, 1) and (3, 4) are identical with different labels; the sample drops the
    # rarer class's extra point, so count on the sample itself.
    index = balanced_sample(y, 10, 0)
    Xs, ys = X[index], y[index]
    zero = sum(1 for j in range(len(Xs)) for k in range(j + 1, len(Xs))
               if ys[j] != ys[k] and np.array_equal(Xs[j], Xs[k]))
    assert zero >= 1 and result["kf_zero_distance_pairs"] == zero
    expected = max(1 / np.linalg.norm(Xs[j] - Xs[k]) for j in range(len(Xs)) for k in range(len(Xs))
                   if ys[j] != ys[k] and not np.array_equal(Xs[j], Xs[k]))
    assert np.isfinite(result["k_f"]) and result["k_f"] == pytest.approx(expected)
    # uint8 images: the same through the exact float64 recomputation.
    distinct = np.repeat(np.arange(0, 150, 10, dtype=np.uint8), 4).reshape(15, 1, 2, 2)
    images = np.concatenate([distinct[:10], distinct[:5], distinct[10:]])  # 5 copies, other label
    labels = np.repeat([0, 1], 10)
    record = label_sharpness(images, labels, m=50, seed=1)  # all 20 are sampled
    assert record["kf_zero_distance_pairs"] == 5 and np.isfinite(record["k_f"])


def test_only_identical_pairs_give_nan_not_inf():
    X = np.array([[0.0, 1.0], [0.0, 1.0]])
    result = label_sharpness(X, np.array([0, 1]), m=2)
    assert np.isnan(result["k_f"]) and result["kf_zero_distance_pairs"] == 1


def test_label_sharpness_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        label_sharpness(np.zeros((4, 2)), np.zeros(4))


# Four points on a line, x = 0, 1, 3, 7, k = 3 (every point's 3 neighbours are the others):
#   x=0: T = 1, 3, 7 -> log(7/1) + log(7/3) = log(49/3)
#   x=1: T = 1, 2, 6 -> log(6/1) + log(6/2) = log(18)
#   x=3: T = 2, 3, 4 -> log(4/2) + log(4/3) = log(8/3)
#   x=7: T = 4, 6, 7 -> log(7/4) + log(7/6) = log(49/24)
# Sum over points: log(49/3 * 18 * 8/3 * 49/24) = log(4802/3).
# "k-1" (the papers' printed formula): d = [sum / (n (k-1))]^-1 = 4 * 2 / log(4802/3) = 1.0843
# "k-2" (Pope et al.'s code):          d = [sum / (n (k-2))]^-1 = 4 * 1 / log(4802/3) = 0.5421
LINE_POINTS = np.array([[0.0], [1.0], [3.0], [7.0]])
LINE_SUM_OF_LOGS = np.log(4802 / 3)


@pytest.mark.parametrize(("denominator", "expected"), [("k-1", 8 / LINE_SUM_OF_LOGS), ("k-2", 4 / LINE_SUM_OF_LOGS)])
def test_mle_denominator_conventions_by_hand(denominator, expected):
    distances = np.array([[1.0, 3.0, 7.0], [1.0, 2.0, 6.0], [2.0, 3.0, 4.0], [4.0, 6.0, 7.0]])
    assert mle_from_distances(distances, k=3, denominator=denominator) == pytest.approx(expected, rel=1e-12)
    # The same through the distance computation, from the points themselves.
    assert mle_id(LINE_POINTS, k=3, denominator=denominator) == pytest.approx(expected, rel=1e-6)
    ours = intrinsic_dimension(LINE_POINTS, k=3, mle_denominator=denominator)
    assert ours["d_mle"] == pytest.approx(expected, rel=1e-6)


def test_mle_default_is_the_printed_k_minus_1_formula_and_k_minus_2_scales_it():
    rng = np.random.default_rng(4)
    distances = np.sort(rng.random((50, 20)) + 0.01, axis=1)
    assert mle_from_distances(distances, k=20) == mle_from_distances(distances, k=20, denominator="k-1")
    ratio = mle_from_distances(distances, k=20, denominator="k-2") / mle_from_distances(distances, k=20)
    assert ratio == pytest.approx(18 / 19, rel=1e-12)


def test_mle_denominator_is_validated():
    distances = np.array([[1.0, 2.0, 4.0]])
    with pytest.raises(ValueError, match="denominator must be one of"):
        mle_from_distances(distances, k=3, denominator="k")
    with pytest.raises(ValueError, match="needs k >= 3"):
        mle_from_distances(distances, k=2, denominator="k-2")


# ------------------------------------------------------------------ nearest_neighbors (by row blocks)
def dense_knn_reference(X, k):
    """Ground truth without the kernel: all pairwise distances in float64 by direct differences,
    the first of every group of identical points kept, np.sort of each kept row."""
    flat = X.reshape(len(X), -1).astype(np.float64) / (255 if X.dtype == np.uint8 else 1)
    sq = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    keep = ~np.triu(sq == 0, k=1).any(axis=0)
    reduced = sq[np.ix_(keep, keep)]
    np.fill_diagonal(reduced, np.inf)
    return np.sqrt(np.sort(reduced, axis=1)[:, :k]), int((~keep).sum())


def with_copies(X, rng):
    """X plus 6 exact copies and near-duplicates: 2 points moved by 1e-6 of their scale and one
    uint8 pixel changed by 1 (or a float changed in its last bits)."""
    near = X[10:13].copy()
    if X.dtype == np.uint8:
        near.reshape(3, -1)[:, 0] ^= 1
    else:
        near += (1e-6 * np.abs(X).max() * rng.standard_normal(near.shape)).astype(X.dtype)
        near[2] = np.nextafter(X[12], np.float32(np.inf))
    return np.concatenate([X[:4], X, X[:2], near])


def knn_cases():
    rng = np.random.default_rng(11)
    points = with_copies(rng.random((150, 24), dtype=np.float32), rng)
    images = with_copies(rng.integers(0, 256, size=(150, 3, 4, 4), dtype=np.uint8), rng)
    return {"float32": points, "uint8": images}


@pytest.mark.parametrize("case", ["float32", "uint8"])
def test_nearest_neighbors_equal_a_dense_float64_computation(case):
    """Every blocking (one block, 64, 7 and 1 rows; 7 does not divide n = 159) and both data
    layouts (a centred float32 copy, or 5-column chunks converted per row block) against ground
    truth. Tolerances are float32 rounding only: products of centred data err by about
    eps32 sqrt(features) (|a|^2 + |b|^2) ~ 4e-7 (|a|^2 + |b|^2); the squared neighbour distances
    here are either >= 0.17 (|a|^2 + |b|^2) or below 1e-3 of it and recomputed exactly, so they
    are good to ~2.5e-6 and distances to ~1.3e-6 (rtol 2e-6); the estimates average many."""
    X = knn_cases()[case]
    k = 10
    reference, n_duplicates = dense_knn_reference(X, k)
    expected_mle, expected_twonn = mle_from_distances(reference, k), twonn_from_distances(reference)
    for options in ({}, {"row_block": 64}, {"row_block": 7}, {"row_block": 1},
                    {"row_block": 7, "float32_budget": 0, "feature_chunk": 5}):
        neighbors = nearest_neighbors(X, k, **options)
        assert neighbors.n_points == len(X) and neighbors.n_duplicates == n_duplicates == 6
        np.testing.assert_allclose(neighbors.distances, reference, rtol=2e-6, atol=0)
        assert mle_from_distances(neighbors.distances, k) == pytest.approx(expected_mle, rel=1e-6)
        assert twonn_from_distances(neighbors.distances) == pytest.approx(expected_twonn, rel=1e-6)
    # The near-duplicates' own distances come from the exact float64 recomputation.
    first = reference[:, 0] < 0.01 * np.median(reference[:, 0])
    assert first.sum() >= 4
    np.testing.assert_allclose(neighbors.distances[first, 0], reference[first, 0], rtol=1e-12)
    result = intrinsic_dimension(X, k=k, row_block=7)
    assert result == {"d_mle": pytest.approx(expected_mle, rel=1e-6),
                      "d_twonn": pytest.approx(expected_twonn, rel=1e-6),
                      "n_points": len(X), "n_duplicates": 6}


class LargestTensor(TorchFunctionMode):
    """Records the largest number of elements of any tensor a torch function or method returns
    (torch.empty, mm, topk, views, ...)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_nearest_neighbors_never_allocate_an_n_by_n_array():
    """n = 400 points of 8 features, row blocks of 50: every torch result is at most one
    (50, n) block, and numpy's peak (tracemalloc) stays far below one n x n float64 array
    (1.3 MB). The dense pairwise_sq_distances, as a control, fails both checks."""
    X = np.random.default_rng(12).random((400, 8), dtype=np.float32)
    n, k, row_block = len(X), 3, 50

    def sizes(compute):
        with LargestTensor() as largest:
            compute()
        tracemalloc.start()
        try:
            compute()
            numpy_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return largest.numel, numpy_peak

    largest, numpy_peak = sizes(lambda: nearest_neighbors(X, k, row_block=row_block))
    assert largest <= row_block * n and numpy_peak < n * n * 8 / 4
    largest, numpy_peak = sizes(lambda: pairwise_sq_distances(X))
    assert largest >= n * n and numpy_peak >= n * n * 8


def test_rows_with_many_duplicates_are_recomputed_in_full():
    """30 copies of one point among 100 points, k = 5: each copy has 5 + 1 + KNN_SLACK = 14
    candidates, all of them copies, so neither which copy comes first nor the neighbours of the
    one kept can be read from them; those rows (and points whose candidates are mostly copies)
    are recomputed over all points, and the result is still the ground truth."""
    rng = np.random.default_rng(13)
    X = rng.random((100, 6), dtype=np.float32)
    copies = rng.choice(100, 30, replace=False)
    X[copies] = X[copies[0]]
    k = 5
    assert 30 > k + 1 + KNN_SLACK
    reference, n_duplicates = dense_knn_reference(X, k)
    for options in ({}, {"row_block": 9}, {"row_block": 9, "float32_budget": 0, "feature_chunk": 4}):
        neighbors = nearest_neighbors(X, k, **options)
        assert neighbors.n_duplicates == n_duplicates == 29
        assert neighbors.n_recomputed >= 1
        np.testing.assert_allclose(neighbors.distances, reference, rtol=2e-6, atol=0)


def test_candidates_too_close_to_order_in_float32_are_recomputed():
    """20 near-duplicates of a point of norm ~3e4, 1e-3 apart: float32 |a|^2 + |b|^2 - 2ab cannot
    order them (errors ~1e-3 |a|^2 >> their squared distances), so the 12 candidates topk keeps
    are an arbitrary subset; the k-th is not safely below the first left out, and the row is
    recomputed. The distances are the exact float64 ones."""
    rng = np.random.default_rng(14)
    base = 1e3 * rng.random(1000)
    cluster = base + 1e-3 * rng.random((20, 1000))
    X = np.concatenate([cluster, -cluster, rng.random((10, 1000))]).astype(np.float32)
    k = 3
    reference, _ = dense_knn_reference(X, k)
    neighbors = nearest_neighbors(X, k)
    assert neighbors.n_recomputed >= 20
    np.testing.assert_allclose(neighbors.distances[:40], reference[:40], rtol=1e-12)
    np.testing.assert_allclose(neighbors.distances, reference, rtol=2e-6)


def test_nearest_neighbors_need_more_than_k_distinct_points():
    X = np.repeat(np.random.default_rng(15).random((5, 3)), 8, axis=0)  # 40 points, 5 distinct
    with pytest.raises(ValueError, match=r"more than k=5 distinct points, got 5 \(of 40\)"):
        nearest_neighbors(X, 5)
    with pytest.raises(ValueError, match="more than k=20 distinct points"):
        intrinsic_dimension(X, row_block=3)
    assert nearest_neighbors(X, 4).distances.shape == (5, 4)


def test_nearest_neighbors_on_the_accelerator_when_there_is_one():
    """device="cuda" where available, else the same call with device="cpu": the products run
    there in float32 with TF32 off (the caller's setting is restored) and agree with the CPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    X = knn_cases()["uint8"]
    reference, _ = dense_knn_reference(X, 10)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        for data in (X, torch.from_numpy(X).to(device)):
            neighbors = nearest_neighbors(data, 10, row_block=7, device=device)
            np.testing.assert_allclose(neighbors.distances, reference, rtol=2e-6, atol=0)
            assert neighbors.n_duplicates == 6
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def test_float32_error_bound_holds_with_a_wide_margin():
    """FLOAT32_ERROR_RELATIVE decides when candidates are trusted: the float32 distances of
    150528-feature uint8 images (the workflow's 224 x 224 x 3) stay far inside it."""
    rng = np.random.default_rng(16)
    X = rng.integers(0, 256, size=(16, 3 * 224 * 224), dtype=np.uint8)
    X[1::2] = np.clip(X[::2].astype(int) + rng.integers(-40, 41, size=X[::2].shape), 0, 255)  # closer pairs
    centred = X.astype(np.float64) / 255
    centred -= centred.mean(0)
    gram = centred @ centred.T  # float64: cancellation ~1e-16 of the norms
    norms = np.diag(gram)
    exact = norms[:, None] + norms[None, :] - 2 * gram
    computed = pairwise_sq_distances(X)
    # Most pairs are not refined (their squared distance exceeds 1e-3 of the norms), so this
    # measures the float32 products.
    error = np.abs(computed - exact) / (norms[:, None] + norms[None, :])
    assert error.max() < FLOAT32_ERROR_RELATIVE / 10
