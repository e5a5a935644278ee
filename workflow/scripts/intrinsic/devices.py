"""Where a computation runs: the one meaning of a device option (config ``training.device``,
training, evaluation, the estimators' distance products, benchmarks). torch only, no torchvision:
the estimators import it."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(device: str | torch.device | None = None, model: nn.Module | None = None) -> torch.device:
    """The one meaning of a device option everywhere (config ``training.device``, training, evaluation).

    None: the model's device when a model is given, else the CPU. "auto": CUDA when there is a GPU,
    else the CPU. Otherwise "cpu" or "cuda[:N]" (or a torch.device); CUDA without a GPU is an error
    rather than a silent fallback, so a cluster job on a node without a GPU fails loudly.
    """
    if device is None:
        if model is None:
            return torch.device("cpu")
        # The device of the model's parameters (or buffers); the CPU for a model with neither.
        return next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return resolved
