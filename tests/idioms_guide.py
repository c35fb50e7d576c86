"""Reading docs/idioms.md: its code blocks, the tests it names, its traps.

Shared by tests/test_idioms.py (the guide stays true to the code) and
tests/upstream/test_idioms_demonstrations.py (its framework demonstrations run).

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
    """Every quoted `[id]` that no test file (tests/ and below, but test_idioms.py)
    writes as a string literal."""
    tests = "".join(path.read_text() for path in sorted((root / "tests").rglob("test_*.py"))
                    if path.name != "test_idioms.py")
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


def run_demonstration(block: Block) -> None:
    """Run a framework-only block; its asserts state the facts (AssertionError if not)."""
    for framework in imported_frameworks(block):
        require(framework)
    exec(compile(block.text, f"docs/idioms.md line {block.line}", "exec"), {})  # noqa: S102
