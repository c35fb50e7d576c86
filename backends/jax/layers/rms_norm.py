"""RMSNorm in JAX, pure jnp: x * 1 / sqrt(mean(x**2) + eps) * weight, eps None
meaning ``finfo(x.dtype).eps`` (``RMSNorm.eps_for``), as torch."""
from __future__ import annotations

import jax.numpy as jnp

from .layer_norm import mean


def forward(layer, params, buffers, x, train):
    """x (batch, ..., *s) -> ((same shape), buffers unchanged)."""
    rrms = 1.0 / jnp.sqrt(mean(x * x, layer) + layer.eps_for(x.dtype))
    y = x * rrms
    if "weight" in params:
        y = y * params["weight"]
    return y, buffers
