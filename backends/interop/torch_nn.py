"""An nnparity network as a ``torch.nn.Sequential``, and a Sequential back as a spec.

``to_torch(spec, params, model_state)`` builds the network the way torch users write
it (``nn.Linear``, ``nn.Conv2d``, ``nn.GELU(approximate="tanh")``, ``nn.BatchNorm2d``,
...) in the spec's dtype and loads every tensor with ``load_state_dict(strict=True)``
under nnparity's flat names, which are the Sequential's state-dict keys. Where a
torch module cannot sit in a Sequential as it is (recurrent layers and attention
return tuples, attention takes (q, k, v, mask), torch's convolutions take no
asymmetric padding, torch has no residual module), a small subclass in
``torch_modules`` adapts its ``forward`` and keeps torch's state-dict names.

``from_torch(module, input_shape, **spec_fields)`` is the inverse for a Sequential
of those modules: the spec, the parameters and the model state, NumPy copies.

The per-kind conversions are ``torch_export`` (spec -> modules) and
``torch_import`` (modules -> spec).
"""
from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from nnparity.backends.interop import require_framework
from nnparity.shared.core.init import check_model_state, check_network, check_params
from nnparity.shared.core.layers import Dense
from nnparity.shared.core.layers.flatten import Flatten
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tree import Params, flat_names, from_flat, named_leaves
from nnparity.shared.core.validation import fail

if TYPE_CHECKING:
    import torch

#: NetworkSpec fields that come from the module itself, never from ``spec_fields``
FROM_MODULE = ("input_shape", "layers", "dtype", "sizes", "activation", "activation_params")
#: the buffer torch keeps as an int64 count, and nnparity in the spec's float dtype
BATCH_COUNT = "num_batches_tracked"


def to_torch(spec: NetworkSpec, params: Params, model_state: Params | None = None
             ) -> "torch.nn.Sequential":
    """The network of ``spec`` as a ``torch.nn.Sequential`` in ``spec.dtype`` holding
    ``params`` and ``model_state`` (None: the initial state, as ``predict``).

    Its state-dict keys are nnparity's flat names (``to_flat``): "0.weight",
    "3.in_proj_weight", "2.layers.1.weight". Modules per kind: Dense -> nn.Linear;
    Activation -> its torch.nn module (see ``torch_export.ACTIVATION_MODULES``;
    softplus -> nn.Softplus with a threshold that changes no value in the dtype);
    Flatten -> nn.Flatten; Conv1d/2d -> nn.Conv1d/2d, or ``PaddedConv1d/2d`` for a
    (before, after) padding; pools -> nn.MaxPool/AvgPool 1d/2d; BatchNorm ->
    nn.BatchNorm1d ((C,), (C, L)) or nn.BatchNorm2d ((C, H, W)); LayerNorm, RMSNorm
    (our eps; None means finfo(dtype).eps in both), Dropout, Embedding -> the same
    torch modules; RNN/LSTM/GRU -> ``{RNN,LSTM,GRU}{Sequence,LastStep}``
    (batch_first=True); MultiHeadAttention -> ``SelfAttention`` (batch_first=True,
    ``causal``); Residual -> ``Residual`` (x + layers(x)).

    The module is returned in training mode, as torch builds modules: call ``.eval()``
    for ``predict``'s outputs (BatchNorm's running statistics, Dropout off). Building
    it draws nothing from torch's random stream.

    Raises (before any work): TypeError/ValueError for a spec, params or model state
    that ``predict`` refuses, or a batch count that is not a whole number >= 0.
    """
    params, model_state = check_network(spec, params, model_state)
    for name, value in named_leaves(model_state):
        if name.rsplit(".", 1)[-1] == BATCH_COUNT and not (
                0 <= value < 2.0**63 and value == np.floor(value)):
            fail(f"model_state {name!r}", float(value), "a whole number in [0, 2**63) (torch "
                 "keeps the batch count as an int64; load_state_dict would truncate 1.5 to 1)")
    torch = require_framework("torch", "to_torch")
    from nnparity.backends.interop import torch_export

    factory = {"device": "meta", "dtype": getattr(torch, spec.dtype)}
    model = torch.nn.Sequential(*(torch_export.module(layer, shape, torch.nn, factory,
                                                      spec.dtype)
                                  for layer, shape in zip(spec.layers, spec.layer_input_shapes,
                                                          strict=False)))
    model.to_empty(device="cpu")                  # storage for every tensor, then filled
    expected = model.state_dict()
    tensors = {}
    for name, value in [*named_leaves(params), *named_leaves(model_state)]:
        if name.rsplit(".", 1)[-1] == BATCH_COUNT:
            tensors[name] = torch.tensor(int(value), dtype=torch.int64)
        else:
            tensors[name] = torch.from_numpy(value)
        assert tensors[name].dtype == expected[name].dtype, name     # nothing cast on load
    model.load_state_dict(tensors, strict=True)
    return model


