"""The parity harness: train one spec in several backends and compare them."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .data import Dataset, check_fits
from .spec import NetworkSpec
from .tolerance import POLICY, Difference, Tolerance, difference
from .validation import fail


@dataclass(frozen=True)
class BackendParity:
    """One backend against the reference.

    ``differences`` maps a quantity ("W0", "b0", ..., "predictions", "losses")
    to its ``Difference``.
    """

    backend: str
    differences: dict[str, Difference]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.differences.values())


@dataclass(frozen=True)
class ParityReport:
    """The outcome of ``compare``.

    Attributes:
        spec, reference, tolerance: what was compared, against what, how strictly.
        results: backend name -> ``TrainResult``.
        predictions: backend name -> (n_test, sizes[-1]) test predictions.
        parity: one ``BackendParity`` per non-reference backend.
        reference_seconds: the reference's training time.
    """

    spec: NetworkSpec
    reference: str
    tolerance: Tolerance
    results: dict
    predictions: dict[str, np.ndarray]
    parity: tuple[BackendParity, ...]
    reference_seconds: float

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parity)

    def __str__(self) -> str:
        lines = [f"parity against {self.reference} "
                 f"({self.spec.dtype}: {self.tolerance}; ok when |a-e| <= atol + rtol*|e|)",
                 f"{'backend':<8} {'quantity':<12} {'max abs':>10} {'max rel':>10}  ok"]
        for p in self.parity:
            for quantity, d in p.differences.items():
                lines.append(f"{p.backend:<8} {quantity:<12} {d.max_abs:>10.2e} "
                             f"{d.max_rel:>10.2e}  {'yes' if d.ok else 'NO'}")
        timing = ", ".join([f"{self.reference} {self.reference_seconds:.3f}"]
                           + [f"{p.backend} {p.seconds:.3f}" for p in self.parity])
        lines.append(f"train seconds: {timing}")
        lines.append("verdict: " + ("PARITY OK" if self.ok else "PARITY FAILED: " + ", ".join(
            p.backend for p in self.parity if not p.ok)))
        return "\n".join(lines)


def quantities(params, predictions: np.ndarray, losses: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays the harness compares, by name: W0, b0, W1, b1, ..., predictions, losses."""
    named = {}
    for layer, (w, b) in enumerate(params):
        named[f"W{layer}"] = w
        named[f"b{layer}"] = b
    named["predictions"] = predictions
    named["losses"] = losses
    return named


def compare_results(reference: dict[str, np.ndarray], other: dict[str, np.ndarray],
                    tol: Tolerance) -> dict[str, Difference]:
    """Quantity-by-quantity differences of ``other`` against ``reference``."""
    return {name: difference(other[name], ref, tol) for name, ref in reference.items()}


def compare(spec: NetworkSpec, data: Dataset,
            backends: Sequence[str] = ("numpy", "torch", "jax"),
            reference: str = "numpy") -> ParityReport:
    """Train ``spec`` in every backend and compare each against ``reference``.

    Compares every parameter, the predictions on ``data.x_test`` and the loss
    trajectory under ``POLICY[spec.dtype]``.
    """
    from nnparity.backends import BACKENDS, get_backend, train

    check_fits(spec, data)
    if isinstance(backends, str) or not isinstance(backends, Sequence) or not backends:
        fail("backends", backends, f"a non-empty sequence of names from {list(BACKENDS)}",
             TypeError)
    for name in backends:
        get_backend(name)                  # unknown name or missing framework: fail now
    if len(set(backends)) != len(backends):
        fail("backends", list(backends), "each backend at most once")
    if reference not in backends:
        fail("reference", reference, f"one of the compared backends {list(backends)}")

    tol = POLICY[spec.dtype]
    results, predictions, named, seconds = {}, {}, {}, {}
    for name in backends:
        start = time.perf_counter()
        result = train(spec, data, backend=name)
        seconds[name] = time.perf_counter() - start
        results[name] = result
        x_test = data.x_test.astype(spec.dtype)
        # the backend's own predict: the parameters may be non-finite, which the public
        # predict() rightly rejects but the report must show
        predictions[name] = get_backend(name).predict(spec, result.params, x_test)
        named[name] = quantities(result.params, predictions[name], result.losses)

    parity = tuple(
        BackendParity(name, compare_results(named[reference], named[name], tol), seconds[name])
        for name in backends if name != reference)
    return ParityReport(spec=spec, reference=reference, tolerance=tol, results=results,
                        predictions=predictions, parity=parity,
                        reference_seconds=seconds[reference])
