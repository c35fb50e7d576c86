"""Dense: a fully connected layer on the last axis, ``y = x @ weight.T + bias``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape
from nnparity.shared.core.validation import check_count, fail

#: the widest layer (keeps every shape a small int)
MAX_UNITS = 2**24


@dataclass(frozen=True)
class Dense(Layer):
    """(batch, ..., in) -> (batch, ..., units): ``x @ weight.T + bias``.

    Parameters: ``weight`` (units, in), ``bias`` (units,), as ``torch.nn.Linear``.
    ``in`` comes from the input shape (its last axis), as in Keras and torch's
    ``LazyLinear``. Fan-in is ``in``, fan-out ``units``.

    Init rules (one ``np.random.RandomState`` per network, layer by layer):

    - ``uniform_fan_in``: weight = rand(units, in) / in, i.e. U[0, 1/in); bias 0
      (the notebook's rule).
    - ``zeros``: weight 0, bias 0 (draws nothing).
    - ``xavier_uniform``: weight = (2 rand - 1) * a, a = sqrt(6 / (in + units)); bias 0.
    - ``he_normal``: weight = randn * sqrt(2 / in); bias 0.
    - ``torch_default``: what ``torch.nn.Linear`` draws: kaiming-uniform with
      a = sqrt(5), i.e. weight ~ U[-1/sqrt(in), 1/sqrt(in)), then bias ~ the same
      U[-1/sqrt(in), 1/sqrt(in)) (weight drawn first).
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
        n_in, n_out = self.fans(input_shape)
        bias = np.zeros(n_out)
        if rule == "uniform_fan_in":
            weight = rng.rand(n_out, n_in) / n_in
        elif rule == "zeros":
            weight = np.zeros((n_out, n_in))
        elif rule == "xavier_uniform":
            weight = (2.0 * rng.rand(n_out, n_in) - 1.0) * np.sqrt(6.0 / (n_in + n_out))
        elif rule == "he_normal":
            weight = rng.randn(n_out, n_in) * np.sqrt(2.0 / n_in)
        elif rule == "torch_default":
            bound = 1.0 / np.sqrt(n_in)        # kaiming_uniform(a=sqrt(5)): sqrt(6/((1+5) in))
            weight = (2.0 * rng.rand(n_out, n_in) - 1.0) * bound
            bias = (2.0 * rng.rand(n_out) - 1.0) * bound
        else:
            raise AssertionError(f"unhandled init rule {rule!r}")  # the spec validates it
        return {"weight": weight, "bias": bias}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "units": self.units}
