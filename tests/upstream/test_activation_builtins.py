"""The frameworks' own activation functions: their derivatives at the kinks, and
their thresholds, approximations and float64 handling.

These facts are why nnparity writes its activations out instead of calling the
built-ins (docs/idioms.md, "Traps"); tests/test_activations.py shows that our
backends avoid every one of them.
"""
from __future__ import annotations

import math

import numpy as np
from conftest import require

#: torch's built-ins at their breakpoints, float64 autograd: (name, kwargs) -> {x0: f'(x0)}.
#: nnparity's convention table (tests/test_activations.py) is torch's.
SELU_AT_0 = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717
TORCH_BREAKPOINTS = [
    ("relu", {}, {0.0: 0.0}),
    ("leaky_relu", {}, {0.0: 0.01}),
    ("leaky_relu", {"negative_slope": 0.2}, {0.0: 0.2}),
    ("leaky_relu", {"negative_slope": -0.5}, {0.0: -0.5}),
    ("elu", {}, {0.0: 1.0}),
    ("elu", {"alpha": 2.0}, {0.0: 2.0}),
    ("elu", {"alpha": 0.3}, {0.0: 0.3}),
    ("selu", {}, {0.0: SELU_AT_0}),
    ("celu", {}, {0.0: 1.0}),
    ("celu", {"alpha": 0.5}, {0.0: 1.0}),
    ("celu", {"alpha": 2.0}, {0.0: 1.0}),
    ("relu6", {}, {0.0: 0.0, 6.0: 0.0}),
    ("hardtanh", {}, {-1.0: 0.0, 1.0: 0.0}),
    ("hardsigmoid", {}, {-3.0: 0.0, 3.0: 0.0}),
    ("hardswish", {}, {-3.0: 0.0, 3.0: 1.0}),
]


def test_breakpoint_table_is_torch_autograd():
    """torch's autograd of its own built-ins gives the convention table's f'(x0)."""
    torch = require("torch")
    F = torch.nn.functional
    wrong = []
    for name, kwargs, table in TORCH_BREAKPOINTS:
        for x0, d0 in table.items():
            x = torch.tensor([x0], dtype=torch.float64, requires_grad=True)
            getattr(F, name)(x, **kwargs).sum().backward()
            if x.grad.item() != d0:
                wrong.append(f"F.{name}(**{kwargs})'({x0:g}) = {x.grad.item()!r}, not {d0!r}")
    assert not wrong, "\n".join(wrong)


def test_trap_jnp_maximum_relu_gradient_at_0_is_half():
    """jnp.maximum(0, x) has gradient 0.5 at 0; jax.nn.relu has 0."""
    jax = require("jax")
    jnp = jax.numpy
    with jax.enable_x64(True):
        assert float(jax.grad(lambda x: jnp.maximum(0.0, x))(0.0)) == 0.5
        assert float(jax.grad(jax.nn.relu)(0.0)) == 0.0


def test_trap_torch_maximum_relu_gradient_at_0_is_half():
    """torch.maximum(x, 0) has gradient 0.5 at 0; torch.relu has 0."""
    torch = require("torch")
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.maximum(x, torch.zeros_like(x)).sum().backward()
    assert x.grad.item() == 0.5
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.relu(x).sum().backward()
    assert x.grad.item() == 0.0


def test_trap_leaky_relu_at_0_jax_1_torch_slope():
    """leaky_relu'(0) is 1 in jax.nn (whatever the slope) and negative_slope in torch."""
    jax, torch = require("jax"), require("torch")
    with jax.enable_x64(True):
        assert float(jax.grad(jax.nn.leaky_relu)(0.0)) == 1.0
        assert float(jax.grad(lambda x: jax.nn.leaky_relu(x, negative_slope=0.2))(0.0)) == 1.0
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.leaky_relu(x).sum().backward()
    assert x.grad.item() == 0.01


def test_trap_hardtanh_at_plus_minus_1_jax_1_torch_0():
    """hardtanh'(+-1) is 1 in jax.nn and 0 in torch."""
    jax, torch = require("jax"), require("torch")
    with jax.enable_x64(True):
        assert float(jax.grad(jax.nn.hard_tanh)(1.0)) == 1.0
        assert float(jax.grad(jax.nn.hard_tanh)(-1.0)) == 1.0
    x = torch.tensor([-1.0, 1.0], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.hardtanh(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]


def test_trap_torch_softplus_threshold():
    """F.softplus returns x itself above threshold=20: softplus(20.1) == 20.1, where
    log(1 + e^20.1) is 20.10000000186501."""
    torch = require("torch")
    assert torch.nn.functional.softplus(torch.tensor(20.1, dtype=torch.float64)).item() == 20.1
    assert math.log1p(math.exp(20.1)) == 20.10000000186501


def test_trap_torch_softplus_without_threshold_overflows():
    """The naive log1p(exp(x)) form is inf at x = 1000."""
    torch = require("torch")
    x = torch.tensor(1000.0, dtype=torch.float64)
    assert torch.isinf(torch.log1p(torch.exp(x))).item()


def test_trap_torch_hardsigmoid_float64_backward_uses_float32_sixth():
    """F.hardsigmoid's float64 backward returns float32's 1/6 (0.16666667163...)."""
    torch = require("torch")
    x = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.hardsigmoid(x).sum().backward()
    assert x.grad.item() == float(np.float32(1 / 6))
    assert abs(x.grad.item() - 0.16666667163372) < 1e-13
    assert x.grad.item() != 1 / 6


def test_trap_jax_gelu_defaults_to_tanh_approximation():
    """jax.nn.gelu defaults to the tanh approximation: on [-10, 10] it differs from the
    exact form by 4.6e-4 to 4.8e-4 at most."""
    jax = require("jax")
    x = np.linspace(-10, 10, 20001)
    with jax.enable_x64(True):
        approx = np.array(jax.nn.gelu(x))
        exact = np.array(jax.nn.gelu(x, approximate=False))
    gap = np.max(np.abs(approx - exact))
    assert 4.6e-4 < gap < 4.8e-4, gap


def test_trap_xla_flushes_subnormal_inputs():
    """Compiled XLA on CPU treats a subnormal input as 0 (relu'(1e-310) is 0 under
    jax.jit) while torch gives 1; the activation tests use +-1e-300 beside 0."""
    jax, torch = require("jax"), require("torch")
    with jax.enable_x64(True):
        assert float(jax.jit(jax.grad(jax.nn.relu))(1e-310)) == 0.0
    x = torch.tensor([1e-310], dtype=torch.float64, requires_grad=True)
    torch.relu(x).sum().backward()
    assert x.grad.item() == 1.0


def test_trap_jax_float64_needs_x64():
    """Without x64, jnp.asarray of a float64 array silently gives float32."""
    jax = require("jax")
    with jax.enable_x64(False):
        assert jax.numpy.asarray(np.zeros(2)).dtype == np.float32
