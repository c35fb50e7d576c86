"""Conv2d and Conv1d: cross-correlation over the spatial axes of a channels-first
input, as ``torch.nn.Conv2d`` and ``torch.nn.Conv1d`` (torch's argument names,
defaults and parameter names; ``in_channels`` comes from the input shape)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence, Union

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape, draw_weight_and_bias
from nnparity.shared.core.validation import check_bool, check_count, fail

#: the most output channels, and the largest kernel, stride, dilation, padding, group count
MAX_SIZE = 2**24
#: per spatial axis: p (p before and after) or (before, after)
Padding = Union[str, tuple[int, ...], tuple[tuple[int, int], ...]]

_STRIDED_SAME = (
    "padding='same' with stride 1 only, as torch (which refuses a strided 'same'). "
    "TF/JAX 'SAME' with stride > 1 is another, asymmetric convention: it pads "
    "total = max((ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0) per axis, depending on "
    "the input size n, with the odd one AFTER (floor(total / 2) before). To ask for it, "
    "give explicit pairs per spatial axis, padding=((before, after), (before, after)) "
    "(Conv1d: ((before, after),))")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _ints(name: str, value: Any, n: int, minimum: int) -> tuple[int, ...]:
    """An int (the same on every spatial axis) or a sequence of ``n`` ints, as a tuple."""
    if _is_int(value):
        return (check_count(name, value, minimum, MAX_SIZE, "2**24"),) * n
    if (isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray))
          or np.ndim(value) != 1 or len(value) != n or not all(_is_int(v) for v in value)):
        fail(name, value, f"an integer or a tuple of {n} integers", TypeError)
    return tuple(check_count(f"{name}[{i}]", v, minimum, MAX_SIZE, "2**24")
                 for i, v in enumerate(value))


def _is_pair(value: Any) -> bool:
    return (not isinstance(value, (str, bytes)) and isinstance(value, Sequence)
            and len(value) == 2 and all(_is_int(v) for v in value))


def _padding(name: str, value: Any, n: int, stride: tuple[int, ...]) -> Padding:
    """The canonical padding: "same", a tuple of ``n`` ints (symmetric; "valid" is
    zeros), or a tuple of ``n`` (before, after) pairs when some axis is asymmetric."""
    allowed = (f"an integer >= 0, a tuple of {n} of them, 'valid', 'same', or a "
               f"(before, after) pair per spatial axis, e.g. {((1, 0),) * n}")
    if isinstance(value, str):
        if value == "valid":
            return (0,) * n
        if value == "same":
            if any(s != 1 for s in stride):
                fail(name, value, _STRIDED_SAME + f"; got stride={stride}")
            return value
        fail(name, value, allowed)
    if (isinstance(value, Sequence) and not isinstance(value, (str, bytes))
            and len(value) == n and all(_is_pair(v) for v in value)):
        pairs = tuple((check_count(f"{name}[{i}][0]", before, 0, MAX_SIZE, "2**24"),
                       check_count(f"{name}[{i}][1]", after, 0, MAX_SIZE, "2**24"))
                      for i, (before, after) in enumerate(value))
        if all(before == after for before, after in pairs):
            return tuple(before for before, _ in pairs)        # symmetric: torch's form
        return pairs
    if not _is_int(value) and not (isinstance(value, Sequence)
                                   and not isinstance(value, (str, bytes))
                                   and len(value) == n and all(_is_int(v) for v in value)):
        fail(name, value, allowed, TypeError)
    return _ints(name, value, n, 0)


@dataclass(frozen=True)
class _Conv:
    """The fields and shapes of Conv1d and Conv2d (``spatial`` axes: 1 or 2)."""

    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True
    kind: ClassVar[str]
    spatial: ClassVar[int]

    def __post_init__(self) -> None:
        name, n = type(self).__name__, self.spatial
        out = check_count(f"{name}.out_channels", self.out_channels, 1, MAX_SIZE, "2**24")
        groups = check_count(f"{name}.groups", self.groups, 1, MAX_SIZE, "2**24")
        if out % groups:
            fail(f"{name}.out_channels", out, f"a multiple of groups={groups}")
        object.__setattr__(self, "out_channels", out)
        object.__setattr__(self, "groups", groups)
        for field in ("kernel_size", "stride", "dilation"):
            object.__setattr__(self, field, _ints(f"{name}.{field}", getattr(self, field), n, 1))
        object.__setattr__(self, "padding",
                           _padding(f"{name}.padding", self.padding, n, self.stride))
        object.__setattr__(self, "bias", check_bool(f"{name}.bias", self.bias))

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        """(before, after) zeros per spatial axis. "same" is torch's: total d (k - 1),
        floor(total / 2) before and the rest (one more, when odd) after."""
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation, strict=True)]
            return tuple((t // 2, t - t // 2) for t in totals)
        if _is_int(self.padding[0]):
            return tuple((p, p) for p in self.padding)
        return self.padding                                    # pairs, as stored

    def check_input(self, input_shape: Shape, label: str) -> None:
        name, n = type(self).__name__, self.spatial
        layout = "(channels, length)" if n == 1 else "(channels, height, width)"
        if len(input_shape) != n + 1:
            fail(label, input_shape, f"{n + 1} axes {layout}: {name} is channels-first")
        if input_shape[0] % self.groups:
            fail(label, input_shape, f"input channels {input_shape[0]} divisible by "
                 f"{name}.groups={self.groups}")
        for axis, (size, (before, after), k, d) in enumerate(zip(
                input_shape[1:], self.pads, self.kernel_size, self.dilation, strict=True)):
            if size + before + after < d * (k - 1) + 1:
                fail(label, input_shape, f"spatial axis {axis} of size {size}, padded by "
                     f"({before}, {after}), at least the dilated kernel's extent "
                     f"d*(k-1)+1 = {d * (k - 1) + 1} (an output of size >= 1)")

    def output_shape(self, input_shape: Shape) -> Shape:
        sizes = tuple((n + before + after - d * (k - 1) - 1) // s + 1
                      for n, (before, after), k, s, d in zip(
                          input_shape[1:], self.pads, self.kernel_size, self.stride,
                          self.dilation, strict=True))
        return (self.out_channels, *sizes)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        weight = (self.out_channels, input_shape[0] // self.groups, *self.kernel_size)
        return {"weight": weight, "bias": (self.out_channels,)} if self.bias \
            else {"weight": weight}

    def fans(self, input_shape: Shape) -> tuple[int, int]:
        """torch's ``_calculate_fan_in_and_fan_out`` of the weight (out, in/groups, *k):
        fan_in = in/groups * kernel area, fan_out = out * kernel area (torch takes
        size(0), all the output channels, not out/groups)."""
        area = math.prod(self.kernel_size)
        return input_shape[0] // self.groups * area, self.out_channels * area

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        """Dense's rules (``draw_weight_and_bias``) with the fans above; as
        ``torch.nn.Conv2d`` for ``torch_default``. No bias when bias=False."""
        return draw_weight_and_bias(rule, rng, self.param_shapes(input_shape)["weight"],
                                    self.fans(input_shape), self.bias)


@dataclass(frozen=True)
class Conv2d(_Conv, Layer):
    """(batch, C, H, W) -> (batch, out_channels, H', W'), as ``torch.nn.Conv2d``:
    ``y[n, o] = bias[o] + sum over c in o's group, i, j of
    weight[o, c, i, j] * x_padded[n, c, s_h h' + d_h i, s_w w' + d_w j]``.

    Parameters ``weight`` (out_channels, C/groups, kH, kW) and, when ``bias``,
    ``bias`` (out_channels,) (no entry at all when bias=False, as torch's
    state_dict). ``kernel_size``, ``stride``, ``dilation``: an int or a pair,
    stored as pairs. ``padding``: an int or a pair (symmetric), "valid" (0),
    "same" (stride 1 only; torch's: with an even effective kernel the extra zero
    goes after), or ``((top, bottom), (left, right))`` (torch has no such
    argument: it is ``F.pad`` then the convolution). Fans: see ``fans``.
    """

    kind: ClassVar[str] = "conv2d"
    spatial: ClassVar[int] = 2


@dataclass(frozen=True)
class Conv1d(_Conv, Layer):
    """(batch, C, L) -> (batch, out_channels, L'), as ``torch.nn.Conv1d``; the
    arguments of ``Conv2d`` with one spatial axis: ``weight`` (out_channels,
    C/groups, kL), ``bias`` (out_channels,); explicit padding ``((before, after),)``."""

    kind: ClassVar[str] = "conv1d"
    spatial: ClassVar[int] = 1
