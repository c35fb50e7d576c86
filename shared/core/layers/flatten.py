"""Flatten: every axis after the batch axis into one, as ``torch.nn.Flatten()``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from nnparity.shared.core.layers.base import Layer, Shape


@dataclass(frozen=True)
class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...), row-major (C order), as
    ``torch.nn.Flatten()`` (start_dim=1) and NumPy's ``reshape``. No parameters.

    The order matters when a port moves between channels-first (torch, here) and
    channels-last (Keras, flax) layouts: the same image flattens to a different
    vector, so the following Dense layer's weight columns are permuted.
    """

    kind: ClassVar[str] = "flatten"

    def output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)
