"""torch training: autograd for the gradients, the update rules by hand.

Parameters are leaf tensors with ``requires_grad``; each step runs
``loss.backward()``, updates the parameters and the optimizer state inside
``torch.no_grad()`` and clears the gradients. No ``torch.optim``, no
``nn.Module``. The parameters, gradients and optimizer buffers are views of one
flat vector each (``nnparity.shared.core.flat``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.distributed as dist

from nnparity.backends.contract import RunResult, StepResult
from nnparity.shared.core.data import BatchPlan
from nnparity.shared.core.divergence import raise_divergence
from nnparity.shared.core.draws import draws_anything, no_draws, step_draws
from nnparity.shared.core.flat import in_one_vector
from nnparity.shared.core.optimizers import OptimizerState
from nnparity.shared.core.replicas import Replica, Replicas, my_shard, shard_draws
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.trajectory import Snapshot
from nnparity.shared.core.tree import Params, leaves, map_tree, zeros_like_tree

from .network import loss_fn, to_numpy, to_tensors
from .optimizers import update
from .replicas import run_replicas


def state_to_tensors(state):
    return OptimizerState(state.step,
                          {name: to_tensors(tree) for name, tree in state.buffers.items()})


def state_to_numpy(state):
    return OptimizerState(int(state.step),
                          {name: to_numpy(tree) for name, tree in state.buffers.items()})


def trainable(spec, params):
    """A copy of the NumPy ``params`` as leaf tensors autograd fills, views of one
    vector ``flat``, whose ``.grad`` are views of one zeroed vector ``flat_grads``:
    (flat, params, flat_grads, grads)."""
    flat_grads, grads = in_one_vector(zeros_like_tree(params), spec.dtype, torch.from_numpy)
    flat, tensors = in_one_vector(params, spec.dtype, torch.from_numpy)
    for p, g in zip(leaves(tensors), leaves(grads), strict=True):
        p.requires_grad_(True)                                   # leaves autograd fills
        p.grad = g
    return flat, tensors, flat_grads, grads


def backward(spec, params, model_state, x, y, draws, flat_grads, replica: Replica | None):
    """The global batch's loss (detached), its gradients added into the parameters'
    ``.grad`` (views of ``flat_grads``), for the batch x, y (tensors) with its
    ``draws``. On one device, the whole batch; as ``replica``, its shard, its loss
    weighted by its share w_r, then the gradients and the loss summed over the
    replicas: this is all that data parallelism changes."""
    if replica is None:
        loss = loss_fn(spec, params, model_state, x, y, draws)
        loss.backward()
        return loss.detach()
    part, weight = my_shard(replica, y.numpy(), spec.loss)   # rows, w_r = N_r / N
    loss = loss_fn(spec, params, model_state, x[part], y[part], shard_draws(draws, part)) * weight
    loss.backward()
    with torch.no_grad():
        dist.all_reduce(flat_grads)                           # sum_r w_r * grad_r
        total = loss.detach().clone()
        dist.all_reduce(total)                                # sum_r w_r * loss_r
    return total


def step(spec: NetworkSpec, params: Params, model_state: Params, opt_state: OptimizerState,
         x: np.ndarray, y: np.ndarray, replicas: Replicas | None = None) -> StepResult:
    """One step from NumPy arguments; the result in NumPy. Random layers use the
    draws of step ``opt_state.step``. With ``replicas``, x and y are the global
    batch, split across them (``steps`` takes many such steps in one launch)."""
    return steps(spec, [(params, model_state, opt_state, x, y)], replicas)[0]


def steps(spec: NetworkSpec, starts: list, replicas: Replicas | None = None
          ) -> list[StepResult]:
    """``step`` from each (params, model_state, opt_state, x, y) of ``starts``, the
    replicas launched once for all of them."""
    if replicas is not None:
        return run_replicas(replicas, functools.partial(_steps, spec, starts))
    return _steps(spec, starts, None)


def _steps(spec, starts, replica):
    return [_step(spec, params, model_state, opt_state, x, y, replica)
            for params, model_state, opt_state, x, y in starts]


def _step(spec, params, model_state, opt_state, x, y, replica):
    draws = step_draws(spec, int(opt_state.step), x.shape[0])
    _, params, flat_grads, grads = trainable(spec, params)
    model_state = to_tensors(model_state)
    opt_state = state_to_tensors(opt_state)
    loss = backward(spec, params, model_state, torch.from_numpy(x), torch.from_numpy(y),
                    draws, flat_grads, replica)
    opt_state = update(spec.optimizer, params, grads, opt_state)
    return StepResult(loss.numpy(), to_numpy(grads), to_numpy(params),
                      to_numpy(model_state), state_to_numpy(opt_state))


def all_finite(loss, *flats):
    """True when the loss and every element of every tensor in ``flats`` are
    finite, each usually decided by one sum (see ``nnparity.shared.core.divergence``)."""
    return math.isfinite(loss) and all(
        math.isfinite(flat.sum()) or bool(torch.isfinite(flat).all()) for flat in flats)


def train(spec: NetworkSpec, params: Params, model_state: Params, opt_state: OptimizerState,
          x: np.ndarray, y: np.ndarray, plan: BatchPlan, record_every: int | None = None,
          replicas: Replicas | None = None) -> RunResult:
    """Train from NumPy arguments over ``plan``; the result in NumPy. Raises
    ``DivergenceError`` at the first step whose loss, parameters or optimizer
    state are not finite.

    Each step runs ``loss.backward()``, which adds into the parameters' ``.grad``
    (views of one zeroed gradient vector), then updates under ``torch.no_grad()``
    and zeroes the gradients again.

    With ``replicas``, one ``torch.distributed`` process per replica runs this
    loop on its shard of every batch (``replicas.py``); they stay identical, and
    replica 0's result is returned.
    """
    if replicas is not None:
        return run_replicas(replicas, functools.partial(
            _train, spec, params, model_state, opt_state, x, y, plan, record_every))
    return _train(spec, params, model_state, opt_state, x, y, plan, record_every, None)


def _train(spec, params, model_state, opt_state, x, y, plan, record_every, replica):
    flat, params, flat_grads, grads = trainable(spec, params)
    model_state = map_tree(torch.from_numpy, map_tree(np.copy, model_state))
    buffers = {name: in_one_vector(tree, spec.dtype, torch.from_numpy)
               for name, tree in opt_state.buffers.items()}
    flat_state = OptimizerState(opt_state.step,
                                {name: [{"all": f}] for name, (f, _) in buffers.items()})

    def current_state():
        return OptimizerState(flat_state.step, {name: v for name, (_, v) in buffers.items()})

    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    losses: list[torch.Tensor] = []
    snapshots: list[Snapshot] = []
    step_index = plan.first_step
    random = draws_anything(spec)                                # Dropout's masks
    batches = [(x_t[rows], y_t[rows]) for rows in plan.batches(0)]   # the same every epoch
    for epoch in range(plan.epochs):                              # unless shuffled
        if spec.shuffle and epoch > 0:
            batches = [(x_t[rows], y_t[rows]) for rows in plan.batches(epoch)]
        for x_batch, y_batch in batches:
            if record_every and step_index % record_every == 0:
                snapshots.append(Snapshot(step_index, to_numpy(params),
                                          state_to_numpy(current_state()),
                                          to_numpy(model_state)))
            draws = (step_draws(spec, step_index, x_batch.shape[0]) if random
                     else no_draws(spec))
            loss = backward(spec, params, model_state, x_batch, y_batch, draws, flat_grads,
                            replica)
            flat_state = update(spec.optimizer, [{"all": flat}], [{"all": flat_grads}],
                                flat_state)
            flat_grads.zero_()                                   # clear the gradients
            losses.append(loss)
            if not all_finite(loss, flat, *(f for f, _ in buffers.values())):
                raise_divergence(spec, "torch", step_index, plan.steps_per_epoch)
            step_index += 1
    stacked = torch.stack(losses) if losses else torch.zeros(0, dtype=x_t.dtype)
    return RunResult(to_numpy(params), to_numpy(model_state), state_to_numpy(current_state()),
                     stacked.numpy(), snapshots)
