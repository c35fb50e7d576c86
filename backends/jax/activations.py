"""Activations in JAX, following ``nnparity.shared.core.activations``.

Derivatives come from ``jax.grad``, so each function must have the breakpoint
derivative the shared table specifies. A ``jax.nn`` built-in is used only where
it matches; the others are written with ``jnp.where``, whose gradient at a tie
follows the selected branch (``jnp.maximum``/``jnp.clip`` split it 0.5/0.5):

- leaky_relu: ``jax.nn.leaky_relu``'s gradient at 0 is 1, not negative_slope.
- hardtanh: ``jax.nn.hard_tanh``'s gradient at -1 and 1 is 1, not 0.
- relu6, hardsigmoid, hardswish: written with where too, so that their
  breakpoint derivatives are the shared table's by construction (jax 0.10.2's
  built-ins happen to agree with it).
- gelu: ``jax.nn.gelu`` defaults to the tanh approximation; written here with erfc,
  as in the other backends.
- gelu_tanh: ``jax.nn.gelu(approximate=True)`` has a NaN gradient at |x| ~ 1e300.
- celu: ``jax.nn.celu`` uses jnp.maximum/minimum; written with where, whose
  discarded branch is clamped so it cannot overflow (celu'(0) = 1).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

from nnparity.shared.core.activations import GELU_TANH_C, GELU_TANH_K
from nnparity.shared.core.layers import Activation


def identity(x):
    return x


def leaky_relu(x, negative_slope):
    return jnp.where(x > 0, x, negative_slope * x)


def celu(x, alpha):
    negative = jnp.where(x > 0, 0.0, x)     # where, not minimum: its gradient at 0 is 1, not 0.5
    return jnp.where(x > 0, x, alpha * jnp.expm1(negative / alpha))


def gelu(x):
    return x * (0.5 * jax.scipy.special.erfc(-x / math.sqrt(2)))


def gelu_tanh(x):
    xc = jnp.clip(x, -20, 20)           # tanh is already +-1 there; x^3 cannot overflow
    return 0.5 * x * (1 + jnp.tanh(GELU_TANH_C * (xc + GELU_TANH_K * xc ** 3)))


def relu6(x):
    return jnp.where(x <= 0, 0.0, jnp.where(x >= 6, 6.0, x))


def hardtanh(x):
    return jnp.where(x <= -1, -1.0, jnp.where(x >= 1, 1.0, x))


def hardsigmoid(x):
    return jnp.where(x <= -3, 0.0, jnp.where(x >= 3, 1.0, x / 6 + 0.5))


def hardswish(x):
    return x * hardsigmoid(x)           # f'(-3) = 0 + (-3)*0, f'(3) = 1 + 3*0


def mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


#: name -> f(x, **params); jax.grad gives f'
ACTIVATIONS: dict[str, Callable[..., jax.Array]] = {
    "identity": identity,
    "relu": jax.nn.relu,                 # relu'(0) = 0; jnp.maximum(0, x) would give 0.5
    "leaky_relu": leaky_relu,
    "elu": jax.nn.elu,                   # where(x > 0, x, alpha*expm1(where(x > 0, 0, x)))
    "selu": jax.nn.selu,                 # torch's constants
    "celu": celu,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,         # logaddexp(x, 0): no threshold
    "silu": jax.nn.silu,
    "mish": mish,
    "softsign": jax.nn.soft_sign,
    "relu6": relu6,
    "hardtanh": hardtanh,
    "hardsigmoid": hardsigmoid,
    "hardswish": hardswish,
}


def activation_with_grad(activation: Activation, x: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), f'(x)) elementwise, f' from the vector-Jacobian product with ones."""
    f = functools.partial(ACTIVATIONS[activation.name], **activation.kwargs)
    with jax.enable_x64(True):
        y, vjp = jax.vjp(f, jnp.asarray(x))
        (grad,) = vjp(jnp.ones_like(y))
        return np.array(y), np.array(grad)
