"""Bad input at every public entry point (issue 5, "Bad input").

Each rejection must be a ``ValueError`` or ``TypeError`` raised before any work
starts, whose message names the argument, the value and what is allowed.

- One table of cases, ``CASES``: (entry point, what is wrong) -> the call, the
  error type and three message fragments (argument, value, allowed). The
  ``tripwire`` fixture replaces every backend's training, stepping, prediction
  and elementwise functions with one that fails the test, so a case passes
  only if the input is refused before a backend does anything.
- The command line (its entry point ``main``): each bad input gives exactly one
  line on stderr starting "nnparity: error:", exit code 2, no traceback, no
  warning and nothing on stdout; with ``epochs=0`` the real entry point, in a
  subprocess, prints the initial parameters.
- ``epochs=0`` is not an error: every backend returns the initial parameters.
"""
from __future__ import annotations

import importlib.util
import io
import json
import math
import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import nnparity.backends
from nnparity.backends import (activation_with_grad, evaluate, loss_with_grad, predict,
                               train)
from nnparity.shared import (SGD, Activation, Adam, AdamW, Dataset, Dense, NetworkSpec,
                             RMSprop, compare, init_params, load_dataset, notebook_data)
from nnparity.shared.cli.main import main
from nnparity.shared.core.tree import leaves, map_tree
from conftest import require

#: the backend functions that do work; the tripwire replaces each one
WORK = ("train", "step", "predict", "activation_with_grad", "loss_with_grad")


@pytest.fixture
def tripwire(monkeypatch):
    """Make every installed backend fail the test if any of its work functions runs."""
    for name, (framework, _extra) in nnparity.backends.BACKENDS.items():
        if importlib.util.find_spec(framework) is None:
            continue
        module = nnparity.backends.get_backend(name)
        for function in WORK:
            def tripped(*args, _where=f"{name}.{function}", **kwargs):
                pytest.fail(f"{_where} ran: the bad input was not rejected before work started",
                            pytrace=False)
            monkeypatch.setattr(module, function, tripped)


# ---------------------------------------------------------------- valid building blocks


def spec(**changes) -> NetworkSpec:
    """A small valid float64 regression spec for the notebook data (2 inputs, 1 output)."""
    base = dict(sizes=(2, 4, 1), optimizer=SGD(lr=1e-3), epochs=2, batch_size=2)
    return NetworkSpec(**{**base, **changes})


#: a network in the general layer form that is not an MLP (two Dense layers in a row)
LAYERS = (Dense(4), Activation("tanh"), Dense(3), Dense(1))


def layer_spec(**changes) -> NetworkSpec:
    """``spec()``'s network in the layer form: input_shape (2,) and LAYERS (no sizes)."""
    base = dict(input_shape=(2,), layers=LAYERS, optimizer=SGD(lr=1e-3), epochs=2,
                batch_size=2)
    return NetworkSpec(**{**base, **changes})


def layers_json(**changes) -> str:
    """``layer_spec()`` as JSON, some entries replaced (a value None drops the entry)."""
    d = {**layer_spec().to_dict(), **changes}
    return json.dumps({key: value for key, value in d.items() if value is not None})


def ce_spec(**changes) -> NetworkSpec:
    """A cross_entropy spec with 3 classes."""
    return spec(sizes=(2, 4, 3), loss="cross_entropy", **changes)


def data(**changes) -> Dataset:
    """The notebook's data (fresh arrays), with some fields replaced."""
    d = notebook_data()
    arrays = dict(x_train=d.x_train.copy(), y_train=d.y_train.copy(), x_test=d.x_test.copy(),
                  y_test=d.y_test.copy())
    return Dataset(**{**arrays, **changes})


def labels(y_train=(0, 1, 2, 1), y_test=(2,)) -> Dataset:
    return data(y_train=np.array(y_train), y_test=np.array(y_test))


def mutated(field: str, index, value) -> Dataset:
    """A Dataset that was valid when built and whose array was then changed in place
    (a user normalising or filling in data after construction)."""
    d = data()
    getattr(d, field)[index] = value
    return d


def params(s: NetworkSpec | None = None):
    return init_params(s or spec())


def with_value(array: np.ndarray, index, value) -> np.ndarray:
    array = array.astype(object if isinstance(value, str) else array.dtype)   # a copy
    array[index] = value
    return array


X = notebook_data().x_train          # (4, 2)
Y = notebook_data().y_train          # (4, 1)
P = np.array([[0.5, -1.0, 2.0], [0.0, 0.1, -0.3]])     # (2, 3) loss inputs


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    call: Callable[[], Any]
    error: type          # ValueError or TypeError
    argument: str        # the argument the message must name
    value: str           # how the message must show the value
    allowed: str         # a fragment of what the message says is allowed


def case(id: str, call, error, argument, value, allowed):
    return pytest.param(Case(call, error, argument, value, allowed), id=id)


