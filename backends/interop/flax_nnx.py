"""An nnparity network as a Flax NNX module, and back: ``to_flax`` and ``from_flax``.

``to_flax(spec, params, model_state)`` returns an ``nnx.Sequential`` of Flax's own
layers (``flax_modules.Network``), in evaluation mode (``model.train()`` switches
BatchNorm to batch statistics and Dropout on), its parameters in the spec's dtype
(``param_dtype`` and ``dtype`` set: Flax's default param_dtype is float32 even with
x64 on). A float64 module must be called under ``jax.enable_x64(True)`` (it is
built under it, scoped; the global JAX configuration is never changed): called with
x64 off it raises a ValueError naming jax_enable_x64, where it would otherwise
compute in float32 with nothing but JAX's truncation warnings.

Data layout. A network whose first layer with a layout is a convolution, a pooling
or a BatchNorm over spatial axes takes **channels-last** input, as Flax users
write it: (batch, H, W, C) for a spec input (C, H, W), (batch, L, C) for (C, L)
(``flax_input_shape(spec)``). It stays channels-last up to its Flatten, which
flattens (H, W, C) rows; the Dense after it has its input columns permuted to
match (``layouts.flatten_columns_channels_last``). Every other network takes the
spec's own layout (sequences are (batch, T, features) in both). A layer that
would need channels-first data inside the channels-last part (a Dense or
LayerNorm on its last axis), a Flatten followed by anything but Activation or
Dropout before its Dense, or a channels-last output is refused (ValueError).

Layer by layer (torch layout -> Flax):

- Dense -> ``nnx.Linear``, kernel = weight.T (in, out).
- Conv1d/Conv2d -> ``nnx.Conv``, kernel (O, I/g, *k) -> (*k, I/g, O)
  (``transpose(2, 3, 1, 0)`` in 2-d); padding as explicit (before, after) pairs,
  torch's stride-1 "same" as 'SAME'; dilation ``kernel_dilation``; groups
  ``feature_group_count``.
- MaxPool/AvgPool -> ``functools.partial(nnx.max_pool | nnx.avg_pool, ...)`` with
  the strides explicit (Flax's default stride is 1, torch's the kernel) and
  symmetric padding pairs (max pads with -inf; avg keeps count_include_pad).
- BatchNorm -> ``nnx.BatchNorm(momentum=1 - m, use_fast_variance=False)``: Flax's
  momentum weighs the old running value; the two-pass variance (the default
  E[x^2] - E[x]^2 cancels); running statistics replaced by arrays in the spec's
  dtype (Flax creates them float32 whatever param_dtype); torch's
  num_batches_tracked kept as an extra BatchStat that Flax never updates. In
  training Flax updates the running variance with the **biased** batch variance,
  torch with the unbiased one (times n/(n-1), n the values per channel).
- LayerNorm, RMSNorm over the last ``dims`` axes s -> ``nnx.LayerNorm(
  use_fast_variance=False)``, ``nnx.RMSNorm`` with ``num_features = prod(s)``,
  ``reduction_axes = feature_axes = (-dims, ..., -1)`` and the scale and bias
  flattened row-major to (prod(s),) (Flax broadcasts them back to s); torch's eps
  (RMSNorm's None is finfo(dtype).eps).
- Dropout -> ``nnx.Dropout(rate=p)``; its masks come from Flax's random stream.
- Embedding -> ``nnx.Embed``. Flax has no padding_idx: the index is kept as an
  attribute for ``from_flax``, but Flax's gradient reaches that row.
- RNN/LSTM/GRU -> ``nnx.SimpleCell``/``nnx.LSTMCell``/``nnx.GRUCell`` under one
  ``nnx.RNN`` per stacked layer (``flax_modules.Recurrent``), both sides' Linear
  biased so torch's two biases stay two (``flax_cells``); GRU's update is Flax's
  (1 - z) n + z h, torch's n + z (h - n) rounded differently.
- MultiHeadAttention -> ``nnx.MultiHeadAttention`` (in, qkv and out features E)
  with ``attention_fn=flax_modules.attention_in_dtype`` (Flax's default runs the
  softmax in float32) and ``nnx.make_causal_mask`` when causal
  (``flax_modules.SelfAttention``). ``from_flax`` reads an attention_fn of these
  two only (any other function may compute anything).
- Activation -> the JAX backend's function (``jax.nn``'s where it is nnparity's).
- Flatten -> ``flax_modules.flatten``; Residual -> ``flax_modules.Residual``.

``from_flax(module, input_shape, **spec_fields)`` reads such a module (or the same
layers written by a user in an ``nnx.Sequential``) back: the spec (its other
fields from ``spec_fields``, its dtype from the parameters), params and model
state as NumPy arrays in torch's layout. ``from_flax(to_flax(...))`` is bitwise
the original. A user's layers are read as the function they compute in exact
arithmetic: a stock Flax cell's missing bias reads as zeros; a stock BatchNorm's
float32 running statistics are widened (exactly) to float64 parameters, and its
fast variance, like Flax's default attention function (``nnx.dot_product_attention``,
softmax in float32), reads as nnparity's layer (float64 softmax), which computes the
same function more accurately. Anything else is a ValueError naming the module (or
its option, e.g. another ``attention_fn``) and what is supported.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Sequence, cast

import numpy as np

from nnparity.backends.interop import layouts, require_framework
from nnparity.shared.core.init import check_model_state, check_network, check_params
from nnparity.shared.core.layers import Layer, Shape
from nnparity.shared.core.layers.norm import LayerNorm, RMSNorm
from nnparity.shared.core.layers.residual import Residual
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tree import Params
from nnparity.shared.core.validation import check_count, fail

#: kinds that need the spec's own layout (features on the last axis)
PLAIN = ("dense", "layer_norm", "rms_norm", "embedding", "rnn", "lstm", "gru",
         "multi_head_attention")
#: every kind ``to_flax`` exports
EXPORTED = (*layouts.SPATIAL_KINDS, *layouts.ELEMENTWISE_KINDS, *PLAIN, "flatten", "residual")
#: spec fields ``from_flax`` takes from the module, never from ``spec_fields``
FROM_MODULE = ("input_shape", "layers", "sizes", "activation", "activation_params", "dtype")


def flax_input_shape(spec: NetworkSpec) -> Shape:
    """One input row's shape as ``to_flax(spec, ...)``'s module takes it."""
    shape = spec.input_shape
    return (*shape[1:], shape[0]) if layouts.channels_last_input(shape, spec.layers) else shape


class _Walk:
    """The layout as the layers go: ``last`` (channels-last data) and ``pending``, the
    channels-first shape a Flatten flattened in channels-last order, until its Dense."""

    def __init__(self, last: bool):
        self.last = last
        self.pending: Shape | None = None

    def step(self, layer: Layer, shape: Shape, label: str) -> Shape | None:
        """Check ``layer`` (input ``shape``) against the layout; the Flatten's shape when
        it is the Dense that takes those columns."""
        kind, columns = layer.kind, None
        if self.pending is not None and kind not in (*layouts.ELEMENTWISE_KINDS, "dense"):
            fail(label, kind, "Activation, Dropout or Dense after a Flatten of channels-last "
                 "data (its features come in (*spatial, C) order, torch's in (C, *spatial) "
                 f"order of {self.pending}: only a Dense's columns can be permuted to match)")
        if kind == "dense":
            columns, self.pending = self.pending, None
        if kind == "flatten" and self.last:
            self.last, self.pending = False, shape
        elif kind in layouts.SPATIAL_KINDS and (kind != "batch_norm" or len(shape) >= 2):
            if not self.last:
                fail(label, kind, "a channels-first layer only where the Flax network is "
                     "channels-last: from its input up to its Flatten")
        elif kind in PLAIN and self.last:
            fail(label, kind, "a layer acting on the last axis only after the Flatten: in "
                 "the channels-last part that axis is C, in the spec's it is not")
        elif kind not in EXPORTED:
            fail(label, kind, "a layer kind to_flax exports: " + ", ".join(EXPORTED))
        return columns


def _plan(layers: Sequence[Layer], shapes: Sequence[Shape], walk: _Walk, label: str
          ) -> list[tuple[Layer, Shape, Shape | None, list]]:
    """(layer, input shape, Flatten shape for its columns or None, sub-plan) per layer."""
    steps: list[tuple[Layer, Shape, Shape | None, list]] = []
    for i, (layer, shape) in enumerate(zip(layers, shapes, strict=False)):
        where = f"{label}[{i}]"
        columns = walk.step(layer, shape, where)
        sub: list = []
        if isinstance(layer, Residual):
            sub = _plan(layer.sublayers(), layer.shapes(shape), walk, f"{where}.layers")
        steps.append((layer, shape, columns, sub))
    return steps


def plan(spec: NetworkSpec, label: str = "spec.layers") -> list[tuple[Layer, Shape,
                                                                        Shape | None, list]]:
    """Every layer of ``spec`` checked against the Flax network's layout."""
    walk = _Walk(layouts.channels_last_input(spec.input_shape, spec.layers))
    steps = _plan(spec.layers, spec.layer_input_shapes, walk, label)
    if walk.pending is not None or walk.last:
        fail(label, spec.layer_input_shapes[-1], "a network whose output is not "
             "channels-last data (a Flatten of channels-last data ends in a Dense)")
    return steps


