"""Input validation: every rule raises ValueError/TypeError naming the field and the value.

Messages have the project's one format, ``name=value is not allowed: expected ...``;
each ``match`` below requires the field's name immediately followed by the value.
"""
from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

import nnparity.backends
from nnparity.backends import available_backends, predict, train
from nnparity.shared import (SGD, Activation, Dataset, Dense, NetworkSpec, compare, init_params,
                             notebook_data, notebook_spec)
from conftest import require

BOGUS = "not_a_real_name"


def named(field: str, value: str) -> str:
    """A regex for a message naming ``field`` (a regex) and then ``value`` (literal text)."""
    return rf"{field}\W{{1,3}}{re.escape(value)}"


# ---------------------------------------------------------------- NetworkSpec

SPEC_ERRORS = [
    pytest.param(dict(sizes=(2,)), ValueError, named("sizes", "(2,)"), id="sizes-one-entry"),
    pytest.param(dict(sizes=()), ValueError, named("sizes", "()"), id="sizes-empty"),
    pytest.param(dict(sizes=(2, 0, 1)), ValueError, named(r"sizes\[1\]", "0"),
                 id="sizes-zero-width"),
    pytest.param(dict(sizes=(2, 4, -1)), ValueError, named(r"sizes\[2\]", "-1"),
                 id="sizes-negative-width"),
    pytest.param(dict(sizes=(2, 4.0, 1)), TypeError, named(r"sizes\[1\]", "4.0"), id="sizes-float"),
    pytest.param(dict(sizes=(2, True, 1)), TypeError, named(r"sizes\[1\]", "True"),
                 id="sizes-bool"),
    pytest.param(dict(sizes=("2", 1)), TypeError, named(r"sizes\[0\]", "'2'"),
                 id="sizes-str-width"),
    pytest.param(dict(sizes="21"), TypeError, named("sizes", "'21'"), id="sizes-str"),
    pytest.param(dict(sizes=5), TypeError, named("sizes", "5"), id="sizes-int"),
    pytest.param(dict(sizes=(2, 4, 1), activation=BOGUS), ValueError,
                 named("activation", repr(BOGUS)),
                 id="activation-unknown"),
    pytest.param(dict(sizes=(2, 4, 4, 1), activation=("relu", BOGUS)), ValueError,
                 named(r"activation\[1\]", repr(BOGUS)), id="activation-tuple-unknown"),
    pytest.param(dict(sizes=(2, 4, 1), activation=("relu", "relu")), ValueError,
                 named("activation", "('relu', 'relu')"), id="activation-tuple-too-long"),
    pytest.param(dict(sizes=(2, 4, 4, 1), activation=("relu",)), ValueError,
                 named("activation", "('relu',)"), id="activation-tuple-too-short"),
    pytest.param(dict(sizes=(2, 1), activation=("relu",)), ValueError,
                 named("activation", "('relu',)"), id="activation-tuple-no-hidden"),
    pytest.param(dict(sizes=(2, 4, 1), activation=3), TypeError, named("activation", "3"),
                 id="activation-int"),
    pytest.param(dict(sizes=(2, 1), init=BOGUS), ValueError, named("init", repr(BOGUS)),
                 id="init-unknown"),
    pytest.param(dict(sizes=(2, 1), loss=BOGUS), ValueError, named("loss", repr(BOGUS)),
                 id="loss-unknown"),
    pytest.param(dict(sizes=(2, 1), dtype="float16"), ValueError, named("dtype", "'float16'"),
                 id="dtype-float16"),
    pytest.param(dict(sizes=(2, 1), dtype=BOGUS), ValueError, named("dtype", repr(BOGUS)),
                 id="dtype-unknown"),
    pytest.param(dict(sizes=(2, 1), optimizer="sgd"), TypeError, named("optimizer", "'sgd'"),
                 id="optimizer-str"),
    pytest.param(dict(sizes=(2, 1), optimizer={"name": "sgd", "lr": 0.1}), TypeError,
                 named("optimizer", "{'name': 'sgd'"), id="optimizer-dict"),
    pytest.param(dict(sizes=(2, 1), batch_size=0), ValueError, named("batch_size", "0"),
                 id="batch_size-0"),
    pytest.param(dict(sizes=(2, 1), batch_size=2.0), TypeError, named("batch_size", "2.0"),
                 id="batch_size-float"),
    pytest.param(dict(sizes=(2, 1), epochs=-1), ValueError, named("epochs", "-1"), id="epochs--1"),
    pytest.param(dict(sizes=(2, 1), epochs=True), TypeError, named("epochs", "True"),
                 id="epochs-bool"),
    pytest.param(dict(sizes=(2, 1), seed=-1), ValueError, named("seed", "-1"), id="seed-negative"),
    pytest.param(dict(sizes=(2, 1), seed=2**32), ValueError, named("seed", str(2**32)),
                 id="seed-2**32"),
    pytest.param(dict(sizes=(2, 1), seed=1.0), TypeError, named("seed", "1.0"), id="seed-float"),
    pytest.param(dict(sizes=(2, 1), shuffle=1), TypeError, named("shuffle", "1"), id="shuffle-int"),
    pytest.param(dict(sizes=(2, 1), shuffle="yes"), TypeError, named("shuffle", "'yes'"),
                 id="shuffle-str"),
    pytest.param(dict(sizes=(2, 1), shuffle=None), TypeError, named("shuffle", "None"),
                 id="shuffle-none"),
]


