"""Conv1d, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.Conv1d`` (``F.pad`` first for explicit asymmetric pads, which torch
has no argument for: ``conv_checks.py``). The NumPy backend runs the 2-d code on
a height-1 image, so these tests also check that added axis."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require
from conv_checks import (check_against_torch, input_and_param_finite_differences,
                         numpy_layer, random_case, torch_module)
from layer_contract import LayerContract

from nnparity.backends import predict
from nnparity.shared import (POLICY, SGD, Activation, Adam, Conv1d, Conv2d, Dense, Flatten,
                             NetworkSpec, init_params)
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.tolerance import tensorwise_difference

__all__ = ["torch_module"]          # the oracle layer_contract.torch_oracle loads
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def net(layer, input_shape=(2, 9), init="torch_default", seed=0):
    """layer -> tanh -> Flatten -> Dense(2), a smooth network for the contract."""
    return NetworkSpec(input_shape=input_shape,
                       layers=(layer, Activation("tanh"), Flatten(), Dense(2)),
                       init=init, optimizer=SGD(lr=0.05), batch_size=4, epochs=2, seed=seed)


class TestConv1d(LayerContract):
    cases = {
        "k3": net(Conv1d(3, 3)),
        "stride2-padding1": net(Conv1d(3, 4, stride=2, padding=1), seed=1),
        "dilation2": net(Conv1d(2, 3, dilation=2, padding=2), init="xavier_uniform", seed=2),
        "groups2": net(Conv1d(4, 3, groups=2), input_shape=(4, 7), seed=3),
        "same-even-kernel": net(Conv1d(2, 4, padding="same"), init="he_normal", seed=4),
        "no-bias": NetworkSpec(input_shape=(2, 9),
                               layers=(Conv1d(3, 3, bias=False), Activation("tanh"),
                                       Conv1d(2, 2, stride=2), Flatten(), Dense(2)),
                               init="torch_default", optimizer=Adam(lr=0.01), batch_size=4,
                               epochs=2, seed=5),
    }


OPTIONS = {
    "odd-kernel": Conv1d(3, 3),
    "even-kernel": Conv1d(3, 2),
    "stride3-padding2": Conv1d(3, 4, stride=3, padding=2),
    "dilation3": Conv1d(2, 3, dilation=3),
    "dilation-and-stride": Conv1d(2, 3, stride=2, dilation=2, padding=1),
    "groups2": Conv1d(4, 3, groups=2),
    "depthwise": Conv1d(4, 2, groups=4),
    "same-odd": Conv1d(3, 5, padding="same"),
    "same-even": Conv1d(3, 4, padding="same"),
    "same-even-dilated": Conv1d(2, 2, padding="same", dilation=3),
    "valid": Conv1d(2, 3, padding="valid"),
    "no-bias": Conv1d(3, 3, bias=False),
    "asymmetric-pads": Conv1d(2, 3, padding=((2, 0),)),
    "asymmetric-pads-strided-groups": Conv1d(4, 3, stride=2, padding=((0, 1),), groups=2),
}
INPUT = (4, 11)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OPTIONS)
def test_layer_matches_torch(name, dtype, backend):
    require(backend)
    check_against_torch(OPTIONS[name], INPUT, dtype, backend)


@pytest.mark.parametrize("name", ["odd-kernel", "even-kernel", "stride3-padding2",
                                  "dilation-and-stride", "groups2", "same-even",
                                  "same-even-dilated", "no-bias",
                                  "asymmetric-pads-strided-groups"])
def test_numpy_backward_matches_finite_differences(name):
    assert input_and_param_finite_differences(OPTIONS[name], (4, 10)) <= 1e-8


def test_conv1d_is_conv2d_on_a_height_one_image():
    layer1 = Conv1d(4, 3, stride=2, dilation=2, padding=((2, 1),), groups=2)
    layer2 = Conv2d(4, (1, 3), stride=(1, 2), dilation=(1, 2), padding=((0, 0), (2, 1)),
                    groups=2)
    params, x, d_y = random_case(layer1, INPUT, "float64")
    y1, d_x1, g1 = numpy_layer(layer1, params, x, d_y)
    y2, d_x2, g2 = numpy_layer(layer2, {k: v[:, :, None] if v.ndim == 3 else v
                                        for k, v in params.items()},
                               x[:, :, None], d_y[:, :, None])
    assert np.array_equal(y1, y2[:, :, 0]) and np.array_equal(d_x1, d_x2[:, :, 0])
    assert np.array_equal(g1["weight"], g2["weight"][:, :, 0])


def test_same_pads_one_more_after_with_an_even_kernel_as_torch():
    torch = require("torch")
    assert Conv1d(1, 4, padding="same").pads == ((1, 2),)
    x = torch.zeros(1, 1, 6, dtype=torch.float64)
    x[0, 0, 0] = 1.0
    w = torch.zeros(1, 1, 4, dtype=torch.float64)
    w[0, 0, 1] = 1.0                            # tap 1 reads x[0] at output 0: 1 before
    y = torch.nn.functional.conv1d(x, w, padding="same")[0, 0]
    assert y[0] == 1.0 and y.sum() == 1.0


def test_negative_control_strided_tf_same_padding_fails_against_torch():
    """JAX/TF "SAME" with stride 2 on length 8, kernel 3 pads (0, 1); torch's padding=1
    pads (1, 1)."""
    torch, jax = require("torch"), require("jax")
    from jax import lax
    layer = Conv1d(2, 3, stride=2, padding=1)
    params, x, _ = random_case(layer, (2, 8), "float64")
    with torch.no_grad():
        expected = torch_module(layer, (2, 8)).double()
        expected.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
        expected = expected(torch.from_numpy(x)).numpy()
    with jax.enable_x64(True):
        tf_same = np.asarray(lax.conv_general_dilated(
            x, params["weight"], (2,), "SAME", dimension_numbers=("NCH", "OIH", "NCH"),
            precision=lax.Precision.HIGHEST)) + params["bias"][:, None]
    assert tf_same.shape == expected.shape
    assert not tensorwise_difference({"y": tf_same}, {"y": expected}, POLICY["float64"]).ok
    ours = numpy_layer(Conv1d(2, 3, stride=2, padding=((0, 1),)), params, x,
                       np.zeros_like(expected))[0]
    assert tensorwise_difference({"y": ours}, {"y": tf_same}, POLICY["float64"]).ok
    with pytest.raises(ValueError, match=r"TF/JAX 'SAME'.*Conv1d: \(\(before, after\),\)"):
        Conv1d(2, 3, stride=2, padding="same")


def test_negative_control_a_kernel_read_in_the_wrong_layout_fails_parity():
    """The (2, 1, 0) transpose (a TF-style WIO kernel read as OIW), same shape when
    in = out = k."""
    torch = require("torch")
    spec = net(Conv1d(3, 3), input_shape=(3, 9))
    params = init_params(spec)
    x = np.random.default_rng(0).standard_normal((4, 3, 9))
    with torch.no_grad():
        expected = LayerContract().sequential(spec, params).eval()(torch.from_numpy(x)).numpy()
    params[0]["weight"] = np.ascontiguousarray(params[0]["weight"].transpose(2, 1, 0))
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        assert not tensorwise_difference({"out": predict(spec, params, x, backend)},
                                         {"out": expected}, POLICY["float64"]).ok, backend


def test_fans_are_torchs():
    torch = require("torch")
    from torch.nn.init import _calculate_fan_in_and_fan_out
    layer = Conv1d(6, 5, groups=3)
    weight = torch.empty(layer.param_shapes((9, 20))["weight"])
    assert layer.fans((9, 20)) == _calculate_fan_in_and_fan_out(weight) == (15, 30)


def test_arguments_are_stored_canonically_and_round_trip():
    layer = Conv1d(4, [3], stride=2, padding="valid")
    assert (layer.kernel_size, layer.stride, layer.padding, layer.dilation) == \
        ((3,), (2,), (0,), (1,))
    assert Conv1d(2, 3, padding=((1, 1),)) == Conv1d(2, 3, padding=1)
    for layer in OPTIONS.values():
        assert layer_from_dict(json.loads(json.dumps(layer.to_dict()))) == layer
    assert list(Conv1d(2, 3, bias=False).param_shapes((4, 9))) == ["weight"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(out_channels=3, kernel_size=3, groups=2), ValueError, "multiple of groups=2"),
    (dict(out_channels=2, kernel_size=(3, 3)), TypeError, "tuple of 1 integers"),
    (dict(out_channels=2, kernel_size=3, padding=(1, 0)), TypeError, "padding"),
    (dict(out_channels=2, kernel_size=3, stride=2, padding="same"), ValueError, "TF/JAX"),
])
def test_construction_is_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv1d(**kwargs)


@pytest.mark.parametrize("layer, shape, match", [
    (Conv1d(2, 3), (9,), "2 axes"),
    (Conv1d(2, 3), (2, 3, 9), "2 axes"),
    (Conv1d(2, 3, groups=2), (3, 9), "divisible by Conv1d.groups=2"),
    (Conv1d(2, 5, dilation=2), (2, 8), "spatial axis 0 of size 8"),
])
def test_input_shapes_are_validated(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec(input_shape=shape, layers=(layer, Flatten(), Dense(1)))
