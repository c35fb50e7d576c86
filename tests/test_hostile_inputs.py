"""Regression tests for the fuzz campaign's validation findings (issue 17).

Each test reproduces one finding (the number is the issue's) and has a negative
control: a valid value just inside the bound still passes. A rejection must be
a ``ValueError``/``TypeError`` naming the argument, raised before any work: the
``tripwire`` fixture makes every backend function that does work, the initial
parameters and the batch plan fail the test if they are called.
"""
from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest

import nnparity.backends
import nnparity.backends.api
from nnparity.backends import (activation_with_grad, evaluate, loss_with_grad, predict,
                               train)
from nnparity.shared import (SGD, Activation, Adam, AdamW, Dataset, Dense, Layer, NetworkSpec,
                             RMSprop, init_params, notebook_data, save_checkpoint)
from nnparity.shared.core import validation
from nnparity.shared.core.data import run_bytes
from nnparity.shared.core.init import check_params
from nnparity.shared.core.tree import copy_tree, map_tree
from nnparity.shared.core.validation import check_float, check_int, fail
from conftest import require

WORK = ("train", "step", "predict", "activation_with_grad", "loss_with_grad")

pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


@pytest.fixture
def tripwire(monkeypatch):
    """Fail the test if any backend does work, or the run's arrays are allocated."""
    def tripped(where):
        def call(*args, **kwargs):
            pytest.fail(f"{where} ran: the bad input was not rejected before work started",
                        pytrace=False)
        return call

    for name, (framework, _extra) in nnparity.backends.BACKENDS.items():
        if importlib.util.find_spec(framework) is None:
            continue
        module = nnparity.backends.get_backend(name)
        for function in WORK:
            monkeypatch.setattr(module, function, tripped(f"{name}.{function}"))
    for function in ("init_params", "batch_plan", "init_state"):
        monkeypatch.setattr(nnparity.backends.api, function, tripped(function))


def rejects(error, *fragments):
    """pytest.raises(error) whose message must contain every fragment (regex-escaped)."""
    return pytest.raises(error, match="(?s)" + ".*".join(map(re.escape, fragments)))


def spec(**changes) -> NetworkSpec:
    base = dict(sizes=(2, 4, 1), optimizer=SGD(lr=1e-3), epochs=1, batch_size=2)
    return NetworkSpec(**{**base, **changes})


def data(**changes) -> Dataset:
    d = notebook_data()
    arrays = dict(x_train=d.x_train.copy(), y_train=d.y_train.copy(), x_test=d.x_test.copy(),
                  y_test=d.y_test.copy())
    return Dataset(**{**arrays, **changes})


DIGITS_400 = "1" + "0" * 400


# ------------------------------------------------------------------ finding 2: huge integers

@pytest.mark.parametrize("text, field", [
    ('{"sizes": [1, 1], "optimizer": {"name": "sgd", "lr": %s}}' % DIGITS_400, "SGD.lr"),
    ('{"sizes": [1, 1], "optimizer": {"name": "adam", "betas": [%s, 0.9]}}' % DIGITS_400,
     "Adam.betas[0]"),
    ('{"sizes": [1, 1], "loss": "huber", "loss_params": {"delta": %s}}' % DIGITS_400,
     "loss_params['delta']"),
    ('{"sizes": [1, 2, 1], "activation": "leaky_relu", "activation_params": '
     '{"leaky_relu": {"negative_slope": -%s}}}' % DIGITS_400, "negative_slope"),
], ids=["lr", "betas", "delta", "negative_slope"])
def test_400_digit_number_in_a_float_field_is_a_value_error(text, field):
    with rejects(ValueError, field, "401-digit integer", "finite number"):
        NetworkSpec.from_json(text)


def test_huge_integer_as_keyword_argument_is_a_value_error():
    with rejects(ValueError, "RMSprop.eps", "finite number"):
        RMSprop(eps=10**400)
    with rejects(ValueError, "x=", "finite number"):
        check_float("x", -(10**400))