def from_torch(module: "torch.nn.Module", input_shape: tuple[int, ...], **spec_fields: Any
               ) -> tuple[NetworkSpec, Params, Params]:
    """(spec, params, model_state) of ``module``, an ``nn.Sequential`` of the modules
    ``to_torch`` builds, on inputs (batch, *input_shape).

    The spec's layers come from the modules, its dtype from their tensors (float32 or
    float64, one for all); its other fields (loss, optimizer, epochs, batch_size,
    seed, init, ...) from ``spec_fields``, NetworkSpec's defaults otherwise. Params
    and model state are NumPy copies; BatchNorm's int64 batch count becomes the
    spec's float dtype (exactly: at most 2**24 in float32).

    Conventions: a plain ``nn.MultiheadAttention`` (it cannot run in a Sequential,
    but its weights can be read) imports as ``causal=False``, since torch keeps no
    mask in the module; ``SelfAttention`` carries ``causal``. Activation parameters
    at their defaults import as unset. ``nn.LayerNorm(elementwise_affine=False)``
    imports with ``bias=True``: torch does not keep its ``bias`` argument then.

    Raises ValueError naming the module (its place, e.g. ``module[3].layers[1]``,
    and repr) and what is supported, for a module nnparity does not express
    (``nn.Transformer``, a plain ``nn.GRU``, ...), a setting it does not model
    (padding_mode="reflect", track_running_stats=False, bidirectional=True,
    kdim != embed_dim, ...), sizes that do not fit ``input_shape``, or tensors of
    mixed or non-float dtypes; and for ``spec_fields`` that the module gives.
    """
    torch = require_framework("torch", "from_torch")
    from nnparity.backends.interop import torch_import, torch_modules

    if type(module) is not torch.nn.Sequential:
        fail("module", module, "a torch.nn.Sequential (from_torch reads its modules in "
             "order)")
    names = [f.name for f in fields(NetworkSpec)]
    for key, value in spec_fields.items():
        if key not in names:
            fail(f"spec_fields[{key!r}]", value, f"NetworkSpec fields: {', '.join(names)}",
                 TypeError)
        if key in FROM_MODULE:
            fail(f"spec_fields[{key!r}]", value, "a field the module does not give (it "
                 f"gives {', '.join(FROM_MODULE)})")
    # NetworkSpec's own check of an input shape (Flatten and Dense take any shape)
    shape = NetworkSpec(input_shape=input_shape, layers=(Flatten(), Dense(1))).input_shape
    state = module.state_dict()
    dtype = module_dtype(state, torch)
    layers = torch_import.layers(module, shape, "module", torch.nn, torch_modules, dtype)
    spec = NetworkSpec(input_shape=shape, layers=tuple(layers), dtype=dtype, **spec_fields)
    expected = flat_names(spec.param_shapes) + flat_names(spec.buffer_shapes)
    if sorted(state) != sorted(expected):
        fail("module.state_dict() keys", sorted(state), f"exactly {expected}")
    params = from_flat(arrays(state, spec.param_shapes, dtype), spec.param_shapes,
                       "module.state_dict() parameters")
    model_state = from_flat(arrays(state, spec.buffer_shapes, dtype), spec.buffer_shapes,
                            "module.state_dict() buffers")
    return spec, check_params(spec, params), check_model_state(spec, model_state)


def module_dtype(state: dict[str, Any], torch: Any) -> str:
    """The one float dtype ("float32" or "float64") of a state dict's tensors (the
    int64 batch counts aside)."""
    allowed = {torch.float32: "float32", torch.float64: "float64"}
    found: dict[str, str] = {}
    for name, tensor in state.items():
        if name.rsplit(".", 1)[-1] == BATCH_COUNT and tensor.dtype == torch.int64:
            continue
        if tensor.dtype not in allowed or tensor.device.type == "meta":
            fail(f"module.state_dict()[{name!r}]", f"{tensor.dtype} on {tensor.device}",
                 "float32 or float64 tensors holding values (nnparity's dtypes)")
        found[name] = allowed[tensor.dtype]
    if not found:
        fail("module", "no parameters", "a module with parameters (their dtype is the spec's)")
    if len(set(found.values())) > 1:
        fail("module.state_dict() dtypes", found, "one float dtype for every tensor")
    return next(iter(found.values()))


def arrays(state: dict[str, Any], shapes: Any, dtype: str) -> dict[str, np.ndarray]:
    """NumPy copies of the tensors named as ``shapes`` (a spec's param or buffer shapes),
    each batch count as an exact ``dtype`` number."""
    out = {}
    for index, layer in enumerate(shapes):
        for key in layer:
            name = f"{index}.{key}"
            tensor = state[name].detach().cpu()
            if key.rsplit(".", 1)[-1] == BATCH_COUNT:
                count = int(tensor)
                out[name] = np.asarray(count, dtype=dtype)
                if int(out[name]) != count:
                    fail(f"module.state_dict()[{name!r}]", count,
                         f"a batch count exact in {dtype} (float32: at most 2**24)")
            else:
                out[name] = tensor.numpy().copy()
    return out
