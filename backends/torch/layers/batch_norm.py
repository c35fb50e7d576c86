"""BatchNorm in torch: ``F.batch_norm``, which normalises with the batch's
statistics in training mode and updates ``running_mean`` and ``running_var`` in
place (torch's momentum, unbiased running variance); the batch count is ours to
increment, as ``nn.BatchNorm`` does.

Synchronised across data-parallel replicas, the statistics are the global
batch's, written out: sums over the shard added over the replicas with a
differentiable ``all_reduce`` (``replicas.py``), so autograd's backward pass
sums Σ dy and Σ dy·x̂ across the replicas too, as ``nn.SyncBatchNorm`` does."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nnparity.shared.core.replicas import current_replica, synced


def forward(layer, params, buffers, x, train):
    """x (batch, C, *spatial) -> the same shape."""
    if train:
        with torch.no_grad():
            buffers["num_batches_tracked"].add_(1)
    group = synced(current_replica()) if train else None
    if group is not None:
        return synced_forward(layer, params, buffers, x, group)
    return F.batch_norm(x, buffers["running_mean"], buffers["running_var"],
                        params.get("weight"), params.get("bias"), train, layer.momentum,
                        layer.eps)


def synced_forward(layer, params, buffers, x, group):
    """Training mode over the global batch; x (shard, C, *spatial)."""
    axes = [0] + list(range(2, x.ndim))                       # every axis but the channel
    expand = (slice(None),) + (None,) * (x.ndim - 2)          # (C,) -> (C, 1, ...)
    n = group.all_reduce(x.numel() // x.shape[1])             # values per channel, globally
    mean = group.all_reduce(x.sum(dim=axes)) / n              # (C,)
    centred = x - mean[expand]                                # (shard, C, *spatial)
    var = group.all_reduce((centred * centred).sum(dim=axes)) / n   # (C,) biased
    with torch.no_grad():
        m = layer.momentum
        buffers["running_mean"].mul_(1 - m).add_(m * mean)
        buffers["running_var"].mul_(1 - m).add_(m * var * (n / (n - 1)))
    x_hat = centred * (1.0 / torch.sqrt(var + layer.eps))[expand]
    if "weight" in params:
        x_hat = x_hat * params["weight"][expand] + params["bias"][expand]
    return x_hat
