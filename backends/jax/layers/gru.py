"""GRU in JAX: the cell in jnp under ``lax.scan`` (``_recurrent.py``), torch's
equations and gate order r, z, n:

    r = sigmoid(gi_r + gh_r),  z = sigmoid(gi_z + gh_z),  n = tanh(gi_n + r * gh_n)
    h_t = n + z * (h - n)

gi = x_t @ weight_ih.T + bias_ih, gh = h @ weight_hh.T + bias_hh, h = h_{t-1}. The
update is torch's form; flax's ``(1 - z) * n + z * h`` rounds differently."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _recurrent


def forward(layer, params, buffers, x, train):
    """x (batch, T, I) -> ((batch, T, H) or (batch, H), buffers unchanged)."""
    return _recurrent.forward(layer, params, x, step), buffers


def step(layer, gi, state, weight_hh, bias_hh):
    """One step: gi (batch, 3H), state (h,) -> (h_t,)."""
    (h,) = state
    gi_r, gi_z, gi_n = jnp.split(gi, 3, axis=-1)                 # 3 x (batch, H)
    gh_r, gh_z, gh_n = jnp.split(_recurrent.linear(h, weight_hh, bias_hh), 3, axis=-1)
    r = jax.nn.sigmoid(gi_r + gh_r)
    z = jax.nn.sigmoid(gi_z + gh_z)
    n = jnp.tanh(gi_n + r * gh_n)
    return (n + z * (h - n),)
