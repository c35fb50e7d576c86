"""A Flax NNX module (or function) of a network -> the nnparity layer it computes,
with its parameters and model state in torch's layout (NumPy): ``read(module,
label)`` -> (layer, params, state), or None when it is none of these.

Modules are recognised by their exact type (a subclass may compute anything),
functions by identity: the JAX backend's activation functions (what ``to_flax``
writes; ``jax.nn``'s where they follow nnparity's definitions), ``functools.partial``
of them binding the activation's parameters, ``flax_modules.flatten``, and
``functools.partial(nnx.max_pool | nnx.avg_pool, window_shape=, strides=, padding=)``.
Options that change what a layer computes (Flax's fused or grouped variants,
masks, input dilation, ...) are refused with a ``ValueError`` naming them.

Imports flax at the top: ``flax_nnx`` imports this module only inside its functions.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from nnparity.backends.interop import flax_cells, layouts
from nnparity.backends.interop.flax_modules import (Recurrent, SelfAttention,
                                                    attention_in_dtype, flatten,
                                                    linear_arrays, numpy_of)
from nnparity.backends.jax.activations import ACTIVATIONS as JAX_ACTIVATIONS
from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.core.layers import LAYERS, Activation, Dense, Layer
from nnparity.shared.core.layers.flatten import Flatten
from nnparity.shared.core.validation import fail

Read = tuple[Layer, dict[str, np.ndarray], dict[str, np.ndarray]]
#: function -> activation name: the JAX backend's functions
ACTIVATION_NAMES = {fn: name for name, fn in JAX_ACTIVATIONS.items()}
#: jax.nn functions whose value or breakpoint derivative is not nnparity's
DIFFERING = {jax.nn.gelu: "its default is the tanh approximation, and its exact form "
             "uses erf where nnparity uses erfc",
             jax.nn.leaky_relu: "its derivative at 0 is 1, nnparity's negative_slope",
             jax.nn.hard_tanh: "its derivative at -1 and 1 is 1, nnparity's 0",
             jax.nn.celu: "it splits the derivative at 0 (jnp.maximum), nnparity's is 1"}
POOLS = {nnx.max_pool: "max_pool", nnx.avg_pool: "avg_pool"}
#: the attention functions read as nnparity's attention (float64 softmax): Flax's
#: default (its softmax in float32: the same function, less accurately) and the one
#: ``to_flax`` writes
ATTENTION_FUNCTIONS = {nnx.dot_product_attention: "nnx.dot_product_attention",
                       attention_in_dtype: "flax_modules.attention_in_dtype"}


def _make(kind: str, **fields: Any) -> Layer:
    """The layer spec of ``kind`` with ``fields`` (validated by its constructor)."""
    cls: Any = LAYERS[kind]
    return cls(**fields)


def _activation(fn: Any, label: str) -> Read | None:
    """An Activation from one of the JAX backend's functions, or a partial of one
    binding every parameter it has no default for."""
    bound: dict[str, Any] = {}
    if isinstance(fn, functools.partial) and fn.func in ACTIVATION_NAMES:
        if fn.args:
            fail(f"{label}.args", fn.args, "keyword arguments only (the activation's "
                 "parameters)")
        fn, bound = fn.func, dict(fn.keywords)
    if fn in DIFFERING:
        fail(label, fn.__name__, f"an activation that is nnparity's: jax.nn.{fn.__name__} "
             f"is not ({DIFFERING[fn]}); use the function of "
             "nnparity.backends.jax.activations.ACTIVATIONS")
    if fn not in ACTIVATION_NAMES:
        return None
    name = ACTIVATION_NAMES[fn]
    defaults = ACTIVATIONS[name].defaults
    unset = {key for key, p in inspect.signature(fn).parameters.items()
             if key in defaults and key not in bound and p.default is inspect.Parameter.empty
             } if defaults else set()
    if set(bound) - set(defaults) or unset:
        fail(label, fn, f"{name} with its parameters ({', '.join(defaults) or 'none'}) bound "
             "by functools.partial")
    params = {key: value for key, value in bound.items() if value != defaults[key]}
    return Activation(name, params), {}, {}


def _pool(fn: Any, label: str) -> Read | None:
    if not (isinstance(fn, functools.partial) and fn.func in POOLS):
        return None
    if fn.args:
        fail(f"{label}.args", fn.args, "keyword arguments only: window_shape, strides, padding")
    kw = dict(fn.keywords)
    if "window_shape" not in kw:
        fail(f"{label}.keywords", sorted(kw), "window_shape among them (the kernel size)")
    window = tuple(kw.pop("window_shape"))
    strides = tuple(kw.pop("strides", None) or (1,) * len(window))   # Flax's default: 1
    padding = kw.pop("padding", "VALID")
    if padding == "VALID":
        pads: tuple[int, ...] = (0,) * len(window)
    elif isinstance(padding, str) or any(before != after for before, after in padding):
        fail(f"{label}.padding", padding, "'VALID' or symmetric (p, p) pairs: torch's pooling "
             "pads both sides alike ('SAME' pads by the input's size, TF's convention)")
    else:
        pads = tuple(int(before) for before, _ in padding)
    kind = f"{POOLS[fn.func]}{len(window)}d"
    kwargs: dict[str, Any] = dict(kernel_size=window, stride=strides, padding=pads)
    if fn.func is nnx.avg_pool:
        kwargs["count_include_pad"] = kw.pop("count_include_pad", True)
    if kw:
        fail(f"{label}.keywords", sorted(kw), "window_shape, strides, padding "
             "(and count_include_pad for avg_pool)")
    if len(window) not in (1, 2):
        fail(f"{label}.window_shape", window, "1 or 2 spatial axes")
    return _make(kind, **kwargs), {}, {}


def _dense(m: nnx.Linear, label: str) -> Read:
    kernel, bias = linear_arrays(m)
    if bias is None:
        fail(f"{label}.use_bias", False, "True: nnparity's Dense has a bias")
    return Dense(kernel.shape[1]), {"weight": layouts.linear_weight(kernel), "bias": bias}, {}


def _conv_padding(m: nnx.Conv, label: str, n: int) -> Any:
    padding, strides = m.padding, m.strides
    if padding == "SAME":
        if any(s != 1 for s in ((strides,) * n if isinstance(strides, int) else strides or ())):
            fail(f"{label}.padding", padding, "'SAME' with stride 1 only (with a larger stride "
                 "it is TF's convention, which depends on the input's size)")
        return "same"
    if padding == "VALID":
        return 0
    if padding == "CAUSAL":
        dilation: Any = m.kernel_dilation or 1
        d = dilation if isinstance(dilation, int) else dilation[0]
        return ((d * (m.kernel_size[0] - 1), 0),)
    if isinstance(padding, str):
        fail(f"{label}.padding", padding, "'SAME', 'VALID', 'CAUSAL', ints or (before, after) "
             "pairs: torch pads with zeros")
    return padding


def _conv(m: nnx.Conv, label: str) -> Read:
    n = len(m.kernel_size)
    if n not in (1, 2):
        fail(f"{label}.kernel_size", m.kernel_size, "1 or 2 spatial axes (Conv1d, Conv2d)")
    if m.input_dilation not in (None, 1, (1,) * n) or m.mask is not None:
        fail(label, "input_dilation or mask", "neither (torch's Conv has no such thing)")
    kernel = numpy_of(m.kernel)
    layer = _make(f"conv{n}d", out_channels=m.out_features, kernel_size=tuple(m.kernel_size),
                  stride=1 if m.strides is None else m.strides,
                  padding=_conv_padding(m, label, n),
                  dilation=1 if m.kernel_dilation is None else m.kernel_dilation,
                  groups=m.feature_group_count, bias=m.use_bias)
    params = {"weight": layouts.conv_weight_channels_first(kernel)}
    if m.use_bias:
        params["bias"] = numpy_of(m.bias)
    return layer, params, {}


def _last_axis(label: str, **axes: Any) -> None:
    for name, value in axes.items():
        if value not in (-1, (-1,)):
            fail(f"{label}.{name}", value, "-1, the last (feature) axis")


def _batch_norm(m: nnx.BatchNorm, label: str) -> Read:
    _last_axis(label, axis=m.axis)
    if m.use_scale != m.use_bias or m.axis_name is not None:
        fail(label, "use_scale != use_bias or axis_name", "both or neither of scale and bias "
             "(torch's affine), no axis_name")
    layer = _make("batch_norm", momentum=layouts.torch_momentum(m.momentum), eps=m.epsilon,
                  affine=m.use_scale)
    params = {"weight": numpy_of(m.scale), "bias": numpy_of(m.bias)} if m.use_scale else {}
    counted = getattr(m, "num_batches_tracked", None)
    dtype = numpy_of(m.mean).dtype
    state = {"running_mean": numpy_of(m.mean), "running_var": numpy_of(m.var),
             "num_batches_tracked": np.zeros((), dtype) if counted is None else
             numpy_of(counted)}
    return layer, params, state


def _norm_dims(m: nnx.LayerNorm | nnx.RMSNorm, label: str) -> int:
    """dims of a Flax norm whose ``reduction_axes`` and ``feature_axes`` are both
    (-dims, ..., -1) (an int -k is (-k,)): torch's norm over the last dims axes."""
    axes = {name: tuple(v) if isinstance(v, (tuple, list)) else (v,)
            for name, v in (("reduction_axes", m.reduction_axes),
                            ("feature_axes", m.feature_axes))}
    dims = len(axes["reduction_axes"])
    if dims == 0 or any(v != tuple(range(-dims, 0)) for v in axes.values()):
        fail(f"{label}.reduction_axes, feature_axes", tuple(axes.values()), "both (-dims, ..., "
             "-1) for one dims >= 1, the last axes, e.g. (-1,) or (-2, -1): torch normalises "
             "and scales the same trailing axes")
    return dims


