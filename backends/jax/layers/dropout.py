"""Dropout in JAX, pure: the step's mask arrives as data (``keep``), drawn outside
the backend (``nnparity.shared.core.draws``), so the compiled loop takes the masks
as scanned inputs and nothing recompiles per step. Not ``jax.random``: its
stream cannot match the other frameworks'."""
from __future__ import annotations


def forward(layer, params, buffers, x, train, keep=None):
    """x (batch, ...) -> (the same shape, buffers unchanged): x * (keep * scale) in
    training, x in evaluation. The multiplier comes first, as in the other backends:
    ``x / (1 - p)`` would be rewritten by XLA as ``x * (1 / (1 - p))`` anyway."""
    if not train:
        return x, buffers
    m = keep.astype(x.dtype) * layer.scale(x.dtype)          # (batch, ...) 0 or scale
    return x * m, buffers
