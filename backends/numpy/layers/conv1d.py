"""Conv1d in NumPy: the 2-d code (``_conv.py``) on a height-1 image: x (N, C, L)
becomes (N, C, 1, L), the kernel (O, C/G, kL) becomes (O, C/G, 1, kL)."""
from __future__ import annotations

from ._conv import backward2d, forward2d


def forward(layer, params, buffers, x, train):
    """x (batch, C, L) -> y (batch, out_channels, L'); the cache is the 2-d one."""
    bias = params.get("bias")
    y, cache = forward2d(x[:, :, None, :],                     # (batch, C, 1, L)
                         params["weight"][:, :, None, :],      # (out, C/groups, 1, kL)
                         bias, (1, *layer.stride), ((0, 0), *layer.pads),
                         (1, *layer.dilation), layer.groups)   # y: (batch, out, 1, L')
    return y[:, :, 0, :], cache                                # (batch, out, L')


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """From dL/dy (batch, out, L'): write dL/dweight (out, C/groups, kL) and, with a
    bias, dL/dbias (out,) into ``grads``; return dL/dx (batch, C, L) when asked."""
    d_weight, d_bias, d_x = backward2d(params["weight"][:, :, None, :], cache,
                                       d_y[:, :, None, :],     # (batch, out, 1, L')
                                       need_input_grad)
    grads["weight"][...] = d_weight[:, :, 0, :]                # (out, C/groups, kL)
    if "bias" in grads:
        grads["bias"][...] = d_bias                            # (out,)
    return None if d_x is None else d_x[:, :, 0, :]            # (batch, C, L)
