"""Reports of ``compare``: the JSON schema, the plot, the HTML page and their CLI flags.

- JSON: strict (no NaN/Infinity tokens), round-trips through ``json.loads``,
  its keys and value types are exactly the ones docs/compare-report.md lists,
  its numbers are the ParityReport's, non-finite numbers are strings.
- A failing comparison (torch perturbed by 1e-6) has verdict false in the JSON
  and a visible failure on the page; a diverged comparison still reports.
- The PNG is a real PNG of the documented size; the page has no external
  references, escapes its text, and opens in headless Chromium with its tables.
- CLI: --json/--plot/--html write files and keep the exit code (0 ok, 1 failed);
  bad paths and a missing matplotlib exit 2 with one stderr line before training.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import perturb_torch, require, require_program
from nnparity.shared import SGD, NetworkSpec, compare, notebook_data, notebook_spec
from nnparity.shared.report import outputs as reports
from nnparity.shared.cli.main import main
from nnparity.shared.core.tolerance import (ROUNDING_MULTIPLE, ROUNDING_SAMPLES, ROUNDING_ULPS,
                                      Difference)

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see conftest

DOC = Path(__file__).resolve().parent.parent / "docs" / "compare-report.md"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: the plot's size in pixels: figsize (13, 8) at dpi 100
PLOT_SIZE = (1300, 800)


@pytest.fixture(scope="module")
def ok_report():
    require("torch")
    require("jax")
    return compare(notebook_spec().replace(epochs=20), notebook_data())


@pytest.fixture(scope="module")
def failed_report():
    require("torch")
    with pytest.MonkeyPatch.context() as m:
        perturb_torch(m)
        return compare(notebook_spec().replace(epochs=20), notebook_data(),
                       backends=("numpy", "torch"))


@pytest.fixture(scope="module")
def diverged_report():
    """The notebook without its ReLU at lr=1e-3: every backend diverges at step 5."""
    require("torch")
    spec = notebook_spec().replace(activation="identity", optimizer=SGD(lr=1e-3), epochs=5)
    return compare(spec, notebook_data(), backends=("numpy", "torch"))


def strict_loads(text: str):
    """json.loads that rejects the NaN/Infinity tokens strict JSON does not have."""
    def reject(token):
        raise AssertionError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=reject)


# ------------------------------------------------------------------------- JSON

def test_json_round_trips_and_is_strict(ok_report, tmp_path):
    path = tmp_path / "r.json"
    reports.write_json(ok_report, path)
    doc = strict_loads(path.read_text(encoding="utf-8"))
    assert doc == reports.report_to_dict(ok_report)
    assert doc["schema"] == "nnparity.compare-report" and doc["schema_version"] == 4
    assert list(doc["backends"]) == ["numpy", "torch", "jax"]
    assert list(doc["parity"]) == ["torch", "jax"]
    assert doc["verdict"] == {"ok": True, "failed": [], "text": "PARITY OK"}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]        # no temporary left


def documented_keys() -> dict[str, set[str]]:
    """docs/compare-report.md's key table: key path -> allowed JSON types."""
    rows = re.findall(r"^\| `([^`]+)` \| ([a-z, ]+) \|", DOC.read_text(encoding="utf-8"),
                      re.MULTILINE)
    assert rows, "no key table found in docs/compare-report.md"
    keys = {key: {t.strip() for t in types.split(",")} for key, types in rows}
    assert len(keys) == len(rows), "a key is documented twice"
    return keys


#: objects whose keys are names (backends, quantities, metrics), not fixed keys
MAPS = {"backends": "<backend>", "parity": "<backend>", "differences": "<quantity>",
        "metrics": "<metric>"}


