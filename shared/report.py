"""Reports of a parity comparison: versioned JSON, the plot, one self-contained HTML page.

``report_to_dict(report)`` builds the JSON document (schema ``SCHEMA``, version
``SCHEMA_VERSION``), documented key by key in docs/compare-report.md. It is
strict JSON: a non-finite number is written as one of the strings ``"nan"``,
``"inf"``, ``"-inf"``, never as a bare NaN/Infinity token and never replaced by
a finite number; ``null`` means "not applicable" (a backend that diverged has
no metrics and no losses, a backend that never left tolerance has no
``first_step_out``).

``write_json``, ``write_plot`` and ``write_html`` write their file atomically
(a temporary file in the same directory, then ``os.replace``), so an
interrupted write never leaves a half-written report. ``check_output_path``
validates a path before any work; the CLI calls it before training.
"""
from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import math
import os
import platform
import tempfile
from typing import Any

from .harness import ParityReport, StepDifference
from .tolerance import Difference
from .validation import fail

SCHEMA = "nnparity.compare-report"
#: bumped whenever a key is added, removed or changes meaning
SCHEMA_VERSION = 1
#: how a non-finite number is written in the JSON
NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: distributions whose version the report records (besides Python)
LIBRARIES = ("numpy", "torch", "jax", "nnparity")


# ------------------------------------------------------------------------ JSON

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


def _difference(d: Difference) -> dict:
    return {"max_abs": number(d.max_abs), "max_rel": number(d.max_rel), "ok": bool(d.ok)}


def _step(d: StepDifference) -> dict:
    return {"step": int(d.step), "max_abs": number(d.max_abs), "max_rel": number(d.max_rel),
            "ok": bool(d.ok)}


def backend_names(report: ParityReport) -> list[str]:
    """The compared backends: the reference first, then the others in compared order."""
    return [report.reference] + [p.backend for p in report.parity]


def verdict_text(report: ParityReport) -> str:
    """"PARITY OK" or "PARITY FAILED: torch, jax", as the text report's last line."""
    failed = [p.backend for p in report.parity if not p.ok]
    return "PARITY OK" if not failed else "PARITY FAILED: " + ", ".join(failed)


