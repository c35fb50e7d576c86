"""nnparity.backends: one network specification trained by NumPy, PyTorch or JAX.

``train(spec, data, backend="jax")``, ``predict``, ``evaluate`` and the probes
(``activation_with_grad``, ``loss_with_grad``) are in ``api.py``; the registry
(``registry.py``) imports a framework only when its backend is first used. Each
backend is a package (``numpy/``, ``torch/``, ``jax/``) with the same module
names, satisfying ``contract.Backend``.
"""
from nnparity.backends.api import (TrainResult, activation_with_grad, as_arrays, evaluate,
                                   loss_with_grad, predict, train)
from nnparity.backends.processes import ReplicaError
from nnparity.backends.registry import (BACKENDS, available_backends, check_backend,
                                        get_backend)
from nnparity.shared.core.validation import MissingFrameworkError

__all__ = ["BACKENDS", "MissingFrameworkError", "ReplicaError", "TrainResult",
           "activation_with_grad",
           "as_arrays", "available_backends", "check_backend", "evaluate", "get_backend",
           "loss_with_grad", "predict", "train"]
