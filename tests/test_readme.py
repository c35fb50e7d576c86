"""The README's Python examples run, its commands are the ones CI runs, and what it
says about the slow tests is what pyproject.toml and .ci/run do."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"


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


# ---------------------------------------------------------------- the slow tests

def test_default_run_leaves_out_the_slow_tests(request):
    """pyproject.toml: the markers are registered (--strict-markers) and the default run
    deselects the slow tests; a later -m on the command line overrides that."""
    addopts = request.config.getini("addopts")
    assert "--strict-markers" in addopts
    assert "not slow" in addopts[addopts.index("-m") + 1]
    markers = {line.split(":")[0] for line in request.config.getini("markers")}
    assert {"slow", "upstream"} <= markers


def test_readme_says_how_to_run_the_slow_tests_and_everything():
    text = README.read_text()
    assert "python -m pytest -m slow" in text
    assert 'python -m pytest -m "slow or not slow"' in text


def test_ci_runs_the_slow_tests_after_the_two_commands():
    """.ci/run: the README's two lines, then the slow tests in the same environment,
    and pytest's exit code 5 (no tests collected) is a failure."""
    script = CI_RUN.read_text()
    slow = ". .venv/bin/activate && python -m pytest -m slow"
    assert slow in script
    assert script.index('for command in "${commands[@]}"') < script.index(slow)
    assert 'bash -euo pipefail -c "$slow" || status=$?' in script
    assert script.rstrip().endswith('exit "$status"')     # 5 included: nonzero fails CI


@pytest.mark.slow
def test_slow_and_upstream_markers_select_their_tests():
    """`-m slow` selects the slow tests (among them the digits recipe, the terminal
    progress run and the digits example in a subprocess) and `-m upstream` the tests in
    tests/upstream, collected as the README's command collects them."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "-m", "slow or upstream"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, "\n".join((done.stdout + done.stderr).splitlines()[-20:])
    nodes = {line for line in done.stdout.splitlines() if "::" in line}
    for name in ("tests/test_datasets.py::test_recipe_parity_under_float64_policy",
                 "tests/test_cli_flags.py::test_real_terminal_shows_progress_for_a_long_run",
                 "tests/test_cli_flags.py::test_digits_example_prints_accuracy_in_a_subprocess",
                 "tests/upstream/test_framework_traps.py::test_trap_default_dtypes_on_creation",
                 "tests/upstream/test_activation_builtins.py"
                 "::test_breakpoint_table_is_torch_autograd"):
        assert name in nodes, name
