"""Dropout in torch: the step's mask, drawn outside the backend
(``nnparity.shared.core.draws``), as data; not ``F.dropout``, whose mask comes
from torch's random stream, which no other framework can reproduce. Autograd
differentiates the product."""
from __future__ import annotations

import torch


def forward(layer, params, buffers, x, train, keep=None):
    """x (batch, ...) -> the same shape: x * (keep * scale) in training, x in evaluation."""
    if not train:
        return x
    scale = layer.scale(str(x.dtype).removeprefix("torch."))
    m = torch.from_numpy(keep).to(x.dtype) * scale             # (batch, ...) 0 or scale
    return x * m
