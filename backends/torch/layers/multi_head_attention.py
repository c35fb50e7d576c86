"""MultiHeadAttention in torch, written out from tensor operations (``F.linear``,
``matmul``, ``softmax``) so that autograd differentiates each step; not
``nn.MultiheadAttention`` nor ``F.scaled_dot_product_attention``, which are the
tests' oracles. The formulas are those of the NumPy backend's module.

``torch.softmax`` subtracts each row's max and computes in the input's dtype.
The causal mask is torch's ``attn_mask`` convention, True = blocked, applied by
``masked_fill`` with -inf; the diagonal is never blocked, so no row is fully
masked.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def forward(layer, params, buffers, x, train):
    """x (B, T, E) -> y (B, T, E)."""
    batch, length, embed = x.shape
    heads = layer.num_heads
    scale = 1.0 / math.sqrt(embed // heads)                    # c = 1/sqrt(d), a Python float
    qkv = F.linear(x, params["in_proj_weight"], params.get("in_proj_bias"))   # (B, T, 3E)
    q, k, v = (split_heads(part, heads) for part in qkv.chunk(3, dim=-1))     # (B, H, T, d)
    s = (q @ k.transpose(-1, -2)) * scale                      # (B, H, T, T)
    if layer.causal:
        blocked = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        s = s.masked_fill(blocked, float("-inf"))              # u > t blocked
    p = torch.softmax(s, dim=-1)                               # (B, H, T, T)
    o = (p @ v).transpose(1, 2).reshape(batch, length, embed)  # (B, T, E)
    return F.linear(o, params["out_proj.weight"], params.get("out_proj.bias"))


def split_heads(a, heads):
    """(B, T, E) -> (B, H, T, d): head h takes features h*d .. h*d + d - 1."""
    batch, length, embed = a.shape
    return a.reshape(batch, length, heads, embed // heads).transpose(1, 2)