def test_300_digit_integer_in_a_float_field_passes():
    """Negative control: 1e300 is a finite float64, and a valid SGD lr in a float64 spec."""
    s = NetworkSpec.from_json('{"sizes": [1, 1], "optimizer": {"name": "sgd", "lr": 1%s}}'
                              % ("0" * 300))
    assert s.optimizer.lr == 1e300


# ------------------------------------------------------------------ finding 6: masked, matrix

def masked(array: np.ndarray, nan_under_mask: bool = True) -> np.ndarray:
    array = array.copy()
    mask = np.zeros(array.shape, bool)
    mask.flat[0] = True
    if nan_under_mask:
        array.flat[0] = np.nan
    return np.ma.masked_array(array, mask=mask)


ARRAY_KINDS = {
    "masked": masked,
    "fully-masked": lambda a: np.ma.masked_all(a.shape, a.dtype),
    "masked-nothing": lambda a: np.ma.masked_array(a.copy()),
    "matrix": lambda a: np.matrix(a) if a.ndim == 2 else np.matrix(a).T,
}


@pytest.mark.parametrize("kind", ARRAY_KINDS)
@pytest.mark.parametrize("field", ["x_train", "y_train", "x_test", "y_test"])
def test_dataset_rejects_masked_arrays_and_matrices(kind, field):
    array = getattr(notebook_data(), field)
    with rejects(TypeError, field, "plain NumPy array"):
        data(**{field: ARRAY_KINDS[kind](array)})


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_labels_reject_masked_arrays(kind):
    labels = np.array([0, 1, 2, 1])
    bad = np.ma.masked_array(labels, mask=[0, 1, 0, 0]) if kind != "matrix" else np.matrix(labels)
    with rejects(TypeError, "y_train", "plain NumPy array"):
        data(y_train=bad, y_test=np.array([2]))


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_every_entry_point_rejects_masked_arrays_and_matrices(kind, tripwire):
    s = spec()
    params = copy_tree(init_params(s))
    x = notebook_data().x_test
    make = ARRAY_KINDS[kind]
    with rejects(TypeError, "x", "plain NumPy array"):
        predict(s, params, make(x))
    bad = [{**params[0], "weight": make(params[0]["weight"])}] + params[1:]
    with rejects(TypeError, "params[0]['weight']", "plain NumPy array"):
        predict(s, bad, x)
    with rejects(TypeError, "params[0]['weight']", "plain NumPy array"):
        check_params(s, bad)
    bias = [params[0], params[1], {**params[2], "bias": make(params[2]["bias"])}]
    with rejects(TypeError, "params[2]['bias']", "plain NumPy array"):
        check_params(s, bias)
    p = np.array([[0.5, -1.0], [0.0, 0.1]])
    with rejects(TypeError, "p", "plain NumPy array"):
        loss_with_grad("mse", make(p), p.copy())
    with rejects(TypeError, "y", "plain NumPy array"):
        loss_with_grad("mse", p.copy(), make(p))
    with rejects(TypeError, "x", "plain NumPy array"):
        activation_with_grad("relu", make(p))


@pytest.mark.parametrize("kind", ARRAY_KINDS)
def test_save_checkpoint_rejects_masked_parameters(kind, tmp_path):
    """Before: NaN under a mask was saved, and load_checkpoint then refused the file."""
    s = spec()
    params = init_params(s)
    params[0] = {**params[0], "weight": ARRAY_KINDS[kind](params[0]["weight"])}
    with rejects(TypeError, "params[0]['weight']", "plain NumPy array"):
        save_checkpoint(tmp_path / "run.npz", s, params)
    assert not (tmp_path / "run.npz").exists()


def test_plain_arrays_and_memmaps_pass(tmp_path):
    """Negative control: the same values as plain arrays (and a read-only memmap) train."""
    d = notebook_data()
    path = tmp_path / "x.npy"
    np.save(path, d.x_train)
    x_train = np.load(path, mmap_mode="r")
    assert isinstance(x_train, np.memmap)
    result = train(spec(), Dataset(x_train, d.y_train, d.x_test, d.y_test))
    assert np.isfinite(result.losses).all()
    assert type(np.ma.masked_array(d.x_train).data) is np.ndarray     # .data is the way out


