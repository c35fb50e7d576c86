"""PyTorch backend: autograd for the gradients, the update rules by hand.

Parameters are leaf tensors with ``requires_grad``; each step runs
``loss.backward()``, updates the parameters and the optimizer state inside
``torch.no_grad()`` and clears the gradients. No ``torch.optim``, no ``nn.Module``.
"""
from __future__ import annotations

import torch

from nnparity.shared.divergence import raise_divergence
from nnparity.shared.trajectory import Snapshot

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
        h = h @ w.T + b                                    # (batch, out)
        if layer < len(activations):
            h = ACTIVATIONS[activations[layer].name](h, **activations[layer].kwargs)
    return h


def loss_fn(spec, params, x, y):
    return LOSSES[spec.loss](forward(spec, params, x), y, **spec.loss_kwargs)


def train_step(spec, params, state, x, y):
    """One minibatch step in place; returns the loss before the update."""
    loss = loss_fn(spec, params, x, y)
    loss.backward()
    update(spec.optimizer, params, state)
    return loss.detach()


def step(spec, params, state, x, y):
    """One step from NumPy ``params`` and ``state``: (loss, grads, params, state) in NumPy."""
    params, state = to_tensors(params), state_to_tensors(state)
    loss = loss_fn(spec, params, torch.from_numpy(x), torch.from_numpy(y))
    loss.backward()
    grads = [(w.grad.clone(), b.grad.clone()) for w, b in params]
    update(spec.optimizer, params, state)
    return loss.detach().numpy(), to_numpy(grads), to_numpy(params), state_to_numpy(state)


def finite(loss, params):
    with torch.no_grad():
        return bool(torch.isfinite(loss)) and all(
            bool(torch.isfinite(t).all()) for pair in params for t in pair)


def train(spec, params, state, x, y, plan, record_every=None):
    """Train from NumPy params and state over ``plan``: (params, state, losses, snapshots)
    in NumPy. Raises ``DivergenceError`` at the first non-finite loss or parameter."""
    params, state = to_tensors(params), state_to_tensors(state)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    batches = [torch.from_numpy(rows) for epoch in range(plan.epochs)
               for rows in plan.batches(epoch)]
    losses, snapshots = torch.empty(len(batches), dtype=x.dtype), []
    for k, rows in enumerate(batches):
        step_index = plan.first_step + k
        if record_every and step_index % record_every == 0:
            snapshots.append(Snapshot(step_index, to_numpy(params), state_to_numpy(state)))
        losses[k] = train_step(spec, params, state, x[rows], y[rows])
        if not finite(losses[k], params):
            raise_divergence(spec, "torch", step_index, plan.steps_per_epoch)
    return to_numpy(params), state_to_numpy(state), losses.numpy(), snapshots


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
