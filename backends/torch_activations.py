"""Activations in PyTorch, following ``nnparity.shared.activations``.

Derivatives come from autograd, so each function here must have the
breakpoint derivative that the shared table specifies.
"""
from __future__ import annotations

import torch


def identity(x):
    return x


ACTIVATIONS = {
    "identity": identity,
    "relu": torch.relu,   # autograd gives relu'(0) = 0; torch.maximum would give 0.5
}
