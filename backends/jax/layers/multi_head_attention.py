"""MultiHeadAttention in JAX: pure ``jnp``, dtype-preserving; ``jax.grad``
differentiates it. The formulas are those of the NumPy backend's module.

Not ``jax.nn.dot_product_attention``: it runs its softmax in float32 whatever the
input's dtype (rel 4.5e-8 against float64; layer-traps.md X2). The softmax here
is written out, in the input's dtype: subtract the row max (under
``stop_gradient``: the softmax does not depend on it), exponentiate, divide by
the sum. The causal mask is a ``jnp.where`` to -inf (weight exactly 0); the
diagonal is never blocked, so every row's max is finite. The 1/sqrt(d) scale is
a multiplication by a Python float, which keeps float32 float32.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax


def forward(layer, params, buffers, x, train):
    """x (B, T, E) -> ((B, T, E), buffers unchanged)."""
    batch, length, embed = x.shape
    heads = layer.num_heads
    scale = 1.0 / math.sqrt(embed // heads)                    # c = 1/sqrt(d), a Python float
    qkv = x @ params["in_proj_weight"].T                       # (B, T, 3E)
    if "in_proj_bias" in params:
        qkv = qkv + params["in_proj_bias"]
    q, k, v = (split_heads(part, heads) for part in jnp.split(qkv, 3, axis=-1))  # (B, H, T, d)
    s = (q @ jnp.swapaxes(k, -1, -2)) * scale                  # (B, H, T, T)
    if layer.causal:
        allowed = jnp.tril(jnp.ones((length, length), dtype=bool))   # u <= t
        s = jnp.where(allowed, s, -jnp.inf)
    e = jnp.exp(s - lax.stop_gradient(s.max(axis=-1, keepdims=True)))
    p = e / e.sum(axis=-1, keepdims=True)                      # (B, H, T, T)
    o = jnp.swapaxes(p @ v, 1, 2).reshape(batch, length, embed)  # (B, T, E)
    y = o @ params["out_proj.weight"].T
    if "out_proj.bias" in params:
        y = y + params["out_proj.bias"]
    return y, buffers


def split_heads(a, heads):
    """(B, T, E) -> (B, H, T, d): head h takes features h*d .. h*d + d - 1."""
    batch, length, embed = a.shape
    return jnp.swapaxes(a.reshape(batch, length, heads, embed // heads), 1, 2)