def _layer_norm(m: nnx.LayerNorm, label: str) -> Read:
    """Scale and bias stay Flax's (prod(s),): the caller, which knows the input shape,
    reshapes them to s (``flax_nnx``)."""
    dims = _norm_dims(m, label)
    if m.use_bias and not m.use_scale:
        fail(f"{label}.use_bias", True, "a bias only with a scale (torch's LayerNorm)")
    layer = _make("layer_norm", dims=dims, eps=m.epsilon, elementwise_affine=m.use_scale,
                  bias=m.use_bias or not m.use_scale)
    params = {"weight": numpy_of(m.scale)} if m.use_scale else {}
    if m.use_bias:
        params["bias"] = numpy_of(m.bias)
    return layer, params, {}


def _rms_norm(m: nnx.RMSNorm, label: str) -> Read:
    """An epsilon equal to finfo(param_dtype).eps reads back as eps=None, torch's default,
    which means that number. The scale stays (prod(s),), as in ``_layer_norm``."""
    dims = _norm_dims(m, label)
    eps = None if m.epsilon == float(np.finfo(np.dtype(m.param_dtype)).eps) else m.epsilon
    layer = _make("rms_norm", dims=dims, eps=eps, elementwise_affine=m.use_scale)
    return layer, ({"weight": numpy_of(m.scale)} if m.use_scale else {}), {}


