"""Weight layouts: how a tensor nnparity keeps in torch's layout is laid out elsewhere.

nnparity's parameters are torch's (same shapes, same state-dict names), so export to
torch and Equinox copies them as they are. Flax and Keras keep several of them in
another layout; each conversion is one function here, with its inverse, on NumPy
arrays (no framework needed):

- Linear: torch ``weight`` (out, in); Flax and Keras ``kernel`` (in, out).
- Convolution: torch (O, I/groups, *k) ("OIHW"); Flax and Keras (*k, I/groups, O)
  ("HWIO"), i.e. ``transpose(2, 3, 1, 0)`` in 2-d. The wrong ``transpose(3, 2, 1, 0)``
  gives the same shape on a square kernel and raises nothing: it swaps the two
  spatial axes, a transposed (not flipped) filter.
- Flatten after a channels-last convolution: torch flattens (C, H, W), a
  channels-last network (H, W, C), so the first Dense's input columns come in
  another order.
- Recurrent gate blocks, stacked along the rows: torch's LSTM (i, f, g, o), GRU
  (r, z, n); Keras's GRU (z, r, h).
- Attention: torch packs the query, key and value projections into one
  ``in_proj_weight`` (3E, E); Flax keeps one kernel per projection, (E, heads, d),
  and the output kernel as (heads, d, E).
- Which networks take channels-last input in Flax and Keras (``channels_last_input``),
  and BatchNorm's momentum, which Flax, Keras and Equinox give the old running value
  (``momentum_of_old_value``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nnparity.shared.core.layers import Layer

#: kinds that take channels-first (C, *spatial) input in nnparity and compute channels
#: last in Flax and Keras (BatchNorm too, on (C, *spatial))
SPATIAL_KINDS = ("conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
                 "batch_norm")
#: kinds that act elementwise, in any layout
ELEMENTWISE_KINDS = ("activation", "dropout")


def first_layout_layer(layers: Sequence[Layer]) -> Layer | None:
    """The first layer whose computation depends on the axis order (not Activation or
    Dropout; a Residual's first such sub-layer counts), or None."""
    for layer in layers:
        first = first_layout_layer(layer.sublayers()) if layer.kind == "residual" else layer
        if first is not None and first.kind not in ELEMENTWISE_KINDS:
            return first
    return None


def channels_last_input(input_shape: Sequence[int], layers: Sequence[Layer]) -> bool:
    """Whether the Flax and Keras exports of ``layers`` on inputs (batch, *input_shape)
    take channels-last rows (*spatial, C): when the first layer that depends on the axis
    order is a convolution, a pool or a BatchNorm over (C, *spatial)."""
    first = first_layout_layer(layers)
    return len(input_shape) >= 2 and first is not None and first.kind in SPATIAL_KINDS


def momentum_of_old_value(torch_momentum: float) -> float:
    """BatchNorm's momentum as Flax, Keras and Equinox mean it, weighing the old running
    value (running = m' running + (1 - m') batch), from torch's, which weighs the new
    batch (running = (1 - m) running + m batch): m' = 1 - m."""
    return 1.0 - torch_momentum


def torch_momentum(old_value_momentum: float) -> float:
    """The inverse of ``momentum_of_old_value``: the shortest decimal t with 1 - t equal to
    ``old_value_momentum``. 1 - m' itself need not be it: torch's 0.1 gives m' = 0.9, and
    1 - 0.9 is 0.09999999999999998; both map to 0.9, and 0.1 is the one a spec holds."""
    for digits in range(1, 18):
        t = float(f"{1.0 - old_value_momentum:.{digits}g}")
        if 1.0 - t == old_value_momentum:
            return t
    return 1.0 - old_value_momentum


def linear_kernel(weight: np.ndarray) -> np.ndarray:
    """torch's Linear weight (out, in) -> the (in, out) kernel of Flax and Keras."""
    return np.ascontiguousarray(weight.T)                       # (in, out)


def linear_weight(kernel: np.ndarray) -> np.ndarray:
    """The (in, out) kernel of Flax and Keras -> torch's Linear weight (out, in)."""
    return np.ascontiguousarray(kernel.T)                       # (out, in)


def conv_kernel_channels_last(weight: np.ndarray) -> np.ndarray:
    """torch's convolution weight (O, I/groups, *k) -> (*k, I/groups, O), Flax's and
    Keras's layout: ``transpose(2, 3, 1, 0)`` for a 2-d kernel, ``(2, 1, 0)`` in 1-d."""
    spatial = tuple(range(2, weight.ndim))
    return np.ascontiguousarray(weight.transpose(*spatial, 1, 0))  # (*k, I/groups, O)


def conv_weight_channels_first(kernel: np.ndarray) -> np.ndarray:
    """(*k, I/groups, O), Flax's and Keras's layout -> torch's (O, I/groups, *k)."""
    n = kernel.ndim
    return np.ascontiguousarray(kernel.transpose(n - 1, n - 2, *range(n - 2)))  # (O, I/g, *k)


def flatten_columns_channels_last(weight: np.ndarray, channels_first_shape: Sequence[int]
                                  ) -> np.ndarray:
    """The weight (out, C*prod(spatial)) of a Dense that follows torch's Flatten of
    (C, *spatial) -> the same weight for a Flatten of the channels-last (*spatial, C):
    column c*S + s moves to s*C + c."""
    channels, *spatial = channels_first_shape
    out = weight.shape[0]
    w = weight.reshape(out, channels, *spatial)                 # (out, C, *spatial)
    w = np.moveaxis(w, 1, -1)                                   # (out, *spatial, C)
    return np.ascontiguousarray(w.reshape(out, -1))


def flatten_columns_channels_first(weight: np.ndarray, channels_first_shape: Sequence[int]
                                   ) -> np.ndarray:
    """The inverse of ``flatten_columns_channels_last``: the Dense weight for a
    channels-last Flatten of (*spatial, C) -> the one for torch's Flatten of (C, *spatial)."""
    channels, *spatial = channels_first_shape
    out = weight.shape[0]
    w = weight.reshape(out, *spatial, channels)                 # (out, *spatial, C)
    w = np.moveaxis(w, -1, 1)                                   # (out, C, *spatial)
    return np.ascontiguousarray(w.reshape(out, -1))


def reorder_gate_blocks(stacked: np.ndarray, order: Sequence[str], new_order: Sequence[str]
                        ) -> np.ndarray:
    """Rows (or a bias) of G gate blocks stacked along axis 0 in ``order`` -> the same
    blocks in ``new_order``; e.g. torch's GRU ("r", "z", "n") -> Keras's ("z", "r", "n")."""
    if sorted(order) != sorted(new_order) or len(set(order)) != len(order):
        raise ValueError(f"new_order {tuple(new_order)!r} must be a permutation of "
                         f"order {tuple(order)!r}")
    blocks = dict(zip(order, np.split(stacked, len(order), axis=0), strict=True))
    return np.concatenate([blocks[gate] for gate in new_order], axis=0)


def split_packed_projection(in_proj_weight: np.ndarray, num_heads: int
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's ``in_proj_weight`` (3E, E) -> the query, key and value kernels of Flax's
    attention, each (E, heads, d): head h's rows h*d .. (h+1)*d - 1 of a projection."""
    embed = in_proj_weight.shape[1]
    head_size = embed // num_heads
    query, key, value = (np.ascontiguousarray(w.T.reshape(embed, num_heads, head_size))
                         for w in np.split(in_proj_weight, 3, axis=0))  # each (E, heads, d)
    return query, key, value


def packed_projection(query: np.ndarray, key: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The inverse of ``split_packed_projection``: three (E, heads, d) kernels ->
    torch's ``in_proj_weight`` (3E, E)."""
    return np.concatenate([w.reshape(w.shape[0], -1).T for w in (query, key, value)], axis=0)


def split_packed_bias(in_proj_bias: np.ndarray, num_heads: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's ``in_proj_bias`` (3E,) -> the query, key and value biases of Flax's
    attention, each (heads, d)."""
    query, key, value = (b.reshape(num_heads, -1).copy()        # each (heads, d)
                         for b in np.split(in_proj_bias, 3))
    return query, key, value


def packed_bias(query: np.ndarray, key: np.ndarray, value: np.ndarray) -> np.ndarray:
    """The inverse of ``split_packed_bias``: three (heads, d) biases -> (3E,)."""
    return np.concatenate([b.ravel() for b in (query, key, value)])


def output_kernel_by_head(out_proj_weight: np.ndarray, num_heads: int) -> np.ndarray:
    """torch's ``out_proj.weight`` (E, E) -> Flax's output kernel (heads, d, E): input
    column h*d + j is head h's element j."""
    embed = out_proj_weight.shape[0]
    return np.ascontiguousarray(out_proj_weight.T.reshape(num_heads, -1, embed))  # (heads, d, E)


def output_weight(kernel: np.ndarray) -> np.ndarray:
    """The inverse of ``output_kernel_by_head``: (heads, d, E) -> (E, E)."""
    return np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]).T)  # (E, heads*d)
