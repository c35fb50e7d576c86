"""Residual: x + f(x) for a sub-stack of layers, the skip connection of a
transformer block or a ResNet."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape
from nnparity.shared.core.validation import fail

#: the most layers one Residual holds
MAX_SUBLAYERS = 64


@dataclass(frozen=True)
class Residual(Layer):
    """(batch, *s) -> (batch, *s): y = x + f(x), f the layers of ``layers`` applied
    in order, whose output must have the input's shape. A pre-LN transformer
    block is two of them::

        Residual((LayerNorm(), MultiHeadAttention(2, causal=True)))
        Residual((LayerNorm(), Dense(4 * E), Activation("gelu"), Dense(E)))

    torch has no residual module; the names here are those of a module holding
    an ``nn.Sequential`` as ``layers``: sub-layer j's parameter ``weight`` is
    ``layers.{j}.weight`` (flat, in the network: ``"3.layers.0.weight"``), and
    so is its model state (``layers.0.running_mean``). The sub-layers draw their
    initial parameters in order, as the network's layers do.

    Backward: dL/dx = dL/dy + the sub-stack's backward of dL/dy (the skip adds
    its identity Jacobian). A sub-layer cannot draw randomness (Dropout: put it
    outside the Residual, or in the next version) or take tokens (Embedding).
    """

    layers: tuple[Layer, ...]
    kind: ClassVar[str] = "residual"

    def __post_init__(self) -> None:
        from nnparity.shared.core.layers import layer_from_dict   # the registry imports this

        layers = self.layers
        if isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, (list, tuple)):
            fail("Residual.layers", layers, "a tuple of layer specs such as (LayerNorm(), "
                 "Dense(4))", TypeError)
        if not 1 <= len(layers) <= MAX_SUBLAYERS:
            fail("Residual.layers", f"{len(layers)} layers", f"1 to {MAX_SUBLAYERS} layers")
        converted = []
        for j, layer in enumerate(layers):
            label = f"Residual.layers[{j}]"
            if isinstance(layer, Mapping):                          # from JSON
                layer = layer_from_dict(layer, label)
            if not isinstance(layer, Layer):
                fail(label, layer, "a layer spec such as Dense(4)", TypeError)
            if layer.random or layer.takes_tokens:
                fail(label, layer, "a layer that neither draws randomness (Dropout) nor takes "
                     "tokens (Embedding): put it outside the Residual")
            converted.append(layer)
        object.__setattr__(self, "layers", tuple(converted))

    def sublayers(self) -> tuple[Layer, ...]:
        return self.layers

    def shapes(self, input_shape: Shape) -> list[Shape]:
        """The input shape of each sub-layer, then the sub-stack's output shape."""
        shapes = [input_shape]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
        return shapes

    def check_input(self, input_shape: Shape, label: str) -> None:
        shape = input_shape
        for j, layer in enumerate(self.layers):
            layer.check_input(shape, f"{label}, Residual.layers[{j}]")
            shape = layer.output_shape(shape)
        if shape != input_shape:
            fail(label, input_shape, f"a Residual whose layers keep its input's shape "
                 f"(they map {input_shape} to {shape}; x + f(x) needs equal shapes)")

    def check_training_rows(self, rows: int, input_shape: Shape, label: str) -> None:
        for layer, shape in zip(self.layers, self.shapes(input_shape), strict=False):
            layer.check_training_rows(rows, shape, label)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {f"layers.{j}.{name}": shape
                for j, (layer, s) in enumerate(zip(self.layers, self.shapes(input_shape),
                                                   strict=False))
                for name, shape in layer.param_shapes(s).items()}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {f"layers.{j}.{name}": shape
                for j, (layer, s) in enumerate(zip(self.layers, self.shapes(input_shape),
                                                   strict=False))
                for name, shape in layer.buffer_shapes(s).items()}

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        return {f"layers.{j}.{name}": value
                for j, (layer, s) in enumerate(zip(self.layers, self.shapes(input_shape),
                                                   strict=False))
                for name, value in layer.init_params(rule, rng, s).items()}

    def init_buffers(self, input_shape: Shape) -> dict[str, np.ndarray]:
        return {f"layers.{j}.{name}": value
                for j, (layer, s) in enumerate(zip(self.layers, self.shapes(input_shape),
                                                   strict=False))
                for name, value in layer.init_buffers(s).items()}

    def split(self, tree: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A dict named as ``param_shapes`` (parameters, gradients or model state) as
        one dict per sub-layer, its own names (the same arrays, not copies)."""
        parts: list[dict[str, Any]] = [{} for _ in self.layers]
        for name, value in tree.items():
            _, j, rest = name.split(".", 2)                          # layers.{j}.{rest}
            parts[int(j)][rest] = value
        return parts

    def join(self, parts: list[Mapping[str, Any]]) -> dict[str, Any]:
        """The inverse of ``split``."""
        return {f"layers.{j}.{name}": value for j, part in enumerate(parts)
                for name, value in part.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": [layer.to_dict() for layer in self.layers]}
