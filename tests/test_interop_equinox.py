"""Export to Equinox (``nnparity.backends.interop.to_equinox``): the exported module's
forward (eval mode, ``jax.vmap`` over the batch) equals nnparity's ``predict`` under the
float64 policy, for every layer kind, with parameters and BatchNorm statistics from a
short training run (so the running statistics are not their initial values).

Negative controls fail the same check: a conv kernel with its spatial axes swapped, a
Linear given the (in, out) kernel of Flax and Keras, and BatchNorm's momentum left in
torch's meaning (Equinox weighs the old value), shown on the running mean after a
training step in Equinox against ``torch.nn.BatchNorm2d``'s.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import require
from layer_contract import assert_biased_running_variance, data_for, torch_batch_norm_after_a_step

from nnparity.backends import predict, train
from nnparity.shared import (Activation, AvgPool1d, AvgPool2d, BatchNorm, Conv1d, Conv2d,
                             Dense, Dropout, Embedding, Flatten, GRU, LSTM, LayerNorm,
                             MaxPool1d, MaxPool2d, MultiHeadAttention, NetworkSpec, RMSNorm,
                             RNN, Residual, init_model_state, init_params)
from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.core.layers import Layer
from nnparity.shared.core.tolerance import POLICY, difference

TOL = POLICY["float64"]

#: small float64 networks; together they use every kind to_equinox exports
CASES = {
    "mlp-batchnorm-dropout": NetworkSpec(input_shape=(5,), layers=(
        Dense(8), Activation("gelu"), Dropout(0.3), Dense(6),
        Activation("leaky_relu", {"negative_slope": 0.1}), BatchNorm(), Dense(2))),
    "conv2d-pools": NetworkSpec(input_shape=(2, 7, 6), layers=(
        Conv2d(4, 3, padding="same"), BatchNorm(momentum=0.2), Activation("relu"),
        MaxPool2d(2, padding=1),
        Conv2d(4, (2, 3), stride=(1, 2), groups=2, padding=((1, 0), (0, 1))),
        AvgPool2d(2, stride=1, padding=1), Activation("tanh"), Flatten(), Dense(3))),
    "conv1d-pools": NetworkSpec(input_shape=(3, 11), layers=(
        Conv1d(4, 3, stride=2, padding=1, dilation=1, bias=False), BatchNorm(affine=False),
        MaxPool1d(2), AvgPool1d(3, stride=1, count_include_pad=False),
        Activation("silu"), Flatten(), Dense(2))),
    "norms-on-a-sequence": NetworkSpec(input_shape=(4, 6), layers=(
        LayerNorm(), Dense(5), Activation("mish"), LayerNorm(dims=2, bias=False), RMSNorm(),
        RMSNorm(dims=2, eps=1e-3, elementwise_affine=False), Flatten(), Dense(2))),
    "recurrent": NetworkSpec(input_shape=(6,), layers=(
        Embedding(9, 5, padding_idx=0), LSTM(6, num_layers=2), GRU(4),
        RNN(3, nonlinearity="relu", return_sequence=False), Dense(2)), seed=1),
    "recurrent-no-bias": NetworkSpec(input_shape=(5, 3), layers=(
        RNN(4, bias=False), LSTM(4, bias=False), GRU(3, bias=False, return_sequence=False),
        Dense(2)), seed=2),
    "transformer": NetworkSpec(input_shape=(6,), layers=(
        Embedding(7, 8),
        Residual((LayerNorm(), MultiHeadAttention(2, causal=True))),
        Residual((LayerNorm(), Dense(16), Activation("gelu"), Dense(8))),
        MultiHeadAttention(4, bias=False), Flatten(), Dense(2)), seed=3),
}
CASES = {name: spec.replace(init="torch_default", batch_size=4, epochs=2)
         for name, spec in CASES.items()}


@functools.cache
def trained(name: str, dtype: str = "float64"):
    """(spec, trained params, trained model state, inputs) of ``CASES[name]`` in ``dtype``."""
    spec = CASES[name].replace(dtype=dtype)
    data = data_for(spec, rows=12, seed=4)
    result = train(spec, data, backend="numpy", metrics=False)
    x = data.x_train if spec.takes_tokens else data.x_train.astype(spec.dtype)
    return spec, result.params, result.model_state, x


def equinox_forward(spec, params, model_state, x):
    """The exported Equinox network's output for x, and the network."""
    jax = require("jax")
    require("equinox")
    from nnparity.backends.interop import to_equinox
    with jax.enable_x64(True):
        network = to_equinox(spec, params, model_state)
        return np.asarray(network(jax.numpy.asarray(x))), network


