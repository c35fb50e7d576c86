"""The self-contained HTML page of a parity comparison (``nnparity compare --html``):
verdict, tables, diagnosis and the plot as a ``data:`` PNG, no external resources."""
from __future__ import annotations

import base64
import html

from nnparity.shared.parity.harness import ParityReport
from nnparity.shared.core.tolerance import ROUNDING_MULTIPLE
from nnparity.shared.report.as_json import (
    SCHEMA,
    SCHEMA_VERSION,
    check_report,
    dumps,
    number,
    report_to_dict,
)
from nnparity.shared.core.validation import fail

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
                              ("", True), ("", False), ("yes" if p.ok else "NO", False)],
                             failed=not p.ok))
        for quantity, d in p.differences.items():
            rows.append(_row([(p.backend, False), (quantity, False), (_fmt(d.max_abs), True),
                              (_fmt(d.max_rel), True), (_fmt(d.used), True),
                              ("" if d.ok else str(d.worst), False),
                              ("yes" if d.ok else "NO", False)],
                             failed=not d.ok))
    return _table("differences", ["backend", "quantity", "max abs", "max rel",
                                  "allowance used", "worst element (when failed)", "ok"], rows)


def _worst(points) -> str:
    if not points:
        return "(none)"
    worst = max(points, key=lambda d: d.used)
    return f"{_fmt(worst.max_rel)} at step {worst.step} (allowance used {_fmt(worst.used)})"


def _summary_table(report: ParityReport) -> str:
    rows = [_row([(p.backend, False), (str(len(p.trajectory)), True), (_worst(p.trajectory), True),
                  ("none" if p.first_step_out is None else str(p.first_step_out), True),
                  (str(len(p.teacher)), True), (_worst(p.teacher), True),
                  (p.diagnosis, False), ("yes" if p.ok else "NO", False)], failed=not p.ok)
            for p in report.parity]
    return _table("summary", ["backend", "snapshots", "worst free-running snapshot",
                              "first step out", "teacher-forced steps",
                              "closest teacher-forced step", "diagnosis", "ok"], rows)


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
rtol {_esc(f"{tol.rtol:g}")}, atol {_esc(f"{tol.atol:g}")}; a tensor matches when
max|a &minus; e| &le; atol + rtol&middot;max|e| (in a teacher-forced step, plus
{_esc(f"{ROUNDING_MULTIPLE:g}")} times its measured rounding sensitivity), each step's
loss when |a &minus; e| &le; atol + rtol&middot;|e|. A trajectory snapshot every
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
