"""The torch.nn modules ``to_torch`` builds where a torch module cannot sit in an
``nn.Sequential`` as it is, each a small subclass of the torch module it adapts, so
its parameters keep torch's own state-dict names.

- ``Residual``: torch has no residual module: ``x + layers(x)``.
- ``PaddedConv1d``, ``PaddedConv2d``: a convolution with a (before, after) padding
  per spatial axis, which ``nn.Conv1d``/``nn.Conv2d`` cannot take.
- ``RNNSequence``, ``LSTMSequence``, ``GRUSequence`` and ``RNNLastStep``,
  ``LSTMLastStep``, ``GRULastStep``: torch's recurrent modules return a tuple
  (output, h_n), which the next module of a Sequential cannot take.
- ``SelfAttention``: ``nn.MultiheadAttention`` takes (query, key, value, mask) and
  returns a tuple; this one takes x and carries ``causal``, which torch takes per
  call and does not keep.

This module imports torch when it is imported: ``torch_nn``'s functions import it
only after checking that torch is installed.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """(batch, *s) -> (batch, *s): ``x + layers(x)``, ``layers`` an ``nn.Sequential``
    whose output has its input's shape. Sub-module j's parameter ``weight`` is named
    ``layers.{j}.weight``, as nnparity's ``Residual`` names it."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)                               # (batch, *s)


def pad_widths(pads: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """(before, after) per spatial axis, first axis first -> ``F.pad``'s flat widths,
    which name the LAST axis first: ((top, bottom), (left, right)) -> (left, right,
    top, bottom)."""
    return tuple(width for pair in reversed(pads) for width in pair)


class PaddedConv1d(nn.Conv1d):
    """``nn.Conv1d`` (its arguments, padding 0) after zero padding ``pads`` =
    ((before, after),): (batch, C, L) -> (batch, out, L'), L' from L + before + after.
    ``pads`` is an attribute, not state: the state dict is ``nn.Conv1d``'s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 pads: Sequence[tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=0, **kwargs)
        self.pads = tuple((int(before), int(after)) for before, after in pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, pad_widths(self.pads)))  # (batch, out, L')

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pads={self.pads}"


class PaddedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (its arguments, padding 0) after zero padding ``pads`` =
    ((top, bottom), (left, right)): (batch, C, H, W) -> (batch, out, H', W').
    ``pads`` is an attribute, not state: the state dict is ``nn.Conv2d``'s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any,
                 pads: Sequence[tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=0, **kwargs)
        self.pads = tuple((int(before), int(after)) for before, after in pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, pad_widths(self.pads)))  # (batch, out, H', W')

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pads={self.pads}"


# The recurrent adapters keep torch's constructor: build them with batch_first=True
# (``to_torch`` does; ``from_torch`` refuses batch_first=False).

class RNNSequence(nn.RNN):
    """``nn.RNN`` returning its output only: (batch, T, I) -> (batch, T, H), the last
    stacked layer's h at every step (batch_first=True)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]                            # (batch, T, H)


class RNNLastStep(nn.RNN):
    """``nn.RNN`` returning the last step's output: (batch, T, I) -> (batch, H),
    ``output[:, -1]`` (batch_first=True)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0][:, -1]                     # (batch, H)


class LSTMSequence(nn.LSTM):
    """``nn.LSTM`` returning its output only (h, not c): (batch, T, I) -> (batch, T, H)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]                            # (batch, T, H)


class LSTMLastStep(nn.LSTM):
    """``nn.LSTM`` returning the last step's h: (batch, T, I) -> (batch, H)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0][:, -1]                     # (batch, H)


class GRUSequence(nn.GRU):
    """``nn.GRU`` returning its output only: (batch, T, I) -> (batch, T, H)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]                            # (batch, T, H)


class GRULastStep(nn.GRU):
    """``nn.GRU`` returning the last step's output: (batch, T, I) -> (batch, H)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0][:, -1]                     # (batch, H)


class SelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` as self-attention on x (batch, T, E) -> (batch, T, E):
    ``mha(x, x, x, attn_mask=mask, need_weights=False)[0]``, ``mask`` torch's boolean
    upper triangle (True = blocked: key u > query t) when ``causal``, else None.

    ``causal`` is an attribute, not state (torch takes the mask per call); the other
    arguments are torch's (pass batch_first=True)."""

    def __init__(self, embed_dim: int, num_heads: int, *, causal: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(embed_dim, num_heads, **kwargs)
        self.causal = bool(causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        length = x.shape[1]
        mask = (torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
                if self.causal else None)                       # (T, T) True = blocked
        return super().forward(x, x, x, attn_mask=mask, need_weights=False)[0]  # (B, T, E)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"
