"""The study's CNNs: torchvision ResNet-18/34/50 and VGG-13/16/19, trained from scratch.

The input layer is adapted to the dataset's channel count and the head to the number of
classes; everything else is torchvision's architecture unchanged, except for one opt-in knob:

``vgg_pool_size``: torchvision's VGG average-pools its last feature map to 7x7 before a
25088 -> 4096 linear layer (102M of VGG-13's 129M parameters). That matches 224 px inputs, whose
feature map is 7x7. At 32 px the feature map is 1x1 and the pool only repeats it 49 times, so a
pool size of 1 (512 -> 4096) computes the same function family with 4.5x fewer parameters and
3.6x faster CPU epochs. The default is torchvision's 7; the embedded CPU config uses 1.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .devices import resolve_device
from .io import ArtefactError, load_verified, rebuild_hint, save_verified
from torchvision import models as tv_models

ARCHITECTURES = {
    "resnet18": tv_models.resnet18,
    "resnet34": tv_models.resnet34,
    "resnet50": tv_models.resnet50,
    "vgg13": tv_models.vgg13,
    "vgg16": tv_models.vgg16,
    "vgg19": tv_models.vgg19,
}


def build_model(name: str, in_channels: int, num_classes: int = 2, vgg_pool_size: int = 7) -> nn.Module:
    """A randomly initialized torchvision model for (in_channels, H, W) inputs."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    if vgg_pool_size < 1:
        raise ValueError(f"vgg_pool_size must be >= 1, got {vgg_pool_size}")
    model = ARCHITECTURES[name](weights=None, num_classes=num_classes)
    if in_channels != 3:
        if name.startswith("resnet"):
            model.conv1 = _with_in_channels(model.conv1, in_channels)
        else:
            model.features[0] = _with_in_channels(model.features[0], in_channels)
    if name.startswith("vgg") and vgg_pool_size != 7:
        first = model.classifier[0]
        model.avgpool = nn.AdaptiveAvgPool2d((vgg_pool_size, vgg_pool_size))
        model.classifier[0] = nn.Linear(512 * vgg_pool_size**2, first.out_features)
        # torchvision's VGG init for linear layers (normal(0, 0.01), zero bias).
        nn.init.normal_(model.classifier[0].weight, 0, 0.01)
        nn.init.zeros_(model.classifier[0].bias)
    return model


def initial_model(architecture: dict, seed: int) -> nn.Module:
    """The model as a run with ``seed`` starts training (``training.train``): the global RNG
    seeded, then ``build_model(**architecture)``. Rebuilding it later gives the exact initial
    weights, e.g. to measure what training changed (``evaluation.filter_rank``)."""
    torch.manual_seed(seed)
    return build_model(**architecture)


def save_model(path: str | Path, model: nn.Module, architecture: dict) -> None:
    """Write the float32 weights and the ``build_model`` arguments that rebuild them, atomically,
    with a digest (``io.save_verified``)."""
    state = {key: value.detach().float().cpu() if value.is_floating_point() else value.detach().cpu()
             for key, value in model.state_dict().items()}
    save_verified(path, {"architecture": dict(architecture), "state_dict": state})


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode on ``device``, its architecture dict) from a ``save_model`` file; a
    corrupt, truncated or foreign file is an ``ArtefactError`` naming it."""
    try:
        saved = load_verified(path)
        architecture = saved["architecture"]
        model = build_model(**architecture)
        model.load_state_dict(saved["state_dict"])
    except (ArtefactError, KeyError, TypeError, ValueError, RuntimeError) as error:
        message = str(error) if isinstance(error, ArtefactError) else f"{path}: not a model file ({error})"
        raise ArtefactError(f"model file {message}; {rebuild_hint(path)}") from None
    return model.to(device).eval(), architecture


def _with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A fresh convolution like ``conv`` but reading ``in_channels`` channels."""
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


@contextmanager
def eval_mode(model: nn.Module):
    """Run the block with the model in eval mode; restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def final_linear(model: nn.Module) -> nn.Linear:
    """The last linear layer; its input is the representation whose dimension d_repr we measure."""
    layer = model.fc if hasattr(model, "fc") else model.classifier[-1]
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"expected the final layer to be nn.Linear, got {type(layer).__name__}")
    return layer


# Where d_repr is measured (config/README.md, evaluation.representation_layer):
#   final_linear_input  the input of the last nn.Linear (paper's text): ResNet: the globally
#                       average-pooled layer4 output (512 / 2048 features); VGG: the output of
#                       the second hidden linear layer after its ReLU and (eval-mode) dropout, 4096.
#   last_conv_block     the output of the last convolutional block, before any global pooling,
#                       flattened: ResNet: layer4 (C x H/32 x W/32); VGG: ``features`` (ending
#                       with its fifth max-pool, 512 x H/32 x W/32), before ``avgpool``.
#   authors_penultimate the layer the released code hooks (which_repr_layer = "penultimate" in
#                       estimate_reprdim_allmodels.py, depth from nnutils.get_repr_layer_depth):
#                       ResNet: layer4's output (= last_conv_block); VGG: the output of the second
#                       hidden linear layer, classifier[3], BEFORE its ReLU.
REPRESENTATION_LAYERS = ("final_linear_input", "last_conv_block", "authors_penultimate")


def representation_hook(model: nn.Module, layer: str = "final_linear_input") -> tuple[nn.Module, bool]:
    """(module to hook, True to take its input / False its output) for ``layer``."""
    if layer not in REPRESENTATION_LAYERS:
        raise ValueError(f"unknown representation layer {layer!r}; choose one of {', '.join(REPRESENTATION_LAYERS)}")
    if layer == "final_linear_input":
        return final_linear(model), True
    if hasattr(model, "layer4"):  # ResNet: both other choices are layer4's output
        return model.layer4, False
    if not (hasattr(model, "features") and hasattr(model, "classifier")):
        raise TypeError(f"representation layer {layer!r} needs a torchvision ResNet or VGG, "
                        f"got {type(model).__name__}")
    if layer == "last_conv_block":
        return model.features, False
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise TypeError(f"expected a VGG classifier with hidden linear layers, got {len(linears)} linear layer(s)")
    return linears[-2], False


@torch.no_grad()
def representations(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
                    layer: str = "final_linear_input") -> torch.Tensor:
    """The representations of ``images`` at ``layer`` (see REPRESENTATION_LAYERS), float32, eval
    mode, flattened to shape (n, features)."""
    module, take_input = representation_hook(model, layer)
    captured: list[torch.Tensor] = []

    def capture(_module, inputs, output):
        # copy=True: VGG's next ReLU is in-place and would otherwise overwrite a CPU capture.
        captured.append((inputs[0] if take_input else output).flatten(1).to("cpu", torch.float32, copy=True))

    hook = module.register_forward_hook(capture)
    device = resolve_device(None, model)
    try:
        with eval_mode(model):
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size].to(device=device, dtype=torch.float32))
    finally:
        hook.remove()
    return torch.cat(captured)
