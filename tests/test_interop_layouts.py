"""The layout conversions of ``nnparity.backends.interop.layouts``, against the frameworks
that define the layouts: torch's convolution and Linear (OIHW, (out, in)) and JAX's
channels-last convolution (NHWC with HWIO kernels), and each conversion's inverse.

Negative controls: the wrong kernel transpose (3, 2, 1, 0), which gives the right shape on a
square kernel, and a Flatten whose next Dense keeps torch's column order, both fail the
same checks.
"""
from __future__ import annotations

import numpy as np
import pytest

from nnparity.backends.interop import layouts
from nnparity.shared.core.tolerance import POLICY, difference
from conftest import require

TOL = POLICY["float64"]
RNG = np.random.default_rng(0)


def channels_last_conv(x_nhwc: np.ndarray, kernel_hwio: np.ndarray) -> np.ndarray:
    """JAX's convolution of NHWC input with an HWIO kernel (Flax's and Keras's layout)."""
    jax = require("jax")
    with jax.enable_x64(True):
        return np.asarray(jax.lax.conv_general_dilated(
            x_nhwc, kernel_hwio, window_strides=(1, 1), padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC")))


def torch_conv(x_nchw: np.ndarray, weight: np.ndarray) -> np.ndarray:
    torch = require("torch")
    return torch.nn.functional.conv2d(torch.from_numpy(x_nchw), torch.from_numpy(weight)).numpy()


@pytest.mark.parametrize("kernel_size", [(3, 3), (2, 3)], ids=["square", "oblong"])
def test_conv_kernel_channels_last_is_jaxs_layout(kernel_size):
    weight = RNG.standard_normal((4, 3, *kernel_size))          # (O, I, kh, kw)
    x = RNG.standard_normal((2, 3, 6, 7))                       # (N, C, H, W)
    expected = torch_conv(x, weight).transpose(0, 2, 3, 1)      # NHWC
    kernel = layouts.conv_kernel_channels_last(weight)
    assert kernel.shape == (*kernel_size, 3, 4)
    got = channels_last_conv(x.transpose(0, 2, 3, 1), kernel)
    assert difference(got, expected, TOL).ok


def test_wrong_kernel_transpose_raises_nothing_and_fails_on_a_square_kernel():
    weight = RNG.standard_normal((4, 3, 3, 3))
    x = RNG.standard_normal((2, 3, 6, 7))
    expected = torch_conv(x, weight).transpose(0, 2, 3, 1)
    wrong = weight.transpose(3, 2, 1, 0)                        # (kw, kh, I, O): same shape
    assert wrong.shape == layouts.conv_kernel_channels_last(weight).shape
    got = channels_last_conv(x.transpose(0, 2, 3, 1), wrong)
    assert not difference(got, expected, TOL).ok


def test_flatten_columns_give_torchs_dense_after_a_channels_last_flatten():
    torch = require("torch")
    shape = (3, 4, 5)                                           # (C, H, W)
    weight = RNG.standard_normal((6, int(np.prod(shape))))      # (out, C*H*W)
    x = RNG.standard_normal((2, *shape))
    expected = torch.nn.functional.linear(torch.from_numpy(x).flatten(1),
                                          torch.from_numpy(weight)).numpy()
    x_last = x.transpose(0, 2, 3, 1).reshape(2, -1)             # Flatten of (H, W, C)
    moved = layouts.flatten_columns_channels_last(weight, shape)
    assert difference(x_last @ layouts.linear_kernel(moved), expected, TOL).ok
    assert not difference(x_last @ layouts.linear_kernel(weight), expected, TOL).ok


def test_attention_projections_by_head():
    torch = require("torch")
    embed, heads = 8, 2
    mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True, dtype=torch.float64)
    x = RNG.standard_normal((1, 5, embed))
    w = mha.in_proj_weight.detach().numpy()
    b = RNG.standard_normal(3 * embed)
    q_kernel, k_kernel, v_kernel = layouts.split_packed_projection(w, heads)
    q_bias, _, _ = layouts.split_packed_bias(b, heads)
    assert q_kernel.shape == (embed, heads, embed // heads)
    q = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w[:embed]),
                                   torch.from_numpy(b[:embed])).numpy()
    by_head = np.einsum("bte,ehd->bthd", x, q_kernel) + q_bias  # (batch, T, heads, d)
    assert difference(by_head.reshape(1, 5, embed), q, TOL).ok
    o = mha.out_proj.weight.detach().numpy()
    o_kernel = layouts.output_kernel_by_head(o, heads)          # (heads, d, E)
    heads_out = RNG.standard_normal((1, 5, heads, embed // heads))
    expected = torch.nn.functional.linear(torch.from_numpy(heads_out.reshape(1, 5, embed)),
                                          torch.from_numpy(o)).numpy()
    assert difference(np.einsum("bthd,hde->bte", heads_out, o_kernel), expected, TOL).ok


def test_gate_blocks_move_as_blocks():
    rows = np.arange(12.0).reshape(6, 2)                        # 3 gates of 2 rows
    moved = layouts.reorder_gate_blocks(rows, ("r", "z", "n"), ("z", "r", "n"))
    assert np.array_equal(moved, np.concatenate([rows[2:4], rows[0:2], rows[4:6]]))
    with pytest.raises(ValueError, match="permutation"):
        layouts.reorder_gate_blocks(rows, ("r", "z", "n"), ("z", "r", "h"))


def test_every_conversion_and_its_inverse_round_trip_bitwise():
    weight = RNG.standard_normal((4, 3))
    conv2 = RNG.standard_normal((5, 2, 3, 2))
    conv1 = RNG.standard_normal((5, 2, 3))
    dense = RNG.standard_normal((6, 3 * 4 * 5))
    packed = RNG.standard_normal((24, 8))
    bias = RNG.standard_normal(24)
    out = RNG.standard_normal((8, 8))
    pairs = [
        (weight, layouts.linear_weight(layouts.linear_kernel(weight))),
        (conv2, layouts.conv_weight_channels_first(layouts.conv_kernel_channels_last(conv2))),
        (conv1, layouts.conv_weight_channels_first(layouts.conv_kernel_channels_last(conv1))),
        (dense, layouts.flatten_columns_channels_first(
            layouts.flatten_columns_channels_last(dense, (3, 4, 5)), (3, 4, 5))),
        (packed, layouts.packed_projection(*layouts.split_packed_projection(packed, 2))),
        (bias, layouts.packed_bias(*layouts.split_packed_bias(bias, 2))),
        (out, layouts.output_weight(layouts.output_kernel_by_head(out, 2))),
        (bias, layouts.reorder_gate_blocks(layouts.reorder_gate_blocks(
            bias, "rzn", "znr"), "znr", "rzn")),
    ]
    for original, back in pairs:
        assert back.shape == original.shape and back.tobytes() == original.tobytes()
    assert conv1.shape != layouts.conv_kernel_channels_last(conv1).shape
