"""BatchNorm: normalise each channel over the batch (and any spatial axes), as
``torch.nn.BatchNorm1d`` / ``BatchNorm2d``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape, ones_and_zeros
from nnparity.shared.core.validation import check_bool, check_float, fail


@dataclass(frozen=True)
class BatchNorm(Layer):
    """(batch, C, *spatial) -> the same shape: each channel c normalised over the
    batch axis and the spatial axes, then scaled and shifted::

        y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]

    Axis 0 of the input shape is the channel axis (axis 1 of the batch): an input
    (C,) is ``torch.nn.BatchNorm1d`` on (N, C), (C, L) ``BatchNorm1d`` on (N, C, L),
    (C, H, W) ``BatchNorm2d`` on (N, C, H, W). Every convention is torch's:

    - training mode (``train``, ``step``, the harness): mean and the **biased**
      variance of the batch, over n = batch * prod(spatial) values per channel;
      then, per channel, ``running_mean = (1 - momentum) * running_mean + momentum
      * mean`` and ``running_var = (1 - momentum) * running_var + momentum * var *
      n / (n - 1)`` (the **unbiased** variance), ``num_batches_tracked += 1``.
      ``momentum`` weighs the new batch, as in torch; flax, Keras and equinox
      weigh the old value (their 0.99 is torch's 0.01).
    - evaluation mode (``predict``, test metrics): the running statistics.
    - eps inside the square root.
    - n = 1 (one value per channel in a training batch): torch raises "Expected
      more than 1 value per channel when training", so the spec refuses a
      batch_size that gives n = 1 and ``train`` refuses data whose batches (a
      partial last one included) would.

    Parameters (when ``affine``): ``weight`` (C,) ones and ``bias`` (C,) zeros,
    torch's starting values whatever the spec's init rule (no rule draws them).
    Model state: ``running_mean`` (C,) zeros, ``running_var`` (C,) ones and
    ``num_batches_tracked`` (), kept in the spec's float dtype as every model-state
    tree is (torch keeps an int64: a float32 count is exact up to 2**24 batches);
    torch's ``momentum=None`` (a cumulative average by that count) is not offered.
    """

    momentum: float = 0.1
    eps: float = 1e-5
    affine: bool = True
    kind: ClassVar[str] = "batch_norm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum",
                           check_float("BatchNorm.momentum", self.momentum, low=0.0, high=1.0))
        object.__setattr__(self, "eps", check_float("BatchNorm.eps", self.eps, low=0.0,
                                                    low_open=True))
        object.__setattr__(self, "affine", check_bool("BatchNorm.affine", self.affine))

    def check_input(self, input_shape: Shape, label: str) -> None:
        if not 1 <= len(input_shape) <= 3:
            fail(label, input_shape, "(C,), (C, L) or (C, H, W): BatchNorm normalises "
                 "each channel (the first axis) over the batch and the other axes")

    def check_training_rows(self, rows: int, input_shape: Shape, label: str) -> None:
        if rows * math.prod(input_shape[1:]) < 2:
            fail(label, rows, f"a batch that gives BatchNorm on input shape {input_shape} "
                 "more than 1 value per channel when training (torch raises otherwise)")

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        channels = input_shape[0]
        return {"weight": (channels,), "bias": (channels,)} if self.affine else {}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        channels = input_shape[0]
        return {"running_mean": (channels,), "running_var": (channels,),
                "num_batches_tracked": ()}

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        return ones_and_zeros(self.param_shapes(input_shape))

    def init_buffers(self, input_shape: Shape) -> dict[str, np.ndarray]:
        channels = input_shape[0]
        return {"running_mean": np.zeros(channels), "running_var": np.ones(channels),
                "num_batches_tracked": np.zeros(())}

