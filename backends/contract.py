"""The backend contract: what ``nnparity.backends.numpy``, ``.torch`` and ``.jax``
each provide, with the same signatures.

NumPy arrays go in and come out; inside, each backend uses its own arrays.
Inputs are validated once, by ``nnparity.backends.api``, before a backend sees
them. Trees (``params``, ``model_state``, every optimizer buffer) hold one dict
of arrays per layer (``nnparity.shared.core.tree``).

``tests/test_architecture.py`` checks that the three modules satisfy ``Backend``
(parameter names); mypy checks it statically, annotations and defaults included
(``check_contract`` below; ``tools/typecheck.sh``, run by CI).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from nnparity.shared.core.data import BatchPlan
from nnparity.shared.core.layers import Activation
from nnparity.shared.core.optimizers import OptimizerState
from nnparity.shared.core.replicas import Replicas
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.trajectory import Snapshot
from nnparity.shared.core.tree import Params


class RunResult(NamedTuple):
    """What a backend's ``train`` returns (NumPy)."""

    params: Params
    model_state: Params
    opt_state: OptimizerState
    #: (steps,) every step's minibatch loss, computed before that step's update
    losses: np.ndarray
    snapshots: list[Snapshot]


class StepResult(NamedTuple):
    """What a backend's ``step`` returns (NumPy): one step from given values."""

    #: 0-d, the minibatch loss before the update
    loss: np.ndarray
    grads: Params
    params: Params
    model_state: Params
    opt_state: OptimizerState


class Backend(Protocol):
    """One backend module."""

    def train(self, spec: NetworkSpec, params: Params, model_state: Params,
              opt_state: OptimizerState, x: np.ndarray, y: np.ndarray, plan: BatchPlan,
              record_every: int | None = None, replicas: Replicas | None = None
              ) -> RunResult:
        """Train over the batches of ``plan``; a ``Snapshot`` before every
        ``record_every``-th step. Raises ``DivergenceError`` at the first step
        whose loss, parameters or optimizer state are not finite. With
        ``replicas``, data-parallel (``nnparity.shared.core.replicas``)."""
        ...

    def step(self, spec: NetworkSpec, params: Params, model_state: Params,
             opt_state: OptimizerState, x: np.ndarray, y: np.ndarray,
             replicas: Replicas | None = None) -> StepResult:
        """One training step from copies of the arguments (teacher forcing); x, y
        the global batch, split across ``replicas`` if given."""
        ...

    def steps(self, spec: NetworkSpec, starts: list, replicas: Replicas | None = None
              ) -> list[StepResult]:
        """``step`` from each (params, model_state, opt_state, x, y) of ``starts``
        (the replicas started once for all of them)."""
        ...

    def predict(self, spec: NetworkSpec, params: Params, model_state: Params,
                x: np.ndarray) -> np.ndarray:
        """x (batch, *input_shape) -> output (batch, k), eval mode."""
        ...

    def activation_with_grad(self, activation: Activation, x: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray]:
        """(f(x), f'(x)) elementwise for an ``Activation`` layer spec."""
        ...

    def loss_with_grad(self, loss: str, params: dict[str, float], p: np.ndarray,
                       y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L(p, y), dL/dp) with the loss's parameters, defaults filled in."""
        ...


if TYPE_CHECKING:                       # mypy checks each module against the Protocol
    def check_contract() -> None:
        import nnparity.backends.jax
        import nnparity.backends.numpy
        import nnparity.backends.torch

        numpy_backend: Backend = nnparity.backends.numpy  # noqa: F841
        torch_backend: Backend = nnparity.backends.torch  # noqa: F841
        jax_backend: Backend = nnparity.backends.jax  # noqa: F841