def _dropout(m: nnx.Dropout, label: str) -> Read:
    if tuple(m.broadcast_dims):
        fail(f"{label}.broadcast_dims", m.broadcast_dims, "(): one draw per element, as torch")
    return _make("dropout", p=m.rate), {}, {}


def _embed(m: nnx.Embed, label: str) -> Read:
    layer = _make("embedding", num_embeddings=m.num_embeddings, embedding_dim=m.features,
                                padding_idx=getattr(m, "padding_idx", None))
    return layer, {"weight": numpy_of(m.embedding)}, {}


def _attention(m: Any, label: str) -> Read:
    causal = False
    if type(m) is SelfAttention:
        m, causal = m.attention, m.causal
    embed, heads = m.in_features, m.num_heads
    if (m.qkv_features != embed or m.out_features != embed or m.num_kv_heads != heads
            or m.normalize_qk or m.dropout_rate or m.decode):
        fail(label, "qkv_features, out_features, num_kv_heads, normalize_qk, dropout_rate or "
             "decode", f"qkv and out features equal to in_features={embed}, as many key/value "
             "heads as heads, no qk normalisation, no dropout, decode False (torch's "
             "MultiheadAttention)")
    if not any(m.attention_fn is fn for fn in ATTENTION_FUNCTIONS):
        fail(f"{label}.attention_fn", getattr(m.attention_fn, "__name__", m.attention_fn),
             " or ".join(ATTENTION_FUNCTIONS.values()) + ", read as nnparity's attention "
             "(softmax in float64): any other function may compute anything")
    kernels = [numpy_of(p.kernel) for p in (m.query, m.key, m.value)]
    params = {"in_proj_weight": layouts.packed_projection(*kernels)}
    if m.use_bias:
        params["in_proj_bias"] = layouts.packed_bias(*(numpy_of(p.bias)
                                                       for p in (m.query, m.key, m.value)))
    params["out_proj.weight"] = layouts.output_weight(numpy_of(m.out.kernel))
    if m.use_bias:
        params["out_proj.bias"] = numpy_of(m.out.bias)
    layer = _make("multi_head_attention", num_heads=heads, causal=causal, bias=m.use_bias)
    return layer, params, {}


