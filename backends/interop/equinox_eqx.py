"""Export to Equinox: an nnparity network as an ``equinox.Module``, written as Equinox
users write one, with the trained weights and running statistics in place.

``to_equinox(spec, params, model_state)`` returns a ``Network``: ``layers``, an
``eqx.nn.Sequential`` that maps ONE sample (Equinox's layers are unbatched), and
``state``, the ``eqx.nn.State`` holding BatchNorm's statistics. Calling the network on
a batch ``x`` (batch, *input_shape) runs ``jax.vmap`` over the batch in inference mode
and returns (batch, *output_shape), nnparity's ``predict``. The data layout is
nnparity's (torch's, channels first): Equinox's convolutions and pools take (C, *s).

Layer by layer (parameters keep torch's layout, so nothing is transposed):

- Dense: ``eqx.nn.Linear`` (weight (out, in), bias (out,)), vmapped over any leading
  per-sample axes (a sequence's positions).
- Activation: ``eqx.nn.Lambda`` of the JAX backend's function (nnparity's formulas:
  ``jax.nn.gelu`` alone would be the tanh approximation).
- Flatten: ``eqx.nn.Lambda(jnp.ravel)``, C order, as torch's Flatten of (C, *s).
- Conv1d/Conv2d: ``eqx.nn.Conv1d``/``Conv2d``, OIHW weight as it is, explicit padding
  pairs (torch's "same" included), bias reshaped to (O, 1[, 1]).
- MaxPool/AvgPool: ``eqx.nn.MaxPool*``/``AvgPool*``; Equinox's average always divides
  by the kernel size, so ``count_include_pad=False`` with padding is refused.
- BatchNorm: ``eqx.nn.BatchNorm(mode="batch", inference=True)``, momentum 1 - m (Equinox
  weighs the old value, torch the batch). Its inference divides the running
  statistics by 1 - momentum**count (a zero-debiased average); the count is set to
  ``SETTLED_COUNT``, where that factor is exactly 1, so inference uses nnparity's
  statistics as they are and further training in Equinox updates the mean as torch
  does (the variance with Equinox's biased batch variance).
- LayerNorm/RMSNorm: ``eqx.nn.LayerNorm``/``RMSNorm`` on the last ``dims`` axes
  (RMSNorm without Equinox's default bias; eps None resolved to finfo(dtype).eps).
- Dropout: ``eqx.nn.Dropout(p, inference=True)``. Embedding: ``eqx.nn.Embedding``,
  vmapped over the tokens (Equinox has no padding_idx: the row is exported as it is).
- RNN/LSTM/GRU: ``Recurrent``, a ``lax.scan`` over time per stacked layer of
  ``eqx.nn.LSTMCell``/``GRUCell`` (or ``ElmanCell`` for RNN, which Equinox lacks),
  with one bias: LSTM b_ih + b_hh; GRU (b_ir + b_hr, b_iz + b_hz, b_in) and
  ``bias_n`` = b_hn, Equinox's reset-after form, exact up to where the sum rounds.
- MultiHeadAttention: ``SelfAttention`` around ``eqx.nn.MultiheadAttention`` (q, k, v
  and output Linear layers cut from torch's packed in_proj), a lower-triangular mask
  (True = attend) when causal. Its softmax runs in the input's dtype.
- Residual: ``Residual``, x + f(x) over an ``eqx.nn.Sequential``, stateful.

float64: everything is built inside ``jax.enable_x64(True)`` with ``dtype=float64``
(Equinox's default dtype follows the x64 flag when a layer is built, and
``jnp.asarray`` of float64 data without x64 silently gives float32); call the network
inside ``jax.enable_x64(True)`` too: called with x64 off, a float64 network would
compute in float32 without a word (measured 1.7e-7 from nnparity), so it raises.
"""
from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace
from typing import Any

import numpy as np

