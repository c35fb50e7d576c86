"""BatchNorm in torch: ``F.batch_norm``, which normalises with the batch's
statistics in training mode and updates ``running_mean`` and ``running_var`` in
place (torch's momentum, unbiased running variance); the batch count is ours to
increment, as ``nn.BatchNorm`` does."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def forward(layer, params, buffers, x, train):
    """x (batch, C, *spatial) -> the same shape."""
    if train:
        with torch.no_grad():
            buffers["num_batches_tracked"].add_(1)
    return F.batch_norm(x, buffers["running_mean"], buffers["running_var"],
                        params.get("weight"), params.get("bias"), train, layer.momentum,
                        layer.eps)
