"""Monte Carlo arithmetic on the NumPy reference (nnparity.shared.parity.rounding).

- ``move_ulps`` / ``jitter`` move floats by whole ulps, never zeros, infinities,
  NaNs or the sign, and never out of the finite range;
- ``Jittered`` arrays round every ufunc's inputs and result at random, so an
  exact computation becomes a spread of nearby results, and only inside
  ``perturbed_rounding``;
- ``step_sensitivity`` is tiny for a well-conditioned step, large for a step
  whose gradient cancels, and reproducible for a given seed.
"""
from __future__ import annotations

import numpy as np
import pytest

from nnparity.shared import SGD, NetworkSpec, init_model_state, init_params
from nnparity.shared.parity.harness import named_step
from nnparity.shared.core.optimizers import init_state
from nnparity.shared.parity.rounding import (Jittered, jitter, jittered, move_ulps,
                                             perturbed_rounding, step_sensitivity)
from nnparity.shared.core.synthetic import regression
from nnparity.shared.core.tree import copy_tree, leaves


def ulps_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.view(np.int64) - b.view(np.int64))


def test_jitter_moves_each_float_by_at_most_the_given_ulps():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-3, 3, 1000), [1.0, 2.0, 0.5, 2.0 ** -1022, 1e300]])
    moved = x.copy()
    jitter(moved, rng, 4)
    ulps = ulps_between(moved, x)
    assert ulps.max() == 4 and set(np.unique(ulps)) == set(range(5))
    assert np.all(np.signbit(moved) == np.signbit(x))
    assert moved.dtype == x.dtype


def test_jitter_leaves_zeros_and_non_finite_values_and_never_overflows():
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(np.float64).max,
                        -np.finfo(np.float64).max, 5e-324])
    for seed in range(20):
        moved = special.copy()
        jitter(moved, np.random.default_rng(seed), 4)
        assert np.array_equal(moved[:5], special[:5], equal_nan=True)
        assert np.signbit(moved[1])
        assert np.all(np.isfinite(moved[5:])) and not np.signbit(moved[7])   # may reach +0


def test_move_ulps_float32_and_integers():
    x32 = np.array([1.0, -1.0], dtype=np.float32)
    move_ulps(x32, np.array([1, 2]))
    assert x32[0] == np.nextafter(np.float32(1), np.float32(2))
    assert x32[1] == np.nextafter(np.nextafter(np.float32(-1), np.float32(-2)), np.float32(-2))
    labels = np.array([1, 2, 3])
    move_ulps(labels, np.array([1, 1, 1]))
    assert labels.tolist() == [1, 2, 3]                       # not floats: untouched


def test_jittered_arithmetic_spreads_an_exact_result():
    a = jittered(np.full(1000, 0.1))
    with perturbed_rounding(np.random.default_rng(1)):
        total = a.sum()
        product = a * 3.0
    assert isinstance(product, Jittered)
    exact = np.full(1000, 0.1).sum()
    assert total != exact and abs(total - exact) < 1e-12
    assert len(np.unique(np.asarray(product))) > 1          # each element rounded on its own


def test_negative_control_plain_arrays_and_outside_the_block_are_exact():
    x = np.full(10, 0.1)
    with perturbed_rounding(np.random.default_rng(1)):
        assert np.array_equal(x * 3.0, np.full(10, 0.1) * 3.0)   # not Jittered: exact
    rng_free = jittered(x)
    assert isinstance(rng_free, Jittered)
    with perturbed_rounding(np.random.default_rng(2), ulps=0):
        assert np.array_equal(np.asarray(rng_free * 3.0), x * 3.0)   # 0 ulps: exact


SPEC = NetworkSpec(sizes=(3, 5, 2), activation="tanh", init="xavier_uniform",
                   optimizer=SGD(lr=0.05, momentum=0.9), batch_size=4, epochs=1, seed=3)
DATA = regression(4, 3, 2, seed=1)


def sensitivity(spec, params, seed=0):
    opt_state = init_state(spec.optimizer, params)
    x, y = DATA.x_train, DATA.y_train
    return step_sensitivity(spec, params, init_model_state(spec), opt_state, x, y, seed=seed,
                            named_outputs=named_step)


