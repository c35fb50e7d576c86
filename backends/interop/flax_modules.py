"""The few pieces of an exported Flax network that Flax has no module for: the
network itself (an ``nnx.Sequential`` that refuses to run a float64 network with
JAX's x64 off), a Flatten, a residual block, a stack of recurrent layers, causal
self-attention, and an attention function whose softmax runs in the input's dtype;
and the helpers that move arrays into and out of Flax variables.

Imports flax at the top: ``flax_nnx`` imports this module only inside its
functions, after ``require_framework`` has found flax.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights

from nnparity.backends.interop import require_x64


#: the initializer of every Flax weight that is replaced right after the module is
#: built: a constant, so building draws nothing random. A default initializer's draw
#: (variance scaling, orthogonal) has JAX compile its random programs, seconds on a
#: first call in a process, for values thrown away.
PLACEHOLDER = nnx.initializers.zeros


def param(array: np.ndarray) -> nnx.Param:
    """A Flax parameter holding ``array``, its dtype kept."""
    return nnx.Param(jnp.asarray(array))


def numpy_of(variable: Any) -> np.ndarray:
    """A Flax variable's value as a NumPy array (a copy)."""
    return np.array(variable[...])


def linear(kernel: np.ndarray, bias: np.ndarray | None, dtype: Any) -> nnx.Linear:
    """``nnx.Linear`` holding ``kernel`` (in, out) and ``bias`` (out,), or no bias."""
    layer = nnx.Linear(kernel.shape[0], kernel.shape[1], use_bias=bias is not None,
                       kernel_init=PLACEHOLDER, dtype=dtype, param_dtype=dtype,
                       rngs=nnx.Rngs(0))
    layer.kernel = param(kernel)
    if bias is not None:
        layer.bias = param(bias)
    return layer


def linear_arrays(layer: nnx.Linear) -> tuple[np.ndarray, np.ndarray | None]:
    """An ``nnx.Linear``'s (kernel (in, out), bias (out,) or None)."""
    return numpy_of(layer.kernel), None if layer.bias is None else numpy_of(layer.bias)


def flatten(x: jax.Array) -> jax.Array:
    """(batch, *s) -> (batch, prod(s)), row-major: a channels-last (batch, H, W, C)
    flattens in (H, W, C) order, so the next Dense's columns are permuted
    (``layouts.flatten_columns_channels_last``)."""
    return x.reshape(x.shape[0], -1)                          # (batch, prod(s))


def attention_in_dtype(query: jax.Array, key: jax.Array, value: jax.Array,
                       bias: jax.Array | None = None, mask: jax.Array | None = None,
                       **kwargs: Any) -> jax.Array:
    """``nnx.MultiHeadAttention``'s ``attention_fn`` with the softmax in the inputs'
    dtype: q, k, v (batch, T, heads, d) -> (batch, T, heads, d).

    Flax's default, ``nnx.dot_product_attention``, hands the work to
    ``jax.nn.dot_product_attention`` whenever it records no weights and has no
    dropout, and that function runs its softmax in float32 even for float64
    inputs. Flax's ``dot_product_attention_weights`` keeps the dtype; the weighted
    sum of the values is then one einsum."""
    weights = dot_product_attention_weights(                    # (batch, heads, T, T)
        query, key, bias, mask, dtype=kwargs.get("dtype"), precision=kwargs.get("precision"),
        is_causal=kwargs.get("is_causal", False))
    return jnp.einsum("...hqk,...khd->...qhd", weights, value,   # (batch, T, heads, d)
                      precision=kwargs.get("precision"))


class Network(nnx.Sequential):
    """``nnx.Sequential`` of the exported layers, (batch, *input) -> (batch, *output),
    that refuses (ValueError) to run when ``dtype`` is "float64" and JAX's x64 is off:
    there ``jnp.asarray`` of float64 data gives float32, and the network would compute
    in float32 with nothing but JAX's truncation warnings."""

    def __init__(self, *layers: Any, dtype: str):
        super().__init__(*layers)
        self.dtype = dtype

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        require_x64(self.dtype)
        return super().__call__(*args, **kwargs)


class Residual(nnx.Module):
    """x + f(x), f the sub-layers in ``layers`` (an ``nnx.Sequential``)."""

    def __init__(self, layers: nnx.Sequential):
        self.layers = layers

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.layers(x)


class Recurrent(nnx.Module):
    """Stacked ``nnx.RNN`` layers over (batch, T, I), batch first: each reads the
    previous one's hidden sequence; the output is the last one's sequence
    (batch, T, H), or its last step (batch, H) when not ``return_sequence``."""

    def __init__(self, layers: list[nnx.RNN], return_sequence: bool):
        self.layers = nnx.List(layers)
        self.return_sequence = return_sequence

    def __call__(self, x: jax.Array) -> jax.Array:
        for rnn in self.layers:
            x = rnn(x)                                        # (batch, T, H)
        return x if self.return_sequence else x[:, -1]        # (batch, H)


class SelfAttention(nnx.Module):
    """``nnx.MultiHeadAttention`` on (batch, T, E) as self-attention, with
    ``nnx.make_causal_mask`` when ``causal`` (position t attends to s <= t)."""

    def __init__(self, attention: nnx.MultiHeadAttention, causal: bool):
        self.attention = attention
        self.causal = causal

    def __call__(self, x: jax.Array) -> jax.Array:
        mask = nnx.make_causal_mask(x[..., 0]) if self.causal else None  # (batch, 1, T, T)
        return self.attention(x, mask=mask, decode=False)       # (batch, T, E)
