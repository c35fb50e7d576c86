"""Activations in NumPy: each is a pair (f, df) of plain array functions.

The definitions, derivatives and breakpoint conventions are those of
``nnparity.shared.activations``; df is written by hand.
"""
from __future__ import annotations

import numpy as np


def identity(x):
    return x


def d_identity(x):
    return np.ones_like(x)


def relu(x):
    return np.where(x > 0, x, 0.0)


def d_relu(x):
    return (x > 0).astype(x.dtype)   # relu'(0) = 0


ACTIVATIONS = {
    "identity": (identity, d_identity),
    "relu": (relu, d_relu),
}