@pytest.mark.parametrize("kwargs, error, match", SPEC_ERRORS)
def test_spec_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        NetworkSpec(**kwargs)


#: the general form (input_shape, layers)
LAYER_SPEC_ERRORS = [
    pytest.param(dict(input_shape=(3,), layers=(Activation("tanh"), Activation("relu"))),
                 ValueError, named("layers", "'2 layers without parameters'"),
                 id="no-parameters"),
    pytest.param(dict(input_shape=(3,), layers=()), ValueError, named("layers", "'0 layers'"),
                 id="no-layers"),
    pytest.param(dict(layers=(Dense(2),)), TypeError, named("input_shape", "None"),
                 id="no-input_shape"),
    pytest.param(dict(input_shape=(3,), layers=[Dense(2), "relu"]), TypeError,
                 named(r"layers\[1\]", "'relu'"), id="layer-a-str"),
    pytest.param(dict(input_shape=(3,), layers=(Dense(2),), activation="relu"), ValueError,
                 named("activation", "'relu'"), id="activation-with-layers"),
    pytest.param(dict(sizes=(3, 2), input_shape=(3,), layers=(Dense(3),)), ValueError,
                 named("layers", "(Dense(units=3),)"), id="layers-not-what-sizes-builds"),
]


@pytest.mark.parametrize("kwargs, error, match", LAYER_SPEC_ERRORS)
def test_layer_form_spec_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        NetworkSpec(**kwargs)


@pytest.mark.parametrize("layers", [
    pytest.param((Dense(2),), id="one-dense"),
    pytest.param((Activation("tanh"), Dense(2)), id="activation-first"),
    pytest.param((Dense(4), Activation("tanh"), Activation("relu"), Dense(2)),
                 id="activations-in-a-row"),
    pytest.param((Dense(4), Dense(2), Activation("sigmoid")), id="activation-last"),
])
def test_layer_form_spec_accepts(layers):
    """Negative control: any order of layers with at least one Dense is a network;
    the shorthand fields stay None unless the layers form an MLP."""
    spec = NetworkSpec(input_shape=(3,), layers=layers)
    assert spec.layers == layers and spec.n_outputs == 2
    assert (spec.sizes is None) == (layers != (Dense(2),))
    assert NetworkSpec.from_json(spec.to_json()) == spec


def test_spec_rejects_through_replace():
    """replace() validates again, so a valid spec cannot be turned into an invalid one:
    every case above, through replace()."""
    base = NetworkSpec(sizes=(2, 4, 1))
    wrong = []
    for case in SPEC_ERRORS:
        kwargs, error, match = case.values
        try:
            base.replace(**kwargs)
        except error as exc:
            if not re.search(match, str(exc)):
                wrong.append(f"[{case.id}] {str(exc)!r} does not match {match!r}")
        except Exception as exc:                            # noqa: BLE001 (reported below)
            wrong.append(f"[{case.id}] raised {exc!r}, not {error.__name__}")
        else:
            wrong.append(f"[{case.id}] replace({kwargs}) was accepted")
    assert not wrong, "\n".join(wrong)


