"""Activations in NumPy: for each, the value f(x) and a hand-written f'(x).

The formulas, parameters and breakpoint derivatives are those of
``nnparity.shared.core.activations``. Every function works elementwise on a float32
or float64 array and keeps its dtype (a derivative that is only 0 or 1 may be a
boolean mask, as the notebook's ``(p > 0) * d``), and is written so that no
finite input overflows: branches that np.where evaluates but discards are
clipped first.

erf: GELU needs Phi(x) = erfc(-x/sqrt(2))/2. NumPy has no erf, so we take the
standard library's ``math.erfc`` elementwise rather than adding SciPy as a
dependency: it is accurate to about one ulp (and, unlike 1 + erf, keeps its
relative accuracy far into the negative tail), and the NumPy backend is the
readable reference, not the fast path.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from nnparity.shared.core.activations import GELU_TANH_C, GELU_TANH_K, SELU_ALPHA, SELU_SCALE
from nnparity.shared.core.layers import Activation

def _erfc(x: np.ndarray) -> np.ndarray:
    """``math.erfc`` of each element of the float64 array x, same shape (a map over a
    list: about twice as fast as ``np.vectorize``, the same values)."""
    return np.fromiter(map(math.erfc, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


def identity(x):
    return x


def d_identity(x):
    return np.ones_like(x)


def relu(x):
    return np.maximum(x, 0)


def d_relu(x):
    return x > 0                                               # relu'(0) = 0, as a 0/1 mask


def leaky_relu(x, negative_slope):
    return np.where(x > 0, x, negative_slope * x)


def d_leaky_relu(x, negative_slope):
    return np.where(x > 0, 1.0, negative_slope).astype(x.dtype)  # f'(0) = negative_slope


def elu(x, alpha):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def d_elu(x, alpha):
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0))).astype(x.dtype)  # f'(0) = alpha


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def d_selu(x):
    return SELU_SCALE * d_elu(x, SELU_ALPHA)


def _celu_exponent(x, alpha):
    """min(x, 0) / alpha. For alpha < 1 it may overflow to -inf, which is the right
    limit: e^-inf = 0 and expm1(-inf) = -1. That overflow alone is not reported."""
    with np.errstate(over="ignore"):
        return np.minimum(x, 0) / alpha


def celu(x, alpha):
    return np.where(x > 0, x, alpha * np.expm1(_celu_exponent(x, alpha)))


def d_celu(x, alpha):
    return np.where(x > 0, 1.0, np.exp(_celu_exponent(x, alpha))).astype(x.dtype)


def _normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt(2)) / 2, computed in float64, returned in x's dtype."""
    return (0.5 * _erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2))).astype(x.dtype)


def _x_times_density(x):
    """x * phi(x), phi the standard normal density."""
    xc = np.clip(x, -40, 40)            # beyond +-40, x*phi(x) is 0 in float64; avoids x*x overflow
    return xc * (np.exp(-0.5 * xc * xc) / math.sqrt(2 * math.pi))


def gelu(x):
    return x * _normal_cdf(x)


def d_gelu(x):
    return _normal_cdf(x) + _x_times_density(x)


def gelu_with_derivative(x):
    """(gelu(x), gelu'(x)) = (x Phi(x), Phi(x) + x phi(x)) with one evaluation of Phi,
    the costly part (an erfc per element); the same values as gelu and d_gelu."""
    cdf = _normal_cdf(x)
    return x * cdf, cdf + _x_times_density(x)


def _gelu_tanh_parts(x):
    """(clipped x, tanh(u)); tanh(u) is exactly +-1 beyond |x| = 20, so clipping changes nothing."""
    xc = np.clip(x, -20, 20)
    return xc, np.tanh(GELU_TANH_C * (xc + GELU_TANH_K * xc ** 3))


def gelu_tanh(x):
    _, t = _gelu_tanh_parts(x)
    return 0.5 * x * (1 + t)


