"""JAX backend: a pure loss, ``jax.value_and_grad``, a functional optimizer
update, and the whole run compiled: ``lax.scan`` over the epochs, inside each
epoch over its full batches, then one more step for the partial last batch.

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
from .jax_losses import LOSSES
from .jax_optimizers import update


def forward(activations, params, x):
    """x (batch, sizes[0]) -> output (batch, sizes[-1]); ``activations`` per hidden layer."""
    h = x
    for layer, (w, b) in enumerate(params):
        h = h @ w.T + b                                    # (batch, out)
        if layer < len(activations):
            h = ACTIVATIONS[activations[layer].name](h, **activations[layer].kwargs)
    return h


def loss_fn(params, x, y, model):
    """``model`` = (activations, loss name, loss params): everything static."""
    activations, loss, loss_params = model
    return LOSSES[loss](forward(activations, params, x), y, **dict(loss_params))


def train_step(params, state, x, y, hyper, model, kind):
    """One minibatch step: (new params, new state, loss before the update)."""
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y, model)
    params, state = update(kind, hyper, params, grads, state)
    return params, state, loss


@functools.partial(jax.jit, static_argnames=("model", "kind"))
def _train(params, state, x, y, full, tail, hyper, model, kind):
    """full: (epochs, n_full, batch) rows; tail: (epochs, rest) rows or None."""
    def step(carry, rows):
        params, state, loss = train_step(*carry, x[rows], y[rows], hyper, model, kind)
        return (params, state), loss

    def epoch(carry, rows):
        full_rows, tail_rows = rows
        carry, losses = lax.scan(step, carry, full_rows)            # (n_full,)
        if tail_rows is not None:
            carry, last = step(carry, tail_rows)
            losses = jnp.concatenate([losses, last[None]])          # (n_full + 1,)
        return carry, losses

    (params, state), losses = lax.scan(epoch, (params, state), (full, tail))
    return params, state, losses.reshape(-1)                        # (epochs * steps,)


def _scope(dtype):
    """float64 needs x64 switched on; scope it to this call only."""
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def static_parts(spec):
    """What fixes the compiled computation: (model, kind). Numbers go in ``hyper``."""
    model = (spec.hidden_activations, spec.loss, tuple(sorted(spec.loss_kwargs.items())))
    kind = (spec.optimizer.name, getattr(spec.optimizer, "nesterov", False))
    return model, kind


def to_numpy(tree):
    return jax.tree.map(np.array, tree)


def train(spec, params, state, x, y, plan):
    """Train from NumPy params and state over ``plan``; returns them in NumPy, and the losses."""
    model, kind = static_parts(spec)
    with _scope(spec.dtype):
        hyper = {k: np.asarray(v, dtype=spec.dtype)
                 for k, v in spec.optimizer.hyperparameters().items()}
        params, state, losses = _train(params, state, x, y, plan.full, plan.tail, hyper,
                                       model=model, kind=kind)
        state = to_numpy(state)
        state["step"] = int(state["step"])
        return to_numpy(params), state, np.array(losses)


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


def loss_with_grad(loss, params, p, y):
    """(L(p, y), dL/dp), dL/dp from jax.value_and_grad."""
    with _scope(p.dtype):
        value, grad = jax.value_and_grad(LOSSES[loss])(jnp.asarray(p), jnp.asarray(y), **params)
        return np.array(value), np.array(grad)
