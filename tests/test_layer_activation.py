"""Activation, plugged into the shared layer tests (``layer_contract.py``); its
oracles are the ``torch.nn`` activation modules (torch.nn.Tanh, torch.nn.ELU, ...),
which the backends do not use (the torch backend calls ``torch.nn.functional``)."""
from __future__ import annotations

from layer_contract import LayerContract

from nnparity.shared import SGD, Activation, Dense, NetworkSpec


def torch_module(layer: Activation, input_shape):
    import torch.nn as nn
    p = layer.kwargs
    return {
        "identity": lambda: nn.Identity(), "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(p.get("negative_slope", 0.01)),
        "elu": lambda: nn.ELU(p.get("alpha", 1.0)), "selu": lambda: nn.SELU(),
        "celu": lambda: nn.CELU(p.get("alpha", 1.0)), "gelu": lambda: nn.GELU(),
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "sigmoid": lambda: nn.Sigmoid(),
        "tanh": lambda: nn.Tanh(), "silu": lambda: nn.SiLU(), "mish": lambda: nn.Mish(),
        "softsign": lambda: nn.Softsign(), "relu6": lambda: nn.ReLU6(),
        "hardtanh": lambda: nn.Hardtanh(), "hardsigmoid": lambda: nn.Hardsigmoid(),
        "hardswish": lambda: nn.Hardswish(),
        # torch.nn.Softplus switches to x above its threshold (20); ours has none
        "softplus": lambda: nn.Softplus(threshold=1e9),
    }[layer.name]()


def spec_with(*activations: Activation) -> NetworkSpec:
    """Dense(5), then the activations in a row, then Dense(2): not the MLP shorthand."""
    return NetworkSpec(input_shape=(3,), layers=(Dense(5), *activations, Dense(2)),
                       init="xavier_uniform", optimizer=SGD(lr=0.05), batch_size=4, epochs=3,
                       seed=2)


class TestActivation(LayerContract):
    cases = {
        "tanh": spec_with(Activation("tanh")),
        "sigmoid-then-elu": spec_with(Activation("sigmoid"), Activation("elu", {"alpha": 0.5})),
        "gelu_tanh": spec_with(Activation("gelu_tanh")),
        "softplus-then-silu": spec_with(Activation("softplus"), Activation("silu")),
        "mish": spec_with(Activation("mish")),
    }
