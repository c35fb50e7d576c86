"""torch layers, one module per layer kind: ``forward(layer, params, buffers, x,
train) -> y`` (autograd gives the backward pass; buffers are updated in place)."""
from types import ModuleType

from . import activation, dense

#: layer kind -> its module
LAYERS: dict[str, ModuleType] = {"dense": dense, "activation": activation}
