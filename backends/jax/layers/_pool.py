"""Pooling in JAX, shared by the four pooling kinds: ``lax.reduce_window`` over
the spatial axes, with explicit padding pairs.

Max pads with -inf (the reducer's identity, so JAX lowers it to
``reduce_window_max``). Its gradient goes to each window's first maximum in
row-major order, torch's tie rule: ``jax.grad`` differentiates it with XLA's
select-and-scatter, which keeps the earlier element on a tie (measured equal to
torch on tie-heavy inputs in ``tests/test_layer_max_pool2d.py``). An even split,
the gradient of ``x.reshape(...).max(axis)``, would not match torch.

Avg sums with ``lax.add`` over a 0 padding and divides by ``layer.divisor``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax


def _reduce(layer, x, init, op):
    """``op`` over every window of x (batch, C, *n) -> (batch, C, *out). ``init`` is
    a concrete NumPy scalar: under ``jit`` a ``jnp`` one is traced, and JAX then
    cannot see the max/add monoid, falls back to a generic ``reduce_window`` and
    has no gradient for it."""
    return lax.reduce_window(x, np.array(init, x.dtype), op,
                             (1, 1, *layer.kernel_size), (1, 1, *layer.stride),
                             ((0, 0), (0, 0), *((p, p) for p in layer.padding)))


def max_pool(layer, x):
    """The maximum of each window, padding -inf."""
    return _reduce(layer, x, -np.inf, lax.max)


def avg_pool(layer, x):
    """The sum of each window, padding 0, over ``layer.divisor`` (a constant)."""
    divisor = layer.divisor(x.shape[2:])                       # (*out), NumPy float64
    return _reduce(layer, x, 0, lax.add) / jnp.asarray(divisor, x.dtype)