CASES = [
    # ------------------------------------------------------------ NetworkSpec
    case("spec-sizes-bool", lambda: spec(sizes=(2, True, 1)), TypeError,
         "sizes[1]", "True", "integer"),
    case("spec-sizes-str", lambda: spec(sizes=(2, "4", 1)), TypeError,
         "sizes[1]", "'4'", "integer"),
    case("spec-sizes-float", lambda: spec(sizes=(2, 4.0, 1)), TypeError,
         "sizes[1]", "4.0", "integer"),
    case("spec-sizes-nan", lambda: spec(sizes=(2, math.nan, 1)), TypeError,
         "sizes[1]", "nan", "integer"),
    case("spec-sizes-zero", lambda: spec(sizes=(2, 0, 1)), ValueError,
         "sizes[1]", "0", ">= 1"),
    case("spec-sizes-one-layer", lambda: spec(sizes=(2,)), ValueError,
         "sizes", "(2,)", "at least 2"),
    case("spec-sizes-string", lambda: spec(sizes="2,4,1"), TypeError,
         "sizes", "'2,4,1'", "sequence"),
    case("spec-batch_size-bool", lambda: spec(batch_size=True), TypeError,
         "batch_size", "True", "integer"),
    case("spec-batch_size-str", lambda: spec(batch_size="2"), TypeError,
         "batch_size", "'2'", "integer"),
    case("spec-batch_size-zero", lambda: spec(batch_size=0), ValueError,
         "batch_size", "0", ">= 1"),
    case("spec-batch_size-float", lambda: spec(batch_size=2.0), TypeError,
         "batch_size", "2.0", "integer"),
    case("spec-epochs-str", lambda: spec(epochs="3"), TypeError,
         "epochs", "'3'", "integer"),
    case("spec-epochs-bool", lambda: spec(epochs=True), TypeError,
         "epochs", "True", "integer"),
    case("spec-epochs-float", lambda: spec(epochs=3.0), TypeError,
         "epochs", "3.0", "integer"),
    case("spec-epochs-inf", lambda: spec(epochs=math.inf), TypeError,
         "epochs", "inf", "integer"),
    case("spec-epochs-negative", lambda: spec(epochs=-1), ValueError,
         "epochs", "-1", ">= 0"),
    case("spec-seed-bool", lambda: spec(seed=False), TypeError, "seed", "False", "integer"),
    case("spec-seed-too-big", lambda: spec(seed=2**32), ValueError,
         "seed", str(2**32), "2**32"),
    case("spec-shuffle-int", lambda: spec(shuffle=1), TypeError, "shuffle", "1", "True or False"),
    case("spec-shuffle-str", lambda: spec(shuffle="False"), TypeError,
         "shuffle", "'False'", "True or False"),
    case("spec-dtype-int32", lambda: spec(dtype="int32"), ValueError,
         "dtype", "'int32'", "'float64'"),
    case("spec-dtype-numpy-type", lambda: spec(dtype=np.float64), TypeError,
         "dtype", "float64", "'float32'"),
    case("spec-activation-unknown", lambda: spec(activation="swish"), ValueError,
         "activation", "'swish'", "'relu'"),
    case("spec-activation-tuple-length", lambda: spec(activation=("relu", "tanh")), ValueError,
         "activation", "('relu', 'tanh')", "one per hidden layer"),
    case("spec-activation_params-str", lambda: spec(
        activation="leaky_relu", activation_params={"leaky_relu": {"negative_slope": "0.1"}}),
        TypeError, "negative_slope", "'0.1'", "real number"),
    case("spec-activation_params-bool", lambda: spec(
        activation="leaky_relu", activation_params={"leaky_relu": {"negative_slope": True}}),
        TypeError, "negative_slope", "True", "real number"),
    case("spec-activation_params-nan", lambda: spec(
        activation="elu", activation_params={"elu": {"alpha": math.nan}}),
        ValueError, "alpha", "nan", "finite"),
    case("spec-activation_params-zero-alpha", lambda: spec(
        activation="celu", activation_params={"celu": {"alpha": 0.0}}),
        ValueError, "alpha", "0.0", "> 0"),
    case("spec-activation_params-unknown-key", lambda: spec(
        activation="elu", activation_params={"elu": {"beta": 1.0}}),
        ValueError, "beta", "1.0", "'alpha'"),
    case("spec-activation_params-unused", lambda: spec(
        activation="relu", activation_params={"elu": {"alpha": 1.0}}),
        ValueError, "activation_params", "'elu'", "'relu'"),
    case("spec-loss-unknown", lambda: spec(loss="nll"), ValueError,
         "loss", "'nll'", "'cross_entropy'"),
    case("spec-loss_params-str", lambda: spec(loss="huber", loss_params={"delta": "1"}),
         TypeError, "delta", "'1'", "real number"),
    case("spec-loss_params-inf", lambda: spec(loss="huber", loss_params={"delta": math.inf}),
         ValueError, "delta", "inf", "finite"),
    case("spec-loss_params-zero", lambda: spec(loss="huber", loss_params={"delta": 0}),
         ValueError, "delta", "0", "> 0"),
    case("spec-loss_params-wrong-loss", lambda: spec(loss="mse", loss_params={"delta": 1.0}),
         ValueError, "delta", "1.0", "none"),
    case("spec-init-unknown", lambda: spec(init="glorot"), ValueError,
         "init", "'glorot'", "'xavier_uniform'"),
    case("spec-optimizer-str", lambda: spec(optimizer="adam"), TypeError,
         "optimizer", "'adam'", "Adam"),
    case("spec-from_dict-sizes-bool", lambda: NetworkSpec.from_dict(
        {"sizes": [2, True, 1]}), TypeError, "sizes[1]", "True", "integer"),
    case("spec-from_json-epochs-str", lambda: NetworkSpec.from_json(
        '{"sizes": [2, 4, 1], "epochs": "3"}'), TypeError, "epochs", "'3'", "integer"),
    case("spec-from_json-lr-nan", lambda: NetworkSpec.from_json(
        '{"sizes": [2, 1], "optimizer": {"name": "sgd", "lr": NaN}}'), ValueError,
         "lr", "nan", "finite"),

    # ------------------------------------------------------------ NetworkSpec, layer form
    case("layers-without-input_shape", lambda: layer_spec(input_shape=None), TypeError,
         "input_shape", "None", "one input row's shape"),
    case("layers-input_shape-int", lambda: layer_spec(input_shape=2), TypeError,
         "input_shape", "2", "a tuple of 1 to 8 integers >= 1"),
    case("layers-input_shape-str", lambda: layer_spec(input_shape="2"), TypeError,
         "input_shape", "'2'", "a tuple of 1 to 8 integers >= 1"),
    case("layers-input_shape-empty", lambda: layer_spec(input_shape=()), TypeError,
         "input_shape", "()", "a tuple of 1 to 8 integers >= 1"),
    case("layers-input_shape-zero", lambda: layer_spec(input_shape=(0,)), ValueError,
         "input_shape[0]", "0", ">= 1"),
    case("layers-input_shape-negative", lambda: layer_spec(input_shape=(2, -3)), ValueError,
         "input_shape[1]", "-3", ">= 1"),
    case("layers-input_shape-float", lambda: layer_spec(input_shape=(2.0,)), TypeError,
         "input_shape[0]", "2.0", "integer"),
    case("layers-input_shape-bool", lambda: layer_spec(input_shape=(True,)), TypeError,
         "input_shape[0]", "True", "integer"),
    case("layers-input_shape-nine-axes", lambda: layer_spec(input_shape=(1,) * 9), TypeError,
         "input_shape", "(1, 1, 1, 1, 1, 1, 1, 1, 1)", "1 to 8 integers"),
    case("layers-a-layer-not-a-tuple", lambda: layer_spec(layers=Dense(1)), TypeError,
         "layers", "Dense(units=1)", "a tuple of layer specs"),
    case("layers-str", lambda: layer_spec(layers="dense"), TypeError,
         "layers", "'dense'", "a tuple of layer specs"),
    case("layers-dict", lambda: layer_spec(layers={"kind": "dense", "units": 1}), TypeError,
         "layers", "{'kind': 'dense'", "a tuple of layer specs"),
    case("layers-set", lambda: layer_spec(layers={Dense(1)}), TypeError,
         "layers", "{Dense(units=1)}", "a tuple of layer specs"),
    case("layers-generator", lambda: layer_spec(layers=(layer for layer in LAYERS)), TypeError,
         "layers", "<generator", "a tuple of layer specs"),
    case("layers-empty", lambda: layer_spec(layers=()), ValueError,
         "layers", "0 layers", "1 to 1024 layers"),
    case("layers-item-str", lambda: layer_spec(layers=(Dense(4), "relu", Dense(1))), TypeError,
         "layers[1]", "'relu'", "a layer spec such as Dense(4)"),
    case("layers-item-dict", lambda: layer_spec(layers=(Dense(4), {"kind": "dense", "units": 1})),
         TypeError, "layers[1]", "{'kind': 'dense'", "a layer spec such as Dense(4)"),
    case("layers-item-class", lambda: layer_spec(layers=(Dense,)), TypeError,
         "layers[0]", "Dense", "a layer spec such as Dense(4)"),
    case("Dense-zero", lambda: Dense(0), ValueError, "Dense.units", "0", ">= 1"),
    case("Dense-float", lambda: Dense(2.5), TypeError, "Dense.units", "2.5", "integer"),
    case("Dense-bool", lambda: Dense(True), TypeError, "Dense.units", "True", "integer"),
    case("Dense-str", lambda: Dense("4"), TypeError, "Dense.units", "'4'", "integer"),
    case("Dense-too-wide", lambda: Dense(2**24 + 1), ValueError,
         "Dense.units", str(2**24 + 1), "2**24"),
    case("Activation-unknown", lambda: Activation("nope"), ValueError,
         "activation", "'nope'", "'relu'"),
    case("Activation-name-not-str", lambda: Activation(3), TypeError,
         "activation", "3", "'relu'"),
    case("Activation-param-unknown", lambda: Activation("relu", {"x": 1}), ValueError,
         "Activation('relu').params['x']", "1", "none"),
    case("Activation-param-str", lambda: Activation("leaky_relu", {"negative_slope": "0.1"}),
         TypeError, "Activation('leaky_relu').params['negative_slope']", "'0.1'", "real number"),
    case("Activation-params-not-a-mapping", lambda: Activation("leaky_relu", [0.1]), TypeError,
         "Activation('leaky_relu').params", "[0.1]", "a mapping"),
    case("Activation-param-nan-in-a-spec", lambda: layer_spec(layers=(
        Dense(4), Activation("elu", {"alpha": math.nan}), Dense(1))), ValueError,
         "alpha", "nan", "finite"),
    case("layers-param-rounds-to-zero-in-float32", lambda: layer_spec(dtype="float32", layers=(
        Dense(4), Activation("leaky_relu", {"negative_slope": 1e-300}), Dense(3), Dense(1))),
         ValueError, "layers[1].params['negative_slope']", "1e-300", "float32"),
    # layers that form an MLP are the shorthand: the parameter is named as it would be there
    case("mlp-layers-param-rounds-to-zero-in-float32", lambda: layer_spec(
        dtype="float32", layers=(Dense(4), Activation("leaky_relu", {"negative_slope": 1e-300}),
                                 Dense(1))),
         ValueError, "activation_params['leaky_relu']['negative_slope']", "1e-300", "float32"),
    case("sizes-and-layers-disagree", lambda: layer_spec(sizes=(2, 4, 1), layers=(
        Dense(5), Activation("relu"), Dense(1))), ValueError,
         "layers", "Dense(units=5)", "the layers sizes=(2, 4, 1) builds"),
    case("sizes-and-input_shape-disagree", lambda: spec(input_shape=(3,)), ValueError,
         "input_shape", "(3,)", "(2,), the input shape sizes=(2, 4, 1) builds"),
    case("sizes-and-input_shape-disagree-same-layers", lambda: spec(
        input_shape=(3,), layers=(Dense(4), Activation("relu"), Dense(1))), ValueError,
         "input_shape", "(3,)", "(2,), the input shape sizes=(2, 4, 1) builds"),
    case("sizes-and-input_shape-without-layers", lambda: spec(input_shape=(2,)), ValueError,
         "layers", "None", "or no layers"),
    case("activation-with-layers", lambda: layer_spec(activation="tanh"), ValueError,
         "activation", "'tanh'", "None with layers"),
    case("activation_params-with-layers", lambda: layer_spec(
        activation_params={"elu": {"alpha": 1.0}}), ValueError,
         "activation_params", "{'elu'", "None with layers"),
    case("neither-sizes-nor-layers", lambda: NetworkSpec(input_shape=(2,)), TypeError,
         "spec", "no sizes and no layers", "input_shape and layers"),
    case("layers-from_json-unknown-kind", lambda: NetworkSpec.from_json(layers_json(
        layers=[{"kind": "capsule", "units": 4}])), ValueError,
         "layers[0].kind", "'capsule'", "'dense'"),
    case("layers-from_json-unknown-field", lambda: NetworkSpec.from_json(layers_json(
        layers=[{"kind": "dense", "units": 4, "bias": False}])), ValueError,
         "layers[0]['bias']", "False", "fields of Dense: units"),
    case("layers-from_json-activation-unknown-field", lambda: NetworkSpec.from_json(layers_json(
        layers=[{"kind": "dense", "units": 4}, {"kind": "activation", "name": "relu",
                                                "slope": 1}])), ValueError,
         "layers[1]['slope']", "1", "fields of Activation: name, params"),
    case("layers-from_json-missing-field", lambda: NetworkSpec.from_json(layers_json(
        layers=[{"kind": "dense"}])), TypeError,
         "layers[0]", "{'kind': 'dense'}", "field 'units'"),
    case("layers-from_json-no-kind", lambda: NetworkSpec.from_json(layers_json(
        layers=[{"units": 4}])), TypeError,
         "layers[0]", "{'units': 4}", "a 'kind' key"),
    case("layers-from_json-kind-not-str", lambda: NetworkSpec.from_json(layers_json(
        layers=[{"kind": 1}])), TypeError, "layers[0]", "{'kind': 1}", "a 'kind' key"),
    case("layers-from_json-layer-a-str", lambda: NetworkSpec.from_json(layers_json(
        layers=["dense"])), TypeError, "layers[0]", "'dense'", "a 'kind' key"),
    case("layers-from_json-layers-an-object", lambda: NetworkSpec.from_json(layers_json(
        layers={"kind": "dense", "units": 4})), TypeError,
         "layers", "{'kind': 'dense'", "a tuple of layer specs"),
    case("layers-from_json-units-float", lambda: NetworkSpec.from_json(layers_json(
        layers=[{"kind": "dense", "units": 2.5}])), TypeError, "Dense.units", "2.5", "integer"),
    case("layers-from_json-no-input_shape", lambda: NetworkSpec.from_json(layers_json(
        input_shape=None)), TypeError, "input_shape", "None", "one input row's shape"),
    case("layers-from_json-input_shape-str", lambda: NetworkSpec.from_json(layers_json(
        input_shape="2")), TypeError, "input_shape", "'2'", "a tuple of 1 to 8 integers"),
    case("layers-from_json-activation-with-layers", lambda: NetworkSpec.from_json(layers_json(
        activation="relu")), ValueError, "activation", "'relu'", "None with layers"),
    case("layers-replace-bad-layer", lambda: layer_spec().replace(layers=(Dense(4), 3)),
         TypeError, "layers[1]", "3", "a layer spec"),
    case("layers-replace-shorthand-field", lambda: layer_spec().replace(activation="tanh"),
         ValueError, "activation", "'tanh'", "this network is given as layers"),

    # ------------------------------------------------------------ optimizers
    case("SGD-lr-str", lambda: SGD(lr="0.1"), TypeError, "lr", "'0.1'", "real number"),
    case("SGD-lr-bool", lambda: SGD(lr=True), TypeError, "lr", "True", "real number"),
    case("SGD-lr-none", lambda: SGD(lr=None), TypeError, "lr", "None", "real number"),
    case("SGD-lr-nan", lambda: SGD(lr=math.nan), ValueError, "lr", "nan", "finite"),
    case("SGD-lr-inf", lambda: SGD(lr=math.inf), ValueError, "lr", "inf", "finite"),
    case("SGD-lr-zero", lambda: SGD(lr=0.0), ValueError, "lr", "0.0", "> 0"),
    case("SGD-lr-numpy-array", lambda: SGD(lr=np.array([0.1])), TypeError,
         "lr", "array([0.1])", "real number"),
    case("SGD-momentum-negative", lambda: SGD(lr=0.1, momentum=-0.5), ValueError,
         "momentum", "-0.5", ">= 0"),
    case("SGD-momentum-str", lambda: SGD(lr=0.1, momentum="0.9"), TypeError,
         "momentum", "'0.9'", "real number"),
    case("SGD-dampening-above-1", lambda: SGD(lr=0.1, dampening=1.5), ValueError,
         "dampening", "1.5", "<= 1"),
    case("SGD-nesterov-int", lambda: SGD(lr=0.1, momentum=0.9, nesterov=1), TypeError,
         "nesterov", "1", "True or False"),
    case("SGD-nesterov-without-momentum", lambda: SGD(lr=0.1, nesterov=True), ValueError,
         "nesterov", "True", "momentum > 0"),
    case("SGD-weight_decay-nan", lambda: SGD(lr=0.1, weight_decay=math.nan), ValueError,
         "weight_decay", "nan", "finite"),
    case("Adam-lr-str", lambda: Adam(lr="1e-3"), TypeError, "lr", "'1e-3'", "real number"),
    case("Adam-lr-negative", lambda: Adam(lr=-1e-3), ValueError, "lr", "-0.001", "> 0"),
    case("Adam-betas-one", lambda: Adam(betas=(0.9,)), TypeError, "betas", "(0.9,)", "pair"),
    case("Adam-betas-str", lambda: Adam(betas="0.9,0.999"), TypeError,
         "betas", "'0.9,0.999'", "pair"),
    case("Adam-beta2-one", lambda: Adam(betas=(0.9, 1.0)), ValueError,
         "betas[1]", "1.0", "< 1"),
    case("Adam-beta1-bool", lambda: Adam(betas=(True, 0.999)), TypeError,
         "betas[0]", "True", "real number"),
    case("Adam-eps-negative", lambda: Adam(eps=-1e-8), ValueError, "eps", "-1e-08", ">= 0"),
    case("Adam-eps-inf", lambda: Adam(eps=math.inf), ValueError, "eps", "inf", "finite"),
    case("AdamW-weight_decay-str", lambda: AdamW(weight_decay="0.01"), TypeError,
         "weight_decay", "'0.01'", "real number"),
    case("AdamW-lr-nan", lambda: AdamW(lr=np.float64("nan")), ValueError,
         "lr", "nan", "finite"),
    case("AdamW-betas-three", lambda: AdamW(betas=(0.9, 0.99, 0.999)), TypeError,
         "betas", "(0.9, 0.99, 0.999)", "pair"),
    case("RMSprop-alpha-above-1", lambda: RMSprop(alpha=1.5), ValueError,
         "alpha", "1.5", "<= 1"),
    case("RMSprop-centered-str", lambda: RMSprop(centered="yes"), TypeError,
         "centered", "'yes'", "True or False"),
    case("RMSprop-momentum-negative", lambda: RMSprop(momentum=-0.1), ValueError,
         "momentum", "-0.1", ">= 0"),
    case("RMSprop-lr-bool", lambda: RMSprop(lr=False), TypeError, "lr", "False", "real number"),
    case("RMSprop-eps-nan", lambda: RMSprop(eps=math.nan), ValueError, "eps", "nan", "finite"),

    # ------------------------------------------------------------ Dataset
    case("Dataset-x_train-list", lambda: data(x_train=X.tolist()), TypeError,
         "x_train", "[[22.5", "NumPy array"),
    case("Dataset-x_train-nan", lambda: data(x_train=with_value(X, (1, 0), np.nan)), ValueError,
         "x_train[1, 0]", "nan", "finite"),
    case("Dataset-x_train-inf", lambda: data(x_train=with_value(X, (3, 1), np.inf)), ValueError,
         "x_train[3, 1]", "inf", "finite"),
    case("Dataset-y_train-nan", lambda: data(y_train=with_value(Y, (2, 0), np.nan)), ValueError,
         "y_train[2, 0]", "nan", "finite"),
    case("Dataset-y_test-neginf", lambda: data(y_test=np.array([[-np.inf]])), ValueError,
         "y_test[0, 0]", "-inf", "finite"),
    case("Dataset-x_test-nan", lambda: data(x_test=np.array([[np.nan, 1.0]])), ValueError,
         "x_test[0, 0]", "nan", "finite"),
    case("Dataset-x_train-strings", lambda: data(x_train=X.astype(str)), TypeError,
         "x_train.dtype", "'str", "float32 or float64"),
    case("Dataset-x_train-object", lambda: data(x_train=with_value(X, (0, 0), "a")), TypeError,
         "x_train.dtype", "'object'", "float32 or float64"),
    case("Dataset-x_train-object-numbers", lambda: data(x_train=X.astype(object)), TypeError,
         "x_train.dtype", "'object'", "float32 or float64"),
    # integer x is a Dataset of tokens (for an Embedding); a float network refuses it
    case("train-x_train-int", lambda: train(spec(), data(
        x_train=X.astype(np.int64), x_test=notebook_data().x_test.astype(np.int64))),
        TypeError, "x_train.dtype", "'int64'", "float32 or float64"),
    case("Dataset-x_test-float-with-int-x_train", lambda: data(x_train=X.astype(np.int64)),
         TypeError, "x_test.dtype", "'float64'", "inputs of the same kind as x_train"),
    case("Dataset-x_train-bool", lambda: data(x_train=X > 30), TypeError,
         "x_train.dtype", "'bool'", "float32 or float64"),
    case("Dataset-x_train-complex", lambda: data(x_train=X.astype(complex)), TypeError,
         "x_train.dtype", "'complex128'", "float32 or float64"),
    case("Dataset-x_train-float16", lambda: data(x_train=X.astype(np.float16)), TypeError,
         "x_train.dtype", "'float16'", "float32 or float64"),
    # integer (n, k) targets are sequence labels; a (k,) output refuses them
    case("train-y-int-2d", lambda: train(ce_spec(), data(
        y_train=np.zeros((4, 1), np.int64), y_test=np.zeros((1, 1), np.int64))), ValueError,
        "y_train.shape", "(4, 1)", "(4,) class labels"),
    case("Dataset-y_train-object", lambda: data(y_train=Y.astype(object)), TypeError,
         "y_train.dtype", "'object'", "float32 or float64"),
    # rows may have any shape (a spec's input_shape), but x_test's must be x_train's
    case("Dataset-x_train-3d-x_test-2d", lambda: data(x_train=X[:, :, None]), ValueError,
         "x_test.shape", "(1, 2)", "rows of shape (2, 1)"),
    case("Dataset-x_train-1d", lambda: data(x_train=X[:, 0]), ValueError,
         "x_train.ndim", "1", "at least 2"),
    case("Dataset-y_train-3d", lambda: data(y_train=Y[:, :, None]), ValueError,
         "y_train.shape", "(4, 1, 1)", "(n, k)"),
    case("Dataset-x_test-3d", lambda: data(x_test=np.ones((1, 2, 1))), ValueError,
         "x_test.shape", "(1, 2, 1)", "2 columns, as many as x_train"),
    case("Dataset-row-mismatch", lambda: data(y_train=Y[:3]), ValueError,
         "y_train.shape", "(3, 1)", "4 rows"),
    case("Dataset-test-row-mismatch", lambda: data(y_test=np.ones((2, 1))), ValueError,
         "y_test.shape", "(2, 1)", "1 rows"),
    case("Dataset-empty-train", lambda: data(x_train=X[:0], y_train=Y[:0]), ValueError,
         "x_train.shape", "(0, 2)", "at least one row"),
    case("Dataset-empty-test", lambda: data(x_test=np.zeros((0, 2)), y_test=np.zeros((0, 1))),
         ValueError, "x_test.shape", "(0, 2)", "at least one row"),
    case("Dataset-empty-columns", lambda: data(x_train=np.zeros((4, 0)),
                                                x_test=np.zeros((1, 0))),
         ValueError, "x_train.shape", "(4, 0)", "column"),
    case("Dataset-test-columns", lambda: data(x_test=np.ones((1, 3))), ValueError,
         "x_test.shape", "(1, 3)", "2 columns"),
    case("Dataset-label-kinds-differ", lambda: data(y_train=np.array([0, 1, 1, 0]),
                                                     y_test=np.array([[1.0]])),
         TypeError, "y_test.dtype", "'float64'", "same kind"),

    # ------------------------------------------------------------ train
    case("train-spec-not-a-spec", lambda: train({"sizes": [2, 4, 1]}, data()), TypeError,
         "spec", "{'sizes'", "NetworkSpec"),
    case("train-metrics-not-bool", lambda: train(spec(), data(), metrics="no"), TypeError,
         "metrics", "'no'", "True or False"),
    case("train-data-not-a-dataset", lambda: train(spec(), (X, Y, X, Y)), TypeError,
         "data", "(array(", "Dataset"),
    case("train-wrong-feature-count", lambda: train(spec(sizes=(3, 4, 1)), data()), ValueError,
         "x_train.shape", "(4, 2)", "(4, 3)"),
    case("train-wrong-output-width", lambda: train(spec(sizes=(2, 4, 2)), data()), ValueError,
         "y_train.shape", "(4, 1)", "(4, 2)"),
    case("train-label-out-of-range", lambda: train(ce_spec(), labels((0, 1, 3, 1))), ValueError,
         "y_train[2]", "3", "[0, 3)"),
    case("train-label-negative", lambda: train(ce_spec(), labels((0, -1, 2, 1))), ValueError,
         "y_train[1]", "-1", "[0, 3)"),
    case("train-test-label-out-of-range", lambda: train(ce_spec(), labels(y_test=(7,))),
         ValueError, "y_test[0]", "7", "[0, 3)"),
    case("train-float-targets-for-cross_entropy", lambda: train(spec(loss="cross_entropy"),
                                                                 data()),
         TypeError, "y_train", "float64", "integer class labels"),
    case("train-labels-for-mse", lambda: train(spec(sizes=(2, 4, 3)), labels()), TypeError,
         "y_train", "int64", "float targets"),
    case("train-bce-target-above-1", lambda: train(spec(loss="bce_with_logits"), data()),
         ValueError, "y_train[0, 0]", "95.0", "[0, 1]"),
    case("train-backend-unknown", lambda: train(spec(), data(), backend="tensorflow"),
         ValueError, "backend", "'tensorflow'", "'numpy'"),
    case("train-backend-not-str", lambda: train(spec(), data(), backend=0), (TypeError, ValueError),
         "backend", "0", "'numpy'"),
    case("train-record_every-zero", lambda: train(spec(), data(), record_every=0), ValueError,
         "record_every", "0", ">= 1"),
    case("train-record_every-bool", lambda: train(spec(), data(), record_every=True), TypeError,
         "record_every", "True", "integer"),
    case("train-record_every-str", lambda: train(spec(), data(), record_every="2"), TypeError,
         "record_every", "'2'", "integer"),
    case("train-x_train-nan-after-construction", lambda: train(
        spec(), mutated("x_train", (0, 1), np.nan)), ValueError, "x_train[0, 1]", "nan", "finite"),
    case("train-y_train-inf-after-construction", lambda: train(
        spec(), mutated("y_train", (3, 0), np.inf)), ValueError, "y_train[3, 0]", "inf", "finite"),
    case("train-x_test-inf-after-construction", lambda: train(
        spec(), mutated("x_test", (0, 0), np.inf)), ValueError, "x_test[0, 0]", "inf", "finite"),

    # ------------------------------------------------------------ predict
    case("predict-spec-not-a-spec", lambda: predict("spec", params(), X), TypeError,
         "spec", "'spec'", "NetworkSpec"),
    case("predict-params-not-a-list", lambda: predict(spec(), "params", X), TypeError,
         "params", "'params'", "a list of 3 dicts of arrays, one per layer"),
    case("predict-params-wrong-layers", lambda: predict(spec(), params()[:1], X), TypeError,
         "params", "[{'weight': array(", "a list of 3 dicts"),
    case("predict-params-old-pairs", lambda: predict(
        spec(), [(layer["weight"], layer["bias"]) for layer in params() if layer], X), TypeError,
         "params", "[(array(", "['0.weight', '0.bias', '2.weight', '2.bias']"),
    case("predict-params-activation-layer-has-a-tensor", lambda: predict(
        spec(), [params()[0], {"weight": params()[0]["weight"]}, params()[2]], X), ValueError,
         "params[1] keys", "['weight']", "exactly []"),
    case("predict-params-missing-bias", lambda: predict(
        spec(), [params()[0], {}, {"weight": params()[2]["weight"]}], X), ValueError,
         "params[2] keys", "['weight']", "exactly ['weight', 'bias']"),
    case("predict-params-wrong-shape", lambda: predict(spec(), params(spec(sizes=(2, 5, 1))), X),
         ValueError, "params[0]['weight'].shape", "(5, 2)", "(4, 2)"),
    case("predict-params-int", lambda: predict(
        spec(), map_tree(lambda a: a.astype(np.int64), params()), X), TypeError,
         "params[0]['weight'].dtype", "'int64'", "float32 or float64"),
    case("predict-params-dtype-differs", lambda: predict(spec(), params(spec(dtype="float32")), X),
         TypeError, "params[0]['weight'].dtype", "'float32'", "float64"),
    case("predict-params-nan", lambda: predict(
        spec(), map_tree(lambda a: with_value(a, (0,) * a.ndim, np.nan), params()), X),
         ValueError, "params[0]['weight'][0, 0]", "nan", "finite"),
    case("predict-x-nan", lambda: predict(spec(), params(), with_value(X, (2, 1), np.nan)),
         ValueError, "x[2, 1]", "nan", "finite"),
    case("predict-x-wrong-feature-count", lambda: predict(spec(), params(), np.ones((4, 3))),
         ValueError, "x.shape", "(4, 3)", "(4, 2)"),
    case("predict-x-3d", lambda: predict(spec(), params(), X[None]), ValueError,
         "x.shape", "(1, 4, 2)", "2 dimensions"),
    case("predict-x-int", lambda: predict(spec(), params(), X.astype(np.int32)), TypeError,
         "x.dtype", "'int32'", "float32 or float64"),
    case("predict-x-object", lambda: predict(spec(), params(), X.astype(object)), TypeError,
         "x.dtype", "'object'", "float32 or float64"),
    case("predict-x-list", lambda: predict(spec(), params(), X.tolist()), TypeError,
         "x", "[[22.5", "NumPy array"),
    case("predict-backend-unknown", lambda: predict(spec(), params(), X, backend="mlx"),
         ValueError, "backend", "'mlx'", "'torch'"),

    # ------------------------------------------------------------ compare
    case("compare-wrong-feature-count", lambda: compare(spec(sizes=(3, 4, 1)), data()),
         ValueError, "x_train.shape", "(4, 2)", "(4, 3)"),
    case("compare-label-out-of-range", lambda: compare(ce_spec(), labels((0, 1, 2, 3))),
         ValueError, "y_train[3]", "3", "[0, 3)"),
    case("compare-backends-str", lambda: compare(spec(), data(), backends="numpy"), TypeError,
         "backends", "'numpy'", "sequence"),
    case("compare-backends-empty", lambda: compare(spec(), data(), backends=()), TypeError,
         "backends", "()", "non-empty"),
    case("compare-backends-unknown", lambda: compare(spec(), data(), backends=("numpy", "tf")),
         ValueError, "backend", "'tf'", "'jax'"),
    case("compare-backends-repeated", lambda: compare(spec(), data(),
                                                      backends=("numpy", "numpy")),
         ValueError, "backends", "['numpy', 'numpy']", "at most once"),
    case("compare-reference-not-compared", lambda: compare(spec(), data(), backends=("numpy",),
                                                           reference="torch"),
         ValueError, "reference", "'torch'", "['numpy']"),
    case("compare-record_every-zero", lambda: compare(spec(), data(), backends=("numpy",),
                                                      record_every=0),
         ValueError, "record_every", "0", ">= 1"),
    case("compare-record_every-float", lambda: compare(spec(), data(), backends=("numpy",),
                                                       record_every=1.5),
         TypeError, "record_every", "1.5", "integer"),
    case("compare-x_train-nan-after-construction", lambda: compare(
        spec(), mutated("x_train", (1, 1), np.nan), backends=("numpy",)),
         ValueError, "x_train[1, 1]", "nan", "finite"),

    # ------------------------------------------------------------ evaluate
    case("evaluate-spec-not-a-spec", lambda: evaluate("spec", params(), data()), TypeError,
         "spec", "'spec'", "NetworkSpec"),
    case("evaluate-params-not-a-list", lambda: evaluate(spec(), "params", data()), TypeError,
         "params", "'params'", "a list of 3 dicts of arrays, one per layer"),
    case("evaluate-params-wrong-shape", lambda: evaluate(spec(), params(spec(sizes=(2, 5, 1))),
                                                         data()),
         ValueError, "params[0]['weight'].shape", "(5, 2)", "(4, 2)"),
    case("evaluate-params-dtype-differs", lambda: evaluate(spec(), params(spec(dtype="float32")),
                                                           data()),
         TypeError, "params[0]['weight'].dtype", "'float32'", "float64"),
    case("evaluate-params-nan", lambda: evaluate(
        spec(), map_tree(lambda a: with_value(a, (0,) * a.ndim, np.nan), params()), data()),
         ValueError, "params[0]['weight'][0, 0]", "nan", "finite"),
    case("evaluate-data-not-a-dataset", lambda: evaluate(spec(), params(), (X, Y)), TypeError,
         "data", "(array(", "Dataset"),
    case("evaluate-wrong-feature-count", lambda: evaluate(      # the whole Dataset is checked
        spec(sizes=(3, 4, 1)), params(spec(sizes=(3, 4, 1))), data()), ValueError,
         "x_train.shape", "(4, 2)", "(4, 3)"),
    case("evaluate-label-out-of-range", lambda: evaluate(ce_spec(), params(ce_spec()),
                                                         labels(y_test=(5,))),
         ValueError, "y_test[0]", "5", "[0, 3)"),
    case("evaluate-backend-unknown", lambda: evaluate(spec(), params(), data(), backend="tf"),
         ValueError, "backend", "'tf'", "'numpy'"),

    # ------------------------------------------------------------ activation_with_grad
    case("activation-name-unknown", lambda: activation_with_grad("swish", X), ValueError,
         "activation", "'swish'", "'relu'"),
    case("activation-name-not-str", lambda: activation_with_grad(3, X), TypeError,
         "activation", "3", "'relu'"),
    case("activation-x-list", lambda: activation_with_grad("relu", [1.0, 2.0]), TypeError,
         "x", "[1.0, 2.0]", "NumPy array"),
    case("activation-x-int", lambda: activation_with_grad("relu", np.arange(3)), TypeError,
         "x.dtype", "'int64'", "float32 or float64"),
    case("activation-x-object", lambda: activation_with_grad("relu", X.astype(object)),
         TypeError, "x.dtype", "'object'", "float32 or float64"),
    case("activation-x-nan", lambda: activation_with_grad("tanh", np.array([0.0, np.nan])),
         ValueError, "x[1]", "nan", "finite"),
    case("activation-param-str", lambda: activation_with_grad(
        "leaky_relu", X, negative_slope="0.1"), TypeError, "negative_slope", "'0.1'",
         "real number"),
    case("activation-param-unknown", lambda: activation_with_grad("relu", X, alpha=1.0),
         ValueError, "alpha", "1.0", "none"),
    case("activation-param-zero-alpha", lambda: activation_with_grad("elu", X, alpha=0.0),
         ValueError, "alpha", "0.0", "> 0"),
    case("activation-backend-unknown", lambda: activation_with_grad("relu", X, backend="tf"),
         ValueError, "backend", "'tf'", "'numpy'"),

    # ------------------------------------------------------------ loss_with_grad
    case("loss-name-unknown", lambda: loss_with_grad("nll", P, P), ValueError,
         "loss", "'nll'", "'mse'"),
    case("loss-p-int", lambda: loss_with_grad("mse", P.astype(np.int64), P), TypeError,
         "p.dtype", "'int64'", "float32 or float64"),
    case("loss-p-1d", lambda: loss_with_grad("mse", P[0], P[0]), ValueError,
         "p.shape", "(3,)", "2 dimensions"),
    case("loss-p-3d", lambda: loss_with_grad("mse", P[None], P[None]), ValueError,
         "p.shape", "(1, 2, 3)", "2 dimensions"),
    case("loss-p-nan", lambda: loss_with_grad("mse", with_value(P, (1, 2), np.nan), P),
         ValueError, "p[1, 2]", "nan", "finite"),
    case("loss-y-inf", lambda: loss_with_grad("mae", P, with_value(P, (0, 1), -np.inf)),
         ValueError, "y[0, 1]", "-inf", "finite"),
    case("loss-y-row-mismatch", lambda: loss_with_grad("mse", P, P[:1]), ValueError,
         "y.shape", "(1, 3)", "2 rows"),
    case("loss-y-broadcastable-column", lambda: loss_with_grad("mse", P[:, :1], P[:, 0]),
         ValueError, "y.shape", "(2,)", "(2, 1)"),
    case("loss-label-out-of-range", lambda: loss_with_grad("cross_entropy", P,
                                                           np.array([0, 3])),
         ValueError, "y[1]", "3", "[0, 3)"),
    case("loss-float-labels", lambda: loss_with_grad("cross_entropy", P, np.array([0.0, 1.0])),
         TypeError, "y", "float64", "integer class labels"),
    case("loss-bce-target-negative", lambda: loss_with_grad("bce_with_logits", P,
                                                            with_value(np.zeros((2, 3)), (1, 0),
                                                                       -0.5)),
         ValueError, "y[1, 0]", "-0.5", "[0, 1]"),
    case("loss-y-list", lambda: loss_with_grad("mse", P, P.tolist()), TypeError,
         "y", "[[0.5", "NumPy array"),
    case("loss-delta-str", lambda: loss_with_grad("huber", P, P, delta="1"), TypeError,
         "delta", "'1'", "real number"),
    case("loss-delta-zero", lambda: loss_with_grad("huber", P, P, delta=0.0), ValueError,
         "delta", "0.0", "> 0"),
    case("loss-param-unknown", lambda: loss_with_grad("mse", P, P, delta=1.0), ValueError,
         "delta", "1.0", "none"),
    case("loss-backend-unknown", lambda: loss_with_grad("mse", P, P, backend="tf"),
         ValueError, "backend", "'tf'", "'numpy'"),

    # ------------------------------------------------------------ init_params
    case("init_params-not-a-spec", lambda: init_params({"sizes": [2, 4, 1]}), TypeError,
         "spec", "{'sizes'", "NetworkSpec"),

    # ------------------------------------------------------------ load_dataset
    case("load_dataset-unknown", lambda: load_dataset("mnist"), ValueError,
         "dataset", "'mnist'", "'digits'"),
    case("load_dataset-not-str", lambda: load_dataset(None), TypeError,
         "dataset", "None", "'notebook'"),
]