from nnparity.shared.core.init import check_network
from nnparity.shared.core.layers import Layer, Shape
from nnparity.shared.core.layers.batch_norm import BatchNorm
from nnparity.shared.core.layers.pool import AvgPool1d, AvgPool2d
from nnparity.shared.core.spec import NetworkSpec, walk_layers
from nnparity.shared.core.tree import Params
from nnparity.shared.core.validation import fail

from . import layouts, require_framework, require_x64

#: BatchNorm's step count in the exported state: momentum**count is exactly 0 in both
#: float dtypes for every momentum the exporter accepts, so 1 - momentum**count is 1;
#: 2**30 leaves 2**30 more steps before an int32 count overflows
SETTLED_COUNT = 2**30

#: the kinds ``to_equinox`` exports
SUPPORTED = ("dense", "activation", "flatten", "conv1d", "conv2d", "max_pool1d", "max_pool2d",
             "avg_pool1d", "avg_pool2d", "batch_norm", "layer_norm", "rms_norm", "dropout",
             "embedding", "rnn", "lstm", "gru", "multi_head_attention", "residual")


def to_equinox(spec: NetworkSpec, params: Params, model_state: Params | None = None) -> Any:
    """The network as an ``equinox.Module`` (``Network``): ``network(x)`` for x (batch,
    *input_shape) is ``predict(spec, params, x, model_state=model_state)`` (eval mode).

    Args:
        spec: the network.
        params: its parameters, one dict per layer, torch's names and layouts.
        model_state: BatchNorm's running statistics (default: the initial ones).

    Raises ``ValueError`` before building anything when a layer cannot be exported (its
    kind, or a setting Equinox has no equivalent for), naming it.
    """
    eqx = require_framework("equinox", "to_equinox")
    params, model_state = check_network(spec, params, model_state)
    for label, layer in walk_layers(spec.layers):
        check_exportable(layer, label)
    import jax
    import jax.numpy as jnp
    with jax.enable_x64(spec.dtype == "float64"):
        build = _Builder(_modules(), jnp.dtype(spec.dtype))
        layers = eqx.nn.Sequential([build.layer(layer, shape, p, s) for layer, shape, p, s in zip(
            spec.layers, spec.layer_input_shapes, params, model_state, strict=False)])
        state = eqx.nn.State(layers)
        for norm, (mean, var) in build.statistics:             # each eqx.nn.BatchNorm
            state = state.set(norm.batch_counter, jnp.asarray(SETTLED_COUNT))  # weakly typed
            state = state.set(norm.batch_state_index, (mean, var))
        network = _modules().Network(layers, state, spec.dtype)
    unset = [leaf for leaf in jax.tree.leaves(network) if isinstance(leaf, jax.ShapeDtypeStruct)]
    assert not unset, f"to_equinox left {len(unset)} arrays unset: {unset}"
    return network


def check_exportable(layer: Layer, label: str) -> None:
    """Raise ``ValueError`` naming ``label`` unless ``to_equinox`` can export ``layer``."""
    if layer.kind not in SUPPORTED:
        fail(f"{label}.kind", layer.kind, f"a kind to_equinox exports: {', '.join(SUPPORTED)}")
    if isinstance(layer, (AvgPool1d, AvgPool2d)) and not layer.count_include_pad \
            and any(layer.padding):
        fail(f"{label}.count_include_pad", False, "True, or padding 0: Equinox's AvgPool "
             "divides every window by the kernel size, padding included")
    if isinstance(layer, BatchNorm):
        keep = layouts.momentum_of_old_value(layer.momentum)     # Equinox's momentum
        if keep != 0.0 and keep ** SETTLED_COUNT != 0.0:
            fail(f"{label}.momentum", layer.momentum, "above about 7e-7: Equinox's "
                 "BatchNorm divides its statistics by 1 - (1 - momentum)**count, which is "
                 "0 for momentum 0, and not 1 at the count 2**30 below about 7e-7")


