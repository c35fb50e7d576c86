"""Dense, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.Linear``."""
from __future__ import annotations

from layer_contract import LayerContract

from nnparity.shared import SGD, Activation, Adam, Dense, NetworkSpec


def torch_module(layer: Dense, input_shape):
    import torch
    return torch.nn.Linear(input_shape[-1], layer.units)


class TestDense(LayerContract):
    cases = {
        "one-layer": NetworkSpec(input_shape=(3,), layers=(Dense(2),), init="torch_default",
                                 optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        "stacked-no-activation": NetworkSpec(
            input_shape=(4,), layers=(Dense(5), Dense(3), Dense(2)), init="xavier_uniform",
            optimizer=Adam(lr=0.01), batch_size=5, epochs=3, seed=3),
        "mlp-shorthand-tanh": NetworkSpec(
            sizes=(3, 6, 2), activation="tanh", init="torch_default",
            optimizer=SGD(lr=0.1, momentum=0.9), batch_size=4, epochs=3, seed=5),
        "mlp-layers-gelu": NetworkSpec(
            input_shape=(2,), layers=(Dense(4), Activation("gelu"), Dense(1)),
            init="he_normal", optimizer=SGD(lr=0.05), batch_size=3, epochs=3, seed=11),
    }
