"""MaxPool1d, plugged into the shared layer tests (``layer_contract.py``) and run
alone against its oracle ``torch.nn.MaxPool1d`` (``pooling.py``); ties go to the
first maximum, as in torch. The traps shared with MaxPool2d (the even split of
ties, -inf padding) are tested in ``test_layer_max_pool2d.py``."""
from __future__ import annotations

import pytest
from layer_contract import LayerContract
from pooling import BACKENDS, PoolingChecks, check_ties_exactly

from nnparity.shared import SGD, Dense, Flatten, MaxPool1d, NetworkSpec
from nnparity.shared.core.layers import layer_from_dict


def torch_module(layer: MaxPool1d, input_shape):
    import torch
    return torch.nn.MaxPool1d(layer.kernel_size, layer.stride, layer.padding)


class TestMaxPool1d(LayerContract):
    cases = {
        "k2": NetworkSpec(input_shape=(2, 6), layers=(MaxPool1d(2), Flatten(), Dense(2)),
                          init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        "dense-then-k3-s2-p1": NetworkSpec(
            input_shape=(3, 7), layers=(Dense(7), MaxPool1d(3, stride=2, padding=1), Flatten(),
                                        Dense(2)),
            init="xavier_uniform", optimizer=SGD(lr=0.05), batch_size=5, epochs=3, seed=3),
    }


class TestMaxPool1dAlone(PoolingChecks):
    pools = {
        "k2": (MaxPool1d(2), (2, 6)),
        "k3-s1-p1-overlapping": (MaxPool1d(3, stride=1, padding=1), (2, 7)),
        "k4-s3-p2-drops-the-tail": (MaxPool1d(4, stride=3, padding=2), (1, 9)),
    }


TIE_POOLS = {"k2": MaxPool1d(2), "k3-s1-p1": MaxPool1d(3, stride=1, padding=1)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", TIE_POOLS.values(), ids=TIE_POOLS)
def test_tie_gradients_go_to_the_first_maximum_as_in_torch(layer, backend, dtype):
    check_ties_exactly(layer, (2, 3, 12), backend, dtype)


def test_arguments_are_stored_as_1_tuples_and_checked():
    layer = MaxPool1d(3, padding=1)
    assert (layer.kernel_size, layer.stride, layer.padding) == ((3,), (3,), (1,))
    assert MaxPool1d([3], stride=(3,), padding=1) == layer
    assert layer_from_dict(layer.to_dict()) == layer
    with pytest.raises(TypeError, match="1 integer "):
        MaxPool1d((2, 2))
    with pytest.raises(ValueError, match=r"MaxPool1d.padding=\(2,\).*at most half"):
        MaxPool1d(3, padding=2)
    with pytest.raises(ValueError, match=r"2 axes, \(C, L\)"):
        NetworkSpec(input_shape=(2, 6, 6), layers=(MaxPool1d(2), Flatten(), Dense(1)))
    with pytest.raises(ValueError, match="so that MaxPool1d has an output"):
        NetworkSpec(input_shape=(2, 2), layers=(MaxPool1d(3), Flatten(), Dense(1)))
