"""The convolution in JAX: ``lax.conv_general_dilated``.

- explicit (before, after) padding pairs per spatial axis (``layer.pads``, torch's
  "same" already resolved): never the string "SAME", whose strided form is TF's
  asymmetric convention, not torch's;
- ``rhs_dilation`` is torch's ``dilation`` (the kernel's; ``lhs_dilation`` would
  dilate the input, a transposed convolution);
- ``feature_group_count`` is torch's ``groups``;
- dimension numbers ("NCHW", "OIHW", "NCHW") (1-d: "NCH", "OIH", "NCH"): torch's
  layout for input, kernel and output, so the parameters and data go in as they
  are, with no transposes (and no chance of a transposed kernel);
- ``precision=lax.Precision.HIGHEST``: on CPU, float64 and float32 are exact
  either way (tests/test_layer_conv2d.py measures float64 to rounding); on GPU/TPU
  the default may compute float32 in TF32/bfloat16 passes, which parity would see.
"""
from __future__ import annotations

from jax import lax

NUMBERS = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW")}


def conv(layer, params, x):
    """x (batch, C, *spatial) -> (batch, out_channels, *spatial')."""
    y = lax.conv_general_dilated(x, params["weight"], window_strides=layer.stride,
                                 padding=layer.pads, rhs_dilation=layer.dilation,
                                 dimension_numbers=NUMBERS[layer.spatial],
                                 feature_group_count=layer.groups,
                                 precision=lax.Precision.HIGHEST)
    if "bias" in params:
        y = y + params["bias"].reshape(-1, *(1,) * layer.spatial)   # (out, 1, ...)
    return y
