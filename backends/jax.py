"""JAX backend: a pure loss, ``jax.value_and_grad``, a functional SGD update,
and the whole run compiled: ``lax.scan`` over the epochs, and inside each epoch
over its full batches, then one more step for the partial last batch.

float64 specs run under ``jax.enable_x64(True)`` scoped to the call; the
user's global JAX configuration is never changed.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .jax_activations import ACTIVATIONS


def forward(activations, params, x):
    """x (batch, sizes[0]) -> output (batch, sizes[-1]); ``activations`` per hidden layer."""
    h = x
    for layer, (w, b) in enumerate(params):
        h = h @ w.T + b                                    # (batch, out)
        if layer < len(activations):
            h = ACTIVATIONS[activations[layer].name](h, **activations[layer].kwargs)
    return h


def mse_loss(p, y):
    return jnp.mean((p - y) ** 2)


def loss_fn(params, x, y, activations):
    return mse_loss(forward(activations, params, x), y)


def sgd_step(params, x, y, lr, activations):
    """One minibatch step: (new params, loss before the update)."""
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y, activations)
    params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    return params, loss


@functools.partial(jax.jit, static_argnames=("activations",))
def _train(params, x, y, full, tail, lr, activations):
    """full: (epochs, n_full, batch) rows; tail: (epochs, rest) rows or None."""
    def step(params, rows):
        return sgd_step(params, x[rows], y[rows], lr, activations)

    def epoch(params, rows):
        full_rows, tail_rows = rows
        params, losses = lax.scan(step, params, full_rows)          # (n_full,)
        if tail_rows is not None:
            params, last = step(params, tail_rows)
            losses = jnp.concatenate([losses, last[None]])          # (n_full + 1,)
        return params, losses

    params, losses = lax.scan(epoch, params, (full, tail))          # (epochs, steps)
    return params, losses.reshape(-1)


def _scope(dtype):
    """float64 needs x64 switched on; scope it to this call only."""
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def train(spec, params, x, y, plan):
    """Train from NumPy ``params`` over ``plan``; returns (NumPy params, losses)."""
    with _scope(spec.dtype):
        lr = np.asarray(spec.optimizer.lr, dtype=spec.dtype)
        params, losses = _train(params, x, y, plan.full, plan.tail, lr,
                                activations=spec.hidden_activations)
        return [(np.array(w), np.array(b)) for w, b in params], np.array(losses)


def predict(spec, params, x):
    with _scope(spec.dtype):
        return np.array(jax.jit(forward, static_argnums=0)(spec.hidden_activations, params, x))


def activation_with_grad(activation, x):
    """(f(x), f'(x)) elementwise, f' from the vector-Jacobian product with ones."""
    f = functools.partial(ACTIVATIONS[activation.name], **activation.kwargs)
    with _scope(x.dtype):
        y, vjp = jax.vjp(f, jnp.asarray(x))
        (grad,) = vjp(jnp.ones_like(y))
        return np.array(y), np.array(grad)
