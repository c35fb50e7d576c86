"""Helpers for the pooling kinds' tests (``tests/test_layer_*_pool*.py``): one
pooling layer run alone, forward and input gradient, in each backend and in its
``torch.nn`` oracle, and the input gradient by central finite differences."""
from __future__ import annotations

import importlib
from typing import ClassVar

import numpy as np
import pytest
from conftest import require
from layer_contract import MAX_RELATIVE_ERROR, torch_oracle
from layer_vjp import RESULTS

from nnparity.shared import POLICY
from nnparity.shared.core.tolerance import tensorwise_difference

BACKENDS = ("numpy", "torch", "jax")


def run_backend(backend: str, layer, x: np.ndarray, d_y: np.ndarray):
    """(y, dL/dx) of ``layer`` in ``backend`` for x (batch, C, *n) and the upstream
    gradient d_y (batch, C, *out), as NumPy arrays of x's dtype."""
    require(backend)
    y, grads = RESULTS[backend](layer, {}, x, d_y)            # layer_vjp: no parameters
    return y, grads["x"]


def run_torch_nn(layer, x: np.ndarray, d_y: np.ndarray):
    """(y, dL/dx) of the layer's ``torch.nn`` module (the oracle) with autograd."""
    torch = require("torch")
    t = torch.from_numpy(x.copy()).requires_grad_()
    y = torch_oracle(layer.kind)(layer, x.shape[1:])(t)
    y.backward(torch.from_numpy(d_y))
    return y.detach().numpy(), t.grad.numpy()


def upstream(layer, x: np.ndarray, seed: int = 1) -> np.ndarray:
    """A random upstream gradient shaped like the layer's output, x's dtype."""
    shape = (x.shape[0], *layer.output_shape(x.shape[1:]))
    return np.random.default_rng(seed).standard_normal(shape).astype(x.dtype)


def close(actual: dict, expected: dict, dtype) -> bool:
    """The tolerance policy of ``dtype``, tensor by tensor."""
    return tensorwise_difference(actual, expected, POLICY[np.dtype(dtype).name]).ok


def finite_difference_input_gradient(layer, x: np.ndarray, d_y: np.ndarray) -> np.ndarray:
    """d(sum(y * d_y))/dx by central differences of the NumPy forward (float64)."""
    forward = importlib.import_module("nnparity.backends.numpy.layers").LAYERS[layer.kind].forward
    x, grad = x.copy(), np.empty_like(x)
    for index in np.ndindex(x.shape):
        saved, h = x[index], 1e-6 * max(1.0, abs(x[index]))
        x[index] = saved + h
        up = float(np.sum(forward(layer, {}, {}, x, True)[0] * d_y))
        x[index] = saved - h
        down = float(np.sum(forward(layer, {}, {}, x, True)[0] * d_y))
        x[index] = saved
        grad[index] = (up - down) / (2 * h)
    return grad


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))


class PoolingChecks:
    """One pooling layer alone, against its ``torch.nn`` oracle. Subclass it with
    ``pools``: {id: (layer, input shape (C, *n))}; every test runs per entry."""

    pools: ClassVar[dict[str, tuple]] = {}

    def pytest_generate_tests(self, metafunc):
        if "pool" in metafunc.fixturenames:
            metafunc.parametrize("pool", list(self.pools.values()), ids=list(self.pools))

    @staticmethod
    def data(pool, dtype="float64", rows=3):
        """Random normal input (tie-free) and upstream gradient of ``dtype``."""
        layer, shape = pool
        x = np.random.default_rng(0).standard_normal((rows, *shape)).astype(dtype)
        return layer, x, upstream(layer, x)

    @pytest.mark.parametrize("dtype", ["float64", "float32"])
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_output_and_input_gradient_match_torch_nn(self, pool, backend, dtype):
        layer, x, d_y = self.data(pool, dtype)
        y, dx = run_backend(backend, layer, x, d_y)
        expected_y, expected_dx = run_torch_nn(layer, x, d_y)
        assert y.dtype == dx.dtype == np.dtype(dtype)
        assert close({"y": y, "dx": dx}, {"y": expected_y, "dx": expected_dx}, dtype)

    def test_numpy_input_gradient_matches_finite_differences(self, pool):
        layer, x, d_y = self.data(pool)
        _, dx = run_backend("numpy", layer, x, d_y)
        assert relative_error(dx, finite_difference_input_gradient(layer, x, d_y)) \
            <= MAX_RELATIVE_ERROR

    def test_negative_control_a_wrong_input_gradient_fails_both_checks(self, pool):
        layer, x, d_y = self.data(pool)
        _, dx = run_backend("numpy", layer, x, d_y)
        dx.flat[np.argmax(np.abs(dx))] *= 1 + 1e-3
        assert relative_error(dx, finite_difference_input_gradient(layer, x, d_y)) \
            > MAX_RELATIVE_ERROR
        expected_y, expected_dx = run_torch_nn(layer, x, d_y)
        assert not close({"dx": dx}, {"dx": expected_dx}, "float64")


def tie_heavy(layer, shape, seed=0):
    """Integers 0..2 (most windows tied) of ``shape`` (batch, C, *n) and an integer
    upstream gradient, so every sum is exact and gradients compare bitwise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=shape).astype(np.float64)
    d_y = rng.integers(1, 9, size=(shape[0], *layer.output_shape(shape[1:]))).astype(np.float64)
    return x, d_y


def tied_fraction(layer, x: np.ndarray) -> float:
    """The fraction of max-pool windows whose maximum occurs more than once."""
    from nnparity.backends.numpy.layers._pool import _padded, _windows
    w = _windows(layer, _padded(layer, x, -np.inf))
    flat = w.reshape(*w.shape[:2 + layer.ndim], -1)               # (batch, C, *out, window)
    return float(((flat == flat.max(axis=-1, keepdims=True)).sum(axis=-1) > 1).mean())


def check_ties_exactly(layer, shape, backend, dtype):
    """On tie-heavy integers, the backend's output and input gradient equal
    ``torch.nn``'s bitwise: each tie's gradient goes to the window's first maximum."""
    x, d_y = tie_heavy(layer, shape)
    assert tied_fraction(layer, x) > 0.3
    x, d_y = x.astype(dtype), d_y.astype(dtype)
    expected_y, expected_dx = run_torch_nn(layer, x, d_y)
    y, dx = run_backend(backend, layer, x, d_y)
    assert np.array_equal(y, expected_y)
    assert np.array_equal(dx, expected_dx)
