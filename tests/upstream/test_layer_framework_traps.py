"""What torch and JAX themselves do in the layer kinds (convolution, pooling,
BatchNorm, Dropout): the conventions docs/idioms.md's "Layers" section and its
traps rely on. No nnparity code runs here (tests/upstream/conftest.py).

Every case is small (a few thousand elements), float64 unless it says otherwise,
and asserts either exact facts (shapes, padding pairs, tie gradients of 0, 0.25
and 1, bitwise equalities of one IEEE operation per element) or differences far
larger than rounding, so it does not depend on the last bit of a BLAS result.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import require


def rel(a, b) -> float:
    """max|a - b| / max|b|."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def torch_conv2d(x, w, **kwargs):
    torch = require("torch")
    return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), **kwargs).numpy()


def lax_conv(x, w, strides, padding, dimension_numbers=None):
    jax = require("jax")
    from jax import lax
    with jax.enable_x64(True):
        return np.asarray(lax.conv_general_dilated(x, w, strides, padding,
                                                   dimension_numbers=dimension_numbers,
                                                   precision=lax.Precision.HIGHEST))


# ------------------------------------------------------------------ convolution

def test_trap_a_square_kernel_transposed_the_wrong_way_raises_nothing():
    """lax reads torch's OIHW kernel as it is (its default dimension numbers are
    NCHW/OIHW); for NHWC/HWIO the kernel map is transpose(2, 3, 1, 0), and the
    (3, 2, 1, 0) transpose of a square kernel has the same shape and other numbers."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((3, 3, 3, 3))                    # out = in = kH = kW
    expected = torch_conv2d(x, w)
    assert rel(lax_conv(x, w, (1, 1), "VALID"), expected) < 1e-13       # measured 3.6e-16
    nhwc = ("NHWC", "HWIO", "NHWC")
    right = lax_conv(x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), (1, 1), "VALID", nhwc)
    assert rel(right.transpose(0, 3, 1, 2), expected) < 1e-13           # measured 3.6e-16
    assert w.transpose(3, 2, 1, 0).shape == w.transpose(2, 3, 1, 0).shape
    wrong = lax_conv(x.transpose(0, 2, 3, 1), w.transpose(3, 2, 1, 0), (1, 1), "VALID", nhwc)
    assert rel(wrong.transpose(0, 3, 1, 2), expected) > 0.3             # measured 0.96


def test_trap_strided_same_padding_is_asymmetric_in_jax_and_refused_by_torch():
    """lax "SAME" with stride 2, kernel 3, on 8 rows pads (0, 1); torch's
    padding=1 pads (1, 1): the same 4 x 4 output, other numbers. torch refuses
    padding="same" with a stride."""
    torch = require("torch")
    from jax import lax
    assert lax.padtype_to_pads((8, 8), (3, 3), (2, 2), "SAME") == [(0, 1), (0, 1)]
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 2, 8, 8)), rng.standard_normal((3, 2, 3, 3))
    same = lax_conv(x, w, (2, 2), "SAME")
    torch_pad_1 = torch_conv2d(x, w, stride=2, padding=1)
    assert same.shape == torch_pad_1.shape == (2, 3, 4, 4)
    assert rel(same, torch_pad_1) > 0.3                                 # measured 1.33
    after = torch_conv2d(np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1))), w, stride=2)
    assert rel(same, after) < 1e-13                                     # measured 1.6e-16
    with pytest.raises(RuntimeError, match="padding='same' is not supported for strided"):
        torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2,
                                   padding="same")


def test_trap_same_padding_with_an_even_kernel_puts_the_odd_zero_after():
    """Stride 1, kernel 4: torch's padding="same" pads (1, 2), as lax "SAME" does;
    a symmetric padding=2 gives a larger output."""
    from jax import lax
    assert lax.padtype_to_pads((7, 7), (4, 4), (1, 1), "SAME") == [(1, 2), (1, 2)]
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((2, 2, 4, 4))
    with warnings.catch_warnings():                          # "even kernel lengths" warning
        warnings.simplefilter("ignore", UserWarning)
        same = torch_conv2d(x, w, padding="same")
    padded = torch_conv2d(np.pad(x, ((0, 0), (0, 0), (1, 2), (1, 2))), w)
    assert rel(same, padded) < 1e-13
    assert rel(lax_conv(x, w, (1, 1), "SAME"), same) < 1e-13
    assert torch_conv2d(x, w, padding=2).shape == (1, 2, 8, 8) != same.shape


# ---------------------------------------------------------------------- pooling

def test_trap_max_pool_ties_go_to_the_first_maximum_or_are_split():
    """A four-way tie in one 2 x 2 window: torch's max_pool2d and the gradient of
    lax.reduce_window(max) give it all to the first element in row-major order
    (np.argmax picks that one); jnp's reshape-then-max and torch.amax split it
    evenly."""
    torch, jax = require("torch"), require("jax")
    import jax.numpy as jnp
    from jax import lax
    t = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.max_pool2d(t, 2).sum().backward()
    assert t.grad.numpy().ravel().tolist() == [1.0, 0.0, 0.0, 0.0]
    t.grad = None
    torch.amax(t, dim=(2, 3)).sum().backward()
    assert t.grad.numpy().ravel().tolist() == [0.25] * 4
    assert int(np.argmax(np.ones(4))) == 0
    x = np.ones((1, 1, 2, 2))
    with jax.enable_x64(True):
        window = jax.grad(lambda a: lax.reduce_window(a, -np.inf, lax.max, (1, 1, 2, 2),
                                                      (1, 1, 2, 2), "VALID").sum())(x)
        split = jax.grad(lambda a: a.reshape(1, 1, 1, 2, 1, 2).max(axis=(3, 5)).sum())(
            jnp.asarray(x))
    assert np.asarray(window).ravel().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert np.asarray(split).ravel().tolist() == [0.25] * 4


def test_trap_max_pool_padding_is_minus_infinity():
    """torch's max_pool2d pads with -inf: on inputs below -1 no window returns the
    0 a zero padding would give."""
    torch = require("torch")
    x = -1.0 - np.random.default_rng(3).random((1, 1, 5, 5))
    y = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, stride=2, padding=1).numpy()
    assert y.shape == (1, 1, 3, 3) and (y < -1).all()


# -------------------------------------------------------------------- BatchNorm

def test_trap_torch_batch_norm_momentum_weighs_the_batch_and_the_running_var_is_unbiased():
    """nn.BatchNorm1d: momentum 0.1 and eps 1e-5 by default; one training step
    from (mean 0, var 1) gives running_mean = 0.9 * 0 + 0.1 * mean and running_var
    = 0.9 * 1 + 0.1 * the unbiased (n - 1) variance, while the output is normalised
    with the biased variance, eps inside the square root."""
    torch = require("torch")
    bn = torch.nn.BatchNorm1d(2).double()
    assert (bn.momentum, bn.eps) == (0.1, 1e-5)
    x = np.random.default_rng(4).standard_normal((5, 2)) * 3 + 2
    y = bn(torch.from_numpy(x)).detach().numpy()
    mean, var = x.mean(axis=0), x.var(axis=0)
    assert np.allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-14, atol=0)
    assert np.allclose(bn.running_var.numpy(), 0.9 + 0.1 * x.var(axis=0, ddof=1),
                       rtol=1e-14, atol=0)
    assert rel(bn.running_var.numpy(), 0.9 + 0.1 * var) > 1e-2        # the biased var: 0.15
    assert rel(y, (x - mean) / np.sqrt(var + 1e-5)) < 1e-14
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.zeros(1, 2, dtype=torch.float64))


# ---------------------------------------------------------- division and Dropout

def test_trap_xla_divides_by_a_broadcast_scalar_as_a_product_with_its_reciprocal():
    """jnp's x / c, eager or jitted, c a constant or a traced argument, is
    x * (1 / c) bit for bit; NumPy and torch divide. For 10,000 standard normal
    values and c = 0.9 the two differ (by 1 ulp) in 44%. A divisor array broadcast
    against x (AvgPool's divisor) is rewritten too; same-shape arrays are divided."""
    torch, jax = require("torch"), require("jax")
    import jax.numpy as jnp
    x = np.random.default_rng(5).standard_normal(10_000)
    c = 0.9
    with jax.enable_x64(True):
        eager = np.asarray(jnp.asarray(x) / c)
        traced = np.asarray(jax.jit(lambda a, b: a / b)(x, c))
        broadcast = np.asarray(jnp.asarray(x.reshape(100, 100)) / jnp.full(100, c))
        same_shape = np.asarray(jnp.asarray(x) / jnp.full(x.shape, c))
    reciprocal = x * (1 / c)
    assert np.array_equal(eager, reciprocal) and np.array_equal(traced, reciprocal)
    assert np.array_equal(broadcast.ravel(), reciprocal)
    assert np.array_equal(same_shape, x / c)
    assert np.array_equal((torch.from_numpy(x) / c).numpy(), x / c)
    assert 0.3 < (reciprocal != x / c).mean() < 0.6                    # measured 0.44
    with jax.enable_x64(True):                                          # exact for 1/2
        assert np.array_equal(np.asarray(jnp.asarray(x) / 0.5), x / 0.5)


def test_trap_torch_dropout_multiplies_by_the_scale_and_division_differs():
    """torch's dropout keeps x * (1 / (1 - p)), not x / (1 - p); at p = 0.1 the
    two differ in the last bit for 44% of 10,000 standard normal values."""
    torch = require("torch")
    p = 0.1
    x = np.random.default_rng(6).standard_normal(10_000)
    torch.manual_seed(0)
    y = torch.nn.functional.dropout(torch.from_numpy(x), p, training=True).numpy()
    kept = y != 0
    assert 0.85 < kept.mean() < 0.95
    assert np.array_equal(y[kept], x[kept] * (1 / (1 - p)))
    assert 0.3 < (x / (1 - p) != x * (1 / (1 - p))).mean() < 0.6      # measured 0.44


def test_trap_dropout_masks_from_torch_and_jax_differ_for_the_same_seed():
    """torch's seed 0 and JAX's key 0 give different dropout masks: each framework
    draws from its own stream, and no seed makes them agree."""
    torch, jax = require("torch"), require("jax")
    torch.manual_seed(0)
    torch_keep = torch.nn.functional.dropout(torch.ones(1000, dtype=torch.float64), 0.5,
                                             training=True).numpy() != 0
    jax_keep = np.asarray(jax.random.bernoulli(jax.random.key(0), 0.5, (1000,)))
    assert 0.4 < torch_keep.mean() < 0.6 and 0.4 < jax_keep.mean() < 0.6
    assert not np.array_equal(torch_keep, jax_keep)
    assert 0.4 < (torch_keep == jax_keep).mean() < 0.6                  # chance agreement
