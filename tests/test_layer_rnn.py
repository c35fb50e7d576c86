"""RNN, plugged into the shared layer tests (``layer_contract.py``); its oracle is
``torch.nn.RNN(batch_first=True)``. Beside them: one layer with random parameters in
every backend against torch in float64 and float32 (y, dL/dx and every weight's
gradient), tanh and relu; relu's derivative at exactly 0; a forgotten ``bias_hh``
shown to fail."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract
from recurrent_checks import (assert_float32_parity, assert_matches_torch, network,
                              random_layer, torch_recurrent)
from layer_vjp import RESULTS, backend_against_torch, torch_results

from nnparity.shared import POLICY, Adam, Dense, Flatten, NetworkSpec
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.layers.recurrent import RNN
from nnparity.shared.core.tolerance import tensorwise_difference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def torch_module(layer: RNN, input_shape):
    return torch_recurrent("RNN", layer, input_shape, nonlinearity=layer.nonlinearity)


class TestRNN(LayerContract):
    cases = {
        "rnn-flatten-dense": network(RNN(4), Flatten(), Dense(2)),
        "rnn-last-dense": network(RNN(4, return_sequence=False), Dense(2), seed=1),
        "two-layers-adam": network(RNN(3, num_layers=2, return_sequence=False), Dense(2),
                                   optimizer=Adam(lr=0.01), seed=2),
        "one-step": network(RNN(4), Flatten(), Dense(2), input_shape=(1, 3), seed=3),
        "no-bias-uniform-fan-in": network(RNN(3, bias=False), Flatten(), Dense(2),
                                          init="uniform_fan_in", seed=4),
        # relu: a kink, but the finite differences step 1e-6 and no pre-activation
        # of these seeded data is that close to 0
        "relu-two-layers": network(RNN(4, "relu", num_layers=2), Flatten(), Dense(2), seed=5),
    }


def test_parity_in_float32():
    assert_float32_parity(TestRNN.cases["relu-two-layers"])


# ----------------------------------------------------- one layer, random parameters

LAYERS = {"tanh": (RNN(6), (5, 4)), "last-step": (RNN(6, return_sequence=False), (5, 4)),
          "relu": (RNN(6, "relu"), (5, 4)),
          "two-layers": (RNN(5, num_layers=2), (4, 3)),
          "no-bias": (RNN(4, bias=False), (5, 3)),
          "one-step": (RNN(3, "relu", num_layers=2, return_sequence=False), (1, 2))}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("which", list(LAYERS))
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_values_and_gradients_match_torch(backend, which, dtype):
    assert_matches_torch(backend, *LAYERS[which], dtype)


def exactly_zero_preactivations(layer, shape):
    """x = 0 and bias_hh = -bias_ih: every pre-activation is b + (-b) = 0 exactly, at
    every step (h stays 0), so every gradient is relu'(0) times something."""
    params, x, d_y = random_layer(layer, shape, "float64")
    x = np.zeros_like(x)
    params["bias_hh_l0"] = -params["bias_ih_l0"]
    return params, x, d_y


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_relu_derivative_at_zero_is_zero_as_torch(backend):
    """torch's relu'(0) is 0: with every pre-activation exactly 0 all its gradients
    are exactly 0, and every backend's are too (jnp.maximum(a, 0) or torch.maximum
    would give 0.5 there)."""
    layer = RNN(4, "relu")
    params, x, d_y = exactly_zero_preactivations(layer, (3, 2))
    _, expected = torch_results(layer, params, x, d_y)
    assert all(not value.any() for value in expected.values())
    assert backend_against_torch(backend, layer, params, x, d_y).ok
    _, grads = RESULTS[backend](layer, params, x, d_y)
    assert all(not value.any() for value in grads.values()), backend