@pytest.mark.parametrize("name", list(CASES))
def test_forward_equals_predict_in_float64(name):
    spec, params, model_state, x = trained(name)
    expected = predict(spec, params, x, model_state=model_state)
    got, network = equinox_forward(spec, params, model_state, x)
    assert difference(got, expected, TOL).ok, difference(got, expected, TOL)
    eqx = require("equinox")
    arrays = require("jax").tree.leaves(eqx.filter(network, eqx.is_inexact_array))
    assert arrays and {a.dtype.name for a in arrays} == {"float64"}


def test_a_float32_export_has_float32_parameters_and_meets_the_float32_policy():
    spec, params, model_state, x = trained("conv2d-pools", "float32")
    expected = predict(spec, params, x, model_state=model_state)
    got, network = equinox_forward(spec, params, model_state, x)
    assert got.dtype == np.float32
    assert difference(got, expected, POLICY["float32"]).ok
    eqx = require("equinox")
    arrays = require("jax").tree.leaves(eqx.filter(network, eqx.is_inexact_array))
    assert {a.dtype.name for a in arrays} == {"float32"}


def test_a_float64_network_refuses_to_run_with_x64_off():
    jax = require("jax")
    require("equinox")
    from nnparity.backends.interop import to_equinox
    spec, params, model_state, x = trained("mlp-batchnorm-dropout")
    with jax.enable_x64(True):
        network = to_equinox(spec, params, model_state)
    with jax.enable_x64(False), pytest.raises(ValueError, match="jax_enable_x64"):
        network(x)


def test_every_activation():
    for name in ACTIVATIONS:
        spec = NetworkSpec(input_shape=(3,), layers=(Dense(40), Activation(name), Dense(2)),
                           init="he_normal")
        params = init_params(spec)
        x = np.random.default_rng(0).standard_normal((5, 3)) * 4
        got, _ = equinox_forward(spec, params, None, x)
        assert difference(got, predict(spec, params, x), TOL).ok, name


def test_batch_norm_statistics_are_the_trained_ones():
    spec, params, model_state, x = trained("conv2d-pools")
    assert not np.allclose(model_state[1]["running_var"], 1.0)
    initial = equinox_forward(spec, params, init_model_state(spec), x)[0]
    assert not difference(initial, predict(spec, params, x, model_state=model_state), TOL).ok


@pytest.mark.parametrize("wrong", ["conv-spatial-axes-swapped", "linear-in-out-kernel"])
def test_negative_control_a_transposed_kernel_fails(wrong):
    spec = NetworkSpec(input_shape=(2, 5, 5), layers=(Conv2d(3, 3), Flatten(), Dense(4),
                                                      Activation("tanh"), Dense(4)),
                       init="torch_default")
    params = init_params(spec)
    x = np.random.default_rng(1).standard_normal((4, 2, 5, 5))
    bad = [dict(layer) for layer in params]
    if wrong == "conv-spatial-axes-swapped":
        bad[0]["weight"] = bad[0]["weight"].transpose(0, 1, 3, 2)      # (O, I, kw, kh)
    else:
        bad[4]["weight"] = bad[4]["weight"].T.copy()                   # (in, out)
    expected = predict(spec, params, x)
    assert difference(equinox_forward(spec, params, None, x)[0], expected, TOL).ok
    assert not difference(equinox_forward(spec, bad, None, x)[0], expected, TOL).ok


