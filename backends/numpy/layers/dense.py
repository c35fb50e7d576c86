"""Dense in NumPy: ``y = x @ weight.T + bias``, and its backward pass beside it."""
from __future__ import annotations

import numpy as np


def forward(layer, params, buffers, x, train):
    """x (batch, ..., in) -> y (batch, ..., units); the cache is x."""
    y = x @ params["weight"].T + params["bias"]                # (batch, ..., units)
    return y, x


def backward(layer, params, x, d_y, grads, need_input_grad):
    """From dL/dy (batch, ..., units): write dL/dweight (units, in) and dL/dbias
    (units,) into ``grads``; return dL/dx (batch, ..., in) when asked."""
    d_rows, x_rows = d_y, x                                    # (batch, units), (batch, in)
    if x.ndim > 2:                                             # every leading axis is a row
        d_rows, x_rows = d_y.reshape(-1, d_y.shape[-1]), x.reshape(-1, x.shape[-1])
    np.matmul(d_rows.T, x_rows, out=grads["weight"])           # (units, in)
    d_rows.sum(axis=0, out=grads["bias"])                      # (units,)
    if need_input_grad:
        return d_y @ params["weight"]                          # (batch, ..., in)
    return None
