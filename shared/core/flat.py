"""One flat vector behind a tree of tensors: a speed device of the training loops.

The NumPy and torch loops keep the parameters, the gradients and every
optimizer buffer as views of one flat vector each. An elementwise update rule
then runs once on the whole vector instead of once per tensor, and one sum
checks that every parameter is finite. The lesson (forward, backward, update)
does not change: each layer still sees its own named tensors, which are views
into the vector.

``in_one_vector(tree, dtype)`` returns ``(flat, views)``: a copy of the tree's
tensors laid end to end, and the tree again as views of it. Pass
``to_array=torch.from_numpy`` to get a torch vector and torch views
(``reshape`` of a contiguous slice is a view in NumPy and in torch).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np


def in_one_vector(tree: Sequence[Mapping[str, np.ndarray]], dtype: Any,
                  to_array: Callable[[np.ndarray], Any] = np.asarray) -> tuple[Any, list[dict]]:
    """(flat (n_elements,), views): a copy of NumPy ``tree`` as views of one vector."""
    parts = [np.ravel(value) for layer in tree for value in layer.values()]
    flat = to_array(np.concatenate(parts) if parts else np.zeros(0, dtype))
    views, start = [], 0
    for layer in tree:
        entry = {}
        for key, value in layer.items():
            size = int(np.size(value))
            entry[key] = flat[start:start + size].reshape(np.shape(value))
            start += size
        views.append(entry)
    return flat, views
