"""The JSON document of a parity comparison (``nnparity compare --json``).

``report_to_dict(report)`` builds it (schema ``SCHEMA``, version
``SCHEMA_VERSION``), documented key by key in docs/compare-report.md. It is
strict JSON: a non-finite number is written as one of the strings ``"nan"``,
``"inf"``, ``"-inf"``, never as a bare NaN/Infinity token and never replaced by
a finite number; ``null`` means "not applicable" (a backend that diverged has
no metrics and no losses, a backend that never left tolerance has no
``first_step_out``). ``to_json`` lays it out for reading. The page
(``report_html``) and the plot (``plots.plot_report``) are drawn from the same
data; ``report`` writes the files.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import platform
from typing import Any

from nnparity.shared.parity.harness import ParityReport, StepDifference
from nnparity.shared.core.tolerance import (ROUNDING_MULTIPLE, ROUNDING_SAMPLES, ROUNDING_ULPS,
                                            Difference, Element)
from nnparity.shared.core.validation import fail

SCHEMA = "nnparity.compare-report"
#: bumped whenever a key is added, removed or changes meaning
SCHEMA_VERSION = 4
#: how a non-finite number is written in the JSON
NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: distributions whose version the report records (besides Python)
LIBRARIES = ("numpy", "torch", "jax", "nnparity")


def number(value) -> float | str:
    """A float for JSON: itself when finite, else "nan", "inf" or "-inf"."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def library_versions() -> dict[str, str | None]:
    """Python's version and each of ``LIBRARIES``' installed version (None when missing)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_report(report: Any) -> ParityReport:
    if not isinstance(report, ParityReport):
        fail("report", report, "a ParityReport (from nnparity.shared.compare)", TypeError)
    return report


def _element(e: Element | None) -> dict | None:
    if e is None:
        return None
    return {"tensor": e.tensor, "index": [int(i) for i in e.index],
            "expected": number(e.expected), "actual": number(e.actual),
            "criterion": e.criterion}


def _difference(d: Difference | StepDifference) -> dict:
    return {"max_abs": number(d.max_abs), "max_rel": number(d.max_rel), "ok": bool(d.ok),
            "used": number(d.used), "worst": _element(d.worst)}


def _step(d: StepDifference) -> dict:
    return {"step": int(d.step), **_difference(d), "sensitivity": number(d.sensitivity)}


def backend_names(report: ParityReport) -> list[str]:
    """The compared runs: the reference first, then the others in compared order
    (each once: a data-parallel run "torch x2" and its single-device "torch" too)."""
    return list(dict.fromkeys([report.reference] + [name for p in report.parity
                                                     for name in (p.run or p.backend,
                                                                  p.against or report.reference)]))


def verdict_text(report: ParityReport) -> str:
    """"PARITY OK" or "PARITY FAILED: torch, jax", as the text report's last line."""
    failed = [p.backend for p in report.parity if p.counted and not p.ok]
    return "PARITY OK" if not failed else "PARITY FAILED: " + ", ".join(failed)


def report_to_dict(report: ParityReport) -> dict:
    """The report as a JSON-ready dict (schema: docs/compare-report.md)."""
    check_report(report)
    backends = {}
    for name in backend_names(report):
        result = report.results.get(name)
        backends[name] = {
            "reference": name == report.reference,
            "seconds": number(report.run_seconds[name]),
            "diverged_at": report.run_diverged_at[name],
            "metrics": (None if result is None
                        else {k: number(v) for k, v in result.metrics.items()}),
            "losses": None if result is None else [number(v) for v in result.losses.tolist()],
        }
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "spec": report.spec.to_dict(),
        "versions": library_versions(),
        "tolerance": {"dtype": report.spec.dtype, "rtol": number(report.tolerance.rtol),
                      "atol": number(report.tolerance.atol),
                      "rounding_ulps": ROUNDING_ULPS, "rounding_samples": ROUNDING_SAMPLES,
                      "rounding_multiple": number(ROUNDING_MULTIPLE)},
        "reference": report.reference,
        "record_every": int(report.record_every),
        "replicas": int(report.replicas),
        "sync_batch_norm": bool(report.sync_batch_norm),
        "backends": backends,
        "parity": {
            p.backend: {
                "against": p.against or report.reference,
                "counted": bool(p.counted),
                "ok": bool(p.ok),
                "diagnosis": p.diagnosis,
                "first_step_out": p.first_step_out,
                "differences": {q: _difference(d) for q, d in p.differences.items()},
                "trajectory": [_step(d) for d in p.trajectory],
                "teacher": [_step(d) for d in p.teacher],
            } for p in report.parity},
        "verdict": {"ok": bool(report.ok),
                    "failed": [p.backend for p in report.parity if p.counted and not p.ok],
                    "text": verdict_text(report)},
    }


def to_json(report: ParityReport) -> str:
    """The report as strict JSON text (``allow_nan=False``), ending in a newline."""
    return dumps(report_to_dict(report)) + "\n"


#: a list of at most this many scalars is written on one line, a longer one an item a line
INLINE_LIST = 10


def dumps(value: Any, level: int = 0) -> str:
    """Strict JSON, indented by 2, laid out for reading and line diffs: an object
    whose values are all scalars (a difference, a trajectory point) on one line,
    a long list (the losses) one item per line."""
    def scalar(v) -> bool:
        return not isinstance(v, (dict, list))

    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict) and not all(scalar(v) for v in value.values()):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and not (len(value) <= INLINE_LIST and all(map(scalar, value))):
        return "[\n" + ",\n".join(inner + dumps(v, level + 1) for v in value) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)
