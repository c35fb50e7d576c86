"""Flatten, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.Flatten``."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract

from nnparity.backends import predict
from nnparity.shared import SGD, Activation, Dense, NetworkSpec, init_params
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.layers.flatten import Flatten


def torch_module(layer: Flatten, input_shape):
    import torch
    return torch.nn.Flatten()


class TestFlatten(LayerContract):
    cases = {
        "2d-rows": NetworkSpec(input_shape=(3, 4), layers=(Flatten(), Dense(2)),
                               init="torch_default", optimizer=SGD(lr=0.05), batch_size=4,
                               epochs=3),
        "dense-on-last-axis-then-flatten": NetworkSpec(
            input_shape=(2, 3, 2), layers=(Dense(3), Activation("tanh"), Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=SGD(lr=0.05), batch_size=5, epochs=3, seed=4),
    }


def test_flatten_is_row_major_as_torch():
    torch = require("torch")
    spec = TestFlatten.cases["2d-rows"]
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    params = init_params(spec)
    params[1]["weight"][...] = np.eye(2, 12)                 # reads the first two entries
    params[1]["bias"][...] = 0.0
    expected = torch.nn.Flatten()(torch.from_numpy(x)).numpy()[:, :2]
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        assert np.array_equal(predict(spec, params, x, backend), expected), backend


def test_negative_control_a_channels_last_flatten_differs():
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    assert not np.array_equal(x.reshape(2, -1), x.transpose(0, 2, 1).reshape(2, -1))


def test_flatten_round_trips_and_sets_the_shape():
    assert layer_from_dict(Flatten().to_dict()) == Flatten()
    spec = NetworkSpec(input_shape=(2, 3, 4), layers=(Flatten(), Dense(5)))
    assert spec.layer_input_shapes == ((2, 3, 4), (24,), (5,))
    assert spec.sizes is None
    with pytest.raises(ValueError, match="fields of Flatten"):
        layer_from_dict({"kind": "flatten", "start_dim": 1})
