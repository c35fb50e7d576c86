"""LSTM in torch, the cell written out (torch's equations and gate order i, f, g, o):

    a = gi + h @ weight_hh.T + bias_hh,   i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of a's blocks
    c_t = f * c + i * g,   h_t = o * tanh(c_t)

gi = x_t @ weight_ih.T + bias_ih; the state is (h, c), both zero at first."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _recurrent


def forward(layer, params, buffers, x, train):
    """x (batch, T, I) -> (batch, T, H), or (batch, H) with return_sequence=False."""
    return _recurrent.forward(layer, params, x, step, n_states=2)


def step(layer, gi, state, weight_hh, bias_hh):
    """One step: gi (batch, 4H), state (h, c) -> (h_t, c_t)."""
    h, c = state
    a_i, a_f, a_g, a_o = (gi + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
    c = f * c + i * g
    return o * torch.tanh(c), c
