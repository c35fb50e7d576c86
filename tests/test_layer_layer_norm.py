"""LayerNorm, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.LayerNorm``. Beside them: one layer with random weight and bias in
every backend against torch in float64 and float32 (y, dL/dx, dL/dweight,
dL/dbias), and the traps a port falls into, each shown to fail."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract
from layer_vjp import RESULTS, backend_against_torch, one_layer, torch_results

from nnparity.shared import SGD, Activation, Adam, Dense, Flatten, LayerNorm, NetworkSpec
from nnparity.shared.core.layers import layer_from_dict

#: Keras's LayerNormalization default epsilon (torch's is 1e-5; layer-traps.md §4)
KERAS_EPS = 1e-3


def torch_module(layer: LayerNorm, input_shape):
    import torch
    return torch.nn.LayerNorm(normalized_shape=input_shape[-layer.dims:], eps=layer.eps,
                              elementwise_affine=layer.elementwise_affine, bias=layer.bias)


def dense_norm_tanh_dense(norm, seed=0):
    return NetworkSpec(input_shape=(3,), layers=(Dense(6), norm, Activation("tanh"), Dense(2)),
                       init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3,
                       seed=seed)


class TestLayerNorm(LayerContract):
    cases = {
        "dense-layernorm-tanh-dense": dense_norm_tanh_dense(LayerNorm()),
        "3x4-dims2-flatten": NetworkSpec(
            input_shape=(3, 4), layers=(LayerNorm(dims=2), Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=Adam(lr=0.01), batch_size=5, epochs=3, seed=2),
        "3x4-dims1-flatten": NetworkSpec(
            input_shape=(3, 4), layers=(LayerNorm(), Flatten(), Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3, seed=3),
        "no-elementwise-affine": dense_norm_tanh_dense(LayerNorm(elementwise_affine=False), 4),
        "no-bias": dense_norm_tanh_dense(LayerNorm(bias=False), 5),
        "eps-1e-3": dense_norm_tanh_dense(LayerNorm(eps=1e-3), 6),
    }


# ----------------------------------------------------- one layer, random parameters

LAYERS = {"dims1": (LayerNorm(), (3, 5)), "dims2": (LayerNorm(dims=2), (3, 5)),
          "no-affine": (LayerNorm(elementwise_affine=False), (7,)),
          "no-bias": (LayerNorm(bias=False), (7,)), "eps-1e-3": (LayerNorm(eps=1e-3), (7,))}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("which", list(LAYERS))
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_values_and_gradients_match_torch(backend, which, dtype):
    layer, shape = LAYERS[which]
    params, x, d_y = one_layer(layer, shape, dtype)
    assert backend_against_torch(backend, layer, params, x, d_y).ok


def test_negative_control_a_backward_without_the_weight_fails():
    """The closed form's g = dy * weight, written as g = dy: torch catches it."""
    from nnparity.backends.numpy.layers import layer_norm
    layer, shape = LAYERS["dims1"]
    params, x, d_y = one_layer(layer, shape, "float64")
    _, cache = layer_norm.forward(layer, params, {}, x, True)
    grads = {k: np.empty_like(v) for k, v in params.items()}
    d_x = layer_norm.backward(layer, {}, cache, d_y, grads, need_input_grad=True)
    expected = torch_results(layer, params, x, d_y)[1]["x"]
    assert np.max(np.abs(d_x - expected)) > 1e-2 * np.max(np.abs(expected))


def test_negative_control_eps_outside_the_square_root_fails():
    """(x - mu) / (sqrt(var) + eps) instead of / sqrt(var + eps): on unit-scale data
    a difference of about eps/2 relative, far above float64 rounding."""
    from nnparity.backends.numpy.layers import layer_norm
    from nnparity.shared import POLICY
    from nnparity.shared.core.tolerance import tensorwise_difference
    layer = LayerNorm(elementwise_affine=False)
    x = np.random.default_rng(1).standard_normal((4, 16))
    ours = layer_norm.forward(layer, {}, {}, x, False)[0]
    centred = x - x.mean(-1, keepdims=True)
    outside = centred / (np.sqrt((centred ** 2).mean(-1, keepdims=True)) + layer.eps)
    expected = torch_results(layer, {}, x, np.ones_like(x))[0]
    assert tensorwise_difference({"y": ours}, {"y": expected}, POLICY["float64"]).ok
    assert not tensorwise_difference({"y": outside}, {"y": expected}, POLICY["float64"]).ok
    assert np.max(np.abs(outside - expected)) > 1e-6