SPEC_ACCEPTED = [
    pytest.param(dict(sizes=(1, 1)), id="smallest-net"),
    pytest.param(dict(sizes=[2, 4, 1]), id="sizes-list"),
    pytest.param(dict(sizes=(np.int64(2), np.int32(3), 1)), id="sizes-numpy-ints"),
    pytest.param(dict(sizes=(2, 4, 4, 1), activation=("relu", "identity")), id="activation-tuple"),
    pytest.param(dict(sizes=(2, 4, 4, 1), activation=["relu", "identity"]), id="activation-list"),
    pytest.param(dict(sizes=(2, 1), activation=()), id="activation-empty-tuple-no-hidden"),
    pytest.param(dict(sizes=(2, 1), batch_size=1), id="batch_size-1"),
    pytest.param(dict(sizes=(2, 1), epochs=0), id="epochs-0"),
    pytest.param(dict(sizes=(2, 1), seed=0), id="seed-0"),
    pytest.param(dict(sizes=(2, 1), seed=2**32 - 1), id="seed-max"),
    pytest.param(dict(sizes=(2, 1), dtype="float32"), id="dtype-float32"),
    pytest.param(dict(sizes=(2, 1), shuffle=True), id="shuffle-true"),
    pytest.param(dict(sizes=(2, 1), init="he_normal"), id="init-he_normal"),
]


@pytest.mark.parametrize("kwargs", SPEC_ACCEPTED)
def test_spec_accepts_boundary_values(kwargs):
    """Negative control for the rules above: the allowed neighbours are accepted."""
    spec = NetworkSpec(**kwargs)
    assert all(type(s) is int for s in spec.sizes)
    assert isinstance(spec.activation, (str, tuple))
    hidden = [layer for layer in spec.layers if isinstance(layer, Activation)]
    assert len(hidden) == len(spec.sizes) - 2


def test_spec_defaults_are_the_notebook():
    assert NetworkSpec(sizes=(2, 4, 1)) == notebook_spec()
    spec = notebook_spec()
    assert (spec.sizes, spec.activation, spec.init, spec.loss, spec.optimizer, spec.batch_size,
            spec.epochs, spec.seed, spec.dtype, spec.shuffle) == (
        (2, 4, 1), "relu", "uniform_fan_in", "mse", SGD(lr=1e-5), 2, 1000, 99, "float64", False)


def test_spec_is_frozen():
    spec = notebook_spec()
    with pytest.raises(AttributeError):
        spec.epochs = 3


SGD_ERRORS = [
    pytest.param(0, ValueError, "0", id="zero"),
    pytest.param(0.0, ValueError, "0.0", id="zero-float"),
    pytest.param(-1e-5, ValueError, "-1e-05", id="negative"),
    pytest.param(math.nan, ValueError, "nan", id="nan"),
    pytest.param(math.inf, ValueError, "inf", id="inf"),
    pytest.param(-math.inf, ValueError, "-inf", id="neg-inf"),
    pytest.param(True, TypeError, "True", id="bool"),
    pytest.param("0.1", TypeError, "'0.1'", id="string"),
    pytest.param(None, TypeError, "None", id="none"),
]


@pytest.mark.parametrize("lr, error, shown", SGD_ERRORS)
def test_sgd_rejects_lr(lr, error, shown):
    with pytest.raises(error, match=named(r"lr", shown) + r"(?![\d.e])"):
        SGD(lr=lr)


@pytest.mark.parametrize("lr", [pytest.param(1e-300, id="tiny"), pytest.param(1, id="int-1"),
                                pytest.param(np.float32(0.5), id="float32"),
                                pytest.param(1e300, id="huge")])
def test_sgd_accepts_positive_finite_lr(lr):
    assert SGD(lr=lr).lr == float(lr)


