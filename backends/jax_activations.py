"""Activations in JAX, following ``nnparity.shared.activations``.

Derivatives come from ``jax.grad``, so each function here must have the
breakpoint derivative that the shared table specifies.
"""
from __future__ import annotations

import jax.numpy as jnp


def identity(x):
    return x


def relu(x):
    return jnp.where(x > 0, x, 0.0)   # grad 0 at 0; jnp.maximum(0, x) would give 0.5


ACTIVATIONS = {
    "identity": identity,
    "relu": relu,
}
