"""Intrinsic dimension (MLE, TwoNN) and label sharpness K_F from exact Euclidean distances.

All estimators share one distance kernel, ``_CentredData.products``: |b|^2 - 2 a.b between a
block of query rows a and all points b of the centred data, by float32 matrix products (torch,
CPU or CUDA; TF32 off). The data may stay uint8 (read as value / 255, e.g. a memory-mapped
cache): it is converted to centred float32 once when that copy is small
(``FLOAT32_COPY_BUDGET``), otherwise per feature chunk for every block of query rows. Centring
removes most of the cancellation in |a|^2 + |b|^2 - 2 a.b; pairs that are still close relative
to their norms (near-duplicates, identical points) are recomputed exactly in float64 from the
data, so identical points are found exactly.

d_data / d_repr need only each point's k nearest neighbours: ``nearest_neighbors`` works by
blocks of query rows and reduces each block's products at once to its k + 1 + ``KNN_SLACK``
smallest with ``torch.topk``, so the memory beyond the data is O(n (k + row_block)), never
n x n. A row whose candidates cannot be trusted (too many of them duplicates, or the k-th not
safely below the first candidate left out, see ``FLOAT32_ERROR_RELATIVE``) is recomputed over
all points. K_F (``label_sharpness``) needs all pairs of M <= ~1000 samples and uses
``pairwise_sq_distances`` (the same kernel, one block).

Written here rather than taken from a library: scikit-dimension recomputes the neighbours per
estimator with scikit-learn on float64 copies of the data (slower and 2x the memory at
224x224x3), and scikit-learn's brute-force NearestNeighbors works on float64 chunks and has no
exact recomputation of near pairs. Tests check the formulas against scikit-dimension and the
distances against a dense float64 computation.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .devices import resolve_device

# Pairs with squared distance below this fraction of |a|^2 + |b|^2 (centred) get an exact
# float64 recomputation: float32 products err by at most ~eps32 * sqrt(features) of |a||b|
# (2e-6 at 784 features, 2e-5 at 150528; measured at most 1.1e-6 of |a|^2 + |b|^2, see
# FLOAT32_ERROR_RELATIVE), so beyond this ratio squared distances are good to ~1e-3 at worst.
REFINE_RELATIVE = 1e-3
# Assumed bound on |float32 squared distance - exact| / (|a|^2 + |b|^2) (centred), used only to
# decide whether a row's candidate list is safe (the k-th nearest well below every point left
# out). ~100x the largest error measured on the benchmark data (all pairs of 2000 MNIST digits:
# 4e-7; 2000 CIFAR-size images, 3072 features: 5e-7; 300 images of 3 x 224 x 224: 1.1e-6), and
# below REFINE_RELATIVE so that identical points always fall under the exact recomputation.
FLOAT32_ERROR_RELATIVE = 1e-4
# Candidates taken beyond k (and the point itself) per query row, so that a few duplicates or
# refined near pairs cannot leave a row short of k trusted neighbours.
KNN_SLACK = 8
# Bytes of the centred float32 copy of the data that may be made once (when there is more than
# one block of query rows; otherwise the data is converted once per feature chunk anyway). Above
# it, every block of query rows converts the data chunk by chunk again: about 1 / (2 row_block)
# of the products' work per value, a few per cent.
FLOAT32_COPY_BUDGET = 1 << 30
# Bytes of one (n, chunk) float32 feature chunk when the data is not copied whole (the chunk
# width is at most DEFAULT_FEATURE_CHUNK columns), and of the (row_block, n) float32 product block.
FEATURE_CHUNK_BUDGET = 256 << 20
DEFAULT_FEATURE_CHUNK = 8192
ROW_BLOCK_BUDGET = 512 << 20


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


def _as_tensor(part) -> torch.Tensor:
    """A tensor sharing part's memory, only ever read (read-only memory maps included)."""
    if isinstance(part, torch.Tensor):
        return part
    part = np.asarray(part)
    if part.flags.writeable:
        return torch.from_numpy(part)
    with warnings.catch_warnings():  # "The given NumPy array is not writable": it is only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(part)