# ---------------------------------------------------------------- Dataset

def notebook_arrays():
    d = notebook_data()
    return dict(x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)


def with_value(array, index, value):
    array = array.copy()
    array[index] = value
    return array


def dataset_errors():
    a = notebook_arrays()
    x, y, xt, yt = a["x_train"], a["y_train"], a["x_test"], a["y_test"]
    return [
        pytest.param(dict(x_train=x.astype(np.int64)), TypeError,
                     named(r"x_test\.dtype", "'float64'"),
                     id="x_train-int-x_test-float"),
        pytest.param(dict(x_train=x > 25), TypeError,
                     named(r"x_train\.dtype", "'bool'"),
                     id="x_train-bool"),
        pytest.param(dict(y_train=y.astype(np.int64)), TypeError,
                     named(r"y_test\.dtype", "'float64'"),
                     id="y_train-int-y_test-float"),
        pytest.param(dict(x_train=x.astype(np.float16)), TypeError,
                     named(r"x_train\.dtype", "'float16'"), id="x_train-float16"),
        pytest.param(dict(x_test=xt.astype(bool)), TypeError, named(r"x_test\.dtype", "'bool'"),
                     id="x_test-bool"),
        pytest.param(dict(x_train=x.tolist()), TypeError, named("x_train", "[[22.5"),
                     id="x_train-list"),
        pytest.param(dict(x_train=x[:, 0]), ValueError, named(r"x_train\.ndim", "1"),
                     id="x_train-1d"),
        # rows of any shape are allowed (input_shape), as long as train and test agree
        pytest.param(dict(x_train=x[:, :, None]), ValueError, named(r"x_test\.shape", "(1, 2)"),
                     id="x_train-3d-x_test-2d"),
        pytest.param(dict(y_test=yt[:, :, None]), ValueError, named(r"y_test\.shape", "(1, 1, 1)"),
                     id="y_test-3d"),
        pytest.param(dict(y_train=y[:, 0]), ValueError, named(r"y_train\.shape", "(4,)"),
                     id="y_train-1d"),
        pytest.param(dict(x_train=with_value(x, (1, 0), np.nan)), ValueError,
                     named(r"x_train\[1, 0\]", "nan"), id="x_train-nan"),
        pytest.param(dict(y_train=with_value(y, (2, 0), -np.inf)), ValueError,
                     named(r"y_train\[2, 0\]", "-inf"), id="y_train-neginf"),
        pytest.param(dict(x_test=with_value(xt, (0, 1), np.inf)), ValueError,
                     named(r"x_test\[0, 1\]", "inf"), id="x_test-inf"),
        pytest.param(dict(y_test=with_value(yt, (0, 0), np.nan)), ValueError,
                     named(r"y_test\[0, 0\]", "nan"), id="y_test-nan"),
        pytest.param(dict(y_train=y[:3]), ValueError, named(r"y_train\.shape", "(3, 1)"),
                     id="train-row-mismatch"),
        pytest.param(dict(y_test=np.ones((2, 1))), ValueError, named(r"y_test\.shape", "(2, 1)"),
                     id="test-row-mismatch"),
        pytest.param(dict(x_train=x[:0], y_train=y[:0]), ValueError,
                     named(r"x_train\.shape", "(0, 2)"), id="train-empty"),
        pytest.param(dict(x_test=xt[:0], y_test=yt[:0]), ValueError,
                     named(r"x_test\.shape", "(0, 2)"), id="test-empty"),
        pytest.param(dict(x_test=np.ones((1, 3))), ValueError, named(r"x_test\.shape", "(1, 3)"),
                     id="x-column-mismatch"),
        pytest.param(dict(y_test=np.ones((1, 2))), ValueError, named(r"y_test\.shape", "(1, 2)"),
                     id="y-column-mismatch"),
    ]


@pytest.mark.parametrize("changes, error, match", dataset_errors())
def test_dataset_rejects(changes, error, match):
    with pytest.raises(error, match=match):
        Dataset(**{**notebook_arrays(), **changes})


