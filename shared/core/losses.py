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
- bce_with_logits: float (n, k) with every value in [0, 1]; the stable form
  above never evaluates e^p for large p.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from nnparity.shared.core.validation import check_choice, check_float, check_float_array, fail


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


def check_targets(loss: str, name: str, y, n_out: int) -> None:
    """Check that targets ``y`` suit ``loss`` for a network with ``n_out`` outputs.

    Never broadcasts: (n, 1) against (n,) is an error, not an (n, n) matrix.
    """
    kind = LOSSES[loss].targets
    if not isinstance(y, np.ndarray):
        fail(name, y, "a NumPy array of targets", TypeError)
    n = y.shape[0] if y.ndim else 0
    if kind == "labels":
        if y.dtype.kind not in "iu":
            fail(name, f"{y.dtype.name} array of shape {y.shape}",
                 f"integer class labels of shape ({n},) for loss {loss!r}", TypeError)
        if y.ndim != 1:
            fail(f"{name}.shape", y.shape, f"({n},) class labels for loss {loss!r}")
        out_of_range = (y < 0) | (y >= n_out)
        if out_of_range.any():
            i = int(np.argmax(out_of_range))
            fail(f"{name}[{i}]", int(y[i]), f"a class label in [0, {n_out}) for loss {loss!r}")
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
