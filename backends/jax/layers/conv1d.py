"""Conv1d in JAX: ``lax.conv_general_dilated`` in torch's layout (``_conv.py``)."""
from __future__ import annotations

from ._conv import conv


def forward(layer, params, buffers, x, train):
    """x (batch, C, L) -> ((batch, out_channels, L'), buffers unchanged)."""
    return conv(layer, params, x), buffers
