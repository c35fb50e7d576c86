"""Embedding in NumPy: a row lookup forward; backward, a scatter-add of dL/dy into
the looked-up rows with ``np.add.at``, which adds every occurrence of a repeated
token (``dW[x] += g`` would keep only one of them)."""
from __future__ import annotations

import numpy as np


def forward(layer, params, buffers, x, train):
    """x (batch, *s) int tokens -> y (batch, *s, E), y[..., :] = weight[x]; the cache is x."""
    return params["weight"][x], x                              # (batch, *s, E)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """dL/dweight[v] = the sum of dL/dy over every position whose token is v (0 for
    padding_idx); tokens are integers, so there is no dL/dx (None)."""
    x = cache
    d_weight = grads["weight"]                                 # (num_embeddings, E)
    d_weight[...] = 0.0
    np.add.at(d_weight, x, d_y)                                # repeated tokens add up
    if layer.padding_idx is not None:
        d_weight[layer.padding_idx] = 0.0                      # the padding row never learns
    return None