# ------------------------------------------------------------------ finding 7: float32 overflow

def test_predict_rejects_input_that_overflows_the_spec_dtype(tripwire):
    s32 = spec(dtype="float32")
    params = init_params(s32)
    with rejects(ValueError, "x[0, 0]", "1e+39", "float32"):
        predict(s32, params, np.array([[1e39, 1.0]]))
    with rejects(ValueError, "x[1, 1]", "-1e+39", "float32"):
        predict(s32, params, np.array([[1.0, 1.0], [1.0, -1e39]]))


@pytest.mark.parametrize("field, index", [("x_train", (2, 1)), ("y_train", (0, 0)),
                                          ("x_test", (0, 0)), ("y_test", (0, 0))])
def test_train_and_evaluate_reject_data_that_overflows_the_spec_dtype(field, index, tripwire):
    array = getattr(notebook_data(), field).copy()
    array[index] = -1e39
    d = data(**{field: array})             # a valid float64 Dataset
    s32 = spec(dtype="float32")
    where = f"{field}[{', '.join(map(str, index))}]"
    with rejects(ValueError, where, "-1e+39", "float32"):
        train(s32, d)
    with rejects(ValueError, where, "-1e+39", "float32"):
        evaluate(s32, init_params(s32), d)      # the shared function: not the tripwire's


def test_loss_with_grad_rejects_targets_that_overflow_p_dtype(tripwire):
    p = np.array([[0.5]], dtype=np.float32)
    with rejects(ValueError, "y[0, 0]", "1e+39", "float32"):
        loss_with_grad("mse", p, np.array([[1e39]]))


def test_values_just_inside_float32_pass():
    """Negative control: float32's largest value, given in float64, is accepted, and the
    same data trains in a float64 spec."""
    s32 = spec(dtype="float32")
    big = float(np.finfo(np.float32).max)
    out = predict(s32, init_params(s32), np.array([[big, 1.0], [-big, 0.0]]))
    assert out.dtype == np.float32 and out.shape == (2, 1)
    d = data(y_test=np.array([[1e39]]))
    assert np.isfinite(evaluate(spec(), init_params(spec()), d)["test_loss"])


# ------------------------------------------------------------------ finding 8: bounds, order

@pytest.mark.parametrize("changes, argument, value", [
    (dict(epochs=10**12), "epochs", str(10**12)),
    (dict(epochs=2**32), "epochs", str(2**32)),
    (dict(batch_size=2**32), "batch_size", str(2**32)),
    (dict(sizes=(2, 10**12, 1)), "sizes[1]", str(10**12)),
    (dict(sizes=(2**24 + 1, 1)), "sizes[0]", str(2**24 + 1)),
    (dict(sizes=(2**24, 2**24, 1)), "sizes", "parameters"),
    (dict(sizes=(1,) * 1025, activation="relu"), "sizes", "1025"),
], ids=["epochs-1e12", "epochs-2**32", "batch_size-2**32", "width-1e12", "width-2**24+1",
        "parameters", "layers"])
def test_spec_rejects_counts_no_run_can_reach(changes, argument, value, tripwire):
    with rejects(ValueError, argument, value):
        spec(**changes)


def test_spec_accepts_counts_just_inside_the_bounds():
    """Negative control: every bound itself is allowed, and such a spec round-trips."""
    s = spec(epochs=2**32 - 1, batch_size=2**32 - 1, seed=2**32 - 1)
    assert NetworkSpec.from_json(s.to_json()) == s
    assert hash(s) == hash(NetworkSpec.from_json(s.to_json()))
    spec(sizes=(2**24, 1))
    spec(sizes=(1,) * 1024)
    spec(sizes=(2**16, 2**16 - 1))            # 2**32 - 1 parameters


def test_unknown_backend_is_rejected_before_any_work(tripwire):
    """Before: sizes (2, 5000, 5000, 1) drew 25M initial parameters (2.4 s) first."""
    with rejects(ValueError, "backend", "'nope'", "'numpy'"):
        train(NetworkSpec(sizes=(2, 5000, 5000, 1), epochs=1), notebook_data(), backend="nope")