def to_flax(spec: NetworkSpec, params: Params, model_state: Params | None = None) -> Any:
    """``spec`` with ``params`` (and ``model_state``, default the initial one) as a
    ``flax.nnx.Sequential`` in evaluation mode; see the module docstring."""
    params, model_state = check_network(spec, params, model_state)
    steps = plan(spec)
    require_framework("flax", "to_flax")
    import jax
    from flax import nnx

    from nnparity.backends.interop import flax_layers, flax_modules

    def build(steps: list, params: Sequence[dict], state: Sequence[dict], dtype: Any) -> list:
        built: list[Any] = []
        for (layer, shape, columns, sub), p, s in zip(steps, params, state, strict=True):
            if layer.kind == "residual":
                inner = build(sub, layer.split(p), layer.split(s), dtype)
                built.append(flax_modules.Residual(nnx.Sequential(*inner)))
            elif layer.kind == "flatten":
                built.append(flax_modules.flatten)
            else:
                if columns is not None:                         # after a channels-last Flatten
                    p = {**p, "weight": layouts.flatten_columns_channels_last(p["weight"],
                                                                              columns)}
                built.append(flax_layers.BUILD[layer.kind](layer, p, s, shape, dtype))
        return built

    x64 = jax.enable_x64(True) if spec.dtype == "float64" else contextlib.nullcontext()
    with x64:
        dtype = np.dtype(spec.dtype)
        model = flax_modules.Network(*build(steps, params, model_state, dtype),
                                     dtype=spec.dtype)
        model.eval()
    return model