def test_dataset_accepts_valid_data():
    """Negative control: the notebook data, float32 data and a one-row set are accepted."""
    a = notebook_arrays()
    Dataset(**a)
    Dataset(**{k: v.astype(np.float32) for k, v in a.items()})
    Dataset(a["x_train"][:1], a["y_train"][:1], a["x_test"], a["y_test"])
    Dataset(*a.values())                # positional order x_train, y_train, x_test, y_test
    Dataset(a["x_train"][:, :, None], a["y_train"], a["x_test"][:, :, None], a["y_test"])


# ---------------------------------------------------------------- train / predict / compare

@pytest.mark.parametrize("spec, match", [
    pytest.param(notebook_spec().replace(sizes=(3, 4, 1)), named(r"x_train\.shape", "(4, 2)"),
                 id="input-width"),
    pytest.param(notebook_spec().replace(sizes=(2, 4, 2)), named(r"y_train\.shape", "(4, 1)"),
                 id="output-width"),
])
@pytest.mark.parametrize("entry", ["train", "compare"])
def test_data_must_fit_spec(spec, match, entry):
    with pytest.raises(ValueError, match=match):
        if entry == "train":
            train(spec, notebook_data())
        else:
            compare(spec, notebook_data(), backends=("numpy",))


def test_train_rejects_non_spec_and_non_dataset():
    d = notebook_data()
    with pytest.raises(TypeError, match=named("spec", "None")):
        train(None, d)
    with pytest.raises(TypeError, match="data"):
        train(notebook_spec(), (d.x_train, d.y_train, d.x_test, d.y_test))


def assert_lists_backends(excinfo, bad):
    message = str(excinfo.value)
    assert repr(bad) in message
    for name in ("numpy", "torch", "jax"):
        assert name in message


@pytest.mark.parametrize("bad", [pytest.param("tensorflow", id="tensorflow"),
                                 pytest.param("NumPy", id="wrong-case"),
                                 pytest.param("", id="empty")])
def test_unknown_backend(bad):
    spec, d = notebook_spec().replace(epochs=1), notebook_data()
    with pytest.raises(ValueError, match=named("backend", repr(bad))) as excinfo:
        train(spec, d, backend=bad)
    assert_lists_backends(excinfo, bad)
    with pytest.raises(ValueError) as excinfo:
        predict(spec, init_params(spec), d.x_test, backend=bad)
    assert_lists_backends(excinfo, bad)
    with pytest.raises(ValueError) as excinfo:
        compare(spec, d, backends=("numpy", bad))
    assert_lists_backends(excinfo, bad)


def test_unknown_backend_not_a_string():
    with pytest.raises((ValueError, TypeError), match=named("backend", "None")):
        train(notebook_spec().replace(epochs=1), notebook_data(), backend=None)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_missing_framework_via_sys_modules(monkeypatch, framework):
    """``sys.modules[name] = None`` makes the framework unimportable, installed or not."""
    monkeypatch.setitem(sys.modules, framework, None)
    spec, d = notebook_spec().replace(epochs=1), notebook_data()
    extra = rf"nnparity\[{framework}\]"
    assert framework not in available_backends()
    assert "numpy" in available_backends()
    with pytest.raises(ImportError, match=extra):
        train(spec, d, backend=framework)
    with pytest.raises(ImportError, match=extra):
        predict(spec, init_params(spec), d.x_test, backend=framework)
    with pytest.raises(ImportError, match=extra):
        compare(spec, d, backends=("numpy", framework))
    train(spec, d, backend="numpy")                   # the numpy backend is unaffected


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_missing_framework_via_find_spec(monkeypatch, framework):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == framework or name.startswith(framework + "."):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(nnparity.backends.registry.importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=rf"{framework}.*nnparity\[{framework}\]"):
        train(notebook_spec().replace(epochs=1), notebook_data(), backend=framework)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_available_backends_lists_installed_frameworks(framework):
    """Negative control for the missing-framework tests: installed means available."""
    require(framework)
    assert framework in available_backends()
    assert available_backends()[0] == "numpy"


def test_require_skips_or_fails_under_ci(monkeypatch):
    """The conftest helper: a missing framework skips, but fails when CI is set."""
    missing = "nnparity_no_such_framework_for_tests"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI"):
        require(missing)
    assert require("numpy") is np                     # present: returned, under CI too


