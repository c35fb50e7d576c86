"""Optimizers in JAX: the update rules of ``nnparity.shared.core.optimizers`` as pure
functions built from ``jax.tree.map``: ``update(kind, h, params, grads, state)``
returns the new parameters and ``OptimizerState``.

Each rule takes the step count and the buffers ({name: tree like the
parameters}) and returns the new parameters and buffers; which buffers there
are fixes the structure (momentum or not, centered or not). The numeric
hyperparameters ``h`` (see ``constants``) are traced arrays, so changing them
does not recompile.
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import tree

from nnparity.shared.core.optimizers import OptimizerState


def constants(opt, dtype) -> dict:
    """The numbers the update rules use, as arrays: each hyperparameter in the
    parameters' dtype, and the derived constants (1 - beta, 1 - lr*wd, ...)
    computed in float64 first and then rounded, as NumPy and torch do with
    Python floats. ``beta1_f64``/``beta2_f64`` stay float64 for the bias
    corrections 1 - beta^t (needs x64 switched on for the call)."""
    h = dict(opt.hyperparameters())
    derived = {}
    for name in ("beta1", "beta2", "alpha", "dampening"):
        if name in h:
            derived["1-" + name] = 1 - h[name]
    if opt.name == "adamw":
        derived["1-lr*wd"] = 1 - h["lr"] * h["weight_decay"]
    out = {k: np.asarray(v, dtype=dtype) for k, v in {**h, **derived}.items()}
    for name in ("beta1", "beta2"):
        if name in h:
            out[name + "_f64"] = np.asarray(h[name], dtype=np.float64)
    return out


def _decay(h, grads, params, decay):
    """g + weight_decay * p, only when weight_decay != 0 (0 * inf would be nan)."""
    return tree.map(lambda g, p: g + h["weight_decay"] * p, grads, params) if decay else grads


def sgd(h, params, grads, step, buffers, nesterov, decay):
    grads = _decay(h, grads, params, decay)
    if "momentum_buffer" in buffers:
        first = step == 0                            # the buffer starts at g
        buffer = tree.map(
            lambda b, g: jnp.where(first, g, h["momentum"] * b + h["1-dampening"] * g),
            buffers["momentum_buffer"], grads)
        buffers = {**buffers, "momentum_buffer": buffer}
        grads = tree.map(lambda g, b: g + h["momentum"] * b, grads, buffer) if nesterov \
            else buffer
    params = tree.map(lambda p, g: p - h["lr"] * g, params, grads)
    return params, buffers


def adam(h, params, grads, step, buffers, decay, decoupled=False):
    t = step + 1
    if decoupled:
        params = tree.map(lambda p: p * h["1-lr*wd"], params)
    else:
        grads = _decay(h, grads, params, decay)
    m = tree.map(lambda m, g: h["beta1"] * m + h["1-beta1"] * g, buffers["exp_avg"], grads)
    v = tree.map(lambda v, g: h["beta2"] * v + h["1-beta2"] * g * g, buffers["exp_avg_sq"], grads)
    dtype = h["lr"].dtype                                     # bias corrections in float64
    correction1 = (1 - h["beta1_f64"] ** t).astype(dtype)
    correction2 = (1 - h["beta2_f64"] ** t).astype(dtype)
    params = tree.map(                                        # eps outside the square root
        lambda p, m, v: p - h["lr"] * (m / correction1) / (jnp.sqrt(v / correction2) + h["eps"]),
        params, m, v)
    return params, {**buffers, "exp_avg": m, "exp_avg_sq": v}


def adamw(h, params, grads, step, buffers, decay):
    return adam(h, params, grads, step, buffers, decay, decoupled=True)


def rmsprop(h, params, grads, step, buffers, decay):
    grads = _decay(h, grads, params, decay)
    alpha = h["alpha"]
    v = tree.map(lambda v, g: alpha * v + h["1-alpha"] * g * g, buffers["square_avg"], grads)
    new = {**buffers, "square_avg": v}
    if "grad_avg" in buffers:                                   # centered
        a = tree.map(lambda a, g: alpha * a + h["1-alpha"] * g, buffers["grad_avg"], grads)
        new["grad_avg"] = a
        d = tree.map(lambda v, a: jnp.sqrt(v - a * a) + h["eps"], v, a)
    else:
        d = tree.map(lambda v: jnp.sqrt(v) + h["eps"], v)
    if "momentum_buffer" in buffers:
        b = tree.map(lambda b, g, d: h["momentum"] * b + g / d, buffers["momentum_buffer"],
                     grads, d)
        new["momentum_buffer"] = b
        params = tree.map(lambda p, b: p - h["lr"] * b, params, b)
    else:
        params = tree.map(lambda p, g, d: p - h["lr"] * g / d, params, grads, d)
    return params, new


def update(kind, h, params, grads, state: OptimizerState) -> tuple[Any, OptimizerState]:
    """One step; ``kind`` = (optimizer name, nesterov, weight_decay != 0), static under jit."""
    name, nesterov, decay = kind
    if name == "sgd":
        params, buffers = sgd(h, params, grads, state.step, state.buffers, nesterov, decay)
    else:
        params, buffers = {"adam": adam, "adamw": adamw, "rmsprop": rmsprop}[name](
            h, params, grads, state.step, state.buffers, decay)
    return params, OptimizerState(state.step + 1, buffers)
