"""Residual in JAX, pure: x + f(x), f the sub-layers' forward passes in order; their
new model state is gathered back under the Residual's names."""
from __future__ import annotations


def forward(layer, params, buffers, x, train):
    """x (batch, *s) -> (x + f(x) (batch, *s), new buffers)."""
    from . import LAYERS                                       # this module is one of them
    h, new_buffers = x, []
    for sub, sub_params, sub_buffers in zip(layer.layers, layer.split(params),
                                            layer.split(buffers), strict=True):
        h, sub_buffers = LAYERS[sub.kind].forward(sub, sub_params, sub_buffers, h, train)
        new_buffers.append(sub_buffers)
    return x + h, layer.join(new_buffers)
