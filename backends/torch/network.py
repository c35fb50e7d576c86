"""The network in torch: the layers' forward passes in order, and the loss."""
from __future__ import annotations

import numpy as np
import torch

from nnparity.shared.core.draws import Draws, no_draws
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tree import Params, map_tree

from .layers import LAYERS
from .losses import LOSSES


def forward(spec, params, model_state, x, train=True, draws: Draws | None = None):
    """x (batch, *input_shape) -> output (batch, k); ``draws`` as in NumPy's ``forward``."""
    h = x
    for layer, layer_params, buffers, draw in zip(spec.layers, params, model_state,
                                                  draws or no_draws(spec), strict=True):
        extra = () if draw is None else (draw,)            # Dropout's mask, drawn outside
        h = LAYERS[layer.kind].forward(layer, layer_params, buffers, h, train, *extra)
    return h


def loss_fn(spec, params, model_state, x, y, draws: Draws | None = None):
    """The minibatch loss in training mode, a 0-d tensor autograd can differentiate."""
    return LOSSES[spec.loss](forward(spec, params, model_state, x, True, draws), y,
                             **spec.loss_kwargs)


def to_tensors(tree, requires_grad=False):
    """A NumPy tree as tensors of the same dtype (copied)."""
    return map_tree(lambda a: torch.tensor(a, requires_grad=requires_grad), tree)


def to_numpy(tree):
    """A tree of tensors as NumPy copies."""
    return map_tree(lambda t: t.detach().numpy().copy(), tree)


def predict(spec: NetworkSpec, params: Params, model_state: Params, x: np.ndarray
            ) -> np.ndarray:
    """The network's output for x (batch, *input_shape) -> (batch, k), eval mode."""
    with torch.no_grad():
        params = map_tree(torch.from_numpy, params)
        model_state = map_tree(torch.from_numpy, model_state)
        return forward(spec, params, model_state, torch.from_numpy(x), train=False).numpy()
