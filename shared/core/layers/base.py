"""What every layer kind declares, from the shape of its input.

A layer spec is a frozen dataclass, validated when it is built and serialised
in the spec's JSON as ``{"kind": ..., field: value, ...}``. Shapes leave out the
batch axis: a layer maps (batch, *input_shape) to (batch, *output_shape(input_shape)).

Parameters and buffers are named the way torch names them (``weight``,
``bias``, later ``running_mean``...); their order in ``param_shapes`` is the
order of torch's ``state_dict``.
"""
from __future__ import annotations

from dataclasses import Field
from typing import Any, ClassVar

import numpy as np

Shape = tuple[int, ...]


class Layer:
    """Base of every layer spec. A subclass sets ``kind`` and overrides what it has:
    a parameter-free, shape-preserving layer needs nothing but ``kind``."""

    kind: ClassVar[str]
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible ``{"kind": ..., field: value}``; ``layer_from_dict`` inverts it."""
        raise NotImplementedError
