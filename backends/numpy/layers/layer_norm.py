"""LayerNorm in NumPy: the forward pass caching x_hat and 1/sigma, and the
closed-form backward beside it; and the pieces RMSNorm (``rms_norm.py``) shares:
means over the normalised axes, written ``sum * (1/n)`` (see the JAX backend's
``layer_norm.py`` for why), and the parameter gradients."""
from __future__ import annotations

import math

import numpy as np


def forward(layer, params, buffers, x, train):
    """x (batch, ..., *s) -> y, same shape, s the last ``layer.dims`` axes:

        mu = mean(x),  var = mean((x - mu)**2)   (biased, over s; two passes, not E[x²]-E[x]²)
        rstd = 1 / sqrt(var + eps),  x_hat = (x - mu) * rstd,  y = x_hat * weight + bias

    The cache is (x_hat, rstd)."""
    centred = x - mean(x, layer)                               # (batch, ..., *s)
    rstd = 1.0 / np.sqrt(mean(centred * centred, layer) + layer.eps)   # (batch, ..., 1, ...)
    x_hat = centred * rstd                                     # (batch, ..., *s)
    y = x_hat
    if "weight" in params:
        y = x_hat * params["weight"]
    if "bias" in params:
        y = y + params["bias"]
    return y, (x_hat, rstd)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """From dL/dy (batch, ..., *s): dL/dweight = sum(dy * x_hat) and dL/dbias =
    sum(dy) over every other axis, written into ``grads``; and, when asked,

        dL/dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)),  g = dy * weight,

    means over s: the mean and the variance couple each sample's elements."""
    x_hat, rstd = cache
    g = affine_grads(layer, params, x_hat, d_y, grads)        # (batch, ..., *s)
    if not need_input_grad:
        return None
    return rstd * (g - mean(g, layer) - x_hat * mean(g * x_hat, layer))


def mean(a, layer):
    """mean over the normalised axes, keeping them: (batch, ..., *s) -> (batch, ..., 1, ...)."""
    n = math.prod(a.shape[-layer.dims:])
    return a.sum(axis=tuple(range(-layer.dims, 0)), keepdims=True) * (1.0 / n)


def affine_grads(layer, params, x_hat, d_y, grads):
    """dL/dweight = sum(dy * x_hat), dL/dbias = sum(dy), over every axis but the
    normalised ones: each (*s,), written into ``grads``. Returns g = dy * weight
    (batch, ..., *s), the gradient with respect to x_hat."""
    if "weight" not in params:
        return d_y
    leading = tuple(range(d_y.ndim - layer.dims))           # batch and any unnormalised axes
    (d_y * x_hat).sum(axis=leading, out=grads["weight"])   # (*s,)
    if "bias" in params:
        d_y.sum(axis=leading, out=grads["bias"])           # (*s,)
    return d_y * params["weight"]                          # (batch, ..., *s)
