"""JAX backend: a pure loss, ``jax.value_and_grad``, a functional optimizer
update, and the whole run compiled: a ``lax.fori_loop`` over the epochs (its
bound traced, so a new epoch count does not recompile), inside each epoch a
``lax.scan`` over its full batches, then one more step for the partial last
batch. Shapes depend only on the data, the network and the batch size.

Every call runs under ``jax.enable_x64(True)`` scoped to the call (float64
specs need it; float32 arrays stay float32); the user's global JAX
configuration is never changed.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nnparity.shared.core.divergence import raise_divergence
from nnparity.shared.core.trajectory import Snapshot

from .jax_activations import ACTIVATIONS
from .jax_losses import LOSSES
from .jax_optimizers import constants, update


def forward(activations, params, x):
    """x (batch, sizes[0]) -> output (batch, sizes[-1]); ``activations`` per hidden layer."""
    h = x
    for layer, (w, b) in enumerate(params):
        h = h @ w.T + b                                    # (batch, out)
        if layer < len(activations):
            h = ACTIVATIONS[activations[layer].name](h, **activations[layer].kwargs)
    return h


def loss_fn(params, x, y, model):
    """``model`` = (activations, loss name, loss params): everything static."""
    activations, loss, loss_params = model
    return LOSSES[loss](forward(activations, params, x), y, **dict(loss_params))


def train_step(params, state, x, y, hyper, model, kind):
    """One minibatch step: (new params, new state, loss before the update)."""
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y, model)
    params, state = update(kind, hyper, params, grads, state)
    return params, state, loss


def all_finite(tree):
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def record(snapshots, current, s, every, first_k):
    """Write ``current`` into slot s // every - first_k when s is a multiple of every."""
    slot = s // every - first_k
    take = s % every == 0
    return jax.tree.map(lambda buf, a: buf.at[slot].set(jnp.where(take, a, buf[slot])),
                        snapshots, current)


@functools.partial(jax.jit, static_argnames=("model", "kind", "recording"))
def _train(params, state, x, y, full, tail, n_epochs, hyper, first_step, snapshots, every,
           first_k, model, kind, recording):
    """Train ``n_epochs`` (traced) of the capacity epochs in ``full`` and ``tail``.

    full: (capacity, n_full, batch) rows; tail: (capacity, rest) rows or None.
    The epoch count is a traced loop bound, so the shapes, and the compiled code,
    do not depend on it. Returns params, state, per-step losses and finite flags
    ((capacity, steps) each; rows past n_epochs are unused), and the snapshots.
    """
    def step(carry, rows):
        params, state, s, snapshots = carry
        if recording:
            snapshots = record(snapshots, (params, state), s, every, first_k)
        params, state, loss = train_step(params, state, x[rows], y[rows], hyper, model, kind)
        finite = jnp.isfinite(loss) & all_finite(params) & all_finite(state)
        return (params, state, s + 1, snapshots), (loss, finite)

    def epoch(e, carry):
        *inner, losses, finite = carry
        inner, (epoch_losses, epoch_finite) = lax.scan(step, tuple(inner), full[e])
        if tail is not None:
            inner, (last_loss, last_finite) = step(inner, tail[e])
            epoch_losses = jnp.concatenate([epoch_losses, last_loss[None]])
            epoch_finite = jnp.concatenate([epoch_finite, last_finite[None]])
        return (*inner, losses.at[e].set(epoch_losses), finite.at[e].set(epoch_finite))

    steps = full.shape[1] + (tail is not None)
    dtype = params[0][0].dtype
    carry = (params, state, first_step, snapshots,
             jnp.zeros((full.shape[0], steps), dtype), jnp.zeros((full.shape[0], steps), bool))
    params, state, _, snapshots, losses, finite = lax.fori_loop(0, n_epochs, epoch, carry)
    return params, state, losses, finite, snapshots


