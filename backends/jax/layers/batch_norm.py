"""BatchNorm in JAX, pure: training mode returns new running statistics.

The variance is the two-pass mean((x - mean)**2), as torch and the NumPy backend
compute it, not flax's default E[x**2] - E[x]**2, which cancels catastrophically
for inputs whose mean is large against their spread (layer-traps.md X6).

In a data-parallel run the batch is split across devices and the compiler
turns the sums into cross-device ones, so synchronised statistics need no code
here; per-replica statistics (``sync_batch_norm=False``) are written out, one
shard at a time, with replica 0's running statistics."""
from __future__ import annotations

import jax.numpy as jnp

from nnparity.shared.core.replicas import current_replica, running_as, shard_bounds


def forward(layer, params, buffers, x, train):
    """x (batch, C, *spatial) -> (the same shape, new buffers)."""
    replica = current_replica()
    if train and replica is not None and not replica.sync_batch_norm:
        return per_replica_forward(layer, params, buffers, x, replica.size)
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


def per_replica_forward(layer, params, buffers, x, count):
    """Training mode with each of ``count`` shards normalised by its own statistics;
    the running statistics are shard 0's."""
    pieces, kept = [], None
    with running_as(None):                                    # each shard as one device
        for start, stop in shard_bounds(x.shape[0], count):
            piece, new_buffers = forward(layer, params, buffers, x[start:stop], True)
            pieces.append(piece)                              # (shard, C, *spatial)
            kept = new_buffers if kept is None else kept
    return jnp.concatenate(pieces), kept
