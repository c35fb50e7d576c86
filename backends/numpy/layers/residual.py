"""Residual in NumPy: y = x + f(x), f the sub-layers' forward passes in order; the
backward pass adds the skip's dL/dy to the sub-stack's backward of dL/dy."""
from __future__ import annotations


def forward(layer, params, buffers, x, train):
    """x (batch, *s) -> x + f(x) (batch, *s); the cache is the sub-layers' caches."""
    from . import LAYERS                                       # this module is one of them
    h, caches = x, []
    for sub, sub_params, sub_buffers in zip(layer.layers, layer.split(params),
                                            layer.split(buffers), strict=True):
        h, cache = LAYERS[sub.kind].forward(sub, sub_params, sub_buffers, h, train)
        caches.append(cache)
    return x + h, caches


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """dL/dx = dL/dy + (the sub-stack's backward of dL/dy); the sub-layers write their
    parameters' gradients into ``grads`` (``layer.split`` gives them views of it)."""
    from . import LAYERS
    caches = cache
    sub_params, sub_grads = layer.split(params), layer.split(grads)
    d = d_y
    for j in reversed(range(len(layer.layers))):
        sub = layer.layers[j]
        d = LAYERS[sub.kind].backward(sub, sub_params[j], caches[j], d, sub_grads[j],
                                      need_input_grad=j > 0 or need_input_grad)
    return d_y + d if need_input_grad else None