@functools.cache
def _modules() -> SimpleNamespace:
    """The Equinox modules this exporter defines (Equinox imported on first use)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from jax import lax

    class Network(eqx.Module):
        """x (batch, *input_shape) -> (batch, *output_shape), eval mode: ``layers`` (one
        sample) vmapped over the batch, named "batch" for BatchNorm, with ``state``."""

        layers: eqx.nn.Sequential
        state: eqx.nn.State
        dtype: str = eqx.field(static=True)

        def __call__(self, x, *, key=None):
            require_x64(self.dtype)
            run = jax.vmap(self.layers, axis_name="batch", in_axes=(0, None),
                           out_axes=(0, None))
            return run(x, self.state)[0]                        # (batch, *output_shape)

    class OnLastAxes(eqx.Module):
        """``layer`` on the trailing axes of one sample, vmapped over the ``leading``
        axes before them (a Dense or a LayerNorm on each position of a sequence)."""

        layer: Any
        leading: int = eqx.field(static=True)

        def __call__(self, x, *, key=None):
            f = self.layer
            for _ in range(self.leading):
                f = jax.vmap(f)
            return f(x)

    class ElmanCell(eqx.Module):
        """torch's RNN cell, h' = act(W_ih x + W_hh h + b), b = b_ih + b_hh (Equinox has
        LSTMCell and GRUCell only)."""

        weight_ih: jax.Array
        weight_hh: jax.Array
        bias: jax.Array | None
        nonlinearity: str = eqx.field(static=True)

        def __call__(self, x, h, *, key=None):
            a = self.weight_ih @ x + self.weight_hh @ h          # (H,)
            if self.bias is not None:
                a = a + self.bias
            return jnp.tanh(a) if self.nonlinearity == "tanh" else jax.nn.relu(a)

    class Recurrent(eqx.Module):
        """x (T, I) -> (T, H), or (H,) the last step: each stacked cell scanned over time
        from a zero state, reading the previous one's h sequence."""

        cells: tuple
        lstm: bool = eqx.field(static=True)
        return_sequence: bool = eqx.field(static=True)

        def __call__(self, xs, *, key=None):
            for cell in self.cells:
                h0 = jnp.zeros(cell.weight_hh.shape[1], xs.dtype)   # (H,)
                carry = (h0, h0) if self.lstm else h0

                def step(carry, x_t, cell=cell):
                    carry = cell(x_t, carry)
                    return carry, carry[0] if self.lstm else carry

                _, xs = lax.scan(step, carry, xs)                # (T, H)
            return xs if self.return_sequence else xs[-1]

    class SelfAttention(eqx.Module):
        """x (T, E) -> (T, E): ``attention(x, x, x)``, masked to s <= t when causal."""

        attention: eqx.nn.MultiheadAttention
        causal: bool = eqx.field(static=True)

        def __call__(self, x, *, key=None):
            length = x.shape[0]
            mask = jnp.tril(jnp.ones((length, length), bool)) if self.causal else None
            return self.attention(x, x, x, mask=mask)

    class Residual(eqx.nn.StatefulLayer):
        """x -> x + layers(x), passing the state through (a BatchNorm inside)."""

        layers: eqx.nn.Sequential

        def __call__(self, x, state, *, key=None):
            y, state = self.layers(x, state)
            return x + y, state

    return SimpleNamespace(eqx=eqx, jax=jax, jnp=jnp, Network=Network, OnLastAxes=OnLastAxes,
                           ElmanCell=ElmanCell, Recurrent=Recurrent,
                           SelfAttention=SelfAttention, Residual=Residual)


