"""RNN (Elman) in JAX: the cell in jnp under ``lax.scan`` (``_recurrent.py``), torch's
equation:

    h_t = act(gi + h @ weight_hh.T + bias_hh),   gi = x_t @ weight_ih.T + bias_ih

act ``jnp.tanh`` or ``jax.nn.relu`` (relu'(0) = 0; ``jnp.maximum(0, a)`` would give 0.5)."""
from __future__ import annotations

from ..activations import ACTIVATIONS
from . import _recurrent


def forward(layer, params, buffers, x, train):
    """x (batch, T, I) -> ((batch, T, H) or (batch, H), buffers unchanged)."""
    return _recurrent.forward(layer, params, x, step), buffers


def step(layer, gi, state, weight_hh, bias_hh):
    """One step: gi (batch, H), state (h,) -> (h_t,)."""
    (h,) = state
    return (ACTIVATIONS[layer.nonlinearity](gi + _recurrent.linear(h, weight_hh, bias_hh)),)
