"""PyTorch backend: autograd for the gradients, SGD written by hand.

Parameters are leaf tensors with ``requires_grad``; each step runs
``loss.backward()``, updates the parameters inside ``torch.no_grad()`` and
clears their gradients. No ``torch.optim`` and no ``nn.Module``.
"""
from __future__ import annotations

import numpy as np
import torch

from .torch_activations import ACTIVATIONS


def to_tensors(params):
    """NumPy [(W, b), ...] -> leaf tensors with requires_grad, same dtype."""
    return [(torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True))
            for w, b in params]


def to_numpy(params):
    return [(w.detach().numpy().copy(), b.detach().numpy().copy()) for w, b in params]


def forward(spec, params, x):
    """x (batch, sizes[0]) -> output (batch, sizes[-1])."""
    activations = spec.hidden_activations
    h = x
    for layer, (w, b) in enumerate(params):
        h = h @ w.T + b                                    # (batch, out)
        if layer < len(activations):
            h = ACTIVATIONS[activations[layer].name](h, **activations[layer].kwargs)
    return h


def mse_loss(p, y):
    return ((p - y) ** 2).mean()


def sgd_update(params, lr):
    """p <- p - lr * p.grad in place, then clear the gradient."""
    with torch.no_grad():
        for w, b in params:
            w -= lr * w.grad
            b -= lr * b.grad
            w.grad = None
            b.grad = None


def train(spec, params, x, y, plan):
    """Train from NumPy ``params`` over ``plan``; returns (NumPy params, losses)."""
    params = to_tensors(params)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    batches = [torch.from_numpy(rows) for epoch in range(plan.epochs)
               for rows in plan.batches(epoch)]
    losses = torch.empty(len(batches), dtype=x.dtype)
    for step, rows in enumerate(batches):
        loss = mse_loss(forward(spec, params, x[rows]), y[rows])
        loss.backward()
        sgd_update(params, spec.optimizer.lr)
        losses[step] = loss.detach()
    return to_numpy(params), losses.numpy()


def predict(spec, params, x):
    with torch.no_grad():
        params = [(torch.from_numpy(w), torch.from_numpy(b)) for w, b in params]
        return forward(spec, params, torch.from_numpy(x)).numpy()


def activation_with_grad(activation, x):
    """(f(x), f'(x)) elementwise, f' from autograd (backward of the sum)."""
    x = torch.tensor(x, requires_grad=True)
    y = ACTIVATIONS[activation.name](x, **activation.kwargs)
    y.sum().backward()
    return y.detach().numpy(), x.grad.numpy()