def test_unknown_backend_with_a_huge_network_is_the_backend_error(tripwire):
    s = NetworkSpec(sizes=(2, 2**24, 1), epochs=1)
    with rejects(ValueError, "backend", "'nope'"):
        train(s, notebook_data(), backend="nope")
    with rejects(ValueError, "backend", "'nope'"):
        predict(s, [], notebook_data().x_test, backend="nope")


def test_run_that_cannot_fit_in_memory_is_rejected_before_allocation(tripwire):
    """epochs=2**32-1 on 4 rows: a batch plan of 2**32 * 4 int64 (128 GiB) and 2**33
    losses; refused naming epochs, before anything is allocated."""
    with rejects(ValueError, "epochs", str(2**32 - 1), "fits in memory"):
        train(spec(epochs=2**32 - 1), notebook_data())


def test_network_that_cannot_fit_in_memory_is_rejected_before_allocation(monkeypatch,
                                                                        tripwire):
    monkeypatch.setattr(validation, "memory_limit", lambda: 2**30)     # a 1 GiB machine
    s = spec(sizes=(2, 2**14, 2**14, 1), optimizer=Adam())   # 2**28 parameters: 2 GiB, 6 with Adam
    with rejects(ValueError, "spec.layers", "Dense(units=16384)", "fits in memory"):
        train(s, notebook_data())
    wide = spec(sizes=(2, 2**14, 1))
    x = np.zeros((2**16, 2))                     # a hidden layer of 2**30 values: 8 GiB
    with rejects(ValueError, "x.shape", "(65536, 2)", "fits in memory"):
        predict(wide, init_params(wide), x)


def test_memory_bound_negative_control(monkeypatch):
    """A run just inside the limit trains; the same run with the limit a little lower
    is refused: the estimate is what decides."""
    s, d = spec(epochs=3), notebook_data()
    needed = sum(run_bytes(s, d.x_train.shape[0], epochs=3).values())
    monkeypatch.setattr(validation, "memory_limit", lambda: needed)
    assert train(s, d).losses.shape == (6,)
    monkeypatch.setattr(validation, "memory_limit", lambda: needed - 1)
    with rejects(ValueError, "fits in memory"):
        train(s, d)


# ------------------------------------------------------------------ finding 11: giant integers

@pytest.mark.parametrize("field", ["seed", "batch_size", "epochs"])
def test_5000_digit_integer_fields_are_value_errors(field):
    with rejects(ValueError, field, "<5001-digit integer>", "<= 2**32 - 1"):
        spec(**{field: 10**5000})
    with rejects(ValueError, field):
        spec(**{field: -(10**5000)})


def test_5000_digit_integer_in_json_is_a_value_error():
    with rejects(ValueError, "spec JSON", "digits"):
        NetworkSpec.from_json('{"sizes": [2, 1], "seed": 1%s}' % ("0" * 5000))


def test_fail_shows_any_value():
    """The message never fails to build: giant integers, nested giants, deep nesting."""
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    for value, shown in [(10**5000, "x=<5001-digit integer>"),
                         ([1, -(10**5000)], "x=[1, <negative 5001-digit integer>]"),
                         (deep, "x=[[[["), (10**77, "x=1000000")]:
        with rejects(ValueError, shown):
            fail("x", value, "something")
    with rejects(ValueError, "x=", "an integer"):
        check_int("x", 10**5000, 0, 10)


def test_seed_bounds_negative_control():
    assert spec(seed=0).seed == 0 and spec(seed=2**32 - 1).seed == 2**32 - 1
    np.random.RandomState(2**32 - 1)              # the bound is RandomState's
    with pytest.raises(ValueError):
        np.random.RandomState(2**32)


# ------------------------------------------------------------------ finding 12: params in dtype

