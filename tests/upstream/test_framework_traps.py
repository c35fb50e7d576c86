"""Framework traps that make ports disagree, shown on the frameworks themselves:
default dtypes, JAX's float64 scope, RNG streams, summation order, the weight
layout, recompilation, gradient accumulation and loss broadcasting.

Every number asserted here was measured with NumPy 2.4, torch 2.13 and jax 0.10.2.
tests/test_traps.py shows that the backends avoid these traps.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import require

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_trap_default_dtypes_on_creation():
    """A Python float becomes float64 in NumPy, float32 in torch and in JAX (x64 off);
    converting a NumPy array keeps float64 in torch, not in JAX."""
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


def test_trap_jax_x64_is_scoped_and_float64_arrays_do_not_survive_the_scope():
    """enable_x64 holds for its block only; a float64 array made inside keeps its dtype
    outside, but the next binary operation there gives float32."""
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


def test_trap_rng_streams_differ_for_the_same_seed():
    """Seed 99 gives four different first draws in RandomState, default_rng, torch and
    JAX; so parameters are drawn once, in NumPy."""
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


def test_trap_summation_order_changes_the_result():
    """Floating-point addition is not associative, and NumPy sums pairwise, so each
    framework's reduction order shows in the last bits."""
    assert (0.1 + 0.2) + 0.3 == 0.6000000000000001 and (0.3 + 0.2) + 0.1 == 0.6
    big, one = np.float32(1e8), np.float32(1)
    assert (big + one) - big == 0 and (big - big) + one == 1
    a = np.random.default_rng(0).random(1000).astype(np.float32)
    pairwise, sequential = a.sum(), np.cumsum(a)[-1]         # NumPy sums pairwise
    assert pairwise == np.float32(516.9064) and sequential == np.float32(516.90643)
    assert pairwise != sequential


def test_trap_weight_layout_is_out_in():
    """torch.nn.Linear(in, out) stores W as (out, in) and computes x @ W.T + b; a square
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


def test_trap_jit_traces_again_for_each_new_shape_or_dtype():
    """jax.jit traces once per input shape and dtype; new values of the same shape reuse
    the compiled code, and Python side effects run only while tracing."""
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


def test_trap_torch_backward_adds_into_grad():
    """loss.backward() adds into .grad: without clearing, the second gradient is the sum
    of both."""
    torch = require("torch")
    p = torch.ones(2, dtype=torch.float64, requires_grad=True)
    (3 * p).sum().backward()
    (3 * p).sum().backward()
    assert p.grad.tolist() == [6.0, 6.0]


def test_torch_mse_loss_silently_broadcasts_n1_against_n():
    """F.mse_loss turns (n, 1) against (n,) into the mean over an (n, n) matrix, with only
    a warning (the trap nnparity's shape checks refuse)."""
    torch = require("torch")
    F = torch.nn.functional
    p = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)   # (4, 1)
    y = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)         # (4,)

    def with_broadcast_warning(a, b):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = F.mse_loss(a, b)
        assert any(issubclass(w.category, UserWarning) and "broadcast" in str(w.message)
                   for w in caught), [str(w.message) for w in caught]
        return value

    broadcast = with_broadcast_warning(p, y)
    reverse = with_broadcast_warning(y, p)                              # the reverse too
    pairwise = np.mean((p.numpy() - y.numpy()[None, :]) ** 2)          # over a (4, 4) matrix
    assert pairwise == 2.5 and float(broadcast) == 2.5 == float(reverse)  # exact in binary
    # while the right answer for matching shapes is 0
    assert float(F.mse_loss(p[:, 0], y)) == 0.0


def test_torch_functional_losses_are_finite_at_large_logits():
    """F.cross_entropy and F.binary_cross_entropy_with_logits stay finite at logits of
    +-1000 and +-30, so they can be the loss tests' oracle there."""
    torch = require("torch")
    F = torch.nn.functional
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 30.0],
                           [30.0, -30.0, 0.0], [1000.0, 1000.0, -1000.0],
                           [-30.0, 30.0, 30.0], [0.0, 0.0, 0.0]],
                          dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 1, 0, 0, 0, 2])
    F.cross_entropy(logits, labels).backward()
    bce_logits = torch.tensor([[1000.0, -1000.0, 30.0, -30.0], [-1000.0, 1000.0, -30.0, 30.0],
                               [1000.0, -30.0, 30.0, 0.5]],
                              dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.3, 1.0], [1.0, 0.5, 1.0, 0.0]],
                           dtype=torch.float64)
    bce = F.binary_cross_entropy_with_logits(bce_logits, targets)
    bce.backward()
    for value, grad in ((F.cross_entropy(logits, labels), logits.grad),
                        (bce, bce_logits.grad)):
        assert torch.isfinite(value).item() and torch.isfinite(grad).all().item()
