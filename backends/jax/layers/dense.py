"""Dense in JAX: ``x @ weight.T + bias``, a pure function."""
from __future__ import annotations


def forward(layer, params, buffers, x, train):
    """x (batch, ..., in) -> ((batch, ..., units), buffers unchanged)."""
    return x @ params["weight"].T + params["bias"], buffers
