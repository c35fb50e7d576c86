"""NumPy backend: the reference implementation, written like the notebook.

Forward pass, hand-written backward pass (the chain rule, layer by layer),
in-place optimizer updates, and the training loop. Parameters are a list of (W, b) with W of
shape (out, in); a layer computes ``x @ W.T + b``.
"""
from __future__ import annotations

import math

import numpy as np

from nnparity.shared.core.divergence import raise_divergence
from nnparity.shared.core.trajectory import Snapshot, copy_params, copy_state

from .numpy_activations import ACTIVATIONS
from .numpy_losses import LOSSES
from .numpy_optimizers import update


def forward(spec, params, x):
    """Run the network on x (batch, sizes[0]).

    Returns the output (batch, sizes[-1]) and, per layer, the cache
    (layer input (batch, in), pre-activation z (batch, out)) that backward needs.
    """
    activations = spec.hidden_activations
    cache = []
    h = x
    for layer, (w, b) in enumerate(params):
        z = h @ w.T + b                                    # (batch, out)
        cache.append((h, z))
        if layer < len(activations):
            f, _ = ACTIVATIONS[activations[layer].name]
            h = f(z, **activations[layer].kwargs)          # (batch, out)
        else:
            h = z
    return h, cache


def backward(spec, params, cache, d_out, grads=None):
    """Gradients [(dW (out, in), db (out,)), ...] from dL/d(output) (batch, sizes[-1]).

    With ``grads`` given, they are written into those arrays (no new arrays).
    """
    activations = spec.hidden_activations
    if grads is None:
        grads = [(np.empty_like(w), np.empty_like(b)) for w, b in params]
    d = d_out                                              # dL/dz of the last layer
    for layer in reversed(range(len(params))):
        h, z = cache[layer]
        if layer < len(activations):
            _, df = ACTIVATIONS[activations[layer].name]
            d = d * df(z, **activations[layer].kwargs)     # dL/dz, (batch, out)
        d_w, d_b = grads[layer]
        np.matmul(d.T, h, out=d_w)                         # (out, in)
        d.sum(axis=0, out=d_b)                             # (out,)
        if layer > 0:
            w, _ = params[layer]
            d = d @ w                                      # dL/dh, (batch, in)
    return grads


def loss_and_gradients(spec, params, x, y, grads=None):
    """The minibatch loss and its gradient with respect to every parameter
    (written into ``grads`` when given)."""
    loss, d_loss = LOSSES[spec.loss]
    p, cache = forward(spec, params, x)
    d_out = d_loss(p, y, **spec.loss_kwargs)                # dL/dp, (batch, sizes[-1])
    return loss(p, y, **spec.loss_kwargs), backward(spec, params, cache, d_out, grads)


def train_step(spec, params, state, x, y):
    """One minibatch step in place: returns (loss before the update, gradients)."""
    loss, grads = loss_and_gradients(spec, params, x, y)
    update(spec.optimizer, params, grads, state)
    return loss, grads


def step(spec, params, state, x, y):
    """One step from copies of ``params`` and ``state``: (loss, grads, params, state)."""
    params, state = copy_params(params), copy_state(state)
    loss, grads = train_step(spec, params, state, x, y)
    return loss, grads, params, state


def in_one_array(pairs):
    """A copy of [(W, b), ...] as views of one flat vector: (flat, [(W, b), ...]).

    The training loop keeps parameters, gradients and optimizer buffers this way:
    an elementwise update rule then runs once on the whole vector, and one call
    checks that every parameter is finite.
    """
    flat = np.concatenate([a.ravel() for pair in pairs for a in pair])
    views, start = [], 0
    for w, b in pairs:
        views.append((flat[start:start + w.size].reshape(w.shape),
                      flat[start + w.size:start + w.size + b.size]))
        start += w.size + b.size
    return flat, views


def all_finite(loss, *flats):
    """True when the loss and every element of every array in ``flats`` are
    finite, each usually decided by one sum (see ``nnparity.shared.core.divergence``)."""
    return math.isfinite(loss) and all(math.isfinite(flat.sum()) or bool(np.isfinite(flat).all())
                                       for flat in flats)


def train(spec, params, state, x, y, plan, record_every=None):
    """Train ``params`` and ``state`` over the batches of ``plan``.

    Returns the parameters, the optimizer state, every step's minibatch loss
    (computed before that step's update), (epochs * steps_per_epoch,), and a
    snapshot before every ``record_every``-th step. Raises ``DivergenceError``
    at the first step whose loss, updated parameters or optimizer state are not
    finite.
    """
    flat, params = in_one_array(params)
    flat_grads, grads = in_one_array(params)
    buffers = {k: in_one_array(v) for k, v in state.items() if k != "step"}
    flat_state = {"step": state["step"], **{k: [(f,)] for k, (f, _) in buffers.items()}}
    flat_buffers = [f for f, _ in buffers.values()]

    def current_state():
        return {"step": flat_state["step"], **{k: v for k, (_, v) in buffers.items()}}

    batches = [(x[rows], y[rows]) for rows in plan.batches(0)]   # the same every epoch
    losses, snapshots = [], []                                    # unless shuffled
    step_index = plan.first_step
    with np.errstate(over="ignore", invalid="ignore"):           # divergence is checked below
        for epoch in range(plan.epochs):
            if spec.shuffle and epoch > 0:
                batches = [(x[rows], y[rows]) for rows in plan.batches(epoch)]
            for x_batch, y_batch in batches:
                if record_every and step_index % record_every == 0:
                    snapshots.append(Snapshot(step_index, copy_params(params),
                                              copy_state(current_state())))
                loss, _ = loss_and_gradients(spec, params, x_batch, y_batch, grads)
                update(spec.optimizer, [(flat,)], [(flat_grads,)], flat_state)
                if not all_finite(loss, flat, *flat_buffers):
                    raise_divergence(spec, "numpy", step_index, plan.steps_per_epoch)
                losses.append(loss)
                step_index += 1
    return params, current_state(), np.array(losses, dtype=spec.dtype), snapshots


def predict(spec, params, x):
    """The network's output for x (batch, sizes[0]) -> (batch, sizes[-1])."""
    return forward(spec, params, x)[0]


def activation_with_grad(activation, x):
    """(f(x), f'(x)) elementwise, f' from the hand-written derivative."""
    f, df = ACTIVATIONS[activation.name]
    # np.array: fresh arrays in x's dtype, also for 0-d input, identity (which returns
    # x itself) and 0/1 masks
    return (np.array(f(x, **activation.kwargs), dtype=x.dtype),
            np.array(df(x, **activation.kwargs), dtype=x.dtype))


def loss_with_grad(loss, params, p, y):
    """(L(p, y), dL/dp), dL/dp from the hand-written gradient."""
    value, gradient = LOSSES[loss]
    return np.array(value(p, y, **params)), gradient(p, y, **params)
