"""A trained network's state as one value: what a checkpoint file holds.

Reading and writing files is ``nnparity.shared.io.checkpoint``'s job; this
module is the value and its checks, which ``train(..., resume=...)`` takes.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnparity.shared.core.init import check_model_state, check_params, init_model_state
from nnparity.shared.core.optimizers import OptimizerState, init_state, state_buffers
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tree import Params
from nnparity.shared.core.validation import INT64_MAX, check_int, fail

#: the default of ``Checkpoint.model_state``: None, "the spec's initial model state".
#: ``__post_init__`` always replaces it, so a built Checkpoint's field is a tree
#: (typed ``Any`` only so that it can be the default).
INITIAL_MODEL_STATE: Any = None


@dataclass(frozen=True, eq=False)      # arrays have no single truth value
class Checkpoint:
    """A network's state after ``epochs_done`` epochs of ``spec``.

    Unpacks as ``spec, params, opt_state = checkpoint``.

    Attributes:
        spec: the NetworkSpec; ``spec.epochs`` is the run's total.
        params: one dict of arrays per layer (``spec.param_shapes``), in ``spec.dtype``.
        opt_state: an ``OptimizerState`` of the spec's optimizer, or None (enough
            to predict, not to resume).
        epochs_done: epochs trained, 0 <= epochs_done <= spec.epochs.
        model_state: one dict of buffers per layer (``spec.buffer_shapes``);
            None means the initial model state (all empty for Dense networks).

    Every field is checked here (the trees' layers, names, shapes, dtype and
    finiteness; the optimizer state; the range of epochs_done), so a Checkpoint,
    from ``load_checkpoint`` or built by hand, is always consistent with its spec.
    """

    spec: NetworkSpec
    params: Params
    opt_state: OptimizerState | None
    epochs_done: int
    model_state: Params = INITIAL_MODEL_STATE

    if TYPE_CHECKING:   # model_state may be given as None, the documented default
        def __init__(self, spec: NetworkSpec, params: Params, opt_state: OptimizerState | None,
                     epochs_done: int, model_state: Params | None = None) -> None: ...

    def __post_init__(self) -> None:
        if not isinstance(self.spec, NetworkSpec):
            fail("spec", self.spec, "a NetworkSpec", TypeError)
        object.__setattr__(self, "params", check_params(self.spec, self.params))
        model_state = (init_model_state(self.spec) if self.model_state is None
                       else check_model_state(self.spec, self.model_state))
        object.__setattr__(self, "model_state", model_state)
        if self.opt_state is not None:
            object.__setattr__(self, "opt_state", check_opt_state(self.spec, self.opt_state))
        epochs_done = check_int("epochs_done", self.epochs_done, 0, INT64_MAX)
        if epochs_done > self.spec.epochs:
            fail("epochs_done", epochs_done,
                 f"at most spec.epochs={self.spec.epochs} (the run's total)")
        object.__setattr__(self, "epochs_done", epochs_done)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.spec, self.params, self.opt_state))

    @classmethod
    def start(cls, spec: NetworkSpec, params: Params, model_state: Params | None = None
              ) -> Checkpoint:
        """A run of ``spec`` that starts from ``params`` (and ``model_state``) instead of
        ``init_params(spec)``: epoch 0, the optimizer's initial state. ``train(spec,
        data, resume=Checkpoint.start(spec, params))`` trains weights from elsewhere,
        such as those ``nnparity.backends.interop.from_torch`` reads from a model."""
        if not isinstance(spec, NetworkSpec):
            fail("spec", spec, "a NetworkSpec", TypeError)
        checked = check_params(spec, params)
        return cls(spec, checked, init_state(spec.optimizer, checked), 0, model_state)


def check_opt_state(spec: NetworkSpec, state: Any, name: str = "opt_state") -> OptimizerState:
    """Check that ``state`` is an ``OptimizerState`` of ``spec.optimizer`` for
    parameters shaped by ``spec``: ``step`` an integer in the int64 range, >= 0,
    and exactly the buffers ``state_buffers`` names, each a tree like the
    parameters in ``spec.dtype``, finite."""
    buffers = state_buffers(spec.optimizer)
    if not isinstance(state, OptimizerState):
        fail(name, state, f"an OptimizerState(step, buffers) with buffers {list(buffers)}",
             TypeError)
    if not isinstance(state.buffers, dict) or set(state.buffers) != set(buffers):
        fail(f"{name}.buffers keys",
             sorted(state.buffers, key=str) if isinstance(state.buffers, dict) else state.buffers,
             f"exactly {list(buffers)}, the buffers of {spec.optimizer}")
    step = check_int(f"{name}.step", state.step, 0, INT64_MAX)
    return OptimizerState(step, {buffer: check_params(spec, state.buffers[buffer],
                                                      f"{name}.buffers[{buffer!r}]")
                                 for buffer in buffers})
