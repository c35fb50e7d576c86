"""The public entry points: ``train``, ``predict``, ``evaluate``, and the
per-function probes, whatever the backend.

Everything is validated here, once, before a backend sees it; the backend is
then looked up in the registry (``registry.py``), which imports its framework
on first use. The backends themselves satisfy ``contract.Backend``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from nnparity.shared.core.checkpoint import Checkpoint
from nnparity.shared.core.data import (Dataset, batch_plan, check_fits, check_inputs,
                                       check_training_batches, inputs_as, predict_bytes,
                                       run_bytes)
from nnparity.shared.core.init import check_network, init_model_state, init_params
from nnparity.shared.core.layers import Activation
from nnparity.shared.core.losses import IGNORE_INDEX, LOSSES, check_loss_params, check_targets
from nnparity.shared.core.optimizers import OptimizerState, init_state
from nnparity.shared.core.replicas import check_replicas
from nnparity.shared.core.spec import NetworkSpec, check_activation_in_dtype, check_loss_in_dtype
from nnparity.shared.core.trajectory import Snapshot, copy_state
from nnparity.shared.core.tree import Params, copy_tree
from nnparity.shared.core.validation import (INT64_MAX, check_array, check_bool, check_count,
                                             check_float_array, check_memory, fail,
                                             plain_layout)

from .registry import check_backend, get_backend

if TYPE_CHECKING:
    from .contract import Backend

__all__ = ["TrainResult", "activation_with_grad", "evaluate", "loss_with_grad", "predict",
           "train"]


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns.

    Attributes:
        params: one dict of NumPy arrays per layer, in ``spec.dtype``
            (``params[0]["weight"]`` (out, in) for a first Dense layer);
            ``to_flat(params)`` names them as torch's ``state_dict`` does.
        losses: (epochs * steps_per_epoch,) each step's minibatch loss,
            computed before that step's update.
        backend: the backend's name.
        spec: the spec that was trained.
        opt_state: the ``OptimizerState`` after training (see
            ``nnparity.shared.core.optimizers``).
        metrics: test-set metrics from ``evaluate``: test_loss, and test_accuracy
            for classification losses ({} when ``train`` was called with
            ``metrics=False``).
        snapshots: ``Snapshot``s before every ``record_every``-th step, if asked.
        epochs_done: epochs the parameters have trained, ``spec.epochs`` (a
            resumed run included); ``losses`` and ``snapshots`` cover only the
            epochs this call ran.
        model_state: the model state (non-trainable buffers) after training, a
            tree like ``params`` (empty dicts for Dense networks).
        replicas: how many data-parallel replicas trained (1: one device).
    """

    params: Params
    losses: np.ndarray
    backend: str
    spec: NetworkSpec
    opt_state: OptimizerState
    metrics: dict[str, float]
    snapshots: list[Snapshot] = field(default_factory=list)
    epochs_done: int = 0
    model_state: Params = field(default_factory=list)
    replicas: int = 1


def check_progress(progress: object) -> None:
    """None, or a callable that takes (epochs_done, epochs, last_loss)."""
    if progress is None:
        return
    allowed = "None or a callable progress(epochs_done, epochs, last_loss)"
    if not callable(progress):
        fail("progress", progress, allowed, TypeError)
    try:
        signature = inspect.signature(progress)
    except (TypeError, ValueError):              # some builtins have none: accept them
        return
    try:
        signature.bind(0, 1, 0.0)
    except TypeError as exc:
        fail("progress", progress, f"{allowed} ({exc})", TypeError)


