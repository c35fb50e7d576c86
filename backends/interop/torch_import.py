"""torch.nn modules -> nnparity layer specs, one converter per supported module type
(``from_torch``'s part; torch is imported by the caller and handed in as ``nn``).

Modules are matched by exact type, never ``isinstance``: ``nn.ReLU6`` subclasses
``nn.Hardtanh`` (with min_val 0, max_val 6), and a user's subclass may change
``forward``. A converter checks every setting nnparity does not model and returns
(layer class, constructor arguments); ``layers`` builds the spec, so that an error
of nnparity's own checks (an ELU with alpha <= 0) names the module too.
"""
from __future__ import annotations

from typing import Any, Callable, NoReturn

from nnparity.backends.interop.torch_export import (ACTIVATION_MODULES, SOFTPLUS_ROUNDS_TO_X,
                                                  SOFTPLUS_THRESHOLDS)
from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.core.layers import LAYERS, Layer
from nnparity.shared.core.validation import fail

#: what ``from_torch`` takes, for its error messages
SUPPORTED = ("a torch.nn.Sequential of nn.Linear, nn.Flatten, nn.Identity, the activation "
             "modules (" + ", ".join(sorted({cls for cls, _ in ACTIVATION_MODULES.values()}))
             + "), nn.Conv1d/Conv2d, nn.MaxPool1d/2d, nn.AvgPool1d/2d, nn.BatchNorm1d/2d, "
             "nn.LayerNorm, nn.RMSNorm, nn.Dropout, nn.Embedding, nn.MultiheadAttention and "
             "nnparity.backends.interop.torch_modules' Residual, PaddedConv1d/2d, "
             "{RNN,LSTM,GRU}{Sequence,LastStep} and SelfAttention")

#: a converter's result: the layer spec's class and its constructor's arguments
Converted = tuple[Callable[..., Layer], dict[str, Any]]


def refuse(path: str, module: Any, allowed: str) -> NoReturn:
    """The ValueError for a module nnparity cannot express, naming its place and its repr
    (on one line: a container's spans several)."""
    fail(path, " ".join(repr(module).split()), f"{allowed}; from_torch takes {SUPPORTED}")


def need(condition: bool, path: str, module: Any, allowed: str) -> None:
    if not condition:
        refuse(path, module, allowed)


def need_settings(path: str, module: Any, settings: dict[str, tuple[Any, Any]]) -> None:
    """Refuse ``module`` unless every setting's (actual, required) values are equal,
    naming the settings that differ."""
    wrong = [f"{name}={actual!r}" for name, (actual, required) in settings.items()
             if actual != required]
    if wrong:
        required = ", ".join(f"{name}={value!r}" for name, (_, value) in settings.items())
        refuse(path, module, f"{required}, not {', '.join(wrong)}")


def need_size(actual: Any, expected: Any, what: str, path: str, module: Any,
              shape: tuple[int, ...]) -> None:
    need(actual == expected, path, module, f"{what}={expected!r}, from its input's shape "
         f"{shape} (batch axis left out)")


def ones(value: Any) -> int | Any:
    """1 for an int or a tuple of ints that is all ones (a pooling dilation), else the value."""
    return 1 if all(v == 1 for v in (value if isinstance(value, tuple) else (value,))) \
        else value


