"""Losses in PyTorch, following ``nnparity.shared.core.losses``; autograd gives dL/dp.

Built-ins from ``torch.nn.functional`` are not used here: they are the tests'
oracles, and ``F.mse_loss`` would broadcast mismatched shapes with only a
warning (shapes are checked before a backend runs).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from nnparity.shared.core.losses import IGNORE_INDEX

from .activations import softplus


def mse(p, y):
    r = p - y
    return (r * r).mean()


def mae(p, y):
    return (p - y).abs().mean()                              # autograd: sign(0) = 0


def huber(p, y, delta):
    r = (p - y).abs()
    return torch.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)).mean()


def cross_entropy(z, labels):
    """z (n, *s, k) logits, labels (n, *s): the mean over the counted positions
    (label != IGNORE_INDEX) of -log_softmax(z)[label]."""
    # subtract each row's maximum first (a constant: log-softmax does not change), so that
    # float32 logits near 1000 keep their precision
    shifted = z - z.max(dim=-1, keepdim=True).values.detach()          # (n, *s, k), max 0
    log_softmax = shifted - torch.logsumexp(shifted, dim=-1, keepdim=True)
    counted = labels != IGNORE_INDEX                                   # (n, *s)
    picked = log_softmax.gather(-1, torch.where(counted, labels, 0)[..., None])[..., 0]
    return -picked[counted].mean()


def bce_with_logits(z, t):
    # softplus(z) - z t. Not clamp(z, 0) + log1p(e^-|z|): autograd would give
    # 1 - t at z = 0, not sigmoid(0) - t, because clamp and |z| split the kink.
    return (softplus(z) - z * t).mean()


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "cross_entropy": cross_entropy,
    "bce_with_logits": bce_with_logits,
}


def loss_with_grad(loss: str, params: dict[str, float], p: np.ndarray, y: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(L(p, y), dL/dp), dL/dp from autograd."""
    pt = torch.tensor(p, requires_grad=True)
    value = LOSSES[loss](pt, torch.from_numpy(y), **params)
    value.backward()
    assert pt.grad is not None                  # backward() filled it
    return value.detach().numpy(), pt.grad.numpy()
