"""Activation in JAX: the function elementwise; ``jax.grad`` differentiates it."""
from __future__ import annotations

from ..activations import ACTIVATIONS


def forward(layer, params, buffers, x, train):
    """x (batch, ...) -> (f(x) (batch, ...), buffers unchanged)."""
    return ACTIVATIONS[layer.name](x, **layer.kwargs), buffers
