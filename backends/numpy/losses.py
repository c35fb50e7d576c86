"""Losses in NumPy: for each, the value and a hand-written gradient dL/dp.

Definitions and targets are those of ``nnparity.shared.core.losses``; p is the
network output (n, k). Every loss is a mean, so every gradient is divided by
the number of averaged elements.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from nnparity.shared.core.losses import IGNORE_INDEX

from .activations import sigmoid


def mse(p, y):
    r = p - y
    return np.vdot(r, r) / r.size                            # sum of squares / count


def d_mse(p, y):
    return (p - y) * (2 / p.size)                            # (n, k)


def mae(p, y):
    return np.mean(np.abs(p - y))


def d_mae(p, y):
    return np.sign(p - y) / p.size                          # sign(0) = 0, as torch's l1_loss


def huber(p, y, delta):
    r = np.abs(p - y)
    return np.mean(np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)))


def d_huber(p, y, delta):
    return np.clip(p - y, -delta, delta) / p.size


def _log_softmax(z):
    """log softmax over the last axis of z (m, k), with each row's maximum subtracted first."""
    shifted = z - z.max(axis=-1, keepdims=True)              # (m, k), largest entry 0
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _positions(z, labels):
    """Logits z (n, *s, k) and labels (n, *s) as (m, k) and (m,) rows, m = n*prod(s),
    and which rows count (label != IGNORE_INDEX; all of them for (n,) labels)."""
    labels = labels.reshape(-1)                              # (m,)
    return z.reshape(-1, z.shape[-1]), labels, labels != IGNORE_INDEX


def cross_entropy(z, labels):
    """mean over the counted positions of logsumexp(z) - z[label]."""
    z, labels, counted = _positions(z, labels)               # (m, k), (m,), (m,)
    rows = np.flatnonzero(counted)                           # (c,) the counted rows
    return -np.mean(_log_softmax(z[rows])[np.arange(len(rows)), labels[rows]])


def d_cross_entropy(z, labels):
    """(softmax(z) - onehot(label)) / c at the c counted positions, 0 at the others."""
    shape = z.shape
    z, labels, counted = _positions(z, labels)               # (m, k), (m,), (m,)
    grad = np.exp(_log_softmax(z))                           # softmax, (m, k)
    rows = np.flatnonzero(counted)                           # (c,)
    grad[rows, labels[rows]] -= 1                            # minus the one-hot targets
    grad[~counted] = 0.0                                     # ignored positions: no gradient
    return (grad / len(rows)).reshape(shape)                 # (n, *s, k)


def bce_with_logits(z, t):
    return np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))


def d_bce_with_logits(z, t):
    return (sigmoid(z) - t) / z.size


#: name -> (L(p, y, **params), dL/dp(p, y, **params))
LOSSES: dict[str, tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]] = {
    "mse": (mse, d_mse),
    "mae": (mae, d_mae),
    "huber": (huber, d_huber),
    "cross_entropy": (cross_entropy, d_cross_entropy),
    "bce_with_logits": (bce_with_logits, d_bce_with_logits),
}


def loss_with_grad(loss: str, params: dict[str, float], p: np.ndarray, y: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(L(p, y), dL/dp), dL/dp from the hand-written gradient."""
    value, gradient = LOSSES[loss]
    return np.array(value(p, y, **params)), gradient(p, y, **params)
