"""Pooling in torch, shared by the four pooling kinds: ``torch.nn.functional``'s
own pools (autograd gives the backward pass, with torch's first-maximum tie rule)."""
from __future__ import annotations

import torch.nn.functional as F


def max_pool(layer, x):
    """x (batch, C, *n) -> (batch, C, *out): ``F.max_pool1d`` or ``F.max_pool2d``."""
    pool = F.max_pool1d if layer.ndim == 1 else F.max_pool2d
    return pool(x, layer.kernel_size, layer.stride, layer.padding)


def avg_pool(layer, x):
    """x (batch, C, *n) -> (batch, C, *out): ``F.avg_pool1d`` or ``F.avg_pool2d``."""
    pool = F.avg_pool1d if layer.ndim == 1 else F.avg_pool2d
    return pool(x, layer.kernel_size, layer.stride, layer.padding,
                count_include_pad=layer.count_include_pad)
