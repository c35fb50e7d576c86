"""Framework traps that make ports disagree, demonstrated on the frameworks
themselves, and where it applies, that the backends avoid them.

docs/idioms.md links each trap to the test that demonstrates it; the traps
already covered elsewhere (breakpoints, softplus, GELU, optimizer conventions,
recompilation for a new structure) are tested in test_activations.py,
test_activation_parity.py, test_optimizers.py and test_recompile.py. Every
number asserted here was measured on this project's machine (NumPy 2.4,
torch 2.13, jax 0.10.2).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import require
from nnparity.backends import predict, train
from nnparity.shared import POLICY, init_params, notebook_data, notebook_spec
from nnparity.shared.tolerance import difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- default dtypes

def test_trap_default_dtypes_on_creation():
    """A Python float becomes float64 in NumPy, float32 in torch and in JAX (x64 off).
    Converting a NumPy array keeps float64 in torch, not in JAX."""
    torch, jax = require("torch"), require("jax")
    jnp = jax.numpy
    assert np.array(1.0).dtype == np.float64 and np.zeros(2).dtype == np.float64
    assert torch.tensor(1.0).dtype == torch.float32 and torch.zeros(2).dtype == torch.float32
    assert torch.get_default_dtype() == torch.float32
    assert torch.from_numpy(np.zeros(2)).dtype == torch.float64
    assert torch.tensor(np.zeros(2)).dtype == torch.float64
    with jax.enable_x64(False):
        assert jnp.array(1.0).dtype == jnp.float32 and jnp.zeros(2).dtype == jnp.float32
        with warnings.catch_warnings():
            warnings.simplefilter("error")                   # and no warning says so
            assert jnp.asarray(np.zeros(2)).dtype == jnp.float32


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backends_keep_the_spec_dtype(backend, dtype):
    """The backends create nothing from Python floats: every result is in spec.dtype."""
    require(backend)
    spec, data = notebook_spec().replace(epochs=3, dtype=dtype), notebook_data()
    result = train(spec, data, backend=backend)
    assert {a.dtype for pair in result.params for a in pair} == {np.dtype(dtype)}
    assert result.losses.dtype == np.dtype(dtype)
    assert predict(spec, result.params, data.x_test, backend=backend).dtype == np.dtype(dtype)


# ---------------------------------------------------------------- JAX float64 and its scope

def test_trap_jax_x64_is_scoped_and_float64_arrays_do_not_survive_the_scope():
    """enable_x64 holds for its block only. A float64 array made inside keeps its
    dtype outside, but the next binary operation there gives float32."""
    jax = require("jax")
    jnp = jax.numpy
    before = jax.config.read("jax_enable_x64")
    assert before is False, "the suite runs with JAX's default (x64 off)"
    with jax.enable_x64(True):
        assert jax.config.read("jax_enable_x64") is True
        third = jnp.ones(2) / 3
        assert third.dtype == jnp.float64
    assert jax.config.read("jax_enable_x64") is False
    assert jnp.array(1.0).dtype == jnp.float32
    assert third.dtype == jnp.float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # "... truncated to dtype float32"
        assert (third + 1).dtype == jnp.float32
        assert (third + jnp.ones(2)).dtype == jnp.float32
        assert float((third + 1)[0]) != 1 + 1 / 3            # 1.3333333730697632


def test_jax_backend_converts_to_numpy_inside_its_scope():
    """The JAX backend returns NumPy arrays made inside its enable_x64 block, and leaves
    the global flag as it was."""
    jax = require("jax")
    spec, data = notebook_spec().replace(epochs=3), notebook_data()
    result = train(spec, data, backend="jax")
    assert jax.config.read("jax_enable_x64") is False
    for pair in result.params:
        for a in pair:
            assert type(a) is np.ndarray and a.dtype == np.float64
    reference = train(spec, data, backend="numpy")
    for (w, b), (w0, b0) in zip(result.params, reference.params):
        assert difference(w, w0, POLICY["float64"]).ok and difference(b, b0, POLICY["float64"]).ok


# ---------------------------------------------------------------- RNG streams

def test_trap_rng_streams_differ_for_the_same_seed():
    """Seed 99 everywhere, four different first draws; so parameters are drawn once, in NumPy."""
    torch, jax = require("torch"), require("jax")
    legacy = np.random.RandomState(99).rand(3)
    generator = np.random.default_rng(99).random(3)
    torch_draws = torch.rand(3, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(99)).numpy()
    with jax.enable_x64(True):
        jax_draws = np.array(jax.random.uniform(jax.random.key(99), (3,), dtype="float64"))
    np.testing.assert_allclose(legacy, [0.67227856, 0.4880784, 0.82549517], atol=1e-8)
    draws = [legacy, generator, torch_draws, jax_draws]
    for i, a in enumerate(draws):
        for b in draws[i + 1:]:
            assert not np.any(np.isclose(a, b, rtol=0, atol=1e-3)), (a, b)
    # the backends never draw: every one starts from init_params, i.e. from RandomState(99)
    (w0, _), (w1, _) = init_params(notebook_spec())
    rs = np.random.RandomState(99)
    np.testing.assert_array_equal(w0, rs.rand(4, 2) / 2)
    np.testing.assert_array_equal(w1, rs.rand(1, 4) / 4)


# ---------------------------------------------------------------- summation order

def test_trap_summation_order_changes_the_result():
    """Floating-point addition is not associative, so each framework's reduction order
    shows in the last bits."""
    assert (0.1 + 0.2) + 0.3 == 0.6000000000000001 and (0.3 + 0.2) + 0.1 == 0.6
    big, one = np.float32(1e8), np.float32(1)
    assert (big + one) - big == 0 and (big - big) + one == 1
    a = np.random.default_rng(0).random(1000).astype(np.float32)
    pairwise, sequential = a.sum(), np.cumsum(a)[-1]         # NumPy sums pairwise
    assert pairwise == np.float32(516.9064) and sequential == np.float32(516.90643)
    assert pairwise != sequential


def test_backends_agree_within_the_policy_not_bitwise():
    """The notebook's 2000 SGD steps: torch and JAX end within the float64 policy of
    NumPy, and not bitwise equal to it. The differences are rounding: within 100
    float64 ulps (measured largest relative differences over all parameters: torch
    4.8e-15 in b0, JAX 2.8e-15 in b1)."""
    require("torch")
    require("jax")
    spec, data = notebook_spec(), notebook_data()
    reference = train(spec, data, backend="numpy").params
    for backend in ("torch", "jax"):
        params = train(spec, data, backend=backend).params
        tensors = [(a, e) for pair, pair0 in zip(params, reference) for a, e in zip(pair, pair0)]
        assert not all(np.array_equal(a, e) for a, e in tensors), backend
        for a, e in tensors:
            d = difference(a, e, POLICY["float64"])
            assert d.ok and d.max_rel < 100 * np.finfo(np.float64).eps, (backend, d)


# ---------------------------------------------------------------- the (out, in) layout

def test_trap_weight_layout_is_out_in():
    """torch.nn.Linear(in, out) stores W as (out, in) and computes x @ W.T + b. A square
    W used as x @ W runs without error and gives another result."""
    torch = require("torch")
    linear = torch.nn.Linear(2, 3, dtype=torch.float64)
    assert linear.weight.shape == (3, 2) and linear.bias.shape == (3,)
    x = torch.arange(10, dtype=torch.float64).reshape(5, 2)
    with torch.no_grad():
        assert torch.equal(linear(x), x @ linear.weight.T + linear.bias)
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.array([[1.0, 0.0]])
    assert (x @ w.T).tolist() == [[1.0, 3.0]] and (x @ w).tolist() == [[1.0, 2.0]]
    shapes = [(w.shape, b.shape) for w, b in init_params(notebook_spec())]
    assert shapes == [((4, 2), (4,)), ((1, 4), (1,))]        # (out, in) as in the notebook


# ---------------------------------------------------------------- recompilation

def test_trap_jit_traces_again_for_each_new_shape_or_dtype():
    """jax.jit traces (and compiles) once per input shape and dtype; new values of the
    same shape reuse the compiled code. Python side effects run only while tracing."""
    jax = require("jax")
    jnp = jax.numpy
    traces = []

    @jax.jit
    def double(x):
        traces.append(x.shape)
        return 2 * x

    double(jnp.ones(2))
    double(jnp.arange(2.0))                                  # same shape and dtype: cached
    assert len(traces) == 1
    double(jnp.ones(3))                                      # new shape: traced again
    assert len(traces) == 2
    double(jnp.ones(3, dtype=jnp.int32))                     # new dtype: traced again
    assert len(traces) == 3


# ---------------------------------------------------------------- clearing gradients

def test_trap_torch_backward_adds_into_grad():
    """loss.backward() adds into .grad: without clearing, the second step's gradient is
    the sum of both. The torch backend zeroes the gradients after every update."""
    torch = require("torch")
    p = torch.ones(2, dtype=torch.float64, requires_grad=True)
    (3 * p).sum().backward()
    (3 * p).sum().backward()
    assert p.grad.tolist() == [6.0, 6.0]
    spec, data = notebook_spec().replace(epochs=2), notebook_data()
    torch_params = train(spec, data, backend="torch").params
    numpy_params = train(spec, data, backend="numpy").params
    for pair, pair0 in zip(torch_params, numpy_params):
        for a, e in zip(pair, pair0):
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
                   for pair, pair0 in zip(torch_params, numpy_params)
                   for a, e in zip(pair, pair0))
