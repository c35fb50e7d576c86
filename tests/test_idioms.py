"""docs/idioms.md stays true to the code.

The rules are in ``idioms_guide`` (tests/idioms_guide.py), which reads the guide.
The guide's framework demonstrations run in
tests/upstream/test_idioms_demonstrations.py (they state what the frameworks do).
"""
from __future__ import annotations

import re
import textwrap

import pytest
from idioms_guide import (BLOCKS, CASE_ID, DEMO_BLOCKS, GUIDE_TEXT, SOURCE_BLOCKS, TEST_REF,
                          appears_in, missing_case_ids, missing_tests, parse_blocks,
                          rule_violations, run_demonstration, source_path, stale_snippets,
                          traps_without_tests)


# ---------------------------------------------------------------- the guide

def test_guide_shows_every_backend():
    sources = {b.source for b in SOURCE_BLOCKS}
    for backend in ("numpy", "torch", "jax"):
        assert any(s.startswith(f"backends/{backend}/layers/") or s.startswith(
            f"backends/{backend}/network.py") for s in sources), backend
        assert any(s.startswith(f"backends/{backend}/") and s.endswith("optimizers.py")
                   for s in sources), backend
    for section in ("## Forward pass", "## Backward pass", "## The SGD update",
                    "## An optimizer with state", "## The training loop", "## Traps"):
        assert section in GUIDE_TEXT, section


@pytest.mark.parametrize("block", SOURCE_BLOCKS, ids=lambda b: b.id)
def test_snippet_is_in_its_source(block):
    path = source_path(block)
    assert path is not None, f"{block.source} is not a file in the repository"
    assert appears_in(block.text, path.read_text()), (
        f"docs/idioms.md line {block.line}: this excerpt is no longer in {block.source}; "
        f"copy the current code into the guide:\n{block.text}")


def test_every_code_block_follows_the_rule():
    problems = [p for block in BLOCKS for p in rule_violations(block)]
    assert not problems, "\n".join(problems)
    assert DEMO_BLOCKS, "the guide has framework demonstrations"


def test_every_named_test_exists():
    assert len(TEST_REF.findall(GUIDE_TEXT)) >= 11
    assert not missing_tests(GUIDE_TEXT), missing_tests(GUIDE_TEXT)


def test_every_quoted_case_id_exists():
    assert CASE_ID.findall(GUIDE_TEXT)
    assert not missing_case_ids(GUIDE_TEXT), missing_case_ids(GUIDE_TEXT)


def test_every_trap_names_a_test():
    headings = re.findall(r"^### (.*)$", GUIDE_TEXT.split("\n## Traps\n", 1)[1], flags=re.MULTILINE)
    assert len(headings) >= 11, headings
    assert not traps_without_tests(GUIDE_TEXT), traps_without_tests(GUIDE_TEXT)


# ---------------------------------------------------------------- negative controls

def _changed(text: str) -> str:
    """The text with one character of its last non-blank line changed."""
    lines = text.split("\n")
    k = max(i for i, line in enumerate(lines) if line.strip())
    j = len(lines[k]) - len(lines[k].lstrip())              # first non-blank character
    lines[k] = lines[k][:j] + ("X" if lines[k][j] != "X" else "Y") + lines[k][j + 1:]
    return "\n".join(lines)


@pytest.mark.parametrize("block", SOURCE_BLOCKS, ids=lambda b: b.id)
def test_negative_control_modified_snippet_is_missing(block):
    source = source_path(block).read_text()
    assert not appears_in(_changed(block.text), source)
    assert appears_in(textwrap.indent(block.text, "        "), source)   # indentation is free
    lines = block.text.split("\n")
    if len(lines) >= 3:                                      # a gap is not contiguous
        assert not appears_in("\n".join(lines[:1] + lines[2:]), source)


def test_negative_control_stale_snippet_in_the_guide_is_reported():
    block = SOURCE_BLOCKS[0]
    fence = f"<!-- source: {block.source} -->\n```python\n{block.text}\n```"
    assert fence in GUIDE_TEXT
    broken = GUIDE_TEXT.replace(fence, fence.replace(block.text, _changed(block.text)))
    assert stale_snippets(broken) == [f"line {block.line}: {block.source}"]
    assert stale_snippets(GUIDE_TEXT) == []


def test_negative_control_snippet_against_another_file_is_missing():
    numpy_forward = next(b for b in SOURCE_BLOCKS if b.source == "backends/numpy/network.py")
    retagged = f"<!-- source: backends/torch/network.py -->\n```python\n{numpy_forward.text}\n```\n"
    assert stale_snippets(retagged) == ["line 2: backends/torch/network.py"]
    nowhere = "<!-- source: backends/no_such.py -->\n```python\nx = 1\n```\n"
    assert stale_snippets(nowhere) == ["line 2: backends/no_such.py"]
    outside = "<!-- source: ../shared/GUIDE.md -->\n```python\nx = 1\n```\n"
    assert stale_snippets(outside) == ["line 2: ../shared/GUIDE.md"]


@pytest.mark.parametrize("text, reason", [
    ("```python\nfrom nnparity.backends import train\nassert train\n```", "imports project code"),
    ("```python\nimport nnparity\nassert nnparity\n```", "imports nnparity"),
    ("```python\nfrom .numpy import forward\nassert forward\n```", "imports project code"),
    ("```python\nh = h @ w.T + b  # backends/numpy.py\nassert h is not None\n```",
     "mentions project code"),
    ("```python\nimport numpy as np\nx = np.zeros(2)\n```", "no assert"),
    ("```sh\nnnparity compare\n```", "must be python"),
    ("```python\nassert (\n```", "does not parse"),
])
def test_negative_control_untagged_block_breaking_the_rule(text, reason):
    (block,) = parse_blocks(text)
    assert any(reason in p for p in rule_violations(block)), rule_violations(block)


def test_negative_control_false_demonstration_fails():
    (block,) = parse_blocks("```python\nassert (0.1 + 0.2) + 0.3 == 0.6\n```")
    assert not rule_violations(block)
    with pytest.raises(AssertionError):
        run_demonstration(block)


def test_negative_control_malformed_markdown():
    with pytest.raises(ValueError, match="followed by a code block"):
        parse_blocks("<!-- source: backends/numpy.py -->\n\n```python\nx\n```")
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```python\nx = 1\n")
    inline = "a block tagged `<!-- source: PATH -->` is an excerpt"
    assert parse_blocks(inline) == []                        # a mention in prose is no tag


def test_negative_control_unknown_tests_are_reported():
    text = ("`tests/upstream/test_framework_traps.py::test_trap_weight_layout_is_out_in` "
            "`tests/test_traps.py::test_no_such_trap` `tests/test_nothing.py::test_x`")
    assert missing_tests(text) == ["tests/test_traps.py::test_no_such_trap",
                                   "tests/test_nothing.py::test_x (no such file)"]
    assert missing_case_ids("`[rmsprop-eps_in_sqrt]` `[rmsprop-eps_outside]`") == \
        ["rmsprop-eps_outside"]
    traps = ("## Traps\n\n### named\n\n`tests/test_traps.py::test_backends_agree_within_the_policy`"
             "\n\n### unnamed\n\nno test here\n\n## After\n")
    assert traps_without_tests("\n" + traps) == ["unnamed"]
