"""Conv1d in torch: ``F.conv1d`` (explicit asymmetric pads through ``F.pad``)."""
from __future__ import annotations

import torch.nn.functional as F

from ._conv import conv


def forward(layer, params, buffers, x, train):
    """x (batch, C, L) -> (batch, out_channels, L')."""
    return conv(F.conv1d, layer, params, x)
