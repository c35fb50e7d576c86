"""max_pool2d in JAX: ``lax.reduce_window`` in ``_pool.py`` (shared by the pooling kinds)."""
from __future__ import annotations

from ._pool import max_pool


def forward(layer, params, buffers, x, train):
    """x (batch, C, *n) -> ((batch, C, *out), buffers unchanged)."""
    return max_pool(layer, x), buffers
