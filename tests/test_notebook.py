"""docs/notebook.ipynb: the seed notebook, then the same network in three backends.

- The stored notebook is exactly what tools/make_notebook.py writes (``--check``):
  valid nbformat 4, no outputs, no execution counts. A drifted copy fails the
  same check.
- nbclient finds the "python3" kernel of this environment (ipykernel ships its
  kernelspec in the venv's share/jupyter): it starts this Python, and the same
  lookup reports another Python when a kernelspec names one.
- Executed with nbclient in a temporary working directory (slow):
  - Part 1, the seed's own code, prints the seed's numbers: the expectations of
    tests/test_golden.py, copied there from the seed notebook's output cells,
    compared the way it compares them (the printed parameters and prediction as
    strings, the error within its rtol). The NumPy backend printed in the seed's
    format gives the same lines. The seed's code with a learning rate 1e-4
    larger fails the same check (a second, shorter execution).
  - The three backends' parameters, predictions and test errors, read in full
    precision from the notebook's last cell, agree under ``POLICY[spec.dtype]``,
    and the parity report's verdict is PARITY OK; one torch weight moved by
    1e-6 fails the same check.
  - The activation figure is shown inline, nothing is written in the working
    directory, and no cell writes to stderr.
"""
from __future__ import annotations

import base64
import copy
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import require
from nnparity.shared import flat_names, notebook_spec
from nnparity.shared.core.tolerance import POLICY, tensorwise_difference
import seed_notebook as golden                  # the seed's printed numbers

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
TOOL = ROOT / "tools" / "make_notebook.py"
#: seconds a cell may run before nbclient stops it (compare() takes the longest)
CELL_TIMEOUT = 600
#: the seed's parameter lines and prediction line, as the seed printed them
SEED_PARAMETERS = "".join(f"{name}: {text}\n" for name, text in golden.NOTEBOOK_PRINTED.items())
SEED_PREDICTION = f"predictions: [[{golden.NOTEBOOK_PREDICTION}]]\n"
SEED_LEARNING_RATE = "LEARNING_RATE = 0.00001"


def read_notebook():
    nbformat = require("nbformat")
    return nbformat.read(NOTEBOOK, as_version=4)


