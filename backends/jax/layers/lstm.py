"""LSTM in JAX: the cell in jnp under ``lax.scan`` (``_recurrent.py``), torch's
equations and gate order i, f, g, o:

    a = gi + h @ weight_hh.T + bias_hh,   i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of a's blocks
    c_t = f * c + i * g,   h_t = o * tanh(c_t)

gi = x_t @ weight_ih.T + bias_ih. The carry is (h, c), torch's order (flax's
LSTMCell carries (c, h))."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _recurrent


def forward(layer, params, buffers, x, train):
    """x (batch, T, I) -> ((batch, T, H) or (batch, H), buffers unchanged)."""
    return _recurrent.forward(layer, params, x, step, n_states=2), buffers


def step(layer, gi, state, weight_hh, bias_hh):
    """One step: gi (batch, 4H), state (h, c) -> (h_t, c_t)."""
    h, c = state
    a_i, a_f, a_g, a_o = jnp.split(gi + _recurrent.linear(h, weight_hh, bias_hh), 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
    c = f * c + i * g
    return o * jnp.tanh(c), c
