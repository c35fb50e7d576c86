"""Dropout: zero each element with probability p in training, as ``torch.nn.Dropout``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape
from nnparity.shared.core.validation import check_float


@dataclass(frozen=True)
class Dropout(Layer):
    """(batch, ...) -> the same shape. Training mode::

        y = x * (keep * scale),   scale = 1 / (1 - p)

    ``keep`` a boolean mask, each element True with probability 1 - p ("inverted"
    dropout: kept values are scaled up in training, so evaluation is the identity,
    ``y = x``). ``p`` is the probability of *dropping*, as torch's ``p`` and flax's
    and Keras's ``rate``; the default 0.5 is torch's.

    The masks are not drawn by the backends: frameworks' random streams cannot be
    matched (torch's seed 0 and JAX's key 0 give different masks), so the mask of
    every training step is drawn once, in NumPy (``draw``, called by
    ``nnparity.shared.core.draws.step_draws`` from (spec.seed, step, layer index)),
    and every backend gets it as data. All three then agree exactly.

    ``scale`` is computed in the spec's dtype as torch computes it (``1 / (1 - p)``
    with 1 - p rounded to that dtype first) and the multiplier ``keep * scale``
    before x: torch's kept values are ``x * scale`` bit for bit. Dividing instead,
    ``x / (1 - p)`` (flax's eager arithmetic), differs in the last bit in about 40%
    of elements at p = 0.1. p = 1 drops everything (y = 0, as torch); p = 0 keeps
    everything (y = x). torch's ``inplace`` is not offered: nothing here is in place.
    """

    p: float = 0.5
    kind: ClassVar[str] = "dropout"
    random: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_float("Dropout.p", self.p, low=0.0, high=1.0))

    def scale(self, dtype: str | np.dtype) -> float:
        """1 / (1 - p) in ``dtype`` (0 when p = 1: nothing is kept), as a Python float
        (exactly representable in ``dtype``)."""
        if self.p == 1.0:
            return 0.0
        return float(np.asarray(1.0, dtype) / np.asarray(1.0 - self.p, dtype))

    def draw(self, rng: np.random.Generator, shape: Shape) -> np.ndarray:
        """The keep mask, bool ``shape``: True where u >= p for u ~ U[0, 1), so
        P(keep) = 1 - p exactly (p = 0 keeps all, p = 1 none)."""
        return rng.random(shape) >= self.p
