"""avg_pool1d in torch: ``F.avg_pool1d``, in ``_pool.py`` (shared by the pooling kinds)."""
from __future__ import annotations

from ._pool import avg_pool


def forward(layer, params, buffers, x, train):
    """x (batch, C, *n) -> (batch, C, *out)."""
    return avg_pool(layer, x)
