"""Parameter trees: one dict of arrays per layer, named the way torch names them.

``params[i]`` holds layer i's tensors (``{"weight": (out, in), "bias": (out,)}``
for Dense, ``{}`` for a parameter-free layer). The model state (non-trainable
buffers such as running statistics) is a tree of the same form, and so is
every optimizer buffer (shaped like the parameters).

The flat view uses ``torch.nn.Sequential``'s state-dict keys: ``"0.weight"``,
``"0.bias"``, ``"2.weight"``, ... (layer index, then name), in layer order.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from nnparity.shared.core.validation import (check_float_array, check_shape, dtype_name, fail,
                                             plain_layout)

Tree = list[dict[str, Any]]
#: a tree of NumPy arrays: params, model state, or one optimizer buffer
Params = list[dict[str, np.ndarray]]
ShapeTree = Sequence[Mapping[str, tuple[int, ...]]]
T = TypeVar("T")


def leaves(tree: Sequence[Mapping[str, T]]) -> list[T]:
    """The tensors of ``tree`` in order: layer by layer, each layer's in its own order."""
    return [value for layer in tree for value in layer.values()]


def named_leaves(tree: Sequence[Mapping[str, T]]) -> Iterator[tuple[str, T]]:
    """("0.weight", tensor), ("0.bias", tensor), ... in order."""
    for index, layer in enumerate(tree):
        for name, value in layer.items():
            yield f"{index}.{name}", value


def to_flat(tree: Sequence[Mapping[str, T]]) -> dict[str, T]:
    """{"0.weight": ..., "0.bias": ..., "2.weight": ...}: torch's ``nn.Sequential``
    state-dict keys (the same arrays, not copies)."""
    return dict(named_leaves(tree))


def from_flat(flat: Mapping[str, T], shapes: ShapeTree, name: str = "flat") -> list[dict[str, T]]:
    """Inverse of ``to_flat``: the tree shaped like ``shapes`` (e.g. ``spec.param_shapes``)
    from exactly its flat names (the same objects, not copies)."""
    if not isinstance(flat, Mapping):
        fail(name, flat, "a mapping of flat names ('0.weight', ...) to arrays", TypeError)
    expected = flat_names(shapes)
    if list(flat) != expected and sorted(flat, key=str) != sorted(expected):
        missing = [k for k in expected if k not in flat]
        extra = sorted((k for k in flat if k not in expected), key=str)
        fail(f"{name} keys", sorted(flat, key=str),
             f"exactly {expected} (missing {missing}, unexpected {extra})")
    return [{key: flat[f"{index}.{key}"] for key in layer} for index, layer in enumerate(shapes)]


def flat_names(shapes: ShapeTree) -> list[str]:
    """The flat names of a tree shaped like ``shapes``, in order."""
    return [f"{index}.{key}" for index, layer in enumerate(shapes) for key in layer]


def map_tree(f: Callable[[Any], Any], tree: Sequence[Mapping[str, Any]]
             ) -> list[dict[str, Any]]:
    """The same tree with f applied to every tensor."""
    return [{key: f(value) for key, value in layer.items()} for layer in tree]


def copy_tree(tree: Sequence[Mapping[str, np.ndarray]]) -> Params:
    """A copy of a tree of arrays; an array subclass stays that subclass
    (``nnparity.shared.parity.rounding`` runs the NumPy step on one)."""
    return [{key: np.array(value, subok=True) for key, value in layer.items()} for layer in tree]


def zeros_like_tree(tree: Sequence[Mapping[str, np.ndarray]]) -> Params:
    return [{key: np.zeros_like(value) for key, value in layer.items()} for layer in tree]


def check_tree(tree: Any, shapes: ShapeTree, dtype: str, name: str = "params") -> Params:
    """Check that ``tree`` has one dict per layer with exactly the names and shapes of
    ``shapes``, every array a finite float array of ``dtype``.

    Returns plain C-contiguous, aligned, writeable arrays: the same arrays when
    they are, copies otherwise (negative strides, slices, read-only memory maps),
    so that every framework can take them as they are."""
    if not isinstance(tree, (list, tuple)) or len(tree) != len(shapes):
        fail(name, tree, f"a list of {len(shapes)} dicts of arrays, one per layer "
             f"(names {flat_names(shapes) or 'none'})", TypeError)
    checked = []
    for index, (layer, layer_shapes) in enumerate(zip(tree, shapes, strict=True)):
        if not isinstance(layer, Mapping):
            fail(f"{name}[{index}]", layer,
                 f"a dict with keys {sorted(layer_shapes)}", TypeError)
        if set(layer) != set(layer_shapes):
            fail(f"{name}[{index}] keys", sorted(layer, key=str),
                 f"exactly {list(layer_shapes)}")
        entry = {}
        for key, shape in layer_shapes.items():
            label = f"{name}[{index}][{key!r}]"
            array = layer[key]
            check_float_array(label, array, len(shape))
            check_shape(label, array, shape)
            if array.dtype != np.dtype(dtype):          # native byte order only
                fail(f"{label}.dtype", dtype_name(array.dtype), f"the spec's dtype {dtype}",
                     TypeError)
            entry[key] = plain_layout(array)
        checked.append(entry)
    return checked


def in_order(tree: Sequence[Mapping[str, T]], shapes: ShapeTree) -> list[dict[str, T]]:
    """``tree`` with each layer's entries in the order of ``shapes`` (JAX returns
    dicts with sorted keys; the flat names follow the spec's order)."""
    return [{key: layer[key] for key in layer_shapes}
            for layer, layer_shapes in zip(tree, shapes, strict=True)]
