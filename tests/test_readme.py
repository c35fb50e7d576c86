"""The README's Python examples run, and its commands are the ones CI runs."""
import re
from pathlib import Path

import pytest

from conftest import require

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert python_blocks()


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(index):
    require("torch")
    require("jax")
    exec(compile(python_blocks()[index], f"README.md block {index}", "exec"), {})


def test_readme_lists_the_two_commands_ci_runs():
    text = README.read_text()
    block = text.split("<!-- commands -->")[1].split("<!-- /commands -->")[0]
    commands = [line for line in block.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert "nnparity compare" in commands[0] and "pytest" in commands[1]
    assert all("-c constraints.txt" in c for c in commands)
