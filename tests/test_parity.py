"""Parity: torch and jax match numpy under the float64 tolerance policy.

Every case runs ``compare(spec, data, backends=("numpy", backend))``, asserts
on each quantity of the report, and checks the same numbers again
independently with ``np.testing.assert_allclose`` under ``POLICY["float64"]``.
Negative controls show that the harness fails on a perturbed result, on a NaN,
and on a ReLU with derivative 0.5 at 0 (only the kink case can catch that).
"""
from __future__ import annotations

import functools
import importlib
import math

import numpy as np
import pytest

from nnparity.backends import train
from nnparity.shared import (POLICY, SGD, Activation, Adam, Dataset, Dense, NetworkSpec, compare,
                             flat_names, init_params, notebook_data, notebook_spec, to_flat)
from nnparity.shared.core.synthetic import classification, regression
from nnparity.shared.core.tree import copy_tree, leaves
from conftest import perturb_torch, require

#: a small float64 regression set with 3 test rows
synthetic = functools.partial(regression, n_test=3)

TOL = POLICY["float64"]
BACKENDS = [pytest.param("torch", id="torch"), pytest.param("jax", id="jax")]


def kink_data(all_rows_zero=False):
    """The first batch (rows 0, 1) is all-zero inputs; targets are far from 0.

    With uniform_fan_in the biases start at 0, so at step 0 every hidden
    pre-activation of those rows is exactly 0 while dL/dh = dL/dp @ W1 != 0.
    """
    rs = np.random.RandomState(11)
    x = np.abs(rs.randn(6, 3)) + 0.5
    x[:2] = 0.0
    if all_rows_zero:
        x[:] = 0.0
    y = 1.0 + rs.rand(6, 1)
    return Dataset(x, y, np.vstack([np.zeros((1, 3)), x[2:4]]), np.ones((3, 1)))


KINK_SPEC = NetworkSpec(sizes=(3, 4, 1), optimizer=SGD(lr=0.01), batch_size=2, epochs=5)

CASES = {
    "notebook": (notebook_spec(), notebook_data()),
    "deep-3-hidden": (NetworkSpec(sizes=(3, 6, 5, 4, 1), init="he_normal",
                                  optimizer=SGD(lr=0.02), batch_size=4, epochs=25, seed=1),
                      synthetic(8, 3, 1, seed=1)),
    "multi-output": (NetworkSpec(sizes=(3, 5, 3), init="xavier_uniform", optimizer=SGD(lr=0.05),
                                 batch_size=2, epochs=20, seed=2),
                     synthetic(6, 3, 3, seed=2)),
    "partial-last-batch": (NetworkSpec(sizes=(2, 5, 1), init="xavier_uniform",
                                       optimizer=SGD(lr=0.05), batch_size=3, epochs=20, seed=3),
                           synthetic(7, 2, 1, seed=3)),
    "shuffle": (NetworkSpec(sizes=(2, 5, 1), init="xavier_uniform", optimizer=SGD(lr=0.05),
                            batch_size=3, epochs=20, seed=4, shuffle=True),
                synthetic(8, 2, 1, seed=4)),
    "batch-larger-than-rows": (NetworkSpec(sizes=(2, 5, 1), init="he_normal",
                                           optimizer=SGD(lr=0.05), batch_size=16, epochs=20,
                                           seed=5),
                               synthetic(5, 2, 1, seed=5)),
    "epochs-0": (NetworkSpec(sizes=(2, 5, 1), init="he_normal", epochs=0, seed=6),
                 synthetic(5, 2, 1, seed=6)),
    "relu-kink": (KINK_SPEC, kink_data()),
    "relu-kink-all-rows-zero": (KINK_SPEC, kink_data(all_rows_zero=True)),
}
SPECS = [pytest.param(name, id=name) for name in CASES]


