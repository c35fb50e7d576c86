"""nnparity layer specs -> torch.nn modules, one builder per layer kind (``to_torch``'s
part; torch is imported by the caller and handed in as ``nn``).

Every builder takes (layer, input_shape, nn, factory, dtype): ``factory`` is torch's
``device``/``dtype`` keyword arguments (``to_torch`` builds on the "meta" device, so
no module draws its initial weights from torch's random stream, and loads every
tensor afterwards), ``dtype`` the spec's dtype name.
"""
from __future__ import annotations

from typing import Any, Callable

from nnparity.shared.core.layers import Activation, Layer

#: activation name -> (the torch.nn class, its settings that make it nnparity's function);
#: the activation's own parameters (negative_slope, alpha) are torch's attribute names.
#: nn.ReLU6 subclasses nn.Hardtanh, so modules are matched by exact type, never isinstance.
ACTIVATION_MODULES: dict[str, tuple[str, dict[str, Any]]] = {
    "identity": ("Identity", {}),
    "relu": ("ReLU", {}),
    "leaky_relu": ("LeakyReLU", {}),
    "elu": ("ELU", {}),
    "selu": ("SELU", {}),
    "celu": ("CELU", {}),
    "gelu": ("GELU", {"approximate": "none"}),
    "gelu_tanh": ("GELU", {"approximate": "tanh"}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softplus": ("Softplus", {"beta": 1.0}),          # and a threshold: SOFTPLUS_THRESHOLDS
    "silu": ("SiLU", {}),
    "mish": ("Mish", {}),
    "softsign": ("Softsign", {}),
    "relu6": ("ReLU6", {}),
    "hardtanh": ("Hardtanh", {"min_val": -1.0, "max_val": 1.0}),
    "hardsigmoid": ("Hardsigmoid", {}),
    "hardswish": ("Hardswish", {}),
}

#: dtype -> the thresholds of ``nn.Softplus`` that give nnparity's softplus, which has
#: none: above its threshold torch returns x exactly, and above the lower bound
#: log1p(e^-x) is below half an ulp of x, so the exact value rounds to x too; below its
#: threshold torch computes log1p(e^x), which overflows above the upper bound (e^x
#: beyond the dtype's largest number). torch's default threshold, 20, is exact in
#: float32 only: in float64 it moves softplus just above 20 by 2.0e-9 (1.0e-10 relative).
#: Measured: the exact value rounds to x from 33.3 on in float64, from 14.6 in float32.
SOFTPLUS_THRESHOLDS = {"float32": (20.0, 88.0), "float64": (40.0, 709.0)}
#: where the exact softplus rounds to x (measured, see above)
SOFTPLUS_ROUNDS_TO_X = {"float32": 14.6, "float64": 33.3}


def activation(layer: Activation, input_shape: tuple[int, ...], nn: Any, factory: dict,
               dtype: str) -> Any:
    """nn.ReLU(), nn.GELU(approximate="tanh"), nn.LeakyReLU(negative_slope), ..."""
    cls, settings = ACTIVATION_MODULES[layer.name]
    if layer.name == "softplus":
        settings = {**settings, "threshold": SOFTPLUS_THRESHOLDS[dtype][0]}
    return getattr(nn, cls)(**settings, **layer.kwargs)


def dense(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict, dtype: str) -> Any:
    return nn.Linear(input_shape[-1], layer.units, bias=True, **factory)


def flatten(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
            dtype: str) -> Any:
    return nn.Flatten()


def conv(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict, dtype: str) -> Any:
    """nn.Conv1d/Conv2d; with a (before, after) pair on some axis, PaddedConv1d/2d."""
    from nnparity.backends.interop import torch_modules

    spatial = len(layer.kernel_size)
    common = dict(stride=layer.stride, dilation=layer.dilation, groups=layer.groups,
                  bias=layer.bias, **factory)
    if layer.padding != "same" and isinstance(layer.padding[0], tuple):
        padded = torch_modules.PaddedConv1d if spatial == 1 else torch_modules.PaddedConv2d
        return padded(input_shape[0], layer.out_channels, layer.kernel_size, layer.padding,
                      **common)
    cls = nn.Conv1d if spatial == 1 else nn.Conv2d
    return cls(input_shape[0], layer.out_channels, layer.kernel_size, padding=layer.padding,
               padding_mode="zeros", **common)


def pool(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict, dtype: str) -> Any:
    """nn.MaxPool1d/2d, nn.AvgPool1d/2d: torch's defaults otherwise (ceil_mode=False);
    a size that is the same on every axis as one int, as torch users write it."""
    cls = getattr(nn, type(layer).__name__)                     # MaxPool2d -> nn.MaxPool2d

    def one(sizes: tuple[int, ...]) -> int | tuple[int, ...]:
        return sizes[0] if len(set(sizes)) == 1 else sizes

    args = dict(kernel_size=one(layer.kernel_size), stride=one(layer.strides),
                padding=one(layer.padding))
    if layer.kind.startswith("avg"):
        args["count_include_pad"] = layer.count_include_pad
    return cls(**args)


def batch_norm(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
               dtype: str) -> Any:
    """nn.BatchNorm1d on (C,) and (C, L), nn.BatchNorm2d on (C, H, W): the same momentum
    convention (new = (1 - momentum) * old + momentum * batch statistic)."""
    cls = nn.BatchNorm2d if len(input_shape) == 3 else nn.BatchNorm1d
    return cls(input_shape[0], eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
               track_running_stats=True, **factory)


def layer_norm(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
               dtype: str) -> Any:
    return nn.LayerNorm(input_shape[-layer.dims:], eps=layer.eps,
                        elementwise_affine=layer.elementwise_affine, bias=layer.bias,
                        **factory)


def rms_norm(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
             dtype: str) -> Any:
    """nn.RMSNorm with our eps: None in both means finfo(dtype).eps (torch resolves it
    from the input's dtype, which is the spec's)."""
    return nn.RMSNorm(input_shape[-layer.dims:], eps=layer.eps,
                      elementwise_affine=layer.elementwise_affine, **factory)


def dropout(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
            dtype: str) -> Any:
    return nn.Dropout(layer.p)


def embedding(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
              dtype: str) -> Any:
    return nn.Embedding(layer.num_embeddings, layer.embedding_dim,
                        padding_idx=layer.padding_idx, **factory)


def recurrent(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
              dtype: str) -> Any:
    """RNN/LSTM/GRU as ``{RNN,LSTM,GRU}{Sequence,LastStep}``, batch_first=True."""
    from nnparity.backends.interop import torch_modules

    name = type(layer).__name__ + ("Sequence" if layer.return_sequence else "LastStep")
    extra = {"nonlinearity": layer.nonlinearity} if layer.kind == "rnn" else {}
    return getattr(torch_modules, name)(input_shape[-1], layer.hidden_size,
                                        num_layers=layer.num_layers, bias=layer.bias,
                                        batch_first=True, **extra, **factory)


def attention(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
              dtype: str) -> Any:
    from nnparity.backends.interop import torch_modules

    return torch_modules.SelfAttention(input_shape[-1], layer.num_heads, causal=layer.causal,
                                       bias=layer.bias, batch_first=True, **factory)


def residual(layer: Any, input_shape: tuple[int, ...], nn: Any, factory: dict,
             dtype: str) -> Any:
    from nnparity.backends.interop import torch_modules

    return torch_modules.Residual(*(module(sub, shape, nn, factory, dtype) for sub, shape in
                                    zip(layer.layers, layer.shapes(input_shape), strict=False)))


#: layer kind -> its builder
BUILDERS: dict[str, Callable[..., Any]] = {
    "dense": dense, "activation": activation, "flatten": flatten,
    "conv1d": conv, "conv2d": conv,
    "max_pool1d": pool, "max_pool2d": pool, "avg_pool1d": pool, "avg_pool2d": pool,
    "batch_norm": batch_norm, "layer_norm": layer_norm, "rms_norm": rms_norm,
    "dropout": dropout, "embedding": embedding,
    "rnn": recurrent, "lstm": recurrent, "gru": recurrent,
    "multi_head_attention": attention, "residual": residual,
}


def module(layer: Layer, input_shape: tuple[int, ...], nn: Any, factory: dict,
           dtype: str) -> Any:
    """The torch.nn module of ``layer`` on inputs (batch, *input_shape)."""
    return BUILDERS[layer.kind](layer, input_shape, nn, factory, dtype)
