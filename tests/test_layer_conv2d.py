"""Conv2d, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.Conv2d`` (``F.pad`` first for explicit asymmetric pads, which torch
has no argument for: ``conv_checks.py``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require
from conv_checks import (check_against_torch, input_and_param_finite_differences,
                         random_case, torch_module)
from layer_contract import LayerContract

from nnparity.backends import predict
from nnparity.shared import (POLICY, SGD, Activation, Adam, Conv2d, Dense, Flatten,
                             NetworkSpec, init_params)
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.tolerance import tensorwise_difference

__all__ = ["torch_module"]          # the oracle layer_contract.torch_oracle loads
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def net(layer, input_shape=(2, 6, 5), init="torch_default", seed=0):
    """layer -> tanh -> Flatten -> Dense(2), a smooth network for the contract."""
    return NetworkSpec(input_shape=input_shape,
                       layers=(layer, Activation("tanh"), Flatten(), Dense(2)),
                       init=init, optimizer=SGD(lr=0.05), batch_size=4, epochs=2, seed=seed)


class TestConv2d(LayerContract):
    cases = {
        "3x3": net(Conv2d(3, 3)),
        "stride2-padding1": net(Conv2d(3, (3, 2), stride=2, padding=1), seed=1),
        "dilation2": net(Conv2d(2, 3, dilation=2, padding=(2, 1)), init="xavier_uniform",
                         seed=2),
        "groups2": net(Conv2d(4, (3, 2), groups=2), input_shape=(4, 5, 4), seed=3),
        "same-even-kernel": net(Conv2d(2, (2, 4), padding="same"), init="he_normal",
                                seed=4),
        "no-bias": NetworkSpec(input_shape=(2, 6, 5),
                               layers=(Conv2d(3, 3, bias=False), Activation("tanh"),
                                       Conv2d(2, 2, stride=(1, 2)), Flatten(), Dense(2)),
                               init="torch_default", optimizer=Adam(lr=0.01), batch_size=4,
                               epochs=2, seed=5),
    }


# ------------------------------------------------- one layer against torch, per option

OPTIONS = {
    "odd-kernel": Conv2d(3, 3),
    "even-kernel": Conv2d(3, 2),
    "rectangular-kernel": Conv2d(2, (3, 2)),
    "stride2": Conv2d(3, 3, stride=2),
    "stride-2x3-padding1": Conv2d(3, (2, 3), stride=(2, 3), padding=1),
    "padding-pair": Conv2d(2, 3, padding=(2, 0)),
    "dilation2": Conv2d(2, 2, dilation=2),
    "dilation-and-stride": Conv2d(2, 3, stride=2, dilation=(2, 1), padding=1),
    "groups2": Conv2d(4, 3, groups=2),
    "depthwise": Conv2d(4, 2, groups=4),
    "same-odd": Conv2d(3, 3, padding="same"),
    "same-even": Conv2d(3, (2, 4), padding="same"),
    "same-even-dilated": Conv2d(2, 2, padding="same", dilation=3),
    "valid": Conv2d(2, 3, padding="valid"),
    "no-bias": Conv2d(3, 3, bias=False),
    "asymmetric-pads": Conv2d(2, 3, padding=((1, 0), (0, 2))),
    "asymmetric-pads-strided-groups": Conv2d(4, 3, stride=2, padding=((0, 1), (2, 1)),
                                             groups=2),
}
INPUT = (4, 7, 6)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", OPTIONS)
def test_layer_matches_torch(name, dtype, backend):
    require(backend)
    check_against_torch(OPTIONS[name], INPUT, dtype, backend)


@pytest.mark.parametrize("name", ["odd-kernel", "even-kernel", "stride-2x3-padding1",
                                  "dilation-and-stride", "groups2", "same-even",
                                  "same-even-dilated", "no-bias",
                                  "asymmetric-pads-strided-groups"])
def test_numpy_backward_matches_finite_differences(name):
    assert input_and_param_finite_differences(OPTIONS[name], (4, 6, 5)) <= 1e-8


def test_negative_control_a_wrong_input_gradient_fails_the_finite_differences(monkeypatch):
    import nnparity.backends.numpy.layers.conv2d as conv2d
    real = conv2d.backward

    def off_by_one_tap(*args, **kwargs):
        d_x = real(*args, **kwargs)
        d_x[..., 1:] += 1e-3 * d_x[..., :-1]            # a neighbour's gradient leaks in
        return d_x

    monkeypatch.setattr(conv2d, "backward", off_by_one_tap)
    assert input_and_param_finite_differences(OPTIONS["stride2"], (4, 6, 5)) > 1e-6


def test_same_pads_one_more_after_with_an_even_kernel_as_torch():
    torch = require("torch")
    layer = Conv2d(1, (2, 4), padding="same")
    assert layer.pads == ((0, 1), (1, 2))               # d (k - 1) = 1, 3: the odd one after
    assert Conv2d(1, 3, padding="same", dilation=2).pads == ((2, 2), (2, 2))
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 0, 0] = 1.0                                 # where the top-left output reads it
    w = torch.zeros(1, 1, 2, 4, dtype=torch.float64)
    w[0, 0, 0, 1] = 1.0                                 # tap (0, 1): one column left pad
    y = torch.nn.functional.conv2d(x, w, padding="same")[0, 0]
    assert y[0, 0] == 1.0 and y.sum() == 1.0            # before = (0, 1), after = (1, 2)


def test_jax_float64_is_exact_to_rounding():
    """On CPU, lax.conv_general_dilated in float64 agrees with NumPy's im2col to a few
    ulps, with precision HIGHEST (set) and DEFAULT alike (CPU has no reduced-precision
    passes; HIGHEST matters on GPU/TPU float32)."""
    jax = require("jax")
    from jax import lax

    from nnparity.backends.jax.layers._conv import NUMBERS
    layer = OPTIONS["asymmetric-pads-strided-groups"]
    params, x, d_y = random_case(layer, INPUT, "float64")
    from conv_checks import jax_backend_layer, numpy_layer
    expected = numpy_layer(layer, params, x, d_y)[0]
    actual = jax_backend_layer(layer, params, x, d_y)[0]
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= 8 * np.finfo(np.float64).eps * scale
    with jax.enable_x64(True):
        default = lax.conv_general_dilated(
            x, params["weight"], layer.stride, layer.pads, rhs_dilation=layer.dilation,
            dimension_numbers=NUMBERS[2], feature_group_count=layer.groups,
            precision=lax.Precision.DEFAULT) + params["bias"][:, None, None]
    assert np.abs(np.asarray(default) - expected).max() <= 8 * np.finfo(np.float64).eps * scale


# ------------------------------------------------------------------ negative controls

def test_negative_control_a_kernel_read_in_the_wrong_layout_fails_parity_even_square():
    """A TF-style HWIO kernel (the (3, 2, 1, 0) transpose of torch's OIHW) has the same
    shape as OIHW when in = out = kH = kW (square kernel): it runs silently, and parity
    against torch.nn.Conv2d catches it."""
    torch = require("torch")
    spec = net(Conv2d(3, 3), input_shape=(3, 6, 5))
    params = init_params(spec)
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 5))
    from layer_contract import LayerContract as Contract
    with torch.no_grad():
        expected = Contract().sequential(spec, params).eval()(torch.from_numpy(x)).numpy()
    assert tensorwise_difference({"out": predict(spec, params, x, "numpy")},
                                 {"out": expected}, POLICY["float64"]).ok
    weight = params[0]["weight"]
    hwio = weight.transpose(3, 2, 1, 0)                 # (kW, kH, in, out) = (3, 3, 3, 3)
    assert hwio.shape == weight.shape                   # no shape check can see it
    params[0]["weight"] = np.ascontiguousarray(hwio)
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        assert not tensorwise_difference({"out": predict(spec, params, x, backend)},
                                         {"out": expected}, POLICY["float64"]).ok, backend


def test_negative_control_strided_tf_same_padding_fails_against_torch():
    """JAX/TF "SAME" with stride 2 on 6 rows, kernel 3 pads (0, 1); torch's padding=1
    pads (1, 1): the same output shape, different numbers. nnparity refuses a strided
    "same" and takes TF's as explicit pairs."""
    torch, jax = require("torch"), require("jax")
    from jax import lax
    layer = Conv2d(2, 3, stride=2, padding=1)
    params, x, _ = random_case(layer, (2, 6, 6), "float64")
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(torch.from_numpy(x),
                                              torch.from_numpy(params["weight"]),
                                              torch.from_numpy(params["bias"]), stride=2,
                                              padding=1).numpy()
    with jax.enable_x64(True):
        tf_same = np.asarray(lax.conv_general_dilated(
            x, params["weight"], (2, 2), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=lax.Precision.HIGHEST)) + params["bias"][:, None, None]
    assert tf_same.shape == expected.shape
    assert not tensorwise_difference({"y": tf_same}, {"y": expected}, POLICY["float64"]).ok
    asked = Conv2d(2, 3, stride=2, padding=((0, 1), (0, 1)))     # how to ask for TF's
    from conv_checks import numpy_layer
    ours = numpy_layer(asked, params, x, np.zeros_like(expected))[0]
    assert tensorwise_difference({"y": ours}, {"y": tf_same}, POLICY["float64"]).ok
    with pytest.raises(ValueError, match=r"TF/JAX 'SAME'.*\(\(before, after\), \(before"):
        Conv2d(2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        torch.nn.Conv2d(2, 2, 3, stride=2, padding="same")       # torch refuses it too


# ------------------------------------------------------------- spec, fans and init

def test_fans_are_torchs():
    torch = require("torch")
    from torch.nn.init import _calculate_fan_in_and_fan_out
    for layer, shape in [(Conv2d(6, (3, 4), groups=2), (4, 8, 8)), (Conv2d(5, 1), (3, 4, 4)),
                         (Conv2d(4, 2, groups=4), (4, 5, 5))]:
        weight = torch.empty(layer.param_shapes(shape)["weight"])
        assert layer.fans(shape) == _calculate_fan_in_and_fan_out(weight)
    assert Conv2d(6, (3, 4), groups=2).fans((4, 8, 8)) == (2 * 12, 6 * 12)


@pytest.mark.parametrize("rule", ["uniform_fan_in", "zeros", "xavier_uniform", "he_normal",
                                  "torch_default"])
def test_init_rules_draw_the_shapes_and_scales(rule):
    torch = require("torch")
    layer, shape = Conv2d(8, (3, 5), groups=2), (4, 9, 9)
    fan_in, fan_out = layer.fans(shape)
    params = layer.init_params(rule, np.random.RandomState(0), shape)
    assert {k: v.shape for k, v in params.items()} == layer.param_shapes(shape)
    w, b = params["weight"], params["bias"]
    bound = {"uniform_fan_in": 1 / fan_in, "zeros": 0.0,
             "xavier_uniform": np.sqrt(6 / (fan_in + fan_out)),
             "torch_default": 1 / np.sqrt(fan_in), "he_normal": np.inf}[rule]
    assert np.abs(w).max() <= bound
    if rule == "torch_default":                     # torch.nn.Conv2d's own draw, same bounds
        module = torch.nn.Conv2d(4, 8, (3, 5), groups=2)
        assert module.weight.abs().max().item() <= bound
        assert module.bias.abs().max().item() <= bound
        assert 0 < np.abs(b).max() <= bound and np.abs(w).max() > 0.8 * bound
    else:
        assert not b.any()
    if rule == "he_normal":
        assert 0.7 < w.std() * np.sqrt(fan_in / 2) < 1.3
    no_bias = Conv2d(8, (3, 5), groups=2, bias=False).init_params(
        rule, np.random.RandomState(0), shape)
    assert list(no_bias) == ["weight"] and np.array_equal(no_bias["weight"], w)


def test_no_bias_has_no_bias_entry_as_torchs_state_dict():
    require("torch")
    spec = TestConv2d.cases["no-bias"]
    assert spec.param_shapes[0] == {"weight": (3, 2, 3, 3)}
    assert list(torch_module(spec.layers[0], (2, 6, 5)).state_dict()) == ["weight"]


def test_arguments_are_stored_canonically_and_round_trip():
    layer = Conv2d(4, 3, stride=[2, 1], padding="valid", dilation=np.int64(2))
    assert (layer.kernel_size, layer.stride, layer.padding, layer.dilation) == \
        ((3, 3), (2, 1), (0, 0), (2, 2))
    assert Conv2d(2, 3, padding=((1, 1), (2, 2))) == Conv2d(2, 3, padding=(1, 2))
    for layer in [*OPTIONS.values(), Conv2d(2, 3, padding=((1, 0), (0, 2)))]:
        assert layer_from_dict(json.loads(json.dumps(layer.to_dict()))) == layer
        hash(layer)                                      # JAX compiles with it as a constant
    spec = net(OPTIONS["asymmetric-pads"])
    assert NetworkSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(out_channels=0, kernel_size=3), ValueError, "out_channels"),
    (dict(out_channels=3, kernel_size=3, groups=2), ValueError, "multiple of groups=2"),
    (dict(out_channels=2, kernel_size=0), ValueError, "kernel_size"),
    (dict(out_channels=2, kernel_size=(3, 3, 3)), TypeError, "tuple of 2 integers"),
    (dict(out_channels=2, kernel_size=2.0), TypeError, "kernel_size"),
    (dict(out_channels=2, kernel_size=3, stride=0), ValueError, "stride"),
    (dict(out_channels=2, kernel_size=3, dilation=(1, 0)), ValueError, "dilation"),
    (dict(out_channels=2, kernel_size=3, padding=-1), ValueError, "padding"),
    (dict(out_channels=2, kernel_size=3, padding="full"), ValueError, "'valid', 'same'"),
    (dict(out_channels=2, kernel_size=3, padding=((1, 0),)), TypeError, "padding"),
    (dict(out_channels=2, kernel_size=3, padding=((1, -1), (0, 0))), ValueError, "padding"),
    (dict(out_channels=2, kernel_size=3, stride=(1, 2), padding="same"), ValueError,
     "TF/JAX"),
    (dict(out_channels=2, kernel_size=3, bias=1), TypeError, "bias"),
    (dict(out_channels=True, kernel_size=3), TypeError, "out_channels"),
])
def test_construction_is_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv2d(**kwargs)