def test_negative_control_keras_default_eps_differs_on_small_variance_inputs():
    """Keras's default eps 1e-3 against torch's 1e-5: with std 0.01 (var 1e-4) the
    outputs differ by several percent, even in float32."""
    for dtype in ("float64", "float32"):
        params, x, d_y = one_layer(LayerNorm(), (16,), dtype, scale=0.01)
        assert backend_against_torch("numpy", LayerNorm(), params, x, d_y).ok
        keras_like = LayerNorm(eps=KERAS_EPS)
        torch_default = torch_results(LayerNorm(), params, x, d_y)[0]
        ours = torch_results(keras_like, params, x, d_y)[0]
        assert np.max(np.abs(ours - torch_default)) > 0.05 * np.max(np.abs(torch_default))


def test_two_pass_variance_keeps_float32_accuracy_at_a_large_mean():
    """mean 3000, std 1, float32: the two-pass variance (every backend) stays at
    rounding against a float64 reference; E[x²] - E[x]² (flax's fast variance) is
    off by order 1 (layer-traps.md X6)."""
    layer = LayerNorm(elementwise_affine=False)
    x = (3000.0 + np.random.default_rng(2).standard_normal((8, 16))).astype(np.float32)
    x64 = x.astype(np.float64)
    reference = torch_results(layer, {}, x64, np.ones_like(x64))[0]
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        y = RESULTS[backend](layer, {}, x, np.ones_like(x))[0]
        assert np.max(np.abs(y - reference)) < 1e-2, backend
    mean = x.mean(-1, keepdims=True)
    fast = (x - mean) / np.sqrt(np.maximum((x * x).mean(-1, keepdims=True) - mean * mean, 0)
                                + np.float32(layer.eps))
    assert np.max(np.abs(fast - reference)) > 0.5


# ------------------------------------------------------------------ the spec

def test_layer_norm_shapes_round_trip_and_validation():
    spec = NetworkSpec(input_shape=(3, 4), layers=(LayerNorm(dims=2), Flatten(), Dense(2)))
    assert spec.param_shapes[0] == {"weight": (3, 4), "bias": (3, 4)}
    assert spec.layer_input_shapes[:2] == ((3, 4), (3, 4))
    assert NetworkSpec(input_shape=(5,), layers=(LayerNorm(bias=False),)).param_shapes == \
        ({"weight": (5,)},)
    assert NetworkSpec(input_shape=(5,), layers=(LayerNorm(elementwise_affine=False), Dense(1))
                       ).param_shapes[0] == {}
    for layer in (LayerNorm(), LayerNorm(dims=2, eps=1e-3, elementwise_affine=False, bias=False)):
        assert layer_from_dict(layer.to_dict()) == layer
    assert NetworkSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="LayerNorm.dims"):
        LayerNorm(dims=0)
    with pytest.raises(TypeError, match="LayerNorm.dims"):
        LayerNorm(dims=1.0)
    with pytest.raises(ValueError, match="LayerNorm.eps"):
        LayerNorm(eps=0.0)
    with pytest.raises(TypeError, match="LayerNorm.bias"):
        LayerNorm(bias=1)
    with pytest.raises(ValueError, match="at least 3 axes"):
        NetworkSpec(input_shape=(3, 4), layers=(LayerNorm(dims=3), Flatten(), Dense(1)))
    with pytest.raises(ValueError, match="fields of LayerNorm"):
        layer_from_dict({"kind": "layer_norm", "normalized_shape": [4]})
