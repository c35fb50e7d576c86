"""The multi-host recipes of docs/data-parallel.md, checked on one machine by
``tools/multi_host.py``: two ``torchrun`` nodes with a static rendezvous, and
two JAX processes joined by ``jax.distributed.initialize``; each must equal the
single-device run under the float64 policy. Slow: each starts several Python
processes that import a framework."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require

TOOL = Path(__file__).resolve().parent.parent / "tools" / "multi_host.py"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_two_processes_the_multi_host_way_equal_one_device(backend):
    require(backend)
    require("sklearn")                              # the digits data
    done = subprocess.run([sys.executable, str(TOOL), backend, "--timeout", "240"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "equal one device under the float64 policy" in done.stdout


def test_the_tool_fails_when_the_runs_differ():
    """The tool's check is the policy's: a 1e-9 relative change fails it."""
    import numpy as np

    sys.path.insert(0, str(TOOL.parent))
    try:
        import multi_host
    finally:
        sys.path.remove(str(TOOL.parent))
    expected = {"0.weight": np.linspace(1.0, 2.0, 6).reshape(2, 3)}
    assert multi_host.check({"0.weight": expected["0.weight"].copy()}, expected) == 0.0
    with pytest.raises(AssertionError):
        multi_host.check({"0.weight": expected["0.weight"] * (1 + 1e-9)}, expected)