#: the next float64 above float32's largest value: it rounds to that value in NumPy,
#: but torch refuses it as a float32 scalar (found by the fuzz suite)
F32_ABOVE_MAX = float(np.nextafter(np.finfo(np.float32).max, np.inf, dtype=np.float64))
F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("changes, argument", [
    (dict(activation="elu", activation_params={"elu": {"alpha": 1e300}}), "alpha"),
    (dict(activation="celu", activation_params={"celu": {"alpha": 1e-40}}), "alpha"),
    (dict(activation="leaky_relu", activation_params={"leaky_relu": {"negative_slope": 1e-45}}),
     "negative_slope"),
    (dict(activation="leaky_relu", activation_params={"leaky_relu": {"negative_slope": -1e39}}),
     "negative_slope"),
    (dict(loss="huber", loss_params={"delta": 1e39}), "delta"),
    (dict(loss="huber", loss_params={"delta": 1e-39}), "delta"),
    (dict(optimizer=SGD(lr=1e-40)), "SGD.lr"),
    (dict(optimizer=SGD(lr=1e39)), "SGD.lr"),
    (dict(optimizer=SGD(lr=0.1, momentum=1e-50)), "SGD.momentum"),
    (dict(optimizer=Adam(eps=1e-45)), "Adam.eps"),
    (dict(optimizer=Adam(betas=(1 - 1e-10, 0.999))), "Adam.betas"),
    (dict(optimizer=AdamW(weight_decay=1e-39)), "AdamW.weight_decay"),
    (dict(optimizer=RMSprop(alpha=1e-40)), "RMSprop.alpha"),
    (dict(activation="elu", activation_params={"elu": {"alpha": F32_ABOVE_MAX}}), "alpha"),
], ids=["elu-alpha-huge", "celu-alpha-subnormal", "leaky-subnormal", "leaky-huge",
        "huber-huge", "huber-subnormal", "sgd-lr-subnormal", "sgd-lr-huge",
        "momentum-underflows", "adam-eps-subnormal", "beta-rounds-to-1", "adamw-wd-subnormal",
        "rmsprop-alpha-subnormal", "elu-alpha-rounds-to-max"])
def test_parameters_must_be_representable_in_float32(changes, argument):
    with rejects(ValueError, argument, "float32"):
        spec(dtype="float32", **changes)
    with rejects(ValueError, argument, "float32"):
        spec(**changes).replace(dtype="float32")


@pytest.mark.parametrize("changes, argument", [
    (dict(activation="celu", activation_params={"celu": {"alpha": 1e-310}}), "alpha"),
    (dict(optimizer=SGD(lr=5e-324)), "SGD.lr"),
])
def test_parameters_must_be_normal_in_float64(changes, argument):
    with rejects(ValueError, argument, "float64"):
        spec(**changes)


@pytest.mark.parametrize("changes", [
    dict(activation="elu", activation_params={"elu": {"alpha": F32_MAX}}),
    dict(activation="celu", activation_params={"celu": {"alpha": 1.2e-38}}),
    dict(activation="leaky_relu", activation_params={"leaky_relu": {"negative_slope": 0.0}}),
    dict(activation="leaky_relu", activation_params={"leaky_relu": {"negative_slope": -0.0}}),
    dict(loss="huber", loss_params={"delta": 3.4e38}),
    dict(optimizer=SGD(lr=1.2e-38)),
    dict(optimizer=Adam(eps=0.0, betas=(0.0, 1 - 2**-24))),
    dict(optimizer=RMSprop(alpha=1.0 - 1e-10)),             # rounds to 1, which is allowed
], ids=["elu-max", "celu-tiny", "leaky-zero", "leaky-negative-zero", "huber-max", "lr-tiny",
        "adam-edges", "rmsprop-alpha-rounds-to-1"])
def test_parameters_at_the_edges_of_float32_pass(changes):
    """Negative control: float32's max and smallest normal, zeros, and a beta just below 1."""
    spec(dtype="float32", **changes)


