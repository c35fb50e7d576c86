"""Activation in NumPy: f(z) elementwise, and f'(z) times the incoming gradient.

f'(z) is computed in the forward pass, beside f(z): GELU's f and f' share Phi(z), an
erfc per element that costs more than the rest of a transformer block, and this
evaluates it once per step instead of twice.
"""
from __future__ import annotations

from ..activations import ACTIVATIONS, value_and_derivative


def forward(layer, params, buffers, z, train):
    """z (batch, ...) -> f(z) (batch, ...); the cache is (z, f'(z)), f'(z) only when
    training (None otherwise)."""
    if not train:
        f, _ = ACTIVATIONS[layer.name]
        return f(z, **layer.kwargs), (z, None)
    y, dy_dz = value_and_derivative(layer.name, z, **layer.kwargs)
    return y, (z, dy_dz)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """dL/dz = dL/dy * f'(z), (batch, ...)."""
    _, dy_dz = cache
    return d_y * dy_dz
