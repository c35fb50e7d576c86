"""RNN (Elman) in torch, the cell written out (torch's equation):

    h_t = act(gi + h @ weight_hh.T + bias_hh),   gi = x_t @ weight_ih.T + bias_ih

act ``torch.tanh`` or ``torch.relu`` (relu'(0) = 0, the convention every backend keeps)."""
from __future__ import annotations

import torch.nn.functional as F

from ..activations import ACTIVATIONS
from . import _recurrent


def forward(layer, params, buffers, x, train):
    """x (batch, T, I) -> (batch, T, H), or (batch, H) with return_sequence=False."""
    return _recurrent.forward(layer, params, x, step)


def step(layer, gi, state, weight_hh, bias_hh):
    """One step: gi (batch, H), state (h,) -> (h_t,)."""
    (h,) = state
    return (ACTIVATIONS[layer.nonlinearity](gi + F.linear(h, weight_hh, bias_hh)),)
