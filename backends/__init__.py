"""The three backends behind one interface, and the registry that picks one.

Each backend module (``numpy``, ``torch``, ``jax``) exposes the same functions
with the same signatures:

- ``train(spec, params, x, y, plan) -> (params, losses)``
- ``predict(spec, params, x) -> output``
- ``activation_with_grad(activation, x) -> (f(x), f'(x))``

NumPy arrays go in and come out. Inputs are validated here, once, before a
backend sees them; a framework is imported only when its backend is first used.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from nnparity.shared.activations import resolve
from nnparity.shared.data import Dataset, batch_plan, check_fits
from nnparity.shared.init import Params, check_params, init_params
from nnparity.shared.spec import NetworkSpec
from nnparity.shared.validation import MissingFrameworkError, check_float_array, check_shape, fail

__all__ = ["BACKENDS", "MissingFrameworkError", "TrainResult", "activation_with_grad",
           "available_backends", "predict", "train"]

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
    """

    params: Params
    losses: np.ndarray
    backend: str
    spec: NetworkSpec


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


def train(spec: NetworkSpec, data: Dataset, backend: str = "numpy") -> TrainResult:
    """Train ``spec`` on ``data.x_train``/``data.y_train`` with one backend.

    Every backend starts from ``init_params(spec)`` and sees the same batches.
    The data are converted to ``spec.dtype``.
    """
    check_fits(spec, data)
    module = get_backend(backend)
    x = data.x_train.astype(spec.dtype)                    # (n, sizes[0])
    y = data.y_train.astype(spec.dtype)                    # (n, sizes[-1])
    plan = batch_plan(x.shape[0], spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    params, losses = module.train(spec, init_params(spec), x, y, plan)
    return TrainResult(params=params, losses=losses, backend=backend, spec=spec)


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
