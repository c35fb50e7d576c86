"""The tolerance policy: when two backends' numbers count as equal.

One criterion, normwise per tensor. A tensor a (a weight, a bias, the test
predictions, a gradient, an optimizer buffer) matches the reference's e when

    max|a - e| <= atol + rtol * max|e|

with (rtol, atol) taken from ``POLICY`` by the spec's dtype: each tensor's
error is measured against its own scale, as rounding errors of sums and
products are (they are bounded normwise, not element by element). The loss
of every step is its own number: each is judged as |a - e| <= atol + rtol*|e|
(``difference``). Two NaNs match, and so do two infinities of the same sign;
a non-finite value against a finite one, or against a different non-finite
value, never matches, whatever the allowance. Shapes must be equal. Nothing is
cleaned with ``nan_to_num``.

A teacher-forced step (one step of each backend from the reference's own
state) also gets a rounding allowance: ``ROUNDING_MULTIPLE`` times that
tensor's measured rounding sensitivity s, the largest change seen when the
NumPy reference's step is rerun ``ROUNDING_SAMPLES`` times with every
floating-point operation moved by up to ``ROUNDING_ULPS`` ulps (Monte Carlo
arithmetic, ``nnparity.shared.parity.rounding``):

    max|a - e| <= atol + rtol * max|e| + ROUNDING_MULTIPLE * s

s is a property of the step at that state, not of the CPU: about 1e-16
relative for a well-conditioned step, large where the gradient cancels (a
saturated tanh, 1 - tanh^2 near 0) or a buffer holds pure rounding noise
(1e-19 / eps). A wrong rule moves a step by the size of the gradient, far
beyond it; in a state so ill-conditioned that s reaches max|e|, no step can
test the implementation, and the report shows that step's sensitivity.

ROUNDING_MULTIPLE is 8. Measured with the multiple at 1 (gap / (atol + rtol
max|e| + s)): honest backends used at most 0.22 of it on the chaotic spec
here (jax), 0.75 with NumPy's OpenBLAS on its SkylakeX kernels, and 1.20 with
NumPy's tanh, exp, expm1, log, log1p and erfc moved by up to 4 ulps (another
libm; XLA's float64 tanh is up to 6 ulps from NumPy's on some CPUs). 8 leaves
more than 4 times the worst measured, and the negative controls still fail
by orders of magnitude: a 0.1% longer SGD step uses 8e6 times its allowance at
step 0 (and at least 4e5 times at every sampled step of the chaotic run, the
ill-conditioned late ones included), a 1% momentum-buffer bug from step 1
uses 4e8 times it at step 4 (tests/test_harness.py, tests/test_portability.py).

float64: rtol 1e-10, atol 1e-12. Measured on this project's specs, honest
float64 implementations differ by about 1e-15 relative after 2000 SGD steps
(summation order differs between NumPy, torch and XLA), so the policy leaves
about five orders of magnitude of headroom and still catches any real bug,
whose effect is of the order of the gradient itself.

float32: rtol 1e-4, atol 1e-5. Measured with tools/measure_float32.py on 11
specs (every optimizer, five losses, ten activations, 1-4 hidden layers,
120-2000 steps), torch and jax against numpy: one teacher-forced step agrees
to at most 1.3e-5 normwise per tensor (the gradient to 9.8e-6), about the
float32 rounding unit times the depth; after the whole run the parameters
differ by at most 1.25e-6 absolute (2.3e-6 normwise), about the gap between
numpy's own float32 and float64 runs (up to 5.4e-6). atol is 1e-5, not 1e-6,
because order-1 outputs that cancel to near zero (p - y of an mae loss at
0.012, a prediction near 0) lose their relative accuracy: those measured up
to 2.5e-6 absolute.

``ELEMENTWISE`` is for one elementwise function evaluation (an activation's
value or derivative), judged element by element with ``difference``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

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


#: The rounding allowance of a teacher-forced step (see the module docstring):
#: every floating-point result of the NumPy reference's step is moved by a random
#: whole number of ulps in [-ROUNDING_ULPS, ROUNDING_ULPS], ROUNDING_SAMPLES times,
#: and a tensor may differ by ROUNDING_MULTIPLE times the largest change seen.
ROUNDING_ULPS = 4
ROUNDING_SAMPLES = 3
ROUNDING_MULTIPLE = 8.0


@dataclass(frozen=True)
class Element:
    """The element a comparison found worst, named for a reader.

    tensor: the tensor's name ("W0", "grad b1", "momentum_buffer W0", "losses", ...).
    index: the element's index in that tensor (() for a scalar or a shape mismatch).
    expected, actual: the reference's value and the compared backend's (NaN where
        a shape mismatch leaves no element to name).
    criterion: which test the tensor was held to, and with what numbers; for a
        failing tensor, the one it failed.
    """

    tensor: str
    index: tuple[int, ...]
    expected: float
    actual: float
    criterion: str

    def __str__(self) -> str:
        where = f"{self.tensor}[{', '.join(map(str, self.index))}]" if self.index else self.tensor
        return (f"{where}: expected {self.expected!r}, actual {self.actual!r} "
                f"({self.criterion})")


@dataclass(frozen=True)
class Difference:
    """How far ``actual`` is from ``expected``.

    max_abs: max |a - e| (inf where the non-finite values differ).
    max_rel: elementwise (``difference``): max |a - e| / |e| over the elements
        where the relative tolerance governs, |e| >= atol / rtol (0 if there are
        none); normwise (``tensorwise_difference``): the largest
        max|a - e| / max|e| over tensors with max|e| >= atol / rtol.
    ok: every element (or tensor) is within its allowance.
    used: the largest fraction of its allowance an element (or tensor) uses:
        |a - e| / allowed; ok is used <= 1 (inf for a non-finite or shape mismatch).
    worst: the element with the largest ``used`` (the first failing one found
        for a non-finite or shape mismatch), or None when there is no element.
    """

    max_abs: float
    max_rel: float
    ok: bool
    used: float = 0.0
    worst: Element | None = None


def _mismatch(a: np.ndarray, e: np.ndarray, name: str) -> Difference | None:
    """The failing Difference when shapes or non-finite values disagree, else None."""
    if a.shape != e.shape:
        return Difference(np.inf, np.inf, False, np.inf, Element(
            name, (), np.nan, np.nan,
            f"shape: {a.shape} against the reference's {e.shape}"))
    matched = (np.isnan(a) & np.isnan(e)) | (a == e)          # NaN = NaN, inf = inf
    bad = ~(np.isfinite(a) & np.isfinite(e)) & ~matched
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        return Difference(np.inf, np.inf, False, np.inf, Element(
            name, index, float(e[index]), float(a[index]),
            "non-finite: a NaN or infinity must be matched by the same value"))
    return None


def difference(actual, expected, tol: Tolerance, name: str = "value") -> Difference:
    """Compare two arrays elementwise under ``tol``: |a - e| <= atol + rtol * |e|
    for every element (see the module docstring); ``name`` names the tensor in
    ``worst``."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    failed = _mismatch(a, e, name)
    if failed is not None:
        return failed
    finite = np.isfinite(e)                       # non-finite entries matched exactly
    if not finite.any():
        return Difference(0.0, 0.0, True)
    with np.errstate(over="ignore"):              # a gap beyond 1.8e308 is rightly inf
        gap = np.where(finite, np.abs(a - np.where(finite, e, 0.0)), 0.0)
        allowed = tol.atol + tol.rtol * np.abs(np.where(finite, e, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        used = np.where(gap == 0, 0.0, gap / allowed)
    governs = finite & (np.abs(e) >= relative_floor(tol)) & (e != 0)
    max_rel = float((gap[governs] / np.abs(e[governs])).max()) if governs.any() else 0.0
    index = tuple(int(i) for i in (np.unravel_index(int(np.argmax(used)), used.shape)
                                   if used.ndim else ()))
    worst_used = float(used[index])
    ok = worst_used <= 1.0
    verb = "within" if ok else "beyond"
    criterion = (f"elementwise: |a - e| = {float(gap[index]):.3g} {verb} "
                 f"atol + rtol*|e| = {float(allowed[index]):.3g}")
    return Difference(float(gap.max()), max_rel, ok, worst_used,
                      Element(name, index, float(e[index]), float(a[index]), criterion))


def tensorwise_difference(actual, expected, tol: Tolerance,
                          sensitivity: Mapping[str, float] | None = None) -> Difference:
    """Compare tensors one by one, normwise: for every tensor

        max|a - e| <= atol + rtol * max|e| + ROUNDING_MULTIPLE * s

    i.e. each tensor's error relative to its own scale, where s is that tensor's
    measured rounding sensitivity (``sensitivity[name]``, 0 when not given; see
    ``nnparity.shared.parity.rounding``). ``actual`` and ``expected`` are two mappings
    with the same names (or two equal-length sequences, named "0", "1", ...).
    Non-finite values and shapes are matched as in ``difference``.
    """
    if not isinstance(expected, Mapping):
        actual = {str(i): t for i, t in enumerate(actual)}
        expected = {str(i): t for i, t in enumerate(expected)}
    if list(actual) != list(expected):
        raise ValueError(f"tensor names differ: {list(actual)} against {list(expected)}")
    sensitivity = sensitivity or {}
    worst_abs, worst_rel, parts = 0.0, 0.0, []
    for name, e in expected.items():
        a = np.asarray(actual[name], dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        failed = _mismatch(a, e, name)
        if failed is not None:
            parts.append(failed)
            continue
        finite = np.isfinite(e)
        if not finite.any():
            parts.append(Difference(0.0, 0.0, True))
            continue
        with np.errstate(over="ignore"):
            gap = np.where(finite, np.abs(a - np.where(finite, e, 0.0)), 0.0)
        scale = float(np.abs(e[finite]).max())
        s = float(sensitivity.get(name, 0.0))
        allowed = tol.atol + tol.rtol * scale + ROUNDING_MULTIPLE * s
        index = tuple(int(i) for i in (np.unravel_index(int(np.argmax(gap)), gap.shape)
                                       if gap.ndim else ()))
        largest = float(gap[index])
        used = 0.0 if largest == 0 else largest / allowed
        rel = largest / scale if scale >= relative_floor(tol) and scale > 0 else 0.0
        verb = "within" if used <= 1.0 else "beyond"
        rounding = f" + {ROUNDING_MULTIPLE:g}*sensitivity {s:.3g}" if s else ""
        criterion = (f"normwise: max|a - e| = {largest:.3g} {verb} atol + rtol*max|e| "
                     f"{tol.atol + tol.rtol * scale:.3g}{rounding} = {allowed:.3g}")
        parts.append(Difference(largest, rel, used <= 1.0, used, Element(
            name, index, float(e[index]), float(a[index]), criterion)))
    if not parts:
        return Difference(0.0, 0.0, True)
    worst = max(parts, key=lambda d: d.used)
    worst_abs = max(d.max_abs for d in parts)
    worst_rel = max(d.max_rel for d in parts)
    return Difference(worst_abs, worst_rel, all(d.ok for d in parts), worst.used, worst.worst)
