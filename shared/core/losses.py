"""Losses: the one definition of each, its gradient and the targets it takes.

Every loss is a mean over the batch. p is the network's output (n, k); N is
the number of elements averaged over. Each matches ``torch.nn.functional``'s
function with ``reduction="mean"``.

=================  ===================================================  =========================
name               L                                                    dL/dp
=================  ===================================================  =========================
mse                mean((p - y)^2), N = n k                             2 (p - y) / N
mae                mean(|p - y|), N = n k                               sign(p - y) / N, 0 at 0
huber (delta)      mean(r^2/2 if |r| <= delta else                      clip(r, -delta, delta) / N
                   delta (|r| - delta/2)), r = p - y, N = n k
cross_entropy      mean_i(logsumexp(p_i) - p_i[y_i]), N = n             (softmax(p) - onehot(y)) / n
bce_with_logits    mean(max(p, 0) - p y + log1p(e^-|p|)), N = n k       (sigmoid(p) - y) / N
=================  ===================================================  =========================

Targets:

- mse, mae, huber: float (n, k), k = sizes[-1].
- cross_entropy: integer class labels (n,), each in [0, k); softmax over the
  output layer's k logits, log-sum-exp taken stably (max subtracted first).
  A network may also output logits at every position, (n, *s, k) (a sequence
  model's (n, T, k)), with labels (n, *s): the mean is then over the counted
  positions, those whose label is not ``IGNORE_INDEX`` (-100, torch's default
  ``ignore_index``), and dL/dp is 0 at the others. Every row must count at least
  one position (torch would return 0/0 = NaN for a batch that counts none).
- bce_with_logits: float (n, k) with every value in [0, 1]; the stable form
  above never evaluates e^p for large p.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from nnparity.shared.core.validation import check_choice, check_float, check_float_array, fail


#: a sequence label that is not counted (torch's ``ignore_index`` default)
IGNORE_INDEX = -100


@dataclass(frozen=True)
class LossDef:
    name: str
    targets: str            # "values" (float (n, k)), "labels" (int (n,)), "probabilities"
    defaults: Mapping[str, float] = field(default_factory=dict)

    @property
    def classification(self) -> bool:
        """True when accuracy is a meaningful metric for this loss."""
        return self.targets != "values"


LOSSES: dict[str, LossDef] = {d.name: d for d in (
    LossDef("mse", "values"),
    LossDef("mae", "values"),
    LossDef("huber", "values", {"delta": 1.0}),
    LossDef("cross_entropy", "labels"),
    LossDef("bce_with_logits", "probabilities"),
)}


def check_loss_params(name: str, params) -> dict[str, float]:
    """Validate ``loss_params`` for loss ``name``: every value finite and > 0."""
    check_choice("loss", name, LOSSES)
    if not isinstance(params, Mapping):
        fail("loss_params", params, "a mapping of parameter names to numbers", TypeError)
    allowed = LOSSES[name].defaults
    checked = {}
    for key, value in params.items():
        if key not in allowed:
            fail(f"loss_params[{key!r}]", value,
                 f"parameters of loss {name!r} only: {', '.join(map(repr, allowed)) or 'none'}")
        checked[key] = check_float(f"loss_params[{key!r}]", value, low=0.0, low_open=True)
    return checked


def check_targets(loss: str, name: str, y, output_shape: tuple[int, ...]) -> None:
    """Check that targets ``y`` suit ``loss`` for a network whose output rows have
    ``output_shape`` ((k,), or (*s, k) for per-position logits).

    Never broadcasts: (n, 1) against (n,) is an error, not an (n, n) matrix.
    """
    kind = LOSSES[loss].targets
    if not isinstance(y, np.ndarray):
        fail(name, y, "a NumPy array of targets", TypeError)
    n = y.shape[0] if y.ndim else 0
    n_out, positions = output_shape[-1], tuple(output_shape[:-1])
    if kind == "labels":
        shape = (n, *positions)
        if y.dtype.kind not in "iu":
            fail(name, f"{y.dtype.name} array of shape {y.shape}",
                 f"integer class labels of shape {shape} for loss {loss!r}", TypeError)
        if y.shape != shape:
            fail(f"{name}.shape", y.shape, f"{shape} class labels for loss {loss!r} (the "
                 f"output rows are {tuple(output_shape)})")
        ignored = (y == IGNORE_INDEX) if positions else np.zeros(y.shape, bool)
        out_of_range = ((y < 0) | (y >= n_out)) & ~ignored
        if out_of_range.any():
            bad = tuple(int(j) for j in np.argwhere(out_of_range)[0])
            fail(f"{name}[{', '.join(map(str, bad))}]", int(y[bad]),
                 f"a class label in [0, {n_out})"
                 + (f" or {IGNORE_INDEX} (not counted)" if positions else "")
                 + f" for loss {loss!r}")
        if positions and n:
            empty = ignored.reshape(n, -1).all(axis=1)
            if empty.any():
                row = int(np.argmax(empty))
                fail(f"{name}[{row}]", f"every label {IGNORE_INDEX}",
                     "at least one counted position per row (a batch counting none would "
                     "average over nothing)")
        return
    if y.dtype.kind != "f":
        fail(name, f"{y.dtype.name} array of shape {y.shape}",
             f"float targets of shape ({n}, {n_out}) for loss {loss!r}", TypeError)
    if y.shape != (n, n_out):
        fail(f"{name}.shape", y.shape, f"({n}, {n_out}), the output's shape, for loss {loss!r}")
    check_float_array(name, y, 2)
    if kind == "probabilities":
        outside = (y < 0) | (y > 1)
        if outside.any():
            at = tuple(int(j) for j in np.argwhere(outside)[0])
            fail(f"{name}[{at[0]}, {at[1]}]", float(y[at]),
                 f"a target in [0, 1] for loss {loss!r}")