def test_float64_keeps_what_float32_refuses():
    """Negative control: the refused float32 values are fine in a float64 spec."""
    spec(activation="elu", activation_params={"elu": {"alpha": 1e300}})
    spec(activation="celu", activation_params={"celu": {"alpha": 1e-40}})
    spec(optimizer=Adam(betas=(1 - 1e-10, 0.999)))


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_celu_with_tiny_alpha_is_finite_where_allowed(backend):
    """celu with alpha=1e-40 was NaN in JAX for float32 (flushed to 0); alpha=1.2e-38,
    float32's smallest normal, is finite in every backend."""
    if backend != "numpy":
        require(backend)
    x = np.array([-2.0, -1e-30, 0.0, 1e-30, 1.0], dtype=np.float32)
    f, df = activation_with_grad("celu", x, backend=backend, alpha=1.2e-38)
    assert np.isfinite(f).all() and np.isfinite(df).all()
    with rejects(ValueError, "alpha", "float32"):
        activation_with_grad("celu", x, backend=backend, alpha=1e-40)
    with rejects(ValueError, "delta", "float32"):
        loss_with_grad("huber", x[:, None], x[:, None].copy(), backend=backend, delta=1e39)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_parameters_at_float32_max_work_in_every_backend(backend):
    """torch raised 'value cannot be converted to type float without overflow' for
    alpha just above float32's largest value, which NumPy rounds to it."""
    if backend != "numpy":
        require(backend)
    x = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    for name, key in (("elu", "alpha"), ("leaky_relu", "negative_slope")):
        with rejects(ValueError, key, "float32"):
            activation_with_grad(name, x, backend=backend, **{key: F32_ABOVE_MAX})
        f, df = activation_with_grad(name, x, backend=backend, **{key: F32_MAX})
        assert f.dtype == np.float32 and f[2] == 1.0


# ------------------------------------------------------------------ finding 13: strides, progress

@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_predict_accepts_negative_stride_and_strided_params(backend):
    if backend != "numpy":
        require(backend)
    s = spec()
    params = init_params(s)
    flipped = map_tree(lambda a: np.flip(np.flip(a, 0).copy(), 0), params)
    strided = map_tree(lambda a: np.repeat(a, 2, axis=-1)[..., ::2], params)
    assert flipped[0]["weight"].strides[0] < 0 and flipped[2]["bias"].strides[0] < 0
    assert not strided[0]["weight"].flags.c_contiguous
    x = notebook_data().x_train
    expected = predict(s, params, x, backend=backend)     # the same backend: bitwise equal
    np.testing.assert_array_equal(predict(s, flipped, x, backend=backend), expected)
    np.testing.assert_array_equal(predict(s, strided, x, backend=backend), expected)
    np.testing.assert_array_equal(predict(s, params, np.flip(np.flip(x, 0).copy(), 0),
                                          backend=backend), expected)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_elementwise_functions_accept_any_layout(backend):
    """Found by the fuzz suite: activation_with_grad on np.flip of a (1,) array (a
    negative stride NumPy still calls contiguous) raised torch's own error."""
    if backend != "numpy":
        require(backend)
    x = np.array([[-1.5, 0.0, 2.0]])
    layouts = (x[::-1], np.repeat(x, 2, axis=1)[:, ::2], np.flip(np.flip(x).copy()),
               np.array([-1.5])[::-1])
    assert layouts[0].flags.c_contiguous and min(layouts[0].strides) < 0
    assert not layouts[1].flags.c_contiguous
    for layout in layouts:
        f, df = activation_with_grad("elu", layout, backend=backend)
        expected = activation_with_grad("elu", np.ascontiguousarray(layout), backend=backend)
        np.testing.assert_array_equal(f, expected[0])
        np.testing.assert_array_equal(df, expected[1])
        if layout.ndim == 2:
            value, grad = loss_with_grad("mse", layout, x[::-1], backend=backend)
            np.testing.assert_array_equal(grad, loss_with_grad("mse", x, x.copy(),
                                                               backend=backend)[1])


@pytest.mark.parametrize("progress, error", [
    (5, TypeError), ("print", TypeError), (lambda: None, TypeError),
    (lambda a, b, c, d: None, TypeError)], ids=["int", "str", "no-arguments", "four-arguments"])
