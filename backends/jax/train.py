"""JAX training: ``network.train_step`` (a pure loss, ``jax.value_and_grad``, a
functional optimizer update) run by one compiled loop: a ``lax.fori_loop`` over the epochs (its
bound traced, so a new epoch count does not recompile), inside each epoch a
``lax.scan`` over its full batches, then one more step for the partial last
batch. Shapes depend only on the data, the network and the batch size.

Every call runs under ``jax.enable_x64(True)`` scoped to the call (float64
specs need it; float32 arrays stay float32); the user's global JAX
configuration is never changed.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from nnparity.backends.contract import RunResult, StepResult
from nnparity.shared.core.data import BatchPlan
from nnparity.shared.core.divergence import raise_divergence
from nnparity.shared.core.draws import draws_anything, step_draws
from nnparity.shared.core.optimizers import OptimizerState
from nnparity.shared.core.replicas import Replicas
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.trajectory import Snapshot
from nnparity.shared.core.tree import Params, in_order

from .network import loss_fn, train_step
from .optimizers import constants, update
from .replicas import run_replicas


def all_finite(tree):
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def record(snapshots, current, s, every, first_k):
    """Write ``current`` into slot s // every - first_k when s is a multiple of every."""
    slot = s // every - first_k
    take = s % every == 0
    return jax.tree.map(lambda buf, a: buf.at[slot].set(jnp.where(take, a, buf[slot])),
                        snapshots, current)


@functools.partial(jax.jit, static_argnames=("model", "kind", "recording", "devices"))
def _train(params, model_state, opt_state, x, y, full, tail, draws, n_epochs, hyper,
           first_step, snapshots, every, first_k, model, kind, recording, devices):
    """Train ``n_epochs`` (traced) of the capacity epochs in ``full`` and ``tail``.

    full: (capacity, n_full, batch) rows; tail: (capacity, rest) rows or None;
    draws: the random layers' draws laid out the same way (``chunk_draws``).
    The epoch count is a traced loop bound, so the shapes, and the compiled code,
    do not depend on it. Returns params, model and optimizer states, per-step losses
    and finite flags
    ((capacity, steps) each; rows past n_epochs are unused), and the snapshots.
    ``devices``: data-parallel replicas (``replicas.py``) each batch is split
    across, or None.
    """
    full_draws, tail_draws = draws

    def step(carry, batch):
        params, model_state, opt_state, s, snapshots = carry
        rows, step_draws = batch
        if recording:
            snapshots = record(snapshots, (params, model_state, opt_state), s, every, first_k)
        x_batch, y_batch = x[rows], y[rows]
        if devices is not None:                    # rows split across the replicas
            x_batch, y_batch, step_draws = jax.tree.map(devices.place,
                                                        (x_batch, y_batch, step_draws))
        params, model_state, opt_state, loss = train_step(
            params, model_state, opt_state, x_batch, y_batch, step_draws, hyper, model, kind)
        finite = jnp.isfinite(loss) & all_finite(params) & all_finite(opt_state)
        return (params, model_state, opt_state, s + 1, snapshots), (loss, finite)

    def epoch(e, carry):
        *inner, losses, finite = carry
        at_e = functools.partial(jax.tree.map, lambda a: a[e])      # None entries stay None
        inner, (epoch_losses, epoch_finite) = lax.scan(step, tuple(inner),
                                                       (full[e], at_e(full_draws)))
        if tail is not None:
            inner, (last_loss, last_finite) = step(inner, (tail[e], at_e(tail_draws)))
            epoch_losses = jnp.concatenate([epoch_losses, last_loss[None]])
            epoch_finite = jnp.concatenate([epoch_finite, last_finite[None]])
        return (*inner, losses.at[e].set(epoch_losses), finite.at[e].set(epoch_finite))

    steps = full.shape[1] + (tail is not None)
    dtype = jax.tree.leaves(params)[0].dtype
    carry = (params, model_state, opt_state, first_step, snapshots,
             jnp.zeros((full.shape[0], steps), dtype), jnp.zeros((full.shape[0], steps), bool))
    params, model_state, opt_state, _, snapshots, losses, finite = lax.fori_loop(
        0, n_epochs, epoch, carry)
    return params, model_state, opt_state, losses, finite, snapshots


