"""Reports of a parity comparison, as files: versioned JSON, the plot, one HTML page.

The public face of the report modules (``nnparity.shared.report.outputs``):

- the JSON document: ``report_to_dict``, ``to_json`` (``report_json``; the keys
  are documented in docs/compare-report.md);
- the page: ``render_html`` (``report_html``);
- the files: ``write_json``, ``write_plot``, ``write_html``, each written
  atomically by ``files.write_atomic`` (a temporary file in the same directory,
  then ``os.replace``), so an interrupted write never leaves a half-written
  report; and, for the command line, ``check_outputs`` (every path checked with
  ``files.check_output_path`` before any training) and ``write_outputs``.
"""
from __future__ import annotations

import os

from nnparity.shared.io.files import check_output_path, write_atomic
from nnparity.shared.parity.harness import ParityReport
from nnparity.shared.report.as_html import render_html
from nnparity.shared.report.plots import import_pyplot, plot_report
from nnparity.shared.report.as_json import (
    LIBRARIES,
    NONFINITE,
    SCHEMA,
    SCHEMA_VERSION,
    backend_names,
    check_report,
    dumps,
    library_versions,
    number,
    report_to_dict,
    to_json,
    verdict_text,
)
from nnparity.shared.core.validation import fail

__all__ = [
    "LIBRARIES", "NONFINITE", "SCHEMA", "SCHEMA_VERSION", "backend_names", "check_outputs",
    "check_report", "dumps", "library_versions", "number", "render_html", "report_to_dict",
    "to_json", "verdict_text", "write_html", "write_json", "write_outputs", "write_plot",
]


def write_json(report: ParityReport, path) -> None:
    """Write ``to_json(report)`` to ``path`` atomically."""
    check_report(report)
    path = check_output_path("path", path)
    data = to_json(report).encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def write_plot(report: ParityReport, path) -> bytes:
    """Draw ``plots.plot_report(report)`` to the PNG file ``path``; returns the PNG bytes."""
    check_report(report)
    path = check_output_path("path", path, suffix=".png")
    png = plot_report(report)
    write_atomic(path, lambda f: f.write(png))
    return png


def write_html(report: ParityReport, path, png: bytes | None = None) -> None:
    """Write ``render_html(report, png)`` to ``path`` atomically; the plot is drawn
    (matplotlib needed) unless its PNG bytes are given."""
    check_report(report)
    path = check_output_path("path", path)
    if png is None:
        png = plot_report(report)
    data = render_html(report, png).encode("utf-8")
    write_atomic(path, lambda f: f.write(data))


def check_outputs(json_path=None, plot_path=None, html_path=None) -> dict[str, str]:
    """The command line's report paths, checked before any work: flag -> path.

    Each path must be writable (``check_output_path``; ``--plot`` ends in .png),
    no two may name the same file, and ``--plot``/``--html`` need matplotlib
    (``MissingFrameworkError`` naming the ``plot`` extra)."""
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
