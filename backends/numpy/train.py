"""NumPy training: the reference loop, written like the notebook.

Each step: forward, hand-written backward, in-place optimizer update. The
parameters, gradients and optimizer buffers are views of one flat vector each
(``nnparity.shared.core.flat``), so the update runs once on the whole vector.
"""
from __future__ import annotations

import math

import numpy as np

from nnparity.backends.contract import RunResult, StepResult
from nnparity.shared.core.data import BatchPlan
from nnparity.shared.core.divergence import raise_divergence
from nnparity.shared.core.draws import draws_anything, no_draws, step_draws
from nnparity.shared.core.flat import in_one_vector
from nnparity.shared.core.optimizers import OptimizerState
from nnparity.shared.core.replicas import Replica, Replicas, my_shard, shard_draws
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.trajectory import Snapshot, copy_state
from nnparity.shared.core.tree import Params, copy_tree, leaves

from .network import empty_like, loss_and_gradients
from .optimizers import update
from .replicas import run_replicas


def gradients(spec, params, model_state, x, y, grads, draws, replica: Replica | None):
    """The global batch's loss and gradients (written into ``grads``) for the batch
    x, y with its ``draws``. On one device, the whole batch; as ``replica``, its
    shard, weighted by its share of the loss, then summed over the replicas in a
    fixed order: this is all that data parallelism changes."""
    if replica is None:
        return loss_and_gradients(spec, params, model_state, x, y, grads, draws)[0]
    part, weight = my_shard(replica, y, spec.loss)             # rows, w_r = N_r / N
    loss, _ = loss_and_gradients(spec, params, model_state, x[part], y[part], grads,
                                 shard_draws(draws, part), weight)
    for g in leaves(grads):
        g[...] = replica.all_reduce(g)                         # sum_r w_r * grad_r
    return replica.all_reduce(loss)                            # sum_r w_r * loss_r


def step(spec: NetworkSpec, params: Params, model_state: Params, opt_state: OptimizerState,
         x: np.ndarray, y: np.ndarray, replicas: Replicas | None = None) -> StepResult:
    """One step from copies of the arguments: the loss before the update, the
    gradients, and the parameters and states after it. Random layers use the draws
    of step ``opt_state.step`` (the global step index). With ``replicas``, x and y
    are the global batch, split across them."""
    return steps(spec, [(params, model_state, opt_state, x, y)], replicas)[0]


def steps(spec: NetworkSpec, starts: list, replicas: Replicas | None = None
          ) -> list[StepResult]:
    """``step`` from each (params, model_state, opt_state, x, y) of ``starts``."""
    if replicas is not None:
        return run_replicas(replicas, lambda replica: _steps(spec, starts, replica))
    return _steps(spec, starts, None)


def _steps(spec, starts, replica):
    return [_step(spec, params, model_state, opt_state, x, y, replica)
            for params, model_state, opt_state, x, y in starts]


def _step(spec, params, model_state, opt_state, x, y, replica):
    params, model_state = copy_tree(params), copy_tree(model_state)
    opt_state = copy_state(opt_state)
    draws = step_draws(spec, int(opt_state.step), x.shape[0])
    grads = empty_like(params)
    loss = gradients(spec, params, model_state, x, y, grads, draws, replica)
    opt_state = update(spec.optimizer, params, grads, opt_state)
    return StepResult(np.asarray(loss), grads, params, model_state, opt_state)


def all_finite(loss, *flats):
    """True when the loss and every element of every array in ``flats`` are
    finite, each usually decided by one sum (see ``nnparity.shared.core.divergence``)."""
    return math.isfinite(loss) and all(math.isfinite(flat.sum()) or bool(np.isfinite(flat).all())
                                       for flat in flats)


def train(spec: NetworkSpec, params: Params, model_state: Params, opt_state: OptimizerState,
          x: np.ndarray, y: np.ndarray, plan: BatchPlan, record_every: int | None = None,
          replicas: Replicas | None = None) -> RunResult:
    """Train over the batches of ``plan``.

    Returns the parameters, the model and optimizer states, every step's
    minibatch loss (computed before that step's update), (epochs *
    steps_per_epoch,), and a snapshot before every ``record_every``-th step.
    Raises ``DivergenceError`` at the first step whose loss, updated parameters
    or optimizer state are not finite.

    With ``replicas``, one thread per replica runs this loop on its shard of
    every batch (``replicas.py``); they stay identical, and replica 0's
    result is returned.
    """
    if replicas is not None:
        return run_replicas(replicas, lambda replica: _train(
            spec, params, model_state, opt_state, x, y, plan, record_every, replica))
    return _train(spec, params, model_state, opt_state, x, y, plan, record_every, None)


def _train(spec, params, model_state, opt_state, x, y, plan, record_every, replica):
    flat, params = in_one_vector(params, spec.dtype)
    flat_grads, grads = in_one_vector(params, spec.dtype)
    model_state = copy_tree(model_state)
    buffers = {name: in_one_vector(tree, spec.dtype) for name, tree in opt_state.buffers.items()}
    flat_state = OptimizerState(opt_state.step,
                                {name: [{"all": f}] for name, (f, _) in buffers.items()})
    flat_buffers = [f for f, _ in buffers.values()]

    def current_state():
        return OptimizerState(flat_state.step, {name: v for name, (_, v) in buffers.items()})

    batches = [(x[rows], y[rows]) for rows in plan.batches(0)]   # the same every epoch
    losses, snapshots = [], []                                    # unless shuffled
    step_index = plan.first_step
    random = draws_anything(spec)                                 # Dropout's masks
    with np.errstate(over="ignore", invalid="ignore"):           # divergence is checked below
        for epoch in range(plan.epochs):
            if spec.shuffle and epoch > 0:
                batches = [(x[rows], y[rows]) for rows in plan.batches(epoch)]
            for x_batch, y_batch in batches:
                if record_every and step_index % record_every == 0:
                    snapshots.append(Snapshot(step_index, copy_tree(params),
                                              copy_state(current_state()), copy_tree(model_state)))
                draws = (step_draws(spec, step_index, x_batch.shape[0]) if random
                         else no_draws(spec))
                loss = gradients(spec, params, model_state, x_batch, y_batch, grads, draws,
                                 replica)
                flat_state = update(spec.optimizer, [{"all": flat}], [{"all": flat_grads}],
                                    flat_state)
                if not all_finite(loss, flat, *flat_buffers):
                    raise_divergence(spec, "numpy", step_index, plan.steps_per_epoch)
                losses.append(loss)
                step_index += 1
    return RunResult(params, model_state, current_state(), np.array(losses, dtype=spec.dtype),
                     snapshots)