def activation(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    """The activation whose class and settings ``m`` has (nn.GELU's ``approximate``
    picks gelu or gelu_tanh); its parameters at their defaults are left unset."""
    cls = type(m).__name__
    names = [name for name, (c, _) in ACTIVATION_MODULES.items() if c == cls]
    for name in names:
        settings = ACTIVATION_MODULES[name][1]
        if all(getattr(m, key) == value for key, value in settings.items()):
            break
    else:
        refuse(path, m, " or ".join(f"nn.{cls}({', '.join(f'{k}={v!r}' for k, v in s.items())})"
                                   for _, (c, s) in ACTIVATION_MODULES.items() if c == cls))
    if name == "softplus":
        low, high = SOFTPLUS_THRESHOLDS[dtype]
        need(low <= m.threshold <= high, path, m,
             f"in {dtype}, nn.Softplus(threshold=t) with {low:g} <= t <= {high:g}: nnparity's "
             f"softplus has no threshold: torch returns x exactly above t, and the exact "
             f"value rounds to x from about {SOFTPLUS_ROUNDS_TO_X[dtype]:g} on, so nnparity "
             f"accepts t from {low:g}; below t torch computes log1p(e^x), which overflows "
             f"above {high:g})")
    defaults = ACTIVATIONS[name].defaults
    params = {key: float(getattr(m, key)) for key in defaults
              if float(getattr(m, key)) != defaults[key]}
    return LAYERS["activation"], {"name": name, "params": params}


def linear(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    need(m.bias is not None, path, m, "nn.Linear with bias=True (nnparity's Dense has a bias)")
    need_size(m.in_features, shape[-1], "in_features", path, m, shape)
    return LAYERS["dense"], {"units": m.out_features}


def flatten(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    need((m.start_dim, m.end_dim) == (1, -1), path, m,
         "nn.Flatten(start_dim=1, end_dim=-1): every axis after the batch axis")
    return LAYERS["flatten"], {}


def conv(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    """nn.Conv1d/Conv2d (padding an int per axis, "same" or "valid") and PaddedConv1d/2d
    ((before, after) per axis, the module's own padding 0)."""
    need(m.padding_mode == "zeros", path, m, "padding_mode='zeros' (nnparity pads with zeros)")
    need_size(m.in_channels, shape[0], "in_channels", path, m, shape)
    padding = m.padding
    if hasattr(m, "pads"):                                      # PaddedConv1d/2d
        need(all(p == 0 for p in m.padding), path, m, "padding=0 besides its pads")
        padding = m.pads
    kind = "conv1d" if len(m.kernel_size) == 1 else "conv2d"
    return LAYERS[kind], dict(out_channels=m.out_channels, kernel_size=m.kernel_size,
                              stride=m.stride, padding=padding, dilation=m.dilation,
                              groups=m.groups, bias=m.bias is not None)


def pool(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    args = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding)
    name = type(m).__name__
    if name.startswith("Max"):
        need_settings(path, m, {"ceil_mode": (m.ceil_mode, False),
                                "dilation": (ones(m.dilation), 1),
                                "return_indices": (m.return_indices, False)})
    else:
        need_settings(path, m, {"ceil_mode": (m.ceil_mode, False), "divisor_override": (
            getattr(m, "divisor_override", None), None)})
        args["count_include_pad"] = m.count_include_pad
    return LAYERS[name.lower().replace("pool", "_pool")], args


def batch_norm(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    need_settings(path, m, {"track_running_stats": (m.track_running_stats, True)})
    need(m.momentum is not None, path, m, "a momentum, not None (nnparity keeps running "
         "statistics with torch's momentum, not a cumulative average)")
    ranks = (3,) if type(m) is nn.BatchNorm2d else (1, 2)
    need(len(shape) in ranks, path, m, f"an input of {' or '.join(map(str, ranks))} axes "
         f"per sample (BatchNorm2d: (C, H, W); BatchNorm1d: (C,) or (C, L)), not {shape}")
    need_size(m.num_features, shape[0], "num_features", path, m, shape)
    return LAYERS["batch_norm"], dict(momentum=m.momentum, eps=m.eps, affine=m.affine)


def layer_norm(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    dims = len(m.normalized_shape)
    need_size(tuple(m.normalized_shape), shape[-dims:], "normalized_shape", path, m, shape)
    bias = m.bias is not None if m.elementwise_affine else True
    return LAYERS["layer_norm"], dict(dims=dims, eps=m.eps,
                                      elementwise_affine=m.elementwise_affine, bias=bias)


def rms_norm(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    dims = len(m.normalized_shape)
    need_size(tuple(m.normalized_shape), shape[-dims:], "normalized_shape", path, m, shape)
    return LAYERS["rms_norm"], dict(dims=dims, eps=m.eps,
                                    elementwise_affine=m.elementwise_affine)


def dropout(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    return LAYERS["dropout"], {"p": m.p}


def embedding(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    need_settings(path, m, {"max_norm": (m.max_norm, None),
                            "scale_grad_by_freq": (m.scale_grad_by_freq, False),
                            "sparse": (m.sparse, False)})
    return LAYERS["embedding"], dict(num_embeddings=m.num_embeddings,
                                     embedding_dim=m.embedding_dim, padding_idx=m.padding_idx)


def recurrent(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    """{RNN,LSTM,GRU}{Sequence,LastStep} (a plain nn.RNN/LSTM/GRU returns a tuple: which
    output it stands for is not known, so it is refused with ``plain_recurrent``)."""
    need_settings(path, m, {"batch_first": (m.batch_first, True),
                            "bidirectional": (m.bidirectional, False),
                            "dropout": (m.dropout, 0.0),
                            "proj_size": (getattr(m, "proj_size", 0), 0)})
    need_size(m.input_size, shape[-1], "input_size", path, m, shape)
    name = type(m).__name__
    kind = name.replace("Sequence", "").replace("LastStep", "").lower()
    args = dict(hidden_size=m.hidden_size, num_layers=m.num_layers, bias=m.bias,
                return_sequence=name.endswith("Sequence"))
    if kind == "rnn":
        args["nonlinearity"] = m.nonlinearity
    return LAYERS[kind], args


def plain_recurrent(m: Any, shape: tuple[int, ...], path: str, nn: Any,
                    dtype: str) -> Converted:
    name = type(m).__name__
    refuse(path, m, f"{name}Sequence or {name}LastStep (torch_modules) in place of nn.{name}, "
           "whose tuple (output, h_n) no next module takes")


def attention(m: Any, shape: tuple[int, ...], path: str, nn: Any, dtype: str) -> Converted:
    """SelfAttention (its ``causal``) or a plain nn.MultiheadAttention (causal=False:
    torch keeps no mask in the module)."""
    need_settings(path, m, {"batch_first": (m.batch_first, True),
                            "kdim": (m.kdim, m.embed_dim), "vdim": (m.vdim, m.embed_dim),
                            "add_bias_kv": (m.bias_k is not None, False),
                            "add_zero_attn": (m.add_zero_attn, False),
                            "dropout": (m.dropout, 0.0)})
    need_size(m.embed_dim, shape[-1], "embed_dim", path, m, shape)
    return LAYERS["multi_head_attention"], dict(num_heads=m.num_heads,
                                                causal=getattr(m, "causal", False),
                                                bias=m.in_proj_bias is not None)


def converters(nn: Any, torch_modules: Any) -> dict[type, Callable[..., Converted]]:
    """module type -> its converter (Residual's is ``layers`` itself, recursively)."""
    table: dict[type, Callable[..., Converted]] = {
        getattr(nn, cls): activation for cls, _ in ACTIVATION_MODULES.values()}
    table.update({nn.Linear: linear, nn.Flatten: flatten, nn.Conv1d: conv, nn.Conv2d: conv,
                  torch_modules.PaddedConv1d: conv, torch_modules.PaddedConv2d: conv,
                  nn.BatchNorm1d: batch_norm, nn.BatchNorm2d: batch_norm,
                  nn.LayerNorm: layer_norm, nn.RMSNorm: rms_norm, nn.Dropout: dropout,
                  nn.Embedding: embedding, nn.MultiheadAttention: attention,
                  torch_modules.SelfAttention: attention})
    table.update({getattr(nn, name): pool
                  for name in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d")})
    table.update({getattr(nn, name): plain_recurrent for name in ("RNN", "LSTM", "GRU")})
    table.update({getattr(torch_modules, f"{name}{output}"): recurrent
                  for name in ("RNN", "LSTM", "GRU") for output in ("Sequence", "LastStep")})
    return table


def layers(modules: Any, shape: tuple[int, ...], path: str, nn: Any, torch_modules: Any,
           dtype: str) -> list[Layer]:
    """The layer specs of ``modules`` (an nn.Sequential's children, ``path``[0], [1], ...)
    on inputs (batch, *shape), each checked against the shape its input has there."""
    table = converters(nn, torch_modules)
    out: list[Layer] = []
    for index, m in enumerate(modules):
        where = f"{path}[{index}]"
        cls: Callable[..., Layer]
        if type(m) is torch_modules.Residual:
            cls, args = LAYERS["residual"], {"layers": tuple(layers(
                m.layers, shape, f"{where}.layers", nn, torch_modules, dtype))}
        elif type(m) in table:
            cls, args = table[type(m)](m, shape, where, nn, dtype)
        else:
            refuse(where, m, f"a supported module, not {type(m).__module__}."
                   f"{type(m).__qualname__}")
        try:
            layer = cls(**args)
            layer.check_input(shape, f"its input shape {shape}")
        except (ValueError, TypeError) as exc:
            refuse(where, m, f"a module nnparity can express ({exc})")
        out.append(layer)
        shape = layer.output_shape(shape)
    return out
