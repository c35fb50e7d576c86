"""Layer specs: one module per layer kind.

A layer kind is a frozen dataclass subclassing ``Layer`` (``base.py``) and
registered in ``LAYERS`` here. Each backend has one module per kind, in
``nnparity.backends.<framework>.layers``, under the same name.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Mapping

from nnparity.shared.core.layers.activation import Activation
from nnparity.shared.core.layers.base import Layer, Shape
from nnparity.shared.core.layers.dense import Dense
from nnparity.shared.core.validation import fail

#: kind -> layer spec class
LAYERS: dict[str, type[Layer]] = {cls.kind: cls for cls in (Dense, Activation)}


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
