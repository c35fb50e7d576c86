"""Shared test helpers.

``require(framework)`` is the one place that decides what happens when a
test needs torch or jax and the framework is not installed:

- normally the test is skipped (``pytest.importorskip``);
- when the environment variable ``CI`` is set to a non-empty value, a missing
  framework is an error: the test fails, so CI cannot pass by skipping.

Use it as a plain function (``from conftest import require``) or through the
``require`` fixture. Thread counts are left alone on purpose: no test here
depends on them (parity is judged with the tolerance policy, not bitwise).
"""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

import pytest

#: framework name -> module that has to import
FRAMEWORKS = {"numpy": "numpy", "torch": "torch", "jax": "jax"}


def ci_strict() -> bool:
    """True when missing frameworks must fail instead of skip (``CI`` is set)."""
    return bool(os.environ.get("CI"))


def require(framework: str) -> ModuleType:
    """Import ``framework`` for a test; skip when it is missing, or fail under CI."""
    module_name = FRAMEWORKS.get(framework, framework)
    if ci_strict():
        try:
            return importlib.import_module(module_name)
        except ImportError as exc:
            pytest.fail(f"CI is set, so {module_name!r} must be installed for this test; "
                        f"importing it failed: {exc!r}", pytrace=False)
    return pytest.importorskip(module_name)


@pytest.fixture(name="require")
def require_fixture():
    """The ``require`` function as a fixture."""
    return require


# With --import-mode=importlib this file is not importable as ``conftest`` by
# default; register it so test modules can write ``from conftest import require``.
sys.modules.setdefault("conftest", sys.modules[__name__])
