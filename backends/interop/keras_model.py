"""Export to Keras 3: an nnparity network as a ``keras.Sequential``, written as Keras
users write one (channels last), with the trained weights and running statistics.

``to_keras(spec, params, model_state)`` returns the model; ``keras_inputs(spec, x)``
gives nnparity's inputs in the layout the model takes; ``model(keras_inputs(spec, x),
training=False)`` is ``predict(spec, params, x, model_state=model_state)``.

Backend: ``KERAS_BACKEND`` is set to "jax" when it is unset, before Keras is first
imported (as nnparity's Keras bench peer does); a process that imported Keras already
keeps the backend it chose.

Layout: Keras's default ``data_format``, channels last. A network whose first layer is a
convolution, a pool or a BatchNorm on (C, *s) takes (*s, C) samples
(``keras_inputs`` moves the axis). Inside the network the exporter follows one rule:
convolutions, pools and BatchNorm on (C, *s) run channels last; every layer that reads
axes by position (Dense on the last axis, LayerNorm, RMSNorm, the recurrent layers,
attention) gets nnparity's order back through a ``Permute``, except a Flatten followed
(through activations and dropout only) by a Dense: there Keras users keep the
channels-last Flatten and the Dense's input columns are permuted instead
(``layouts.flatten_columns_channels_last``). Outputs are in nnparity's layout.

Layer by layer: Dense (kernel (in, out)); Activation (``keras.activations`` with
nnparity's parameters; gelu exact, gelu_tanh approximate); Flatten; Conv1D/Conv2D
(kernel (*k, I/groups, O); torch's explicit padding as ZeroPadding1D/2D before a
"valid" convolution); MaxPooling/AveragePooling (no padding, or average with
``count_include_pad=True`` as ZeroPadding first); BatchNormalization (axis -1,
momentum 1 - m: Keras weighs the old value; eps as given, not Keras's 1e-3);
LayerNormalization (eps as given); RMSNormalization (eps None resolved to
finfo(dtype).eps; scale ones without elementwise_affine); Dropout; Embedding
(no padding_idx in Keras: the row as it is); SimpleRNN, LSTM (gates i, f, c, o are
torch's i, f, g, o; one bias b_ih + b_hh), GRU (``reset_after=True``; gates reordered
r, z, n -> z, r, h; bias (2, 3H) = [input; recurrent]); stacked layers as several Keras
layers; MultiHeadAttention as ``SelfAttention`` (Keras's layer called on (x, x),
``use_causal_mask`` when causal; kernels by head from torch's packed in_proj); Residual
as ``Residual``, a layer that adds its sub-layers' output to its input.

Precision: Keras 3 computes in float32 even with float64 variables (its type promotion
maps 64-bit floats to 32-bit), so a float64 export agrees with nnparity to float32
accuracy only (measured 4e-8 to 1.7e-7 normwise on the test cases); test and use it under
the float32 policy. On the jax backend a float64 model even has float32 variables
unless JAX's x64 is on (JAX truncates them, with a warning per array).
"""
from __future__ import annotations

import functools
import os
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from nnparity.shared.core.data import check_inputs
from nnparity.shared.core.init import check_network
from nnparity.shared.core.layers import Layer, Shape
from nnparity.shared.core.layers.conv import Conv1d, Conv2d
from nnparity.shared.core.layers.pool import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from nnparity.shared.core.spec import NetworkSpec, walk_layers
from nnparity.shared.core.tree import Params
from nnparity.shared.core.validation import fail

from . import layouts, require_framework

#: the kinds ``to_keras`` exports
SUPPORTED = ("dense", "activation", "flatten", "conv1d", "conv2d", "max_pool1d", "max_pool2d",
             "avg_pool1d", "avg_pool2d", "batch_norm", "layer_norm", "rms_norm", "dropout",
             "embedding", "rnn", "lstm", "gru", "multi_head_attention", "residual")
