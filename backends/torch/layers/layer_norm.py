"""LayerNorm in torch: ``F.layer_norm`` over the last ``layer.dims`` axes, as
``torch.nn.LayerNorm``."""
from __future__ import annotations

import torch.nn.functional as F


def forward(layer, params, buffers, x, train):
    """x (batch, ..., *s) -> same shape, s = x.shape[-dims:]."""
    return F.layer_norm(x, x.shape[x.ndim - layer.dims:], params.get("weight"),
                        params.get("bias"), layer.eps)
