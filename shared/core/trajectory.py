"""Snapshots of a training run, for trajectory and teacher-forced parity.

A snapshot at step s holds the parameters, optimizer state and model state
*before* step s (so the snapshot at step 0 is the initial state). Backends
record one every ``record_every`` steps when asked; ``default_record_every``
keeps the memory of a long run bounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from nnparity.shared.core.optimizers import OptimizerState
from nnparity.shared.core.tree import Params, copy_tree

#: at most this many snapshots, and at most this many bytes of them, per run
MAX_SNAPSHOTS = 200
MAX_SNAPSHOT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Snapshot:
    """Parameters, optimizer state and model state before global step ``step``
    (NumPy copies)."""

    step: int
    params: Params
    opt_state: OptimizerState
    model_state: Params = field(default_factory=list)


def copy_state(state: OptimizerState) -> OptimizerState:
    """A copy of an optimizer state (``step`` as a Python int)."""
    return OptimizerState(int(state.step),
                          {name: copy_tree(tree) for name, tree in state.buffers.items()})


def default_record_every(total_steps: int, n_params: int, n_buffers: int,
                         itemsize: int) -> int:
    """The smallest k that keeps a run's snapshots within MAX_SNAPSHOTS and
    MAX_SNAPSHOT_BYTES (each snapshot holds the parameters and every buffer)."""
    per_snapshot = max(1, n_params * (1 + n_buffers) * itemsize)
    most = max(1, min(MAX_SNAPSHOTS, MAX_SNAPSHOT_BYTES // per_snapshot))
    return max(1, math.ceil(total_steps / most))
