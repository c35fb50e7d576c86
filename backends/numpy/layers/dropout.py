"""Dropout in NumPy: multiply by the step's mask, scaled; the backward pass
multiplies by the same thing. The mask is drawn outside the backend
(``nnparity.shared.core.draws``) and arrives as ``keep``."""
from __future__ import annotations

import numpy as np


def forward(layer, params, buffers, x, train, keep=None):
    """x (batch, ...) -> y the same shape; the cache is the multiplier m.

    Training: m = keep * scale (scale = 1/(1-p) in x's dtype), y = x * m.
    Evaluation: y = x (m = None)."""
    if not train:
        return x, None
    assert keep is not None, "a training pass of Dropout needs the step's draws (draws.py)"
    m = keep * np.asarray(layer.scale(x.dtype), x.dtype)     # (batch, ...) 0 or scale
    return x * m, m


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """dL/dx = dL/dy * m (the identity in evaluation)."""
    m = cache
    return d_y if m is None else d_y * m