@pytest.mark.parametrize("bad", CASES)
def test_rejected_before_work(bad: Case, tripwire):
    """ValueError/TypeError naming the argument, the value and what is allowed."""
    with pytest.raises(bad.error) as info:
        bad.call()
    message = str(info.value)
    for part, fragment in (("argument", bad.argument), ("value", bad.value),
                           ("allowed", bad.allowed)):
        assert fragment in message, f"the message does not name the {part} ({fragment!r}): " \
                                    f"{message!r}"


def test_tripwire_catches_work(tripwire):
    """Negative control: valid input reaches a backend, and the tripwire fails the test."""
    with pytest.raises(pytest.fail.Exception, match="numpy.train ran"):
        train(spec(), data())
    with pytest.raises(pytest.fail.Exception, match="numpy.activation_with_grad ran"):
        activation_with_grad("relu", X)


def test_errors_are_value_or_type_errors():
    """Every expected error in the table is ValueError or TypeError (never a bare
    Exception, AttributeError, FloatingPointError...)."""
    for param in CASES:
        errors = param.values[0].error
        errors = errors if isinstance(errors, tuple) else (errors,)
        assert all(e in (ValueError, TypeError) for e in errors), param.id


# ---------------------------------------------------------------- epochs=0


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_zero_epochs_returns_initial_parameters(backend, dtype):
    """epochs=0 is valid: the initial parameters come back exactly, with no losses."""
    if backend != "numpy":
        require(backend)
    s = spec(epochs=0, dtype=dtype, optimizer=Adam(lr=0.1), sizes=(2, 3, 3, 1),
             init="xavier_uniform")
    result = train(s, data(), backend=backend)
    initial = init_params(s)
    assert [list(layer) for layer in result.params] == [list(layer) for layer in initial]
    for got, want in zip(leaves(result.params), leaves(initial), strict=True):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, want)
    assert result.losses.shape == (0,)
    assert result.opt_state.step == 0
    assert set(result.opt_state.buffers) == {"exp_avg", "exp_avg_sq"}
    assert all(np.all(a == 0) for tree in result.opt_state.buffers.values()
               for a in leaves(tree))


