"""GRU in torch, the cell written out (torch's equations and gate order r, z, n):

    r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z),  n = tanh(gi_n + r * gh_n)
    h_t = n + z * (h - n)

gi = x_t @ weight_ih.T + bias_ih, gh = h @ weight_hh.T + bias_hh, h = h_{t-1}."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _recurrent


def forward(layer, params, buffers, x, train):
    """x (batch, T, I) -> (batch, T, H), or (batch, H) with return_sequence=False."""
    return _recurrent.forward(layer, params, x, step)


def step(layer, gi, state, weight_hh, bias_hh):
    """One step: gi (batch, 3H), state (h,) -> (h_t,)."""
    (h,) = state
    gi_r, gi_z, gi_n = gi.chunk(3, dim=-1)                       # 3 x (batch, H)
    gh_r, gh_z, gh_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(gi_r + gh_r)
    z = torch.sigmoid(gi_z + gh_z)
    n = torch.tanh(gi_n + r * gh_n)
    return (n + z * (h - n),)
