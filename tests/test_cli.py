"""The command line: output, exit codes, one-line errors."""
import json
import subprocess
import sys

import pytest

from nnparity.shared import NetworkSpec, notebook_spec
from nnparity.shared.cli.main import main
from conftest import perturb_torch, require


def run_cli(*args, stdin=None):
    """Run the real console entry point in a subprocess: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_train_prints_the_notebook_results(capsys):
    assert main(["train"]) == 0
    out = capsys.readouterr().out
    assert "hidden weight: [[ 1.77287337 -0.19123894]" in out
    assert "output bias: [0.03423008]" in out
    assert "predictions: [[165.324277]]" in out
    assert "error: 0.10515557100" in out


@pytest.mark.parametrize("argv", [
    pytest.param(["train", "--bogus"], id="unknown-flag"),
    pytest.param(["train", "--backend", "tensorflow"], id="unknown-backend"),
    pytest.param(["compare", "--backends"], id="flag-missing-value"),
    pytest.param([], id="no-command"),
    pytest.param(["train", "--spec", "/nonexistent/spec.json"], id="missing-spec-file"),
])
def test_bad_flags_give_one_line_and_exit_2(argv):
    code, out, err = run_cli(*argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nnparity: error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("spec_text, named", [
    pytest.param('{"sizes": [2, 0, 1]}', "sizes[1]=0", id="zero-width"),
    pytest.param('{"sizes": [2, 4, 1], "optimizer": {"name": "sgd", "lr": -1}}', "SGD.lr=-1",
                 id="negative-lr"),
    pytest.param('{"sizes": [3, 4, 1]}', "x_train.shape", id="width-does-not-fit-data"),
    pytest.param('{"sizes": [2, 4, 1], "colour": "red"}', "colour", id="unknown-key"),
    pytest.param('{"sizes": [2, 4, 1]', "valid JSON", id="broken-json"),
    pytest.param("[" * 100_000 + "]" * 100_000, "nested too deeply", id="nested-too-deeply"),
])
def test_bad_spec_from_stdin_gives_one_line_and_exit_2(spec_text, named):
    code, out, err = run_cli("train", "--spec", "-", stdin=spec_text)
    assert code == 2
    assert err.count("\n") == 1 and named in err, err


def test_compare_reads_a_spec_file_and_passes(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(notebook_spec().replace(epochs=50).to_dict()))
    assert main(["compare", "--backends", "numpy", "torch", "jax", "--spec", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verdict: PARITY OK" in out
    assert out.count(" yes") == 12 and " NO" not in out


def test_compare_exits_1_when_parity_fails(monkeypatch, capsys):
    perturb_torch(monkeypatch)
    assert main(["compare", "--backends", "numpy", "torch"]) == 1
    assert "PARITY FAILED: torch" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "compare"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--spec" in capsys.readouterr().out


def test_spec_json_round_trips_through_the_cli(tmp_path, capsys):
    spec = NetworkSpec(sizes=(2, 3, 3, 1), activation=("relu", "identity"), batch_size=3,
                       epochs=5, shuffle=True, optimizer=notebook_spec().optimizer)
    path = tmp_path / "s.json"
    path.write_text(spec.to_json())
    assert main(["train", "--spec", str(path)]) == 0
    assert "hidden1 weight" in capsys.readouterr().out


@pytest.mark.slow
def test_activations_plot_writes_a_png(tmp_path, capsys):
    require("matplotlib")
    path = tmp_path / "act.png"
    assert main(["activations", "--plot", str(path), "--backends", "numpy", "torch", "jax"]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000          # 18 panels, not an empty canvas


def one_error_line(capsys, named):
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("nnparity: error: ") and err.count("\n") == 1, err
    assert named in err and "Traceback" not in err


def patch_plots(monkeypatch, **replacements):
    """Replace plotting functions where they are defined and where the CLI imported them."""
    import nnparity.shared.cli.main as cli_main
    from nnparity.shared.report import plots

    for name, replacement in replacements.items():
        for module in (plots, cli_main):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, replacement)


@pytest.mark.parametrize("path, named", [
    ("/nonexistent/x.png", ("--plot='/nonexistent/x.png' is not allowed: expected a path in "
                            "an existing directory")),
    ("{tmp}/x.txt", "expected a file name ending in .png"),
    ("{tmp}", "expected a file name ending in .png"),
    ("", "--plot='' is not allowed"),
])
def test_activations_bad_plot_path_fails_before_any_work(tmp_path, monkeypatch, capsys, path,
                                                         named):
    def no_work(*args):
        raise AssertionError("plotted before the path was checked")

    patch_plots(monkeypatch, plot_activations=no_work, import_pyplot=no_work)
    assert main(["activations", "--plot", path.format(tmp=tmp_path)]) == 2
    one_error_line(capsys, named)
    assert list(tmp_path.iterdir()) == []


def test_negative_control_activations_reaches_the_plot_with_a_good_path(tmp_path, monkeypatch,
                                                                         capsys):
    calls = []
    patch_plots(monkeypatch, plot_activations=lambda *args: calls.append(args),
                import_pyplot=lambda: None)
    assert main(["activations", "--plot", str(tmp_path / "x.png"), "--backends", "numpy"]) == 0
    assert calls == [(str(tmp_path / "x.png"), ["numpy"])]


BENCH_RESULT = {"repeats": 5, "notebook": {"numpy": 0.03}, "cold": {"numpy": 0.05},
                "peers": {}, "skipped": {}, "compare_cli_cold": 5.0,
                "compute": {"numpy": {"seconds": 1.0, "gflops": 40.0, "matmul_gflops": 50.0}}}


@pytest.mark.parametrize("path, named", [
    ("/nonexistent/x.json", ("--json='/nonexistent/x.json' is not allowed: expected a path "
                             "in an existing directory")),
    ("{tmp}", "--json='{tmp}' is not allowed: expected a file path, not a directory"),
    ("", "--json='' is not allowed: expected a non-empty file path"),
])
def test_bench_bad_json_path_fails_before_benchmarking(tmp_path, monkeypatch, capsys, path,
                                                       named):
    from nnparity.shared.bench import run as bench

    def no_benchmark(*args, **kwargs):
        raise AssertionError("benchmarked before --json was checked")

    monkeypatch.setattr(bench, "run", no_benchmark)
    assert main(["bench", "--backends", "numpy", "--json", path.format(tmp=tmp_path)]) == 2
    one_error_line(capsys, named.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_negative_control_bench_with_a_good_json_path_runs_and_writes(tmp_path, monkeypatch,
                                                                      capsys):
    from nnparity.shared.bench import run as bench

    monkeypatch.setattr(bench, "run", lambda backends, repeats: BENCH_RESULT)
    path = tmp_path / "b.json"
    assert main(["bench", "--backends", "numpy", "--json", str(path)]) == 0
    assert json.loads(path.read_text()) == BENCH_RESULT
    assert f"wrote {path}" in capsys.readouterr().out


def test_activations_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    assert main(["activations", "--plot", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nnparity[plot]" in err
    assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_spec_that_is_not_utf8_is_one_line(tmp_path, source):
    """Bytes that are not UTF-8 (here UTF-16) in --spec: exit 2, one line naming the
    spec, no traceback; the same JSON as UTF-8 is accepted. (From stdin, Python may
    decode with surrogate escapes instead of failing; the JSON parser then rejects it.)"""
    text = notebook_spec().replace(epochs=1).to_json()
    path = tmp_path / "spec.json"
    for data, expected in ((text.encode("utf-16"), 2), (text.encode("utf-8"), 0)):
        path.write_bytes(data)
        if source == "file":
            proc = subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", "train",
                                   "--spec", str(path)], capture_output=True, timeout=300)
        else:
            proc = subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", "train",
                                   "--spec", "-"], input=data, capture_output=True, timeout=300)
        assert proc.returncode == expected, proc.stderr
        if expected == 2:
            err = proc.stderr.decode()
            assert len(err.splitlines()) == 1 and "Traceback" not in err, err
            if source == "file":
                assert "--spec" in err and "UTF-8" in err, err
            else:
                assert ("--spec" in err and "UTF-8" in err) or "spec JSON" in err, err
