"""The tolerance policy: when two backends' numbers count as equal.

An element a of one backend matches the reference's e when

    |a - e| <= atol + rtol * |e|

with (rtol, atol) taken from ``POLICY`` by the spec's dtype. Two NaNs match,
and so do two infinities of the same sign; a non-finite value against a finite
one, or against a different non-finite value, never matches. Shapes must be
equal. Nothing is cleaned with ``nan_to_num``.

float64: rtol 1e-10, atol 1e-12. Measured on this project's specs, honest
float64 implementations differ by about 1e-15 relative after 2000 SGD steps
(summation order differs between NumPy, torch and XLA), so the policy leaves
about five orders of magnitude of headroom and still catches any real bug,
whose effect is of the order of the gradient itself.

float32: rtol 1e-4, atol 1e-5. Measured with tools/measure_float32.py on 11
specs (every optimizer, five losses, ten activations, 1-4 hidden layers,
120-2000 steps), torch and jax against numpy: one teacher-forced step agrees
to at most 8.1e-6 normwise (the gradient to 6.0e-6), about the float32
rounding unit times the depth; after the whole run the parameters differ by
at most 1.1e-6 absolute, 1.1e-5 relative (2.2e-6 normwise), about the gap
between numpy's own float32 and float64 runs (up to 5.4e-6). atol is 1e-5,
not 1e-6, because order-1 outputs that cancel to near zero (p - y of an mae
loss at 0.012, a prediction near 0) lose their relative accuracy: those
measured up to 2.5e-6 absolute.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    def __str__(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


POLICY = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=1e-4, atol=1e-5),
}

#: For one elementwise function evaluation (an activation's value or derivative,
#: not a training run). float64: the backends differ by at most 4e-15 absolute
#: (gelu_tanh' at -6, where 1 - tanh(u)^2 cancels) and 1e-15 relative elsewhere.
#: float32: at most 3.4e-7 absolute (tanh' and gelu_tanh' near |x| = 3..6).
ELEMENTWISE = {
    "float64": Tolerance(rtol=1e-12, atol=1e-14),
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
}


def relative_floor(tol: Tolerance) -> float:
    """|e| from which rtol * |e| outweighs atol: where a relative error is the measure."""
    return tol.atol / tol.rtol if tol.rtol > 0 else np.inf


@dataclass(frozen=True)
class Difference:
    """How far ``actual`` is from ``expected``.

    max_abs: max |a - e| (inf where the non-finite values differ).
    max_rel: max |a - e| / |e| over the elements where the relative tolerance
        governs, |e| >= atol / rtol (0 if there are none); smaller elements are
        judged by atol, and their relative error says nothing.
    ok: every element matches under the tolerance (see module docstring).
    """

    max_abs: float
    max_rel: float
    ok: bool


def difference(actual, expected, tol: Tolerance) -> Difference:
    """Compare two arrays elementwise under ``tol``."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return Difference(np.inf, np.inf, False)
    if a.size == 0:
        return Difference(0.0, 0.0, True)
    matched_nonfinite = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
    finite = np.isfinite(a) & np.isfinite(e)
    gap = np.full(a.shape, np.inf)                       # stays inf where one side is non-finite
    with np.errstate(over="ignore"):                     # a gap beyond 1.8e308 is rightly inf
        gap[finite] = np.abs(a[finite] - e[finite])
        gap[matched_nonfinite] = 0.0
        within = gap[finite] <= tol.atol + tol.rtol * np.abs(e[finite])
        nonzero = finite & (np.abs(e) >= relative_floor(tol)) & (e != 0)
        rel = gap[nonzero] / np.abs(e[nonzero])
    ok = bool(np.all(finite | matched_nonfinite) and np.all(within))
    max_rel = float(rel.max()) if rel.size else 0.0
    if not np.all(finite | matched_nonfinite):
        max_rel = np.inf
    return Difference(float(gap.max()), max_rel, ok)


def tensorwise_difference(actual, expected, tol: Tolerance) -> Difference:
    """Compare two equal-length sequences of arrays tensor by tensor, normwise:

        max|a - e| <= atol + rtol * max|e|      for every tensor,

    i.e. each tensor's error relative to its own scale. This is the criterion
    for one teacher-forced step, whose gradients can hold elements that cancel
    to near zero (1 - tanh^2 at large |x|) where no elementwise relative error
    is meaningful. max_rel is the largest max|a - e| / max|e| over tensors with
    max|e| >= atol / rtol. Non-finite values are matched as in ``difference``.
    """
    worst_abs, worst_rel, ok = 0.0, 0.0, True
    for a, e in zip(actual, expected, strict=True):
        d = difference(a, e, Tolerance(rtol=0.0, atol=np.inf))   # shapes and non-finite only
        a, e = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
        finite = np.isfinite(e)
        scale = float(np.abs(e[finite]).max()) if finite.any() else 0.0
        gap = d.max_abs
        worst_abs = max(worst_abs, gap)
        if scale >= relative_floor(tol) and scale > 0:
            worst_rel = max(worst_rel, gap / scale)
        ok = ok and d.ok and gap <= tol.atol + tol.rtol * scale
    return Difference(worst_abs, worst_rel, ok)
