"""The registry: backend name -> module, each framework imported on first use."""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, cast

from nnparity.shared.core.validation import MissingFrameworkError, fail

if TYPE_CHECKING:
    from nnparity.backends.contract import Backend

#: backend name -> (top-level module it needs, pip extra that installs it)
BACKENDS = {"numpy": ("numpy", None), "torch": ("torch", "torch"), "jax": ("jax", "jax")}


def check_backend(name: str) -> str:
    """Check that ``name`` is a backend whose framework is installed, without importing
    the framework (that takes seconds): every entry point does this before any work."""
    if not isinstance(name, str) or name not in BACKENDS:
        fail("backend", name, f"one of {', '.join(map(repr, BACKENDS))}")
    framework, extra = BACKENDS[name]
    if importlib.util.find_spec(framework) is None:
        raise MissingFrameworkError(f"backend {name!r} needs {framework}, which is not "
                                    f"installed: pip install 'nnparity[{extra}]'")
    return name


def get_backend(name: str) -> Backend:
    """The backend module called ``name``, imported on first use."""
    check_backend(name)
    return cast("Backend", importlib.import_module(f"nnparity.backends.{name}"))


def available_backends() -> list[str]:
    """Names of the backends whose framework is installed."""
    return [name for name, (framework, _) in BACKENDS.items()
            if importlib.util.find_spec(framework) is not None]
