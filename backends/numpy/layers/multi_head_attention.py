"""MultiHeadAttention in NumPy: the forward pass keeping what the backward pass
needs, and the backward pass beside it, written out step by step.

Notation: B batch, T positions, E features, H heads of d = E / H features each.
The forward pass, as ``torch.nn.MultiheadAttention(E, H, batch_first=True)``::

    [q | k | v] = x @ W_in.T + b_in          (B, T, 3E)   W_in = in_proj_weight (3E, E)
    q, k, v -> heads                         (B, H, T, d) head h: features h*d .. h*d+d-1
    s = (q @ k^T) * c,  c = 1 / sqrt(d)      (B, H, T, T) scores
    s[t, u] = -inf for u > t                 (causal only; the diagonal stays, so no
                                              row is ever fully masked)
    p = exp(s - max(s)) / sum(exp(s - max(s)))    (B, H, T, T) softmax over u
    o = p @ v -> heads merged                (B, T, E)
    y = o @ W_out.T + b_out                  (B, T, E)    W_out = out_proj.weight (E, E)

and the backward pass, from dL/dy, the chain rule through each line in reverse::

    dW_out = sum over B, T of dy^T o,   db_out = sum of dy,   do = dy @ W_out
    dp = do @ v^T,   dv = p^T @ do                                    (per head)
    ds = p * (dp - sum(dp * p, over u))          the softmax's Jacobian-vector product
    dq = (ds @ k) * c,   dk = (ds^T @ q) * c                          (per head)
    dqkv = [dq | dk | dv] with the heads merged  (B, T, 3E)
    dW_in = sum over B, T of dqkv^T x,  db_in = sum of dqkv,  dx = dqkv @ W_in

A blocked score needs nothing in the backward pass: its p is exactly 0, so its ds
is 0 too. The scale is a multiplication by the Python float c = 1/sqrt(d), in the
input's dtype, as in the torch and JAX backends (XLA turns a division by a
scalar into a multiplication by its reciprocal; layer-traps.md X3).
"""
from __future__ import annotations

import math

import numpy as np


def forward(layer, params, buffers, x, train):
    """x (B, T, E) -> y (B, T, E); the cache is (x, q, k, v, p, o), see the module
    docstring for the formulas."""
    batch, length, embed = x.shape
    heads = layer.num_heads
    scale = 1.0 / math.sqrt(embed // heads)                    # c = 1/sqrt(d), a Python float
    qkv = x @ params["in_proj_weight"].T                       # (B, T, 3E)
    if "in_proj_bias" in params:
        qkv = qkv + params["in_proj_bias"]
    q, k, v = (split_heads(part, heads) for part in np.split(qkv, 3, axis=-1))  # (B, H, T, d)
    s = (q @ k.swapaxes(-1, -2)) * scale                       # (B, H, T, T)
    if layer.causal:
        s[..., future(length)] = -np.inf                       # (B, H, T, T), u > t blocked
    p = softmax(s)                                             # (B, H, T, T)
    o = merge_heads(p @ v)                                     # (B, H, T, d) -> (B, T, E)
    y = o @ params["out_proj.weight"].T                        # (B, T, E)
    if "out_proj.bias" in params:
        y = y + params["out_proj.bias"]
    return y, (x, q, k, v, p, o)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """From dL/dy (B, T, E): write dL/d(each parameter) into ``grads``; return
    dL/dx (B, T, E) when asked. The formulas are in the module docstring."""
    x, q, k, v, p, o = cache
    heads = layer.num_heads
    embed = x.shape[-1]
    scale = 1.0 / math.sqrt(embed // heads)
    # the output projection, as Dense's backward: every (batch, position) is a row
    grads["out_proj.weight"][...] = rows(d_y).T @ rows(o)     # (E, E)
    if "out_proj.bias" in grads:
        grads["out_proj.bias"][...] = rows(d_y).sum(axis=0)   # (E,)
    d_o = split_heads(d_y @ params["out_proj.weight"], heads)  # (B, H, T, d)
    # o = p @ v
    d_p = d_o @ v.swapaxes(-1, -2)                             # (B, H, T, T)
    d_v = p.swapaxes(-1, -2) @ d_o                             # (B, H, T, d)
    # p = softmax(s): ds = p * (dp - sum(dp * p)); blocked entries have p = 0, so ds = 0
    d_s = p * (d_p - (d_p * p).sum(axis=-1, keepdims=True))    # (B, H, T, T)
    # s = (q @ k^T) * c
    d_q = (d_s @ k) * scale                                    # (B, H, T, d)
    d_k = (d_s.swapaxes(-1, -2) @ q) * scale                   # (B, H, T, d)
    # the packed input projection: [q | k | v] = x @ W_in.T + b_in
    d_qkv = np.concatenate([merge_heads(d_q), merge_heads(d_k), merge_heads(d_v)],
                           axis=-1)                            # (B, T, 3E)
    grads["in_proj_weight"][...] = rows(d_qkv).T @ rows(x)    # (3E, E)
    if "in_proj_bias" in grads:
        grads["in_proj_bias"][...] = rows(d_qkv).sum(axis=0)  # (3E,)
    if need_input_grad:
        return d_qkv @ params["in_proj_weight"]                # (B, T, E)
    return None


def split_heads(a, heads):
    """(B, T, E) -> (B, H, T, d): head h takes features h*d .. h*d + d - 1, as torch."""
    batch, length, embed = a.shape
    return a.reshape(batch, length, heads, embed // heads).transpose(0, 2, 1, 3)


def merge_heads(a):
    """(B, H, T, d) -> (B, T, E = H*d), the inverse of ``split_heads``."""
    batch, heads, length, size = a.shape
    return a.transpose(0, 2, 1, 3).reshape(batch, length, heads * size)


def rows(a):
    """(B, T, n) -> (B*T, n): every (batch, position) pair one row."""
    return a.reshape(-1, a.shape[-1])


def future(length):
    """(T, T) bool, True where u > t: the scores the causal mask blocks (torch's
    ``attn_mask`` convention, True = blocked)."""
    return np.triu(np.ones((length, length), dtype=bool), k=1)


def softmax(s):
    """exp(s - max) / sum(exp(s - max)) over the last axis: the max subtracted, so
    nothing overflows; a -inf score (blocked) gets weight exactly 0. Every row has
    at least one finite score (the diagonal), so its max is finite."""
    e = np.exp(s - s.max(axis=-1, keepdims=True))              # (..., T)
    return e / e.sum(axis=-1, keepdims=True)
