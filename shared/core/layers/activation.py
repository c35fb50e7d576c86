"""Activation: an elementwise function from ``nnparity.shared.core.activations``."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from nnparity.shared.core.activations import ACTIVATIONS, check_activation_params
from nnparity.shared.core.layers.base import Layer
from nnparity.shared.core.validation import check_choice, fail


@dataclass(frozen=True)
class Activation(Layer):
    """(batch, ...) -> (batch, ...): f applied elementwise; no parameters.

    ``params`` sets the activation's parameters (e.g. ``{"negative_slope": 0.1}``
    for leaky_relu); unset ones keep their defaults. Stored as sorted (name,
    value) pairs, so the layer is hashable (JAX compiles with it as a constant).
    """

    name: str
    params: tuple[tuple[str, float], ...] = ()
    kind: ClassVar[str] = "activation"

    if TYPE_CHECKING:   # the constructor also takes a mapping; __post_init__ sorts it to pairs
        def __init__(self, name: str, params: Mapping[str, float]
                     | tuple[tuple[str, float], ...] = ()) -> None: ...

    def __post_init__(self) -> None:
        check_choice("activation", self.name, ACTIVATIONS)
        params: Any = self.params
        if isinstance(params, tuple) and all(isinstance(p, tuple) and len(p) == 2
                                             and isinstance(p[0], str) for p in params):
            params = dict(params)
        if not isinstance(params, Mapping):
            fail(f"Activation({self.name!r}).params", self.params,
                 "a mapping of parameter names to numbers", TypeError)
        checked = check_activation_params(self.name, params,
                                          f"Activation({self.name!r}).params")
        object.__setattr__(self, "params", tuple(sorted(checked.items())))

    @cached_property
    def kwargs(self) -> dict[str, float]:
        """Every parameter of the function, defaults filled in (computed once: the
        training loops read it every step; not a field, so not in eq or hash)."""
        return {**ACTIVATIONS[self.name].defaults, **dict(self.params)}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.params:
            d["params"] = dict(self.params)
        return d
