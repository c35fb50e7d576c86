"""NumPy layers, one module per layer kind: ``forward(layer, params, buffers, x,
train) -> (y, cache)`` and, beside it, ``backward(layer, params, cache, d_y,
grads, need_input_grad) -> dL/dx``, which writes the parameters' gradients into
``grads`` (arrays shaped like ``params``)."""
import importlib
import pkgutil
from types import ModuleType

#: layer kind -> its module: every module of this package (but ``_private`` ones),
#: each named by the kind it computes, so adding a kind adds a file and edits none
LAYERS: dict[str, ModuleType] = {
    info.name: importlib.import_module(f"{__name__}.{info.name}")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name)
    if not info.name.startswith("_")}
