"""Flatten in torch: ``torch.flatten(x, 1)``, as ``torch.nn.Flatten()``."""
from __future__ import annotations

import torch


def forward(layer, params, buffers, x, train):
    """x (batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""
    return torch.flatten(x, 1)
