"""Embedding in JAX: ``weight[x]``, whose gradient ``jax.grad`` computes as a
scatter-add. JAX has no ``padding_idx``: that row is read through
``lax.stop_gradient``, so it gets no gradient, as in torch. The tokens were
checked before the run: out of range, ``w[x]`` would clamp to the last row."""
from __future__ import annotations

from jax import lax


def forward(layer, params, buffers, x, train):
    """x (batch, *s) int tokens -> ((batch, *s, E), buffers unchanged)."""
    weight = params["weight"]                                  # (num_embeddings, E)
    if layer.padding_idx is not None:
        row = layer.padding_idx
        weight = weight.at[row].set(lax.stop_gradient(weight[row]))
    return weight[x], buffers
