"""RMSNorm in torch: ``F.rms_norm`` over the last ``layer.dims`` axes, as
``torch.nn.RMSNorm``; eps None is passed on, and torch resolves it to
``finfo(x.dtype).eps``, as ``RMSNorm.eps_for`` does."""
from __future__ import annotations

import torch.nn.functional as F


def forward(layer, params, buffers, x, train):
    """x (batch, ..., *s) -> same shape, s = x.shape[-dims:]."""
    return F.rms_norm(x, x.shape[x.ndim - layer.dims:], params.get("weight"), layer.eps)