def test_zero_epochs_negative_control():
    """One epoch does move the parameters, so the check above can fail."""
    s = spec(epochs=1, optimizer=Adam(lr=0.1), sizes=(2, 3, 3, 1), init="xavier_uniform")
    result = train(s, data())
    assert not all(np.array_equal(a, a0) for a, a0 in zip(leaves(result.params),
                                                           leaves(init_params(s)), strict=True))


# ---------------------------------------------------------------- the command line


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def spec_json(**changes) -> str:
    d = spec().to_dict()
    d.update(changes)
    return json.dumps(d)


def cli(id: str, args: list[str], *fragments: str, stdin: str | None = None, needs=()):
    return pytest.param(args, stdin, fragments, needs, id=id)


CLI_CASES = [
    cli("epochs-not-int", ["train", "--epochs", "3.5"], "--epochs", "'3.5'", "int"),
    cli("epochs-str", ["train", "--epochs", "three"], "--epochs", "'three'", "int"),
    cli("epochs-negative", ["train", "--epochs", "-1"], "epochs", "-1", ">= 0"),
    cli("batch-size-zero", ["train", "--batch-size", "0"], "batch_size", "0", ">= 1"),
    cli("lr-nan", ["train", "--lr", "nan"], "lr", "nan", "finite"),
    cli("lr-inf", ["train", "--lr", "inf"], "lr", "inf", "finite"),
    cli("lr-str", ["train", "--lr", "fast"], "--lr", "'fast'", "float"),
    cli("lr-zero", ["train", "--lr", "0"], "lr", "0", "> 0"),
    cli("sizes-not-ints", ["train", "--sizes", "2,x,1"], "--sizes", "'2,x,1'", "integers"),
    cli("sizes-zero-width", ["train", "--sizes", "2,0,1"], "sizes[1]", "0", ">= 1"),
    cli("wrong-feature-count", ["train", "--sizes", "3,4,1"], "x_train.shape", "(4, 2)",
        "(4, 3)"),
    cli("wrong-output-width", ["train", "--sizes", "2,4,2"], "y_train.shape", "(4, 1)", "(4, 2)"),
    cli("float-targets-for-cross_entropy", ["train", "--loss", "cross_entropy"],
        "y_train", "float64", "integer class labels"),
    cli("bce-targets-outside-0-1", ["train", "--loss", "bce_with_logits"],
        "y_train[0, 0]", "95.0", "[0, 1]"),
    cli("labels-out-of-range", ["train", "--dataset", "digits", "--sizes", "64,8,5", "--loss",
                                "cross_entropy", "--epochs", "1"],
        "y_train[", "a class label in [0, 5)", "cross_entropy", needs=("sklearn",)),
    cli("betas-above-1", ["train", "--optimizer", "adam", "--betas", "0.9,1.5"],
        "betas[1]", "1.5", "< 1"),
    cli("momentum-for-adam", ["train", "--optimizer", "adam", "--momentum", "0.9"],
        "--momentum", "0.9", "Adam"),
    cli("delta-zero", ["train", "--loss", "huber", "--loss-params", '{"delta": 0}'],
        "delta", "0", "> 0"),
    cli("activation-param-str", ["train", "--activation", "leaky_relu", "--activation-params",
                                 '{"leaky_relu": {"negative_slope": "x"}}'],
        "negative_slope", "'x'", "real number"),
    cli("dataset-unknown", ["train", "--dataset", "mnist"], "dataset", "'mnist'", "'digits'"),
    cli("backend-unknown", ["train", "--backend", "tf"], "--backend", "'tf'", "numpy"),
    cli("spec-sizes-bool", ["train", "--spec", "-"], "sizes[1]", "True", "integer",
        stdin=spec_json(sizes=[2, True, 1])),
    cli("spec-epochs-str", ["train", "--spec", "-"], "epochs", "'3'", "integer",
        stdin=spec_json(epochs="3")),
    cli("spec-batch_size-bool", ["train", "--spec", "-"], "batch_size", "True", "integer",
        stdin=spec_json(batch_size=True)),
    cli("spec-lr-str", ["train", "--spec", "-"], "lr", "'0.1'", "real number",
        stdin=spec_json(optimizer={"name": "sgd", "lr": "0.1"})),
    cli("spec-lr-nan", ["train", "--spec", "-"], "lr", "nan", "finite",
        stdin=spec_json(optimizer={"name": "sgd", "lr": math.nan})),
    cli("spec-dtype-int32", ["train", "--spec", "-"], "dtype", "'int32'", "'float64'",
        stdin=spec_json(dtype="int32")),
    cli("layers-unknown-kind", ["train", "--spec", "-"], "layers[1].kind", "'capsule'",
        "'dense'",
        stdin=layers_json(layers=[{"kind": "dense", "units": 4}, {"kind": "capsule"}])),
    cli("layers-unknown-field", ["train", "--spec", "-"], "layers[0]['bias']", "False",
        "fields of Dense: units",
        stdin=layers_json(layers=[{"kind": "dense", "units": 4, "bias": False}])),
    cli("layers-missing-field", ["train", "--spec", "-"], "layers[0]", "field 'units'",
        stdin=layers_json(layers=[{"kind": "dense"}])),
    cli("layers-units-zero", ["train", "--spec", "-"], "Dense.units", "0", ">= 1",
        stdin=layers_json(layers=[{"kind": "dense", "units": 0}])),
    cli("layers-activation-unknown", ["train", "--spec", "-"], "activation", "'nope'", "'relu'",
        stdin=layers_json(layers=[{"kind": "activation", "name": "nope"},
                                  {"kind": "dense", "units": 1}])),
    cli("layers-without-input_shape", ["train", "--spec", "-"], "input_shape", "None",
        stdin=layers_json(input_shape=None)),
    cli("layers-input_shape-zero", ["train", "--spec", "-"], "input_shape[0]", "0", ">= 1",
        stdin=layers_json(input_shape=[0])),
    cli("layers-not-a-list", ["train", "--spec", "-"], "layers", "'dense'", "a tuple of layer",
        stdin=layers_json(layers="dense")),
    cli("layers-and-sizes-disagree", ["train", "--spec", "-"], "layers", "sizes=(2, 4, 1)",
        stdin=layers_json(sizes=[2, 4, 1])),
    cli("layers-with-activation", ["train", "--spec", "-"], "activation", "'relu'",
        "None with layers", stdin=layers_json(activation="relu")),
    cli("layers-wrong-feature-count", ["train", "--spec", "-"], "x_train.shape", "(4, 2)",
        "(4, 3)", stdin=layers_json(input_shape=[3])),
    cli("spec-not-json", ["train", "--spec", "-"], "spec JSON", "{sizes", "valid JSON",
        stdin="{sizes: [2, 4, 1]}"),
    cli("spec-missing-file", ["train", "--spec", "/nonexistent/spec.json"], "--spec",
        "'/nonexistent/spec.json'", "readable file"),
    cli("compare-backends-repeated", ["compare", "--backends", "numpy", "numpy", "--epochs",
                                      "2"],
        "backends", "['numpy', 'numpy']", "at most once"),
    cli("compare-reference-not-compared", ["compare", "--backends", "numpy", "--reference",
                                           "torch", "--epochs", "2"],
        "reference", "'torch'", "['numpy']"),
    cli("compare-wrong-feature-count", ["compare", "--backends", "numpy", "--sizes", "3,4,1",
                                        "--epochs", "2"],
        "x_train.shape", "(4, 2)", "(4, 3)"),
]


