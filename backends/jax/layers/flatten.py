"""Flatten in JAX: a reshape (row-major, as NumPy and torch)."""
from __future__ import annotations


def forward(layer, params, buffers, x, train):
    """x (batch, d1, d2, ...) -> ((batch, d1 * d2 * ...), buffers unchanged)."""
    return x.reshape(x.shape[0], -1), buffers