@contextmanager
def _ieee_float32_matmul():
    """float32 products in float32, not TF32 (cuBLAS); the caller's setting is restored."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


class _CentredData:
    """The data, centred, as float32 on ``device``, and its products with blocks of query rows.

    Values stay on the data's own scale (raw uint8 values: exact in float32); callers multiply
    squared distances by scale**2. With ``copy`` the centred float32 data is made once; without,
    one reused (n, width) buffer is filled column chunk by column chunk on every call of
    ``products`` (``copy_`` converts uint8 without a temporary; a fresh ~57 MB block per chunk
    would cost a page fault per 4 KiB, measured +40 % run time).
    """

    def __init__(self, flat, device, width: int, copy: bool):
        n, n_features = flat.shape
        self.flat, self.n, self.n_features, self.device = flat, n, n_features, device
        self.copy = copy or width >= n_features
        self.width = n_features if self.copy else width
        self.buffer = torch.empty((n, self.width), dtype=torch.float32, device=device)
        self.sq_norms = None  # float64 numpy (n,), centred, raw scale
        self.sq_norms32 = None  # the same as float32 on device, for the products
        if self.copy:
            rows = max(1, (64 << 20) // n_features)
            for start in range(0, n, rows):
                self.buffer[start : start + rows].copy_(_as_tensor(flat[start : start + rows]))
            # Centring is exact whatever the centre, so a float32 column mean is precise enough.
            self.mean = self.buffer.mean(dim=0)
            self.buffer.sub_(self.mean)
            self._set_norms(torch.linalg.vector_norm(self.buffer, dim=1).double().square())
        else:
            self.mean = torch.empty(n_features, dtype=torch.float32, device=device)
            for start, stop in self._column_ranges():
                block = self._fill(start, stop)
                torch.mean(block, dim=0, out=self.mean[start:stop])

    def _column_ranges(self):
        for start in range(0, self.n_features, self.width):
            yield start, min(start + self.width, self.n_features)

    def _fill(self, start: int, stop: int) -> torch.Tensor:
        block = self.buffer[:, : stop - start]
        block.copy_(_as_tensor(self.flat[:, start:stop]))
        return block

    def _set_norms(self, sq_norms: torch.Tensor) -> None:
        self.sq_norms = sq_norms.cpu().numpy()
        self.sq_norms32 = sq_norms.float()

    def products(self, query, out: torch.Tensor) -> torch.Tensor:
        """out = |b|^2 - 2 a.b (float32, (m, n)) for the query rows a = ``query`` (a slice or an
        index tensor) of the centred data and all points b. Adding |a|^2 gives squared distances;
        the order within a row does not need it."""
        if self.copy:
            torch.mm(self.buffer[query], self.buffer.T, out=out)
        else:
            sq_norms = None if self.sq_norms is not None else torch.zeros(self.n, dtype=torch.float64,
                                                                          device=self.device)
            for start, stop in self._column_ranges():
                block = self._fill(start, stop).sub_(self.mean[start:stop])
                if start == 0:
                    torch.mm(block[query], block.T, out=out)
                else:
                    out.addmm_(block[query], block.T)
                if sq_norms is not None:  # the first call: norms from the same centred chunks
                    sq_norms += torch.linalg.vector_norm(block, dim=1).double().square()
            if sq_norms is not None:
                self._set_norms(sq_norms)
        return torch.add(self.sq_norms32, out, alpha=-2, out=out)


def default_row_block(n: int) -> int:
    """Query rows per block: a (row_block, n) float32 product block of ``ROW_BLOCK_BUDGET`` bytes."""
    return int(min(max(ROW_BLOCK_BUDGET // (4 * n), 1), n))


def _prepare(X, row_block: int | None, feature_chunk: int | None, device, float32_budget: int | None):
    """Flattened data, its scale, the centred float32 data and the row block."""
    flat, scale = _flatten(X)
    n, n_features = flat.shape
    device = resolve_device(device)
    row_block = default_row_block(n) if row_block is None else int(min(max(row_block, 1), n))
    if feature_chunk is None:
        feature_chunk = min(DEFAULT_FEATURE_CHUNK, max(64, FEATURE_CHUNK_BUDGET // (4 * n)))
    budget = FLOAT32_COPY_BUDGET if float32_budget is None else float32_budget
    copy = row_block < n and 4 * n * n_features <= budget
    return flat, scale, _CentredData(flat, device, max(1, int(feature_chunk)), copy), row_block


def _exact_sq_distances(flat, scale: float, rows: np.ndarray, cols: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Squared distances of the pairs (rows[i], cols[i]) in float64, by direct differences."""
    out = np.empty(len(rows), dtype=np.float64)
    if batch is None:  # two (batch, features) float64 arrays of at most 64 MB each
        batch = max(1, min(4096, (8 << 20) // flat.shape[1]))
    for start in range(0, len(rows), batch):
        r, c = rows[start : start + batch], cols[start : start + batch]
        if isinstance(flat, torch.Tensor):
            r, c = torch.as_tensor(r, device=flat.device), torch.as_tensor(c, device=flat.device)
            diff = flat[r].to(torch.float64) - flat[c].to(torch.float64)
            out[start : start + batch] = torch.einsum("ij,ij->i", diff, diff).cpu().numpy() * scale**2
        else:
            diff = np.asarray(flat[r], dtype=np.float64) - np.asarray(flat[c], dtype=np.float64)
            out[start : start + batch] = np.einsum("ij,ij->i", diff, diff) * scale**2
    return out


def _full_rows(data: _CentredData, rows: np.ndarray, row_block: int, select, out: torch.Tensor):
    """For query rows in batches of row_block: squared distances (raw scale) to all points, near
    pairs among ``select(batch_rows, d)`` recomputed exactly; yields (batch_rows, d, selected)."""
    for start in range(0, len(rows), row_block):
        batch = rows[start : start + row_block]
        query = torch.as_tensor(batch, device=data.device)
        products = data.products(query, out[: len(batch)])
        norms = data.sq_norms  # known after the first products
        d = products.double().cpu().numpy() + norms[batch, None]
        selected = select(batch, d)
        near = selected & (d <= REFINE_RELATIVE * (norms[batch, None] + norms[None, :]))
        r, c = np.nonzero(near)
        d[r, c] = _exact_sq_distances(data.flat, 1.0, batch[r], c)
        yield batch, d, selected


def pairwise_sq_distances(X, feature_chunk: int | None = None, device=None) -> np.ndarray:
    """Exact squared Euclidean distances between all rows of X, as an (n, n) float64 array.

    X: (n, features) or (n, C, H, W); uint8 data is read as value / 255 (the [0, 1] scale).
    X is never copied whole: memory beyond it is one float32 (n, feature_chunk) block and a
    few (n, n) matrices. For nearest neighbours only, ``nearest_neighbors`` needs no (n, n).
    """
    with _ieee_float32_matmul():
        flat, scale, data, _ = _prepare(X, None, feature_chunk, device, 0)
        n = len(flat)
        out = torch.empty((n, n), dtype=torch.float32, device=data.device)
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        dist = np.empty((n, n), dtype=np.float64)
        # One batch of all rows: near pairs of the upper triangle are recomputed, then mirrored.
        for batch, d, _ in _full_rows(data, np.arange(n), n, lambda rows, d: upper, out):
            dist[batch] = d
    dist = np.triu(dist, k=1)
    dist = np.maximum(dist + dist.T, 0.0)
    if scale != 1.0:
        dist *= scale**2
    return dist


@dataclass
class NeighborDistances:
    """Sorted distances to the k nearest distinct neighbours of each distinct point."""

    distances: np.ndarray  # (n_distinct, k), ascending, all > 0
    n_points: int
    n_duplicates: int  # points dropped because an identical point was kept
    n_recomputed: int = 0  # rows whose candidates were not trusted and were recomputed in full


def nearest_neighbors(X, k: int, row_block: int | None = None, feature_chunk: int | None = None,
                      device=None, float32_budget: int | None = None) -> NeighborDistances:
    """Exact distances to the k nearest distinct neighbours of every distinct point of X.

    X: (n, features) or (n, C, H, W), numpy (memory-mapped is fine) or torch; uint8 is read as
    value / 255. Identical points count once: the first of each group (by index) is kept, the
    others are neither queries nor neighbours (log-distance ratios would be infinite).

    By blocks of ``row_block`` query rows (default: a (row_block, n) float32 block of about
    ``ROW_BLOCK_BUDGET`` bytes): |b|^2 - 2 a.b against all points by float32 products of the
    centred data, reduced at once by ``torch.topk`` to the k + 1 + ``KNN_SLACK`` smallest.
    Candidates closer than ``REFINE_RELATIVE`` (|a|^2 + |b|^2) are recomputed exactly in
    float64; other distances are the float32 ones. A row is recomputed over all points (same
    rules, ``n_recomputed``) when it may have identical points beyond its candidates, when fewer
    than k of them remain after dropping duplicates, or when its k-th distance T_k is not below
    the smallest candidate left out (D) by the float32 error bound: T_k < D - e (|a|^2 +
    (|a| + sqrt T_k)^2) with e = ``FLOAT32_ERROR_RELATIVE``. Memory beyond the data: the
    float32 data (once, if under ``float32_budget`` bytes, default ``FLOAT32_COPY_BUDGET``; else
    one (n, feature_chunk) chunk), the product block and O(n k) candidates.

    device: where the products run ("cuda" or "cpu", default); the exact recomputation runs
    where the data is.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    with _ieee_float32_matmul():
        return _nearest_neighbors(X, k, row_block, feature_chunk, device, float32_budget)


def _nearest_neighbors(X, k, row_block, feature_chunk, device, float32_budget) -> NeighborDistances:
    flat, scale, data, row_block = _prepare(X, row_block, feature_chunk, device, float32_budget)
    n = data.n
    n_candidates = min(k + 1 + KNN_SLACK, n)
    out = torch.empty((row_block, n), dtype=torch.float32, device=data.device)
    index = np.empty((n, n_candidates), dtype=np.int64)
    sq_dist = np.empty((n, n_candidates), dtype=np.float64)  # raw scale; exact where near
    left_out = np.full(n, np.inf)  # largest candidate's float32 distance: none left out is closer

    for start in range(0, n, row_block):
        stop = min(start + row_block, n)
        products = data.products(slice(start, stop), out[: stop - start])
        values, columns = torch.topk(products, n_candidates, dim=1, largest=False, sorted=False)
        rows = np.arange(start, stop)
        norms = data.sq_norms
        d = values.cpu().numpy().astype(np.float64) + norms[rows, None]
        columns = columns.cpu().numpy()
        if n_candidates < n:
            left_out[rows] = d.max(axis=1)
        near = (d <= REFINE_RELATIVE * (norms[rows, None] + norms[columns])) & (columns != rows[:, None])
        r, c = np.nonzero(near)
        d[r, c] = _exact_sq_distances(flat, 1.0, rows[r], columns[r, c])
        d[columns == rows[:, None]] = 0.0
        index[rows], sq_dist[rows] = columns, d
    norms = data.sq_norms
    rows = np.arange(n)
    is_self = index == rows[:, None]

    # Identical points. A row sees all of its identical points (float32 distance <= e * 2|a|^2)
    # among its candidates unless the first left out is itself that close: such rows are
    # recomputed over all points, earlier points only.
    duplicate = ((sq_dist == 0) & ~is_self & (index < rows[:, None])).any(axis=1)
    unseen = np.flatnonzero(left_out <= 2 * FLOAT32_ERROR_RELATIVE * norms)
    fallback_block = max(1, row_block // 4)  # its float64 (rows, n) distances: half the product block
    for batch, d, selected in _full_rows(data, unseen, fallback_block,
                                         lambda b, d: np.arange(n)[None, :] < b[:, None], out):
        duplicate[batch] = ((d == 0) & selected).any(axis=1)
    keep = ~duplicate
    n_distinct = int(keep.sum())
    if n_distinct <= k:
        raise ValueError(f"need more than k={k} distinct points, got {n_distinct} (of {n})")

    # The k nearest among each kept row's candidates that are kept points other than itself.
    valid = keep[index] & ~is_self
    ranked = np.sort(np.where(valid, sq_dist, np.inf), axis=1)[:, :k]
    kth = ranked[:, -1]
    with np.errstate(invalid="ignore"):
        margin = FLOAT32_ERROR_RELATIVE * (norms + (np.sqrt(norms) + np.sqrt(kth)) ** 2)
        trusted = np.isfinite(kth) & ((kth < left_out - margin) | np.isinf(left_out))
    trusted[unseen] = False
    recompute = np.flatnonzero(keep & ~trusted)
    for batch, d, selected in _full_rows(data, recompute, fallback_block,
                                         lambda b, d: keep[None, :] & (np.arange(n)[None, :] != b[:, None]), out):
        d[~selected] = np.inf
        ranked[batch] = np.sort(np.partition(d, k - 1, axis=1)[:, :k], axis=1)
    distances = np.sqrt(ranked[keep] * scale**2)
    return NeighborDistances(distances, n_points=n, n_duplicates=n - n_distinct, n_recomputed=len(recompute))


def distinct_points(sq_dist: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the first of every group of identical points (zero distance), from a
    full squared-distance matrix (``pairwise_sq_distances``)."""
    n = len(sq_dist)
    zero = np.triu(sq_dist == 0, k=1)
    keep = np.ones(n, dtype=bool)
    keep[np.nonzero(zero)[1]] = False  # j duplicates an earlier i
    return keep


def neighbors_from_sq_distances(sq_dist: np.ndarray, k: int) -> NeighborDistances:
    """k-nearest-neighbour distances from a full squared-distance matrix, duplicates removed as
    in ``nearest_neighbors`` (which computes them without the matrix). For callers that hold
    the matrix anyway, e.g. to take several k from one computation."""
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
    ``mle_from_distances``. distance_options: ``row_block``, ``feature_chunk``, ``device``,
    ``float32_budget`` of ``nearest_neighbors``.
    """
    neighbors = nearest_neighbors(X, k, **distance_options)
    return {
        "d_mle": mle_from_distances(neighbors.distances, k, denominator=mle_denominator),
        "d_twonn": twonn_from_distances(neighbors.distances, discard_fraction),
        "n_points": neighbors.n_points,
        "n_duplicates": neighbors.n_duplicates,
    }


def mle_id(X, k: int = 20, denominator: str = "k-1", **distance_options) -> float:
    """MLE intrinsic dimension of X (see ``mle_from_distances``)."""
    neighbors = nearest_neighbors(X, k, **distance_options)
    return mle_from_distances(neighbors.distances, k, denominator=denominator)


def twonn_id(X, discard_fraction: float = 0.1, **distance_options) -> float:
    """TwoNN intrinsic dimension of X (see ``twonn_from_distances``)."""
    neighbors = nearest_neighbors(X, 2, **distance_options)
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