@pytest.mark.parametrize("layer, shape, match", [
    (Conv2d(2, 3), (6, 5), "3 axes"),
    (Conv2d(2, 3), (1, 2, 6, 5), "3 axes"),
    (Conv2d(2, 3, groups=2), (3, 6, 5), "divisible by Conv2d.groups=2"),
    (Conv2d(2, 3), (2, 2, 5), "spatial axis 0 of size 2"),
    (Conv2d(2, 3, dilation=(1, 3)), (2, 6, 5), "spatial axis 1 of size 5"),
    (Conv2d(2, 3, padding=((0, 0), (1, 0))), (2, 3, 1), "spatial axis 1"),
])
def test_input_shapes_are_validated(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec(input_shape=shape, layers=(layer, Flatten(), Dense(1)))
    NetworkSpec(input_shape=(2, 3, 3), layers=(Conv2d(2, 3), Flatten(), Dense(1)))  # 1x1 ok


def full_correlation_with_flipped_kernel(layer, weight, d_y, input_shape):
    """The textbook input gradient of a convolution: dL/dy with stride - 1 zeros
    inserted between its elements, padded by dilation * (k - 1) on both sides
    (plus the rows a stride never read), correlated with the kernel flipped in
    space and transposed in/out per group, then cropped to the input. Computed
    with our forward pass (itself checked against torch above)."""
    from nnparity.backends.numpy.layers._conv import forward2d
    n, o, ho, wo = d_y.shape
    c, h, w = input_shape
    g = layer.groups
    (sh, sw), (dh, dw), ((pt, pb), (pl, pr)) = layer.stride, layer.dilation, layer.pads
    _, c_g, kh, kw = weight.shape
    spread = np.zeros((n, o, (ho - 1) * sh + 1, (wo - 1) * sw + 1), d_y.dtype)
    spread[:, :, ::sh, ::sw] = d_y                               # stride - 1 zeros between
    unread = ((h + pt + pb - dh * (kh - 1) - 1) % sh,            # rows and columns past the
              (w + pl + pr - dw * (kw - 1) - 1) % sw)            # last window: gradient 0
    flipped = (weight[:, :, ::-1, ::-1]                          # (O, C/G, kH, kW) flipped
               .reshape(g, o // g, c_g, kh, kw).transpose(0, 2, 1, 3, 4)
               .reshape(c, o // g, kh, kw))                      # (C, O/G, kH, kW)
    full = ((dh * (kh - 1), dh * (kh - 1) + unread[0]),
            (dw * (kw - 1), dw * (kw - 1) + unread[1]))
    d_pad, _ = forward2d(spread, flipped, None, (1, 1), full, layer.dilation, g)
    return d_pad[:, :, pt:pt + h, pl:pl + w]                     # (N, C, H, W)


def numpy_input_gradient(layer):
    """(weight, dL/dy, the NumPy backward's dL/dx) for ``layer`` on 2 random inputs."""
    from nnparity.backends.numpy.layers import conv2d
    rng = np.random.default_rng(0)
    params = {name: rng.standard_normal(shape) for name, shape in
              layer.param_shapes(INPUT).items()}
    y, cache = conv2d.forward(layer, params, {}, rng.standard_normal((2, *INPUT)), True)
    d_y = rng.standard_normal(y.shape)
    grads = {name: np.empty_like(value) for name, value in params.items()}
    return params["weight"], d_y, conv2d.backward(layer, params, cache, d_y, grads,
                                                  need_input_grad=True)


@pytest.mark.parametrize("name", OPTIONS)
def test_col2im_input_gradient_is_the_full_correlation_with_the_flipped_kernel(name):
    """The NumPy backward scatters dL/dy back through the forward's windows
    (col2im); the textbook formula is the full correlation with the flipped
    kernel. They are the same sums, for every stride, dilation, group and pad."""
    layer = OPTIONS[name]
    weight, d_y, d_x = numpy_input_gradient(layer)
    expected = full_correlation_with_flipped_kernel(layer, weight, d_y, INPUT)
    assert tensorwise_difference({"d_x": d_x}, {"d_x": expected}, POLICY["float64"]).ok


def test_negative_control_an_unflipped_kernel_is_not_the_input_gradient():
    layer = OPTIONS["odd-kernel"]
    weight, d_y, d_x = numpy_input_gradient(layer)
    unflipped = weight[:, :, ::-1, ::-1]                         # flipped back: not flipped
    expected = full_correlation_with_flipped_kernel(layer, unflipped, d_y, INPUT)
    assert not tensorwise_difference({"d_x": d_x}, {"d_x": expected}, POLICY["float64"]).ok