def produced_keys(value, path: str = "", name: str | None = None) -> dict[str, list]:
    """Every key path in a report dict (as the doc writes them) -> the values there.
    ``spec`` is ``NetworkSpec.to_dict()`` and documented as one object."""
    found: dict[str, list] = {}
    children = []
    if isinstance(value, dict) and path != "spec":
        children = [((f"{path}." if path else "") + MAPS.get(name, key), key, v)
                    for key, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[]", None, v) for v in value]
    for child, key, v in children:
        found.setdefault(child, []).append(v)
        for deeper, values in produced_keys(v, child, key).items():
            found.setdefault(deeper, []).extend(values)
    return found


def json_type(value, documented: set[str]) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "number" if "number" in documented and value in reports.NONFINITE else "string"
    return "array" if isinstance(value, list) else "object"


def test_documented_keys_are_the_produced_keys(ok_report, failed_report, diverged_report):
    """The doc's table cannot drift: together, an ok, a failed and a diverged report
    produce exactly the documented keys, and every value has a documented type."""
    documented = documented_keys()
    produced: dict[str, list] = {}
    for report in (ok_report, failed_report, diverged_report):
        for key, values in produced_keys(strict_loads(reports.to_json(report))).items():
            produced.setdefault(key, []).extend(values)
    assert sorted(set(produced) - set(documented)) == [], "produced but not documented"
    assert sorted(set(documented) - set(produced)) == [], "documented but never produced"
    for key, values in produced.items():
        types = {json_type(v, documented[key]) for v in values}
        assert types <= documented[key], (key, types, documented[key])


def test_json_numbers_are_the_reports(ok_report):
    doc = strict_loads(reports.to_json(ok_report))
    assert NetworkSpec.from_dict(doc["spec"]) == ok_report.spec
    assert doc["tolerance"] == {"dtype": "float64", "rtol": ok_report.tolerance.rtol,
                                "atol": ok_report.tolerance.atol, "rounding_ulps": ROUNDING_ULPS,
                                "rounding_samples": ROUNDING_SAMPLES,
                                "rounding_multiple": ROUNDING_MULTIPLE}
    assert doc["reference"] == "numpy" and doc["record_every"] == ok_report.record_every
    for name, entry in doc["backends"].items():
        result = ok_report.results[name]
        assert entry["losses"] == result.losses.tolist()               # exactly, every step
        assert entry["metrics"] == result.metrics
        assert entry["diverged_at"] is None and entry["reference"] == (name == "numpy")
    assert doc["backends"]["numpy"]["seconds"] == ok_report.reference_seconds
    for p in ok_report.parity:
        entry = doc["parity"][p.backend]
        assert doc["backends"][p.backend]["seconds"] == p.seconds
        assert (entry["ok"], entry["diagnosis"], entry["first_step_out"]) == (
            p.ok, p.diagnosis, p.first_step_out)
        assert entry["differences"] == {q: as_json(d) for q, d in p.differences.items()}
        assert entry["trajectory"] == [as_json(d) for d in p.trajectory]
        assert entry["teacher"] == [as_json(d) for d in p.teacher]
        assert len(entry["trajectory"]) == 40 and 0 < len(entry["teacher"]) <= 50


def as_json(d) -> dict:
    """A difference's fields as JSON has them (tuples become lists; finite numbers)."""
    return json.loads(json.dumps(dataclasses.asdict(d), allow_nan=False))


def test_non_finite_numbers_are_strings_not_replaced(ok_report):
    p = ok_report.parity[0]
    differences = {**p.differences, "0.weight": Difference(math.inf, math.nan, False)}
    broken = dataclasses.replace(ok_report, parity=(
        dataclasses.replace(p, differences=differences, ok=False),) + ok_report.parity[1:])
    doc = strict_loads(reports.to_json(broken))
    assert doc["parity"][p.backend]["differences"]["0.weight"] == {
        "max_abs": "inf", "max_rel": "nan", "ok": False, "used": 0.0, "worst": None}
    assert doc["verdict"]["ok"] is False and doc["verdict"]["failed"] == [p.backend]
    assert [reports.number(x) for x in (-math.inf, 0.0, 1.5)] == ["-inf", 0.0, 1.5]


def test_failing_comparison_has_verdict_false(failed_report):
    doc = strict_loads(reports.to_json(failed_report))
    assert doc["verdict"] == {"ok": False, "failed": ["torch"],
                              "text": "PARITY FAILED: torch"}
    torch_entry = doc["parity"]["torch"]
    assert torch_entry["ok"] is False
    assert torch_entry["differences"]["0.weight"]["ok"] is False
    assert torch_entry["differences"]["0.bias"]["ok"] is True


def test_diverged_comparison_reports_nulls(diverged_report):
    doc = strict_loads(reports.to_json(diverged_report))
    for entry in doc["backends"].values():
        assert entry["diverged_at"] == 5
        assert entry["metrics"] is None and entry["losses"] is None
    assert doc["parity"]["torch"]["differences"] == {}
    assert doc["verdict"]["ok"] is True                       # both diverged at step 5


def test_the_docs_python_example_runs():
    require("torch")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 1
    # the doc's own example is the code under test
    exec(compile(blocks[0], "docs/compare-report.md", "exec"), {})   # noqa: S102


def test_library_versions():
    versions = reports.library_versions()
    assert list(versions) == ["python", "numpy", "torch", "jax", "nnparity"]
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    import numpy
    assert versions["numpy"] == numpy.__version__


@pytest.mark.parametrize("call, named", [
    (lambda p: reports.write_json("not a report", p), "report='not a report'"),
    (lambda p: reports.write_json(None, p), "report=None"),
])
def test_bad_report_argument_is_a_type_error(call, named, tmp_path):
    with pytest.raises(TypeError, match=re.escape(named)):
        call(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path, error, allowed", [
    (3, TypeError, "a file path"),
    ("", ValueError, "a non-empty file path"),
    ("{tmp}", ValueError, "not a directory"),
    ("{tmp}/missing/r.json", ValueError, "an existing directory"),
])
def test_bad_path_is_rejected_before_writing(ok_report, tmp_path, path, error, allowed):
    if isinstance(path, str):
        path = path.format(tmp=tmp_path)
    with pytest.raises(error, match=f"path=.* is not allowed: expected .*{allowed}"):
        reports.write_json(ok_report, path)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_when_the_write_fails(ok_report, tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        reports.write_json(ok_report, path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]       # temporary removed


# ------------------------------------------------------------------------- plot

def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("which", ["ok", "failed", "diverged"])
def test_plot_is_a_png_of_the_documented_size(which, ok_report, failed_report,
                                              diverged_report, tmp_path):
    require("matplotlib")
    report = {"ok": ok_report, "failed": failed_report, "diverged": diverged_report}[which]
    path = tmp_path / "r.png"
    png = reports.write_plot(report, path)
    assert path.read_bytes() == png and len(png) > 10_000
    assert png_size(png) == PLOT_SIZE
    import matplotlib.image
    height, width = matplotlib.image.imread(path).shape[:2]
    assert (width, height) == PLOT_SIZE


def test_plot_path_must_end_in_png(ok_report, tmp_path):
    with pytest.raises(ValueError, match=r"path=.*r\.svg.* ending in \.png"):
        reports.write_plot(ok_report, tmp_path / "r.svg")


# ------------------------------------------------------------------------- HTML

class Tables(HTMLParser):
    """The text of every table cell by table id, and of every element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.text_by_id: dict[str, str] = {}
        self.row_classes: dict[str, list[str]] = {}
        self._table = self._cell = None
        self._open_ids: list[tuple[str, str]] = []         # (tag, id) still open
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append(attrs[key])
        if "id" in attrs:
            self._open_ids.append((tag, attrs["id"]))
            self.text_by_id.setdefault(attrs["id"], "")
            if tag == "table":
                self._table = attrs["id"]
                self.tables[self._table] = []
                self.row_classes[self._table] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
            self.row_classes[self._table].append(attrs.get("class") or "")
        if tag in ("td", "th") and self._table:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(self._cell.strip())
            self._cell = None
        if tag == "table":
            self._table = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        for _, element_id in self._open_ids:
            self.text_by_id[element_id] += data


def parse(page: str) -> Tables:
    tables = Tables()
    tables.feed(page)
    return tables


def body_rows(tables: Tables, table_id: str) -> list[list[str]]:
    return tables.tables[table_id][1:]                         # without the header


@pytest.fixture(scope="module")
def pages(ok_report, failed_report, diverged_report, tmp_path_factory):
    """name -> path of the HTML page of each report."""
    require("matplotlib")
    folder = tmp_path_factory.mktemp("pages")
    paths = {}
    for name, report in (("ok", ok_report), ("failed", failed_report),
                         ("diverged", diverged_report)):
        paths[name] = folder / f"{name}.html"
        reports.write_html(report, paths[name])
    return paths


def test_html_has_the_tables_and_verdict(pages):
    page = parse(pages["ok"].read_text(encoding="utf-8"))
    assert page.text_by_id["verdict"].strip() == "PARITY OK"
    rows = body_rows(page, "differences")
    assert [r[:2] for r in rows] == [[b, q] for b in ("torch", "jax")
                                     for q in ("0.weight", "0.bias", "2.weight", "2.bias",
                                               "predictions", "losses")]
    assert all(r[-1] == "yes" for r in rows)
    assert [r[0] for r in body_rows(page, "summary")] == ["torch", "jax"]
    assert [r[0] for r in body_rows(page, "backends")] == ["numpy", "torch", "jax"]
    assert '"sizes": [2, 4, 1]' in page.text_by_id["spec"]


def test_html_shows_a_failure(pages):
    text = pages["failed"].read_text(encoding="utf-8")
    page = parse(text)
    assert page.text_by_id["verdict"].strip() == "PARITY FAILED: torch"
    assert 'class="verdict failed"' in text
    w0 = [r for r in body_rows(page, "differences") if r[1] == "0.weight"]
    assert w0 and w0[0][-1] == "NO"
    failing = [c for c, r in zip(page.row_classes["differences"][1:],
                                 body_rows(page, "differences"), strict=True) if r[-1] == "NO"]
    assert failing and set(failing) == {"fail"}
    assert body_rows(page, "summary")[0][-1] == "NO"


def test_html_of_a_diverged_comparison(pages):
    page = parse(pages["diverged"].read_text(encoding="utf-8"))
    assert [r[-1] for r in body_rows(page, "backends")] == ["5", "5"]
    assert "diverged at step 5" in body_rows(page, "summary")[0][-2]


@pytest.mark.parametrize("name", ["ok", "failed", "diverged"])
def test_html_is_self_contained(pages, name):
    text = pages[name].read_text(encoding="utf-8")
    page = parse(text)
    assert page.sources and all(s.startswith("data:image/png;base64,") for s in page.sources)
    assert "http:" not in text and "https:" not in text
    for tag in ("<script", "<link", "<iframe", "@import", "url("):
        assert tag not in text.lower()


def test_html_escapes_text(ok_report):
    p = ok_report.parity[0]
    hostile = dataclasses.replace(ok_report, parity=(
        dataclasses.replace(p, diagnosis='<script>alert("x")</script> & <em>'),)
        + ok_report.parity[1:])
    text = reports.render_html(hostile, png=None)
    assert "<script" not in text and "<em>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;em&gt;" in text
    assert parse(text).tables["summary"][1][-2] == '<script>alert("x")</script> & <em>'


def chromium(*args, tmp_path) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile and no network services."""
    program = require_program("chromium")
    command = [program, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.parametrize("name, verdict", [("ok", "PARITY OK"),
                                           ("failed", "PARITY FAILED: torch")])
def test_html_opens_in_headless_chromium(pages, name, verdict, tmp_path):
    dom = parse(chromium("--dump-dom", pages[name].as_uri(), tmp_path=tmp_path).stdout)
    assert dom.text_by_id["verdict"].strip() == verdict
    rows = body_rows(dom, "differences")
    backends = ["torch", "jax"] if name == "ok" else ["torch"]
    assert sorted({r[0] for r in rows}) == sorted(backends) and len(rows) == 6 * len(backends)
    assert ("NO" in [r[-1] for r in rows]) == (name == "failed")
    assert [r[0] for r in body_rows(dom, "backends")] == ["numpy"] + backends
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2400", pages[name].as_uri(),
             tmp_path=tmp_path)
    assert png_size(shot.read_bytes()) == (1280, 2400)


# -------------------------------------------------------------------------- CLI

def test_cli_writes_json_plot_and_html(tmp_path, capsys):
    require("torch")
    require("matplotlib")
    paths = {flag: tmp_path / name for flag, name in
             (("--json", "r.json"), ("--plot", "r.png"), ("--html", "r.html"))}
    args = ["compare", "--backends", "numpy", "torch", "--epochs", "5"]
    assert main(args + [x for flag, path in paths.items() for x in (flag, str(path))]) == 0
    out = capsys.readouterr().out
    assert "verdict: PARITY OK" in out
    assert all(f"wrote {path}" in out for path in paths.values())
    doc = strict_loads(paths["--json"].read_text(encoding="utf-8"))
    assert doc["verdict"]["ok"] is True and doc["spec"]["epochs"] == 5
    assert png_size(paths["--plot"].read_bytes()) == PLOT_SIZE
    assert "PARITY OK" in paths["--html"].read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json", "r.png"]


def test_cli_writes_the_report_and_exits_1_when_parity_fails(tmp_path, monkeypatch, capsys):
    require("torch")
    perturb_torch(monkeypatch)
    path = tmp_path / "r.json"
    assert main(["compare", "--backends", "numpy", "torch", "--epochs", "5",
                 "--json", str(path)]) == 1
    assert "PARITY FAILED: torch" in capsys.readouterr().out
    assert strict_loads(path.read_text(encoding="utf-8"))["verdict"]["ok"] is False


def no_training(*args, **kwargs):
    raise AssertionError("compare ran although the report options were bad")


@pytest.mark.parametrize("flags, named", [
    (["--json", "{tmp}/missing/r.json"], "--json="),
    (["--html", "{tmp}/missing/r.html"], "--html="),
    (["--plot", "{tmp}/missing/r.png"], "--plot="),
    (["--plot", "{tmp}/r.svg"], "ending in .png"),
    (["--json", "{tmp}"], "not a directory"),
    (["--json", "{tmp}/r", "--html", "{tmp}/r"], "a different file from --json's"),
])
def test_cli_bad_report_path_exits_2_before_training(flags, named, tmp_path, monkeypatch,
                                                     capsys):
    from nnparity.shared.parity import harness
    monkeypatch.setattr(harness, "compare", no_training)
    flags = [f.format(tmp=tmp_path) for f in flags]
    assert main(["compare"] + flags) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and named in captured.err, captured.err
    assert captured.err.startswith("nnparity: error: ") and "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag, name", [("--plot", "r.png"), ("--html", "r.html")])
