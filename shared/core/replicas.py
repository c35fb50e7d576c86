"""Data parallelism: what "N replicas" means, the same in every backend.

A data-parallel step splits the global batch (the rows the single-device run
would take at that step, ``BatchPlan``) into ``count`` contiguous shards, as
``np.array_split`` does: with n rows, the first n % count shards hold one row
more. Each replica runs the network on its shard, and

- the loss is the global batch's: replica r computes its shard's mean loss
  times w_r = N_r / N, where N is the number of terms the loss averages over
  (rows times outputs for mse, mae, huber and bce_with_logits; rows, or counted
  sequence positions, for cross_entropy) and N_r the shard's share of them, so
  that the sum over replicas, sum_r w_r mean_r = (1/N) sum_i l_i, is the
  single-device loss;
- the gradients are therefore summed over replicas (each already weighted by
  w_r), never averaged with equal weights: shards of unequal size (a partial last
  batch) and sequences with ignored positions count by their terms;
- every replica applies the same update to the same parameters, so the replicas
  stay identical: a reduction gives every replica the same bits (here, a sum in
  rank order);
- BatchNorm uses the statistics of the global batch (``sync_batch_norm=True``,
  torch's ``SyncBatchNorm``), or, as an explicit option, each shard's own
  statistics (plain ``BatchNorm`` under DDP); the running statistics are then
  replica 0's, which is what DDP's buffer broadcast from rank 0 leaves;
- Dropout's masks are drawn for the global batch (``draws.step_draws``) and each
  replica takes its rows' slice, so no mask repeats across replicas and each row
  gets the mask it gets on one device; shuffles are the global batch plan's.

A running replica is a ``Replica``: its rank, the group's size, the BatchNorm
choice, and ``all_reduce``. The backends' BatchNorm layers find the current one
with ``current_replica()`` (None outside a data-parallel run).
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import numpy as np

from nnparity.shared.core.losses import IGNORE_INDEX, LOSSES
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.validation import InputValueError, check_bool, check_int, fail

#: the most replicas a run may ask for
MAX_REPLICAS = 64


@dataclass(frozen=True)
class Replicas:
    """How a run is split: ``count`` replicas; BatchNorm synchronised or not."""

    count: int
    sync_batch_norm: bool = True


class Replica(Protocol):
    """One running replica of a data-parallel run."""

    rank: int
    size: int
    sync_batch_norm: bool

    def all_reduce(self, value: Any) -> Any:
        """The sum of ``value`` over every replica (each passes its own, of the same
        shape), the same bits on every replica."""
        ...


_CURRENT: contextvars.ContextVar[Replica | None] = contextvars.ContextVar(
    "nnparity_replica", default=None)


def current_replica() -> Replica | None:
    """The replica this code runs as, or None outside a data-parallel run."""
    return _CURRENT.get()


@contextlib.contextmanager
def running_as(replica: Replica | None) -> Iterator[None]:
    """Run the block as ``replica`` (None: as a single device)."""
    token = _CURRENT.set(replica)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def shard_bounds(rows: int, count: int) -> list[tuple[int, int]]:
    """The [start, stop) rows of each of ``count`` shards of a batch of ``rows``
    rows: contiguous, the first rows % count shards one row larger."""
    small, extra = divmod(rows, count)
    bounds, start = [], 0
    for r in range(count):
        stop = start + small + (r < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def loss_terms(loss: str, y: np.ndarray) -> int:
    """How many terms loss ``loss`` averages over for targets ``y``: counted
    positions for cross_entropy's labels, every element otherwise (the targets
    have the output's shape)."""
    if LOSSES[loss].targets == "labels":
        return int(np.count_nonzero(y != IGNORE_INDEX))
    return int(y.size)


def shard_weights(loss: str, y: np.ndarray, count: int) -> list[float]:
    """w_r = N_r / N for each shard of the batch targets ``y`` (see the module's
    docstring); the weights sum to 1."""
    total = loss_terms(loss, y)
    return [loss_terms(loss, y[start:stop]) / total for start, stop in shard_bounds(len(y), count)]


def check_replicas(replicas: object, sync_batch_norm: object, spec: NetworkSpec,
                   n_rows: int) -> Replicas | None:
    """The run's ``Replicas`` (None for one device), checked before any work: an
    integer count from 1 to MAX_REPLICAS, and batches that give every replica at
    least one row (and per-replica BatchNorm more than one value per channel)."""
    count = check_int("replicas", replicas, 1, MAX_REPLICAS)
    sync = check_bool("sync_batch_norm", sync_batch_norm)
    if count == 1:
        return None
    sizes = {min(spec.batch_size, n_rows)}
    if n_rows > spec.batch_size and n_rows % spec.batch_size:
        sizes.add(n_rows % spec.batch_size)
    smallest = min(sizes)
    if smallest < count:
        fail("replicas", count, f"at most {smallest}, the rows of the smallest training batch "
             f"({n_rows} training rows, batch_size {spec.batch_size}): every replica needs "
             "at least one row")
    if not sync:
        shard = smallest // count
        for layer, shape in zip(spec.layers, spec.layer_input_shapes, strict=False):
            try:
                layer.check_training_rows(shard, shape, "rows")
            except InputValueError:
                fail("replicas", count, f"fewer replicas, or sync_batch_norm=True: with "
                     f"per-replica BatchNorm, a shard of the smallest training batch "
                     f"({smallest} rows) holds {shard} rows, and BatchNorm needs more than "
                     "one value per channel to train")
    return Replicas(count, sync)


def my_shard(replica: Replica, y_batch: np.ndarray, loss: str) -> tuple[slice, float]:
    """Which rows of a global batch (targets ``y_batch``) ``replica`` takes, and its
    loss weight w_r = N_r / N."""
    start, stop = shard_bounds(len(y_batch), replica.size)[replica.rank]
    return slice(start, stop), shard_weights(loss, y_batch, replica.size)[replica.rank]


def shard_draws(draws: list, part: slice) -> list:
    """A replica's rows (``part``) of a step's draws for the global batch."""
    return [None if draw is None else draw[part] for draw in draws]


def synced(replica: Replica | None) -> Replica | None:
    """The replica whose ``all_reduce`` BatchNorm sums its statistics with: the
    current one when BatchNorm is synchronised, else None (a single device, or
    per-replica statistics)."""
    return replica if replica is not None and replica.sync_batch_norm else None
