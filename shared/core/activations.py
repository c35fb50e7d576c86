"""Hidden-layer activations: the one definition of each, its derivative, its
parameters and the derivative chosen at every breakpoint.

Every backend implements exactly these formulas: NumPy by hand (value and
derivative), torch and JAX for the value, with the derivative from autograd.

Breakpoint convention: where f is not differentiable, f'(x0) is the value
PyTorch's autograd gives for its own function (measured with torch 2.13):

    relu'(0) = 0                 leaky_relu'(0) = negative_slope
    elu'(0) = alpha              selu'(0) = scale * alpha
    relu6'(0) = relu6'(6) = 0    hardtanh'(-1) = hardtanh'(1) = 0
    hardsigmoid'(-3) = hardsigmoid'(3) = 0
    hardswish'(-3) = 0           hardswish'(3) = 1

``breakpoints(name, params)`` returns this table as {x0: f'(x0)}; the tests
check every backend against it point by point.

Numerics: for every finite input (float32 or float64, including +-1e300),
values and derivatives are finite, and the NumPy implementation raises no
floating-point warning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from nnparity.shared.core.validation import check_choice, check_float, fail

# torch.nn.SELU's constants (Klambauer et al. 2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_C = math.sqrt(2.0 / math.pi)   # sqrt(2/pi), the tanh approximation's factor
GELU_TANH_K = 0.044715                    # the tanh approximation's cubic coefficient


def _none(p):
    return {}


@dataclass(frozen=True)
class ActivationDef:
    """One activation: formula, derivative, parameters (with defaults), breakpoints.

    ``breakpoints(params)`` maps each breakpoint x0 to the derivative used at x0.
    Every parameter is a finite float; those named in ``positive`` must be > 0.
    """

    name: str
    formula: str
    derivative: str
    defaults: Mapping[str, float] = field(default_factory=dict)
    breakpoints: Callable[[Mapping[str, float]], dict[float, float]] = _none
    positive: tuple[str, ...] = ()


ACTIVATIONS: dict[str, ActivationDef] = {a.name: a for a in (
    ActivationDef("identity", "x", "1"),
    ActivationDef("relu", "max(x, 0)", "1 if x > 0 else 0",
                  breakpoints=lambda p: {0.0: 0.0}),
    ActivationDef("leaky_relu", "x if x > 0 else s*x", "1 if x > 0 else s",
                  {"negative_slope": 0.01},
                  breakpoints=lambda p: {0.0: p["negative_slope"]}),
    ActivationDef("elu", "x if x > 0 else alpha*(e^x - 1)", "1 if x > 0 else alpha*e^x",
                  {"alpha": 1.0}, breakpoints=lambda p: {0.0: p["alpha"]}, positive=("alpha",)),
    ActivationDef("selu", "scale*(x if x > 0 else alpha*(e^x - 1))",
                  "scale*(1 if x > 0 else alpha*e^x)",
                  breakpoints=lambda p: {0.0: SELU_SCALE * SELU_ALPHA}),
    ActivationDef("celu", "x if x > 0 else alpha*(e^(x/alpha) - 1)",
                  "1 if x > 0 else e^(x/alpha)", {"alpha": 1.0},
                  breakpoints=lambda p: {0.0: 1.0}, positive=("alpha",)),
    ActivationDef("gelu", "x*Phi(x), Phi(x) = (1 + erf(x/sqrt(2)))/2",
                  "Phi(x) + x*phi(x), phi(x) = e^(-x^2/2)/sqrt(2 pi)"),
    ActivationDef("gelu_tanh", "x/2*(1 + tanh(u)), u = sqrt(2/pi)*(x + 0.044715 x^3)",
                  "(1 + tanh(u))/2 + x/2*(1 - tanh(u)^2)*sqrt(2/pi)*(1 + 3*0.044715 x^2)"),
    ActivationDef("sigmoid", "1/(1 + e^-x)", "s(1 - s) = e^-|x|/(1 + e^-|x|)^2"),
    ActivationDef("tanh", "tanh(x)", "1 - tanh(x)^2"),
    ActivationDef("softplus", "log(1 + e^x) = max(x, 0) + log1p(e^-|x|), no threshold",
                  "sigmoid(x)"),
    ActivationDef("silu", "x*sigmoid(x)", "sigmoid(x) + x*sigmoid'(x)"),
    ActivationDef("mish", "x*tanh(softplus(x))",
                  "tanh(softplus(x)) + x*(1 - tanh(softplus(x))^2)*sigmoid(x)"),
    ActivationDef("softsign", "x/(1 + |x|)", "1/(1 + |x|)^2"),
    ActivationDef("relu6", "min(max(x, 0), 6)", "1 if 0 < x < 6 else 0",
                  breakpoints=lambda p: {0.0: 0.0, 6.0: 0.0}),
    ActivationDef("hardtanh", "clip(x, -1, 1)", "1 if -1 < x < 1 else 0",
                  breakpoints=lambda p: {-1.0: 0.0, 1.0: 0.0}),
    ActivationDef("hardsigmoid", "clip(x/6 + 1/2, 0, 1)", "1/6 if -3 < x < 3 else 0",
                  breakpoints=lambda p: {-3.0: 0.0, 3.0: 0.0}),
    ActivationDef("hardswish", "x*hardsigmoid(x)",
                  "0 if x <= -3; (2x + 3)/6 if -3 < x < 3; 1 if x >= 3",
                  breakpoints=lambda p: {-3.0: 0.0, 3.0: 1.0}),
)}


def check_activation_params(name: str, params, label: str = "activation_params") -> dict:
    """Validate parameters for activation ``name``; returns them as {str: float}."""
    check_choice("activation", name, ACTIVATIONS)
    act = ACTIVATIONS[name]
    if not isinstance(params, Mapping):
        fail(label, params, "a mapping of parameter names to numbers", TypeError)
    checked = {}
    for key, value in params.items():
        if key not in act.defaults:
            allowed = ", ".join(map(repr, act.defaults)) or "none"
            fail(f"{label}[{key!r}]", value, f"parameters of {name!r} only: {allowed}")
        low = 0.0 if key in act.positive else None
        checked[key] = check_float(f"{label}[{key!r}]", value, low=low, low_open=True)
    return checked


def breakpoints(name: str, params: Mapping[str, float] | None = None) -> dict[float, float]:
    """The breakpoint convention of activation ``name``: {x0: f'(x0)}."""
    return ACTIVATIONS[name].breakpoints({**ACTIVATIONS[name].defaults,
                                          **check_activation_params(name, params or {})})
