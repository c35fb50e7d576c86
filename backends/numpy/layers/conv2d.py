"""Conv2d in NumPy: im2col and a matrix product forward, the weight gradient from
the same columns and the input gradient by col2im backward (``_conv.py``)."""
from __future__ import annotations

from ._conv import backward2d, forward2d


def forward(layer, params, buffers, x, train):
    """x (batch, C, H, W) -> y (batch, out_channels, H', W'); the cache is the columns'."""
    return forward2d(x, params["weight"], params.get("bias"), layer.stride, layer.pads,
                     layer.dilation, layer.groups)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """From dL/dy (batch, out, H', W'): write dL/dweight (out, C/groups, kH, kW) and,
    with a bias, dL/dbias (out,) into ``grads``; return dL/dx (batch, C, H, W) when asked."""
    d_weight, d_bias, d_x = backward2d(params["weight"], cache, d_y, need_input_grad)
    grads["weight"][...] = d_weight                            # (out, C/groups, kH, kW)
    if "bias" in grads:
        grads["bias"][...] = d_bias                            # (out,)
    return d_x
