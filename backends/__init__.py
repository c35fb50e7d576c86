"""The three backends behind one interface, and the registry that picks one.

Each backend module (``numpy``, ``torch``, ``jax``) exposes the same functions
with the same signatures:

- ``train(spec, params, opt_state, x, y, plan, record_every=None)
  -> (params, opt_state, losses, snapshots)``; raises ``DivergenceError``
- ``step(spec, params, opt_state, x, y) -> (loss, grads, params, opt_state)``:
  one step from copies, for teacher forcing
- ``predict(spec, params, x) -> output``
- ``activation_with_grad(activation, x) -> (f(x), f'(x))``
- ``loss_with_grad(loss, params, p, y) -> (L, dL/dp)``

NumPy arrays go in and come out. Inputs are validated here, once, before a
backend sees them; a framework is imported only when its backend is first used.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import numpy as np

from nnparity.shared.activations import resolve
from nnparity.shared.checkpoint import Checkpoint
from nnparity.shared.losses import LOSSES, check_loss_params, check_targets
from nnparity.shared.data import Dataset, batch_plan, check_fits
from nnparity.shared.init import Params, check_params, init_params
from nnparity.shared.optimizers import init_state
from nnparity.shared.spec import NetworkSpec
from nnparity.shared.trajectory import copy_params, copy_state
from nnparity.shared.validation import (MissingFrameworkError, check_float_array, check_int,
                                       check_shape, fail)

__all__ = ["BACKENDS", "MissingFrameworkError", "TrainResult", "activation_with_grad",
           "available_backends", "evaluate", "loss_with_grad", "predict", "train"]

#: backend name -> (top-level module it needs, pip extra that installs it)
BACKENDS = {"numpy": ("numpy", None), "torch": ("torch", "torch"), "jax": ("jax", "jax")}


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns.

    Attributes:
        params: [(W (out, in), b (out,)), ...] NumPy arrays in ``spec.dtype``.
        losses: (epochs * steps_per_epoch,) each step's minibatch loss,
            computed before that step's update.
        backend: the backend's name.
        spec: the spec that was trained.
        metrics: test-set metrics from ``evaluate``: test_loss, and test_accuracy
            for classification losses.
        snapshots: ``Snapshot``s before every ``record_every``-th step, if asked.
        opt_state: the optimizer state after training, ``{"step": int, buffer:
            [(W-shaped, b-shaped), ...]}`` (see ``nnparity.shared.optimizers``).
        epochs_done: epochs the parameters have trained, ``spec.epochs`` (a
            resumed run included); ``losses`` and ``snapshots`` cover only the
            epochs this call ran.
    """

    params: Params
    losses: np.ndarray
    backend: str
    spec: NetworkSpec
    opt_state: dict
    metrics: dict[str, float]
    snapshots: list = field(default_factory=list)
    epochs_done: int = 0


def get_backend(name: str) -> ModuleType:
    """The backend module called ``name``, imported on first use."""
    if not isinstance(name, str) or name not in BACKENDS:
        fail("backend", name, f"one of {', '.join(map(repr, BACKENDS))}")
    framework, extra = BACKENDS[name]
    if importlib.util.find_spec(framework) is None:
        raise MissingFrameworkError(f"backend {name!r} needs {framework}, which is not installed: "
                          f"pip install 'nnparity[{extra}]'")
    return importlib.import_module(f"nnparity.backends.{name}")


def available_backends() -> list[str]:
    """Names of the backends whose framework is installed."""
    return [name for name, (framework, _) in BACKENDS.items()
            if importlib.util.find_spec(framework) is not None]