def d_gelu_tanh(x):
    xc, t = _gelu_tanh_parts(x)
    return 0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * GELU_TANH_C * (1 + 3 * GELU_TANH_K * xc * xc)


def sigmoid(x):
    e = np.exp(-np.abs(x))              # in (0, 1]: never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def d_sigmoid(x):
    e = np.exp(-np.abs(x))
    return e / (1 + e) ** 2             # = s(1 - s), without cancellation for large |x|


def tanh(x):
    return np.tanh(x)


def d_tanh(x):
    t = np.tanh(x)
    return 1 - t * t


def softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def d_softplus(x):
    return sigmoid(x)


def silu(x):
    return x * sigmoid(x)


def d_silu(x):
    return sigmoid(x) + x * d_sigmoid(x)


def mish(x):
    return x * np.tanh(softplus(x))


def d_mish(x):
    t = np.tanh(softplus(x))
    return t + x * (1 - t * t) * sigmoid(x)


def softsign(x):
    return x / (1 + np.abs(x))


def d_softsign(x):
    return (1 / (1 + np.abs(x))) ** 2   # squaring the reciprocal cannot overflow


def relu6(x):
    return np.clip(x, 0, 6)


def d_relu6(x):
    return ((x > 0) & (x < 6)).astype(x.dtype)                  # 0 at 0 and at 6


def hardtanh(x):
    return np.clip(x, -1, 1)


def d_hardtanh(x):
    return ((x > -1) & (x < 1)).astype(x.dtype)                 # 0 at -1 and at 1


def hardsigmoid(x):
    return np.clip(x / 6 + 0.5, 0, 1)


def d_hardsigmoid(x):
    return np.where((x > -3) & (x < 3), 1 / 6, 0.0).astype(x.dtype)  # 0 at -3 and at 3


def hardswish(x):
    return x * hardsigmoid(x)


def d_hardswish(x):
    middle = (2 * np.clip(x, -3, 3) + 3) / 6                  # clipped: 2x cannot overflow
    return np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, middle)).astype(x.dtype)  # 0 at -3, 1 at 3


#: name -> (f, f'); both take (x, **params)
ACTIVATIONS: dict[str, tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]] = {
    "identity": (identity, d_identity),
    "relu": (relu, d_relu),
    "leaky_relu": (leaky_relu, d_leaky_relu),
    "elu": (elu, d_elu),
    "selu": (selu, d_selu),
    "celu": (celu, d_celu),
    "gelu": (gelu, d_gelu),
    "gelu_tanh": (gelu_tanh, d_gelu_tanh),
    "sigmoid": (sigmoid, d_sigmoid),
    "tanh": (tanh, d_tanh),
    "softplus": (softplus, d_softplus),
    "silu": (silu, d_silu),
    "mish": (mish, d_mish),
    "softsign": (softsign, d_softsign),
    "relu6": (relu6, d_relu6),
    "hardtanh": (hardtanh, d_hardtanh),
    "hardsigmoid": (hardsigmoid, d_hardsigmoid),
    "hardswish": (hardswish, d_hardswish),
}


#: name -> x, **params -> (f(x), f'(x)), for the activations whose f and f' share a
#: costly part; value_and_derivative computes the others' f and f' one after the other
SHARED_WORK: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "gelu": gelu_with_derivative,
}


def value_and_derivative(name: str, x: np.ndarray, **params) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), f'(x)) of the activation ``name``, elementwise: ``ACTIVATIONS[name]``'s
    values, with the work f and f' share done once."""
    if name in SHARED_WORK:
        return SHARED_WORK[name](x, **params)
    f, df = ACTIVATIONS[name]
    return f(x, **params), df(x, **params)


def activation_with_grad(activation: Activation, x: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), f'(x)) elementwise, f' from the hand-written derivative."""
    y, dy = value_and_derivative(activation.name, x, **activation.kwargs)
    # np.array: fresh arrays in x's dtype, also for 0-d input, identity (which returns
    # x itself) and 0/1 masks
    return np.array(y, dtype=x.dtype), np.array(dy, dtype=x.dtype)