def test_progress_is_checked_before_training(progress, error, tripwire):
    with rejects(error, "progress", "callable"):
        train(spec(epochs=40), notebook_data(), progress=progress)


def test_progress_negative_control():
    calls = []
    train(spec(epochs=40), notebook_data(), progress=lambda *a: calls.append(a))
    train(spec(epochs=40), notebook_data(), progress=lambda done, total, loss: None)
    train(spec(epochs=40), notebook_data(), progress=print)     # a builtin without a signature
    assert [c[:2] for c in calls][-1] == (40, 40)


@pytest.mark.parametrize("record_every", [0, -1, 2**63, 10**5000, True, 1.0],
                         ids=["0", "-1", "2**63", "10**5000", "True", "1.0"])
def test_record_every_is_bounded(record_every, tripwire):
    with pytest.raises((ValueError, TypeError), match="record_every"):
        train(spec(), notebook_data(), record_every=record_every)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_record_every_beyond_the_run_passes(backend):
    """Negative control: a record_every longer than the run keeps step 0's snapshot."""
    if backend != "numpy":
        require(backend)
    for dtype in ("float64", "float32"):
        result = train(spec(dtype=dtype), notebook_data(), backend=backend,
                       record_every=2**62)
        assert [snap.step for snap in result.snapshots] == [0]


# ------------------------------------------------------------------ the layer form of a spec

LAYERS = (Dense(4), Activation("relu"), Dense(3), Dense(1))      # not an MLP


def layer_spec(**changes) -> NetworkSpec:
    base = dict(input_shape=(2,), layers=LAYERS, optimizer=SGD(lr=1e-3), epochs=1,
                batch_size=2)
    return NetworkSpec(**{**base, **changes})