def batch_norm_after_a_training_step(unconverted: bool):
    """(Equinox's running mean and variance after one training-mode batch through the
    exported BatchNorm(momentum=0.2), ``torch_batch_norm_after_a_step`` on the same
    batch). ``unconverted``: the exporter is handed 1 - 0.2, so that Equinox gets
    torch's 0.2 unconverted."""
    jax, eqx, torch = require("jax"), require("equinox"), require("torch")
    spec, params, model_state, _ = trained("conv2d-pools")
    conv, bn = spec.layers[:2]
    momentum = bn.momentum
    exported = spec.replace(layers=(conv, BatchNorm(momentum=1 - momentum if unconverted
                                                    else momentum), Flatten(), Dense(2)))
    params = params[:2] + [{}, {"weight": np.ones((2, 4 * 7 * 6)), "bias": np.zeros(2)}]
    model_state = model_state[:2] + [{}, {}]
    x = np.random.default_rng(2).standard_normal((5, 2, 7, 6)) + 0.5
    from nnparity.backends.interop import to_equinox
    with jax.enable_x64(True):
        network = to_equinox(exported, params, model_state)
        layers = eqx.nn.inference_mode(network.layers, value=False)
        run = jax.vmap(layers, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
        _, state = run(jax.numpy.asarray(x), network.state)
        norm = network.layers[1]
        hidden_mean, hidden_var = state.get(norm.batch_state_index)
        scale = 1 - norm.momentum ** state.get(norm.batch_counter)   # Equinox's debiasing
        mean, var = np.asarray(hidden_mean / scale), np.asarray(hidden_var / scale)
    z = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(params[0]["weight"]),
                                   torch.from_numpy(params[0]["bias"]), padding="same").numpy()
    return mean, var, torch_batch_norm_after_a_step(params[1], model_state[1], z, momentum)


def test_batch_norm_momentum_is_converted_for_training_in_equinox():
    # Equinox's variance update takes the biased batch variance, torch's the unbiased one
    mean, var, torch_after = batch_norm_after_a_training_step(False)
    assert_biased_running_variance(mean, var, torch_after, 0.2, TOL)


def test_negative_control_batch_norm_momentum_left_in_torchs_meaning():
    mean, _, (torch_mean, *_) = batch_norm_after_a_training_step(True)
    assert not difference(mean, torch_mean, TOL).ok


class Conv3d(Layer):
    kind = "conv3d"


def test_bad_input_and_unsupported_settings_are_refused_before_any_work():
    require("equinox")
    from nnparity.backends.interop import to_equinox
    from nnparity.backends.interop.equinox_eqx import check_exportable
    spec, params, model_state, _ = trained("mlp-batchnorm-dropout")
    with pytest.raises(TypeError, match="spec"):
        to_equinox("mlp", params, model_state)
    short = [dict(layer) for layer in params]
    short[0]["weight"] = short[0]["weight"][:, :-1]
    with pytest.raises(ValueError, match=r"params"):
        to_equinox(spec, short, model_state)
    with pytest.raises(ValueError, match=r"layers\[0\]\.kind=.conv3d.*dense"):
        check_exportable(Conv3d(), "layers[0]")
    pool = NetworkSpec(input_shape=(1, 6, 6), layers=(
        Dense(6), AvgPool2d(3, padding=1, count_include_pad=False), Flatten(), Dense(1)))
    with pytest.raises(ValueError, match=r"layers\[1\]\.count_include_pad"):
        to_equinox(pool, init_params(pool))
    frozen = NetworkSpec(input_shape=(3,), layers=(Dense(4), Residual((BatchNorm(momentum=0.0),)),
                                                   Dense(1)))
    with pytest.raises(ValueError, match=r"layers\[1\]\.layers\[0\]\.momentum"):
        to_equinox(frozen, init_params(frozen))
