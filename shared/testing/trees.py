"""Trees for the testing assertions: their leaves as NumPy arrays, named by path.

A tree is a leaf or a container of trees: dicts (any ``Mapping``), lists and
tuples (a NamedTuple is a tuple). A list and a tuple count as the same kind of
container (torch returns tuples where JAX code builds lists); a mapping and a
sequence do not. A leaf is a NumPy array or scalar, a Python bool, int or float,
a torch tensor or a JAX array; torch and JAX are recognised by the module of the
leaf's type and never imported here. A leaf becomes a copy as a NumPy array, of
dtype float32 or float64 (native byte order), an integer or bool; anything else
(float16, bfloat16, complex, strings, objects, other containers) is refused
naming the leaf.

A leaf's path is the tuple of keys and indices leading to it; its default name
shows the path, the top-level key bare: ``layers[0]['weight']``, ``[2]`` in a
top-level list, ``state.buffers`` for a NamedTuple's field, ``value`` for a tree
that is a single leaf.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnparity.shared.core.validation import PLAIN_ARRAYS, dtype_name, fail

Path = tuple[Any, ...]
#: what a leaf may be, for error messages
LEAVES = ("a NumPy array or scalar, a Python bool, int or float, a torch tensor or a JAX "
          "array, inside dicts, lists and tuples (convert other containers first, e.g. "
          "flax's nnx.State with nnx.to_pure_dict(state))")
#: what a leaf's dtype may be, for error messages
DTYPES = ("float32 or float64 in native byte order (judged by the tolerance policy), or an "
          "integer or bool dtype (compared exactly); convert other dtypes explicitly")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: how deep containers may nest (a list that holds itself would never end)
MAX_DEPTH = 100


class Field(int):
    """A NamedTuple's element in a path: equal to its index (so a NamedTuple and a
    plain tuple or list match), shown as ``.name``."""

    name: str

    def __new__(cls, index: int, name: str) -> Field:
        field = super().__new__(cls, index)
        field.name = name
        return field


def index_text(path: Path) -> str:
    """``path`` as Python indexing: ``['layers'][0]['weight']``, ``.buffers`` for a
    NamedTuple's field."""
    return "".join(f".{key.name}" if isinstance(key, Field) else f"[{key!r}]"
                   for key in path)


def path_name(path: Path) -> str:
    """A leaf's default name: its path, a top-level string key or field bare
    (``layers[0]['weight']``, ``buffers['exp_avg'][0]``); ``value`` for the root."""
    if not path:
        return "value"
    if isinstance(path[0], (str, Field)):
        return (path[0].name if isinstance(path[0], Field) else path[0]) + index_text(path[1:])
    return index_text(path)


def kind(node: Any) -> str:
    """ "mapping", "sequence" or "leaf"."""
    if isinstance(node, Mapping):
        return "mapping"
    if isinstance(node, (list, tuple)):
        return "sequence"
    return "leaf"


def flatten(tree: Any, root: str) -> tuple[dict[Path, np.ndarray], dict[Path, str]]:
    """The leaves of ``tree`` as arrays by path, in order (mappings in their own key
    order), and every node's kind by path (see ``kind``). ``root`` names the tree in
    errors (``expected``, ``step_a's output at step 3``)."""
    leaves: dict[Path, np.ndarray] = {}
    nodes: dict[Path, str] = {}
    pending: list[tuple[Path, Any]] = [((), tree)]
    while pending:
        path, node = pending.pop()
        nodes[path] = kind(node)
        if len(path) > MAX_DEPTH and nodes[path] != "leaf":
            fail(root + index_text(path[:3]) + "...", f"a container {MAX_DEPTH} levels deep",
                 f"a tree nested at most {MAX_DEPTH} levels deep (does a container hold "
                 f"itself?)")
        if nodes[path] == "mapping":
            children = [(path + (key,), node[key]) for key in node]
        elif nodes[path] == "sequence":
            keys = [Field(i, f) for i, f in enumerate(node._fields)] if hasattr(
                node, "_fields") else range(len(node))
            children = [(path + (key,), child) for key, child in zip(keys, node, strict=True)]
        else:
            leaves[path] = as_array(node, root + index_text(path))
            continue
        pending.extend(reversed(children))             # depth first, in order
    return leaves, nodes


