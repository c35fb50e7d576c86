"""LayerNorm and RMSNorm: per-sample normalisation over the last ``dims`` axes, as
``torch.nn.LayerNorm`` and ``torch.nn.RMSNorm``.

Why ``dims`` and not torch's ``normalized_shape``: here a layer's input shape comes
from the spec (as Dense's in-features do), so the sizes of the normalised axes are
known already; what a spec has to say is only *how many* trailing axes to
normalise over. ``dims=k`` on an input of shape (batch, *s) is exactly torch's
``normalized_shape=s[-k:]``. An explicit shape would repeat the input shape and
could contradict it; ``dims`` cannot. (Keras says the same thing with ``axis``.)

Both layers put eps **inside** the square root and normalise with the **biased**
variance (divide by the number of normalised elements), as torch, flax and equinox
do. Defaults are torch's: LayerNorm eps 1e-5 (flax 1e-6, Keras 1e-3), RMSNorm eps
``None``, meaning ``finfo(dtype).eps`` of the input's dtype (2.2e-16 in float64,
1.2e-7 in float32), as ``torch.nn.functional.rms_norm`` resolves it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape, ones_and_zeros
from nnparity.shared.core.validation import check_bool, check_count, check_float, fail

#: the most axes a spec's input can have is far below this; it keeps ``dims`` small
MAX_DIMS = 64


def _check_dims(owner: str, dims: Any) -> int:
    return check_count(f"{owner}.dims", dims, 1, MAX_DIMS, str(MAX_DIMS))


def _check_eps(owner: str, eps: Any) -> float:
    return check_float(f"{owner}.eps", eps, low=0.0, low_open=True)


def _check_rank(owner: str, dims: int, input_shape: Shape, label: str) -> None:
    if len(input_shape) < dims:
        fail(label, input_shape, f"at least {dims} axes per sample ({owner} normalises "
             f"over the last dims={dims})")


@dataclass(frozen=True)
class LayerNorm(Layer):
    """(batch, ..., *s) -> same shape, s the last ``dims`` axes of each sample:

        mean = mean(x over s),  var = mean((x - mean)**2 over s)    (biased)
        x_hat = (x - mean) / sqrt(var + eps)                         (eps inside the root)
        y = x_hat * weight + bias

    as ``torch.nn.LayerNorm(normalized_shape=s, eps, elementwise_affine, bias)``.

    Parameters (when ``elementwise_affine``): ``weight`` shaped s, ones; ``bias``
    shaped s, zeros (only when ``bias`` is True). Every init rule gives these, as
    torch does; none draws from the random stream.

    Fields: ``dims`` (int >= 1, default 1) replaces torch's ``normalized_shape``,
    see the module docstring; ``eps`` > 0 (default 1e-5, torch's; Keras's 1e-3
    differs measurably); ``elementwise_affine`` and ``bias``, torch's names and
    defaults.
    """

    dims: int = 1
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    kind: ClassVar[str] = "layer_norm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _check_dims("LayerNorm", self.dims))
        object.__setattr__(self, "eps", _check_eps("LayerNorm", self.eps))
        object.__setattr__(self, "elementwise_affine",
                           check_bool("LayerNorm.elementwise_affine", self.elementwise_affine))
        object.__setattr__(self, "bias", check_bool("LayerNorm.bias", self.bias))

    def check_input(self, input_shape: Shape, label: str) -> None:
        _check_rank("LayerNorm", self.dims, input_shape, label)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shape = input_shape[-self.dims:]
        if not self.elementwise_affine:
            return {}
        return {"weight": shape, "bias": shape} if self.bias else {"weight": shape}

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        return ones_and_zeros(self.param_shapes(input_shape))


@dataclass(frozen=True)
class RMSNorm(Layer):
    """(batch, ..., *s) -> same shape, s the last ``dims`` axes of each sample:

        x_hat = x / sqrt(mean(x**2 over s) + eps)                  (eps inside the root)
        y = x_hat * weight

    as ``torch.nn.RMSNorm(normalized_shape=s, eps, elementwise_affine)``. No
    centring and no bias.

    ``eps=None`` (the default, torch's) means ``finfo(dtype).eps`` of the input's
    dtype, resolved when the layer runs (``eps_for``): torch's ``rms_norm`` does
    that. Parameters (when ``elementwise_affine``): ``weight`` shaped s, ones.
    ``dims`` replaces torch's ``normalized_shape`` as in ``LayerNorm``.
    """

    dims: int = 1
    eps: float | None = None
    elementwise_affine: bool = True
    kind: ClassVar[str] = "rms_norm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _check_dims("RMSNorm", self.dims))
        if self.eps is not None:
            object.__setattr__(self, "eps", _check_eps("RMSNorm", self.eps))
        object.__setattr__(self, "elementwise_affine",
                           check_bool("RMSNorm.elementwise_affine", self.elementwise_affine))

    def eps_for(self, dtype: Any) -> float:
        """The eps used on inputs of ``dtype``: ``eps``, or ``finfo(dtype).eps`` when None."""
        return float(np.finfo(np.dtype(dtype)).eps) if self.eps is None else self.eps

    def check_input(self, input_shape: Shape, label: str) -> None:
        _check_rank("RMSNorm", self.dims, input_shape, label)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"weight": input_shape[-self.dims:]} if self.elementwise_affine else {}

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        return ones_and_zeros(self.param_shapes(input_shape))
