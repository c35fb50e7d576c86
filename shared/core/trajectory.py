"""Snapshots of a training run, for trajectory and teacher-forced parity.

A snapshot at step s holds the parameters and optimizer state *before* step s
(so the snapshot at step 0 is the initial state). Backends record one every
``record_every`` steps when asked; ``default_record_every`` keeps the memory
of a long run bounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnparity.shared.core.init import Params

#: at most this many snapshots, and at most this many bytes of them, per run
MAX_SNAPSHOTS = 200
MAX_SNAPSHOT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Snapshot:
    """Parameters and optimizer state before global step ``step`` (NumPy copies)."""

    step: int
    params: Params
    state: dict


def copy_params(params) -> Params:
    """A copy of [(W, b), ...]; an array subclass stays that subclass
    (``nnparity.shared.parity.rounding`` runs the NumPy step on one)."""
    return [(np.array(w, subok=True), np.array(b, subok=True)) for w, b in params]


def copy_state(state: dict) -> dict:
    return {k: int(v) if k == "step" else copy_params(v) for k, v in state.items()}


def default_record_every(total_steps: int, n_params: int, n_buffers: int,
                         itemsize: int) -> int:
    """The smallest k that keeps a run's snapshots within MAX_SNAPSHOTS and
    MAX_SNAPSHOT_BYTES (each snapshot holds the parameters and every buffer)."""
    per_snapshot = max(1, n_params * (1 + n_buffers) * itemsize)
    most = max(1, min(MAX_SNAPSHOTS, MAX_SNAPSHOT_BYTES // per_snapshot))
    return max(1, math.ceil(total_steps / most))
