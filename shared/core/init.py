"""Initial parameters, drawn once in NumPy so that every backend starts equal.

One ``np.random.RandomState(spec.seed)`` serves the whole network, layer by
layer from the first. W has shape (out, in); every bias starts at zero.

- ``uniform_fan_in``: W = rand(out, in) / in, i.e. U[0, 1/in). For the notebook
  this is ``rand(4, 2) / 2`` then ``rand(1, 4) / 4``.
- ``zeros``: W = 0 (draws nothing).
- ``xavier_uniform``: W = (2 rand(out, in) - 1) * a, a = sqrt(6 / (in + out)),
  i.e. U[-a, a) (Glorot & Bengio).
- ``he_normal``: W = randn(out, in) * sqrt(2 / in), i.e. N(0, 2/in) (He et al.).
"""
from __future__ import annotations

import numpy as np

from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.validation import check_float_array, check_shape, dtype_name, fail, plain_layout

Params = list[tuple[np.ndarray, np.ndarray]]


def tensors(pairs) -> list:
    """[(W0, b0), (W1, b1), ...] -> [W0, b0, W1, b1, ...]: the same arrays (or tensors)."""
    return [array for pair in pairs for array in pair]


def _draw(rule: str, rng: np.random.RandomState, n_out: int, n_in: int) -> np.ndarray:
    if rule == "uniform_fan_in":
        return rng.rand(n_out, n_in) / n_in
    if rule == "zeros":
        return np.zeros((n_out, n_in))
    if rule == "xavier_uniform":
        return (2.0 * rng.rand(n_out, n_in) - 1.0) * np.sqrt(6.0 / (n_in + n_out))
    if rule == "he_normal":
        return rng.randn(n_out, n_in) * np.sqrt(2.0 / n_in)
    raise AssertionError(f"unhandled init rule {rule!r}")  # NetworkSpec validates the name


def init_params(spec: NetworkSpec) -> Params:
    """[(W (out, in), b (out,)), ...] for every layer, in ``spec.dtype``."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    rng = np.random.RandomState(spec.seed)
    params = []
    for n_in, n_out in zip(spec.sizes[:-1], spec.sizes[1:], strict=True):
        w = _draw(spec.init, rng, n_out, n_in).astype(spec.dtype)  # (out, in)
        b = np.zeros(n_out, dtype=spec.dtype)                        # (out,)
        params.append((w, b))
    return params


def check_params(spec: NetworkSpec, params, name: str = "params") -> Params:
    """Check that ``params`` (or an optimizer buffer shaped like them, called
    ``name`` in errors) has the layers, shapes and dtype ``spec`` asks for.

    Returns them as plain C-contiguous, aligned, writeable arrays: the same
    arrays when they are, copies otherwise (negative strides, slices, read-only
    memory maps), so that every framework can take them as they are."""
    shapes = spec.param_shapes
    if not isinstance(params, (list, tuple)) or len(params) != len(shapes):
        fail(name, params, f"a list of {len(shapes)} (W, b) pairs", TypeError)
    for layer, (pair, (w_shape, b_shape)) in enumerate(zip(params, shapes, strict=True)):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            fail(f"{name}[{layer}]", pair, "a (W, b) pair", TypeError)
        for part, array, shape in (("W", pair[0], w_shape), ("b", pair[1], b_shape)):
            label = f"{name}[{layer}].{part}"
            check_float_array(label, array, len(shape))
            check_shape(label, array, shape)
            if array.dtype != np.dtype(spec.dtype):          # native byte order only
                fail(f"{label}.dtype", dtype_name(array.dtype), f"the spec's dtype {spec.dtype}",
                     TypeError)
    return [(plain_layout(w), plain_layout(b)) for w, b in params]
