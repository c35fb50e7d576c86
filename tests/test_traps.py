"""The backends avoid the framework traps that make ports disagree.

tests/upstream/test_framework_traps.py demonstrates each trap on the frameworks
themselves; docs/idioms.md links every trap to its tests. The traps covered
elsewhere (breakpoints, softplus, GELU, optimizer conventions, recompilation for
a new structure) are tested in test_activations.py, test_activation_parity.py,
test_optimizers.py and test_recompile.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from nnparity.backends import predict, train
from nnparity.shared import POLICY, notebook_data, notebook_spec
from nnparity.shared.core.tolerance import difference
from nnparity.shared.core.tree import leaves

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- default dtypes

@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backends_keep_the_spec_dtype(backend, dtype):
    """The backends create nothing from Python floats: every result is in spec.dtype."""
    require(backend)
    spec, data = notebook_spec().replace(epochs=3, dtype=dtype), notebook_data()
    result = train(spec, data, backend=backend)
    assert {a.dtype for a in leaves(result.params)} == {np.dtype(dtype)}
    assert result.losses.dtype == np.dtype(dtype)
    assert predict(spec, result.params, data.x_test, backend=backend).dtype == np.dtype(dtype)


# ---------------------------------------------------------------- JAX float64 and its scope

def test_jax_backend_converts_to_numpy_inside_its_scope():
    """The JAX backend returns NumPy arrays made inside its enable_x64 block, and leaves
    the global flag as it was."""
    jax = require("jax")
    spec, data = notebook_spec().replace(epochs=3), notebook_data()
    result = train(spec, data, backend="jax")
    assert jax.config.read("jax_enable_x64") is False
    assert len(leaves(result.params)) == 4
    for a in leaves(result.params):
        assert type(a) is np.ndarray and a.dtype == np.float64
    reference = train(spec, data, backend="numpy")
    for a, e in zip(leaves(result.params), leaves(reference.params), strict=True):
        assert difference(a, e, POLICY["float64"]).ok


def test_backends_agree_within_the_policy():
    """The notebook's 2000 SGD steps: torch and JAX end within the float64 policy of
    NumPy, and their differences are rounding: within 100 float64 ulps (measured
    largest relative differences over all parameters: torch 4.8e-15 in 0.bias, JAX
    2.8e-15 in 2.bias). Bitwise equality would pass too: a backend may become more
    exact."""
    require("torch")
    require("jax")
    spec, data = notebook_spec(), notebook_data()
    reference = train(spec, data, backend="numpy").params
    for backend in ("torch", "jax"):
        params = train(spec, data, backend=backend).params
        for a, e in zip(leaves(params), leaves(reference), strict=True):
            d = difference(a, e, POLICY["float64"])
            assert d.ok and d.max_rel < 100 * np.finfo(np.float64).eps, (backend, d)


# ---------------------------------------------------------------- clearing gradients

def test_torch_backend_clears_gradients_between_steps():
    """loss.backward() adds into .grad (tests/upstream); the torch backend zeroes the
    gradients after every update, so two epochs match NumPy's under the policy."""
    require("torch")
    spec, data = notebook_spec().replace(epochs=2), notebook_data()
    torch_params = train(spec, data, backend="torch").params
    numpy_params = train(spec, data, backend="numpy").params
    for a, e in zip(leaves(torch_params), leaves(numpy_params), strict=True):
        assert difference(a, e, POLICY["float64"]).ok


def test_negative_control_torch_without_zeroing_fails_parity(monkeypatch):
    """With zero_() made a no-op, the torch backend accumulates gradients and the
    parity check above fails."""
    torch = require("torch")
    spec, data = notebook_spec().replace(epochs=2), notebook_data()
    numpy_params = train(spec, data, backend="numpy").params
    monkeypatch.setattr(torch.Tensor, "zero_", lambda self: self)
    torch_params = train(spec, data, backend="torch").params
    assert not all(difference(a, e, POLICY["float64"]).ok
                   for a, e in zip(leaves(torch_params), leaves(numpy_params), strict=True))
