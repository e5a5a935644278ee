"""Intrinsic dimension (MLE, TwoNN) and label sharpness K_F from exact pairwise distances.

All estimators share one distance computation: the Gram matrix of the centred data, accumulated
over feature chunks with float32 matrix products (torch) into float64. Chunking keeps memory at
one (n, chunk) block beyond the data itself, which may stay uint8 (e.g. a memory-mapped cache).
Centring removes most of the cancellation in |a|^2 + |b|^2 - 2 a.b; pairs that are still close
relative to their norms (near-duplicates, where float32 cancellation could matter) are recomputed
exactly in float64.

Written here rather than taken from scikit-dimension because that package recomputes neighbours
per estimator with scikit-learn on float64 copies of the data (slower and 2x the memory at
224x224x3); tests check that the formulas agree with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Pairs with squared distance below this fraction of |a|^2 + |b|^2 (centred) get an exact
# float64 recomputation: float32 Gram entries carry a relative error of roughly
# eps32 * sqrt(chunk) ~ 5e-6 of |a||b|, so beyond this ratio distances are good to ~1e-3.
REFINE_RELATIVE = 1e-3
DEFAULT_FEATURE_CHUNK = 8192


def _flatten(X) -> tuple[np.ndarray | torch.Tensor, float]:
    """(n, ...) array -> (n, features) view and the factor that maps its values onto [0, 1]."""
    if isinstance(X, torch.Tensor):
        X = X.detach()
        flat = X.reshape(len(X), -1)
        scale = 1 / 255 if X.dtype == torch.uint8 else 1.0
    else:
        X = np.asarray(X)
        flat = X.reshape(len(X), -1)
        scale = 1 / 255 if X.dtype == np.uint8 else 1.0
    if flat.ndim != 2 or flat.shape[0] < 1 or flat.shape[1] < 1:
        raise ValueError(f"expected data of shape (n, features) or (n, C, H, W), got {tuple(X.shape)}")
    return flat, scale


def _feature_blocks(flat, feature_chunk: int, device):
    """Yield (start, stop, block): raw values of columns start:stop as float32 on ``device``.

    One buffer serves every block. Blocks of ~57 MB are beyond glibc's reuse threshold, so a
    fresh allocation per block would cost a page fault per 4 KiB (measured: +40% run time).
    The block is overwritten on the next iteration; callers may modify it in place.
    """
    n, n_features = flat.shape
    width = min(feature_chunk, n_features)
    buffer = torch.empty((n, width), dtype=torch.float32, device=device)
    for start in range(0, n_features, width):
        stop = min(start + width, n_features)
        block = buffer[:, : stop - start]
        part = flat[:, start:stop]
        # copy_ converts uint8 to float32 in place, with no temporary.
        block.copy_(part if isinstance(part, torch.Tensor) else torch.from_numpy(np.asarray(part)))
        yield start, stop, block


def _exact_sq_distances(flat, scale: float, rows: np.ndarray, cols: np.ndarray, batch: int = 256) -> np.ndarray:
    """Squared distances of the pairs (rows[i], cols[i]) in float64, by direct differences."""
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), batch):
        r, c = rows[start : start + batch], cols[start : start + batch]
        a = np.asarray(flat[r], dtype=np.float64)
        b = np.asarray(flat[c], dtype=np.float64)
        out[start : start + batch] = np.einsum("ij,ij->i", a - b, a - b) * scale**2
    return out


def pairwise_sq_distances(X, feature_chunk: int = DEFAULT_FEATURE_CHUNK, device=None) -> np.ndarray:
    """Exact squared Euclidean distances between all rows of X, as an (n, n) float64 array.

    X: (n, features) or (n, C, H, W); uint8 data is read as value / 255 (the [0, 1] scale).
    X is never copied whole: memory beyond it is one float32 (n, feature_chunk) block and a
    few (n, n) matrices.
    """
    flat, scale = _flatten(X)
    n, n_features = flat.shape
    device = torch.device(device or "cpu")
    # Centring is exact whatever the centre, so a float32 column mean is precise enough.
    mean = torch.empty(n_features, dtype=torch.float32, device=device)
    for start, stop, block in _feature_blocks(flat, feature_chunk, device):
        torch.mean(block, dim=0, out=mean[start:stop])
    gram = torch.zeros((n, n), dtype=torch.float64, device=device)
    product = torch.empty((n, n), dtype=torch.float32, device=device)
    for start, stop, block in _feature_blocks(flat, feature_chunk, device):
        block.sub_(mean[start:stop])
        torch.mm(block, block.T, out=product)
        gram += product  # float64 accumulation across blocks
    if scale != 1.0:
        gram *= scale**2
    sq_norms = torch.diagonal(gram).clone()
    dist = (sq_norms[:, None] + sq_norms[None, :] - 2 * gram).clamp_(min=0).cpu().numpy()
    np.fill_diagonal(dist, 0.0)

    norms = sq_norms.cpu().numpy()
    close = dist <= REFINE_RELATIVE * (norms[:, None] + norms[None, :])
    rows, cols = np.nonzero(np.triu(close, k=1))
    if len(rows):
        exact = _exact_sq_distances(flat, scale, rows, cols)
        dist[rows, cols] = exact
        dist[cols, rows] = exact
    return dist


@dataclass
class NeighborDistances:
    """Sorted distances to the k nearest distinct neighbours of each distinct point."""

    distances: np.ndarray  # (n_distinct, k), ascending, all > 0
    n_points: int
    n_duplicates: int  # points dropped because an identical point was kept


def distinct_points(sq_dist: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the first of every group of identical points (zero distance)."""
    n = len(sq_dist)
    zero = np.triu(sq_dist == 0, k=1)
    keep = np.ones(n, dtype=bool)
    keep[np.nonzero(zero)[1]] = False  # j duplicates an earlier i
    return keep


