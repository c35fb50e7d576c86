"""The network as a tuple of layers: the two spec forms, the parameter tree and
its flat names, the flat-vector helper, the typed optimizer state."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require

from nnparity.shared import (Activation, Adam, Dense, NetworkSpec, OptimizerState, SGD,
                             from_flat, init_model_state, init_params, notebook_spec, to_flat)
from nnparity.shared.core.flat import in_one_vector
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.optimizers import init_state
from nnparity.shared.core.tree import check_tree, flat_names, in_order, leaves

NOTEBOOK_LAYERS = (Dense(4), Activation("relu"), Dense(1))


def test_the_shorthand_builds_exactly_the_layer_tuple():
    spec = NetworkSpec(input_shape=(2,), layers=NOTEBOOK_LAYERS)
    assert spec == notebook_spec()
    assert hash(spec) == hash(notebook_spec())
    assert notebook_spec().layers == NOTEBOOK_LAYERS
    assert notebook_spec().input_shape == (2,)
    assert spec.sizes == (2, 4, 1) and spec.activation == "relu"


@pytest.mark.parametrize("shorthand, layers", [
    (dict(sizes=(3, 1)), (Dense(1),)),
    (dict(sizes=(3, 5, 4, 2), activation=("tanh", "leaky_relu"),
          activation_params={"leaky_relu": {"negative_slope": 0.1}}),
     (Dense(5), Activation("tanh"), Dense(4), Activation("leaky_relu", {"negative_slope": 0.1}),
      Dense(2))),
    (dict(sizes=(2, 3, 3, 1), activation="elu", activation_params={"elu": {"alpha": 2.0}}),
     (Dense(3), Activation("elu", {"alpha": 2.0}), Dense(3), Activation("elu", {"alpha": 2.0}),
      Dense(1))),
], ids=["no-hidden", "two-activations", "same-params"])
def test_both_forms_give_the_same_spec(shorthand, layers):
    a = NetworkSpec(**shorthand)
    b = NetworkSpec(input_shape=(shorthand["sizes"][0],), layers=layers)
    assert a == b
    assert a.to_json() == b.to_json()
    assert NetworkSpec.from_json(b.to_json()) == a


def test_a_network_that_is_no_mlp_has_no_shorthand_and_round_trips_in_json():
    spec = NetworkSpec(input_shape=(3,), layers=(
        Dense(5), Activation("tanh"), Activation("leaky_relu", {"negative_slope": 0.2}),
        Dense(2)), init="torch_default", optimizer=Adam())
    assert spec.sizes is None and spec.activation is None and spec.activation_params is None
    d = json.loads(spec.to_json())
    assert "sizes" not in d and d["input_shape"] == [3]
    assert d["layers"][2] == {"kind": "activation", "name": "leaky_relu",
                              "params": {"negative_slope": 0.2}}
    assert NetworkSpec.from_json(spec.to_json()) == spec


def test_one_activation_name_with_two_parameter_sets_is_not_the_shorthand():
    spec = NetworkSpec(input_shape=(2,), layers=(
        Dense(3), Activation("elu", {"alpha": 2.0}), Dense(3), Activation("elu"), Dense(1)))
    assert spec.sizes is None


def test_replace_switches_between_the_forms():
    spec = notebook_spec()
    wider = spec.replace(sizes=(2, 8, 1))
    assert wider.layers == (Dense(8), Activation("relu"), Dense(1))
    general = spec.replace(layers=(Dense(3), Dense(1)))
    assert general.sizes is None and general.input_shape == (2,)
    assert spec.replace(epochs=5).layers == spec.layers


def test_shapes_come_from_the_input_shape_and_the_layers_before():
    spec = NetworkSpec(input_shape=(3,), layers=(Dense(5), Activation("tanh"), Dense(2)))
    assert spec.layer_input_shapes == ((3,), (5,), (5,), (2,))
    assert spec.param_shapes == ({"weight": (5, 3), "bias": (5,)}, {},
                                 {"weight": (2, 5), "bias": (2,)})
    assert spec.buffer_shapes == ({}, {}, {})
    assert spec.n_parameters == 5 * 3 + 5 + 2 * 5 + 2
    assert spec.output_shape == (2,)


def test_parameters_are_named_as_torch_names_them():
    params = init_params(notebook_spec())
    assert [list(layer) for layer in params] == [["weight", "bias"], [], ["weight", "bias"]]
    flat = to_flat(params)
    assert list(flat) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert flat["2.weight"] is params[2]["weight"]
    back = from_flat(flat, notebook_spec().param_shapes)
    assert all(a is b for a, b in zip(leaves(back), leaves(params), strict=True))
    assert flat_names(notebook_spec().param_shapes) == list(flat)


def test_the_tree_matches_torch_nn_sequential_state_dict_keys():
    torch = require("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    assert list(model.state_dict()) == list(to_flat(init_params(notebook_spec())))


def test_negative_control_from_flat_refuses_missing_and_extra_names():
    flat = to_flat(init_params(notebook_spec()))
    with pytest.raises(ValueError, match="missing \\['2.bias'\\]"):
        from_flat({k: v for k, v in flat.items() if k != "2.bias"}, notebook_spec().param_shapes)
    with pytest.raises(ValueError, match="unexpected \\['1.weight'\\]"):
        from_flat({**flat, "1.weight": flat["0.weight"]}, notebook_spec().param_shapes)


def test_check_tree_names_the_wrong_entry():
    spec = notebook_spec()
    params = init_params(spec)
    params[2] = {"weight": params[2]["weight"]}
    with pytest.raises(ValueError, match=r"params\[2\] keys"):
        check_tree(params, spec.param_shapes, spec.dtype)
    params = init_params(spec)
    params[0]["weight"] = params[0]["weight"].T
    with pytest.raises(ValueError, match=r"params\[0\]\['weight'\]"):
        check_tree(params, spec.param_shapes, spec.dtype)


def test_in_order_restores_the_specs_order():
    spec = notebook_spec()
    jax_like = [{"bias": 1, "weight": 2}, {}, {"bias": 3, "weight": 4}]
    assert [list(layer) for layer in in_order(jax_like, spec.param_shapes)] == \
        [["weight", "bias"], [], ["weight", "bias"]]


def test_model_state_is_an_empty_tree_for_dense_networks():
    assert init_model_state(notebook_spec()) == [{}, {}, {}]


def test_optimizer_state_is_typed():
    params = init_params(notebook_spec())
    state = init_state(Adam(), params)
    assert isinstance(state, OptimizerState)
    assert state.step == 0 and list(state.buffers) == ["exp_avg", "exp_avg_sq"]
    assert list(to_flat(state.buffers["exp_avg"])) == list(to_flat(params))
    assert init_state(SGD(lr=0.1), params).buffers == {}


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_the_flat_vector_and_its_views_share_memory(framework):
    params = init_params(NetworkSpec(sizes=(3, 4, 2)))
    if framework == "torch":
        torch = require("torch")
        flat, views = in_one_vector(params, "float64", torch.from_numpy)
    else:
        flat, views = in_one_vector(params, "float64")
    assert [{k: tuple(v.shape) for k, v in layer.items()} for layer in views] == \
        [{k: v.shape for k, v in layer.items()} for layer in params]
    flat += 1.0                                     # in place on the vector ...
    for view, original in zip(leaves(views), leaves(params), strict=True):
        assert np.array_equal(np.asarray(view), original + 1.0)   # ... moves every view
    assert all(np.array_equal(original, fresh) for original, fresh in
               zip(leaves(params), leaves(init_params(NetworkSpec(sizes=(3, 4, 2)))),
                   strict=True))                    # and the input was copied


def test_layer_dicts_round_trip_and_refuse_unknown_fields():
    for layer in (Dense(3), Activation("celu", {"alpha": 0.5}), Activation("relu")):
        assert layer_from_dict(layer.to_dict()) == layer
    with pytest.raises(ValueError, match="fields of Dense: units"):
        layer_from_dict({"kind": "dense", "units": 4, "bias": False})
    with pytest.raises(ValueError, match="one of .*'dense'"):
        layer_from_dict({"kind": "conv", "units": 4})


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(layers=(Dense(2),)), TypeError, "input_shape"),
    (dict(input_shape=(2,), layers=[]), ValueError, "1 to 1024 layers"),
    (dict(input_shape=(2,), layers=(Dense(2), "relu")), TypeError, r"layers\[1\]"),
    (dict(input_shape=(0,), layers=(Dense(2),)), ValueError, r"input_shape\[0\]"),
    (dict(input_shape=(2,), layers=(Dense(2),), activation="tanh"), ValueError,
     "Activation layers"),
    (dict(sizes=(2, 3, 1), input_shape=(2,), layers=(Dense(1),)), ValueError,
     "either the shorthand"),
    (dict(), TypeError, "sizes"),
])
def test_bad_layer_specs_are_refused_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        NetworkSpec(**kwargs)


@pytest.mark.parametrize("make, message", [
    (lambda: Dense(0), "Dense.units"), (lambda: Dense(2.5), "Dense.units"),
    (lambda: Dense(True), "Dense.units"), (lambda: Activation("nope"), "activation"),
    (lambda: Activation("relu", {"x": 1.0}), "parameters of 'relu' only"),
])
def test_bad_layers_are_refused_by_name(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_shorthand_changes_to_a_layer_spec_are_refused_by_name():
    spec = NetworkSpec(input_shape=(2,), layers=(Dense(3), Dense(1)))
    with pytest.raises(ValueError, match="activation=.*given as layers"):
        spec.replace(activation="tanh")
    assert spec.replace(sizes=(2, 5, 1)).layers == (Dense(5), Activation("relu"), Dense(1))


def test_the_cli_trains_a_layer_spec_file_and_refuses_shorthand_flags_for_it(tmp_path, capsys):
    from nnparity.shared.cli.main import main
    spec = NetworkSpec(input_shape=(2,), layers=(Dense(3), Activation("tanh"), Dense(3),
                                                 Dense(1)), init="torch_default", epochs=3)
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    assert main(["train", "--spec", str(path), "--save", str(tmp_path / "net.npz")]) == 0
    out = capsys.readouterr().out
    assert "hidden2 weight" in out and "output bias" in out
    assert main(["predict", "--checkpoint", str(tmp_path / "net.npz"), "--input", "1,2"]) == 0
    assert main(["train", "--spec", str(path), "--activation", "relu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--activation" in err[0] and "given as layers" in err[0]
