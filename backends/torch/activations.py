"""Activations in PyTorch, following ``nnparity.shared.core.activations``.

Derivatives come from autograd, so each function must have the breakpoint
derivative the shared table specifies. A ``torch.nn.functional`` built-in is
used only where it matches the definition, the breakpoint convention and the
float64 precision; the others are written out:

- softplus: ``F.softplus`` is exactly linear above threshold=20; ``logaddexp(x, 0)``
  has no threshold and a gradient that stays finite.
- gelu_tanh: ``F.gelu(approximate="tanh")`` has a NaN gradient at |x| ~ 1e300 (x^3
  overflows); the input to tanh is clamped at +-20, where tanh is already +-1.
- hardsigmoid: ``F.hardsigmoid``'s float64 backward uses the float32 value of 1/6.
- celu: ``F.celu``'s float64 gradient uses alpha rounded to float32 (celu'(0) is
  0.999999985 for alpha=0.05).
- gelu, hardswish: ``F.gelu`` and ``F.hardswish`` overflow to inf for float32 inputs
  near 3e38 (they form x*(x+3) or 2x); here the bounded factor is formed first.
  gelu uses erfc, which keeps its relative accuracy in the negative tail.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from nnparity.shared.core.activations import GELU_TANH_C, GELU_TANH_K
from nnparity.shared.core.layers import Activation


def identity(x):
    return x


def softplus(x):
    return torch.logaddexp(x, torch.zeros_like(x))


def gelu_tanh(x):
    xc = x.clamp(-20, 20)
    return 0.5 * x * (1 + torch.tanh(GELU_TANH_C * (xc + GELU_TANH_K * xc ** 3)))


def celu(x, alpha):
    negative = torch.where(x > 0, 0.0, x)     # the discarded branch cannot overflow
    return torch.where(x > 0, x, alpha * torch.expm1(negative / alpha))


def gelu(x):
    return x * (0.5 * torch.special.erfc(-x / math.sqrt(2)))


def hardsigmoid(x):
    return torch.where(x <= -3, 0.0, torch.where(x >= 3, 1.0, x / 6 + 0.5))


def hardswish(x):
    return x * hardsigmoid(x)           # f'(-3) = 0 + (-3)*0, f'(3) = 1 + 3*0


#: name -> f(x, **params); autograd gives f'
ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "identity": identity,
    "relu": torch.relu,                       # relu'(0) = 0; torch.maximum would give 0.5
    "leaky_relu": F.leaky_relu,               # f'(0) = negative_slope
    "elu": F.elu,                             # f'(0) = alpha
    "selu": F.selu,                           # torch's constants are the definition's
    "celu": celu,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softplus": softplus,
    "silu": F.silu,
    "mish": F.mish,
    "softsign": F.softsign,
    "relu6": F.relu6,                         # f'(0) = f'(6) = 0
    "hardtanh": F.hardtanh,                   # f'(-1) = f'(1) = 0
    "hardsigmoid": hardsigmoid,
    "hardswish": hardswish,
}


def activation_with_grad(activation: Activation, x: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), f'(x)) elementwise, f' from autograd (backward of the sum)."""
    xt = torch.tensor(x, requires_grad=True)
    y = ACTIVATIONS[activation.name](xt, **activation.kwargs)
    y.sum().backward()
    assert xt.grad is not None                  # backward() filled it
    return y.detach().numpy(), xt.grad.numpy()
