"""docs/idioms.md stays true to the code.

The rule for code blocks in the guide:

- a block on the line after ``<!-- source: PATH -->`` is an excerpt of the file
  PATH (relative to the repository root). After dedenting, and with trailing
  whitespace stripped, its lines must appear in that file as one contiguous
  run, with the same relative indentation;
- every other block is a framework-only demonstration. It must be Python, must
  not import nnparity, and must state its facts as ``assert`` statements; the
  test runs it.

Every test the guide names as ``tests/FILE.py::test_name`` must be defined at
the top level of that file, every trap (a ``###`` section under ``## Traps``)
must name at least one, and every parametrized case it quotes as `` `[id]` ``
must be an id written in the tests.
"""
from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "idioms.md"

TAG = re.compile(r"<!--\s*source:\s*(\S+)\s*-->")
FENCE = re.compile(r"```(\w*)")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
CASE_ID = re.compile(r"`\[([\w.,-]+)\]`")
FRAMEWORKS = ("torch", "jax", "optax")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its opening fence's line (1-based), language, the
    file its source tag names (None when untagged), and its text."""

    line: int
    lang: str
    source: str | None
    text: str

    @property
    def id(self) -> str:
        return f"{self.source or 'demo'}:{self.line}"


def parse_blocks(markdown: str) -> list[Block]:
    """The fenced blocks of ``markdown``. Raises ValueError for an unclosed fence
    or a source tag that is not directly followed by a fence."""
    lines = markdown.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.fullmatch(lines[i].rstrip())
        if opening is None:
            if TAG.fullmatch(lines[i].strip()) and not (
                    i + 1 < len(lines) and FENCE.fullmatch(lines[i + 1].rstrip())):
                raise ValueError(f"line {i + 1}: a source tag must be followed by a code block")
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"line {i + 1}: code block never closed")
        tag = TAG.fullmatch(lines[i - 1].strip()) if i > 0 else None
        blocks.append(Block(i + 1, opening.group(1), tag.group(1) if tag else None,
                            "\n".join(lines[i + 1:end])))
        i = end + 1
    return blocks


def _normalized(lines: list[str]) -> list[str]:
    """Dedented, trailing whitespace stripped, without leading or trailing blank lines."""
    out = [line.rstrip() for line in textwrap.dedent("\n".join(lines)).split("\n")]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def appears_in(snippet: str, source: str) -> bool:
    """True when the snippet's lines are a contiguous run of ``source``'s lines,
    compared after dedenting both and stripping trailing whitespace."""
    want = _normalized(snippet.split("\n"))
    if not want:
        return False
    lines = source.split("\n")
    for start in range(len(lines) - len(want) + 1):
        if lines[start].strip() == want[0].strip() and \
                _normalized(lines[start:start + len(want)]) == want:
            return True
    return False


def source_path(block: Block, root: Path = ROOT) -> Path | None:
    """The tagged file, if it is a file inside the repository."""
    path = (root / block.source).resolve()
    return path if path.is_file() and path.is_relative_to(root) else None


def stale_snippets(markdown: str, root: Path = ROOT) -> list[str]:
    """Every tagged block whose text is not in its source file, as 'line N: PATH'."""
    stale = []
    for block in parse_blocks(markdown):
        if block.source is None:
            continue
        path = source_path(block, root)
        if path is None or not appears_in(block.text, path.read_text()):
            stale.append(f"line {block.line}: {block.source}")
    return stale


def rule_violations(block: Block) -> list[str]:
    """Why an untagged block is not a framework-only demonstration (empty if it is)."""
    if block.source is not None:
        return []
    if block.lang != "python":
        return [f"line {block.line}: an untagged block must be python, not {block.lang!r}"]
    try:
        tree = ast.parse(block.text)
    except SyntaxError as exc:
        return [f"line {block.line}: does not parse: {exc}"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or "nnparity" in (node.module or "")):
            problems.append(f"line {block.line}: imports project code ({node.module!r})")
        if isinstance(node, ast.Import) and any("nnparity" in a.name for a in node.names):
            problems.append(f"line {block.line}: imports nnparity")
    if "nnparity" in block.text or "backends" in block.text:
        problems.append(f"line {block.line}: mentions project code but has no source tag")
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        problems.append(f"line {block.line}: states no fact (no assert)")
    return problems


def imported_frameworks(block: Block) -> list[str]:
    names = set()
    for node in ast.walk(ast.parse(block.text)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return sorted(names & set(FRAMEWORKS))


def defined_functions(path: Path) -> set[str]:
    """Names of the top-level functions defined in a test file."""
    return {node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def missing_tests(markdown: str, root: Path = ROOT) -> list[str]:
    """Every ``tests/FILE.py::name`` in the text that is not a top-level function there."""
    missing = []
    for file, name in TEST_REF.findall(markdown):
        path = root / file
        if not path.is_file():
            missing.append(f"{file}::{name} (no such file)")
        elif name not in defined_functions(path):
            missing.append(f"{file}::{name}")
    return missing


def missing_case_ids(markdown: str, root: Path = ROOT) -> list[str]:
    """Every quoted `[id]` that no other test file writes as a string literal."""
    tests = "".join(path.read_text() for path in sorted((root / "tests").glob("test_*.py"))
                    if path.name != Path(__file__).name)
    return [case for case in CASE_ID.findall(markdown)
            if f'"{case}"' not in tests and f"'{case}'" not in tests]


def traps_without_tests(markdown: str) -> list[str]:
    """Headings of the ``###`` sections under ``## Traps`` that name no test."""
    traps = markdown.split("\n## Traps\n", 1)[1].split("\n## ", 1)[0] if \
        "\n## Traps\n" in markdown else ""
    sections = re.split(r"^### ", traps, flags=re.MULTILINE)[1:]
    return [section.split("\n", 1)[0] for section in sections if not TEST_REF.search(section)]


