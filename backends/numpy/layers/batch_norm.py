"""BatchNorm in NumPy: batch statistics in training mode (updating the running
statistics in place), running statistics in evaluation mode, and the closed-form
backward pass beside it.

In a data-parallel run with synchronised BatchNorm, "the batch" is the global
batch: every sum over it is the replica's sum plus the others'
(``all_reduce``), in the forward pass (count, mean, variance) and in the
backward pass (Σ dy, Σ dy·x̂); the parameters' gradients stay the shard's, the
training loop reduces them with every other gradient."""
from __future__ import annotations

import numpy as np

from nnparity.shared.core.replicas import current_replica, synced


def _axes(x):
    """Every axis but the channel axis 1: (0,), (0, 2) or (0, 2, 3)."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, ndim):
    """(C,) -> (C, 1, ...), broadcasting against (batch, C, *spatial)."""
    return v.reshape(v.shape + (1,) * (ndim - 2))


def forward(layer, params, buffers, x, train):
    """x (batch, C, *spatial) -> y of the same shape; the cache is (x̂, 1/σ, γ)
    with σ = sqrt(var + eps).

    Training: mean and biased var over n = batch * prod(spatial) values per
    channel; then, in place, running_mean = (1 - m) * running_mean + m * mean and
    running_var = (1 - m) * running_var + m * var * n / (n - 1) (torch's momentum m,
    the unbiased var), num_batches_tracked += 1. Evaluation: the running statistics."""
    axes = _axes(x)
    group = synced(current_replica()) if train else None
    if train and group is not None:                                 # over the global batch
        n = group.all_reduce(x.size // x.shape[1])
        mean = group.all_reduce(x.sum(axis=axes)) / n               # (C,)
        centred = x - _per_channel(mean, x.ndim)                    # (shard, C, *spatial)
        var = group.all_reduce((centred * centred).sum(axis=axes)) / n   # (C,) biased
    elif train:
        n = x.size // x.shape[1]
        mean = x.mean(axis=axes)                                    # (C,)
        centred = x - _per_channel(mean, x.ndim)                    # (batch, C, *spatial)
        var = (centred * centred).mean(axis=axes)                   # (C,) biased
    if train:
        m = layer.momentum
        buffers["running_mean"][...] = (1 - m) * buffers["running_mean"] + m * mean
        buffers["running_var"][...] = (1 - m) * buffers["running_var"] + m * var * (n / (n - 1))
        buffers["num_batches_tracked"][...] += 1
    else:
        centred = x - _per_channel(buffers["running_mean"], x.ndim)
        var = buffers["running_var"]                                # (C,)
    inv_std = 1.0 / np.sqrt(var + layer.eps)                        # (C,) 1/σ, eps inside
    x_hat = centred * _per_channel(inv_std, x.ndim)                 # (batch, C, *spatial)
    if not layer.affine:
        return x_hat, (x_hat, inv_std, None, train, group)
    gamma = params["weight"]                                        # (C,)
    y = x_hat * _per_channel(gamma, x.ndim) + _per_channel(params["bias"], x.ndim)
    return y, (x_hat, inv_std, gamma, train, group)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """From dL/dy (batch, C, *spatial): dβ = Σ dy, dγ = Σ dy·x̂ (sums over every axis
    but C), and, when asked, dL/dx.

    Training (x̂ depends on the batch's mean and var), with n values per channel:
        dx = (γ/σ)/n · (n·dy − Σ dy − x̂·Σ(dy·x̂))
    Evaluation (running statistics are constants): dx = dy·γ/σ. Synchronised
    across replicas: n and the two sums in dx are the global batch's."""
    x_hat, inv_std, gamma, train, group = cache
    axes = _axes(d_y)
    sum_dy = d_y.sum(axis=axes)                                     # (C,)
    sum_dy_xhat = (d_y * x_hat).sum(axis=axes)                      # (C,)
    if gamma is not None:
        grads["weight"][...] = sum_dy_xhat
        grads["bias"][...] = sum_dy
    if not need_input_grad:
        return None
    scale = inv_std if gamma is None else gamma * inv_std          # (C,) γ/σ
    if not train:
        return d_y * _per_channel(scale, d_y.ndim)
    n = d_y.size // d_y.shape[1]
    if group is not None:                                           # the global batch's
        n, sum_dy, sum_dy_xhat = (group.all_reduce(n), group.all_reduce(sum_dy),
                                  group.all_reduce(sum_dy_xhat))
    return (_per_channel(scale / n, d_y.ndim)                       # (batch, C, *spatial)
            * (n * d_y - _per_channel(sum_dy, d_y.ndim)
               - x_hat * _per_channel(sum_dy_xhat, d_y.ndim)))
