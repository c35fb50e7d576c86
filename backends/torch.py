"""PyTorch backend: autograd for the gradients, the update rules by hand.

Parameters are leaf tensors with ``requires_grad``; each step runs
``loss.backward()``, updates the parameters and the optimizer state inside
``torch.no_grad()`` and clears the gradients. No ``torch.optim``, no ``nn.Module``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from nnparity.shared.core.divergence import raise_divergence
from nnparity.shared.core.trajectory import Snapshot

from .torch_activations import ACTIVATIONS
from .torch_losses import LOSSES
from .torch_optimizers import update


def to_tensors(params):
    """NumPy [(W, b), ...] -> leaf tensors with requires_grad, same dtype (copied)."""
    return [(torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True))
            for w, b in params]


def to_numpy(pairs):
    return [(w.detach().numpy().copy(), b.detach().numpy().copy()) for w, b in pairs]


def state_to_tensors(state):
    return {k: v if k == "step" else [(torch.tensor(a), torch.tensor(b)) for a, b in v]
            for k, v in state.items()}


def state_to_numpy(state):
    return {k: v if k == "step" else to_numpy(v) for k, v in state.items()}


def forward(spec, params, x):
    """x (batch, sizes[0]) -> output (batch, sizes[-1])."""
    activations = spec.hidden_activations
    h = x
    for layer, (w, b) in enumerate(params):
        h = F.linear(h, w, b)                              # h @ w.T + b, (batch, out)
        if layer < len(activations):
            h = ACTIVATIONS[activations[layer].name](h, **activations[layer].kwargs)
    return h


def loss_fn(spec, params, x, y):
    return LOSSES[spec.loss](forward(spec, params, x), y, **spec.loss_kwargs)


def step(spec, params, state, x, y):
    """One step from NumPy ``params`` and ``state``: (loss, grads, params, state) in NumPy."""
    params, state = to_tensors(params), state_to_tensors(state)
    loss = loss_fn(spec, params, torch.from_numpy(x), torch.from_numpy(y))
    loss.backward()
    grads = [(w.grad, b.grad) for w, b in params]
    update(spec.optimizer, params, grads, state)
    return loss.detach().numpy(), to_numpy(grads), to_numpy(params), state_to_numpy(state)


def in_one_tensor(pairs, requires_grad=False):
    """A copy of NumPy [(W, b), ...] as views of one flat tensor: (flat, [(W, b), ...]).

    With requires_grad the views are the leaf parameters autograd differentiates.
    The training loop keeps parameters, gradients and optimizer buffers this way:
    an update rule then runs once on the whole vector, and one call checks that
    every parameter is finite.
    """
    flat = torch.from_numpy(np.concatenate([a.ravel() for pair in pairs for a in pair]))
    views, start = [], 0
    for w, b in pairs:
        views.append((flat[start:start + w.size].view(w.shape),
                      flat[start + w.size:start + w.size + b.size]))
        start += w.size + b.size
    for view in (t for pair in views for t in pair):
        view.requires_grad_(requires_grad)
    return flat, views


def all_finite(loss, *flats):
    """True when the loss and every element of every tensor in ``flats`` are
    finite, each usually decided by one sum (see ``nnparity.shared.core.divergence``)."""
    return math.isfinite(loss) and all(
        math.isfinite(flat.sum()) or bool(torch.isfinite(flat).all()) for flat in flats)


def train(spec, params, state, x, y, plan, record_every=None):
    """Train from NumPy params and state over ``plan``: (params, state, losses, snapshots)
    in NumPy. Raises ``DivergenceError`` at the first step whose loss, parameters or
    optimizer state are not finite.

    Each step runs ``loss.backward()``, which adds into the parameters' ``.grad``
    (views of one zeroed gradient vector), then updates under ``torch.no_grad()``
    and zeroes the gradients again.
    """
    flat, params = in_one_tensor(params, requires_grad=True)
    flat_grads, grads = in_one_tensor([(np.zeros_like(w), np.zeros_like(b))
                                       for w, b in to_numpy(params)])
    for p, g in zip((t for pair in params for t in pair), (t for pair in grads for t in pair),
                    strict=True):
        p.grad = g
    buffers = {k: in_one_tensor(v) for k, v in state.items() if k != "step"}
    flat_state = {"step": state["step"], **{k: [(f,)] for k, (f, _) in buffers.items()}}
    flat_buffers = [f for f, _ in buffers.values()]

    def current_state():
        return {"step": flat_state["step"], **{k: v for k, (_, v) in buffers.items()}}

    x, y = torch.from_numpy(x), torch.from_numpy(y)
    losses, snapshots = [], []
    step_index = plan.first_step
    batches = [(x[rows], y[rows]) for rows in plan.batches(0)]   # the same every epoch
    for epoch in range(plan.epochs):                              # unless shuffled
        if spec.shuffle and epoch > 0:
            batches = [(x[rows], y[rows]) for rows in plan.batches(epoch)]
        for x_batch, y_batch in batches:
            if record_every and step_index % record_every == 0:
                snapshots.append(Snapshot(step_index, to_numpy(params),
                                          state_to_numpy(current_state())))
            loss = loss_fn(spec, params, x_batch, y_batch)
            loss.backward()
            update(spec.optimizer, [(flat,)], [(flat_grads,)], flat_state)
            flat_grads.zero_()                                   # clear the gradients
            loss = loss.detach()
            losses.append(loss)
            if not all_finite(loss, flat, *flat_buffers):
                raise_divergence(spec, "torch", step_index, plan.steps_per_epoch)
            step_index += 1
    losses = torch.stack(losses) if losses else torch.zeros(0, dtype=x.dtype)
    return to_numpy(params), state_to_numpy(current_state()), losses.numpy(), snapshots


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


def loss_with_grad(loss, params, p, y):
    """(L(p, y), dL/dp), dL/dp from autograd."""
    p = torch.tensor(p, requires_grad=True)
    value = LOSSES[loss](p, torch.from_numpy(y), **params)
    value.backward()
    return value.detach().numpy(), p.grad.numpy()
