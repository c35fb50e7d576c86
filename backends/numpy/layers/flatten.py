"""Flatten in NumPy: a reshape forward, the inverse reshape backward."""
from __future__ import annotations


def forward(layer, params, buffers, x, train):
    """x (batch, d1, d2, ...) -> (batch, d1 * d2 * ...), C order; the cache is x's shape."""
    return x.reshape(x.shape[0], -1), x.shape


def backward(layer, params, shape, d_y, grads, need_input_grad):
    """dL/dx is dL/dy reshaped back to x's shape (batch, d1, d2, ...)."""
    return d_y.reshape(shape)
