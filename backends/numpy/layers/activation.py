"""Activation in NumPy: f(z) elementwise, and f'(z) times the incoming gradient."""
from __future__ import annotations

from ..activations import ACTIVATIONS


def forward(layer, params, buffers, z, train):
    """z (batch, ...) -> f(z) (batch, ...); the cache is z."""
    f, _ = ACTIVATIONS[layer.name]
    return f(z, **layer.kwargs), z


def backward(layer, params, z, d_y, grads, need_input_grad):
    """dL/dz = dL/dy * f'(z), (batch, ...)."""
    _, df = ACTIVATIONS[layer.name]
    return d_y * df(z, **layer.kwargs)