def train(spec: NetworkSpec, data: Dataset, backend: str = "numpy", *,
          resume: Checkpoint | None = None, record_every: int | None = None,
          progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train ``spec`` on ``data.x_train``/``data.y_train`` with one backend.

    Every backend starts from ``init_params(spec)`` and the optimizer's initial
    state, and sees the same batches. Features and float targets are converted
    to ``spec.dtype``; class labels to int64.

    Args:
        resume: continue from a ``Checkpoint`` (any backend's) instead: its
            parameters and optimizer state after ``resume.epochs_done`` epochs.
            Its spec must equal ``spec`` in every field but ``epochs``, which is
            the total (>= epochs_done); epochs epochs_done .. spec.epochs-1 then
            run with the batches an uninterrupted run uses, and the result
            matches that run's. It needs an optimizer state whose step count is
            epochs_done times the steps per epoch of ``data``.
        record_every: keep a ``Snapshot`` (parameters and optimizer state) before
            every k-th step, in ``TrainResult.snapshots``.
        progress: ``progress(epochs_done, epochs, last_loss)`` is called after
            every chunk of about epochs/20 epochs (the run is then split into
            chunks; the result is the same).

    Raises:
        DivergenceError: at the first step whose loss or updated parameters are
            not finite (the same step in every backend).
    """
    check_fits(spec, data)
    if record_every is not None:
        check_int("record_every", record_every, 1)
    x, y = as_arrays(spec, data.x_train, data.y_train)
    if resume is None:
        start = 0
        params = init_params(spec)
        state = init_state(spec.optimizer, params)
    else:
        start, params, state = resume_point(spec, resume, x.shape[0])
    module = get_backend(backend)
    chunk = max(1, spec.epochs - start if progress is None else (spec.epochs - start) // 20)
    losses, snapshots = [], []
    for first in range(start, spec.epochs, chunk):
        epochs = min(chunk, spec.epochs - first)
        plan = batch_plan(x.shape[0], spec.batch_size, epochs, spec.seed, spec.shuffle,
                          first_epoch=first)
        params, state, chunk_losses, chunk_snapshots = module.train(
            spec, params, state, x, y, plan, record_every)
        losses.append(chunk_losses)
        snapshots.extend(chunk_snapshots)
        if progress is not None:
            progress(first + epochs, spec.epochs, float(chunk_losses[-1]))
    losses = np.concatenate(losses) if losses else np.zeros(0, dtype=spec.dtype)
    return TrainResult(params=params, losses=losses, backend=backend, spec=spec,
                       opt_state=state, metrics=measure_metrics(spec, params, data, module),
                       snapshots=snapshots, epochs_done=spec.epochs)


def resume_point(spec: NetworkSpec, resume, n_rows: int) -> tuple[int, Params, dict]:
    """(first epoch, params, optimizer state) to continue ``spec`` from ``resume``;
    copies, so the checkpoint is left as it is.

    A ``Checkpoint`` is consistent with its own spec (it checks itself when built);
    what is checked here is how it relates to the new ``spec`` and the data."""
    if not isinstance(resume, Checkpoint):
        fail("resume", resume, "a Checkpoint (load_checkpoint(path))", TypeError)
    mine, theirs = spec.to_dict(), resume.spec.to_dict()
    differ = [name for name in mine if name != "epochs" and mine[name] != theirs[name]]
    if differ:
        name = differ[0]
        fail(f"resume.spec.{name}", theirs[name], f"{mine[name]!r} as in spec: a resumed run "
             f"may change only epochs, the total (fields that differ: {', '.join(differ)})")
    if resume.epochs_done > spec.epochs:
        fail("spec.epochs", spec.epochs, f"the total, at least resume.epochs_done="
             f"{resume.epochs_done}")
    if resume.opt_state is None:
        fail("resume.opt_state", None, "the optimizer state saved with the parameters "
             "(a checkpoint without one can predict, not resume)")
    params, state = resume.params, resume.opt_state
    steps_per_epoch = batch_plan(n_rows, spec.batch_size, 1, spec.seed, False).steps_per_epoch
    if state["step"] != resume.epochs_done * steps_per_epoch:
        fail("resume.opt_state['step']", state["step"],
             f"epochs_done * steps per epoch = {resume.epochs_done} * {steps_per_epoch} "
             f"(the data has {n_rows} training rows, batch_size {spec.batch_size})")
    return resume.epochs_done, copy_params(params), copy_state(state)


def evaluate(spec: NetworkSpec, params: Params, data: Dataset,
             backend: str = "numpy") -> dict[str, float]:
    """Test-set metrics: ``{"test_loss": L}``, plus ``"test_accuracy"`` for
    classification losses (argmax for cross_entropy, logit > 0 vs target > 1/2
    for bce_with_logits). Predictions come from ``backend``; the loss is the
    NumPy reference's."""
    check_fits(spec, data)
    return measure_metrics(spec, check_params(spec, params), data, get_backend(backend))


def measure_metrics(spec, params, data, module) -> dict[str, float]:
    """``evaluate`` without the input checks, for parameters a backend just trained."""
    from .numpy_losses import LOSSES as NUMPY_LOSSES

    x, y = as_arrays(spec, data.x_test, data.y_test)
    p = module.predict(spec, params, x)                      # (n_test, sizes[-1])
    metrics = {"test_loss": float(NUMPY_LOSSES[spec.loss][0](p, y, **spec.loss_kwargs))}
    if spec.loss == "cross_entropy":
        metrics["test_accuracy"] = float(np.mean(p.argmax(axis=1) == y))
    elif spec.loss == "bce_with_logits":
        metrics["test_accuracy"] = float(np.mean((p > 0) == (y > 0.5)))
    return metrics


def as_arrays(spec: NetworkSpec, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x in spec.dtype (n, sizes[0]); y in spec.dtype, or int64 class labels (n,)."""
    y = y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(spec.dtype)
    return x.astype(spec.dtype), y


def predict(spec: NetworkSpec, params, x: np.ndarray, backend: str = "numpy") -> np.ndarray:
    """The network's output for x (batch, sizes[0]) -> (batch, sizes[-1]), in spec.dtype."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    params = check_params(spec, params)
    check_float_array("x", x, 2)
    check_shape("x", x, (x.shape[0], spec.sizes[0]))
    module = get_backend(backend)
    return module.predict(spec, params, x.astype(spec.dtype))


def activation_with_grad(name: str, x: np.ndarray, backend: str = "numpy",
                         **params: float) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), f'(x)) of activation ``name`` elementwise on a float32/float64 array x.

    NumPy uses its hand-written derivative; torch and JAX use autograd. Both
    results have x's shape and dtype. ``params`` are the activation's parameters
    (e.g. ``negative_slope=0.1``); unset ones keep their defaults.
    """
    activation = resolve(name, params)
    check_float_array("x", x, None)
    return get_backend(backend).activation_with_grad(activation, x)


def loss_with_grad(name: str, p: np.ndarray, y: np.ndarray, backend: str = "numpy",
                   **params: float) -> tuple[np.ndarray, np.ndarray]:
    """(L(p, y), dL/dp) of loss ``name`` for outputs p (n, k) and targets y.

    NumPy uses its hand-written gradient; torch and JAX use autograd. y must suit
    the loss (float (n, k), or int (n,) labels for cross_entropy); float targets
    are converted to p's dtype.
    """
    checked = check_loss_params(name, params)
    check_float_array("p", p, 2)
    check_targets(name, "y", y, p.shape[1])
    if y.shape[0] != p.shape[0]:
        fail("y.shape", y.shape, f"{p.shape[0]} rows, as many as p (shape {p.shape})")
    y = y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(p.dtype)
    return get_backend(backend).loss_with_grad(name, {**LOSSES[name].defaults, **checked}, p, y)
