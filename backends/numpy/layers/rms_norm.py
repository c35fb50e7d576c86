"""RMSNorm in NumPy: the forward pass caching x_hat and 1/rms, and the
closed-form backward beside it."""
from __future__ import annotations

import numpy as np

from .layer_norm import affine_grads, mean


def forward(layer, params, buffers, x, train):
    """x (batch, ..., *s) -> y, same shape, s the last ``layer.dims`` axes:

        rrms = 1 / sqrt(mean(x**2) + eps)   (over s; eps None: finfo(x.dtype).eps)
        x_hat = x * rrms,  y = x_hat * weight

    The cache is (x_hat, rrms)."""
    eps = layer.eps_for(x.dtype)
    rrms = 1.0 / np.sqrt(mean(x * x, layer) + eps)             # (batch, ..., 1, ...)
    x_hat = x * rrms                                           # (batch, ..., *s)
    y = x_hat * params["weight"] if "weight" in params else x_hat
    return y, (x_hat, rrms)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """From dL/dy (batch, ..., *s): dL/dweight = sum(dy * x_hat) over every other
    axis, written into ``grads``; and, when asked,

        dL/dx = rrms * (g - x_hat * mean(g * x_hat)),  g = dy * weight,

    the mean over s (d rrms / dx = -rrms**3 x / n; no centring term)."""
    x_hat, rrms = cache
    g = affine_grads(layer, params, x_hat, d_y, grads)        # (batch, ..., *s)
    if not need_input_grad:
        return None
    return rrms * (g - x_hat * mean(g * x_hat, layer))
