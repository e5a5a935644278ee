"""Numerical rank (intrinsic.rank): energy rank, effective rank, the Gram path, first-conv weights."""

import numpy as np
import pytest
import torch

from intrinsic.models import build_model
from intrinsic.rank import (
    effective_rank,
    energy_rank,
    first_conv_weight_matrix,
    rank_summary,
    singular_values,
)


def low_rank_matrix(n, p, r, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, r)) @ rng.standard_normal((r, p))


@pytest.mark.parametrize("n, p, r", [(60, 200, 3), (200, 60, 7), (40, 40, 1), (30, 500, 12)])
def test_energy_rank_of_exact_low_rank_products(n, p, r):
    matrix = low_rank_matrix(n, p, r)
    assert energy_rank(matrix, energy=0.999999) == r
    assert energy_rank(matrix, energy=1.0) == r
    assert energy_rank(matrix, energy=0.99) <= r
    assert np.count_nonzero(singular_values(matrix)) == r  # round-off below the resolution is 0


def test_a_small_noise_floor_does_not_count_at_99_percent_but_raises_the_full_rank():
    rng = np.random.default_rng(1)
    # Equal singular values in 5 directions, plus noise with 1e-4 of the energy.
    basis = np.linalg.qr(rng.standard_normal((300, 5)))[0].T
    signal = rng.standard_normal((100, 5)) @ basis
    noisy = signal + 1e-3 * rng.standard_normal(signal.shape) * np.linalg.norm(signal) / np.sqrt(signal.size)
    assert energy_rank(noisy, 0.99) == 5
    assert energy_rank(noisy, 1.0) == 100 - 1  # centred: n - 1 directions
    assert effective_rank(noisy) > effective_rank(signal)


def test_orthogonal_matrix_spectrum():
    q = np.linalg.qr(np.random.default_rng(2).standard_normal((10, 10)))[0]
    # Ten equal singular values: 0.99 of the energy needs all ten, 0.9 exactly nine, 0.5 five.
    assert energy_rank(q, 0.99, center=False) == 10
    assert energy_rank(q, 0.9, center=False) == 9
    assert energy_rank(q, 0.5, center=False) == 5
    assert energy_rank(np.eye(7), 1.0, center=False) == 7
    assert effective_rank(q, center=False) == pytest.approx(10, rel=1e-12)


@pytest.mark.parametrize("r", [1, 3, 8])
def test_effective_rank_of_equal_singular_values_is_r(r):
    rng = np.random.default_rng(r)
    u = np.linalg.qr(rng.standard_normal((50, r)))[0]
    v = np.linalg.qr(rng.standard_normal((70, r)))[0]
    matrix = 3.0 * u @ v.T
    assert effective_rank(matrix, center=False) == pytest.approx(r, rel=1e-9)
    assert energy_rank(matrix, 1.0, center=False) == r


def test_effective_rank_of_unequal_values_is_exp_entropy():
    values = np.array([4.0, 2.0, 1.0, 1.0])
    p = values / values.sum()
    matrix = np.diag(values)
    assert effective_rank(matrix, center=False) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-12)
    # energies 16, 4, 1, 1 of 22: 0.72 needs one value, 0.9 two, 0.95 three
    assert [energy_rank(matrix, e, center=False) for e in (0.72, 0.9, 0.95)] == [1, 2, 3]


def test_centring_removes_a_constant_row_offset():
    rng = np.random.default_rng(3)
    rank_one = np.outer(rng.standard_normal(80), rng.standard_normal(120))
    shifted = rank_one + 1000.0 * rng.standard_normal(120)  # the same offset row added to every row
    assert energy_rank(shifted, 1.0) == 1
    assert effective_rank(shifted) == pytest.approx(1.0, rel=1e-6)
    assert energy_rank(shifted, 1.0, center=False) == 2  # the offset is a second direction
    np.testing.assert_allclose(singular_values(shifted)[:1], singular_values(rank_one)[:1], rtol=1e-9)


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (30, 30)])
@pytest.mark.parametrize("center", [True, False])
def test_gram_path_matches_numpy_svd(shape, center):
    matrix = np.random.default_rng(4).standard_normal(shape) + 0.5
    reference = np.linalg.svd(matrix - matrix.mean(axis=0) if center else matrix, compute_uv=False)
    values = singular_values(matrix, center)
    assert len(values) == min(shape)
    keep = reference > 1e-6 * reference[0]  # centring loses one direction when n <= p
    np.testing.assert_allclose(values[keep], reference[keep], rtol=1e-8)
    assert np.all(values[~keep] < 1e-6 * reference[0])