def spec_and_params():
    spec = notebook_spec()
    return spec, init_params(spec)


def with_tensor(p, layer: int, key: str, value=None):
    """A copy of the tree ``p`` with ``p[layer][key]`` replaced (or removed when None)."""
    tree = [dict(entry) for entry in p]
    if value is None:
        del tree[layer][key]
    else:
        tree[layer][key] = value
    return tree


def predict_errors():
    spec, p = spec_and_params()
    w0, b0, w2, b2 = p[0]["weight"], p[0]["bias"], p[2]["weight"], p[2]["bias"]
    x = notebook_data().x_test

    def tensor(layer, key):
        return rf"params\[{layer}\]\['{key}'\]"

    return [
        pytest.param(with_tensor(p, 0, "weight", w0.T), x, ValueError,
                     named(tensor(0, "weight") + r"\.shape", "(2, 4)"), id="weight-transposed"),
        pytest.param(with_tensor(p, 2, "bias", np.zeros(2)), x, ValueError,
                     named(tensor(2, "bias") + r"\.shape", "(2,)"), id="bias-wrong-length"),
        pytest.param(with_tensor(p, 0, "bias", b0[:, None]), x, ValueError,
                     named(tensor(0, "bias") + r"\.shape", "(4, 1)"), id="bias-2d"),
        pytest.param(with_tensor(p, 0, "weight", w0.astype(np.float32)), x, TypeError,
                     named(tensor(0, "weight") + r"\.dtype", "'float32'"),
                     id="weight-float32-for-float64-spec"),
        pytest.param(with_tensor(p, 2, "bias", b2.astype(np.float32)), x, TypeError,
                     named(tensor(2, "bias") + r"\.dtype", "'float32'"),
                     id="bias-float32-for-float64-spec"),
        pytest.param(with_tensor(p, 0, "weight", w0.astype(np.int64)), x, TypeError,
                     named(tensor(0, "weight") + r"\.dtype", "'int64'"), id="weight-int"),
        pytest.param(with_tensor(p, 0, "bias"), x, ValueError,
                     named(r"params\[0\] keys", "['weight']"), id="bias-missing"),
        pytest.param(with_tensor(p, 1, "weight", w2), x, ValueError,
                     named(r"params\[1\] keys", "['weight']"), id="activation-with-weight"),
        pytest.param(p[:2], x, TypeError, r"params\W", id="too-few-layers"),
        pytest.param([*p, p[2]], x, TypeError, r"params\W", id="too-many-layers"),
        pytest.param([(w0, b0), {}, (w2, b2)], x, TypeError, r"params\[0\]",
                     id="layer-a-pair-not-a-dict"),
        pytest.param([w0, {}, p[2]], x, TypeError, r"params\[0\]", id="layer-not-a-dict"),
        pytest.param(p, np.ones((1, 3)), ValueError, named(r"x\.shape", "(1, 3)"), id="x-width"),
        pytest.param(p, np.ones(2), ValueError, named(r"x\.shape", "(2,)"), id="x-1d"),
        pytest.param(p, np.ones((1, 2), dtype=np.int64), TypeError, named(r"x\.dtype", "'int64'"),
                     id="x-int"),
        # big-endian float64 is named float64 too: compared as dtypes, it is rejected
        pytest.param(with_tensor(p, 0, "weight", w0.astype(">f8")), x, TypeError,
                     named(tensor(0, "weight") + r"\.dtype", "'>f8'"), id="weight-big-endian"),
        pytest.param(with_tensor(p, 2, "bias", b2.astype(">f8")), x, TypeError,
                     named(tensor(2, "bias") + r"\.dtype", "'>f8'"), id="bias-big-endian"),
        pytest.param(p, x.astype(">f8"), TypeError, named(r"x\.dtype", "'>f8'"),
                     id="x-big-endian"),
    ]


@pytest.mark.parametrize("params, x, error, match", predict_errors())
def test_predict_rejects(params, x, error, match):
    spec, _ = spec_and_params()
    with pytest.raises(error, match=match):
        predict(spec, params, x)