def train(spec: NetworkSpec, data: Dataset, backend: str = "numpy", *,
          resume: Checkpoint | None = None, record_every: int | None = None,
          progress: Callable[[int, int, float], None] | None = None,
          metrics: bool = True, replicas: int = 1,
          sync_batch_norm: bool = True) -> TrainResult:
    """Train ``spec`` on ``data.x_train``/``data.y_train`` with one backend.

    Every backend starts from ``init_params(spec)`` and the optimizer's initial
    state, and sees the same batches. Features and float targets are converted
    to ``spec.dtype``; class labels to int64.

    Everything is checked before any work starts (no parameters drawn, no framework
    imported): the spec and the data, the backend's name and framework, the
    arguments, and that the run's arrays can fit in this machine's memory
    (``run_bytes``, a lower bound, against the physical memory).

    Args:
        resume: continue from a ``Checkpoint`` (any backend's) instead: its
            parameters and optimizer state after ``resume.epochs_done`` epochs.
            Its spec must equal ``spec`` in every field but ``epochs``, which is
            the total (>= epochs_done); epochs epochs_done .. spec.epochs-1 then
            run with the batches an uninterrupted run uses, and the result
            matches that run's. It needs an optimizer state whose step count is
            epochs_done times the steps per epoch of ``data``.
        record_every: keep a ``Snapshot`` (parameters and optimizer state) before
            every k-th step, in ``TrainResult.snapshots``; 1 <= k < 2**63.
        progress: ``progress(epochs_done, epochs, last_loss)`` is called after
            every chunk of about epochs/20 epochs (the run is then split into
            chunks; the result is the same).
        metrics: measure the test-set metrics of the trained parameters (a forward
            pass over ``data.x_test``); False leaves ``TrainResult.metrics`` empty,
            so that the call is training alone (what ``nnparity bench`` times).
        replicas: train data-parallel on this many replicas (1 to 64): each global
            batch is split across them, the loss and gradients are the global
            batch's, and the result equals the single-device run up to rounding
            (``nnparity.shared.core.replicas`` defines it). NumPy runs the replicas
            as threads, torch as ``torch.distributed`` processes (gloo) launched
            here or, under ``torchrun``, this process as one of them, JAX as host
            devices of a sharded computation in a fresh subprocess. Every training
            batch needs at least ``replicas`` rows. ``progress`` is then called
            once, at the end.
        sync_batch_norm: with replicas > 1, BatchNorm normalises with the global
            batch's statistics (True, equal to one device) or each shard's own
            (False, as plain BatchNorm under DDP; the running statistics are then
            replica 0's).

    Raises:
        DivergenceError: at the first step whose loss or updated parameters are
            not finite (the same step in every backend).
    """
    check_fits(spec, data)
    check_training_batches(spec, data.x_train.shape[0])
    check_backend(backend)
    if record_every is not None:
        check_count("record_every", record_every, 1, INT64_MAX, "2**63 - 1")
    check_progress(progress)
    check_bool("metrics", metrics)
    n_rows = data.x_train.shape[0]
    split = check_replicas(replicas, sync_batch_norm, spec, n_rows)
    start = 0 if resume is None else resume_point(spec, resume, n_rows)
    chunk = max(1, spec.epochs - start if progress is None or split is not None
                else (spec.epochs - start) // 20)
    check_memory("spec.epochs", spec.epochs, run_bytes(
        spec, n_rows, spec.epochs - start, chunk_epochs=chunk, record_every=record_every),
        blame={"parameters and optimizer state": ("spec.layers", spec.layers),
               "snapshots": ("record_every", record_every),
               "training data": ("data.x_train.shape", data.x_train.shape),
               "layer outputs": ("spec.batch_size", spec.batch_size)})
    # nothing was allocated before this line
    x, y = as_arrays(spec, data.x_train, data.y_train)
    if resume is None:
        params, model_state = init_params(spec), init_model_state(spec)
        opt_state = init_state(spec.optimizer, params)
    else:
        params, model_state = copy_tree(resume.params), copy_tree(resume.model_state)
        assert resume.opt_state is not None     # resume_point refuses a checkpoint without
        opt_state = copy_state(resume.opt_state)
    module = get_backend(backend)
    loss_chunks: list[np.ndarray] = []
    snapshots: list[Snapshot] = []
    for first in range(start, spec.epochs, chunk):
        epochs = min(chunk, spec.epochs - first)
        plan = batch_plan(x.shape[0], spec.batch_size, epochs, spec.seed, spec.shuffle,
                          first_epoch=first)
        params, model_state, opt_state, chunk_losses, chunk_snapshots = module.train(
            spec, params, model_state, opt_state, x, y, plan, record_every, split)
        loss_chunks.append(chunk_losses)
        snapshots.extend(chunk_snapshots)
        if progress is not None:
            progress(first + epochs, spec.epochs, float(chunk_losses[-1]))
    losses = np.concatenate(loss_chunks) if loss_chunks else np.zeros(0, dtype=spec.dtype)
    return TrainResult(params=params, losses=losses, backend=backend, spec=spec,
                       opt_state=opt_state,
                       metrics=(measure_metrics(spec, params, model_state, data, module)
                                if metrics else {}),
                       snapshots=snapshots, epochs_done=spec.epochs, model_state=model_state,
                       replicas=1 if split is None else split.count)


def resume_point(spec: NetworkSpec, resume: object, n_rows: int) -> int:
    """The first epoch to run when continuing ``spec`` from ``resume``, checked
    against the checkpoint (nothing is copied yet).

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
    step = resume.opt_state.step
    steps_per_epoch = -(-n_rows // spec.batch_size)                # the batch plan's
    if step != resume.epochs_done * steps_per_epoch:
        fail("resume.opt_state.step", step,
             f"epochs_done * steps per epoch = {resume.epochs_done} * {steps_per_epoch} "
             f"(the data has {n_rows} training rows, batch_size {spec.batch_size})")
    return resume.epochs_done


def evaluate(spec: NetworkSpec, params: Params, data: Dataset, backend: str = "numpy", *,
             model_state: Params | None = None) -> dict[str, float]:
    """Test-set metrics: ``{"test_loss": L}``, plus ``"test_accuracy"`` for
    classification losses (argmax over the last axis for cross_entropy, at the
    counted positions of sequence labels; logit > 0 vs target > 1/2 for
    bce_with_logits). Predictions come from ``backend``; the loss is the
    NumPy reference's."""
    check_fits(spec, data)
    check_backend(backend)
    params, model_state = check_network(spec, params, model_state)
    check_memory("data.x_test.shape", data.x_test.shape,
                 predict_bytes(spec, data.x_test.shape[0]))
    return measure_metrics(spec, params, model_state, data, get_backend(backend))


def measure_metrics(spec: NetworkSpec, params: Params, model_state: Params, data: Dataset,
                    module: Backend) -> dict[str, float]:
    """``evaluate`` without the input checks, for parameters a backend just trained."""
    from .numpy.losses import LOSSES as NUMPY_LOSSES

    x, y = as_arrays(spec, data.x_test, data.y_test)
    p = module.predict(spec, params, model_state, x)         # (n_test, k)
    metrics = {"test_loss": float(NUMPY_LOSSES[spec.loss][0](p, y, **spec.loss_kwargs))}
    if spec.loss == "cross_entropy":                         # over the counted positions
        counted = y != IGNORE_INDEX
        metrics["test_accuracy"] = float(np.mean((p.argmax(axis=-1) == y)[counted]))
    elif spec.loss == "bce_with_logits":
        metrics["test_accuracy"] = float(np.mean((p > 0) == (y > 0.5)))
    return metrics


def as_arrays(spec: NetworkSpec, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x in spec.dtype (n, *input_shape); y in spec.dtype, or int64 class labels (n,)."""
    y = y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(spec.dtype)
    return inputs_as(spec, x), y


def predict(spec: NetworkSpec, params: Params, x: np.ndarray, backend: str = "numpy", *,
            model_state: Params | None = None) -> np.ndarray:
    """The network's output for x (batch, *input_shape) -> (batch, k), in spec.dtype,
    in eval mode; ``model_state`` defaults to the initial one."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    check_backend(backend)                       # before the parameters, however many
    params, model_state = check_network(spec, params, model_state)
    check_inputs(spec, "x", x)
    check_memory("x.shape", x.shape, predict_bytes(spec, x.shape[0]))
    module = get_backend(backend)
    return module.predict(spec, params, model_state, inputs_as(spec, x))


def activation_with_grad(name: str, x: np.ndarray, backend: str = "numpy",
                         **params: float) -> tuple[np.ndarray, np.ndarray]:
    """(f(x), f'(x)) of activation ``name`` elementwise on a float32/float64 array x.

    NumPy uses its hand-written derivative; torch and JAX use autograd. Both
    results have x's shape and dtype. ``params`` are the activation's parameters
    (e.g. ``negative_slope=0.1``); unset ones keep their defaults.
    """
    activation = Activation(name, params)
    check_float_array("x", x, None)
    check_activation_in_dtype(name, activation.kwargs, x.dtype, "params")
    return get_backend(backend).activation_with_grad(activation, plain_layout(x))


def loss_with_grad(name: str, p: np.ndarray, y: np.ndarray, backend: str = "numpy",
                   **params: float) -> tuple[np.ndarray, np.ndarray]:
    """(L(p, y), dL/dp) of loss ``name`` for outputs p (n, k) and targets y.

    NumPy uses its hand-written gradient; torch and JAX use autograd. y must suit
    the loss (float (n, k), or int (n,) labels for cross_entropy); float targets
    are converted to p's dtype.
    """
    checked = check_loss_params(name, params)
    check_float_array("p", p, 2)
    check_array("y", y)
    check_targets(name, "y", y, p.shape[1:])
    if y.shape[0] != p.shape[0]:
        fail("y.shape", y.shape, f"{p.shape[0]} rows, as many as p (shape {p.shape})")
    if y.dtype.kind == "f":
        check_float_array("y", y, 2, p.dtype)          # finite once converted to p's dtype
    check_loss_in_dtype(name, checked, p.dtype)
    y = y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(p.dtype)
    return get_backend(backend).loss_with_grad(name, {**LOSSES[name].defaults, **checked},
                                               plain_layout(p), plain_layout(y))
