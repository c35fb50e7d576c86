"""One nnparity layer as the Flax NNX module (or function) that computes it
(``flax_read`` is the way back).

``BUILD[kind](layer, params, state, shape, dtype)`` -> the module, its weights set
from ``params``/``state`` (torch's layout, the spec's dtype, already converted for a
channels-last Flatten by the caller); ``shape`` is the layer's input shape in the
spec's (channels-first) layout. Every parameter is created with ``param_dtype`` and
``dtype`` set to the spec's dtype (Flax's default param_dtype is float32 even with
x64 on) and a constant initializer (``flax_modules.PLACEHOLDER``; Flax's own
defaults for scales and biases are constants already), then replaced by the given
values: building draws nothing random, and no value of Flax's reaches the result.

Imports flax at the top: ``flax_nnx`` imports this module only inside its functions.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnparity.backends.interop import flax_cells, layouts
from nnparity.backends.interop.flax_modules import (PLACEHOLDER, Recurrent, SelfAttention,
                                                    attention_in_dtype, linear, param)
from nnparity.backends.jax.activations import ACTIVATIONS as JAX_ACTIVATIONS
from nnparity.shared.core.layers import Activation, Dense
from nnparity.shared.core.layers.attention import MultiHeadAttention
from nnparity.shared.core.layers.batch_norm import BatchNorm
from nnparity.shared.core.layers.conv import Conv1d, Conv2d
from nnparity.shared.core.layers.dropout import Dropout
from nnparity.shared.core.layers.embedding import Embedding
from nnparity.shared.core.layers.norm import LayerNorm, RMSNorm

Arrays = dict[str, np.ndarray]


def _activation(layer: Activation, params: Arrays, state: Arrays, shape: Any, dtype: Any
                ) -> Callable[..., Any]:
    """The JAX backend's function (``jax.nn``'s where it follows nnparity's definition),
    with the activation's parameters bound when it has any."""
    fn = JAX_ACTIVATIONS[layer.name]
    return functools.partial(fn, **layer.kwargs) if layer.kwargs else fn


def _dense(layer: Dense, params: Arrays, state: Arrays, shape: Any, dtype: Any) -> nnx.Linear:
    return linear(layouts.linear_kernel(params["weight"]), params["bias"], dtype)


def _conv(layer: Conv1d | Conv2d, params: Arrays, state: Arrays, shape: Any, dtype: Any
          ) -> nnx.Conv:
    """``nnx.Conv`` on channels-last input; torch's "same" (stride 1) is Flax's 'SAME'
    (both put the odd zero after), any other padding explicit (before, after) pairs."""
    padding: Any = "SAME" if layer.padding == "same" else layer.pads
    conv = nnx.Conv(shape[0], layer.out_channels, layer.kernel_size, layer.stride,
                    padding=padding, kernel_dilation=layer.dilation,
                    feature_group_count=layer.groups, use_bias=layer.bias,
                    kernel_init=PLACEHOLDER, dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0))
    conv.kernel = param(layouts.conv_kernel_channels_last(params["weight"]))  # (*k, I/g, O)
    if layer.bias:
        conv.bias = param(params["bias"])
    return conv


def _pool(layer: Any, params: Arrays, state: Arrays, shape: Any, dtype: Any
          ) -> functools.partial:
    """``nnx.max_pool`` (pads with -inf) or ``nnx.avg_pool`` over the spatial axes of
    channels-last input, strides explicit (Flax's default is 1, torch's the kernel)."""
    kwargs: dict[str, Any] = dict(window_shape=layer.kernel_size, strides=layer.strides,
                                  padding=tuple((p, p) for p in layer.padding))
    if layer.kind.startswith("avg"):
        return functools.partial(nnx.avg_pool, count_include_pad=layer.count_include_pad,
                                 **kwargs)
    return functools.partial(nnx.max_pool, **kwargs)


def _batch_norm(layer: BatchNorm, params: Arrays, state: Arrays, shape: Any, dtype: Any
                ) -> nnx.BatchNorm:
    """``nnx.BatchNorm`` over the last (channel) axis, the two-pass variance, the
    momentum converted, running statistics in the spec's dtype (Flax creates them
    float32), and torch's ``num_batches_tracked`` carried as one more BatchStat
    (Flax does not count batches, so its training leaves it unchanged)."""
    bn = nnx.BatchNorm(shape[0], momentum=layouts.momentum_of_old_value(layer.momentum),
                       epsilon=layer.eps,
                       use_bias=layer.affine, use_scale=layer.affine,
                       use_fast_variance=False, dtype=dtype, param_dtype=dtype,
                       rngs=nnx.Rngs(0))
    if layer.affine:
        bn.scale, bn.bias = param(params["weight"]), param(params["bias"])
    bn.mean = nnx.BatchStat(jnp.asarray(state["running_mean"]))
    bn.var = nnx.BatchStat(jnp.asarray(state["running_var"]))
    bn.num_batches_tracked = nnx.BatchStat(  # type: ignore[attr-defined]
        jnp.asarray(state["num_batches_tracked"]))
    return bn


def norm_axes(dims: int) -> tuple[int, ...]:
    """The ``reduction_axes`` and ``feature_axes`` of a Flax norm over the last ``dims``
    axes: (-dims, ..., -1)."""
    return tuple(range(-dims, 0))