def assert_parity(report, backend):
    """Every quantity within the policy, per the report and per an independent check."""
    assert report.tolerance == TOL
    (parity,) = [p for p in report.parity if p.backend == backend]
    spec = report.spec
    expected_names = set(flat_names(spec.param_shapes))        # "0.weight", "0.bias", ...
    assert set(parity.differences) == expected_names | {"predictions", "losses"}
    bad = {name: d for name, d in parity.differences.items() if not d.ok}
    assert not bad, f"{backend} differs from numpy:\n{report}"
    for name, d in parity.differences.items():
        assert math.isfinite(d.max_abs) and math.isfinite(d.max_rel), name
    assert report.ok

    ref, other = report.results["numpy"], report.results[backend]
    assert other.backend == backend and other.spec == spec
    flat, flat_ref = to_flat(other.params), to_flat(ref.params)
    assert list(flat) == list(flat_ref) == flat_names(spec.param_shapes)
    for name, e in flat_ref.items():
        a = flat[name]
        assert a.dtype == np.float64 and a.shape == e.shape, name
        np.testing.assert_allclose(a, e, rtol=TOL.rtol, atol=TOL.atol, err_msg=name)
    assert other.losses.dtype == np.float64 and other.losses.shape == ref.losses.shape
    np.testing.assert_allclose(other.losses, ref.losses, rtol=TOL.rtol, atol=TOL.atol)
    np.testing.assert_allclose(report.predictions[backend], report.predictions["numpy"],
                               rtol=TOL.rtol, atol=TOL.atol)


