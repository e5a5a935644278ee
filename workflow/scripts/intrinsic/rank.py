"""Numerical rank of a matrix: one definition for data, representations and weights.

Used to measure how the rank of the data and of a trained model's filters change with the
background noise level (Zhang et al. 2025, "Gradient Descent Robustly Learns the Intrinsic
Dimension of Data in Training CNNs"). Two definitions, both from the singular values s_i of
the matrix with samples as rows:

* ``energy_rank``: the fewest singular values holding a fraction ``energy`` of the energy
  sum(s_i^2), the usual "99 % of the variance" rank (scale invariant, robust to a noise floor
  far below 1 - energy of the energy).
* ``effective_rank``: Roy & Vetterli (2007), exp(H(p)) with p_i = s_i / sum(s); continuous,
  equal to r for r equal singular values and 0 for a zero matrix.

Centring: data and representations are centred (column means removed; rows = samples), so the
rank counts directions of variation, not the mean image. Weights (``first_conv_weight_matrix``,
filters = rows) are ranked uncentred (``center=False``): a filter's mean is part of what it
computes.

Singular values come from the eigenvalues of the smaller Gram matrix (X X^T or X^T X, float64,
accumulated over blocks of the matrix), so a 1750 x 150528 matrix needs a 1750 x 1750 Gram
matrix and never a full SVD or a float64 copy of the data. Eigenvalues below
``dim * eps * max`` (the Gram path's round-off) are set to 0: singular values under about
1e-7 of the largest are not resolved.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_ELEMENTS = 1 << 23  # float64 elements per block of the Gram accumulation (64 MiB)


def _as_matrix(matrix) -> np.ndarray:
    """A numpy array (n, features) viewing ``matrix`` (numpy or torch, shape (n, ...))."""
    if hasattr(matrix, "detach") and hasattr(matrix, "cpu"):  # a torch tensor, without importing torch
        tensor = matrix.detach().cpu()
        try:
            matrix = tensor.numpy()
        except TypeError:  # a dtype numpy lacks (bfloat16): float32 holds it exactly
            matrix = tensor.float().numpy()
    array = np.asarray(matrix)
    if array.ndim < 2:
        raise ValueError(f"rank: expected a matrix of shape (n, ...) with one row per sample, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"rank: expected a numeric matrix, got dtype {array.dtype}")
    return array.reshape(len(array), -1)


def gram_eigenvalues(matrix, center: bool = True) -> np.ndarray:
    """Squared singular values of ``matrix`` (centred when ``center``), descending, float64.

    From the smaller Gram matrix, accumulated block by block in float64 (a block is converted
    and centred on its own: exact column means, no float64 copy of the whole matrix). Length
    min(n, features); a non-finite entry is a ValueError.
    """
    X = _as_matrix(matrix)
    n, p = X.shape
    if n == 0 or p == 0:
        return np.zeros(0)
    if n <= p:  # X X^T: blocks of columns, each centred by its own column means
        step = max(1, BLOCK_ELEMENTS // n)
        gram = np.zeros((n, n))
        for start in range(0, p, step):
            block = np.asarray(X[:, start : start + step], dtype=np.float64)
            if center:
                block = block - block.mean(axis=0)
            gram += block @ block.T
    else:  # X^T X: blocks of rows, centred by the column means of the whole matrix
        step = max(1, BLOCK_ELEMENTS // p)
        mean = np.zeros(p)
        if center:
            for start in range(0, n, step):
                mean += np.asarray(X[start : start + step], dtype=np.float64).sum(axis=0)
            mean /= n
        gram = np.zeros((p, p))
        for start in range(0, n, step):
            block = np.asarray(X[start : start + step], dtype=np.float64) - mean
            gram += block.T @ block
    if not np.isfinite(gram).all():
        raise ValueError("rank: the matrix has NaN or infinite values")
    eigenvalues = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)
    if eigenvalues[0] > 0:
        eigenvalues[eigenvalues <= len(gram) * np.finfo(np.float64).eps * eigenvalues[0]] = 0.0
    return eigenvalues


def singular_values(matrix, center: bool = True) -> np.ndarray:
    """Singular values of ``matrix`` (centred when ``center``), descending; see ``gram_eigenvalues``."""
    return np.sqrt(gram_eigenvalues(matrix, center))


def _energy_rank(squared: np.ndarray, energy: float) -> int:
    total = float(squared.sum())
    if total <= 0:
        return 0
    cumulative = np.cumsum(squared)
    # A relative slack of 1e-12 so that a tie (e.g. 9 of 10 equal values at energy 0.9) is not
    # decided by round-off in the eigenvalues.
    index = int(np.searchsorted(cumulative, energy * total * (1 - 1e-12), side="left"))
    return min(index + 1, int(np.count_nonzero(squared)))


def _effective_rank(squared: np.ndarray) -> float:
    values = np.sqrt(squared)
    total = float(values.sum())
    if total <= 0:
        return 0.0
    p = values[values > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


def _check_energy(energy) -> float:
    if isinstance(energy, bool) or not isinstance(energy, (int, float, np.integer, np.floating)):
        raise ValueError(f"rank: energy must be a number in (0, 1], got {energy!r}")
    energy = float(energy)
    if not (0 < energy <= 1):
        raise ValueError(f"rank: energy must lie in (0, 1], got {energy}")
    return energy


def energy_rank(matrix, energy: float = 0.99, center: bool = True) -> int:
    """The smallest r with s_1^2 + ... + s_r^2 >= energy * sum(s^2): how many directions hold
    ``energy`` of the (centred, when ``center``) matrix's energy. 0 for a zero matrix."""
    energy = _check_energy(energy)
    return _energy_rank(gram_eigenvalues(matrix, center), energy)


def effective_rank(matrix, center: bool = True) -> float:
    """Roy & Vetterli (2007) effective rank: exp(-sum p_i log p_i), p_i = s_i / sum(s). Equals
    r for r equal non-zero singular values; 0.0 for a zero matrix."""
    return _effective_rank(gram_eigenvalues(matrix, center))


def rank_summary(matrix, energy: float = 0.99, center: bool = True, prefix: str = "") -> dict:
    """{prefix}energy_rank (int) and {prefix}effective_rank (float) from one eigendecomposition."""
    energy = _check_energy(energy)
    squared = gram_eigenvalues(matrix, center)
    return {f"{prefix}energy_rank": _energy_rank(squared, energy),
            f"{prefix}effective_rank": _effective_rank(squared)}


def first_conv_weight_matrix(model) -> np.ndarray:
    """The weights of a torch model's first ``nn.Conv2d`` (in ``model.modules()`` order) as a
    float64 (out_channels, in_channels * kh * kw) matrix: one row per filter. Rank it with
    ``center=False``. A model without a Conv2d is a ValueError naming its class."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight.detach().cpu().double().numpy()
            return weight.reshape(weight.shape[0], -1)
    raise ValueError(f"model {type(model).__name__} has no nn.Conv2d layer")