def execute(nb, folder: Path) -> float:
    """Run ``nb`` in place with the "python3" kernel, ``folder`` as its working
    directory; the seconds it took. A cell that raises fails the test."""
    for name in ("nbclient", "ipykernel", "torch", "jax", "matplotlib"):
        require(name)
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    # one OpenMP thread, for speed only: torch's default pool is many times slower
    # when another process keeps a core busy (see conftest.one_torch_thread)
    client.execute(env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def stdout(nb) -> dict[str, str]:
    """Each code cell's printed text, by cell id."""
    return {cell.id: "".join(out.text for out in cell.outputs
                             if out.output_type == "stream" and out.name == "stdout")
            for cell in nb.cells if cell.cell_type == "code"}


def seed_problems(printed: dict[str, str]) -> list[str]:
    """How Part 1's printed results differ from the seed's ([] when they match)."""
    problems = []
    if printed["seed-loop"] != SEED_PARAMETERS:
        problems.append(f"parameters printed {printed['seed-loop']!r}, "
                        f"the seed {SEED_PARAMETERS!r}")
    if printed["seed-predict"] != SEED_PREDICTION:
        problems.append(f"prediction printed {printed['seed-predict']!r}, "
                        f"the seed {SEED_PREDICTION!r}")
    match = re.fullmatch(r"error: (\S+)\n", printed["seed-error"])
    if match is None:
        problems.append(f"no error line: {printed['seed-error']!r}")
    elif not math.isclose(float(match[1]), golden.NOTEBOOK_ERROR,
                          rel_tol=golden.ERROR_RTOL, abs_tol=0.0):
        problems.append(f"error {match[1]}, the seed {golden.NOTEBOOK_ERROR!r} "
                        f"(rtol {golden.ERROR_RTOL:g})")
    return problems


def check_numbers(printed: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """The last cell's JSON: backend -> quantity -> float64 array (full precision)."""
    prefix = "check: "
    text = printed["check"]
    assert text.startswith(prefix) and text.endswith("\n") and text.count("\n") == 1, text
    return {backend: {quantity: np.asarray(value, dtype=np.float64)
                      for quantity, value in column.items()}
            for backend, column in json.loads(text[len(prefix):]).items()}


def disagreements(numbers: dict[str, dict[str, np.ndarray]]) -> dict[str, str]:
    """torch and jax against numpy, every quantity normwise under the spec's policy:
    backend -> the worst element, for each backend out of tolerance."""
    tol = POLICY[notebook_spec().dtype]
    out = {}
    for backend in ("torch", "jax"):
        d = tensorwise_difference(numbers[backend], numbers["numpy"], tol)
        if not d.ok:
            out[backend] = str(d.worst)
    return out


# ---------------------------------------------------------------- the stored file

def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=60)


def test_stored_notebook_is_what_the_script_writes():
    done = run_tool("--check")
    assert done.returncode == 0, done.stderr


def test_negative_control_a_drifted_notebook_fails_the_check(tmp_path):
    text = NOTEBOOK.read_text(encoding="utf-8")
    drifted = text.replace('"execution_count": null', '"execution_count": 1', 1)
    assert drifted != text
    path = tmp_path / "notebook.ipynb"
    path.write_text(drifted, encoding="utf-8")
    done = run_tool("--check", str(path))
    assert done.returncode == 1
    assert str(path) in done.stderr and "make_notebook.py" in done.stderr
    path.write_text(text, encoding="utf-8")              # the same file unchanged passes
    assert run_tool("--check", str(path)).returncode == 0


def test_stored_notebook_is_valid_and_holds_no_outputs():
    nbformat = require("nbformat")
    nb = read_notebook()
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert nb.metadata.kernelspec.name == "python3"


def kernel_command(kernel_dirs: list[str] | None = None) -> tuple[list[str], str]:
    """(the command nbclient would start for the "python3" kernel, its kernelspec's
    folder), looked up as jupyter_client does (in ``kernel_dirs`` when given)."""
    require("ipykernel")
    require("jupyter_client")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    specs = KernelSpecManager() if kernel_dirs is None else KernelSpecManager(
        kernel_dirs=kernel_dirs)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    return km.format_kernel_cmd(), km.kernel_spec.resource_dir


def test_the_python3_kernel_runs_this_python():
    """No ``ipykernel install`` needed: jupyter_client finds the kernelspec that the
    ipykernel wheel puts in this environment (or ipykernel's own when there is none)
    and starts ``sys.executable`` with it."""
    command, folder = kernel_command()
    assert command[0] == sys.executable, (
        f"the 'python3' kernel would run {command[0]} (kernelspec in {folder}), "
        f"not this Python {sys.executable}")


def test_negative_control_another_pythons_kernelspec_is_seen(tmp_path):
    other = "/opt/another/bin/python3"
    (tmp_path / "python3").mkdir()
    (tmp_path / "python3" / "kernel.json").write_text(json.dumps(
        {"argv": [other, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "another Python", "language": "python"}))
    command, folder = kernel_command([str(tmp_path)])
    assert (command[0], folder) == (other, str(tmp_path / "python3"))


# ---------------------------------------------------------------- executed

@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(the executed notebook, its printed text by cell id, its working directory)."""
    folder = tmp_path_factory.mktemp("notebook_cwd")
    nb = read_notebook()
    seconds = execute(nb, folder)
    print(f"docs/notebook.ipynb executed in {seconds:.1f} s")
    return nb, stdout(nb), folder


@pytest.mark.slow
def test_seed_cells_print_the_seed_numbers(executed):
    _, printed, _ = executed
    assert seed_problems(printed) == []


@pytest.mark.slow
def test_numpy_backend_prints_the_seed_numbers(executed):
    _, printed, _ = executed
    assert printed["spec"] == "same data: True\nsame initial parameters: True\n"
    assert printed["seed-format"] == SEED_PARAMETERS + SEED_PREDICTION


@pytest.mark.slow
def test_negative_control_another_learning_rate_fails_the_seed_check(tmp_path):
    """Part 1 alone, with the learning rate 1e-4 larger (as test_golden's control)."""
    nb = read_notebook()
    last = next(i for i, cell in enumerate(nb.cells) if cell.id == "seed-error")
    nb.cells = nb.cells[:last + 1]
    (cell,) = [cell for cell in nb.cells if SEED_LEARNING_RATE in cell.source]
    cell.source = cell.source.replace(SEED_LEARNING_RATE, "LEARNING_RATE = 0.000010001")
    execute(nb, tmp_path)
    problems = seed_problems(stdout(nb))
    assert len(problems) == 3, problems          # parameters, prediction and error all differ


@pytest.mark.slow
def test_backends_agree_under_the_policy(executed):
    _, printed, _ = executed
    numbers = check_numbers(printed)
    names = flat_names(notebook_spec().param_shapes)
    assert list(numbers) == ["numpy", "torch", "jax"]
    assert all(list(column) == names + ["predictions", "error"] for column in numbers.values())
    assert all(np.isfinite(v).all() for column in numbers.values() for v in column.values())
    assert disagreements(numbers) == {}
    assert printed["compare"].splitlines()[-1] == "verdict: PARITY OK"


@pytest.mark.slow
def test_negative_control_a_moved_torch_weight_fails_the_policy(executed):
    """The same check on the notebook's numbers with torch's 0.weight[0, 0] moved by
    1e-6 (as conftest.perturb_torch does to a run)."""
    _, printed, _ = executed
    numbers = copy.deepcopy(check_numbers(printed))
    numbers["torch"]["0.weight"][0, 0] += 1e-6
    assert list(disagreements(numbers)) == ["torch"]


@pytest.mark.slow
def test_plot_is_shown_inline_and_nothing_is_written(executed):
    nb, _, folder = executed
    (plot,) = [cell for cell in nb.cells if cell.id == "plot"]
    images = [out.data["image/png"] for out in plot.outputs if out.output_type == "display_data"
              and "image/png" in out.data]
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert list(folder.iterdir()) == []
    stderr = {cell.id: out.text for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "stream" and out.name == "stderr"}
    assert stderr == {}