def test_a_well_conditioned_step_is_sensitive_at_the_rounding_level_only():
    params = init_params(SPEC)
    spread = sensitivity(SPEC, params)
    assert set(spread) >= {"loss", "grad 0.weight", "0.weight", "momentum_buffer 2.weight",
                           "step"}
    assert spread["step"] == 0.0
    assert 0 < spread["grad 0.weight"] < 1e-14 and 0 < spread["2.weight"] < 1e-14
    assert spread == sensitivity(SPEC, params)                 # seeded: reproducible
    assert spread != sensitivity(SPEC, params, seed=1)


def test_a_saturated_step_is_far_more_sensitive():
    """Huge first-layer weights saturate tanh: 1 - tanh^2 cancels, and the
    first layer's gradient is dominated by rounding."""
    from nnparity.backends import numpy as numpy_backend

    def relative(factor):
        params = init_params(SPEC)
        params[0]["weight"] = params[0]["weight"] * factor
        exact = named_step(numpy_backend.step(SPEC, params, init_model_state(SPEC),
                                              init_state(SPEC.optimizer, params),
                                              DATA.x_train, DATA.y_train))
        return (sensitivity(SPEC, params)["grad 0.weight"]
                / np.abs(exact["grad 0.weight"]).max())

    assert relative(1.0) < 1e-14                      # measured 2.7e-15
    assert relative(100.0) > 1e-7                     # measured 1.3e-5


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_step_sensitivity_keeps_the_dtype_and_does_not_touch_its_inputs(dtype):
    spec = SPEC.replace(dtype=dtype)
    params = init_params(spec)
    kept = copy_tree(params)
    spread = sensitivity(spec, params)
    eps = np.finfo(dtype).eps
    assert 0 < spread["0.weight"] < 100 * eps
    assert len(leaves(params)) == 4
    for a, a0 in zip(leaves(params), leaves(kept), strict=True):
        assert type(a) is np.ndarray and np.array_equal(a, a0)


def test_ufunc_at_writes_into_a_jittered_target_and_rounds_it():
    """``np.add.at(target, rows, g)`` (the Embedding backward's scatter-add) works in
    place on a Jittered target, as on a plain one, within a few ulps."""
    rows, g = np.array([0, 2, 0]), np.full((3, 2), 0.1)
    exact = np.zeros((3, 2))
    np.add.at(exact, rows, g)
    target = np.zeros((3, 2)).view(Jittered)
    with perturbed_rounding(np.random.default_rng(0)):
        np.add.at(target, rows, g)
    written = target.view(np.ndarray)
    assert np.all(ulps_between(written, exact)[exact != 0] <= 8)
    assert not written[1].any()                                # row 1: no token, 0


@pytest.mark.parametrize("layers", [
    "embedding", "gru", "lstm", "rnn", "attention", "residual", "conv", "batch_norm"])
def test_every_kinds_gradient_is_sensitive_at_the_rounding_level_only(layers):
    """The rounding allowance of every layer kind's gradient is far below the gradient
    itself: a kind whose backward escaped the jittered arithmetic (as ``np.add.at``
    once did, writing into a copy) would show a sensitivity as large as its gradient
    and let the teacher-forced check accept anything."""
    from nnparity.shared import (GRU, LSTM, RNN, BatchNorm, Conv2d, Dense, Embedding, Flatten,
                                 LayerNorm, MultiHeadAttention, Residual)
    networks = {
        "embedding": ((4,), (Embedding(6, 3), Flatten())),
        "gru": ((4, 3), (GRU(3), Flatten())), "lstm": ((4, 3), (LSTM(3), Flatten())),
        "rnn": ((4, 3), (RNN(3), Flatten())),
        "attention": ((4, 4), (MultiHeadAttention(2, causal=True), Flatten())),
        "residual": ((4,), (Residual((LayerNorm(), Dense(4))),)),
        "conv": ((1, 4, 4), (Conv2d(2, 3, padding=1), Flatten())),
        "batch_norm": ((3, 4), (BatchNorm(), Flatten())),
    }
    input_shape, body = networks[layers]
    spec = NetworkSpec(input_shape=input_shape, layers=(*body, Dense(2)), init="torch_default",
                       optimizer=SGD(lr=0.1), batch_size=5)
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 6, (5, *input_shape)) if spec.takes_tokens
         else rng.standard_normal((5, *input_shape)))
    y = rng.standard_normal((5, 2))
    params = init_params(spec)
    spread = step_sensitivity(spec, params, init_model_state(spec),
                              init_state(spec.optimizer, params), x, y, seed=0,
                              named_outputs=named_step)
    first = next(name for name in spread if name.startswith("grad 0."))
    assert 0 < spread[first] < 1e-12, (first, spread[first])
