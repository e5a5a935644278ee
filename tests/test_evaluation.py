"""Evaluation metrics against closed forms, finite differences and known dimensions."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from intrinsic.estimators import intrinsic_dimension
from intrinsic.evaluation import (
    attack_penalties,
    evaluate,
    fgsm,
    filter_rank,
    jacobian_norm,
    jacobian_norms,
    pgd,
    prediction_summary,
    representation_dimension,
)
from intrinsic.models import REPRESENTATION_LAYERS, build_model, final_linear, representations

SHAPE = (1, 3, 3)  # (C, H, W) of the toy images
FEATURES = 9


class LinearNet(nn.Module):
    """flatten + fc: logits = W x + b with fixed W, b."""

    def __init__(self, weight, bias):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.fc.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x):
        return self.fc(x.flatten(1))


class SmallNet(nn.Module):
    """A nonlinear net with BatchNorm (so eval mode matters) and a final nn.Linear `fc`."""

    def __init__(self, seed=0, hidden=16):
        super().__init__()
        torch.manual_seed(seed)
        self.hidden = nn.Linear(FEATURES, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc = nn.Linear(hidden, 2)
        with torch.no_grad():
            self.hidden.weight.mul_(3.0)
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.hidden(x.flatten(1)))))


def weights():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, FEATURES)) * 0.5
    W[1, 0] = W[0, 0] + 0.3  # some structure; all differences nonzero below
    b = np.array([0.1, -0.2])
    assert np.all(W[1] != W[0])
    return W, b


def data(n=40, low=0.2, high=0.8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand((n, *SHAPE), generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    return x, y


def mean_ce(model, x, y):
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model.eval()(x), y))


# ------------------------------------------------------------------------------------ evaluate
def test_evaluate_matches_hand_computation():
    W, b = weights()
    model = LinearNet(W, b)
    x, y = data(n=10)
    logits = x.double().numpy().reshape(10, -1) @ W.T + b
    lse = np.log(np.exp(logits).sum(axis=1))
    expected_loss = np.mean(lse - logits[np.arange(10), y.numpy()])
    expected_acc = np.mean(logits.argmax(axis=1) == y.numpy())
    # batch_size 3 does not divide 10: the mean must be over points, not over batch means
    result = evaluate(model, x, y, batch_size=3)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["accuracy"] == pytest.approx(expected_acc)
    assert 0 < expected_acc < 1


def test_evaluate_uses_eval_mode_and_restores_it():
    model = SmallNet()
    x, y = data()
    model.train()
    result = evaluate(model, x, y, batch_size=7)
    assert model.training
    assert result["loss"] == pytest.approx(mean_ce(model, x, y), rel=1e-5)


# ---------------------------------------------------------------------------------------- FGSM
def test_fgsm_matches_closed_form_for_linear_model():
    # grad_x CE = (softmax - onehot) @ W = (1 - p_y) (W_other - W_y) for 2 classes, so
    # sign(grad) = sign(W_other - W_y) whenever p_y < 1.
    W, b = weights()
    model = LinearNet(W, b)
    x, y = data()
    eps = 0.05
    adv = fgsm(model, x, y, eps)
    direction = np.sign(W[1 - y.numpy()] - W[y.numpy()])
    expected = x.numpy().reshape(len(x), -1) + eps * direction
    np.testing.assert_allclose(adv.numpy().reshape(len(x), -1), expected, atol=1e-7)
    assert mean_ce(model, adv, y) > mean_ce(model, x, y)


def test_fgsm_clamps_at_the_bounds():
    W, b = weights()
    model = LinearNet(W, b)
    x, y = data(low=0.0, high=1.0)
    x[:, 0, 0, :] = 0.01
    x[:, 0, 1, :] = 0.99
    eps = 0.1
    adv = fgsm(model, x, y, eps)
    direction = np.sign(W[1 - y.numpy()] - W[y.numpy()])
    expected = np.clip(x.numpy().reshape(len(x), -1) + eps * direction, 0, 1)
    np.testing.assert_allclose(adv.numpy().reshape(len(x), -1), expected, atol=1e-7)
    assert adv.min() == 0.0 and adv.max() == 1.0
    assert fgsm(model, x, y, 0.0).equal(x)


# ----------------------------------------------------------------------------------------- PGD
def test_pgd_stays_in_eps_ball_and_box_and_increases_loss():
    model = SmallNet()
    x, y = data(low=0.0, high=1.0)
    eps = 0.1  # large enough that PGD's gain over FGSM (~2e-3 here) is far above float noise
    adv = pgd(model, x, y, eps, steps=10, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    clean, fgsm_loss, pgd_loss = mean_ce(model, x, y), mean_ce(model, fgsm(model, x, y, eps), y), mean_ce(model, adv, y)
    assert pgd_loss > clean
    assert pgd_loss > fgsm_loss


def test_pgd_is_deterministic_given_the_generator_seed():
    model = SmallNet()
    x, y = data()

    def run(seed):
        return pgd(model, x, y, 0.03, steps=3, generator=torch.Generator().manual_seed(seed))

    assert run(5).equal(run(5))
    assert not run(5).equal(run(6))


def test_pgd_without_random_start_reaches_fgsm_corner_on_linear_model():
    # For a linear model the gradient sign is constant, so PGD walks to the same corner of the
    # eps-ball as FGSM (10 steps of 2.5 eps / 10 overshoot and get projected back).
    W, b = weights()
    model = LinearNet(W, b)
    x, y = data()
    eps = 4 / 255
    adv = pgd(model, x, y, eps, steps=10, random_start=False)
    torch.testing.assert_close(adv, fgsm(model, x, y, eps), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------- penalties
def test_attack_penalties_records():
    model = SmallNet()
    x, y = data(n=30, low=0.0, high=1.0)
    eps_list = [0.0, 2 / 255, 8 / 255]
    records = attack_penalties(model, x, y, eps_list, batch_size=8, pgd_steps=3, seed=0)
    assert [(r["attack"], r["eps"]) for r in records] == [(a, e) for a in ("fgsm", "pgd") for e in eps_list]
    clean = evaluate(model, x, y, batch_size=8)
    for r in records:
        assert r["clean_loss"] == pytest.approx(clean["loss"], rel=1e-6)
        assert r["clean_accuracy"] == pytest.approx(clean["accuracy"])
        assert r["loss_penalty"] == pytest.approx(r["attacked_loss"] - r["clean_loss"], abs=1e-12)
        assert r["accuracy_penalty"] == pytest.approx(r["clean_accuracy"] - r["attacked_accuracy"], abs=1e-12)
        if r["eps"] == 0:
            assert r["loss_penalty"] == 0 and r["accuracy_penalty"] == 0
        else:
            assert r["loss_penalty"] > 0
    by = {(r["attack"], r["eps"]): r for r in records}
    assert by[("fgsm", 8 / 255)]["loss_penalty"] > by[("fgsm", 2 / 255)]["loss_penalty"]
    # FGSM attacked loss equals the loss on fgsm() images, batch-wise or not
    assert by[("fgsm", 8 / 255)]["attacked_loss"] == pytest.approx(
        mean_ce(model, fgsm(model, x, y, 8 / 255), y), rel=1e-5)
    again = attack_penalties(model, x, y, [8 / 255], attacks=("pgd",), batch_size=8, pgd_steps=3, seed=0)
    assert again[0]["attacked_loss"] == by[("pgd", 8 / 255)]["attacked_loss"]


# -------------------------------------------------------------------------------- Jacobian
def test_jacobian_norm_matches_finite_differences():
    model = SmallNet(seed=3)
    x, _ = data(n=5, seed=2)
    model.train()  # the function must switch to eval mode itself
    norms = jacobian_norms(model, x, batch_size=2)
    assert model.training

    ref = copy.deepcopy(model).double().eval()
    h = 1e-6
    x64 = x.double().reshape(len(x), -1)
    expected = []
    with torch.no_grad():
        for xi in x64:
            cols = []
            for j in range(FEATURES):
                e = torch.zeros(FEATURES, dtype=torch.float64)
                e[j] = h
                plus = torch.softmax(ref((xi + e).reshape(1, *SHAPE)), 1)
                minus = torch.softmax(ref((xi - e).reshape(1, *SHAPE)), 1)
                cols.append((plus - minus)[0] / (2 * h))
            expected.append(torch.linalg.matrix_norm(torch.stack(cols, dim=1)).item())
    np.testing.assert_allclose(norms.numpy(), expected, rtol=1e-4)
    assert jacobian_norm(model, x, batch_size=3) == pytest.approx(np.mean(expected), rel=1e-4)


def test_jacobian_norm_closed_form_for_linear_softmax():
    # p = softmax(Wx + b), 2 classes: dp_1/dx = p_1 p_2 (W_1 - W_0) = -dp_0/dx, so
    # ||J||_F = sqrt(2) p_0 p_1 ||W_1 - W_0||.
    W, b = weights()
    model = LinearNet(W, b)
    x, _ = data(n=12)
    logits = x.double().numpy().reshape(12, -1) @ W.T + b
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.sqrt(2) * p[:, 0] * p[:, 1] * np.linalg.norm(W[1] - W[0])
    np.testing.assert_allclose(jacobian_norms(model, x, batch_size=5).numpy(), expected, rtol=1e-5)
    assert jacobian_norm(model, x) == pytest.approx(expected.mean(), rel=1e-5)
    # the logit Jacobian is W itself for every point
    np.testing.assert_allclose(jacobian_norms(model, x, output="logits").numpy(), np.linalg.norm(W), rtol=1e-5)


# --------------------------------------------------------------------------------- d_repr
class LowRankFeatures(nn.Module):
    """Inputs on a d-dim subspace -> fixed injective linear map -> (representation) -> fc."""

    def __init__(self, ambient, width, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Linear(ambient, width, bias=False)
        self.fc = nn.Linear(width, 2)

    def forward(self, x):
        return self.fc(self.embed(x.flatten(1)))


@pytest.mark.parametrize("d", [2, 5])
def test_representation_dimension_recovers_known_dimension(d):
    rng = np.random.default_rng(d)
    n, ambient, width = 1000, 16, 32
    basis, _ = np.linalg.qr(rng.normal(size=(ambient, d)))
    latent = rng.normal(size=(n, d))
    images = torch.tensor((latent @ basis.T).reshape(n, 1, 4, 4), dtype=torch.float32)
    model = LowRankFeatures(ambient, width, seed=d)
    assert final_linear(model) is model.fc
    result = representation_dimension(model, images, k=20, batch_size=128)
    # Gaussian data on a d-dim subspace, n=1000, k=20: both estimators within 0.6 of d
    assert result["d_repr_mle"] == pytest.approx(d, abs=0.6)
    assert result["d_repr_twonn"] == pytest.approx(d, abs=0.6)
    # and exactly the estimator applied to the final layer's inputs
    with torch.no_grad():
        feats = model.embed(images.flatten(1))
    direct = intrinsic_dimension(feats, k=20)
    assert result["d_repr_mle"] == pytest.approx(direct["d_mle"], rel=1e-6)
    assert result["d_repr_twonn"] == pytest.approx(direct["d_twonn"], rel=1e-6)


def layer_outputs(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a plain forward hook on ``module`` sees as its output (a copy: VGG's ReLUs are in-place)."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0]


def test_representation_layers_of_a_resnet():
    torch.manual_seed(0)
    model = build_model("resnet18", 1, 2)
    x = torch.rand(4, 1, 64, 64)  # layer4's map is 2 x 2, so pooled and unpooled differ
    block = layer_outputs(model, model.layer4, x)
    assert block.shape == (4, 512, 2, 2)
    pooled = representations(model, x, layer="final_linear_input")
    unpooled = representations(model, x, layer="last_conv_block")
    assert pooled.shape == (4, 512) and unpooled.shape == (4, 512 * 2 * 2)
    assert torch.equal(unpooled, block.flatten(1))
    torch.testing.assert_close(pooled, block.mean(dim=(2, 3)))  # global average pooling
    # the released code's "penultimate" layer of a ResNet is layer4's output
    assert torch.equal(representations(model, x, layer="authors_penultimate"), unpooled)


def test_representation_layers_of_a_vgg():
    torch.manual_seed(0)
    model = build_model("vgg13", 1, 2, vgg_pool_size=1)
    x = torch.rand(4, 1, 64, 64)  # the feature map is 512 x 2 x 2
    features = layer_outputs(model, model.features, x)
    hidden = layer_outputs(model, model.classifier[3], x)  # second hidden linear layer, pre-ReLU
    conv = representations(model, x, layer="last_conv_block")
    authors = representations(model, x, layer="authors_penultimate")
    final = representations(model, x, layer="final_linear_input")
    assert conv.shape == (4, 512 * 2 * 2) and torch.equal(conv, features.flatten(1))
    assert authors.shape == final.shape == (4, 4096)
    # pre-ReLU: the capture was not overwritten by the in-place ReLU that follows
    assert torch.equal(authors, hidden) and (authors < 0).any()
    torch.testing.assert_close(final, torch.relu(hidden))  # the final layer's input is post-ReLU


def test_representation_layer_choices_are_checked():
    assert REPRESENTATION_LAYERS == ("final_linear_input", "last_conv_block", "authors_penultimate")
    model = build_model("resnet18", 1, 2)
    with pytest.raises(ValueError, match="unknown representation layer 'penultimate'"):
        representations(model, torch.rand(2, 1, 32, 32), layer="penultimate")
    toy = LowRankFeatures(4, 8, seed=0)  # neither a ResNet nor a VGG
    with pytest.raises(TypeError, match="needs a torchvision ResNet or VGG"):
        representations(toy, torch.rand(2, 1, 2, 2), layer="last_conv_block")


def test_representation_dimension_measures_the_chosen_layer():
    torch.manual_seed(0)
    model = build_model("resnet18", 1, 2)
    x = torch.rand(30, 1, 64, 64)
    result = representation_dimension(model, x, k=10, batch_size=16, layer="last_conv_block")
    direct = intrinsic_dimension(representations(model, x, layer="last_conv_block"), k=10)
    assert result["d_repr_mle"] == pytest.approx(direct["d_mle"], rel=1e-6)
    assert result["d_repr_twonn"] == pytest.approx(direct["d_twonn"], rel=1e-6)
    pooled = representation_dimension(model, x, k=10, batch_size=16)
    assert pooled["d_repr_mle"] != result["d_repr_mle"]


def test_evaluate_per_sample_correctness_is_the_accuracy_of_the_same_predictions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x, y = torch.rand(10, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    result = evaluate(model, x, y, batch_size=4, per_sample=True)
    with torch.no_grad():
        expected = model(x).argmax(1) == y
    assert torch.equal(result["correct"], expected) and result["correct"].sum().item() / 10 == result["accuracy"]
    assert "correct" not in evaluate(model, x, y)


class FixedLogits(nn.Module):
    """Returns the logits stored for each input image, indexed by the image's first pixel."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so the model has a device

    def forward(self, x):
        return self.logits[x[:, 0, 0, 0].long()] + 0 * self.anchor


