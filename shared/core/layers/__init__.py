"""Layer specs: one module per layer kind (or per family of kinds).

A layer kind is a frozen dataclass subclassing ``Layer`` (``base.py``) with a
``kind`` name. ``LAYERS`` finds every kind defined in this package's modules
(all but ``base`` and names starting with ``_``), so adding a kind adds a file
and edits none. Each backend has one module per kind, named by the kind, in
``nnparity.backends.<framework>.layers``.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import MISSING, fields
from typing import Any, Mapping

from nnparity.shared.core.layers.activation import Activation
from nnparity.shared.core.layers.base import Layer, Shape
from nnparity.shared.core.layers.dense import Dense
from nnparity.shared.core.validation import fail


def _discover() -> dict[str, type[Layer]]:
    """kind -> class, for every Layer subclass defined in this package's modules."""
    kinds: dict[str, type[Layer]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Layer)
                    and value.__module__ == module.__name__):
                assert value.kind not in kinds, f"two layer kinds named {value.kind!r}"
                kinds[value.kind] = value
    return kinds


#: kind -> layer spec class
LAYERS: dict[str, type[Layer]] = _discover()


def layer_from_dict(d: Any, label: str = "layer") -> Layer:
    """Inverse of ``layer.to_dict()``."""
    if not isinstance(d, Mapping) or not isinstance(d.get("kind"), str):
        fail(label, d, "a mapping with a 'kind' key, e.g. {'kind': 'dense', 'units': 4}",
             TypeError)
    kind = d["kind"]
    if kind not in LAYERS:
        fail(f"{label}.kind", kind, f"one of {', '.join(map(repr, LAYERS))}")
    cls = LAYERS[kind]
    kwargs = {k: v for k, v in d.items() if k != "kind"}
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(kwargs) - set(allowed), key=str)
    if unknown:
        fail(f"{label}[{unknown[0]!r}]", kwargs[unknown[0]],
             f"fields of {cls.__name__}: {', '.join(allowed)}")
    missing = [f.name for f in fields(cls)
               if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        fail(label, dict(d), f"a {kind!r} layer with its field {missing[0]!r} "
             f"(fields of {cls.__name__}: {', '.join(allowed)})", TypeError)
    return cls(**kwargs)


__all__ = ["LAYERS", "Activation", "Dense", "Layer", "Shape", "layer_from_dict"]
