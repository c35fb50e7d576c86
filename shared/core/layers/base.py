"""What every layer kind declares, from the shape of its input.

A layer spec is a frozen dataclass, validated when it is built and serialised
in the spec's JSON as ``{"kind": ..., field: value, ...}``. Shapes leave out the
batch axis: a layer maps (batch, *input_shape) to (batch, *output_shape(input_shape)).

Parameters and buffers are named the way torch names them (``weight``,
``bias``, later ``running_mean``...); their order in ``param_shapes`` is the
order of torch's ``state_dict``.
"""
from __future__ import annotations

from dataclasses import Field, fields
from typing import Any, ClassVar

import numpy as np

Shape = tuple[int, ...]


class Layer:
    """Base of every layer spec. A subclass sets ``kind`` and overrides what it has:
    a parameter-free, shape-preserving layer needs nothing but ``kind``."""

    kind: ClassVar[str]
    #: True for a kind that draws randomness in training (Dropout): see ``draw``
    random: ClassVar[bool] = False
    #: True for a kind whose input is the data's integer tokens (Embedding), which
    #: then implements ``check_tokens(name, x)``; it can only be the first layer
    takes_tokens: ClassVar[bool] = False
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]   # every layer spec is a dataclass

    def check_input(self, input_shape: Shape, label: str) -> None:
        """Raise ``ValueError`` (naming ``label``) when the layer cannot take this shape."""

    def check_training_rows(self, rows: int, input_shape: Shape, label: str) -> None:
        """Raise ``ValueError`` (naming ``label``, whose value is ``rows``) when the layer
        cannot train on a batch of ``rows`` rows (BatchNorm needs more than one value
        per channel)."""

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """{name: shape} of the trainable parameters, in torch's state_dict order."""
        return {}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """{name: shape} of the non-trainable model state (e.g. running statistics)."""
        return {}

    def fans(self, input_shape: Shape) -> tuple[int, int]:
        """(fan_in, fan_out): the numbers the init rules scale by, the kind's own
        (for Dense: in-features and units)."""
        return 0, 0

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        """Draw the parameters with init ``rule`` from ``rng`` (float64; the caller
        casts them to the spec's dtype). Draws nothing when there are none."""
        return {}

    def init_buffers(self, input_shape: Shape) -> dict[str, np.ndarray]:
        """The model state's starting values (float64)."""
        return {}

    def draw(self, rng: np.random.Generator, shape: Shape) -> np.ndarray:
        """A ``random`` kind's draw for one training step, for a batch whose layer
        input is ``shape`` (batch axis included), from ``rng`` (see
        ``nnparity.shared.core.draws``, which calls it)."""
        raise AssertionError(f"layer kind {self.kind!r} draws nothing")

    def sublayers(self) -> tuple["Layer", ...]:
        """The layers this one contains (a Residual's sub-stack); none for most kinds."""
        return ()

    def check_tokens(self, name: str, x: Any) -> None:
        """For a kind that ``takes_tokens``: raise unless the data array ``x`` (named
        ``name``) holds tokens this layer can take."""
        raise AssertionError(f"layer kind {self.kind!r} takes no tokens")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible ``{"kind": ..., field: value}`` for every dataclass field,
        tuples written as lists; ``layer_from_dict`` inverts it."""
        return {"kind": self.kind, **{f.name: _as_json(getattr(self, f.name))
                                      for f in fields(self)}}


def _as_json(value: Any) -> Any:
    """A field's value with every tuple (nested ones too) as a list."""
    return [_as_json(item) for item in value] if isinstance(value, tuple) else value


def draw_weight_and_bias(rule: str, rng: np.random.RandomState, weight_shape: Shape,
                         fans: tuple[int, int], bias: bool = True) -> dict[str, np.ndarray]:
    """``weight`` (weight_shape) and, when ``bias``, ``bias`` (weight_shape[0],) by init
    ``rule``, float64, with the layer kind's (fan_in, fan_out):

    - ``uniform_fan_in``: weight U[0, 1/fan_in); bias 0.
    - ``zeros``: weight 0, bias 0 (draws nothing).
    - ``xavier_uniform``: weight U[-a, a), a = sqrt(6 / (fan_in + fan_out)); bias 0.
    - ``he_normal``: weight N(0, 2 / fan_in); bias 0.
    - ``torch_default``: as ``torch.nn.Linear`` and ``Conv2d``: kaiming_uniform with
      a = sqrt(5), i.e. weight U[-b, b), b = 1/sqrt(fan_in), then the bias from the
      same U[-b, b) (weight drawn first).
    """
    fan_in, fan_out = fans
    out = np.zeros(weight_shape[0])
    if rule == "uniform_fan_in":
        weight = rng.rand(*weight_shape) / fan_in
    elif rule == "zeros":
        weight = np.zeros(weight_shape)
    elif rule == "xavier_uniform":
        weight = (2.0 * rng.rand(*weight_shape) - 1.0) * np.sqrt(6.0 / (fan_in + fan_out))
    elif rule == "he_normal":
        weight = rng.randn(*weight_shape) * np.sqrt(2.0 / fan_in)
    elif rule == "torch_default":
        bound = 1.0 / np.sqrt(fan_in)      # kaiming_uniform(a=sqrt(5)): sqrt(6/((1+5) fan_in))
        weight = (2.0 * rng.rand(*weight_shape) - 1.0) * bound
        if bias:
            out = (2.0 * rng.rand(weight_shape[0]) - 1.0) * bound
    else:
        raise AssertionError(f"unhandled init rule {rule!r}")  # the spec validates it
    return {"weight": weight, "bias": out} if bias else {"weight": weight}


def ones_and_zeros(param_shapes: dict[str, Shape]) -> dict[str, np.ndarray]:
    """Normalisation layers' affine parameters as torch starts them, whatever the init
    rule (none draws from the random stream): ``weight`` ones, ``bias`` zeros."""
    return {name: np.ones(shape) if name == "weight" else np.zeros(shape)
            for name, shape in param_shapes.items()}