GUIDE_TEXT = GUIDE.read_text()
BLOCKS = parse_blocks(GUIDE_TEXT)
SOURCE_BLOCKS = [b for b in BLOCKS if b.source is not None]
DEMO_BLOCKS = [b for b in BLOCKS if b.source is None]


# ---------------------------------------------------------------- the guide

def test_guide_shows_every_backend():
    sources = {b.source for b in SOURCE_BLOCKS}
    for backend in ("numpy", "torch", "jax"):
        assert f"backends/{backend}.py" in sources, backend
        assert any(s.startswith(f"backends/{backend}_") for s in sources), backend
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


@pytest.mark.parametrize("block", DEMO_BLOCKS, ids=lambda b: b.id)
def test_demonstration_runs(block):
    for framework in imported_frameworks(block):
        require(framework)
    exec(compile(block.text, f"docs/idioms.md line {block.line}", "exec"), {})  # noqa: S102


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
    numpy_forward = next(b for b in SOURCE_BLOCKS if b.source == "backends/numpy.py")
    retagged = f"<!-- source: backends/torch.py -->\n```python\n{numpy_forward.text}\n```\n"
    assert stale_snippets(retagged) == ["line 2: backends/torch.py"]
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
        test_demonstration_runs(block)


def test_negative_control_malformed_markdown():
    with pytest.raises(ValueError, match="followed by a code block"):
        parse_blocks("<!-- source: backends/numpy.py -->\n\n```python\nx\n```")
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```python\nx = 1\n")
    inline = "a block tagged `<!-- source: PATH -->` is an excerpt"
    assert parse_blocks(inline) == []                        # a mention in prose is no tag


def test_negative_control_unknown_tests_are_reported():
    text = ("`tests/test_traps.py::test_trap_weight_layout_is_out_in` "
            "`tests/test_traps.py::test_no_such_trap` `tests/test_nothing.py::test_x`")
    assert missing_tests(text) == ["tests/test_traps.py::test_no_such_trap",
                                   "tests/test_nothing.py::test_x (no such file)"]
    assert missing_case_ids("`[rmsprop-eps_in_sqrt]` `[rmsprop-eps_outside]`") == \
        ["rmsprop-eps_outside"]
    traps = ("## Traps\n\n### named\n\n`tests/test_traps.py::test_trap_weight_layout_is_out_in`"
             "\n\n### unnamed\n\nno test here\n\n## After\n")
    assert traps_without_tests("\n" + traps) == ["unnamed"]
