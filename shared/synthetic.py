"""Small seeded synthetic data sets, for the tests and the measurement tools.

Each draws from ``np.random.RandomState(seed)`` (features first, then the
hidden weights, then the noise), returns ``n_train`` training rows followed by
``n_test`` test rows, and is float64 except for class labels (int64):

- ``regression``: y = tanh(x @ W) + 0.1 * noise, shape (n, n_out);
- ``classification``: labels = argmax(x @ W + noise_scale * noise), shape (n,);
- ``binary``: y = (x @ W > 0) as 0.0/1.0, shape (n, n_out).
"""
from __future__ import annotations

import numpy as np

from .data import Dataset


def _split(x: np.ndarray, y: np.ndarray, n_train: int) -> Dataset:
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def regression(n_train: int, n_in: int, n_out: int, seed: int, n_test: int = 16) -> Dataset:
    """x (n, n_in) standard normal; y = tanh(x @ W) + 0.1 * noise, (n, n_out)."""
    rs = np.random.RandomState(seed)
    x = rs.randn(n_train + n_test, n_in)
    y = np.tanh(x @ rs.randn(n_in, n_out)) + 0.1 * rs.randn(n_train + n_test, n_out)
    return _split(x, y, n_train)


def classification(n_train: int, n_in: int, k: int, seed: int, n_test: int = 16,
                   noise_scale: float = 0.3) -> Dataset:
    """x (n, n_in) standard normal; labels (n,) = argmax(x @ W + noise_scale * noise)
    over k classes (no noise drawn when noise_scale is 0)."""
    rs = np.random.RandomState(seed)
    x = rs.randn(n_train + n_test, n_in)
    scores = x @ rs.randn(n_in, k)                                     # (n, k)
    if noise_scale:
        scores = scores + noise_scale * rs.randn(n_train + n_test, k)
    return _split(x, np.argmax(scores, axis=1), n_train)


def binary(n_train: int, n_in: int, n_out: int, seed: int, n_test: int = 16) -> Dataset:
    """x (n, n_in) standard normal; y = (x @ W > 0) as 0.0/1.0, (n, n_out)."""
    rs = np.random.RandomState(seed)
    x = rs.randn(n_train + n_test, n_in)
    y = (x @ rs.randn(n_in, n_out) > 0).astype(np.float64)
    return _split(x, y, n_train)
