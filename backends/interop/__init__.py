"""nnparity.backends.interop: an nnparity network as the users of torch.nn, Flax, Equinox
and Keras write it, with the weights in place, and back.

- ``to_torch(spec, params, model_state)`` -> ``torch.nn.Sequential`` (``torch_nn.py``);
  ``from_torch(module, input_shape, **spec_fields)`` -> (spec, params, model_state).
- ``to_flax(spec, params, model_state)`` -> a ``flax.nnx.Module`` (``flax_nnx.py``);
  ``from_flax(module, input_shape, **spec_fields)`` -> (spec, params, model_state).
- ``to_equinox(spec, params, model_state)`` -> an ``equinox.Module`` (``equinox_eqx.py``).
- ``to_keras(spec, params, model_state)`` -> a ``keras.Sequential`` (``keras_model.py``).

The layout conversions they share (Linear and convolution kernels, gate blocks,
attention's packed projections) are in ``layouts.py``, NumPy only. Each function
imports its framework when called; a missing framework is a ``MissingFrameworkError``
naming the pip extra. Importing this package imports no framework.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

from nnparity.shared.core.validation import MissingFrameworkError, fail

#: public name -> the module of this package that defines it
EXPORTS = {
    "to_torch": "torch_nn", "from_torch": "torch_nn",
    "to_flax": "flax_nnx", "from_flax": "flax_nnx",
    "to_equinox": "equinox_eqx",
    "to_keras": "keras_model",
}
#: framework (top-level module) -> the pip extra that installs it
EXTRAS = {"torch": "torch", "flax": "flax", "equinox": "equinox", "keras": "keras"}

__all__ = sorted(EXPORTS) + ["require_framework", "require_x64"]


def require_framework(framework: str, purpose: str) -> ModuleType:
    """The module ``framework`` (one of ``EXTRAS``), imported, or a
    ``MissingFrameworkError`` saying that ``purpose`` needs it and which extra installs it."""
    if importlib.util.find_spec(framework) is None:
        raise MissingFrameworkError(f"{purpose} needs {framework}, which is not installed: "
                                    f"pip install 'nnparity[{EXTRAS[framework]}]'")
    return importlib.import_module(framework)


def require_x64(dtype: str) -> None:
    """For a network about to run in JAX (Flax, Equinox): a ``ValueError`` when it is
    float64 and JAX's x64 is off, where JAX would compute it in float32 without a word
    (``jnp.asarray`` of float64 data gives float32, with at most a warning)."""
    import jax
    import jax.numpy as jnp

    if dtype == "float64" and jax.dtypes.canonicalize_dtype(jnp.float64) != "float64":
        fail("jax_enable_x64", False, "True for a float64 network: with JAX's x64 off it "
             "computes in float32 without a word (call it inside jax.enable_x64(True))")


def __getattr__(name: str) -> Any:
    """``to_torch`` and the others, each imported from its module on first use."""
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
