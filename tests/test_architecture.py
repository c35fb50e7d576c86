"""The package structure: imports go one way, and the backends keep one contract.

- ``nnparity.shared.core`` is NumPy only: it never imports ``nnparity.backends``
  nor the parts above the backends (parity, io, report, cli, bench).
- ``nnparity.backends`` imports ``nnparity.shared.core`` only.
- ``import nnparity.shared`` loads neither torch nor jax nor ``nnparity.backends``.
- The three backend packages have the same module names and satisfy
  ``nnparity.backends.contract.Backend``.
"""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from nnparity.backends.contract import Backend

ROOT = Path(__file__).resolve().parent.parent
UPPER = ("nnparity.shared.parity", "nnparity.shared.io", "nnparity.shared.report",
         "nnparity.shared.cli", "nnparity.shared.bench", "nnparity.shared.testing")


def module_name(path: Path) -> str:
    """nnparity's dotted name of a source file (``shared/core/spec.py`` ->
    ``nnparity.shared.core.spec``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["nnparity", *parts])


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module a file imports, at any depth (function-level imports too),
    relative imports resolved against ``package`` (by default the file's own)."""
    if package is None:
        package = module_name(path)
        if path.name != "__init__.py":
            package = package.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in sorted(imported_modules(path)):
            if name.startswith(forbidden):
                out.append(f"{path.relative_to(ROOT)} imports {name}")
    return out


def test_core_never_imports_the_backends_or_what_is_above_them():
    assert not violations("shared/core", ("nnparity.backends", *UPPER, "torch", "jax"))


def test_backends_import_only_the_core():
    assert not violations("backends", UPPER)


def test_negative_control_the_import_check_finds_hidden_imports(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from nnparity.backends import train\n    return train\n"
                      "def g():\n    from ..parity import harness\n    return harness\n")
    found = imported_modules(source, package="nnparity.shared.core")
    assert "nnparity.backends" in found
    assert "nnparity.shared.parity.harness" in found


def loaded_after(statement: str) -> list[str]:
    """The nnparity, torch, jax, flax, equinox and keras modules loaded by ``statement``
    in a fresh interpreter."""
    code = (f"import sys\n{statement}\n"
            "print('\\n'.join(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'jax', 'flax', 'equinox', 'keras', 'nnparity')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT / "tests")
    return out.stdout.split()


@pytest.mark.parametrize("statement", [
    "import nnparity.shared",
    "from nnparity.shared import NetworkSpec, Dense, Activation, to_flat, init_params",
    "import nnparity.shared.core.spec",
])
def test_importing_the_shared_package_loads_no_framework_and_no_backend(statement):
    loaded = loaded_after(statement)
    assert "nnparity.shared" in loaded or "nnparity.shared.core.spec" in loaded
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "jax")
             or m.startswith(("nnparity.backends", *UPPER))]
    assert heavy == []


def test_negative_control_the_upper_names_load_the_harness_on_first_use():
    loaded = loaded_after("from nnparity.shared import compare")
    assert "nnparity.shared.parity.harness" in loaded
    assert "nnparity.backends" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "jax")]


def test_importing_the_backends_package_loads_no_framework():
    loaded = loaded_after("from nnparity.backends import train, predict, get_backend")
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "jax")]


FRAMEWORKS = ("torch", "jax", "flax", "equinox", "keras")


@pytest.mark.parametrize("statement", [
    "import nnparity.backends.interop",
    "from nnparity.backends.interop import layouts",
    "from nnparity.backends.interop import to_torch, from_torch, to_flax, from_flax, "
    "to_equinox, to_keras",
    "from nnparity.shared.testing import assert_close, assert_same_step, "
    "assert_same_trajectory",
])
def test_the_interop_and_testing_packages_load_no_framework_until_called(statement):
    assert not [m for m in loaded_after(statement) if m.split(".")[0] in FRAMEWORKS]


def test_negative_control_calling_an_export_loads_its_framework():
    loaded = loaded_after("from nnparity.backends.interop import to_torch\n"
                          "from nnparity.shared import notebook_spec, init_params\n"
                          "to_torch(notebook_spec(), init_params(notebook_spec()))")
    assert "torch" in loaded


BACKENDS = ("numpy", "torch", "jax")


def test_backend_packages_have_the_same_modules():
    def modules(backend):
        folder = ROOT / "backends" / backend
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.py"))
    assert modules("numpy") == modules("torch") == modules("jax")
    assert "layers/dense.py" in modules("numpy")


def test_every_layer_kind_has_a_module_in_every_backend():
    from nnparity.shared.core.layers import LAYERS
    for backend in BACKENDS:
        module = pytest.importorskip(f"nnparity.backends.{backend}.layers")
        assert set(module.LAYERS) == set(LAYERS), backend
        for kind, layer_module in module.LAYERS.items():
            assert layer_module.__name__ == f"nnparity.backends.{backend}.layers.{kind}"
            assert callable(layer_module.forward)
    from nnparity.backends.numpy.layers import LAYERS as NUMPY_LAYERS
    for kind, layer_module in NUMPY_LAYERS.items():       # the derivative beside the op
        assert callable(layer_module.backward), kind


def protocol_members() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(Backend, name)) for name in
            ("train", "step", "predict", "activation_with_grad", "loss_with_grad")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_satisfies_the_contract(backend):
    module = pytest.importorskip(f"nnparity.backends.{backend}")
    for name, expected in protocol_members().items():
        function = getattr(module, name)
        parameters = list(expected.parameters)[1:]             # without self
        assert list(inspect.signature(function).parameters) == parameters, (backend, name)


def test_negative_control_a_missing_parameter_breaks_the_contract():
    def train(spec, params, opt_state, x, y, plan, record_every=None):
        raise AssertionError("not called")
    expected = list(protocol_members()["train"].parameters)[1:]
    assert list(inspect.signature(train).parameters) != expected


def test_training_loops_never_name_a_layer_kind():
    from nnparity.shared.core.layers import LAYERS
    for backend in BACKENDS:
        for name in ("network.py", "train.py"):
            text = (ROOT / "backends" / backend / name).read_text()
            for kind in LAYERS:
                assert f'"{kind}"' not in text and f"'{kind}'" not in text, (backend, name, kind)
