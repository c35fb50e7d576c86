"""docs/idioms.md's framework demonstrations run: every untagged code block states
facts about torch, JAX or NumPy as asserts (tests/test_idioms.py checks that they
touch no nnparity code)."""
from __future__ import annotations

import pytest
from idioms_guide import DEMO_BLOCKS, run_demonstration


@pytest.mark.parametrize("block", DEMO_BLOCKS, ids=lambda b: b.id)
def test_demonstration_runs(block):
    """What docs/idioms.md demonstrates about a framework still holds."""
    run_demonstration(block)
