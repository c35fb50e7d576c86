"""NumPy layers, one module per layer kind: ``forward(layer, params, buffers, x,
train) -> (y, cache)`` and, beside it, ``backward(layer, params, cache, d_y,
grads, need_input_grad) -> dL/dx``, which writes the parameters' gradients into
``grads`` (arrays shaped like ``params``)."""
from types import ModuleType

from . import activation, dense

#: layer kind -> its module
LAYERS: dict[str, ModuleType] = {"dense": dense, "activation": activation}
