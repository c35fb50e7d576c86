"""The network in NumPy: the layers' forward passes in order, their backward
passes in reverse (the chain rule, layer by layer), and the loss on top."""
from __future__ import annotations

import numpy as np

from nnparity.shared.core.draws import Draws, no_draws
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tree import Params

from .layers import LAYERS
from .losses import LOSSES


def forward(spec, params, model_state, x, train=True, draws: Draws | None = None):
    """Run the network on x (batch, *input_shape).

    Returns the output (batch, k) and every layer's cache, which backward needs.
    ``draws``: the step's random draws, one per layer (``nnparity.shared.core.draws``);
    a training pass of a network with Dropout needs them.
    """
    caches = []
    h = x
    for layer, layer_params, buffers, draw in zip(spec.layers, params, model_state,
                                                  draws or no_draws(spec), strict=True):
        extra = () if draw is None else (draw,)            # Dropout's mask, drawn outside
        h, cache = LAYERS[layer.kind].forward(layer, layer_params, buffers, h, train, *extra)
        caches.append(cache)
    return h, caches


def backward(spec, params, caches, d_out, grads):
    """The gradients of every parameter from dL/d(output) (batch, k), written
    into ``grads`` (a tree shaped like ``params``)."""
    d = d_out
    for index in reversed(range(len(spec.layers))):
        layer = spec.layers[index]
        d = LAYERS[layer.kind].backward(layer, params[index], caches[index], d, grads[index],
                                        need_input_grad=index > 0)
    return grads


def empty_like(params):
    """Arrays to write gradients into, shaped like ``params``."""
    return [{name: np.empty_like(value) for name, value in layer.items()} for layer in params]


def loss_and_gradients(spec, params, model_state, x, y, grads, draws: Draws | None = None,
                       weight: float | None = None):
    """The minibatch loss and its gradient with respect to every parameter,
    written into ``grads``, in training mode with the step's ``draws``.
    ``weight``: a replica's share w_r of the global batch's loss (the loss and
    dL/dp are scaled by it before the backward pass)."""
    loss, d_loss = LOSSES[spec.loss]
    p, caches = forward(spec, params, model_state, x, True, draws)
    value = loss(p, y, **spec.loss_kwargs)
    d_out = d_loss(p, y, **spec.loss_kwargs)                # dL/dp, (batch, k)
    if weight is not None:
        value, d_out = value * weight, d_out * weight
    return value, backward(spec, params, caches, d_out, grads)


def predict(spec: NetworkSpec, params: Params, model_state: Params, x: np.ndarray
            ) -> np.ndarray:
    """The network's output for x (batch, *input_shape) -> (batch, k), eval mode."""
    return forward(spec, params, model_state, x, train=False)[0]