def flat_scale(weight: np.ndarray) -> np.ndarray:
    """A norm's weight or bias s (its last ``dims`` axes) -> Flax's (prod(s),), row-major
    as Flax reshapes it back onto the feature axes."""
    return np.ascontiguousarray(weight.reshape(-1))             # (prod(s),)


def _layer_norm(layer: LayerNorm, params: Arrays, state: Arrays, shape: Any, dtype: Any
                ) -> nnx.LayerNorm:
    """``nnx.LayerNorm`` over the last ``dims`` axes s: prod(s) features, the two-pass
    variance."""
    affine = layer.elementwise_affine
    norm = nnx.LayerNorm(math.prod(shape[-layer.dims:]), epsilon=layer.eps, use_scale=affine,
                         use_bias=affine and layer.bias, use_fast_variance=False,
                         reduction_axes=norm_axes(layer.dims),
                         feature_axes=norm_axes(layer.dims),
                         dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0))
    if affine:
        norm.scale = param(flat_scale(params["weight"]))         # (prod(s),)
    if affine and layer.bias:
        norm.bias = param(flat_scale(params["bias"]))            # (prod(s),)
    return norm


def _rms_norm(layer: RMSNorm, params: Arrays, state: Arrays, shape: Any, dtype: Any
              ) -> nnx.RMSNorm:
    """``nnx.RMSNorm`` over the last ``dims`` axes s (prod(s) features); eps None
    (torch's default) is finfo(dtype).eps, given to Flax as a number."""
    norm = nnx.RMSNorm(math.prod(shape[-layer.dims:]), epsilon=layer.eps_for(np.dtype(dtype)),
                       use_scale=layer.elementwise_affine,
                       reduction_axes=norm_axes(layer.dims),
                       feature_axes=norm_axes(layer.dims),
                       dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0))
    if layer.elementwise_affine:
        norm.scale = param(flat_scale(params["weight"]))         # (prod(s),)
    return norm


def _dropout(layer: Dropout, params: Arrays, state: Arrays, shape: Any, dtype: Any
             ) -> nnx.Dropout:
    return nnx.Dropout(layer.p, rngs=nnx.Rngs(dropout=0))


def _embedding(layer: Embedding, params: Arrays, state: Arrays, shape: Any, dtype: Any
               ) -> nnx.Embed:
    """``nnx.Embed``; Flax has no padding_idx: its index is kept as an attribute (for
    ``from_flax``) but Flax's gradient reaches that row."""
    embed = nnx.Embed(layer.num_embeddings, layer.embedding_dim, embedding_init=PLACEHOLDER,
                      dtype=dtype, param_dtype=dtype, rngs=nnx.Rngs(0))
    embed.embedding = param(params["weight"])
    embed.padding_idx = layer.padding_idx  # type: ignore[attr-defined]
    return embed


def _attention(layer: MultiHeadAttention, params: Arrays, state: Arrays, shape: Any,
               dtype: Any) -> SelfAttention:
    """``nnx.MultiHeadAttention`` (in, qkv and out features E) with the float64-exact
    ``attention_in_dtype``; torch's packed projections split per head."""
    embed, heads = shape[-1], layer.num_heads
    mha = nnx.MultiHeadAttention(heads, embed, embed, embed, use_bias=layer.bias,
                                 attention_fn=attention_in_dtype, decode=False,
                                 kernel_init=PLACEHOLDER, dtype=dtype, param_dtype=dtype,
                                 rngs=nnx.Rngs(0))
    kernels = layouts.split_packed_projection(params["in_proj_weight"], heads)
    for projection, kernel in zip((mha.query, mha.key, mha.value), kernels, strict=True):
        projection.kernel = param(kernel)                        # (E, heads, d)
    mha.out.kernel = param(layouts.output_kernel_by_head(params["out_proj.weight"], heads))
    if layer.bias:
        biases = layouts.split_packed_bias(params["in_proj_bias"], heads)
        for projection, bias in zip((mha.query, mha.key, mha.value), biases, strict=True):
            projection.bias = param(bias)                        # (heads, d)
        mha.out.bias = param(params["out_proj.bias"])
    return SelfAttention(mha, layer.causal)


def _recurrent(layer: Any, params: Arrays, state: Arrays, shape: Any, dtype: Any
               ) -> Recurrent:
    rnns = [nnx.RNN(flax_cells.build_cell(layer, params, k, dtype))
            for k in range(layer.num_layers)]
    return Recurrent(rnns, layer.return_sequence)


#: kind -> builder; the kinds ``to_flax`` exports (flatten and residual: ``flax_nnx``)
BUILD: dict[str, Callable[..., Any]] = {
    "activation": _activation, "dense": _dense, "conv1d": _conv, "conv2d": _conv,
    "max_pool1d": _pool, "max_pool2d": _pool, "avg_pool1d": _pool, "avg_pool2d": _pool,
    "batch_norm": _batch_norm, "layer_norm": _layer_norm, "rms_norm": _rms_norm,
    "dropout": _dropout, "embedding": _embedding, "multi_head_attention": _attention,
    "rnn": _recurrent, "lstm": _recurrent, "gru": _recurrent,
}
