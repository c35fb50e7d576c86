"""Residual in torch: x + f(x), f the sub-layers' forward passes in order; autograd
adds the skip's gradient."""
from __future__ import annotations


def forward(layer, params, buffers, x, train):
    """x (batch, *s) -> x + f(x) (batch, *s)."""
    from . import LAYERS                                       # this module is one of them
    h = x
    for sub, sub_params, sub_buffers in zip(layer.layers, layer.split(params),
                                            layer.split(buffers), strict=True):
        h = LAYERS[sub.kind].forward(sub, sub_params, sub_buffers, h, train)
    return x + h
