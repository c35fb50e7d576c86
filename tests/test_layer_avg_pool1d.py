"""AvgPool1d, plugged into the shared layer tests (``layer_contract.py``) and run
alone against its oracle ``torch.nn.AvgPool1d`` (``pooling.py``), with
``count_include_pad`` either way."""
from __future__ import annotations

import pytest
from layer_contract import LayerContract
from pooling import PoolingChecks

from nnparity.shared import SGD, AvgPool1d, Dense, Flatten, NetworkSpec
from nnparity.shared.core.layers import layer_from_dict


def torch_module(layer: AvgPool1d, input_shape):
    import torch
    return torch.nn.AvgPool1d(layer.kernel_size, layer.stride, layer.padding,
                              count_include_pad=layer.count_include_pad)


class TestAvgPool1d(LayerContract):
    cases = {
        "k2": NetworkSpec(input_shape=(2, 6), layers=(AvgPool1d(2), Flatten(), Dense(2)),
                          init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        "dense-then-k3-s2-p1-exclude-pad": NetworkSpec(
            input_shape=(3, 7), layers=(Dense(7), AvgPool1d(3, stride=2, padding=1,
                                                            count_include_pad=False),
                                        Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=SGD(lr=0.05), batch_size=5, epochs=3, seed=3),
    }


class TestAvgPool1dAlone(PoolingChecks):
    pools = {
        "k2": (AvgPool1d(2), (2, 6)),
        "k3-s1-p1-include-pad": (AvgPool1d(3, stride=1, padding=1), (2, 7)),
        "k3-s1-p1-exclude-pad": (AvgPool1d(3, stride=1, padding=1, count_include_pad=False),
                                 (2, 7)),
        "k4-s3-p2-exclude-pad": (AvgPool1d(4, stride=3, padding=2, count_include_pad=False),
                                 (1, 9)),
    }


def test_divisor_counts_the_elements_inside_the_input():
    layer = AvgPool1d(4, stride=3, padding=2, count_include_pad=False)
    assert layer.output_shape((1, 9)) == (1, 4)               # windows at -2, 1, 4, 7
    assert layer.divisor((9,)).tolist() == [2, 4, 4, 2]        # -2..1, ..., 7..10 in 0..8
    assert AvgPool1d(4, stride=3, padding=2).divisor((9,)).tolist() == [4, 4, 4, 4]


def test_arguments_round_trip_and_are_checked():
    layer = AvgPool1d(3, padding=1, count_include_pad=False)
    assert (layer.kernel_size, layer.stride, layer.padding) == ((3,), (3,), (1,))
    assert layer_from_dict(layer.to_dict()) == layer
    with pytest.raises(ValueError, match=r"2 axes, \(C, L\)"):
        NetworkSpec(input_shape=(6,), layers=(AvgPool1d(2), Flatten(), Dense(1)))
