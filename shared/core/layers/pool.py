"""Pooling: MaxPool1d/2d and AvgPool1d/2d, as ``torch.nn``'s (channels first).

A pooling layer maps (batch, C, *spatial) to (batch, C, *out), one window per
output element, over ``ndim`` spatial axes (1: (C, L); 2: (C, H, W)). Along each
axis, with kernel k, stride s and padding p on both sides of an input of length n:

    out = (n + 2p - k) // s + 1        (torch's default ceil_mode=False)

and output element o reads the padded input's elements o*s .. o*s + k - 1.

- Max: the padding is -inf, so it is never the maximum. A tie's gradient goes
  entirely to the FIRST maximum of the window in row-major order (torch's
  rule; ``np.argmax`` and ``lax.reduce_window``'s select-and-scatter give the
  same, while ``x.reshape(...).max(axis)`` in JAX and ``torch.amax`` split it
  evenly). Overlapping windows (s < k) accumulate.
- Avg: the padding is 0. ``count_include_pad=True`` (torch's default) divides
  every window by k1*k2*...; ``False`` divides by the number of its elements
  that are not padding (``divisor``).

torch requires ``padding <= kernel_size // 2`` on every axis; it is checked when
the layer is built, and it means no window lies entirely over the padding.
``kernel_size``, ``stride`` and ``padding`` take an int (the same on every
axis) or one int per axis, and are stored as tuples of ``ndim`` ints;
``stride=None`` means ``kernel_size``. No parameters, no buffers.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape
from nnparity.shared.core.validation import check_bool, check_count, fail

#: the largest kernel, stride and padding (keeps every shape a small int)
MAX_WINDOW = 2**24


def _canonical(owner: str, name: str, value: Any, ndim: int, minimum: int) -> tuple[int, ...]:
    """An int, or a sequence of ``ndim`` ints, as a tuple of ``ndim`` ints >= ``minimum``."""
    label = f"{owner}.{name}"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * ndim
    elif (isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray))
          or len(value) != ndim):
        fail(label, value, f"an integer or {ndim} integer{'s' if ndim > 1 else ''} "
             f"(one per spatial axis)", TypeError)
    return tuple(check_count(f"{label}[{i}]", v, minimum, MAX_WINDOW, "2**24")
                 for i, v in enumerate(value))


@dataclass(frozen=True)
class _Pool:
    """The fields and shapes every pooling kind shares (not a ``Layer``: the kinds
    are the subclasses below, which set ``kind`` and ``ndim``)."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] = 0     # type: ignore[assignment]  # canonicalised in __post_init__
    kind: ClassVar[str]
    ndim: ClassVar[int]

    if TYPE_CHECKING:   # the constructor also takes ints; __post_init__ makes them tuples
        def __init__(self, kernel_size: int | Sequence[int],
                     stride: int | Sequence[int] | None = None,
                     padding: int | Sequence[int] = 0) -> None: ...

    def __post_init__(self) -> None:
        owner, n = type(self).__name__, self.ndim
        kernel = _canonical(owner, "kernel_size", self.kernel_size, n, 1)
        stride = kernel if self.stride is None else _canonical(owner, "stride", self.stride,
                                                                n, 1)
        padding = _canonical(owner, "padding", self.padding, n, 0)
        if any(p > k // 2 for p, k in zip(padding, kernel, strict=True)):
            fail(f"{owner}.padding", padding,
                 f"at most half the kernel on every axis, <= {tuple(k // 2 for k in kernel)} "
                 f"for kernel_size={kernel}, as torch requires (more would put windows "
                 f"entirely over the padding)")
        object.__setattr__(self, "kernel_size", kernel)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "padding", padding)

    @property
    def strides(self) -> tuple[int, ...]:
        """``stride``, typed as the tuple it always is after construction."""
        assert self.stride is not None
        return self.stride

    def check_input(self, input_shape: Shape, label: str) -> None:
        if len(input_shape) != self.ndim + 1:
            axes = "(C, L)" if self.ndim == 1 else "(C, H, W)"
            fail(label, input_shape, f"{self.ndim + 1} axes, {axes}, for "
                 f"{type(self).__name__} (channels first)")
        for n, k, p in zip(input_shape[1:], self.kernel_size, self.padding, strict=True):
            if n + 2 * p < k:
                fail(label, input_shape, f"every spatial axis at least kernel_size - "
                     f"2 * padding long (kernel_size={self.kernel_size}, padding="
                     f"{self.padding}), so that {type(self).__name__} has an output")

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape[:1] + tuple(
            (n + 2 * p - k) // s + 1
            for n, k, s, p in zip(input_shape[1:], self.kernel_size, self.strides,
                                  self.padding, strict=True))


@dataclass(frozen=True)
class _AvgPool(_Pool):
    """An average pool's fields: those of every pool and ``count_include_pad``."""

    count_include_pad: bool = True

    if TYPE_CHECKING:
        def __init__(self, kernel_size: int | Sequence[int],
                     stride: int | Sequence[int] | None = None,
                     padding: int | Sequence[int] = 0,
                     count_include_pad: bool = True) -> None: ...

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "count_include_pad", check_bool(
            f"{type(self).__name__}.count_include_pad", self.count_include_pad))

    def divisor(self, spatial_shape: Shape) -> np.ndarray:
        """What each window's sum is divided by, (*out) float64: the kernel's size, or
        with ``count_include_pad=False`` the number of the window's elements that are
        not padding (a product over the axes, since the padding is a box)."""
        counts = []
        for n, k, s, p in zip(spatial_shape, self.kernel_size, self.strides, self.padding,
                              strict=True):
            start = np.arange((n + 2 * p - k) // s + 1) * s - p      # (out,) first element
            if self.count_include_pad:
                counts.append(np.full(start.shape, float(k)))
            else:
                counts.append((np.minimum(start + k, n) - np.maximum(start, 0)).astype(float))
        out = counts[0]
        for c in counts[1:]:
            out = np.multiply.outer(out, c)
        return out


class MaxPool1d(_Pool, Layer):
    """(batch, C, L) -> (batch, C, L_out): the maximum of each window, as
    ``torch.nn.MaxPool1d(kernel_size, stride=None, padding=0)``."""

    kind: ClassVar[str] = "max_pool1d"
    ndim: ClassVar[int] = 1


class MaxPool2d(_Pool, Layer):
    """(batch, C, H, W) -> (batch, C, H_out, W_out): the maximum of each window, as
    ``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0)``."""

    kind: ClassVar[str] = "max_pool2d"
    ndim: ClassVar[int] = 2


class AvgPool1d(_AvgPool, Layer):
    """(batch, C, L) -> (batch, C, L_out): the mean of each window, as
    ``torch.nn.AvgPool1d(kernel_size, stride=None, padding=0, count_include_pad=True)``."""

    kind: ClassVar[str] = "avg_pool1d"
    ndim: ClassVar[int] = 1


class AvgPool2d(_AvgPool, Layer):
    """(batch, C, H, W) -> (batch, C, H_out, W_out): the mean of each window, as
    ``torch.nn.AvgPool2d(kernel_size, stride=None, padding=0, count_include_pad=True)``."""

    kind: ClassVar[str] = "avg_pool2d"
    ndim: ClassVar[int] = 2
