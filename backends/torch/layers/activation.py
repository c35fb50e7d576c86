"""Activation in torch: the function elementwise; autograd differentiates it."""
from __future__ import annotations

from ..activations import ACTIVATIONS


def forward(layer, params, buffers, x, train):
    """x (batch, ...) -> f(x) (batch, ...)."""
    return ACTIVATIONS[layer.name](x, **layer.kwargs)
