"""Dense: a fully connected layer on the last axis, ``y = x @ weight.T + bias``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape, draw_weight_and_bias
from nnparity.shared.core.validation import check_count, fail

#: the widest layer (keeps every shape a small int)
MAX_UNITS = 2**24


@dataclass(frozen=True)
class Dense(Layer):
    """(batch, ..., in) -> (batch, ..., units): ``x @ weight.T + bias``.

    Parameters: ``weight`` (units, in), ``bias`` (units,), as ``torch.nn.Linear``.
    ``in`` comes from the input shape (its last axis), as in Keras and torch's
    ``LazyLinear``. Fan-in is ``in``, fan-out ``units``.

    Init rules (``draw_weight_and_bias``, one ``np.random.RandomState`` per
    network, layer by layer) with fan_in = in, fan_out = units; the notebook's
    ``uniform_fan_in`` is weight = rand(units, in) / in, bias 0.
    """

    units: int
    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        object.__setattr__(self, "units",
                           check_count("Dense.units", self.units, 1, MAX_UNITS, "2**24"))

    def check_input(self, input_shape: Shape, label: str) -> None:
        if len(input_shape) < 1:
            fail(label, input_shape, "at least one axis (Dense acts on the last one)")

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape[:-1] + (self.units,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"weight": (self.units, input_shape[-1]), "bias": (self.units,)}

    def fans(self, input_shape: Shape) -> tuple[int, int]:
        return input_shape[-1], self.units

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        return draw_weight_and_bias(rule, rng, self.param_shapes(input_shape)["weight"],
                                    self.fans(input_shape))