@pytest.mark.parametrize("call, error, fragments", [
    pytest.param(lambda: Dense(10**5000), ValueError,
                 ("Dense.units", "<5001-digit integer>", "2**24"), id="units-5000-digits"),
    pytest.param(lambda: layer_spec(input_shape=(10**5000,)), ValueError,
                 ("input_shape[0]", "<5001-digit integer>", "2**24"), id="input-5000-digits"),
    pytest.param(lambda: layer_spec(input_shape=(-(10**5000),)), ValueError,
                 ("input_shape[0]", "<negative 5001-digit integer>"), id="input-negative-giant"),
    pytest.param(lambda: layer_spec(input_shape=np.array([[2]])), TypeError,
                 ("input_shape", "array([[2]])", "a tuple of 1 to 8"), id="input-2d-array"),
    pytest.param(lambda: layer_spec(input_shape=np.array(2)), TypeError,
                 ("input_shape", "array(2)", "a tuple of 1 to 8"), id="input-0d-array"),
    pytest.param(lambda: NetworkSpec(sizes=(2, 4, 1), input_shape=np.array([2, 3])),
                 ValueError, ("input_shape", "array([2, 3])", "(2,), the input shape"),
                 id="sizes-with-an-array-input_shape"),
    pytest.param(lambda: NetworkSpec(sizes=(2, 4, 1), layers=np.array([1, 2])),
                 ValueError, ("layers", "array([1, 2])", "the layers sizes=(2, 4, 1) builds"),
                 id="sizes-with-array-layers"),
    pytest.param(lambda: Activation("leaky_relu", (([], None),)), TypeError,
                 ("Activation('leaky_relu').params", "a mapping"),
                 id="activation-params-unhashable-pairs"),
    pytest.param(lambda: layer_spec(input_shape=(2**24,), layers=(Dense(2**24),)), ValueError,
                 ("layers", "281474993487872 parameters", "at most 4294967295"),
                 id="too-many-parameters"),
    pytest.param(lambda: layer_spec(layers=(Activation("relu"),) * 1024 + (Dense(1),)),
                 ValueError, ("layers", "1025 layers", "1 to 1024"), id="too-many-layers"),
    # Dense acts on the last axis, so a 2-axis input keeps 2 axes: the losses take (batch, k)
    pytest.param(lambda: layer_spec(input_shape=(2, 3), layers=(Dense(4),)), ValueError,
                 ("layers", "an output of shape (2, 4)", "one axis"), id="output-two-axes"),
    pytest.param(lambda: layer_spec(layers=(Layer(),)), TypeError,
                 ("layers[0]", "Layer object", "a layer spec"), id="bare-base-layer"),
    pytest.param(lambda: layer_spec(layers=(Dense,)), TypeError,
                 ("layers[0]", "Dense", "a layer spec"), id="a-class-not-a-layer"),
    pytest.param(lambda: NetworkSpec.from_json(
        '{"input_shape": [2], "layers": [{"kind": "dense", "units": 1%s}]}' % ("0" * 5000)),
                 ValueError, ("spec JSON", "digits"), id="json-units-5000-digits"),
    pytest.param(lambda: NetworkSpec.from_json(
        '{"input_shape": [2], "layers": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                 ValueError, ("spec JSON", "nested too deeply"), id="json-layers-nested"),
    pytest.param(lambda: NetworkSpec.from_json(json.dumps(
        {"input_shape": [2], "layers": [{"kind": "activation", "name": "leaky_relu",
                                         "params": {"negative_slope": [[[1]]]}},
                                        {"kind": "dense", "units": 1}]})),
                 TypeError, ("Activation('leaky_relu').params['negative_slope']", "[[[1]]]",
                             "real number"), id="json-activation-param-nested"),
    pytest.param(lambda: NetworkSpec.from_json(
        '{"input_shape": [2], "layers": [{"kind": "activation", "name": "elu", '
        '"params": {"alpha": NaN}}, {"kind": "dense", "units": 1}]}'),
                 ValueError, ("Activation('elu').params['alpha']", "nan", "finite"),
                 id="json-activation-param-nan"),
    pytest.param(lambda: NetworkSpec.from_json(json.dumps(
        {"input_shape": [2], "layers": [{"kind": "dense", "units": 4}, {"kind": "dense",
                                                                         "units": 1, 7: 1}]})),
                 ValueError, ("layers[1]['7']", "fields of Dense"), id="json-numeric-field"),
])
def test_hostile_layer_specs_are_refused_by_name(call, error, fragments, tripwire):
    with rejects(error, *fragments):
        call()


def test_a_million_layers_in_json_are_refused_before_any_is_built(monkeypatch):
    """The count is checked before a million layer specs are built (which took 15 s)."""
    import nnparity.shared.core.spec as spec_module
    built = []
    real = spec_module.layer_from_dict
    monkeypatch.setattr(spec_module, "layer_from_dict",
                        lambda *a, **k: built.append(1) or real(*a, **k))
    text = json.dumps({"input_shape": [2],
                       "layers": [{"kind": "activation", "name": "relu"}] * 10**5})
    with rejects(ValueError, "layers", "100000 layers", "1 to 1024"):
        NetworkSpec.from_json(text)
    assert built == []
    NetworkSpec.from_json(json.dumps(layer_spec().to_dict()))          # negative control
    assert len(built) == len(LAYERS)


def test_layer_form_at_the_bounds_passes():
    """Negative control: NumPy integers, an array input_shape, 1024 layers and the
    widest Dense layer are accepted."""
    assert Dense(np.int64(4)) == Dense(4) and type(Dense(np.int64(4)).units) is int
    assert layer_spec(input_shape=np.array([2])).input_shape == (2,)
    deep = layer_spec(layers=(Activation("relu"),) * 1023 + (Dense(1),))
    assert len(deep.layers) == 1024 and deep.sizes is None
    assert layer_spec(input_shape=(1,), layers=(Dense(2**24),)).n_parameters == 2 * 2**24


def test_layer_network_that_cannot_fit_in_memory_is_rejected(monkeypatch, tripwire):
    monkeypatch.setattr(validation, "memory_limit", lambda: 2**30)     # a 1 GiB machine
    s = layer_spec(layers=(Dense(2**14), Dense(2**14), Activation("tanh"), Dense(1)),
                   optimizer=Adam())
    with rejects(ValueError, "spec.layers", "fits in memory"):
        train(s, notebook_data())
