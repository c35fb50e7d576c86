"""max_pool1d in NumPy: forward and backward in ``_pool.py`` (shared by the pooling kinds)."""
from __future__ import annotations

from ._pool import max_backward, max_forward


def forward(layer, params, buffers, x, train):
    """x (batch, C, *n) -> (y (batch, C, *out), cache)."""
    return max_forward(layer, x)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """dL/dx (batch, C, *n) from dL/dy (batch, C, *out); no parameters."""
    return max_backward(layer, cache, d_y) if need_input_grad else None