#: initializers for the layers whose weights are then set: Keras's defaults (random
#: draws, an orthogonal recurrent kernel by QR) cost a compilation per shape, for nothing
ZEROS = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
#: torch's GRU gate order and Keras's
TORCH_GRU, KERAS_GRU = ("r", "z", "n"), ("z", "r", "n")


def to_keras(spec: NetworkSpec, params: Params, model_state: Params | None = None) -> Any:
    """The network as a ``keras.Sequential``: ``model(keras_inputs(spec, x),
    training=False)`` is ``predict(spec, params, x, model_state=model_state)``.

    Args:
        spec: the network (its dtype is each Keras layer's dtype).
        params: its parameters, one dict per layer, torch's names and layouts.
        model_state: BatchNorm's running statistics (default: the initial ones).

    Raises ``ValueError`` before building anything when a layer cannot be exported
    (its kind, or a setting Keras has no layer for), naming it.
    """
    params, model_state = check_network(spec, params, model_state)
    for label, layer in walk_layers(spec.layers):
        check_exportable(layer, label)
    m = _keras()
    convert = _Converter(m, spec.dtype)
    layout = "last" if channels_last_input(spec) else "first"
    layers, layout = convert.stack(spec.layers, spec.layer_input_shapes, params, model_state,
                                   layout)
    if layout == "last":                                   # a channels-last output
        layers.append(convert.permute(len(spec.output_shape), "first"))
    shape = spec.input_shape
    if channels_last_input(spec):
        shape = (*shape[1:], shape[0])                     # (*s, C)
    dtype = "int32" if spec.takes_tokens else spec.dtype
    model = m.keras.Sequential([m.keras.Input(shape, dtype=dtype), *layers])
    for keras_layer, values in convert.assignments:
        keras_layer.set_weights([np.asarray(v, spec.dtype) for v in values])
    return model


def channels_last_input(spec: NetworkSpec) -> bool:
    """True when the exported model takes channels-last samples (*s, C), as ``to_flax``'s
    does: see ``layouts.channels_last_input``."""
    return layouts.channels_last_input(spec.input_shape, spec.layers)


def keras_inputs(spec: NetworkSpec, x: np.ndarray) -> np.ndarray:
    """nnparity's inputs x (batch, *input_shape) in the layout ``to_keras``'s model takes:
    (batch, *s, C) when ``channels_last_input(spec)``, else x itself. x is checked
    against the spec first, as ``predict`` checks it."""
    check_inputs(spec, "x", x)
    return np.moveaxis(x, 1, -1) if channels_last_input(spec) else x


def check_exportable(layer: Layer, label: str) -> None:
    """Raise ``ValueError`` naming ``label`` unless ``to_keras`` can export ``layer``."""
    if layer.kind not in SUPPORTED:
        fail(f"{label}.kind", layer.kind, f"a kind to_keras exports: {', '.join(SUPPORTED)}")
    if isinstance(layer, (MaxPool1d, MaxPool2d)) and any(layer.padding):
        fail(f"{label}.padding", layer.padding, "0: Keras pads max pooling only as 'same' "
             "(TF's asymmetric rule), not torch's symmetric padding")
    if isinstance(layer, (AvgPool1d, AvgPool2d)) and not layer.count_include_pad \
            and any(layer.padding):
        fail(f"{label}.count_include_pad", False, "True, or padding 0: Keras's 'valid' "
             "average pooling after ZeroPadding counts the padding")
    if isinstance(layer, (Conv1d, Conv2d)) and max(layer.stride) > 1 \
            and max(layer.dilation) > 1:
        fail(f"{label}.dilation", layer.dilation, "1 when the stride is above 1: Keras's "
             "convolutions refuse strides and dilation above 1 together")


def keras_module() -> Any:
    """Keras, imported with ``KERAS_BACKEND`` set to "jax" unless it was set (Keras reads
    it once, on its first import)."""
    return _keras().keras


