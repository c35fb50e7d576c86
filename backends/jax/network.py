"""The network in JAX, as pure functions: params are data.

``loss_fn`` and ``train_step`` are all of training; the compiled run that
loops over them is ``train.py``.
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tree import Params

from .layers import LAYERS
from .losses import LOSSES
from .optimizers import update


def forward(layers, params, model_state, x, train, draws=None):
    """x (batch, *input_shape) -> (output (batch, k), new model state); ``draws`` as
    in NumPy's ``forward`` (a list with None for layers that draw nothing)."""
    h, new_state = x, []
    for layer, layer_params, buffers, draw in zip(layers, params, model_state,
                                                  draws or [None] * len(layers), strict=True):
        extra = () if draw is None else (draw,)            # Dropout's mask, drawn outside
        h, buffers = LAYERS[layer.kind].forward(layer, layer_params, buffers, h, train, *extra)
        new_state.append(buffers)
    return h, new_state


def loss_fn(params, model_state, x, y, draws, model):
    """(minibatch loss, new model state) in training mode with the step's ``draws``;
    ``model`` = (layers, loss name, loss params), everything static."""
    layers, loss, loss_params = model
    p, model_state = forward(layers, params, model_state, x, True, draws)
    return LOSSES[loss](p, y, **dict(loss_params)), model_state


def train_step(params, model_state, opt_state, x, y, draws, hyper, model, kind):
    """One minibatch step: (params, model state, optimizer state, loss before the update)."""
    (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, model_state, x, y, draws, model)
    params, opt_state = update(kind, hyper, params, grads, opt_state)
    return params, model_state, opt_state, loss


@functools.partial(jax.jit, static_argnums=0)
def _predict(layers, params, model_state, x):
    return forward(layers, params, model_state, x, False)[0]


def predict(spec: NetworkSpec, params: Params, model_state: Params, x: np.ndarray
            ) -> np.ndarray:
    """The network's output for x (batch, *input_shape) -> (batch, k), eval mode."""
    with jax.enable_x64(True):
        return np.array(_predict(spec.layers, params, model_state, x))
