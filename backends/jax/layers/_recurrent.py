"""What RNN, LSTM and GRU share in JAX: the stack of layers, and ``lax.scan`` over
time. Each kind's module gives ``step(layer, gi_t, state, weight_hh, bias_hh) ->
state``, one cell in jnp; ``jax.grad`` differentiates the scan (backpropagation
through time) by itself.

Pure, and dtype-preserving: the zero initial state takes x's dtype (``jnp.zeros``
without one would be float64 under x64 and promote a float32 layer).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def linear(x, w, b):
    """x @ w.T (+ b): (..., in) -> (..., out)."""
    y = x @ w.T
    return y if b is None else y + b


def forward(layer, params, x, step, n_states=1):
    """x (batch, T, I) -> (batch, T, H), or (batch, H) with return_sequence=False.
    The state is a tuple of ``n_states`` arrays (h,) or (h, c), zero at first; its
    first entry h is the step's output."""
    seq = x
    for k in range(layer.num_layers):
        w_hh, b_hh = params[f"weight_hh_l{k}"], params.get(f"bias_hh_l{k}")
        gi = linear(seq, params[f"weight_ih_l{k}"], params.get(f"bias_ih_l{k}"))  # (B, T, G*H)
        zeros = jnp.zeros((seq.shape[0], layer.hidden_size), seq.dtype)          # (B, H)

        def scan_step(state, gi_t, w_hh=w_hh, b_hh=b_hh):
            state = step(layer, gi_t, state, w_hh, b_hh)
            return state, state[0]                                   # carry, output h_t

        # scan runs over the leading axis: time first, (T, B, G*H) in, (T, B, H) out
        _, hs = lax.scan(scan_step, (zeros,) * n_states, jnp.swapaxes(gi, 0, 1))
        seq = jnp.swapaxes(hs, 0, 1)                                 # (B, T, H)
    return seq if layer.return_sequence else seq[:, -1]
