"""Test-set evaluation of trained models: loss/accuracy, adversarial robustness, Jacobian norm, d_repr.

Conventions shared by every function here:

* images are float tensors in [0, 1] of shape (n, C, H, W) (anything else is cast to float32),
  labels an int64 tensor of shape (n,);
* the model runs in eval mode (BatchNorm uses its running statistics, so samples in a batch are
  independent) and its previous train/eval mode is restored afterwards;
* everything is computed in float32, batch by batch, on ``device`` (default: the device of the
  model's parameters; the model is moved there if a device is given). Images stay where they are
  and only one batch at a time is moved;
* test-set quantities are means over test points (sums over batches divided by n, not means of
  batch means).

Adversarial attacks are L-infinity attacks in pixel units of the [0, 1] scale (the workflow uses
eps in {1, 2, 4, 8}/255): FGSM (Goodfellow et al., 2015) and PGD (Madry et al., 2018) with the
usual random start and step size 2.5 * eps / steps.

The Jacobian norm follows Novak et al. (2018), "Sensitivity and Generalization in Neural
Networks: an Empirical Study" (ICLR 2018), Sec. 4.1: the Frobenius norm of the input-output
Jacobian J(x) = d f_sigma(x) / dx^T of the network's *softmax output* (class probabilities)
with respect to the input, averaged over test points: mean_i ||J(x_i)||_F. It is computed
exactly, with one backward pass per class over the batch (the gradient of sum_i p_k(x_i) with
respect to the batch gives row k of every sample's Jacobian, because samples do not interact in
eval mode).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attacked import encode_image, select_examples
from .estimators import intrinsic_dimension
from .devices import resolve_device
from .models import eval_mode, representations
from .rank import first_conv_weight_matrix, rank_summary

ATTACKS = ("fgsm", "pgd")


# --------------------------------------------------------------------------------------- helpers
def _on_device(model: nn.Module, device) -> torch.device:
    """The resolved device (devices.resolve_device; None = where the model is), the model moved there."""
    device = resolve_device(device, model)
    model.to(device)
    return device


def _check_inputs(images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    if images.ndim < 2:
        raise ValueError(f"expected images of shape (n, C, H, W), got {tuple(images.shape)}")
    if labels is not None and labels.shape != (len(images),):
        raise ValueError(f"expected labels of shape ({len(images)},), got {tuple(labels.shape)}")


def _batches(images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, device: torch.device):
    """Yield (x, y) batches as float32 / int64 on ``device``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device=device, dtype=torch.float32)
        y = None if labels is None else labels[start : start + batch_size].to(device=device, dtype=torch.long)
        yield x, y


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to x (parameters get no .grad)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _loss_and_hits(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Summed cross-entropy (float64 accumulation) and which predictions are correct."""
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, reduction="none").double().sum().item()
        hits = logits.argmax(dim=1) == y
    return loss, hits


def _loss_and_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """Summed cross-entropy (float64 accumulation) and number of correct predictions."""
    loss, hits = _loss_and_hits(model, x, y)
    return loss, int(hits.sum().item())


# ------------------------------------------------------------------------------------ evaluation
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256,
             device=None, per_sample: bool = False) -> dict:
    """{"loss": mean cross-entropy, "accuracy": fraction correct} over the whole set; with
    ``per_sample`` also "correct", a bool tensor (n,) on the CPU of which images are classified
    correctly (from the same predictions, so its mean is the accuracy)."""
    _check_inputs(images, labels)
    device = _on_device(model, device)
    total_loss, total_correct, hits = 0.0, 0, []
    with eval_mode(model):
        for x, y in _batches(images, labels, batch_size, device):
            loss, batch_hits = _loss_and_hits(model, x, y)
            total_loss += loss
            total_correct += int(batch_hits.sum().item())
            if per_sample:
                hits.append(batch_hits.cpu())
    n = len(images)
    result = {"loss": total_loss / n, "accuracy": total_correct / n}
    if per_sample:
        result["correct"] = torch.cat(hits)
    return result


# --------------------------------------------------------------------------------------- attacks
def _fgsm_step(x: torch.Tensor, gradient_sign: torch.Tensor, eps: float) -> torch.Tensor:
    """clamp(x + eps * sign(grad), 0, 1); the sign does not depend on eps, so one gradient
    serves every budget."""
    return (x.detach() + eps * gradient_sign).clamp_(0.0, 1.0)


def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    if eps == 0:
        return x.detach().clone()
    return _fgsm_step(x, _input_gradient(model, x, y).sign(), eps)


def _pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
         step_size: float | None, random_start: bool, generator: torch.Generator | None) -> torch.Tensor:
    if steps < 1:
        raise ValueError(f"PGD needs at least one step, got {steps}")
    x0 = x.detach()
    if eps == 0:
        return x0.clone()
    if step_size is None:
        step_size = 2.5 * eps / steps
    lower, upper = (x0 - eps).clamp(min=0.0), (x0 + eps).clamp(max=1.0)
    if random_start:
        # Drawn on the CPU so that a CPU generator gives the same start on every device.
        noise = torch.rand(x0.shape, generator=generator, dtype=torch.float32)
        adv = x0 + (2 * noise.to(x0.device) - 1) * eps
        adv = torch.max(torch.min(adv, upper), lower)
    else:
        adv = x0.clone()
    for _ in range(steps):
        grad = _input_gradient(model, adv, y)
        adv = adv + step_size * grad.sign()
        # Projection onto the eps-ball intersected with the [0, 1] box (both are boxes).
        adv = torch.max(torch.min(adv, upper), lower)
    return adv.detach()


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, device=None) -> torch.Tensor:
    """Fast gradient sign method: clamp(x + eps * sign(grad_x CE(f(x), y)), 0, 1).

    One batch (all of ``images`` at once); returns the adversarial images on ``device``.
    """
    _check_inputs(images, labels)
    device = _on_device(model, device)
    x = images.to(device=device, dtype=torch.float32)
    y = labels.to(device=device, dtype=torch.long)
    with eval_mode(model):
        return _fgsm(model, x, y, float(eps))


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, generator: torch.Generator | None = None,
        device=None) -> torch.Tensor:
    """L-infinity projected gradient descent (Madry et al., 2018) on the cross-entropy.

    Starts from x + U(-eps, eps) (drawn from the CPU ``generator``; clipped to [0, 1]) when
    ``random_start``, then takes ``steps`` signed-gradient steps of ``step_size`` (default
    2.5 * eps / steps), each followed by projection onto {|x' - x|_inf <= eps} and [0, 1].
    Returns the last iterate (no best-iterate selection).
    """
    _check_inputs(images, labels)
    device = _on_device(model, device)
    x = images.to(device=device, dtype=torch.float32)
    y = labels.to(device=device, dtype=torch.long)
    with eval_mode(model):
        return _pgd(model, x, y, float(eps), steps, step_size, random_start, generator)


def attack_penalties(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps_list: Iterable[float],
                     attacks: Sequence[str] = ATTACKS, batch_size: int = 256, pgd_steps: int = 10,
                     seed: int = 0, device=None, clean: dict | None = None) -> list[dict]:
    """Robustness records, one per (attack, eps), computed batch-wise over the test set.

    Each record: {"attack", "eps", "n", "clean_loss", "attacked_loss", "loss_penalty",
    "clean_accuracy", "attacked_accuracy", "accuracy_penalty"}, where losses are mean
    cross-entropies over the set, loss_penalty = attacked_loss - clean_loss and
    accuracy_penalty = clean_accuracy - attacked_accuracy. PGD's random starts come from one
    CPU generator per (attack, eps) seeded with ``seed``, so each record is reproducible on its
    own, whatever the other attacks and eps values requested. ``clean``: the result of
    :func:`evaluate` on the same images and labels when the caller has it already.
    """
    _check_inputs(images, labels)
    eps_list = [float(e) for e in eps_list]
    for attack in attacks:
        if attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    if any(e < 0 for e in eps_list):
        raise ValueError(f"eps must be non-negative, got {eps_list}")
    device = _on_device(model, device)
    keys = [(attack, eps) for attack in attacks for eps in eps_list]
    generators = {key: torch.Generator().manual_seed(seed) for key in keys if key[0] == "pgd"}
    if clean is None:
        clean = evaluate(model, images, labels, batch_size, device)
    attacked_loss = {key: 0.0 for key in keys}
    attacked_correct = {key: 0 for key in keys}
    with eval_mode(model):
        for x, y in _batches(images, labels, batch_size, device):
            fgsm_sign = _input_gradient(model, x, y).sign() if "fgsm" in attacks else None
            for key in keys:
                attack, eps = key
                if attack == "fgsm":
                    adv = _fgsm_step(x, fgsm_sign, eps)
                else:
                    adv = _pgd(model, x, y, eps, pgd_steps, None, True, generators[key])
                loss, correct = _loss_and_correct(model, adv, y)
                attacked_loss[key] += loss
                attacked_correct[key] += correct
    n = len(images)
    records = []
    for key in keys:
        attack, eps = key
        c_loss, a_loss = clean["loss"], attacked_loss[key] / n
        c_acc, a_acc = clean["accuracy"], attacked_correct[key] / n
        records.append({
            "attack": attack, "eps": eps, "n": n,
            "clean_loss": c_loss, "attacked_loss": a_loss, "loss_penalty": a_loss - c_loss,
            "clean_accuracy": c_acc, "attacked_accuracy": a_acc, "accuracy_penalty": c_acc - a_acc,
        })
    return records


def attacked_examples(model: nn.Module, images, labels, cache_index, n: int, eps_255: float,
                      device=None) -> dict:
    """App. D.1: ``n`` test images (``attacked.select_examples``: both classes, in test order)
    and their FGSM images at eps = eps_255 / 255, with the model's predictions on both.

    ``images``: the test set as uint8 (n_test, C, H, W) (the cache's scale: x = u / 255), in the
    order of ``labels`` and ``cache_index``. Returns {"attack", "eps_255", "eps", "examples"}:
    per example its ``test_index`` (position in that order), ``cache_index``, ``label``,
    ``clean_prediction`` and ``clean_probability`` (argmax over all outputs and its softmax
    probability), the same for the attacked image, and ``attacked_image``
    (``attacked.encode_image``: exact uint8 for an integer eps_255, else float16). The
    attacked image is ``fgsm``'s output itself; the predictions are on that float image."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"attacked examples: expected the uint8 test images of the cache, got {images.dtype}")
    labels = np.asarray(labels, dtype=np.int64)
    chosen = select_examples(labels, int(n))
    eps = float(eps_255) / 255.0
    x = torch.from_numpy(images[chosen]).float().div_(255.0)
    y = torch.from_numpy(labels[chosen])
    adv = fgsm(model, x, y, eps, device=device)
    device = adv.device
    with eval_mode(model), torch.no_grad():
        clean_p = torch.softmax(model(x.to(device)).float(), dim=1).cpu()
        adv_p = torch.softmax(model(adv).float(), dim=1).cpu()
    adv = adv.cpu().numpy()
    examples = []
    for row, position in enumerate(chosen):
        clean_k, adv_k = int(clean_p[row].argmax()), int(adv_p[row].argmax())
        examples.append({
            "test_index": int(position), "cache_index": int(cache_index[position]), "label": int(labels[position]),
            "clean_prediction": clean_k, "clean_probability": float(clean_p[row, clean_k]),
            "attacked_prediction": adv_k, "attacked_probability": float(adv_p[row, adv_k]),
            "attacked_image": encode_image(adv[row], eps_255),
        })
    return {"attack": "fgsm", "eps_255": float(eps_255), "eps": eps, "examples": examples}


# -------------------------------------------------------------------------------- Jacobian norm
def jacobian_norms(model: nn.Module, images: torch.Tensor, batch_size: int = 256, output: str = "softmax",
                   device=None) -> torch.Tensor:
    """Per-sample ||d out(x) / dx||_F, shape (n,), float32 on the CPU.

    ``output="softmax"`` (default; Novak et al., 2018) differentiates the class probabilities,
    ``output="logits"`` the raw outputs. Exact: K backward passes per batch for K classes.
    """
    _check_inputs(images)
    if output not in ("softmax", "logits"):
        raise ValueError(f"output must be 'softmax' or 'logits', got {output!r}")
    device = _on_device(model, device)
    norms = []
    with eval_mode(model):
        for x, _ in _batches(images, None, batch_size, device):
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                out = model(x)
                if output == "softmax":
                    out = torch.softmax(out, dim=1)
                sq = torch.zeros(len(x), dtype=torch.float32, device=device)
                n_classes = out.shape[1]
                for k in range(n_classes):
                    (grad,) = torch.autograd.grad(out[:, k].sum(), x, retain_graph=k < n_classes - 1)
                    sq += grad.reshape(len(x), -1).pow(2).sum(dim=1)
            norms.append(sq.sqrt().detach().cpu())
    return torch.cat(norms)


def jacobian_norm(model: nn.Module, images: torch.Tensor, batch_size: int = 256, device=None) -> float:
    """Mean over test points of the Frobenius norm of d softmax(f(x)) / dx (Novak et al., 2018)."""
    return float(jacobian_norms(model, images, batch_size, "softmax", device).double().mean())


# ------------------------------------------------------------------------- representation d_repr
def representation_dimension(model: nn.Module, images: torch.Tensor, k: int = 20, batch_size: int = 256,
                             device=None, layer: str = "final_linear_input",
                             rank_energy: float | None = None) -> dict:
    """Intrinsic dimension of the representations of ``images`` at ``layer`` (default: the final
    linear layer's inputs; ``models.REPRESENTATION_LAYERS`` lists the choices).

    The same estimator code (and k) as for the data's d_data: returns {"d_repr_mle",
    "d_repr_twonn", "n_repr_duplicates"}; duplicates (e.g. representations collapsed by ReLU)
    count once, as in ``estimators.intrinsic_dimension``. With ``rank_energy``, also the
    numerical rank of the centred representation matrix by the data's definition
    (``rank.rank_summary``): "repr_energy_rank", "repr_effective_rank".
    """
    _check_inputs(images)
    device = _on_device(model, device)
    features = representations(model, images, batch_size, layer)
    result = intrinsic_dimension(features, k=k, device=device)  # the neighbour search on the model's device
    measures = {"d_repr_mle": result["d_mle"], "d_repr_twonn": result["d_twonn"],
                "n_repr_duplicates": result["n_duplicates"]}
    if rank_energy is not None:
        measures.update(rank_summary(features, energy=rank_energy, center=True, prefix="repr_"))
    return measures


def filter_rank(model: nn.Module, energy: float = 0.99, initial: nn.Module | None = None) -> dict:
    """Numerical rank of the learned filters: the first convolution's weights as an
    (out_channels, in_channels * kh * kw) matrix, not centred (a filter bank's rank is that of its
    span, and centring would remove a shared filter); "filter_energy_rank", "filter_effective_rank".

    With ``initial`` (the same model at initialization, ``models.initial_model``), also the rank
    of what training changed, W - W_0: "filter_update_energy_rank", "filter_update_effective_rank".
    A randomly initialized filter bank has nearly full rank and a short training moves it little,
    so the rank of W mostly shows the initialization; that of W - W_0 is the part gradient
    descent learned (Zhang et al.'s analysis starts from a small initialization, where the two
    coincide)."""
    weights = first_conv_weight_matrix(model)
    ranks = rank_summary(weights, energy=energy, center=False, prefix="filter_")
    if initial is not None:
        update = weights - first_conv_weight_matrix(initial)
        ranks.update(rank_summary(update, energy=energy, center=False, prefix="filter_update_"))
    return ranks


def prediction_summary(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, real_classes: int = 2,
                       batch_size: int = 256, device=None) -> dict:
    """For a model with extra outputs beyond the ``real_classes`` of the task (Fan & Yezzi's
    noise class): "test_accuracy_real_classes", the accuracy of the argmax over the real classes'
    logits only, and "noise_predicted_fraction", the fraction of images whose argmax over all
    outputs is an extra class (NaN for a model without extra outputs, where it cannot happen)."""
    _check_inputs(images, labels)
    device = _on_device(model, device)
    correct_real, predicted_extra, outputs = 0, 0, real_classes
    with eval_mode(model), torch.no_grad():
        for x, y in _batches(images, labels, batch_size, device):
            logits = model(x).float()
            outputs = logits.shape[1]
            correct_real += int((logits[:, :real_classes].argmax(dim=1) == y).sum().item())
            predicted_extra += int((logits.argmax(dim=1) >= real_classes).sum().item())
    n = len(images)
    return {"test_accuracy_real_classes": correct_real / n,
            "noise_predicted_fraction": predicted_extra / n if outputs > real_classes else float("nan")}