def _wants_last(layer: Layer, shape: Shape) -> bool:
    return layer.kind in layouts.SPATIAL_KINDS and len(shape) >= 2


@functools.cache
def _keras() -> SimpleNamespace:
    """Keras (imported on first use, with KERAS_BACKEND "jax" unless set) and the two
    layers this exporter defines."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = require_framework("keras", "to_keras")
    base: Any = keras.layers.Layer

    class SelfAttention(base):
        """x (batch, T, E) -> (batch, T, E): ``keras.layers.MultiHeadAttention`` on
        (x, x), with its causal mask when ``causal``."""

        def __init__(self, num_heads: int, key_dim: int, use_bias: bool, causal: bool,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.causal = causal
            self.attention = keras.layers.MultiHeadAttention(
                num_heads, key_dim, use_bias=use_bias, dtype=kwargs.get("dtype"), **ZEROS)

        def build(self, input_shape):
            self.attention.build(input_shape, input_shape)

        def call(self, x):
            return self.attention(x, x, use_causal_mask=self.causal)

        def compute_output_shape(self, input_shape):
            return input_shape

    class Residual(base):
        """x -> x + f(x), f the layers of ``branch`` in order."""

        def __init__(self, branch: Sequence[Any], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.branch = list(branch)

        def build(self, input_shape):
            shape = input_shape
            for layer in self.branch:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

        def call(self, x):
            y = x
            for layer in self.branch:
                y = layer(y)
            return x + y

        def compute_output_shape(self, input_shape):
            return input_shape

    a = keras.activations
    activations = {
        "identity": a.linear, "relu": a.relu, "leaky_relu": a.leaky_relu, "elu": a.elu,
        "selu": a.selu, "celu": a.celu, "sigmoid": a.sigmoid, "tanh": a.tanh,
        "softplus": a.softplus, "silu": a.silu, "mish": a.mish, "softsign": a.softsign,
        "relu6": a.relu6, "hardtanh": a.hard_tanh, "hardsigmoid": a.hard_sigmoid,
        "hardswish": a.hard_silu,
        "gelu": functools.partial(a.gelu, approximate=False),
        "gelu_tanh": functools.partial(a.gelu, approximate=True),
    }
    return SimpleNamespace(keras=keras, SelfAttention=SelfAttention, Residual=Residual,
                           activations=activations)


class _Converter:
    """Builds the Keras layers of a stack of nnparity layers, tracking the layout
    ("first": nnparity's axis order, "last": the channel axis moved to the end), and
    collects each layer's weights (``assignments``) to set once the model is built."""

    def __init__(self, m: SimpleNamespace, dtype: str) -> None:
        self.m, self.layers, self.dtype = m, m.keras.layers, dtype
        self.assignments: list[tuple[Any, list[np.ndarray]]] = []

    def permute(self, rank: int, to: str) -> Any:
        """A Permute of a rank-``rank`` sample to channels ``to`` ("last" or "first")."""
        dims = (*range(2, rank + 1), 1) if to == "last" else (rank, *range(1, rank))
        return self.layers.Permute(dims, dtype=self.dtype)

    def stack(self, layers: Sequence[Layer], shapes: Sequence[Shape], params: Sequence[dict],
              states: Sequence[dict], layout: str) -> tuple[list[Any], str]:
        """The Keras layers of ``layers`` (input shapes ``shapes``) entered in ``layout``,
        and the layout they leave."""
        out: list[Any] = []
        columns: Shape | None = None           # a channels-last Flatten of this (C, *s)
        for j, (layer, shape, p, s) in enumerate(zip(layers, shapes, params, states,
                                                     strict=False)):
            if layer.kind in layouts.ELEMENTWISE_KINDS:
                out.append(getattr(self, layer.kind)(layer, shape, p, s))
                continue
            if layer.kind == "flatten":
                if layout == "last":
                    following = [later for later in layers[j + 1:]
                                 if later.kind not in layouts.ELEMENTWISE_KINDS]
                    if following and following[0].kind == "dense":
                        columns = shape                # the Dense takes permuted columns
                    else:
                        out.append(self.permute(len(shape), "first"))
                out.append(self.layers.Flatten(dtype=self.dtype))
                layout = "first"
                continue
            wanted = "last" if _wants_last(layer, shape) else "first"
            if layer.kind == "residual":
                wanted = layout
            if len(shape) >= 2 and wanted != layout:
                out.append(self.permute(len(shape), wanted))
            layout = wanted
            if layer.kind == "dense" and columns is not None:
                p = {**p, "weight": layouts.flatten_columns_channels_last(p["weight"], columns)}
            columns = None
            build = getattr(self, layer.kind)
            out.append(build(layer, shape, p, s, layout) if layer.kind == "residual"
                       else build(layer, shape, p, s))
            if len(layer.output_shape(shape)) < 2:
                layout = "first"
        return out, layout

    def weighted(self, keras_layer: Any, values: list[np.ndarray]) -> Any:
        """``keras_layer``, whose weights (in Keras's order) become ``values`` once built."""
        self.assignments.append((keras_layer, values))
        return keras_layer

    def dense(self, layer, shape, p, s):
        keras_layer = self.layers.Dense(layer.units, dtype=self.dtype, **ZEROS)
        return self.weighted(keras_layer, [layouts.linear_kernel(p["weight"]), p["bias"]])

    def activation(self, layer, shape, p, s):
        fn = functools.partial(self.m.activations[layer.name], **layer.kwargs) \
            if layer.kwargs else self.m.activations[layer.name]
        return self.layers.Activation(fn, dtype=self.dtype)

    def dropout(self, layer, shape, p, s):
        return self.layers.Dropout(layer.p, dtype=self.dtype)

    def conv(self, layer, shape, p, s):
        n = layer.spatial
        conv = getattr(self.layers, f"Conv{n}D")(
            layer.out_channels, layer.kernel_size, strides=layer.stride, padding="valid",
            dilation_rate=layer.dilation, groups=layer.groups, use_bias=layer.bias,
            dtype=self.dtype, **ZEROS)
        values = [layouts.conv_kernel_channels_last(p["weight"])]   # (*k, I/groups, O)
        if layer.bias:
            values.append(p["bias"])
        conv = self.weighted(conv, values)
        if not any(before or after for before, after in layer.pads):
            return conv
        pad = getattr(self.layers, f"ZeroPadding{n}D")(layer.pads if n == 2 else layer.pads[0],
                                                        dtype=self.dtype)
        return self.m.keras.Sequential([pad, conv])

    conv1d = conv2d = conv

    def pool(self, layer, shape, p, s):
        kind = "MaxPooling" if layer.kind.startswith("max") else "AveragePooling"
        pool = getattr(self.layers, f"{kind}{layer.ndim}D")(
            layer.kernel_size, strides=layer.stride, padding="valid", dtype=self.dtype)
        if not any(layer.padding):
            return pool
        pads = tuple((q, q) for q in layer.padding)
        pad = getattr(self.layers, f"ZeroPadding{layer.ndim}D")(
            pads if layer.ndim == 2 else pads[0], dtype=self.dtype)
        return self.m.keras.Sequential([pad, pool])

    max_pool1d = max_pool2d = avg_pool1d = avg_pool2d = pool

    def batch_norm(self, layer, shape, p, s):
        norm = self.layers.BatchNormalization(
            axis=-1, momentum=layouts.momentum_of_old_value(layer.momentum), epsilon=layer.eps,
            center=layer.affine, scale=layer.affine, dtype=self.dtype)
        values = [p["weight"], p["bias"]] if layer.affine else []
        return self.weighted(norm, values + [s["running_mean"], s["running_var"]])

    def layer_norm(self, layer, shape, p, s):
        axes = list(range(-layer.dims, 0))
        norm = self.layers.LayerNormalization(axis=axes, epsilon=layer.eps,
                                              center="bias" in p, scale="weight" in p,
                                              dtype=self.dtype)
        return self.weighted(norm, [p[name] for name in ("weight", "bias") if name in p])

    def rms_norm(self, layer, shape, p, s):
        axes = list(range(-layer.dims, 0))
        norm = self.layers.RMSNormalization(axis=axes, epsilon=layer.eps_for(self.dtype),
                                            dtype=self.dtype)
        return self.weighted(norm, [p.get("weight", np.ones(shape[-layer.dims:]))])

    def embedding(self, layer, shape, p, s):
        table = self.layers.Embedding(layer.num_embeddings, layer.embedding_dim,
                                      embeddings_initializer="zeros", dtype=self.dtype)
        return self.weighted(table, [p["weight"]])

    def recurrent(self, layer, shape, p, s):
        stacked = []
        for k in range(layer.num_layers):
            w_ih, w_hh = p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"]
            b_ih, b_hh = p.get(f"bias_ih_l{k}"), p.get(f"bias_hh_l{k}")
            sequences = layer.return_sequence or k < layer.num_layers - 1
            options = dict(use_bias=layer.bias, return_sequences=sequences, dtype=self.dtype,
                           recurrent_initializer="zeros", **ZEROS)
            bias: list[np.ndarray] = []
            if layer.kind == "gru":
                keras_layer = self.layers.GRU(layer.hidden_size, reset_after=True, **options)
                w_ih, w_hh = (layouts.reorder_gate_blocks(w, TORCH_GRU, KERAS_GRU)
                              for w in (w_ih, w_hh))
                if layer.bias:
                    b_ih, b_hh = (layouts.reorder_gate_blocks(b, TORCH_GRU, KERAS_GRU)
                                  for b in (b_ih, b_hh))
                    bias = [np.stack([b_ih, b_hh])]                 # (2, 3H)
            else:
                keras_layer = (self.layers.LSTM(layer.hidden_size, **options)
                               if layer.kind == "lstm" else
                               self.layers.SimpleRNN(layer.hidden_size,
                                                     activation=layer.nonlinearity, **options))
                if layer.bias:
                    bias = [b_ih + b_hh]                            # (G*H,)
            values = [layouts.linear_kernel(w_ih), layouts.linear_kernel(w_hh)]
            stacked.append(self.weighted(keras_layer, values + bias))
        return stacked[0] if len(stacked) == 1 else self.m.keras.Sequential(stacked)

    rnn = lstm = gru = recurrent

    def multi_head_attention(self, layer, shape, p, s):
        heads = layer.num_heads
        attention = self.m.SelfAttention(heads, layer.head_size(shape), layer.bias,
                                         layer.causal, dtype=self.dtype)
        kernels = layouts.split_packed_projection(p["in_proj_weight"], heads)  # (E, heads, d)
        out_kernel = layouts.output_kernel_by_head(p["out_proj.weight"], heads)  # (heads, d, E)
        if layer.bias:
            biases = layouts.split_packed_bias(p["in_proj_bias"], heads)        # (heads, d)
            values = [v for pair in zip(kernels, biases, strict=True) for v in pair]
            values += [out_kernel, p["out_proj.bias"]]
        else:
            values = [*kernels, out_kernel]
        self.assignments.append((attention.attention, values))
        return attention

    def residual(self, layer, shape, p, s, layout):
        sub, sub_layout = self.stack(layer.layers, layer.shapes(shape)[:-1], layer.split(p),
                                     layer.split(s), layout)
        if sub_layout != layout and len(shape) >= 2:
            sub.append(self.permute(len(shape), layout))
        return self.m.Residual(sub, dtype=self.dtype)
