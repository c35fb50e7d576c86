"""BatchNorm in JAX, pure: training mode returns new running statistics.

The variance is the two-pass mean((x - mean)**2), as torch and the NumPy backend
compute it, not flax's default E[x**2] - E[x]**2, which cancels catastrophically
for inputs whose mean is large against their spread (layer-traps.md X6)."""
from __future__ import annotations

import jax.numpy as jnp


def forward(layer, params, buffers, x, train):
    """x (batch, C, *spatial) -> (the same shape, new buffers)."""
    axes = (0,) + tuple(range(2, x.ndim))                     # every axis but the channel
    expand = (slice(None),) + (None,) * (x.ndim - 2)          # (C,) -> (C, 1, ...)
    if train:
        n = x.size // x.shape[1]
        mean = x.mean(axis=axes)                              # (C,)
        centred = x - mean[expand]                            # (batch, C, *spatial)
        var = (centred * centred).mean(axis=axes)             # (C,) biased
        m = layer.momentum
        buffers = {
            "running_mean": (1 - m) * buffers["running_mean"] + m * mean,
            "running_var": (1 - m) * buffers["running_var"] + m * var * (n / (n - 1)),
            "num_batches_tracked": buffers["num_batches_tracked"] + 1,
        }
    else:
        centred = x - buffers["running_mean"][expand]
        var = buffers["running_var"]
    inv_std = 1.0 / jnp.sqrt(var + layer.eps)                 # (C,) eps inside the sqrt
    x_hat = centred * inv_std[expand]                         # (batch, C, *spatial)
    if layer.affine:
        x_hat = x_hat * params["weight"][expand] + params["bias"][expand]
    return x_hat, buffers
