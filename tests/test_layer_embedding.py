"""Embedding, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.Embedding``. The contract's token data repeats tokens in every batch,
so its gradient checks cover the scatter-add.

Beyond the contract: the padding row (no gradient in any backend; zero at init;
its forward value is the row's), the buffered ``dW[x] += g`` as a negative
control, tokens checked before any work (out of range, negative, floats), the
Embedding-first rule, and the spec's fields."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from layer_contract import (LayerContract, data_for,
                            relative_error)

from nnparity.backends import predict, train
from nnparity.backends.numpy.layers import embedding as numpy_embedding
from nnparity.shared import (SGD, Activation, Adam, Dataset, Dense, Flatten, LayerNorm,
                             NetworkSpec, compare, init_params)
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.layers.embedding import Embedding

BACKENDS = ("numpy", "torch", "jax")


def torch_module(layer: Embedding, input_shape):
    import torch
    return torch.nn.Embedding(layer.num_embeddings, layer.embedding_dim,
                              padding_idx=layer.padding_idx)


def tokens_net(embedding, input_shape=(5,), init="torch_default", seed=0, **fields):
    """tokens -> embedding -> tanh -> Flatten -> Dense(2)."""
    settings = {"optimizer": SGD(lr=0.05), "batch_size": 4, "epochs": 3, **fields}
    return NetworkSpec(input_shape=input_shape,
                       layers=(embedding, Activation("tanh"), Flatten(), Dense(2)),
                       init=init, seed=seed, **settings)


class TestEmbedding(LayerContract):
    cases = {
        "7x3": tokens_net(Embedding(7, 3)),
        "padding-idx": tokens_net(Embedding(6, 4, padding_idx=2), seed=1),
        "2d-tokens-layernorm": NetworkSpec(
            input_shape=(2, 3), layers=(Embedding(5, 4), LayerNorm(), Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=Adam(lr=0.01), batch_size=5, epochs=3, seed=2,
            shuffle=True),
        "one-token": tokens_net(Embedding(4, 3, padding_idx=-1), input_shape=(1,),
                                init="he_normal", seed=3),
    }

    def expected_gradients(self, spec, x, finite_differences):
        """The padding row is the exception: the loss does depend on it (finite
        differences are not 0 there), but torch's convention, and ours, is that it
        gets no gradient. Every other entry must match."""
        row = spec.layers[0].padding_idx
        if row is not None and (x == row).any():
            assert np.abs(finite_differences[0]["weight"][row]).max() > 1e-3
            finite_differences[0]["weight"][row] = 0.0
        return finite_differences


# ------------------------------------------------------------------- the padding row

@pytest.mark.parametrize("backend", BACKENDS)
def test_the_padding_row_gets_no_gradient_and_keeps_its_value(backend):
    require(backend)
    spec = TestEmbedding.cases["padding-idx"]
    data = data_for(spec)
    assert (data.x_train == 2).any()                          # the padding token is used
    start = init_params(spec)[0]["weight"]
    trained = train(spec, data, backend=backend).params[0]["weight"]
    assert np.array_equal(trained[2], start[2]) and not start[2].any()
    assert not np.allclose(trained[np.arange(6) != 2], start[np.arange(6) != 2])


def test_the_padding_rows_forward_value_is_the_row_as_in_torch():
    """torch's F.embedding does not zero a nonzero padding row when it looks it up;
    neither does any backend."""
    torch = require("torch")
    layer = Embedding(6, 4, padding_idx=2)
    weight = np.random.default_rng(0).standard_normal((6, 4))
    x = np.array([[2, 0, 2], [5, 2, 1]])
    module = torch_module(layer, (3,)).double()
    module.weight.data = torch.from_numpy(weight)
    expected = module(torch.from_numpy(x)).detach().numpy()
    assert np.array_equal(expected[:, [0, 2]][0], weight[[2, 2]])
    jax = require("jax")
    from nnparity.backends.jax.layers import embedding as jax_embedding
    from nnparity.backends.torch.layers import embedding as torch_embedding
    with jax.enable_x64(True):
        jax_y = np.asarray(jax_embedding.forward(layer, {"weight": jax.numpy.asarray(weight)},
                                                 {}, x, True)[0])
    results = {
        "numpy": numpy_embedding.forward(layer, {"weight": weight}, {}, x, True)[0],
        "torch": torch_embedding.forward(layer, {"weight": torch.from_numpy(weight)}, {},
                                         torch.from_numpy(x), True).numpy(),
        "jax": jax_y}
    for backend, result in results.items():
        assert np.array_equal(result, expected), backend


def test_negative_control_buffered_index_add_drops_repeated_tokens():
    """``dW[x] += g`` (numpy-ml's form) keeps one of each repeated token's gradients."""
    layer = Embedding(4, 3)
    x = np.array([[1, 1, 2]])
    d_y = np.arange(9.0).reshape(1, 3, 3)
    grads = {"weight": np.empty((4, 3))}
    numpy_embedding.backward(layer, {}, x, d_y, grads, need_input_grad=False)
    buffered = np.zeros((4, 3))
    buffered[x] += d_y
    assert np.array_equal(grads["weight"][1], d_y[0, 0] + d_y[0, 1])
    assert relative_error([{"weight": buffered}], [grads]) > 0.1


# --------------------------------------------------------------- tokens are checked

@pytest.mark.parametrize("bad, error, match", [
    (7, ValueError, r"x_train\[2, 3\]=7 is not allowed: expected a token in \[0, 7\)"),
    (-1, ValueError, r"x_train\[2, 3\]=-1 .* a token in \[0, 7\)"),
])
def test_out_of_range_tokens_are_refused_before_any_work(bad, error, match):
    spec = TestEmbedding.cases["7x3"]
    data = data_for(spec)
    data.x_train[2, 3] = bad
    for backend in BACKENDS:
        with pytest.raises(error, match=match):
            train(spec, data, backend=backend)
    with pytest.raises(error, match=match):
        compare(spec, data)


def test_predict_checks_tokens_too():
    spec = TestEmbedding.cases["7x3"]
    params = init_params(spec)
    with pytest.raises(ValueError, match=r"x\[0, 0\]=9"):
        predict(spec, params, np.full((1, 5), 9), "jax")
    with pytest.raises(TypeError, match=r"x\.dtype=.*float64.*integer tokens"):
        predict(spec, params, np.zeros((1, 5)), "numpy")


def test_float_and_token_inputs_do_not_mix():
    spec = TestEmbedding.cases["7x3"]
    data = data_for(spec)
    with pytest.raises(TypeError, match="x_test.dtype"):
        Dataset(data.x_train, data.y_train, data.x_test.astype(float), data.y_test)
    float_spec = NetworkSpec(input_shape=(5,), layers=(Dense(2),))
    with pytest.raises(TypeError, match="x_train.dtype"):
        train(float_spec, data)


def test_embedding_only_first():
    with pytest.raises(ValueError, match=r"layers\[1\].*only as layers\[0\]"):
        NetworkSpec(input_shape=(3,), layers=(Dense(4), Embedding(4, 2), Flatten(), Dense(1)))


# ------------------------------------------------------------------------- the spec

def test_fields_round_trip_and_shapes():
    layer = Embedding(10, 4, padding_idx=-1)
    assert layer.padding_idx == 9                              # stored as the row it names
    assert layer_from_dict(layer.to_dict()) == layer
    spec = tokens_net(layer, input_shape=(2, 3))
    assert spec.layer_input_shapes[:2] == ((2, 3), (2, 3, 4))
    assert spec.param_shapes[0] == {"weight": (10, 4)} and spec.takes_tokens


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_embeddings": 0, "embedding_dim": 2}, ValueError, r"Embedding\.num_embeddings"),
    ({"num_embeddings": 3, "embedding_dim": 2.0}, TypeError, r"Embedding\.embedding_dim"),
    ({"num_embeddings": 3, "embedding_dim": 2, "padding_idx": 3}, ValueError,
     r"Embedding\.padding_idx=3.*<= num_embeddings - 1 = 2"),
    ({"num_embeddings": 3, "embedding_dim": 2, "padding_idx": -4}, ValueError,
     r"Embedding\.padding_idx=-4"),
])
def test_bad_fields_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        Embedding(**kwargs)


@pytest.mark.parametrize("rule", ["torch_default", "uniform_fan_in", "xavier_uniform",
                                  "he_normal", "zeros"])
def test_init_rules_and_the_zero_padding_row(rule):
    spec = tokens_net(Embedding(400, 50, padding_idx=3), init=rule)
    weight = init_params(spec)[0]["weight"]
    assert not weight[3].any()
    if rule == "torch_default":                                # N(0, 1), as torch
        assert abs(weight.std() - 1.0) < 0.02 and abs(weight.mean()) < 0.02


def test_negative_control_a_wrong_embedding_gradient_is_an_implementation_difference(
        monkeypatch):
    """torch's lookup with its gradient 1.5 times too large (the value unchanged) is
    caught at the first teacher-forced step: the rounding allowance of the Embedding
    gradient is at the rounding level (it once was the whole gradient, when the
    jittered scatter-add wrote into a copy, and this passed as "amplification")."""
    require("torch")
    from nnparity.backends.torch.layers import embedding as torch_embedding
    real = torch_embedding.forward

    def steeper(layer, params, buffers, x, train):
        weight = params["weight"]
        scaled = {"weight": 1.5 * weight - (0.5 * weight).detach()}   # same value
        return real(layer, scaled, buffers, x, train)

    monkeypatch.setattr(torch_embedding, "forward", steeper)
    spec = TestEmbedding.cases["7x3"]
    report = compare(spec, data_for(spec), backends=("numpy", "torch"))
    assert not report.ok
    assert report.parity[0].diagnosis.startswith("implementation differs: step 0"), \
        report.parity[0].diagnosis