def neighbors_from_sq_distances(sq_dist: np.ndarray, k: int) -> NeighborDistances:
    """k-nearest-neighbour distances from a full squared-distance matrix, duplicates removed.

    Identical points would make log-distance ratios infinite; like deduplicating the data, each
    set of identical points counts once.
    """
    keep = distinct_points(sq_dist)
    reduced = sq_dist[np.ix_(keep, keep)]
    m = len(reduced)
    if m <= k:
        raise ValueError(f"need more than k={k} distinct points, got {m} (of {len(sq_dist)})")
    masked = torch.from_numpy(reduced).clone()
    masked.fill_diagonal_(float("inf"))
    nearest = torch.topk(masked, k, dim=1, largest=False, sorted=True).values.numpy()
    return NeighborDistances(np.sqrt(nearest), n_points=len(sq_dist), n_duplicates=int((~keep).sum()))


MLE_DENOMINATORS = ("k-1", "k-2")


def mle_from_distances(distances: np.ndarray, k: int = 20, denominator: str = "k-1") -> float:
    """Levina-Bickel MLE with MacKay-Ghahramani averaging of the inverse pointwise estimates.

    denominator="k-1" (default): d = [ 1/(n (k-1)) sum_i sum_{j<k} log(T_k(x_i) / T_j(x_i)) ]^-1,
    the formula printed in Pope et al. (2021) and Konz & Mazurowski (2024); equals
    scikit-dimension's MLE(comb="mle") with k neighbours.

    denominator="k-2": the same sum divided by n (k-2), as in Pope et al.'s released code
    (github.com/ppope/dimensions, estimators/mle.py, ``d.sum(axis=1) / (k - 2)``). Under the
    local Poisson model the sum S_i is Gamma(k-1, rate d), so (k-2)/S_i is the unbiased pointwise
    estimate of d while S_i/(k-1) is unbiased for 1/d (what the averaged inverse uses). The "k-2"
    estimate is exactly (k-2)/(k-1) times the "k-1" one (18/19 at k = 20, 1/2 at k = 3).
    """
    if denominator not in MLE_DENOMINATORS:
        raise ValueError(f"denominator must be one of {MLE_DENOMINATORS}, got {denominator!r}")
    minimum_k = 3 if denominator == "k-2" else 2
    if k < minimum_k:
        raise ValueError(f"the MLE with denominator {denominator} needs k >= {minimum_k}, got k={k}")
    if distances.shape[1] < k:
        raise ValueError(f"need {k} neighbour distances per point, got {distances.shape[1]}")
    logs = np.log(distances[:, :k])
    divisor = k - 1 if denominator == "k-1" else k - 2
    inverse = (logs[:, k - 1 : k] - logs[:, : k - 1]).sum(axis=1) / divisor
    return float(1.0 / inverse.mean())


def twonn_from_distances(distances: np.ndarray, discard_fraction: float = 0.1) -> float:
    """TwoNN (Facco et al. 2017): slope through the origin of -log(1 - F(mu)) against log(mu).

    mu = r2 / r1; the largest ``discard_fraction`` of the ratios are dropped as in the paper.
    Equals scikit-dimension's TwoNN(discard_fraction) linear fit.
    """
    mu = np.sort(distances[:, 1] / distances[:, 0])
    n = len(mu)
    n_keep = int(n * (1 - discard_fraction))
    if n_keep < 2:
        raise ValueError(f"TwoNN needs at least 2 points after discarding, got {n_keep} of {n}")
    x = np.log(mu[:n_keep])
    y = -np.log(1 - np.arange(1, n_keep + 1) / n)
    return float(x @ y / (x @ x))