def test_negative_control_relu_as_maximum_fails_at_zero():
    """jnp.maximum(a, 0) splits the derivative at a tie: 0.5 at 0, so the biases get
    half of sum(d_y) where torch gives 0."""
    jax = require("jax")
    import jax.numpy as jnp
    layer = RNN(4, "relu")
    params, x, d_y = exactly_zero_preactivations(layer, (3, 2))
    _, expected = torch_results(layer, params, x, d_y)

    def loss(b_ih):
        h = jnp.zeros((x.shape[0], 4))
        total = 0.0
        for t in range(x.shape[1]):
            h = jnp.maximum(x[:, t] @ params["weight_ih_l0"].T + b_ih
                            + h @ params["weight_hh_l0"].T + params["bias_hh_l0"], 0)
            total = total + (h * d_y[:, t]).sum()
        return total

    with jax.enable_x64(True):
        d_b_ih = np.asarray(jax.grad(loss)(jnp.asarray(params["bias_ih_l0"])))
    assert np.abs(d_b_ih).max() > 0.1
    assert not tensorwise_difference({"b": d_b_ih}, {"b": expected["bias_ih_l0"]},
                                     POLICY["float64"]).ok


def test_negative_control_a_forgotten_bias_hh_fails():
    """Only b_ih + b_hh matters in an RNN, so a port that keeps one bias must add the
    two; dropping bias_hh is far beyond the float32 policy."""
    layer, shape = LAYERS["tanh"]
    params, x, d_y = random_layer(layer, shape, "float64")
    expected = torch_results(layer, params, x, d_y)[0]
    from nnparity.backends.numpy.layers import rnn
    assert tensorwise_difference({"y": rnn.forward(layer, params, {}, x, False)[0]},
                                 {"y": expected}, POLICY["float64"]).ok
    no_b_hh = {**params, "bias_hh_l0": np.zeros_like(params["bias_hh_l0"])}
    wrong = rnn.forward(layer, no_b_hh, {}, x, False)[0]
    assert not tensorwise_difference({"y": wrong}, {"y": expected}, POLICY["float32"]).ok



def test_negative_control_a_backward_that_stops_at_each_step_fails():
    """BPTT's second term, what step t+1 sends back to h_t through weight_hh: drop
    it (the backward pass run with weight_hh read as 0, i.e. truncated BPTT of one
    step) and dL/dx and dL/dweight_ih leave even the float32 policy, while the
    forward pass is unchanged."""
    from nnparity.backends.numpy.layers import _recurrent, rnn
    layer, shape = LAYERS["tanh"]
    params, x, d_y = random_layer(layer, shape, "float64")
    _, expected = torch_results(layer, params, x, d_y)
    _, (_, (cache,)) = rnn.forward(layer, params, {}, x, True)
    grads = {name: np.empty_like(value) for name, value in params.items()}
    w = _recurrent.weights(params, 0)
    d_x = rnn.backprop_layer(layer, cache, d_y, w._replace(hh=np.zeros_like(w.hh)),
                             _recurrent.weights(grads, 0), True)
    for name, value in (("x", d_x), ("weight_ih_l0", grads["weight_ih_l0"])):
        assert not tensorwise_difference({name: value}, {name: expected[name]},
                                         POLICY["float32"]).ok, name

# ------------------------------------------------------------------ the spec

def test_rnn_shapes_round_trip_and_validation():
    spec = network(RNN(4, "relu", num_layers=2), Flatten(), Dense(2))
    assert spec.param_shapes[0] == {
        "weight_ih_l0": (4, 3), "weight_hh_l0": (4, 4), "bias_ih_l0": (4,), "bias_hh_l0": (4,),
        "weight_ih_l1": (4, 4), "weight_hh_l1": (4, 4), "bias_ih_l1": (4,), "bias_hh_l1": (4,)}
    assert RNN(4).fans((5, 3)) == (3, 4)
    assert RNN(4, "relu") == RNN(hidden_size=4, nonlinearity="relu")
    for layer in (RNN(4), RNN(2, "relu", num_layers=3, bias=False, return_sequence=False)):
        assert layer_from_dict(layer.to_dict()) == layer
    assert NetworkSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="RNN.nonlinearity"):
        RNN(4, "sigmoid")
    with pytest.raises(TypeError, match="RNN.nonlinearity"):
        RNN(4, None)
    with pytest.raises(ValueError, match="RNN.hidden_size"):
        RNN(-1)
    with pytest.raises(ValueError, match=r"2 axes \(T, I\)"):
        network(RNN(4), Flatten(), Dense(1), input_shape=(2, 5, 3))
