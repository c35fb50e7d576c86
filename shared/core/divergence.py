"""Divergence: when training produces a non-finite loss, parameter or optimizer state.

Step s diverges when its minibatch loss (computed before its update) is not
finite, or when its update leaves a parameter or an optimizer buffer entry
that is not finite (Adam's ``exp_avg_sq`` overflowing to inf while the
parameters stay finite is divergence too: the run would stall silently, and
the state could not be saved). Every backend reports the first such step;
steps are numbered globally from 0. This is the one definition; the backends
implement it.

The NumPy and torch loops check every step with ``all_finite(loss, flat,
*buffers)``: all parameters as one vector, and each optimizer buffer as one
vector. A NaN or infinity anywhere makes a sum non-finite, so one sum per
vector usually decides; only when a sum is not finite (finite values can
overflow it) are the elements checked one by one. The JAX loop computes the
same flag inside the compiled step.
"""
from __future__ import annotations


class DivergenceError(FloatingPointError):
    """Training diverged.

    Attributes:
        backend: the backend's name.
        step: global step index (0-based) of the first non-finite loss or parameter.
        epoch: the epoch of that step (0-based).
    """

    def __init__(self, backend: str, step: int, epoch: int, lr: float | None = None) -> None:
        self.backend, self.step, self.epoch, self.lr = backend, step, epoch, lr
        hint = f" (lr={lr:g})" if lr is not None else ""
        super().__init__(
            f"{backend}: training diverged at step {step} (epoch {epoch}): a loss, parameter or "
            f"optimizer state became non-finite; try a smaller learning rate{hint}")

    def __reduce__(self):                 # pickled by a data-parallel replica for its caller
        return DivergenceError, (self.backend, self.step, self.epoch, self.lr)


def raise_divergence(spec, backend: str, step: int, steps_per_epoch: int) -> None:
    """Raise ``DivergenceError`` for global step ``step`` of a run of ``spec``."""
    raise DivergenceError(backend, step, step // steps_per_epoch, spec.optimizer.lr)
