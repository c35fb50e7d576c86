"""AvgPool2d, plugged into the shared layer tests (``layer_contract.py``) and run
alone against its oracle ``torch.nn.AvgPool2d`` (``pooling.py``), with
``count_include_pad`` either way."""
from __future__ import annotations

import numpy as np
import pytest
from layer_contract import LayerContract
from pooling import PoolingChecks, close, run_backend, run_torch_nn, upstream

from nnparity.shared import SGD, Activation, AvgPool2d, Dense, Flatten, NetworkSpec
from nnparity.shared.core.layers import layer_from_dict


def torch_module(layer: AvgPool2d, input_shape):
    import torch
    return torch.nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding,
                              count_include_pad=layer.count_include_pad)


class TestAvgPool2d(LayerContract):
    cases = {
        "k2": NetworkSpec(input_shape=(2, 6, 6), layers=(AvgPool2d(2), Flatten(), Dense(2)),
                          init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        "dense-tanh-then-k3-s2-p1-exclude-pad": NetworkSpec(
            input_shape=(2, 5, 6), layers=(Dense(6), Activation("tanh"),
                                           AvgPool2d(3, stride=2, padding=1,
                                                     count_include_pad=False),
                                           Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=SGD(lr=0.05), batch_size=5, epochs=3, seed=3),
        "dense-then-overlapping-k(2,3)-s(1,2)-p(1,1)": NetworkSpec(
            input_shape=(1, 4, 5), layers=(Dense(5), AvgPool2d((2, 3), stride=(1, 2),
                                                               padding=1),
                                           Flatten(), Dense(3)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3, seed=7),
    }


class TestAvgPool2dAlone(PoolingChecks):
    pools = {
        "k2": (AvgPool2d(2), (2, 6, 6)),
        "k3-s2-p1-include-pad": (AvgPool2d(3, stride=2, padding=1), (2, 6, 5)),
        "k3-s2-p1-exclude-pad": (AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
                                 (2, 6, 5)),
        "k(2,3)-s1-p1-exclude-pad-overlapping": (
            AvgPool2d((2, 3), stride=1, padding=1, count_include_pad=False), (1, 4, 5)),
    }


def test_count_include_pad_false_divides_by_the_elements_inside():
    """On ones, every window's mean is 1 without the padding; with it the border
    windows are smaller (a corner of k3 p1 holds 4 of its 9 elements)."""
    x = np.ones((1, 1, 5, 5))
    exclude = AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
    include = AvgPool2d(3, stride=2, padding=1)
    assert np.array_equal(run_backend("numpy", exclude, x, upstream(exclude, x))[0],
                          np.ones((1, 1, 3, 3)))
    assert run_backend("numpy", include, x, upstream(include, x))[0][0, 0, 0, 0] == 4 / 9
    assert exclude.divisor((5, 5)).tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]
    assert include.divisor((5, 5)).tolist() == [[9] * 3] * 3


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_negative_control_the_other_count_include_pad_fails_against_torch(count_include_pad):
    layer = AvgPool2d(3, stride=2, padding=1, count_include_pad=count_include_pad)
    other = AvgPool2d(3, stride=2, padding=1, count_include_pad=not count_include_pad)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 6))
    d_y = upstream(layer, x)
    expected_y, expected_dx = run_torch_nn(layer, x, d_y)
    for backend in ("numpy", "torch", "jax"):
        y, dx = run_backend(backend, other, x, d_y)
        assert not close({"y": y}, {"y": expected_y}, "float64"), backend
        assert not close({"dx": dx}, {"dx": expected_dx}, "float64"), backend


def test_arguments_round_trip_and_are_checked():
    layer = AvgPool2d(3, stride=(2, 1), padding=1, count_include_pad=False)
    assert (layer.kernel_size, layer.stride, layer.padding) == ((3, 3), (2, 1), (1, 1))
    assert layer_from_dict(layer.to_dict()) == layer
    assert layer.to_dict()["count_include_pad"] is False
    assert layer != AvgPool2d(3, stride=(2, 1), padding=1)
    with pytest.raises(TypeError, match="count_include_pad=1"):
        AvgPool2d(2, count_include_pad=1)
    with pytest.raises(ValueError, match=r"AvgPool2d.padding=\(2, 2\).*at most half"):
        AvgPool2d(3, padding=2)
