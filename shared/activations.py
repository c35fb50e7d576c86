"""Hidden-layer activations: the one definition of each, with its derivative
and the derivative chosen at every breakpoint.

Every backend implements exactly these formulas. At a breakpoint (a point where
the function is not differentiable) the derivative is the one PyTorch's
autograd gives for its own function; ``BREAKPOINTS`` lists them and the tests
check every backend against that table point by point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping


@dataclass(frozen=True)
class ActivationDef:
    """One activation: its formula, derivative and breakpoint convention.

    ``breakpoints(params)`` maps each breakpoint x0 to the derivative used at x0.
    """

    name: str
    formula: str
    derivative: str
    defaults: Mapping[str, float] = field(default_factory=dict)
    breakpoints: Callable[[Mapping[str, float]], dict[float, float]] = lambda p: {}


ACTIVATIONS: dict[str, ActivationDef] = {a.name: a for a in (
    ActivationDef("identity", "f(x) = x", "f'(x) = 1"),
    ActivationDef(
        "relu", "f(x) = max(x, 0)", "f'(x) = 1 if x > 0 else 0",
        breakpoints=lambda p: {0.0: 0.0},
    ),
)}


def breakpoints(name: str, params: Mapping[str, float] | None = None) -> dict[float, float]:
    """The breakpoint convention of activation ``name``: {x0: f'(x0)}."""
    act = ACTIVATIONS[name]
    return act.breakpoints({**act.defaults, **(params or {})})
