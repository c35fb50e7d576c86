"""Optimizers in JAX: the update rules of ``nnparity.shared.optimizers`` as pure
functions ``(params, grads, state) -> (params, state)`` built from ``jax.tree.map``.

State is a pytree ``{"step": int, buffer: [(W, b), ...]}``; which buffers it
holds fixes the structure (momentum or not, centered or not). The numeric
hyperparameters ``h`` are traced arrays, so changing them does not recompile.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import tree


def sgd(h, params, grads, state, nesterov):
    grads = tree.map(lambda g, p: g + h["weight_decay"] * p, grads, params)
    if "momentum_buffer" in state:
        first = state["step"] == 0                            # the buffer starts at g
        buffer = tree.map(
            lambda b, g: jnp.where(first, g, h["momentum"] * b + (1 - h["dampening"]) * g),
            state["momentum_buffer"], grads)
        state = {**state, "momentum_buffer": buffer}
        grads = tree.map(lambda g, b: g + h["momentum"] * b, grads, buffer) if nesterov \
            else buffer
    params = tree.map(lambda p, g: p - h["lr"] * g, params, grads)
    return params, state


def adam(h, params, grads, state, decoupled=False):
    t = state["step"] + 1
    if decoupled:
        params = tree.map(lambda p: p * (1 - h["lr"] * h["weight_decay"]), params)
    else:
        grads = tree.map(lambda g, p: g + h["weight_decay"] * p, grads, params)
    m = tree.map(lambda m, g: h["beta1"] * m + (1 - h["beta1"]) * g, state["exp_avg"], grads)
    v = tree.map(lambda v, g: h["beta2"] * v + (1 - h["beta2"]) * g * g,
                 state["exp_avg_sq"], grads)
    correction1, correction2 = 1 - h["beta1"] ** t, 1 - h["beta2"] ** t
    params = tree.map(                                        # eps outside the square root
        lambda p, m, v: p - h["lr"] * (m / correction1) / (jnp.sqrt(v / correction2) + h["eps"]),
        params, m, v)
    return params, {**state, "exp_avg": m, "exp_avg_sq": v}


def adamw(h, params, grads, state):
    return adam(h, params, grads, state, decoupled=True)


def rmsprop(h, params, grads, state):
    grads = tree.map(lambda g, p: g + h["weight_decay"] * p, grads, params)
    alpha = h["alpha"]
    v = tree.map(lambda v, g: alpha * v + (1 - alpha) * g * g, state["square_avg"], grads)
    new = {**state, "square_avg": v}
    if "grad_avg" in state:                                   # centered
        a = tree.map(lambda a, g: alpha * a + (1 - alpha) * g, state["grad_avg"], grads)
        new["grad_avg"] = a
        d = tree.map(lambda v, a: jnp.sqrt(v - a * a) + h["eps"], v, a)
    else:
        d = tree.map(lambda v: jnp.sqrt(v) + h["eps"], v)
    if "momentum_buffer" in state:
        b = tree.map(lambda b, g, d: h["momentum"] * b + g / d, state["momentum_buffer"], grads, d)
        new["momentum_buffer"] = b
        params = tree.map(lambda p, b: p - h["lr"] * b, params, b)
    else:
        params = tree.map(lambda p, g, d: p - h["lr"] * g / d, params, grads, d)
    return params, new


def update(kind, h, params, grads, state):
    """One step; ``kind`` is (optimizer name, nesterov), static under jit."""
    name, nesterov = kind
    if name == "sgd":
        params, state = sgd(h, params, grads, state, nesterov)
    else:
        params, state = {"adam": adam, "adamw": adamw, "rmsprop": rmsprop}[name](
            h, params, grads, state)
    return params, {**state, "step": state["step"] + 1}
