"""tests/upstream: what torch, JAX, optax and NumPy themselves do.

These tests run no nnparity code: each states a fact about a framework that the
project relies on or works around (a default dtype, a gradient at a kink, a
summation order). Every test here gets the ``upstream`` marker and runs by
default. When one fails, a framework changed, not nnparity: the failure says so
("a framework changed: " and the test's docstring), and the fix is to revisit
what the project assumes (docs/idioms.md names each trap's tests), not to tune
the test until it passes. The tests showing that *our* backends avoid a trap
stay beside the code they test.

``tests/conftest.py`` applies here too (``from conftest import require``, its
fixtures).
"""
from __future__ import annotations

import pytest

PREFIX = "a framework changed: "


def pytest_itemcollected(item):
    """Every test in this directory is an upstream test."""
    item.add_marker(pytest.mark.upstream)


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A failed assertion here starts with "a framework changed: " and the fact the
    test states (the first line of its docstring); any other error (an API that is
    gone, say) gets that as a note. (The exception is changed in place; pytest then
    reports it as usual.)"""
    outcome = yield
    try:
        outcome.get_result()
    except Exception as exc:                                # noqa: BLE001 (re-raised by pytest)
        doc = (pyfuncitem.function.__doc__ or pyfuncitem.name).strip().splitlines()[0]
        message = str(exc)
        if isinstance(exc, AssertionError) and not message.startswith(PREFIX):
            exc.args = (f"{PREFIX}{doc}\n{message}",)
        elif hasattr(exc, "add_note"):                      # Python >= 3.11
            exc.add_note(f"{PREFIX}{doc}")
