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

float32: rtol 1e-4, atol 1e-6. Provisional; to be measured (issue 5).
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
    "float32": Tolerance(rtol=1e-4, atol=1e-6),
}

#: For one elementwise function evaluation (an activation's value or derivative,
#: not a training run). float64: the backends differ by at most 4e-15 absolute
#: (gelu_tanh' at -6, where 1 - tanh(u)^2 cancels) and 1e-15 relative elsewhere.
#: float32: at most 3.4e-7 absolute (tanh' and gelu_tanh' near |x| = 3..6).
ELEMENTWISE = {
    "float64": Tolerance(rtol=1e-12, atol=1e-14),
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
}


@dataclass(frozen=True)
class Difference:
    """How far ``actual`` is from ``expected``.

    max_abs: max |a - e| (inf where the non-finite values differ).
    max_rel: max |a - e| / |e| over elements with e != 0 (0 if there are none).
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
        nonzero = finite & (e != 0)
        rel = gap[nonzero] / np.abs(e[nonzero])
    ok = bool(np.all(finite | matched_nonfinite) and np.all(within))
    max_rel = float(rel.max()) if rel.size else 0.0
    if not np.all(finite | matched_nonfinite):
        max_rel = np.inf
    return Difference(float(gap.max()), max_rel, ok)