def report_to_dict(report: ParityReport) -> dict:
    """The report as a JSON-ready dict (schema: docs/compare-report.md)."""
    check_report(report)
    parity = {p.backend: p for p in report.parity}
    backends = {}
    for name in backend_names(report):
        is_reference = name == report.reference
        result = report.results.get(name)
        backends[name] = {
            "reference": is_reference,
            "seconds": number(report.reference_seconds if is_reference
                              else parity[name].seconds),
            "diverged_at": (report.reference_diverged_at if is_reference
                            else parity[name].diverged_at),
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
                      "atol": number(report.tolerance.atol)},
        "reference": report.reference,
        "record_every": int(report.record_every),
        "backends": backends,
        "parity": {
            p.backend: {
                "ok": bool(p.ok),
                "diagnosis": p.diagnosis,
                "first_step_out": p.first_step_out,
                "differences": {q: _difference(d) for q, d in p.differences.items()},
                "trajectory": [_step(d) for d in p.trajectory],
                "teacher": [_step(d) for d in p.teacher],
            } for p in report.parity},
        "verdict": {"ok": bool(report.ok),
                    "failed": [p.backend for p in report.parity if not p.ok],
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


# ---------------------------------------------------------------------- files

def check_output_path(name: str, path: Any, suffix: str | None = None) -> str:
    """``path`` as a str if a file can be written there: a str or os.PathLike, not a
    directory, in an existing writable directory, ending in ``suffix`` if given."""
    if not isinstance(path, (str, os.PathLike)):
        fail(name, path, "a file path (str or os.PathLike)", TypeError)
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        fail(name, path, "a non-empty file path")
    if suffix is not None and not path.lower().endswith(suffix):
        fail(name, path, f"a file name ending in {suffix}")
    if os.path.isdir(path):
        fail(name, path, "a file path, not a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        fail(name, path, f"a path in an existing directory ({directory} does not exist)")
    if not os.access(directory, os.W_OK | os.X_OK):
        fail(name, path, f"a path in a writable directory ({directory} is not writable)")
    return path


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: the
    file is either the old one or the complete new one, never half written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(report: ParityReport, path) -> None:
    """Write ``to_json(report)`` to ``path`` atomically."""
    check_report(report)
    path = check_output_path("path", path)
    write_atomic(path, to_json(report).encode("utf-8"))


def write_plot(report: ParityReport, path) -> bytes:
    """Draw ``plots.plot_report(report)`` to the PNG file ``path``; returns the PNG bytes."""
    from .plots import import_pyplot, plot_report

    check_report(report)
    path = check_output_path("path", path, suffix=".png")
    import_pyplot()
    png = plot_report(report)
    write_atomic(path, png)
    return png


def write_html(report: ParityReport, path, png: bytes | None = None) -> None:
    """Write ``render_html(report, png)`` to ``path`` atomically; the plot is drawn
    (matplotlib needed) unless its PNG bytes are given."""
    from .plots import import_pyplot, plot_report

    check_report(report)
    path = check_output_path("path", path)
    if png is None:
        import_pyplot()
        png = plot_report(report)
    write_atomic(path, render_html(report, png).encode("utf-8"))


def check_outputs(json_path=None, plot_path=None, html_path=None) -> dict[str, str]:
    """The command line's report paths, checked before any work: flag -> path.

    Each path must be writable (``check_output_path``; ``--plot`` ends in .png),
    no two may name the same file, and ``--plot``/``--html`` need matplotlib
    (``MissingFrameworkError`` naming the ``plot`` extra)."""
    from .plots import import_pyplot

    given = (("--json", json_path, None), ("--plot", plot_path, ".png"),
             ("--html", html_path, None))
    outputs = {flag: check_output_path(flag, path, suffix)
               for flag, path, suffix in given if path is not None}
    seen: dict[str, str] = {}
    for flag, path in outputs.items():
        real = os.path.realpath(path)
        if real in seen:
            fail(flag, path, f"a different file from {seen[real]}'s")
        seen[real] = flag
    if "--plot" in outputs or "--html" in outputs:
        import_pyplot()
    return outputs


def write_outputs(report: ParityReport, outputs: dict[str, str]) -> list[str]:
    """Write the files ``check_outputs`` accepted (the plot is drawn once for
    --plot and --html); returns the paths written."""
    png = None
    if "--json" in outputs:
        write_json(report, outputs["--json"])
    if "--plot" in outputs:
        png = write_plot(report, outputs["--plot"])
    if "--html" in outputs:
        write_html(report, outputs["--html"], png)
    return list(outputs.values())


# ----------------------------------------------------------------------- HTML

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em;
       color: #1a1a1a; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-family: ui-monospace, monospace; }
tr.fail td { background: #fde2e2; }
.verdict { font-size: 1.4em; font-weight: bold; padding: 0.4em 0.8em; display: inline-block; }
.verdict.ok { background: #dff3df; color: #14591a; }
.verdict.failed { background: #fde2e2; color: #8a1010; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    """A difference or a time for the page: 3 significant digits; inf/nan spelled out."""
    value = number(value)
    if isinstance(value, str):
        return value
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _row(cells, failed: bool = False) -> str:
    """One <tr>; each cell is (text, is_number) and is escaped here."""
    tds = "".join(f'<td class="num">{_esc(t)}</td>' if num else f"<td>{_esc(t)}</td>"
                  for t, num in cells)
    return f'<tr class="fail">{tds}</tr>' if failed else f"<tr>{tds}</tr>"


def _table(table_id: str, header, rows) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    return (f'<table id="{_esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _differences_table(report: ParityReport) -> str:
    rows = []
    for p in report.parity:
        if not p.differences:
            rows.append(_row([(p.backend, False), ("(none)", False), ("", True), ("", True),
                              ("yes" if p.ok else "NO", False)], failed=not p.ok))
        for quantity, d in p.differences.items():
            rows.append(_row([(p.backend, False), (quantity, False), (_fmt(d.max_abs), True),
                              (_fmt(d.max_rel), True), ("yes" if d.ok else "NO", False)],
                             failed=not d.ok))
    return _table("differences", ["backend", "quantity", "max abs", "max rel", "ok"], rows)


def _worst(points) -> str:
    if not points:
        return "(none)"
    worst = max(points, key=lambda d: d.max_rel)
    return f"{_fmt(worst.max_rel)} at step {worst.step}"


def _summary_table(report: ParityReport) -> str:
    rows = [_row([(p.backend, False), (str(len(p.trajectory)), True), (_worst(p.trajectory), True),
                  ("none" if p.first_step_out is None else str(p.first_step_out), True),
                  (str(len(p.teacher)), True), (_worst(p.teacher), True),
                  (p.diagnosis, False), ("yes" if p.ok else "NO", False)], failed=not p.ok)
            for p in report.parity]
    return _table("summary", ["backend", "snapshots", "worst free-running max rel",
                              "first step out", "teacher-forced steps",
                              "worst teacher-forced max rel", "diagnosis", "ok"], rows)


def _backends_table(doc: dict) -> str:
    rows = []
    for name, b in doc["backends"].items():
        metrics = b["metrics"] or {}
        rows.append(_row([(name, False), ("reference" if b["reference"] else "", False),
                          (_fmt(metrics["test_loss"]) if "test_loss" in metrics else "n/a", True),
                          (_fmt(metrics["test_accuracy"]) if "test_accuracy" in metrics
                           else "n/a", True),
                          (_fmt(b["seconds"]), True),
                          ("" if b["diverged_at"] is None else str(b["diverged_at"]), True)],
                         failed=b["diverged_at"] is not None))
    return _table("backends", ["backend", "role", "test loss", "test accuracy",
                               "train seconds", "diverged at step"], rows)


def render_html(report: ParityReport, png: bytes | None) -> str:
    """One self-contained page (no external resources): verdict, tolerance, the
    differences table, trajectory and teacher-forced summary with the diagnosis,
    per-backend metrics, the plot as a data: URI (omitted when ``png`` is None),
    the spec and the library versions. Every text is escaped."""
    check_report(report)
    if png is not None and not isinstance(png, bytes):
        fail("png", png, "PNG bytes or None", TypeError)
    doc = report_to_dict(report)
    verdict = doc["verdict"]["text"]
    tol = report.tolerance
    if png is None:
        figure = "<p>(plot omitted)</p>"
    else:
        data = base64.b64encode(png).decode("ascii")
        figure = (f'<img id="plot" alt="loss per step of every backend, and the difference to '
                  f'{_esc(report.reference)} per step" src="data:image/png;base64,{data}">')
    versions = _table("versions", ["library", "version"],
                      [_row([(k, False), ("not installed" if v is None else v, False)])
                       for k, v in doc["versions"].items()])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nnparity compare: {_esc(verdict)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>nnparity parity report</h1>
<p id="verdict" class="verdict {'ok' if report.ok else 'failed'}">{_esc(verdict)}</p>
<p>Reference: <b>{_esc(report.reference)}</b>. Tolerance ({_esc(report.spec.dtype)}):
rtol {_esc(f"{tol.rtol:g}")}, atol {_esc(f"{tol.atol:g}")}; an element matches when
|a &minus; e| &le; atol + rtol&middot;|e|. A trajectory snapshot every
{_esc(report.record_every)} steps.</p>
<h2>Final differences to {_esc(report.reference)}</h2>
{_differences_table(report)}
<h2>Trajectory, teacher-forced steps and diagnosis</h2>
{_summary_table(report)}
<h2>Backends</h2>
{_backends_table(doc)}
<h2>Loss and difference per step</h2>
{figure}
<h2>Specification</h2>
<pre id="spec">{_esc(dumps(doc["spec"]))}</pre>
<h2>Environment</h2>
{versions}
<p><small>{_esc(SCHEMA)} version {_esc(SCHEMA_VERSION)}; the same data as
<code>nnparity compare --json</code> (docs/compare-report.md).</small></p>
</body>
</html>
"""