def epoch_capacity(n_rows: int) -> int:
    """Epochs per compiled call: up to 1024, and at most 2**20 row indices."""
    return max(1, min(1024, 2**20 // max(n_rows, 1)))


def padded(rows, capacity):
    """rows (epochs, ...) padded with row 0 to (capacity, ...); the padding is never run."""
    out = np.zeros((capacity,) + rows.shape[1:], dtype=rows.dtype)
    out[:len(rows)] = rows
    return out


def _scope():
    """x64 switched on for this call only: float64 specs need it, and float32 specs
    use float64 for the optimizers' bias corrections (arrays keep their dtype)."""
    return jax.enable_x64(True)


def static_parts(spec):
    """What fixes the compiled computation: (model, kind). Numbers go in ``hyper``."""
    model = (spec.hidden_activations, spec.loss, tuple(sorted(spec.loss_kwargs.items())))
    kind = (spec.optimizer.name, getattr(spec.optimizer, "nesterov", False),
            spec.optimizer.weight_decay != 0)
    return model, kind


def to_numpy(tree):
    return jax.tree.map(np.array, tree)


def train(spec, params, state, x, y, plan, record_every=None):
    """Train from NumPy params and state over ``plan``: (params, state, losses, snapshots)
    in NumPy. The compiled run flags every step's finiteness; the first non-finite
    step then raises ``DivergenceError``, as the other backends do during the run."""
    model, kind = static_parts(spec)
    n_steps = plan.epochs * plan.steps_per_epoch
    every = record_every or 1
    first_k = -(-plan.first_step // every)                         # first multiple of every
    count = (plan.first_step + n_steps - 1) // every - first_k + 1 if record_every else 0
    with _scope():
        hyper = constants(spec.optimizer, spec.dtype)
        buffers = jax.tree.map(lambda a: np.zeros((max(count, 0),) + np.shape(a),
                                                  np.asarray(a).dtype), (params, state))
        capacity = epoch_capacity(x.shape[0])
        state = {**state, "step": np.int64(state["step"])}         # one type on every call
        losses, finite = [], []
        for start in range(0, plan.epochs, capacity):               # usually one call
            n = min(capacity, plan.epochs - start)
            tail = None if plan.tail is None else padded(plan.tail[start:start + n], capacity)
            params, state, chunk_losses, chunk_finite, buffers = _train(
                params, state, x, y, padded(plan.full[start:start + n], capacity), tail, n,
                hyper, plan.first_step + start * plan.steps_per_epoch, buffers, every, first_k,
                model=model, kind=kind, recording=count > 0)
            losses.append(np.array(chunk_losses)[:n].reshape(-1))   # slice in NumPy:
            finite.append(np.array(chunk_finite)[:n].reshape(-1))   # no jit per n
        losses = np.concatenate(losses) if losses else np.zeros(0, spec.dtype)
        finite = np.concatenate(finite) if finite else np.zeros(0, bool)
        if not finite.all():
            step_index = plan.first_step + int(np.argmin(finite))
            raise_divergence(spec, "jax", step_index, plan.steps_per_epoch)
        snapshots = []
        if count > 0:
            snap_params, snap_state = to_numpy(buffers)
            for i in range(count):
                snapshots.append(Snapshot(
                    (first_k + i) * every,
                    [(w[i], b[i]) for w, b in snap_params],
                    {k: int(v[i]) if k == "step" else [(a[i], b[i]) for a, b in v]
                     for k, v in snap_state.items()}))
        return to_numpy(params), state_to_numpy(state), losses, snapshots


def state_to_numpy(state):
    state = to_numpy(state)
    state["step"] = int(state["step"])
    return state


def step(spec, params, state, x, y):
    """One step from NumPy ``params`` and ``state``: (loss, grads, params, state) in NumPy."""
    model, kind = static_parts(spec)
    with _scope():
        hyper = constants(spec.optimizer, spec.dtype)
        loss, grads = _value_and_grad(params, x, y, model)
        new_params, new_state = _update(params, grads, state, hyper, kind)
        return np.array(loss), to_numpy(grads), to_numpy(new_params), state_to_numpy(new_state)


@functools.partial(jax.jit, static_argnames=("model",))
def _value_and_grad(params, x, y, model):
    return jax.value_and_grad(loss_fn)(params, x, y, model)


@functools.partial(jax.jit, static_argnames=("kind",))
def _update(params, grads, state, hyper, kind):
    return update(kind, hyper, params, grads, state)


def predict(spec, params, x):
    with _scope():
        return np.array(jax.jit(forward, static_argnums=0)(spec.hidden_activations, params, x))


def activation_with_grad(activation, x):
    """(f(x), f'(x)) elementwise, f' from the vector-Jacobian product with ones."""
    f = functools.partial(ACTIVATIONS[activation.name], **activation.kwargs)
    with _scope():
        y, vjp = jax.vjp(f, jnp.asarray(x))
        (grad,) = vjp(jnp.ones_like(y))
        return np.array(y), np.array(grad)


def loss_with_grad(loss, params, p, y):
    """(L(p, y), dL/dp), dL/dp from jax.value_and_grad."""
    with _scope():
        value, grad = jax.value_and_grad(LOSSES[loss])(jnp.asarray(p), jnp.asarray(y), **params)
        return np.array(value), np.array(grad)
