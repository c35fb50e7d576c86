"""MaxPool2d, plugged into the shared layer tests (``layer_contract.py``) and run
alone against its oracle ``torch.nn.MaxPool2d`` (``pooling.py``); then the
traps: ties (torch gives a tie's gradient to the first maximum in row-major
order), -inf padding, and torch's limit on the padding.

The contract cases are tie-free (random normal data, no ReLU before the pool),
so finite differences apply; the tie tests use integers and compare exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract
from pooling import (BACKENDS, PoolingChecks, check_ties_exactly, run_backend, run_torch_nn,
                     tie_heavy)

from nnparity.shared import (SGD, Adam, AvgPool1d, AvgPool2d, Dense, Flatten, MaxPool1d,
                             MaxPool2d, NetworkSpec)
from nnparity.shared.core.layers import layer_from_dict


def torch_module(layer: MaxPool2d, input_shape):
    import torch
    return torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)


class TestMaxPool2d(LayerContract):
    cases = {
        "k2": NetworkSpec(input_shape=(2, 6, 6), layers=(MaxPool2d(2), Flatten(), Dense(2)),
                          init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        # Dense on the last axis before the pool: the pool's backward feeds a parameter's
        # gradient, so the finite differences and torch's autograd check it
        "dense-then-k3-s2-p1": NetworkSpec(
            input_shape=(2, 5, 6), layers=(Dense(6), MaxPool2d(3, stride=2, padding=1),
                                           Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=Adam(lr=0.01), batch_size=5, epochs=3, seed=3),
        "dense-then-overlapping-k(2,3)-s(1,2)-p(1,0)": NetworkSpec(
            input_shape=(1, 4, 5), layers=(Dense(5), MaxPool2d((2, 3), stride=(1, 2),
                                                               padding=(1, 0)),
                                           Flatten(), Dense(3)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3, seed=7),
    }


class TestMaxPool2dAlone(PoolingChecks):
    pools = {
        "k2": (MaxPool2d(2), (2, 6, 6)),
        "k3-s1-p1-overlapping": (MaxPool2d(3, stride=1, padding=1), (2, 5, 4)),
        "k(3,2)-s(2,1)-p(1,1)": (MaxPool2d((3, 2), stride=(2, 1), padding=(1, 1)), (1, 7, 5)),
        "k2-odd-input-drops-the-last-row": (MaxPool2d(2), (1, 5, 7)),
    }


# --------------------------------------------------------------------------- ties

#: pools for the tie tests: non-overlapping, overlapping, padded
TIE_POOLS = {
    "k2": MaxPool2d(2),
    "k3-s1-p1": MaxPool2d(3, stride=1, padding=1),
    "k(2,3)-s(1,2)-p(1,1)": MaxPool2d((2, 3), stride=(1, 2), padding=(1, 1)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", TIE_POOLS.values(), ids=TIE_POOLS)
def test_tie_gradients_go_to_the_first_maximum_as_in_torch(layer, backend, dtype):
    check_ties_exactly(layer, (2, 3, 6, 6), backend, dtype)


def test_torch_gives_a_four_way_tie_to_its_first_element():
    """The rule measured on torch itself: a constant 2x2 window sends all to (0, 0)."""
    torch = require("torch")
    t = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.max_pool2d(t, 2).sum().backward()
    assert t.grad.numpy().ravel().tolist() == [1.0, 0.0, 0.0, 0.0]
    t = torch.tensor([[[[0.0, 5.0], [5.0, 1.0]]]], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.max_pool2d(t, 2).sum().backward()          # (0, 1) before (1, 0)
    assert t.grad.numpy().ravel().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_negative_control_an_even_split_of_ties_fails_against_torch():
    """JAX's ``x.reshape(...).max(axis)`` splits a tie's gradient evenly: the tie
    check above would catch a backend doing that."""
    jax = require("jax")
    import jax.numpy as jnp
    layer = TIE_POOLS["k2"]
    x, d_y = tie_heavy(layer, (2, 3, 6, 6))
    _, expected_dx = run_torch_nn(layer, x, d_y)
    n, c, h, w = x.shape
    with jax.enable_x64(True):
        def split(a):                                         # (n, c, h/2, 2, w/2, 2) -> max
            return jnp.vdot(a.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)), d_y)
        dx = np.asarray(jax.grad(split)(jnp.asarray(x)))
    assert np.array_equal(dx.sum(), expected_dx.sum())         # the same total, spread out
    assert not np.array_equal(dx, expected_dx)
    assert np.abs(dx - expected_dx).max() >= 0.5 * np.abs(d_y).min()


# ------------------------------------------------------------------------ padding

@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_pads_with_minus_infinity(backend):
    """On negative inputs a 0 padding would win the border windows; -inf never does."""
    layer = MaxPool2d(3, stride=2, padding=1)
    x = -1.0 - np.random.default_rng(0).random((2, 2, 5, 5))                  # all < -1
    d_y = np.ones((2, 2, 3, 3))
    expected_y, expected_dx = run_torch_nn(layer, x, d_y)
    y, dx = run_backend(backend, layer, x, d_y)
    assert (y < -1).all()
    assert np.array_equal(y, expected_y) and np.array_equal(dx, expected_dx)


def test_negative_control_a_zero_padding_fails_against_torch():
    layer = MaxPool2d(3, stride=2, padding=1)
    x = -1.0 - np.random.default_rng(0).random((2, 2, 5, 5))
    expected_y, _ = run_torch_nn(layer, x, np.ones((2, 2, 3, 3)))
    zero_padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = run_backend("numpy", MaxPool2d(3, stride=2), zero_padded, np.ones((2, 2, 3, 3)))[0]
    assert y.max() == 0.0 and np.abs(y - expected_y).max() > 1.0


def test_padding_over_half_the_kernel_raises_as_torch_does():
    """torch refuses padding > kernel_size // 2 (a window could then lie entirely over
    the -inf padding); the layer refuses it when built, with a clear ValueError."""
    torch = require("torch")
    with pytest.raises(ValueError, match=r"MaxPool2d.padding=\(2, 1\).*at most half"):
        MaxPool2d((3, 2), padding=(2, 1))
    with pytest.raises(RuntimeError, match="pad should be"):
        torch.nn.functional.max_pool2d(torch.zeros(1, 1, 6, 6), 3, padding=2)
    assert MaxPool2d((3, 2), padding=1).padding == (1, 1)                 # at the limit
    torch.nn.functional.max_pool2d(torch.zeros(1, 1, 6, 6), (3, 2), padding=1)


@pytest.mark.parametrize("kernel, padding", [(1, 1), (2, 1), (3, 1), (3, 2), (4, 2), (4, 3)])
@pytest.mark.parametrize("kind", [MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d],
                         ids=lambda cls: cls.__name__)
def test_the_padding_limit_is_torchs_for_every_pooling_kind(kind, kernel, padding):
    """A layer refuses exactly the paddings torch refuses (measured, not assumed)."""
    torch = require("torch")
    function = getattr(torch.nn.functional, kind.kind)
    x = torch.zeros((1, 1) + (8,) * kind.ndim)
    try:
        function(x, kernel, kernel, padding)
        torch_accepts = True
    except RuntimeError:
        torch_accepts = False
    try:
        kind(kernel, padding=padding)
        ours_accepts = True
    except ValueError:
        ours_accepts = False
    assert ours_accepts == torch_accepts == (padding <= kernel // 2)


# ------------------------------------------------------------------ construction

def test_int_or_pair_is_stored_as_pairs_and_round_trips():
    layer = MaxPool2d(2)
    assert (layer.kernel_size, layer.stride, layer.padding) == ((2, 2), (2, 2), (0, 0))
    assert MaxPool2d([3, 2], stride=(1, 2), padding=1) == MaxPool2d((3, 2), (1, 2), (1, 1))
    for layer in (MaxPool2d(2), MaxPool2d((3, 2), stride=(1, 2), padding=1)):
        assert layer_from_dict(layer.to_dict()) == layer
    assert MaxPool2d(2).to_dict() == {"kind": "max_pool2d", "kernel_size": [2, 2],
                                      "stride": [2, 2], "padding": [0, 0]}


@pytest.mark.parametrize("kwargs, error, match", [
    ({"kernel_size": 0}, ValueError, r"kernel_size\[0\]=0"),
    ({"kernel_size": (2, 2, 2)}, TypeError, "2 integers"),
    ({"kernel_size": 2.0}, TypeError, "kernel_size=2.0"),
    ({"kernel_size": True}, TypeError, "kernel_size=True"),
    ({"kernel_size": 2, "stride": (1, 0)}, ValueError, r"stride\[1\]=0"),
    ({"kernel_size": 2, "padding": -1}, ValueError, r"padding\[0\]=-1"),
    ({"kernel_size": "2"}, TypeError, "kernel_size='2'"),
])
def test_bad_arguments_raise_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        MaxPool2d(**kwargs)


@pytest.mark.parametrize("input_shape, match", [
    ((6, 6), r"3 axes, \(C, H, W\)"),
    ((1, 6, 6, 1), r"3 axes"),
    ((1, 2, 6), "at least kernel_size - 2 \\* padding long"),
])
def test_check_input_needs_channels_first_and_an_output(input_shape, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec(input_shape=input_shape, layers=(MaxPool2d(3), Flatten(), Dense(1)))
    # with padding 1 a length-1 axis still has an output, as in torch
    assert MaxPool2d(3, padding=1).output_shape((1, 1, 6)) == (1, 1, 2)