def _recurrent(m: Any, label: str) -> Read:
    rnns, return_sequence = ([m], True) if type(m) is nnx.RNN else (list(m.layers),
                                                                      m.return_sequence)
    kinds, fields, biased, params = set(), [], set(), {}
    for k, rnn in enumerate(rnns):
        where = f"{label}.layers[{k}]" if type(m) is Recurrent else label
        if type(rnn) is not nnx.RNN:
            fail(where, type(rnn).__name__, "an nnx.RNN")
        if rnn.time_major or rnn.return_carry or rnn.reverse:
            fail(where, "time_major, return_carry or reverse", "none: batch-first, forward, "
                 "the hidden sequence out (torch's batch_first=True)")
        kind, extra, tensors = flax_cells.read_cell(rnn.cell, k, f"{where}.cell")
        kinds.add(kind)
        fields.append(extra)
        biased.add(f"bias_ih_l{k}" in tensors)
        params.update(tensors)
    if len(kinds) != 1 or len(biased) != 1 or any(f != fields[0] for f in fields):
        fail(label, sorted(kinds), "stacked cells of one kind, one nonlinearity, all with "
             "biases or none (torch's stacked layers)")
    hidden = params["weight_hh_l0"].shape[1]
    layer = _make(kinds.pop(), hidden_size=hidden, num_layers=len(rnns), bias=biased.pop(),
                                return_sequence=return_sequence, **fields[0])
    return layer, params, {}


#: exact module type -> reader
MODULES: dict[type, Callable[[Any, str], Read]] = {
    nnx.Linear: _dense, nnx.Conv: _conv, nnx.BatchNorm: _batch_norm,
    nnx.LayerNorm: _layer_norm, nnx.RMSNorm: _rms_norm, nnx.Dropout: _dropout,
    nnx.Embed: _embed, nnx.MultiHeadAttention: _attention, SelfAttention: _attention,
    nnx.RNN: _recurrent, Recurrent: _recurrent,
}


def read(module: Any, label: str) -> Read | None:
    """The layer ``module`` computes, or None when it is none this file knows."""
    if type(module) in MODULES:
        return MODULES[type(module)](module, label)
    if module is flatten:
        return Flatten(), {}, {}
    return _pool(module, label) or _activation(module, label)