def _read_all(elements: Sequence[Any], label: str) -> list[tuple[Layer, dict, dict]]:
    from nnparity.backends.interop import flax_modules, flax_read

    out: list[tuple[Layer, dict, dict]] = []
    for i, element in enumerate(elements):
        where = f"{label}[{i}]"
        if type(element) is flax_modules.Residual:
            inner = _read_all(list(element.layers.layers), f"{where}.layers.layers")
            residual = Residual(tuple(part[0] for part in inner))
            out.append((residual, residual.join([part[1] for part in inner]),
                        residual.join([part[2] for part in inner])))
            continue
        found = flax_read.read(element, where)
        if found is None:
            fail(where, getattr(element, "__name__", type(element).__name__),
                 "a Flax layer from_flax reads: nnx.Linear, Conv, BatchNorm, LayerNorm, "
                 "RMSNorm, Dropout, Embed, MultiHeadAttention, RNN over SimpleCell/LSTMCell/"
                 "GRUCell, nnx.max_pool/avg_pool (functools.partial), an activation of "
                 "nnparity.backends.jax.activations, or flax_modules' flatten, Residual, "
                 "Recurrent, SelfAttention")
        out.append(found)
    return out


def _dtype_of(read: list[tuple[Layer, dict, dict]]) -> str:
    dtypes = {a.dtype.name for _, p, _ in read for a in p.values()}
    if len(dtypes) != 1 or not dtypes <= {"float32", "float64"}:
        fail("module", sorted(dtypes), "parameters all float32 or all float64")
    return dtypes.pop()


