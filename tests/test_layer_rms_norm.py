"""RMSNorm, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.RMSNorm``. Beside them: one layer with a random weight in every
backend against torch in float64 and float32 (y, dL/dx, dL/dweight), eps=None
resolved per dtype as torch does, and negative controls."""
from __future__ import annotations

import numpy as np
import pytest
from layer_contract import LayerContract
from layer_vjp import backend_against_torch, one_layer, torch_results

from nnparity.shared import SGD, Activation, Adam, Dense, Flatten, NetworkSpec, RMSNorm
from nnparity.shared.core.layers import layer_from_dict


def torch_module(layer: RMSNorm, input_shape):
    import torch
    return torch.nn.RMSNorm(normalized_shape=input_shape[-layer.dims:], eps=layer.eps,
                            elementwise_affine=layer.elementwise_affine)


def dense_norm_tanh_dense(norm, seed=0):
    return NetworkSpec(input_shape=(3,), layers=(Dense(6), norm, Activation("tanh"), Dense(2)),
                       init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3,
                       seed=seed)


class TestRMSNorm(LayerContract):
    cases = {
        "dense-rmsnorm-tanh-dense": dense_norm_tanh_dense(RMSNorm()),
        "3x4-dims2-flatten": NetworkSpec(
            input_shape=(3, 4), layers=(RMSNorm(dims=2), Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=Adam(lr=0.01), batch_size=5, epochs=3, seed=2),
        "3x4-dims1-flatten": NetworkSpec(
            input_shape=(3, 4), layers=(RMSNorm(), Flatten(), Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3, seed=3),
        "no-elementwise-affine": dense_norm_tanh_dense(RMSNorm(elementwise_affine=False), 4),
        "eps-1e-3": dense_norm_tanh_dense(RMSNorm(eps=1e-3), 6),
    }


LAYERS = {"dims1": (RMSNorm(), (3, 5)), "dims2": (RMSNorm(dims=2), (3, 5)),
          "no-affine": (RMSNorm(elementwise_affine=False), (7,)),
          "eps-1e-3": (RMSNorm(eps=1e-3), (7,))}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("which", list(LAYERS))
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_values_and_gradients_match_torch(backend, which, dtype):
    layer, shape = LAYERS[which]
    params, x, d_y = one_layer(layer, shape, dtype)
    assert backend_against_torch(backend, layer, params, x, d_y).ok


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_eps_none_is_the_dtypes_machine_epsilon_as_torch(backend, dtype):
    """Inputs of scale 1e-4 (mean(x²) ~ 1e-8, comparable to float32's eps 1.2e-7):
    eps=None matches torch only when it is resolved for the input's dtype."""
    params, x, d_y = one_layer(RMSNorm(), (16,), dtype, scale=1e-4)
    assert RMSNorm().eps_for(dtype) == float(np.finfo(dtype).eps)
    assert backend_against_torch(backend, RMSNorm(), params, x, d_y).ok


def test_negative_control_float64_eps_on_float32_inputs_fails():
    params, x, d_y = one_layer(RMSNorm(), (16,), "float32", scale=1e-4)
    expected = torch_results(RMSNorm(), params, x, d_y)[0]                  # eps=None
    wrong = torch_results(RMSNorm(eps=float(np.finfo(np.float64).eps)), params, x, d_y)[0]
    assert np.max(np.abs(wrong - expected)) > 0.1 * np.max(np.abs(expected))


def test_negative_control_eps_outside_the_square_root_fails():
    """x / (rms + eps) instead of x / sqrt(mean(x²) + eps), eps 1e-3."""
    from nnparity.backends.numpy.layers import rms_norm
    from nnparity.shared import POLICY
    from nnparity.shared.core.tolerance import tensorwise_difference
    layer = RMSNorm(eps=1e-3, elementwise_affine=False)
    x = np.random.default_rng(1).standard_normal((4, 16))
    ours = rms_norm.forward(layer, {}, {}, x, False)[0]
    outside = x / (np.sqrt((x * x).mean(-1, keepdims=True)) + layer.eps)
    expected = torch_results(layer, {}, x, np.ones_like(x))[0]
    assert tensorwise_difference({"y": ours}, {"y": expected}, POLICY["float64"]).ok
    assert not tensorwise_difference({"y": outside}, {"y": expected}, POLICY["float64"]).ok


def test_negative_control_a_backward_without_the_weight_fails():
    from nnparity.backends.numpy.layers import rms_norm
    layer, shape = LAYERS["dims1"]
    params, x, d_y = one_layer(layer, shape, "float64")
    _, cache = rms_norm.forward(layer, params, {}, x, True)
    d_x = rms_norm.backward(layer, {}, cache, d_y, {}, need_input_grad=True)
    expected = torch_results(layer, params, x, d_y)[1]["x"]
    assert np.max(np.abs(d_x - expected)) > 1e-2 * np.max(np.abs(expected))


def test_rms_norm_shapes_round_trip_and_validation():
    spec = NetworkSpec(input_shape=(3, 4), layers=(RMSNorm(dims=2), Flatten(), Dense(2)))
    assert spec.param_shapes[0] == {"weight": (3, 4)}
    for layer in (RMSNorm(), RMSNorm(dims=2, eps=1e-6, elementwise_affine=False)):
        assert layer_from_dict(layer.to_dict()) == layer
    assert RMSNorm().to_dict()["eps"] is None
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert RMSNorm(eps=1e-3).eps_for("float32") == 1e-3
    with pytest.raises(ValueError, match="RMSNorm.eps"):
        RMSNorm(eps=-1e-6)
    with pytest.raises(ValueError, match="at least 2 axes"):
        NetworkSpec(input_shape=(4,), layers=(RMSNorm(dims=2), Dense(1)))
    with pytest.raises(ValueError, match="fields of RMSNorm"):
        layer_from_dict({"kind": "rms_norm", "bias": True})
