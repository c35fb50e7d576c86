"""JAX layers, one module per layer kind: ``forward(layer, params, buffers, x,
train) -> (y, new buffers)``, pure (``jax.grad`` gives the backward pass)."""
from types import ModuleType

from . import activation, dense

#: layer kind -> its module
LAYERS: dict[str, ModuleType] = {"dense": dense, "activation": activation}