def test_prediction_summary_counts_noise_predictions_and_real_class_accuracy():
    """Fan & Yezzi's noise class: a three-output model on the binary test set, counted by hand."""
    logits = [[2.0, 1.0, 0.0],   # predicts 0 (real argmax 0)
              [0.0, 1.0, 3.0],   # predicts noise; among the real classes 1
              [1.0, 0.0, 5.0],   # predicts noise; among the real classes 0
              [0.0, 2.0, 1.0]]   # predicts 1
    model = FixedLogits(logits)
    images = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    labels = torch.tensor([0, 1, 1, 1])
    summary = prediction_summary(model, images, labels, real_classes=2, batch_size=3)
    assert summary["noise_predicted_fraction"] == 2 / 4
    assert summary["test_accuracy_real_classes"] == 3 / 4  # the second image is right among the real classes
    assert evaluate(model, images, labels)["accuracy"] == 2 / 4  # a noise prediction is wrong
    two_outputs = FixedLogits([row[:2] for row in logits])
    plain = prediction_summary(two_outputs, images, labels)
    assert math.isnan(plain["noise_predicted_fraction"])
    assert plain["test_accuracy_real_classes"] == evaluate(two_outputs, images, labels)["accuracy"]


def test_filter_rank_is_the_rank_of_the_first_convolution():
    torch.manual_seed(0)
    model = build_model("resnet18", 1, 2)
    with torch.no_grad():  # 64 filters spanning a 3-dimensional space of 7x7 kernels
        basis = torch.randn(3, 49)
        model.conv1.weight.copy_((torch.randn(64, 3) @ basis).reshape(64, 1, 7, 7))
    assert filter_rank(model, energy=0.999999)["filter_energy_rank"] == 3
    assert 1 <= filter_rank(model)["filter_effective_rank"] <= 3


def test_filter_update_rank_is_the_rank_of_what_training_changed():
    torch.manual_seed(1)
    initial = build_model("resnet18", 1, 2)
    trained = copy.deepcopy(initial)
    with torch.no_grad():  # a rank-2 change of a full-rank random filter bank
        trained.conv1.weight.add_((torch.randn(64, 2) @ torch.randn(2, 49)).reshape(64, 1, 7, 7))
    ranks = filter_rank(trained, energy=0.999999, initial=initial)
    assert ranks["filter_update_energy_rank"] == 2 and ranks["filter_energy_rank"] > 40
    assert "filter_update_energy_rank" not in filter_rank(trained)
