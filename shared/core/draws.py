"""The random draws of a training step (Dropout's masks), the same in every backend.

Frameworks' random streams cannot be matched: torch's seed 0 and JAX's key 0 give
different masks, and no seed makes them agree. So a layer that needs randomness
in training (a kind with ``random = True``) does not draw it in its backend. The
draws of global step ``step`` are made here, in NumPy, and every backend is
handed them as data: NumPy and torch per step, JAX as scanned inputs of its
compiled loop. A random layer's output is then the same in all three.

Layer ``i``'s draw at step ``step`` comes from its own generator,
``np.random.default_rng((spec.seed, step, i))`` (NumPy's ``SeedSequence`` mixes
the three numbers; PCG64 streams are the same on every platform). So:

- a step's masks do not depend on which steps ran before it: a run resumed from a
  checkpoint, or one teacher-forced step from a snapshot, draws what the
  uninterrupted run drew (``step`` is the optimizer's update count,
  ``OptimizerState.step``, which is the global step index);
- a mask covers the step's whole batch, one row of draws per row of the batch,
  so a batch split across replicas takes its rows' slices of the same draw.
"""
from __future__ import annotations

import numpy as np

from nnparity.shared.core.spec import NetworkSpec

#: one entry per layer: its draw (Dropout: a bool keep mask (rows, *input_shape)),
#: or None for a layer that draws nothing
Draws = list  # list[np.ndarray | None]


def draws_anything(spec: NetworkSpec) -> bool:
    """True when some layer of ``spec`` draws randomness in training."""
    return any(layer.random for layer in spec.layers)


def no_draws(spec: NetworkSpec) -> Draws:
    """[None, ...]: what a network without random layers (or evaluation) gets."""
    return [None] * len(spec.layers)


def step_draws(spec: NetworkSpec, step: int, rows: int) -> Draws:
    """The draws of global training step ``step`` for a batch of ``rows`` rows."""
    return [layer.draw(np.random.default_rng((spec.seed, step, index)), (rows, *shape))
            if layer.random else None
            for index, (layer, shape) in enumerate(zip(spec.layers, spec.layer_input_shapes[:-1],
                                                      strict=True))]
