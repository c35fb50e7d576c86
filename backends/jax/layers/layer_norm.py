"""LayerNorm in JAX, pure jnp: mean, then the variance as mean((x - mu)**2).

The two-pass variance, not E[x²] - E[x]²: the one-pass form cancels
catastrophically when |mean| >> std (flax's default "fast variance" gives errors
of ~1e3 on float32 inputs of mean 3000, std 1; layer-traps.md X6), and torch
computes the two-pass value. eps inside the square root; the normalisation is a
multiplication by rstd = 1 / sqrt(var + eps), as in the NumPy backend.

Means (here and in ``rms_norm.py``): XLA on CPU rewrites ``x / n`` as
``x * (1/n)`` (``jnp.mean`` is ``sum / n``; layer-traps.md X3), where NumPy's ``mean``
divides; so the NumPy and JAX backends both write the mean as
``sum * (1/n)``. The sums still add in different orders (NumPy pairwise, XLA its
own tree), so the backends agree to rounding, not bitwise, which is what the
normwise parity policy asks.
"""
from __future__ import annotations

import math

import jax.numpy as jnp


def forward(layer, params, buffers, x, train):
    """x (batch, ..., *s) -> ((same shape), buffers unchanged)."""
    centred = x - mean(x, layer)                               # (batch, ..., *s)
    rstd = 1.0 / jnp.sqrt(mean(centred * centred, layer) + layer.eps)
    y = centred * rstd
    if "weight" in params:
        y = y * params["weight"]
    if "bias" in params:
        y = y + params["bias"]
    return y, buffers


def mean(a, layer):
    """mean over the last ``layer.dims`` axes, keeping them."""
    n = math.prod(a.shape[-layer.dims:])
    return a.sum(axis=tuple(range(-layer.dims, 0)), keepdims=True) * (1.0 / n)