def as_array(value: Any, name: str) -> np.ndarray:
    """A leaf as a NumPy array (a copy), or a TypeError naming ``name``."""
    module = type(value).__module__ or ""
    if isinstance(value, np.ndarray):
        if type(value) not in PLAIN_ARRAYS:
            fail(name, f"{type(value).__name__} of shape {value.shape}",
                 "a plain np.ndarray: masked arrays and np.matrix mean something else "
                 "(use np.asarray(x), or x.filled(value) for a masked array)", TypeError)
        array = np.array(value)
    elif isinstance(value, (bool, int, float, np.generic)):
        array = np.array(value)
    elif module.startswith(("torch", "jax", "jaxlib")):
        try:
            if module.startswith("torch"):
                array = np.array(value.detach().cpu().numpy())
            else:
                array = np.array(value)
        except Exception as exc:           # bfloat16 in torch, a tracer inside jit, ...
            fail(name, value, f"{LEAVES}; converting this one to NumPy failed: {exc}",
                 TypeError)
    else:
        fail(name, value, LEAVES, TypeError)
    if not (array.dtype in _FLOATS or array.dtype.kind in "iub") or not array.dtype.isnative:
        fail(f"{name}.dtype", dtype_name(array.dtype), DTYPES, TypeError)
    return array


def dtype_class(array: np.ndarray) -> str:
    """The dtype as the comparison sees it: "float32", "float64", "integer" or "bool"."""
    if array.dtype.kind == "f":
        return array.dtype.name
    return "bool" if array.dtype.kind == "b" else "integer"


def leaf_names(paths: Sequence[Path], names: Any) -> list[str]:
    """The names the messages give the leaves at ``paths`` (``expected``'s, in order).

    ``names`` is None (the default names, ``path_name``), a sequence of strings with
    one name per leaf in that order, or a mapping from default names to new names
    (leaves it leaves out keep their default name). Names must be unique non-empty
    strings."""
    defaults = [path_name(p) for p in paths]
    if names is None:
        return defaults
    if isinstance(names, Mapping):
        unknown = [key for key in names if key not in defaults]
        if unknown:
            listed = ", ".join(defaults[:10]) + (" ..." if len(defaults) > 10 else "")
            fail("names", unknown[0], f"keys that name a leaf of expected by its path "
                 f"({listed})")
        chosen = [names.get(d, d) for d in defaults]
    elif isinstance(names, Sequence) and not isinstance(names, (str, bytes)):
        if len(names) != len(defaults):
            fail("names", names, f"{len(defaults)} names, one per leaf of expected in order "
                 f"(got {len(names)})")
        chosen = list(names)
    else:
        fail("names", names, "None, a sequence of leaf names or a mapping from leaf paths "
             "to names", TypeError)
    for given in chosen:
        if not isinstance(given, str) or not given:
            fail("names", given, "non-empty strings as names", TypeError)
    repeated = sorted({n for n in chosen if chosen.count(n) > 1})
    if repeated:
        fail("names", repeated[0], "each name once (it names more than one leaf)")
    return chosen


def structure_problems(actual: dict[Path, np.ndarray], actual_nodes: dict[Path, str],
                       expected: dict[Path, np.ndarray], expected_nodes: dict[Path, str],
                       mixed_floats: bool) -> list[str]:
    """How the structure of ``actual`` differs from ``expected``'s, one line per
    difference (none below a node already reported): a missing or unexpected key or
    element, another kind of node, another shape, another dtype. Float widths may
    differ only when ``mixed_floats``."""
    problems: list[str] = []
    reported: list[Path] = []

    def below_reported(path: Path) -> bool:
        return any(path[:len(r)] == r for r in reported)

    def report(path: Path, text: str) -> None:
        problems.append(f"{path_name(path)}: {text}")
        reported.append(path)

    for path, node in expected_nodes.items():
        if below_reported(path):
            continue
        if path not in actual_nodes:
            report(path, "missing in actual")
        elif actual_nodes[path] != node:
            report(path, f"actual is a {actual_nodes[path]}, expected a {node}")
        elif node == "leaf":
            a, e = actual[path], expected[path]
            if a.shape != e.shape:
                report(path, f"shape {a.shape} against the expected {e.shape}")
            elif dtype_class(a) != dtype_class(e) and not (
                    mixed_floats and a.dtype.kind == e.dtype.kind == "f"):
                report(path, f"dtype {a.dtype.name} against the expected {e.dtype.name}")
    for path in actual_nodes:
        if path not in expected_nodes and not below_reported(path):
            report(path, "in actual, not in expected")
    return problems