def test_predict_accepts_valid_params():
    """Negative control: the initial parameters, and a tuple of per-layer dicts with the
    names in another order, are accepted."""
    spec, p = spec_and_params()
    x = notebook_data().x_test
    out = predict(spec, p, x)
    assert out.shape == (1, 1) and out.dtype == np.float64
    reordered = tuple({key: layer[key] for key in reversed(list(layer))} for layer in p)
    np.testing.assert_array_equal(predict(spec, reordered, x), out)


def test_predict_float32_spec():
    spec = notebook_spec().replace(dtype="float32")
    out = predict(spec, init_params(spec), notebook_data().x_test)
    assert out.dtype == np.float32


# ---------------------------------------------------------------- to_dict / from_dict

ROUND_TRIP_SPECS = [
    pytest.param(notebook_spec(), id="notebook"),
    pytest.param(NetworkSpec(sizes=(3, 5, 4, 2), activation=("relu", "identity"),
                             init="xavier_uniform", optimizer=SGD(lr=0.125), batch_size=3,
                             epochs=7, seed=2**32 - 1, dtype="float32", shuffle=True),
                 id="tuple-activations-float32-shuffle"),
    pytest.param(NetworkSpec(sizes=(4, 1), activation=(), init="zeros", epochs=0, seed=0),
                 id="no-hidden-empty-tuple"),
    pytest.param(NetworkSpec(sizes=(2, 3, 3, 3, 2), activation="identity", init="he_normal",
                             optimizer=SGD(lr=0.1)), id="deep-identity"),
    pytest.param(NetworkSpec(sizes=(2, 4, 1), optimizer=SGD(lr=1 / 3)), id="lr-1/3"),
]


def plain_json_types(value) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and plain_json_types(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json_types(v) for v in value)
    return type(value) in (str, int, float, bool) or value is None


@pytest.mark.parametrize("spec", ROUND_TRIP_SPECS)
def test_to_dict_from_dict_round_trip_through_json(spec):
    d = spec.to_dict()
    assert plain_json_types(d)
    text = json.dumps(d)
    back = NetworkSpec.from_dict(json.loads(text))
    assert back == spec
    assert back.to_dict() == d
    assert type(back.activation) is type(spec.activation)
    assert NetworkSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("spec", [
    pytest.param(NetworkSpec(sizes=(2, 4, 1), batch_size=np.int64(3), epochs=np.int64(5),
                             seed=np.uint32(7)), id="numpy-int-fields"),
    pytest.param(NetworkSpec(sizes=(2, 4, 1), shuffle=np.True_), id="numpy-bool-shuffle"),
    pytest.param(NetworkSpec(sizes=(2, 4, 1), optimizer=SGD(lr=np.float64(0.5))),
                 id="numpy-float-lr"),
])
def test_to_dict_is_plain_json_for_numpy_scalar_fields(spec):
    """NetworkSpec accepts NumPy integers/bools (check_int, check_bool), so to_dict must
    still give plain JSON types for them."""
    d = spec.to_dict()
    not_plain = {k: type(v).__name__ for k, v in d.items() if not plain_json_types(v)}
    assert not not_plain, f"to_dict() values that are not plain JSON types: {not_plain}"
    assert NetworkSpec.from_dict(json.loads(json.dumps(d))) == spec


def test_spec_with_numpy_scalar_fields_is_hashable():
    """A frozen spec is hashable; accepted NumPy scalars must not break that."""
    spec = NetworkSpec(sizes=(2, 4, 1), batch_size=np.int64(3))
    assert hash(spec) == hash(NetworkSpec(sizes=(2, 4, 1), batch_size=3))


def test_negative_control_round_trip_detects_a_change():
    spec = ROUND_TRIP_SPECS[1].values[0]
    d = json.loads(json.dumps(spec.to_dict()))
    d["activation"] = ["identity", "relu"]
    assert NetworkSpec.from_dict(d) != spec


def test_from_dict_fills_defaults():
    assert NetworkSpec.from_dict({"sizes": [2, 4, 1]}) == notebook_spec()