def from_flax(module: Any, input_shape: Sequence[int], **spec_fields: Any
              ) -> tuple[NetworkSpec, Params, Params]:
    """(spec, params, model_state) of a Flax module (see the module docstring).

    Args:
        module: an ``nnx.Sequential`` of the layers ``to_flax`` writes, or one of them.
        input_shape: one input row's shape as ``module`` takes it (channels-last for a
            convolutional network: (H, W, C); the spec's is then (C, H, W)).
        spec_fields: the spec's other fields (loss, optimizer, batch_size, ...).
    """
    require_framework("flax", "from_flax")
    from flax import nnx
    if not isinstance(module, nnx.Module):
        fail("module", type(module).__name__, "a flax.nnx.Module", TypeError)
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        fail("input_shape", input_shape, "a tuple of sizes, e.g. (8, 8, 1)", TypeError)
    shape = tuple(check_count(f"input_shape[{i}]", n, 1, 2**24, "2**24")
                  for i, n in enumerate(input_shape))
    for name in FROM_MODULE:
        if name in spec_fields:
            fail(name, spec_fields[name], "no such argument: from_flax takes it from the "
                 "module", TypeError)
    from nnparity.backends.interop import flax_modules
    sequential = type(module) in (nnx.Sequential, flax_modules.Network)   # exactly these
    elements = list(cast(nnx.Sequential, module).layers) if sequential else [module]
    read = _read_all(elements, "module.layers" if sequential else "module")
    layers = tuple(layer for layer, _, _ in read)
    if layouts.channels_last_input(shape, layers):
        shape = (shape[-1], *shape[:-1])                        # the spec's (C, *spatial)
    dtype = _dtype_of(read)
    spec = NetworkSpec(input_shape=shape, layers=layers, dtype=dtype, **spec_fields)
    params, state = [], []
    for i, ((layer, p, s), (_, in_shape, columns, _)) in enumerate(
            zip(read, plan(spec, "module.layers"), strict=True)):
        if columns is not None:                                 # undo the Flatten's order
            p = {**p, "weight": layouts.flatten_columns_channels_first(p["weight"], columns)}
        p = _norms_unflattened(layer, p, in_shape)
        where = f"module.layers[{i}] ({type(elements[i]).__name__})"
        params.append(_in_order(p, layer.param_shapes(in_shape), dtype, where))
        state.append(_in_order(s, layer.buffer_shapes(in_shape), dtype, where))
    return spec, check_params(spec, params), check_model_state(spec, state)


def _norms_unflattened(layer: Layer, params: dict, input_shape: Shape) -> dict:
    """``params`` of ``layer`` (input ``input_shape``) with a norm's Flax scale and bias
    (prod(s),) reshaped to torch's s, the last ``dims`` axes of its input (row-major,
    as Flax broadcasts them); into a Residual's sub-layers. An array whose size is not
    prod(s) is left for ``_in_order`` to refuse."""
    if isinstance(layer, Residual):
        return layer.join([_norms_unflattened(sub, p, shape) for sub, p, shape in zip(
            layer.sublayers(), layer.split(params), layer.shapes(input_shape)[:-1],
            strict=True)])
    if not isinstance(layer, (LayerNorm, RMSNorm)):
        return params
    s = tuple(input_shape[-layer.dims:])
    return {name: a.reshape(s) if a.size == math.prod(s) else a for name, a in params.items()}


def _in_order(arrays: dict, shapes: dict, dtype: str, label: str) -> dict:
    """``arrays`` in the order of ``shapes``, each checked against its shape; a float32
    running statistic widened (exactly) to float64 parameters."""
    out = {}
    for name, shape in shapes.items():
        a = np.asarray(arrays[name])
        if a.shape != tuple(shape):
            fail(f"{label} {name}", a.shape, f"the shape {tuple(shape)} its "
                 "input gives (the input_shape and the layers before it)")
        if a.dtype != np.dtype(dtype) and not (a.dtype == np.float32 and dtype == "float64"):
            fail(f"{label} {name}.dtype", a.dtype.name, f"{dtype}, the parameters' dtype")
        out[name] = a.astype(dtype)
    return out