def test_block_accumulation_matches_one_block(monkeypatch):
    from intrinsic import rank

    matrix = np.random.default_rng(5).integers(0, 256, size=(40, 3, 9, 9), dtype=np.uint8)
    whole = singular_values(matrix)
    monkeypatch.setattr(rank, "BLOCK_ELEMENTS", 40 * 7)  # 7 columns per block
    np.testing.assert_allclose(singular_values(matrix), whole, rtol=1e-10)
    tall = matrix.reshape(40, -1)[:, :10]
    reference = singular_values(tall)
    monkeypatch.setattr(rank, "BLOCK_ELEMENTS", 10 * 3)  # 3 rows per block, rows > features
    np.testing.assert_allclose(singular_values(tall), reference, rtol=1e-10)


def test_zero_matrix_and_inputs():
    assert energy_rank(np.zeros((5, 8))) == 0
    assert effective_rank(np.zeros((5, 8))) == 0.0
    assert energy_rank(np.ones((5, 8))) == 0  # centred: nothing varies
    assert energy_rank(np.ones((5, 8)), center=False) == 1
    # torch tensors, any (n, ...) shape, integer images: scale does not matter
    images = np.random.default_rng(6).integers(0, 256, size=(12, 1, 4, 4), dtype=np.uint8)
    assert rank_summary(torch.from_numpy(images)) == rank_summary(images.reshape(12, -1))
    as_float = rank_summary(images.astype(np.float64) / 255, prefix="data_")
    assert set(as_float) == {"data_energy_rank", "data_effective_rank"}
    assert as_float["data_energy_rank"] == rank_summary(images)["energy_rank"]
    assert as_float["data_effective_rank"] == pytest.approx(rank_summary(images)["effective_rank"], rel=1e-10)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "high", True])
def test_bad_energy_is_named(bad):
    with pytest.raises(ValueError, match="energy"):
        energy_rank(np.eye(3), energy=bad)


def test_a_vector_is_not_a_matrix():
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        energy_rank(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        energy_rank(np.array([[1.0, np.nan], [0.0, 1.0]]))


@pytest.mark.parametrize(
    "architecture, in_channels, shape",
    [("resnet18", 1, (64, 49)), ("resnet18", 3, (64, 147)), ("vgg13", 3, (64, 27)), ("vgg13", 1, (64, 9))],
)
def test_first_conv_weight_matrix(architecture, in_channels, shape):
    model = build_model(architecture, in_channels=in_channels, num_classes=2, vgg_pool_size=1)
    weights = first_conv_weight_matrix(model)
    assert weights.shape == shape and weights.dtype == np.float64
    first = model.conv1 if architecture == "resnet18" else model.features[0]
    np.testing.assert_array_equal(weights[3], first.weight[3].detach().double().numpy().ravel())
    assert energy_rank(weights, 0.99, center=False) <= min(shape)


def test_model_without_a_convolution_is_named():
    with pytest.raises(ValueError, match="Sequential has no nn.Conv2d"):
        first_conv_weight_matrix(torch.nn.Sequential(torch.nn.Linear(3, 2)))


def test_torch_tensors_of_any_float_dtype():
    matrix = torch.from_numpy(low_rank_matrix(20, 30, 4)).float()
    assert energy_rank(matrix.bfloat16(), 0.999) == 4  # numpy has no bfloat16
    assert energy_rank(matrix.requires_grad_(), 1.0) == 4
