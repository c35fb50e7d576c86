"""Losses: the one definition of each, as the mean over the batch.

``mse``: L = mean over all n*k elements of (p - y)^2, for predictions p and
targets y of shape (n, k). dL/dp = 2 (p - y) / (n k).
"""
from __future__ import annotations

LOSSES = {
    "mse": "L = mean((p - y)^2) over all elements; dL/dp = 2 (p - y) / p.size",
}