def test_cli_plot_and_html_without_matplotlib_name_the_extra(flag, name, tmp_path,
                                                            monkeypatch, capsys):
    from nnparity.shared.parity import harness
    monkeypatch.setattr(harness, "compare", no_training)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    assert main(["compare", flag, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nnparity[plot]" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_json_needs_no_matplotlib(tmp_path, monkeypatch, capsys):
    require("torch")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "r.json"
    assert main(["compare", "--backends", "numpy", "torch", "--epochs", "2",
                 "--json", str(path)]) == 0
    assert strict_loads(path.read_text(encoding="utf-8"))["schema_version"] == 4


def test_cli_write_failure_after_training_is_one_line(tmp_path, monkeypatch, capsys):
    require("torch")

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(reports, "write_atomic", full_disk)
    assert main(["compare", "--backends", "numpy", "torch", "--epochs", "2",
                 "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not write the report" in err
    assert "No space left on device" in err


# ------------------------------------------------------------------------- data parallel

@pytest.fixture(scope="module")
def replicas_report():
    """The notebook on 2 replicas (NumPy threads: no process is launched)."""
    return compare(notebook_spec().replace(epochs=20), notebook_data(), backends=("numpy",),
                   replicas=2)


def test_a_data_parallel_report_names_its_runs(replicas_report, tmp_path):
    doc = strict_loads(reports.to_json(replicas_report))
    assert (doc["replicas"], doc["sync_batch_norm"]) == (2, True)
    assert list(doc["backends"]) == ["numpy", "numpy x2"]
    assert doc["parity"]["numpy x2"]["against"] == "numpy" and doc["verdict"]["ok"]
    assert set(produced_keys(doc)) <= set(documented_keys())
    text = str(replicas_report)
    assert "data parallel: the runs 'x2' trained on 2 replicas, synchronised BatchNorm" in text
    assert "diagnosis numpy x2: ok" in text and text.endswith("PARITY OK")


def test_a_data_parallel_comparison_against_its_own_backend_is_named_so(tmp_path):
    require("torch")
    report = compare(notebook_spec().replace(epochs=5), notebook_data(),
                     backends=("numpy", "torch"), replicas=2)
    doc = strict_loads(reports.to_json(report))
    assert list(doc["parity"]) == ["torch", "numpy x2", "torch x2", "torch x2 vs torch"]
    assert [doc["parity"][k]["against"] for k in doc["parity"]] == ["numpy", "numpy", "numpy",
                                                                    "torch"]
    assert list(doc["backends"]) == ["numpy", "torch", "numpy x2", "torch x2"]
    assert report.ok
    html = tmp_path / "r.html"
    reports.write_html(report, html)
    assert "torch x2 vs torch" in html.read_text(encoding="utf-8")
