"""The study's CNNs: torchvision ResNet-18/34/50 and VGG-13/16/19, trained from scratch.

The input layer is adapted to the dataset's channel count and the head to the number of
classes; everything else is torchvision's architecture unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torchvision import models as tv_models

ARCHITECTURES = {
    "resnet18": tv_models.resnet18,
    "resnet34": tv_models.resnet34,
    "resnet50": tv_models.resnet50,
    "vgg13": tv_models.vgg13,
    "vgg16": tv_models.vgg16,
    "vgg19": tv_models.vgg19,
}


def build_model(name: str, in_channels: int, num_classes: int = 2) -> nn.Module:
    """A randomly initialized torchvision model for (in_channels, H, W) inputs."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    model = ARCHITECTURES[name](weights=None, num_classes=num_classes)
    if in_channels != 3:
        if name.startswith("resnet"):
            model.conv1 = _with_in_channels(model.conv1, in_channels)
        else:
            model.features[0] = _with_in_channels(model.features[0], in_channels)
    return model


def _with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A fresh convolution like ``conv`` but reading ``in_channels`` channels."""
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (or buffers); CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


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


@torch.no_grad()
def representations(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Inputs of the final linear layer for ``images`` (float32, eval mode), shape (n, features)."""
    captured: list[torch.Tensor] = []
    hook = final_linear(model).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].float().cpu()))
    device = model_device(model)
    try:
        with eval_mode(model):
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size].to(device=device, dtype=torch.float32))
    finally:
        hook.remove()
    return torch.cat(captured)