def intrinsic_dimension(
    X, k: int = 20, discard_fraction: float = 0.1, mle_denominator: str = "k-1", **distance_options
) -> dict:
    """MLE and TwoNN estimates of X's intrinsic dimension from one nearest-neighbour computation.

    X: (n, features) or (n, C, H, W). Returns {"d_mle", "d_twonn", "n_points", "n_duplicates"}.
    mle_denominator: "k-1" (the papers' formula) or "k-2" (Pope et al.'s code), see
    ``mle_from_distances``.
    """
    neighbors = neighbors_from_sq_distances(pairwise_sq_distances(X, **distance_options), k)
    return {
        "d_mle": mle_from_distances(neighbors.distances, k, denominator=mle_denominator),
        "d_twonn": twonn_from_distances(neighbors.distances, discard_fraction),
        "n_points": neighbors.n_points,
        "n_duplicates": neighbors.n_duplicates,
    }


def mle_id(X, k: int = 20, denominator: str = "k-1", **distance_options) -> float:
    """MLE intrinsic dimension of X (see ``mle_from_distances``)."""
    neighbors = neighbors_from_sq_distances(pairwise_sq_distances(X, **distance_options), k)
    return mle_from_distances(neighbors.distances, k, denominator=denominator)


def twonn_id(X, discard_fraction: float = 0.1, **distance_options) -> float:
    """TwoNN intrinsic dimension of X (see ``twonn_from_distances``)."""
    neighbors = neighbors_from_sq_distances(pairwise_sq_distances(X, **distance_options), 2)
    return twonn_from_distances(neighbors.distances, discard_fraction)


def balanced_sample(y: np.ndarray, m: int, seed: int) -> np.ndarray:
    """Indices of up to m samples, the same number from every class (as many as the rarest has)."""
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"label sharpness needs at least 2 classes, got {classes.tolist()}")
    per_class = min(m // len(classes), min(int((y == c).sum()) for c in classes))
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


def label_sharpness(X, y, m: int = 1000, seed=0, **distance_options) -> dict:
    """K_F = max over all pairs of |y_j - y_k| / ||x_j - x_k|| among m class-balanced samples.

    Every one of the m^2 pairs is considered (not a random subset of pairs). uint8 images are
    read on the [0, 1] scale; K_F on the 0..255 scale of the paper's numbers is k_f / 255.
    Pairs of identical images with different labels (zero distance) would make the ratio
    infinite; as in the authors' code they are left out of the maximum and counted.

    Returns {"k_f", "kf_samples" (the m actually drawn: at most m, equal per class),
    "kf_zero_distance_pairs" (unordered pairs left out)}; k_f is NaN when every pair with
    different labels has zero distance.
    """
    flat, scale = _flatten(X)
    y = np.asarray(y, dtype=np.float64)
    if len(y) != flat.shape[0]:
        raise ValueError(f"{flat.shape[0]} samples but {len(y)} labels")
    index = balanced_sample(y, m, seed)
    sample = flat[torch.from_numpy(index)] if isinstance(flat, torch.Tensor) else flat[index]
    labels = y[index]
    sq_dist = pairwise_sq_distances(sample, **distance_options)
    label_gap = np.abs(labels[:, None] - labels[None, :])
    # Upper triangle only: each unordered pair once. Zero distances are exact here, because
    # pairwise_sq_distances recomputes near pairs in float64 from the data itself.
    differ = np.triu(label_gap > 0, k=1)
    zero = differ & (sq_dist == 0)
    candidates = differ & ~zero
    record = {"k_f": float("nan"), "kf_samples": int(len(index)),
              "kf_zero_distance_pairs": int(zero.sum())}
    if not candidates.any():
        return record
    ratio = np.where(candidates, label_gap / np.sqrt(np.where(candidates, sq_dist, 1.0)), 0.0)
    # The maximum hinges on the smallest distances: recompute the leading candidates exactly.
    rows, cols = np.nonzero(candidates & (ratio >= ratio.max() * (1 - 1e-3)))
    exact = _exact_sq_distances(sample, scale, rows, cols)
    record["k_f"] = float(np.max(label_gap[rows, cols] / np.sqrt(exact)))
    return record
