"""Losses in JAX, following ``nnparity.shared.core.losses``; ``jax.grad`` gives dL/dp."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nnparity.shared.core.losses import IGNORE_INDEX


def mse(p, y):
    return jnp.mean((p - y) ** 2)


def mae(p, y):
    r = p - y
    # r * sign(r), not jnp.abs(r): jax.grad(jnp.abs)(0.0) is 1, l1_loss's derivative at 0 is 0
    return jnp.mean(r * jnp.sign(r))


def huber(p, y, delta):
    r = jnp.abs(p - y)
    return jnp.mean(jnp.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)))


def cross_entropy(z, labels):
    """z (n, *s, k) logits, labels (n, *s): the mean over the counted positions
    (label != IGNORE_INDEX) of -log_softmax(z)[label], with the positions masked
    (a boolean index would not compile)."""
    log_softmax = z - jax.nn.logsumexp(z, axis=-1, keepdims=True)    # (n, *s, k), stable
    counted = labels != IGNORE_INDEX                                 # (n, *s)
    picked = jnp.take_along_axis(log_softmax, jnp.where(counted, labels, 0)[..., None],
                                 axis=-1)[..., 0]                    # (n, *s)
    return -jnp.sum(jnp.where(counted, picked, 0)) / jnp.sum(counted)


def bce_with_logits(z, t):
    return jnp.mean(jax.nn.softplus(z) - z * t)             # softplus = logaddexp(z, 0)


LOSSES: dict[str, Callable[..., jax.Array]] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "cross_entropy": cross_entropy,
    "bce_with_logits": bce_with_logits,
}


def loss_with_grad(loss: str, params: dict[str, float], p: np.ndarray, y: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(L(p, y), dL/dp), dL/dp from jax.value_and_grad."""
    with jax.enable_x64(True):
        value, grad = jax.value_and_grad(LOSSES[loss])(jnp.asarray(p), jnp.asarray(y), **params)
        return np.array(value), np.array(grad)