#: warnings Python does not print by default (so a subprocess would not show them)
SILENT_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


@pytest.mark.parametrize("args, stdin, fragments, needs", CLI_CASES)
def test_cli_one_line_exit_2(args, stdin, fragments, needs, monkeypatch, capsys):
    """The CLI's entry point, main(), in this process (the real ``python -m`` entry
    point runs in a subprocess in test_cli.py, test_cli_flags.py and below)."""
    for framework in needs:
        require(framework)
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(list(args))
    out, err = capsys.readouterr()
    printed = [w for w in caught if not issubclass(w.category, SILENT_WARNINGS)]
    assert not printed, [str(w.message) for w in printed]       # they would go to stderr
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("nnparity: error: "), lines[0]
    assert out == "", f"work started before the error: {out!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def test_cli_zero_epochs_prints_the_initial_parameters():
    """Negative control for the table above: epochs=0 is accepted (exit 0) and
    prints the initial parameters."""
    proc = run_cli("train", "--epochs", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    w0 = init_params(spec(optimizer=SGD(lr=1e-5), sizes=(2, 4, 1)))[0]["weight"]
    # the notebook's first hidden weight, printed the way NumPy prints it
    assert f"hidden weight: {w0}".splitlines()[0] in proc.stdout, proc.stdout


def test_layer_form_negative_controls():
    """The layer-form cases above differ from valid specs only in what each changes:
    layer_spec() is valid and not an MLP, a list of layers is taken as a tuple, and
    sizes with the layers they build is the same spec."""
    general = layer_spec()
    assert general.sizes is None and general.activation is None
    assert general.layers == LAYERS and general.input_shape == (2,)
    assert layer_spec(layers=list(LAYERS)).layers == LAYERS
    assert NetworkSpec.from_json(layers_json()) == general
    mlp = (Dense(4), Activation("relu"), Dense(1))
    assert spec(input_shape=(2,), layers=mlp) == spec() == layer_spec(layers=mlp)
    assert Activation("leaky_relu", {"negative_slope": 0.2}).params == (("negative_slope", 0.2),)


@pytest.mark.parametrize("layers, fragment", [
    ([{"kind": "dense", "units": 4}, {"kind": "pool"}], "layers[1].kind='pool'"),
    ([{"kind": "dense", "units": 4, "bias": False}], "layers[0]['bias']=False"),
])
def test_cli_bad_layer_spec_file_is_one_line_exit_2(tmp_path, layers, fragment):
    """The real entry point, in a subprocess, with the spec in a file."""
    path = tmp_path / "spec.json"
    path.write_text(layers_json(layers=layers))
    proc = run_cli("train", "--spec", str(path))
    assert proc.returncode == 2, proc
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnparity: error: "), proc.stderr
    assert fragment in lines[0]


def test_cli_layer_spec_file_negative_control(tmp_path):
    """The same file with valid layers trains (exit 0)."""
    path = tmp_path / "spec.json"
    path.write_text(layers_json(epochs=1))
    proc = run_cli("train", "--spec", str(path))
    assert proc.returncode == 0, proc.stderr
