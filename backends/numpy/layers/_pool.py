"""Pooling in NumPy, shared by the four pooling kinds (``shared/core/layers/pool.py``
defines them): windows of the padded input, the max (first maximum) or the mean
of each, and the backward pass as a scatter-add into the padded input's
gradient, cropped.

The windows are ``sliding_window_view``s of the padded input, every ``stride``-th
one: (batch, C, *out, *kernel). The backward pass walks the kernel's offsets:
offset ``j`` of every window reads the padded input's elements ``j + o*s``, a
strided slice, so adding into that slice once per offset accumulates the
overlapping windows (s < k) without ``np.add.at``.
"""
from __future__ import annotations

import itertools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _padded(layer, x, fill):
    """x (batch, C, *n) padded on every spatial axis with ``fill``: (batch, C, *(n + 2p))."""
    pads = ((0, 0), (0, 0), *((p, p) for p in layer.padding))
    return np.pad(x, pads, constant_values=fill) if any(layer.padding) else x


def _spatial(slices):
    """An index of every batch row and channel, and ``slices`` on the spatial axes."""
    return (slice(None), slice(None), *slices)


def _windows(layer, xp):
    """(batch, C, *out, *kernel): every window of the padded input, a view."""
    spatial = tuple(range(2, 2 + layer.ndim))
    w = sliding_window_view(xp, layer.kernel_size, axis=spatial)
    return w[_spatial(slice(None, None, s) for s in layer.stride)]


def _scatter(layer, x_shape, d_y, d_at):
    """dL/dx (batch, C, *n) from ``d_at(index)`` (batch, C, *out): the gradient each
    window sends to its element at the kernel offset of row-major ``index``."""
    padded = x_shape[:2] + tuple(n + 2 * p for n, p in zip(x_shape[2:], layer.padding,
                                                            strict=True))
    dxp = np.zeros(padded, dtype=d_y.dtype)                    # (batch, C, *(n + 2p))
    out = d_y.shape[2:]
    for index, offset in enumerate(itertools.product(*map(range, layer.kernel_size))):
        target = tuple(slice(j, j + s * (o - 1) + 1, s)
                       for j, s, o in zip(offset, layer.stride, out, strict=True))
        dxp[_spatial(target)] += d_at(index)
    crop = tuple(slice(p, p + n) for p, n in zip(layer.padding, x_shape[2:], strict=True))
    return dxp[_spatial(crop)]


def max_forward(layer, x):
    """x (batch, C, *n) -> (max of each window (batch, C, *out), cache): padding -inf,
    ``argmax`` of the row-major flattened window, i.e. its first maximum."""
    w = _windows(layer, _padded(layer, x, -np.inf))
    flat = w.reshape(*w.shape[:2 + layer.ndim], -1)            # (batch, C, *out, k1*k2...)
    first = flat.argmax(axis=-1)                               # (batch, C, *out)
    y = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    return y, (x.shape, first)


def max_backward(layer, cache, d_y):
    """dL/dx (batch, C, *n): each window's gradient to its first maximum, accumulated."""
    x_shape, first = cache
    return _scatter(layer, x_shape, d_y, lambda index: np.where(first == index, d_y, 0))


def avg_forward(layer, x):
    """x (batch, C, *n) -> (mean of each window (batch, C, *out), cache): padding 0,
    divided by ``layer.divisor`` (the kernel size, or the window's elements that
    are not padding when count_include_pad=False)."""
    w = _windows(layer, _padded(layer, x, 0))
    divisor = layer.divisor(x.shape[2:]).astype(x.dtype)       # (*out)
    y = w.sum(axis=tuple(range(-layer.ndim, 0))) / divisor     # (batch, C, *out)
    return y, (x.shape, divisor)


def avg_backward(layer, cache, d_y):
    """dL/dx (batch, C, *n): each window's gradient / divisor to all its elements."""
    x_shape, divisor = cache
    share = d_y / divisor                                      # (batch, C, *out)
    return _scatter(layer, x_shape, d_y, lambda index: share)