def epoch_capacity(n_rows: int, drawn_per_row: int = 0) -> int:
    """Epochs per compiled call: up to 1024, at most 2**20 row indices, and at most
    2**22 drawn mask elements (``drawn_per_row`` per row and epoch; 4 MB of masks,
    copied in on every call however few epochs it runs); one at least."""
    capacity = min(1024, 2**20 // max(n_rows, 1))
    if drawn_per_row:
        capacity = min(capacity, 2**22 // (n_rows * drawn_per_row))
    return max(1, capacity)


def drawn_per_row(spec) -> int:
    """How many mask elements the random layers draw per row of a batch."""
    return sum(math.prod(shape) for layer, shape in zip(spec.layers, spec.layer_input_shapes,
                                                        strict=False) if layer.random)


def chunk_draws(spec, plan, start, n, capacity):
    """The draws of epochs start .. start + n - 1 of ``plan`` as the compiled loop
    scans them: (full, tail), each a list with one entry per layer, None or a bool
    array (capacity, n_full, batch, *shape) / (capacity, rest, *shape), padded with
    False (the padding is never run); every entry None for a spec that draws nothing."""
    if not draws_anything(spec):
        return [None] * len(spec.layers), [None] * len(spec.layers)
    n_full, batch = plan.full.shape[1:]
    rest = 0 if plan.tail is None else plan.tail.shape[1]
    shapes = spec.layer_input_shapes
    full = [np.zeros((capacity, n_full, batch, *shapes[i]), bool) if layer.random else None
            for i, layer in enumerate(spec.layers)]
    tail = [np.zeros((capacity, rest, *shapes[i]), bool) if layer.random and rest else None
            for i, layer in enumerate(spec.layers)]
    for e in range(n):
        first = plan.first_step + (start + e) * plan.steps_per_epoch
        for k in range(plan.steps_per_epoch):
            is_full = k < n_full
            draws = step_draws(spec, first + k, batch if is_full else rest)
            for i, draw in enumerate(draws):
                if draw is not None:
                    out = full[i] if is_full else tail[i]
                    assert out is not None
                    out[(e, k) if is_full else e] = draw
    return full, tail


def padded(rows, capacity):
    """rows (epochs, ...) padded with row 0 to (capacity, ...); the padding is never run."""
    out = np.zeros((capacity,) + rows.shape[1:], dtype=rows.dtype)
    out[:len(rows)] = rows
    return out


def static_parts(spec):
    """What fixes the compiled computation: (model, kind). Numbers go in ``hyper``."""
    model = (spec.layers, spec.loss, tuple(sorted(spec.loss_kwargs.items())))
    kind = (spec.optimizer.name, getattr(spec.optimizer, "nesterov", False),
            spec.optimizer.weight_decay != 0)
    return model, kind


def to_numpy(tree):
    return jax.tree.map(np.array, tree)


def params_to_numpy(spec, tree):
    """A parameter tree (or one shaped like it) in NumPy, in the spec's order."""
    return in_order(to_numpy(tree), spec.param_shapes)


def model_state_to_numpy(spec, tree):
    return in_order(to_numpy(tree), spec.buffer_shapes)


def state_to_numpy(spec, state):
    return OptimizerState(int(state.step), {name: params_to_numpy(spec, tree)
                                            for name, tree in state.buffers.items()})


def train(spec: NetworkSpec, params: Params, model_state: Params, opt_state: OptimizerState,
          x: np.ndarray, y: np.ndarray, plan: BatchPlan, record_every: int | None = None,
          replicas: Replicas | None = None) -> RunResult:
    """Train from NumPy arguments over ``plan``; the result in NumPy. The compiled
    run flags every step's finiteness; the first non-finite step then raises
    ``DivergenceError``, as the other backends do during the run.

    Runs under ``jax.enable_x64(True)``, scoped to the call: float64 specs need
    it, and float32 specs use float64 for the optimizers' bias corrections
    (arrays keep their dtype).

    With ``replicas``, the same compiled run splits every batch across that many
    devices (``replicas.py``), in a fresh process unless this one has them."""
    if replicas is not None:
        return run_replicas(replicas, functools.partial(
            _run, spec, params, model_state, opt_state, x, y, plan, record_every))
    return _run(spec, params, model_state, opt_state, x, y, plan, record_every, None)


def _run(spec, params, model_state, opt_state, x, y, plan, record_every, devices):
    model, kind = static_parts(spec)
    n_steps = plan.epochs * plan.steps_per_epoch
    every = record_every or 1
    first_k = -(-plan.first_step // every)                         # first multiple of every
    count = (plan.first_step + n_steps - 1) // every - first_k + 1 if record_every else 0
    with jax.enable_x64(True):
        hyper = constants(spec.optimizer, spec.dtype)
        opt_state = OptimizerState(np.int64(opt_state.step), opt_state.buffers)  # one type
        buffers = jax.tree.map(lambda a: np.zeros((max(count, 0),) + np.shape(a),
                                                  np.asarray(a).dtype),
                               (params, model_state, opt_state))
        capacity = epoch_capacity(x.shape[0], drawn_per_row(spec))
        loss_chunks: list[np.ndarray] = []
        finite_chunks: list[np.ndarray] = []
        for start in range(0, plan.epochs, capacity):               # usually one call
            n = min(capacity, plan.epochs - start)
            tail = None if plan.tail is None else padded(plan.tail[start:start + n], capacity)
            draws = chunk_draws(spec, plan, start, n, capacity)     # Dropout's masks
            params, model_state, opt_state, chunk_losses, chunk_finite, buffers = _train(
                params, model_state, opt_state, x, y, padded(plan.full[start:start + n], capacity),
                tail, draws, n, hyper, plan.first_step + start * plan.steps_per_epoch, buffers,
                every, first_k, model=model, kind=kind, recording=count > 0, devices=devices)
            loss_chunks.append(np.array(chunk_losses)[:n].reshape(-1))   # slice in NumPy:
            finite_chunks.append(np.array(chunk_finite)[:n].reshape(-1))  # no jit per n
        losses = np.concatenate(loss_chunks) if loss_chunks else np.zeros(0, spec.dtype)
        finite = np.concatenate(finite_chunks) if finite_chunks else np.zeros(0, bool)
        if not finite.all():
            step_index = plan.first_step + int(np.argmin(finite))
            raise_divergence(spec, "jax", step_index, plan.steps_per_epoch)
        snapshots = []
        if count > 0:
            recorded = to_numpy(buffers)
            for i in range(count):
                snap_params, snap_model, snap_opt = jax.tree.map(lambda a, i=i: a[i], recorded)
                snapshots.append(Snapshot((first_k + i) * every,
                                          params_to_numpy(spec, snap_params),
                                          state_to_numpy(spec, snap_opt),
                                          model_state_to_numpy(spec, snap_model)))
        return RunResult(params_to_numpy(spec, params), model_state_to_numpy(spec, model_state),
                         state_to_numpy(spec, opt_state), losses, snapshots)


def step(spec: NetworkSpec, params: Params, model_state: Params, opt_state: OptimizerState,
         x: np.ndarray, y: np.ndarray, replicas: Replicas | None = None) -> StepResult:
    """One step from NumPy arguments; the result in NumPy. Random layers use the
    draws of step ``opt_state.step``. With ``replicas``, x and y are the global
    batch, split across that many devices (``steps`` takes many such steps in
    one launch)."""
    return steps(spec, [(params, model_state, opt_state, x, y)], replicas)[0]


def steps(spec: NetworkSpec, starts: list, replicas: Replicas | None = None
          ) -> list[StepResult]:
    """``step`` from each (params, model_state, opt_state, x, y) of ``starts``."""
    if replicas is not None:
        return run_replicas(replicas, functools.partial(_steps, spec, starts))
    return _steps(spec, starts, None)


def _steps(spec, starts, devices):
    return [_step(spec, params, model_state, opt_state, x, y, devices)
            for params, model_state, opt_state, x, y in starts]


def _step(spec, params, model_state, opt_state, x, y, devices):
    model, kind = static_parts(spec)
    draws = step_draws(spec, int(opt_state.step), x.shape[0])
    with jax.enable_x64(True):
        hyper = constants(spec.optimizer, spec.dtype)
        (loss, new_model_state), grads = _value_and_grad(params, model_state, x, y, draws,
                                                         model, devices)
        new_params, new_opt_state = _update(params, grads, opt_state, hyper, kind)
        return StepResult(np.array(loss), params_to_numpy(spec, grads),
                          params_to_numpy(spec, new_params),
                          model_state_to_numpy(spec, new_model_state),
                          state_to_numpy(spec, new_opt_state))


@functools.partial(jax.jit, static_argnames=("model", "devices"))
def _value_and_grad(params, model_state, x, y, draws, model, devices):
    if devices is not None:                        # rows split across the replicas
        x, y, draws = jax.tree.map(devices.place, (x, y, draws))
    return jax.value_and_grad(loss_fn, has_aux=True)(params, model_state, x, y, draws, model)


@functools.partial(jax.jit, static_argnames=("kind",))
def _update(params, grads, opt_state, hyper, kind):
    return update(kind, hyper, params, grads, opt_state)