@pytest.mark.parametrize("case", SPECS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_parity(backend, case):
    require(backend)
    spec, data = CASES[case]
    if case.startswith("relu-kink"):
        assert_hits_kink(spec, data)
    report = compare(spec, data, backends=("numpy", backend))
    assert_parity(report, backend)

    ref = report.results["numpy"]
    n_rows = data.x_train.shape[0]
    steps = spec.epochs * -(-n_rows // spec.batch_size)
    assert ref.losses.shape == (steps,)
    assert np.all(np.isfinite(ref.losses))
    init = init_params(spec)
    changed = any(not np.array_equal(a, a0)
                  for a, a0 in zip(leaves(ref.params), leaves(init), strict=True))
    assert changed == (spec.epochs > 0), "the case must actually train (or not, for epochs=0)"


@pytest.mark.parametrize("backend", [pytest.param("numpy", id="numpy")] + BACKENDS)
def test_epochs_0_returns_init_params_exactly(backend):
    require(backend)
    spec, data = CASES["epochs-0"]
    result = train(spec, data, backend=backend)
    assert result.losses.shape == (0,)
    init = to_flat(init_params(spec))
    assert list(to_flat(result.params)) == list(init)
    for name, a in to_flat(result.params).items():
        assert a.dtype == init[name].dtype, name
        np.testing.assert_array_equal(a, init[name], err_msg=name)


# ---------------------------------------------------------------- the general layer form

#: specs written as layers that are not an MLP (so ``spec.sizes is None``)
LAYER_CASES = {
    # two activations in a row, then two Dense layers with nothing between them
    "stacked-activations-and-dense": (NetworkSpec(
        input_shape=(3,), layers=(Dense(5), Activation("tanh"),
                                  Activation("leaky_relu", {"negative_slope": 0.1}),
                                  Dense(4), Dense(2)),
        init="torch_default", optimizer=SGD(lr=0.05, momentum=0.9), batch_size=3, epochs=15,
        seed=7, shuffle=True), synthetic(8, 3, 2, seed=7)),
    # an activation on the inputs first (no parameters in layer 0), Adam on cross entropy
    "leading-activation-adam-xent": (NetworkSpec(
        input_shape=(4,), layers=(Activation("softsign"), Dense(6), Activation("silu"),
                                  Dense(3)),
        init="torch_default", loss="cross_entropy", optimizer=Adam(lr=0.01), batch_size=4,
        epochs=10, seed=8), classification(10, 4, 3, seed=8, n_test=3)),
}
LAYER_SPECS = [pytest.param(name, id=name) for name in LAYER_CASES]
ALL_BACKENDS = ("numpy", "torch", "jax")


def first_tensor(params):
    """(layer index, name) of the first parameter tensor in a tree."""
    return next((index, name) for index, layer in enumerate(params) for name in layer)


@pytest.mark.parametrize("case", LAYER_SPECS)
def test_parity_layer_form(case):
    """A network in the general layer form, trained in all three backends by one
    ``compare``: every backend within the policy, quantity by quantity."""
    for backend in ALL_BACKENDS:
        require(backend)
    spec, data = LAYER_CASES[case]
    assert spec.sizes is None and spec.activation is None and spec.activation_params is None
    report = compare(spec, data, backends=ALL_BACKENDS)
    assert [p.backend for p in report.parity] == ["torch", "jax"]
    for backend in ("torch", "jax"):
        assert_parity(report, backend)
    ref = report.results["numpy"]
    assert np.all(np.isfinite(ref.losses)) and ref.losses.shape == (
        spec.epochs * -(-data.x_train.shape[0] // spec.batch_size),)
    assert all(not np.array_equal(a, a0)            # every tensor trained
               for a, a0 in zip(leaves(ref.params), leaves(init_params(spec)), strict=True))


@pytest.mark.parametrize("case", LAYER_SPECS)
def test_negative_control_layer_form_perturbed_torch_fails(monkeypatch, case):
    """The same comparison fails when torch's first parameter moves by 1e-6."""
    require("torch")
    spec, data = LAYER_CASES[case]
    index, name = first_tensor(init_params(spec))
    if (index, name) == (0, "weight"):
        perturb_torch(monkeypatch)                    # conftest's: 0.weight[0, 0] += 1e-6
    else:
        def nudge(params, losses):
            params[index][name].flat[0] += 1e-6
        patch_train(monkeypatch, "torch", nudge)
    report = compare(spec, data, backends=("numpy", "torch"))
    assert not report.ok and "PARITY FAILED: torch" in str(report)
    d = report.parity[0].differences
    assert not d[f"{index}.{name}"].ok
    assert d[f"{index}.{name}"].max_abs == pytest.approx(1e-6, rel=1e-3)
    assert all(diff.ok for key, diff in d.items() if key not in (f"{index}.{name}", "predictions"))


#: the notebook's network, written as layers
NOTEBOOK_LAYERS = dict(input_shape=(2,), layers=(Dense(4), Activation("relu"), Dense(1)))


def test_layer_form_of_the_notebook_is_the_notebook_spec():
    spec = NetworkSpec(**NOTEBOOK_LAYERS)
    assert spec == notebook_spec() and hash(spec) == hash(notebook_spec())
    assert (spec.sizes, spec.activation, spec.activation_params) == ((2, 4, 1), "relu", {})
    assert spec.layers == notebook_spec().layers and spec.input_shape == (2,)
    assert spec.to_dict() == notebook_spec().to_dict()
    # negative control: another activation is another spec
    other = NetworkSpec(input_shape=(2,), layers=(Dense(4), Activation("tanh"), Dense(1)))
    assert other != notebook_spec() and other.activation == "tanh"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_layer_form_of_the_notebook_trains_exactly_as_the_shorthand(backend):
    """The layer form and ``notebook_spec()`` give bit-identical parameters and losses."""
    require(backend)
    data = notebook_data()
    layered = train(NetworkSpec(**NOTEBOOK_LAYERS), data, backend=backend)
    shorthand = train(notebook_spec(), data, backend=backend)
    got, expected = to_flat(layered.params), to_flat(shorthand.params)
    assert list(got) == list(expected) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    np.testing.assert_array_equal(layered.losses, shorthand.losses)
    assert not np.array_equal(expected["0.weight"], init_params(notebook_spec())[0]["weight"])


# ---------------------------------------------------------------- the ReLU kink

def assert_hits_kink(spec, data):
    """At step 0 the first batch's hidden pre-activations are exactly 0 and dL/dh is not."""
    hidden, _, output = init_params(spec)                    # Dense, ReLU, Dense
    w0, b0, w1, b1 = hidden["weight"], hidden["bias"], output["weight"], output["bias"]
    assert not b0.any() and not b1.any()
    x, y = data.x_train[:spec.batch_size], data.y_train[:spec.batch_size]   # step 0's batch
    z = x @ w0.T + b0                                        # (batch, hidden)
    assert np.all(z == 0.0)
    p = np.where(z > 0, z, 0.0) @ w1.T + b1                  # (batch, 1)
    upstream = (2 * (p - y) / p.size) @ w1                   # dL/dh, (batch, hidden)
    assert np.all(upstream != 0.0)


@pytest.mark.parametrize("case", ["relu-kink", "relu-kink-all-rows-zero"])
def test_kink_cases_hit_the_kink(case):
    spec, data = CASES[case]
    assert spec.batch_size == 2 and not spec.shuffle
    assert_hits_kink(spec, data)
    if case == "relu-kink":
        assert np.all(data.x_train[2:] != 0.0)               # the other rows train normally


def test_negative_control_kink_check_can_fail():
    """With a non-zero first row the pre-activations are not all 0."""
    spec, data = CASES["relu-kink"]
    x = data.x_train.copy()
    x[0] = 1.0
    with pytest.raises(AssertionError):
        assert_hits_kink(spec, Dataset(x, data.y_train, data.x_test, data.y_test))


@pytest.mark.parametrize("backend", [pytest.param("numpy", id="numpy")] + BACKENDS)
def test_kink_all_zero_rows_keep_hidden_layer_exactly(backend):
    """relu'(0) = 0: with only zero rows, the hidden layer never moves, in any backend."""
    require(backend)
    spec, data = CASES["relu-kink-all-rows-zero"]
    result = train(spec, data, backend=backend)
    hidden = init_params(spec)[0]
    np.testing.assert_array_equal(result.params[0]["weight"], hidden["weight"])
    np.testing.assert_array_equal(result.params[0]["bias"], hidden["bias"])
    assert result.params[2]["bias"].any()                    # the output bias did learn


def half_gradient_relu(backend):
    """ReLU through maximum: the same values, but derivative 0.5 at exactly 0."""
    if backend == "torch":
        import torch
        return lambda x: torch.maximum(x, torch.zeros_like(x))
    import jax.numpy as jnp
    return lambda x: jnp.maximum(x, 0.0)


def clear_jax_caches():
    import jax
    jax.clear_caches()


@pytest.mark.parametrize("case, expect_ok", [
    pytest.param("relu-kink", False, id="kink-catches-it"),
    pytest.param("relu-kink-all-rows-zero", False, id="all-zero-kink-catches-it"),
    pytest.param("notebook", True, id="notebook-misses-it"),
])
@pytest.mark.parametrize("backend", [
    pytest.param("torch", id="torch"),
    # JAX's runs clear its compilation caches (about 2 s each): CI runs them as slow tests
    pytest.param("jax", id="jax", marks=pytest.mark.slow)])
def test_negative_control_maximum_relu(monkeypatch, backend, case, expect_ok):
    """A ReLU with derivative 0.5 at 0 fails the kink cases (and only those)."""
    require(backend)
    importlib.import_module(f"nnparity.backends.{backend}")
    activations = importlib.import_module(f"nnparity.backends.{backend}.activations")
    spec, data = CASES[case]
    if backend == "jax":
        clear_jax_caches()                         # the activation name is a static jit arg
    try:
        with monkeypatch.context() as m:
            m.setitem(activations.ACTIVATIONS, "relu", half_gradient_relu(backend))
            report = compare(spec, data, backends=("numpy", backend))
    finally:
        if backend == "jax":
            clear_jax_caches()
    assert report.ok is expect_ok, str(report)
    if not expect_ok:
        (parity,) = report.parity
        assert not parity.differences["0.bias"].ok           # the hidden bias sees the 0.5
        assert "PARITY FAILED" in str(report)
    # restored: the real ReLU passes again
    assert compare(spec, data, backends=("numpy", backend)).ok


# ---------------------------------------------------------------- perturbed results

def patch_train(monkeypatch, backend, change):
    """Make backend ``backend`` return its real result with ``change(params, losses)``
    applied (to copies; ``params`` is the tree, ``params[0]["weight"]`` ...)."""
    module = importlib.import_module(f"nnparity.backends.{backend}")
    real_train = module.train

    def perturbed(*args, **kwargs):
        result = real_train(*args, **kwargs)
        params, losses = copy_tree(result.params), np.array(result.losses)
        change(params, losses)
        return result._replace(params=params, losses=losses)

    monkeypatch.setattr(module, "train", perturbed)


def bound(value):
    """The policy's allowed |a - e| at expected value ``value``."""
    return TOL.atol + TOL.rtol * abs(value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_control_perturbed_weight_fails(monkeypatch, backend):
    require(backend)
    patch_train(monkeypatch, backend, lambda params, losses: params[0]["weight"].__setitem__(
        (0, 0), params[0]["weight"][0, 0] + 1e-9))
    report = compare(notebook_spec(), notebook_data(), backends=("numpy", backend))
    assert not report.ok
    (parity,) = report.parity
    d = parity.differences
    assert not d["0.weight"].ok
    assert d["0.weight"].max_abs == pytest.approx(1e-9, rel=1e-4)
    assert d["0.bias"].ok and d["2.weight"].ok and d["2.bias"].ok and d["losses"].ok
    assert "NO" in str(report) and f"PARITY FAILED: {backend}" in str(report)


@pytest.mark.parametrize("factor, expect_ok", [
    pytest.param(0.5, True, id="half-the-bound-passes"),
    pytest.param(2.0, False, id="twice-the-bound-fails"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_perturbation_relative_to_policy(monkeypatch, backend, factor, expect_ok):
    """The harness's verdict flips at the policy's bound, not at exact equality."""
    require(backend)
    w00 = train(notebook_spec(), notebook_data()).params[0]["weight"][0, 0]
    delta = factor * bound(w00)
    patch_train(monkeypatch, backend, lambda params, losses: params[0]["weight"].__setitem__(
        (0, 0), params[0]["weight"][0, 0] + delta))
    report = compare(notebook_spec(), notebook_data(), backends=("numpy", backend))
    assert report.parity[0].differences["0.weight"].ok is expect_ok


@pytest.mark.parametrize("where", [
    pytest.param("2.weight", id="nan-in-2.weight"),
    pytest.param("losses", id="nan-in-losses"),
])
@pytest.mark.parametrize("side", [pytest.param("other", id="backend-side"),
                                  pytest.param("reference", id="reference-side")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_control_nan_on_one_side_fails(monkeypatch, backend, side, where):
    require(backend)

    def put_nan(params, losses):
        if where == "2.weight":
            params[2]["weight"][0, 1] = np.nan
        else:
            losses[-1] = np.nan

    patch_train(monkeypatch, backend if side == "other" else "numpy", put_nan)
    report = compare(notebook_spec(), notebook_data(), backends=("numpy", backend))
    assert not report.ok
    d = report.parity[0].differences
    assert not d[where].ok
    assert d[where].max_abs == math.inf
    assert d["0.weight"].ok and d["0.bias"].ok
    if where == "2.weight":
        assert not d["predictions"].ok                        # NaN propagates into predict
    else:
        assert d["predictions"].ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_on_both_sides_matches(monkeypatch, backend):
    """Two NaNs in the same place match (never cleaned with nan_to_num)."""
    require(backend)

    def put_nan(params, losses):
        losses[-1] = np.nan

    patch_train(monkeypatch, "numpy", put_nan)
    patch_train(monkeypatch, backend, put_nan)
    report = compare(notebook_spec(), notebook_data(), backends=("numpy", backend))
    assert report.ok, str(report)
    assert np.isnan(report.results[backend].losses[-1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_compare_reports_diverging_training(backend):
    """A run that diverges is a result to compare, not a crash: train() raises
    DivergenceError, and compare() reports the step each backend diverged at."""
    require(backend)
    spec = notebook_spec().replace(optimizer=SGD(lr=1e10), epochs=20)
    data = notebook_data()
    with pytest.raises(FloatingPointError) as exc:
        train(spec, data)
    report = compare(spec, data, backends=("numpy", backend))
    (parity,) = report.parity
    assert report.reference_diverged_at == exc.value.step
    assert parity.diverged_at == exc.value.step
    assert parity.differences == {} and report.ok
    assert "same step" in parity.diagnosis


# ---------------------------------------------------------------- sanity of the cases

def test_shuffle_changes_the_result():
    """Negative control for the shuffle case: shuffling is really applied."""
    spec, data = CASES["shuffle"]
    shuffled = train(spec, data)
    plain = train(spec.replace(shuffle=False), data)
    assert not np.allclose(shuffled.params[0]["weight"], plain.params[0]["weight"],
                           rtol=TOL.rtol, atol=TOL.atol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jax_x64_is_scoped_and_results_are_float64(backend):
    """float64 specs run in float64 and leave the global JAX x64 flag as it was."""
    require(backend)
    if backend == "jax":
        import jax
        before = jax.config.read("jax_enable_x64")
    spec, data = CASES["partial-last-batch"]
    result = train(spec, data, backend=backend)
    assert all(a.dtype == np.float64 for a in leaves(result.params))
    assert result.losses.dtype == np.float64
    if backend == "jax":
        assert jax.config.read("jax_enable_x64") == before
