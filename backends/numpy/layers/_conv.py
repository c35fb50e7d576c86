"""The 2-d convolution in NumPy (Conv1d runs it with a height-1 axis added):
im2col forward, a matrix product per group, and its backward pass beside it.

Forward: the padded input's windows come from
``np.lib.stride_tricks.sliding_window_view`` (a view, no copy), dilation and
stride are slicing of that view, and the windows reshaped to columns
("im2col", one copy) meet the weight in one matrix product per group.

Backward: the weight gradient is the same columns times dL/dy; the input
gradient is the col2im scatter-add, i.e. the exact transpose of the forward's
gather: the columns' gradient (dL/dy times the weight) is added back, kernel
tap by kernel tap, to the padded input positions each tap read (the same
strided, dilated slices as the forward), and the padding is cropped off. It is
chosen over the "full correlation with the flipped kernel" because it needs no
zero-insertion between output positions for the stride, no special case for
the rows a stride never reaches, and no swap of in/out channels per group: it
is the forward's indexing read backwards, so stride, dilation, groups and
asymmetric padding come for free. The loop runs over the kernel taps (kH*kW,
small), never over positions. The two are the same sums: ``tests/test_layer_conv2d.py``
computes the full correlation with the flipped kernel for every option and finds
this result.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def forward2d(x, weight, bias, stride, pads, dilation, groups):
    """x (N, C, H, W), weight (O, C/G, kH, kW), bias (O,) or None -> y (N, O, Ho, Wo)
    and the cache for ``backward2d``."""
    n, c, h, w = x.shape
    o, c_g, kh, kw = weight.shape
    (sh, sw), (dh, dw), g = stride, dilation, groups
    o_g = o // g
    x_pad = np.pad(x, ((0, 0), (0, 0), *pads))                       # (N, C, Hp, Wp)
    extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)                  # the dilated kernel
    windows = sliding_window_view(x_pad, extent, axis=(2, 3))        # (N, C, Hp-eh+1, Wp-ew+1,
    #                                                                   eh, ew): eh, ew the extent
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]                  # (N, C, Ho, Wo, kH, kW)
    ho, wo = windows.shape[2:4]                                      # (Hp - eh) // sh + 1, ...
    cols = (windows.reshape(n, g, c_g, ho, wo, kh, kw)               # (N, G, C/G, Ho, Wo, kH, kW)
            .transpose(1, 0, 3, 4, 2, 5, 6)                          # (G, N, Ho, Wo, C/G, kH, kW)
            .reshape(g, n * ho * wo, c_g * kh * kw))                 # (G, N*Ho*Wo, C/G*kH*kW)
    w_mat = weight.reshape(g, o_g, c_g * kh * kw)                    # (G, O/G, C/G*kH*kW)
    y_mat = cols @ w_mat.transpose(0, 2, 1)                          # (G, N*Ho*Wo, O/G)
    y = (y_mat.reshape(g, n, ho, wo, o_g)                            # (G, N, Ho, Wo, O/G)
         .transpose(1, 0, 4, 2, 3)                                   # (N, G, O/G, Ho, Wo)
         .reshape(n, o, ho, wo))                                     # (N, O, Ho, Wo)
    if bias is not None:
        y = y + bias[:, None, None]                                  # (N, O, Ho, Wo)
    return y, (cols, x.shape, x_pad.shape, pads, stride, dilation, groups)


def backward2d(weight, cache, d_y, need_input_grad):
    """From dL/dy (N, O, Ho, Wo): (dL/dweight (O, C/G, kH, kW), dL/dbias (O,),
    dL/dx (N, C, H, W) or None)."""
    cols, x_shape, pad_shape, pads, (sh, sw), (dh, dw), g = cache
    n, c, h, w = x_shape
    o, c_g, kh, kw = weight.shape
    ho, wo = d_y.shape[2:]
    o_g = o // g
    d_mat = (d_y.reshape(n, g, o_g, ho, wo)                          # (N, G, O/G, Ho, Wo)
             .transpose(1, 0, 3, 4, 2)                               # (G, N, Ho, Wo, O/G)
             .reshape(g, n * ho * wo, o_g))                          # (G, N*Ho*Wo, O/G)
    d_weight = (d_mat.transpose(0, 2, 1) @ cols                      # (G, O/G, C/G*kH*kW)
                ).reshape(o, c_g, kh, kw)                            # (O, C/G, kH, kW)
    d_bias = d_y.sum(axis=(0, 2, 3))                                 # (O,)
    if not need_input_grad:
        return d_weight, d_bias, None
    w_mat = weight.reshape(g, o_g, c_g * kh * kw)                    # (G, O/G, C/G*kH*kW)
    d_cols = (d_mat @ w_mat                                          # (G, N*Ho*Wo, C/G*kH*kW)
              ).reshape(g, n, ho, wo, c_g, kh, kw)                   # (G, N, Ho, Wo, C/G, kH, kW)
    d_cols = d_cols.transpose(1, 0, 4, 2, 3, 5, 6).reshape(n, c, ho, wo, kh, kw)
    #                                                                  (N, C, Ho, Wo, kH, kW)
    d_pad = np.zeros(pad_shape, dtype=d_y.dtype)                     # (N, C, Hp, Wp)
    for i in range(kh):                                              # col2im: each tap adds
        for j in range(kw):                                          # back where it read
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)     # Ho rows of Hp
            columns = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)  # Wo columns of Wp
            d_pad[:, :, rows, columns] += d_cols[..., i, j]          # (N, C, Ho, Wo)
    (top, _), (left, _) = pads
    d_x = d_pad[:, :, top:top + h, left:left + w]                    # (N, C, H, W): crop
    return d_weight, d_bias, d_x
