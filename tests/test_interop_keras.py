"""Export to Keras 3 (``nnparity.backends.interop.to_keras``): the exported
``keras.Sequential``'s forward (``training=False``, channels-last inputs from
``keras_inputs``) equals nnparity's ``predict`` under the float32 policy, for every
layer kind, with parameters and BatchNorm statistics from a short float32 training run.

Keras computes in float32 even with float64 variables, so a float64 export agrees only
to float32 accuracy: a test measures it and shows it fails the float64 policy.

Negative controls fail the same check: a conv kernel with its spatial axes swapped, a
Dense given torch's (out, in) weight as its kernel, the GRU's r and z blocks left in
torch's order, the Dense after a channels-last Flatten without its columns permuted,
and BatchNorm's momentum left in torch's meaning (Keras weighs the old value), shown on
the moving mean after a training-mode call against ``torch.nn.BatchNorm2d``'s.
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
                             RNN, Residual, init_params)
from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.core.layers import Layer
from nnparity.shared.core.tolerance import POLICY, difference

TOL = POLICY["float32"]

#: small float32 networks; together they use every kind to_keras exports
CASES = {
    "mlp-batchnorm-dropout": NetworkSpec(input_shape=(5,), layers=(
        Dense(8), Activation("gelu"), Dropout(0.3), Dense(6),
        Activation("leaky_relu", {"negative_slope": 0.1}), BatchNorm(), Dense(2))),
    "conv2d-pools": NetworkSpec(input_shape=(2, 7, 6), layers=(
        Conv2d(4, 3, padding="same"), BatchNorm(momentum=0.2), Activation("relu"),
        MaxPool2d(2),
        Conv2d(4, (2, 3), stride=(1, 2), groups=2, padding=((1, 0), (0, 1))),
        AvgPool2d(2, stride=1, padding=1), Activation("tanh"), Flatten(), Dropout(0.2),
        Dense(3))),
    "conv1d-pools": NetworkSpec(input_shape=(3, 11), layers=(
        Conv1d(4, 3, stride=2, padding=1, bias=False), BatchNorm(affine=False),
        MaxPool1d(2), AvgPool1d(3, stride=1, count_include_pad=False),
        Activation("silu"), Flatten(), Dense(2))),
    "layout-changes": NetworkSpec(input_shape=(2, 5, 4), layers=(
        Conv2d(3, 3, padding=1, dilation=1), LayerNorm(),
        Residual((Conv2d(3, 3, padding=1), BatchNorm())), Dense(4), Activation("elu"),
        Conv2d(2, 1), Flatten(), LayerNorm(), Dense(2))),
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
CASES = {name: spec.replace(init="torch_default", batch_size=4, epochs=2, dtype="float32")
         for name, spec in CASES.items()}


@functools.cache
def trained(name: str, dtype: str = "float32"):
    """(spec, trained params, trained model state, inputs) of ``CASES[name]`` in ``dtype``."""
    spec = CASES[name].replace(dtype=dtype)
    data = data_for(spec, rows=12, seed=4)
    result = train(spec, data, backend="numpy", metrics=False)
    x = data.x_train if spec.takes_tokens else data.x_train.astype(spec.dtype)
    return spec, result.params, result.model_state, x


def keras_forward(spec, params, model_state, x):
    """The exported Keras model's output for nnparity's inputs x (eval mode)."""
    require("keras")
    from nnparity.backends.interop.keras_model import keras_inputs, to_keras
    model = to_keras(spec, params, model_state)
    y = model.predict(keras_inputs(spec, x), batch_size=len(x), verbose=0)   # training=False
    return np.asarray(y, np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_forward_equals_predict_in_float32(name):
    spec, params, model_state, x = trained(name)
    expected = predict(spec, params, x, model_state=model_state)
    got = keras_forward(spec, params, model_state, x)
    assert difference(got, expected, TOL).ok, difference(got, expected, TOL)


def test_every_activation():
    for name in ACTIVATIONS:
        spec = NetworkSpec(input_shape=(3,), layers=(Dense(40), Activation(name), Dense(2)),
                           init="he_normal", dtype="float32")
        params = init_params(spec)
        x = (np.random.default_rng(0).standard_normal((5, 3)) * 4).astype(np.float32)
        got = keras_forward(spec, params, None, x)
        assert difference(got, predict(spec, params, x), TOL).ok, name


def test_channels_last_inputs():
    from nnparity.backends.interop.keras_model import channels_last_input, keras_inputs
    spec = CASES["conv2d-pools"]
    x = np.arange(2 * 2 * 7 * 6, dtype=np.float32).reshape(2, 2, 7, 6)
    assert channels_last_input(spec) and keras_inputs(spec, x).shape == (2, 7, 6, 2)
    assert keras_inputs(spec, x)[1, 3, 4, 1] == x[1, 1, 3, 4]
    assert not channels_last_input(CASES["norms-on-a-sequence"])
    with pytest.raises(ValueError, match="x"):
        keras_inputs(spec, x[:, :, :, :5])


@pytest.mark.parametrize("layers", [
    (Activation("relu"), Conv2d(3, 3), Flatten(), Dense(2)),
    (Residual((Conv2d(2, 3, padding=1),)), Activation("tanh"), MaxPool2d(2), Flatten(),
     Dense(2)),
    (Dropout(0.1), BatchNorm(), Conv2d(3, 2), Flatten(), Dense(2)),
], ids=["activation-first", "residual-first", "dropout-then-batchnorm"])
def test_the_input_layout_is_flaxs_when_elementwise_layers_or_a_residual_come_first(layers):
    """One rule (``layouts.channels_last_input``) for Keras and Flax: the first layer that
    depends on the axis order decides, so both exports take the same input layout."""
    from nnparity.backends.interop.flax_nnx import flax_input_shape
    from nnparity.backends.interop.keras_model import keras_inputs
    spec = NetworkSpec(input_shape=(2, 5, 5), layers=layers, init="torch_default",
                       dtype="float32")
    params = init_params(spec)
    x = np.random.default_rng(0).standard_normal((4, 2, 5, 5)).astype(np.float32)
    assert keras_inputs(spec, x).shape[1:] == flax_input_shape(spec) == (5, 5, 2)
    assert difference(keras_forward(spec, params, None, x), predict(spec, params, x), TOL).ok


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transformer", "conv2d-pools", "recurrent"])
def test_a_float64_export_is_float32_accurate_only(name):
    spec, params, model_state, x = trained(name, "float64")
    expected = predict(spec, params, x, model_state=model_state)
    got = keras_forward(spec, params, model_state, x)
    assert difference(got, expected, POLICY["float32"]).ok
    assert not difference(got, expected, POLICY["float64"]).ok


@pytest.mark.parametrize("wrong", ["conv-spatial-axes-swapped", "dense-out-in-weight"])
def test_negative_control_a_transposed_kernel_fails(wrong):
    spec = NetworkSpec(input_shape=(2, 5, 5), layers=(Conv2d(3, 3), Flatten(), Dense(4),
                                                      Activation("tanh"), Dense(4)),
                       init="torch_default", dtype="float32")
    params = init_params(spec)
    x = np.random.default_rng(1).standard_normal((4, 2, 5, 5)).astype(np.float32)
    bad = [dict(layer) for layer in params]
    if wrong == "conv-spatial-axes-swapped":
        bad[0]["weight"] = bad[0]["weight"].transpose(0, 1, 3, 2)      # (O, I, kw, kh)
    else:
        bad[4]["weight"] = bad[4]["weight"].T.copy()                   # kernel = torch's weight
    expected = predict(spec, params, x)
    assert difference(keras_forward(spec, params, None, x), expected, TOL).ok
    assert not difference(keras_forward(spec, bad, None, x), expected, TOL).ok


def test_negative_control_gru_gates_r_and_z_left_in_torchs_order(monkeypatch):
    from nnparity.backends.interop import keras_model
    spec, params, model_state, x = trained("recurrent")
    expected = predict(spec, params, x, model_state=model_state)
    monkeypatch.setattr(keras_model, "KERAS_GRU", keras_model.TORCH_GRU)
    assert not difference(keras_forward(spec, params, model_state, x), expected, TOL).ok


def test_negative_control_flatten_columns_not_permuted(monkeypatch):
    from nnparity.backends.interop import keras_model
    spec, params, model_state, x = trained("conv2d-pools")
    expected = predict(spec, params, x, model_state=model_state)
    monkeypatch.setattr(keras_model.layouts, "flatten_columns_channels_last",
                        lambda weight, shape: weight)
    assert not difference(keras_forward(spec, params, model_state, x), expected, TOL).ok


def moving_statistics_after_a_training_call(unconverted: bool):
    """(Keras's moving mean and variance after one training-mode call of the exported
    BatchNorm(momentum=0.2), ``torch_batch_norm_after_a_step`` on the same batch).
    ``unconverted``: the exporter is handed 1 - 0.2, so Keras gets torch's 0.2
    unconverted."""
    keras = require("keras")
    from nnparity.backends.interop.keras_model import to_keras
    spec, params, model_state, _ = trained("conv2d-pools")
    momentum = spec.layers[1].momentum
    bn_spec = NetworkSpec(input_shape=(4, 7, 6), layers=(
        BatchNorm(momentum=1 - momentum if unconverted else momentum), Flatten(), Dense(2)),
        dtype="float32")
    bn_params = [params[1], {}, {"weight": np.ones((2, 168), np.float32),
                             "bias": np.zeros(2, np.float32)}]
    model = to_keras(bn_spec, bn_params, [model_state[1], {}, {}])
    z = (np.random.default_rng(2).standard_normal((5, 4, 7, 6)) + 0.5).astype(np.float32)
    norm = model.layers[0]
    norm(np.moveaxis(z, 1, -1), training=True)
    return (keras.ops.convert_to_numpy(norm.moving_mean),
            keras.ops.convert_to_numpy(norm.moving_variance),
            torch_batch_norm_after_a_step(params[1], model_state[1], z, momentum))


def test_batch_norm_momentum_is_converted_for_training_in_keras():
    # Keras's moving variance takes the biased batch variance, torch's the unbiased one
    mean, var, torch_after = moving_statistics_after_a_training_call(False)
    assert_biased_running_variance(mean, var, torch_after, 0.2, TOL)


def test_negative_control_batch_norm_momentum_left_in_torchs_meaning():
    mean, _, (torch_mean, *_) = moving_statistics_after_a_training_call(True)
    assert not difference(mean, torch_mean, TOL).ok


class Conv3d(Layer):
    kind = "conv3d"


def test_bad_input_and_unsupported_settings_are_refused_before_any_work():
    require("keras")
    from nnparity.backends.interop.keras_model import check_exportable, to_keras
    spec, params, model_state, _ = trained("mlp-batchnorm-dropout")
    with pytest.raises(TypeError, match="spec"):
        to_keras("mlp", params, model_state)
    short = [dict(layer) for layer in params]
    short[0]["weight"] = short[0]["weight"][:, :-1]
    with pytest.raises(ValueError, match=r"params"):
        to_keras(spec, short, model_state)
    with pytest.raises(ValueError, match=r"layers\[0\]\.kind=.conv3d.*dense"):
        check_exportable(Conv3d(), "layers[0]")
    refused = {
        r"layers\[1\]\.padding": (MaxPool2d(2, padding=1),),
        r"layers\[1\]\.count_include_pad": (AvgPool2d(3, padding=1, count_include_pad=False),),
        r"layers\[1\]\.dilation": (Conv2d(1, 3, stride=2, dilation=2, padding=2),),
    }
    for message, middle in refused.items():
        bad = NetworkSpec(input_shape=(1, 6, 6), layers=(Dense(6), *middle, Flatten(),
                                                         Dense(1)), dtype="float32")
        with pytest.raises(ValueError, match=message):
            to_keras(bad, init_params(bad))