@pytest.mark.parametrize("d, error, match", [
    pytest.param({"sizes": [2, 1], "learning_rate": 0.1}, ValueError, "learning_rate",
                 id="unknown-key"),
    pytest.param({"sizes": [2, 1], "lr": 0.1, "colour": "red"}, ValueError,
                 r"colour.*lr|lr.*colour",
                 id="two-unknown-keys"),
    pytest.param({"activation": "relu"}, ValueError, "sizes", id="missing-sizes"),
    pytest.param({}, ValueError, "sizes", id="empty"),
    pytest.param({"sizes": [2, 1], "optimizer": {"name": BOGUS, "lr": 0.1}}, ValueError,
                 named(r"optimizer\.name", repr(BOGUS)), id="optimizer-unknown-name"),
    pytest.param({"sizes": [2, 1], "optimizer": {"name": [], "lr": 0.1}}, ValueError,
                 named(r"optimizer\.name", "[]"), id="optimizer-unhashable-name"),
    pytest.param({"sizes": [2, 1], "optimizer": {"lr": 0.1}}, TypeError, "optimizer",
                 id="optimizer-without-name"),
    pytest.param({"sizes": [2, 1], "optimizer": {"name": "sgd", "lr": 0.1, "bogus_arg": 0.9}},
                 ValueError, "bogus_arg", id="optimizer-unknown-argument"),
    pytest.param({"sizes": [2, 1], "optimizer": {"name": "sgd", "lr": -1}}, ValueError,
                 named("lr", "-1"), id="optimizer-bad-lr"),
    pytest.param({"sizes": [2, 0, 1]}, ValueError, named(r"sizes\[1\]", "0"), id="bad-value"),
    pytest.param([["sizes", [2, 1]]], TypeError, "spec", id="not-a-mapping"),
])
def test_from_dict_rejects(d, error, match):
    with pytest.raises(error, match=match):
        NetworkSpec.from_dict(d)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"sizes": ' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_from_json_rejects_json_nested_too_deeply(text):
    """json.loads raises RecursionError here; from_json makes it the usual ValueError."""
    with pytest.raises(ValueError, match=r"spec JSON='.* nested too deeply"):
        NetworkSpec.from_json(text)
    with pytest.raises(RecursionError):                     # negative control: json itself
        json.loads(text)


def test_from_json_accepts_nesting_a_spec_has():
    """Negative control: a spec's own JSON (lists in an object) parses."""
    spec = notebook_spec().replace(sizes=(2, 3, 3, 1), activation=("relu", "tanh"))
    assert NetworkSpec.from_json(spec.to_json()) == spec


def test_check_int_bounds_both_ends():
    from nnparity.shared.core.validation import check_int
    assert check_int("n", 4, 0, 4) == 4 and check_int("n", np.uint64(0), 0, 4) == 0
    with pytest.raises(ValueError, match=named("n", "5") + ".*an integer in 0 .. 4"):
        check_int("n", 5, 0, 4)
    with pytest.raises(ValueError, match=named("n", "-1") + ".*an integer in 0 .. 4"):
        check_int("n", -1, 0, 4)


# ---------------------------------------------------------------- lazy imports

def test_importing_nnparity_does_not_import_frameworks():
    code = (
        "import sys\n"
        "import nnparity.backends, nnparity.shared\n"
        "from nnparity.backends import available_backends, train\n"
        "from nnparity.shared import notebook_spec, notebook_data\n"
        "available_backends()\n"
        "train(notebook_spec().replace(epochs=2), notebook_data(), backend='numpy')\n"
        "loaded = sorted(m for m in ('torch', 'jax', 'jaxlib') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"imported eagerly: {proc.stdout.strip()}"


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_negative_control_import_check_sees_frameworks(framework):
    """The subprocess check can fail: using a backend does import its framework."""
    require(framework)
    code = (
        "import sys\n"
        "from nnparity.backends import train\n"
        "from nnparity.shared import notebook_spec, notebook_data\n"
        f"train(notebook_spec().replace(epochs=1), notebook_data(), backend={framework!r})\n"
        f"print({framework!r} in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
