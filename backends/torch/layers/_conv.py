"""The convolution in torch: ``F.conv1d``/``F.conv2d`` with the layer's resolved
(before, after) pads: torch's ``padding`` argument when they are symmetric, else
``F.pad`` first (torch's convolutions take no asymmetric padding). A "same"
layer arrives here resolved as torch resolves it (``layer.pads``); passing the
string instead would make torch copy the input for an even kernel all the same,
with a warning on every step. The tests' oracle is ``torch.nn.Conv2d(...,
padding="same")`` itself."""
from __future__ import annotations

import torch.nn.functional as F


def conv(conv_fn, layer, params, x):
    """x (batch, C, *spatial) -> (batch, out_channels, *spatial')."""
    pads = layer.pads
    if all(before == after for before, after in pads):
        padding = tuple(before for before, _ in pads)
    else:
        x = F.pad(x, [v for pair in reversed(pads) for v in pair])   # last axis first
        padding = (0,) * len(pads)
    return conv_fn(x, params["weight"], params.get("bias"), stride=layer.stride,
                   padding=padding, dilation=layer.dilation, groups=layer.groups)