class _Builder:
    """Builds each layer's Equinox module in ``dtype`` from nnparity's parameters, and
    collects BatchNorm's statistics (``statistics``) for the state."""

    def __init__(self, m: SimpleNamespace, dtype: Any) -> None:
        self.m, self.eqx, self.jnp, self.dtype = m, m.eqx, m.jnp, dtype
        self.key = m.jax.random.PRNGKey(0)
        self.statistics: list[tuple[Any, tuple[Any, Any]]] = []

    def array(self, value: np.ndarray) -> Any:
        return self.jnp.asarray(value, self.dtype)

    def shaped(self, cls: Any, *args: Any, **kwargs: Any) -> Any:
        """``cls(*args, **kwargs, dtype, key)`` with shapes for arrays (nothing drawn or
        computed: Equinox's random init, overwritten anyway, costs a compilation per
        shape); ``with_arrays`` then gives it nnparity's."""
        if "key" in inspect.signature(cls).parameters:       # the norms draw nothing
            kwargs["key"] = self.key
        return self.eqx.filter_eval_shape(cls, *args, **kwargs, dtype=self.dtype)

    def with_arrays(self, module: Any, values: dict[str, np.ndarray]) -> Any:
        """``module`` with its attributes ``values`` (e.g. weight, bias) replaced."""
        names = list(values)
        return self.eqx.tree_at(lambda mod: [getattr(mod, n) for n in names], module,
                                [self.array(values[n]) for n in names])

    def layer(self, layer: Layer, shape: Shape, p: dict, s: dict) -> Any:
        """``layer``'s Equinox module (the method named by its kind builds it)."""
        return getattr(self, layer.kind)(layer, shape, p, s)

    def dense(self, layer, shape, p, s):
        nn = self.eqx.nn
        linear = self.with_arrays(self.shaped(nn.Linear, shape[-1], layer.units), p)
        return self.on_last(linear, len(shape) - 1)

    def on_last(self, module, leading):
        return self.m.OnLastAxes(module, leading) if leading else module

    def activation(self, layer, shape, p, s):
        from nnparity.backends.jax.activations import ACTIVATIONS
        return self.eqx.nn.Lambda(functools.partial(ACTIVATIONS[layer.name], **layer.kwargs))

    def flatten(self, layer, shape, p, s):
        return self.eqx.nn.Lambda(self.jnp.ravel)

    def conv(self, layer, shape, p, s):
        conv = self.shaped(self.eqx.nn.Conv, layer.spatial, shape[0], layer.out_channels,
                           layer.kernel_size, layer.stride, layer.pads, layer.dilation,
                           layer.groups, layer.bias)
        values = {"weight": p["weight"]}                         # (O, I/groups, *k)
        if layer.bias:
            values["bias"] = p["bias"].reshape(-1, *(1,) * layer.spatial)   # (O, 1[, 1])
        return self.with_arrays(conv, values)

    conv1d = conv2d = conv

    def pool(self, layer, shape, p, s):
        name = ("MaxPool" if layer.kind.startswith("max") else "AvgPool") + f"{layer.ndim}d"
        return getattr(self.eqx.nn, name)(layer.kernel_size, layer.stride, layer.padding)

    max_pool1d = max_pool2d = avg_pool1d = avg_pool2d = pool

    def batch_norm(self, layer, shape, p, s):
        bn = self.eqx.nn.BatchNorm(shape[0], "batch", eps=layer.eps,
                                   channelwise_affine=layer.affine,
                                   momentum=layouts.momentum_of_old_value(layer.momentum),
                                   inference=True,
                                   dtype=self.dtype, mode="batch")
        bn = self.with_arrays(bn, p) if layer.affine else bn
        self.statistics.append((bn, (self.array(s["running_mean"]),
                                     self.array(s["running_var"]))))
        return bn

    def layer_norm(self, layer, shape, p, s):
        norm = self.shaped(self.eqx.nn.LayerNorm, shape[-layer.dims:], eps=layer.eps,
                           use_weight="weight" in p, use_bias="bias" in p)
        return self.on_last(self.with_arrays(norm, p), len(shape) - layer.dims)

    def rms_norm(self, layer, shape, p, s):
        norm = self.shaped(self.eqx.nn.RMSNorm, shape[-layer.dims:],
                           eps=layer.eps_for(self.dtype), use_weight="weight" in p,
                           use_bias=False)
        return self.on_last(self.with_arrays(norm, p), len(shape) - layer.dims)

    def dropout(self, layer, shape, p, s):
        return self.eqx.nn.Dropout(layer.p, inference=True)

    def embedding(self, layer, shape, p, s):
        table = self.shaped(self.eqx.nn.Embedding, layer.num_embeddings, layer.embedding_dim)
        return self.on_last(self.with_arrays(table, p), len(shape))

    def recurrent(self, layer, shape, p, s):
        nn, cells = self.eqx.nn, []
        for k in range(layer.num_layers):
            inputs = shape[-1] if k == 0 else layer.hidden_size
            w = {"weight_ih": p[f"weight_ih_l{k}"], "weight_hh": p[f"weight_hh_l{k}"]}
            b_ih, b_hh = p.get(f"bias_ih_l{k}"), p.get(f"bias_hh_l{k}")
            if layer.kind == "gru":
                cell = self.shaped(nn.GRUCell, inputs, layer.hidden_size, use_bias=layer.bias)
                if layer.bias:
                    hidden = layer.hidden_size
                    w["bias"] = np.concatenate([b_ih[:2 * hidden] + b_hh[:2 * hidden],
                                                b_ih[2 * hidden:]])     # (3H,) r, z, n
                    w["bias_n"] = b_hh[2 * hidden:]                     # (H,) inside r * (.)
            elif layer.kind == "lstm":
                cell = self.shaped(nn.LSTMCell, inputs, layer.hidden_size, use_bias=layer.bias)
                if layer.bias:
                    w["bias"] = b_ih + b_hh                             # (4H,) i, f, g, o
            else:
                cell = self.m.ElmanCell(self.array(w.pop("weight_ih")),
                                        self.array(w.pop("weight_hh")),
                                        None if b_ih is None else self.array(b_ih + b_hh),
                                        layer.nonlinearity)
            cells.append(self.with_arrays(cell, w) if w else cell)
        return self.m.Recurrent(tuple(cells), layer.kind == "lstm", layer.return_sequence)

    rnn = lstm = gru = recurrent

    def multi_head_attention(self, layer, shape, p, s):
        embed = shape[-1]
        mha = self.shaped(self.eqx.nn.MultiheadAttention, layer.num_heads, embed,
                          use_query_bias=layer.bias, use_key_bias=layer.bias,
                          use_value_bias=layer.bias, use_output_bias=layer.bias)
        weights = np.split(p["in_proj_weight"], 3)                      # 3 x (E, E)
        biases = np.split(p["in_proj_bias"], 3) if layer.bias else [None] * 3
        for name, w, b in zip(("query_proj", "key_proj", "value_proj"), weights, biases,
                              strict=True):
            values = {"weight": w} if b is None else {"weight": w, "bias": b}
            mha = self.eqx.tree_at(lambda a, name=name: getattr(a, name), mha,
                                   self.with_arrays(getattr(mha, name), values))
        out = {"weight": p["out_proj.weight"]}
        if layer.bias:
            out["bias"] = p["out_proj.bias"]
        mha = self.eqx.tree_at(lambda a: a.output_proj, mha,
                               self.with_arrays(mha.output_proj, out))
        return self.m.SelfAttention(mha, layer.causal)

    def residual(self, layer, shape, p, s):
        parts_p, parts_s = layer.split(p), layer.split(s)
        sub = [self.layer(sublayer, sub_shape, sp, ss) for sublayer, sub_shape, sp, ss in zip(
            layer.layers, layer.shapes(shape), parts_p, parts_s, strict=False)]
        return self.m.Residual(self.eqx.nn.Sequential(sub))
