"""The command line's spec flags, their errors, and progress output.

- Every NetworkSpec field and every optimizer argument has a flag; the spec
  built by ``spec_from_args`` is checked flag by flag, on top of the notebook's
  spec and on top of a ``--spec`` file (also read from stdin with ``--spec -``).
- Bad flags give one line on stderr starting "nnparity: error:", exit code 2
  and no traceback.
- Progress: the ``Progress`` printer with a fake stream and clock, the CLI on
  a (fake and real) terminal, and ``train(..., progress=callback)``, whose
  chunked result equals the unchunked one.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from dataclasses import fields

import numpy as np
import pytest

from nnparity.backends import train
from nnparity.shared import (SGD, Activation, Adam, AdamW, Dataset, Dense, NetworkSpec,
                             RMSprop, notebook_data, notebook_spec, to_flat)
from nnparity.shared.cli.main import Progress, build_parser, main
from nnparity.shared.cli.spec_flags import spec_from_args
from nnparity.shared.core.optimizers import OPTIMIZERS
from nnparity.shared.core.spec import GENERAL
from nnparity.shared.core.tolerance import POLICY, difference
from conftest import require

DIGITS_FLAGS = ["--dataset", "digits", "--sizes", "64,64,10", "--loss", "cross_entropy",
                "--optimizer", "adam", "--lr", "1e-3", "--epochs", "20"]
ACCURACY_95 = re.compile(r"^accuracy: 0\.9[5-9]\d\d$", re.M)


def parse(*flags: str) -> NetworkSpec:
    return spec_from_args(build_parser().parse_args(["train", *flags]))


def run_cli(*args, stdin=None):
    """The real entry point in a subprocess: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


# --------------------------------------------------------------------------- the example


def test_digits_example_prints_accuracy_in_process(capsys):
    require("sklearn")
    require("jax")
    assert main(["train", *DIGITS_FLAGS, "--backend", "jax"]) == 0
    out = capsys.readouterr().out
    assert ACCURACY_95.search(out), out
    assert re.search(r"^error: \d+\.\d+", out, re.M), out
    assert "weight" not in out and "predictions" not in out   # too big to print


@pytest.mark.slow
def test_digits_example_prints_accuracy_in_a_subprocess():
    require("sklearn")
    require("jax")
    code, out, err = run_cli("train", *DIGITS_FLAGS, "--backend", "jax")
    assert code == 0, err
    assert ACCURACY_95.search(out), out
    assert "Traceback" not in err


def test_regression_run_reports_the_loss_not_accuracy(capsys):
    require("sklearn")
    assert main(["train", "--dataset", "diabetes", "--sizes", "10,8,1", "--optimizer", "adam",
                 "--epochs", "3", "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^error: \d+\.\d+", out, re.M) and "accuracy" not in out, out


# --------------------------------------------------------------------------- every field has a flag


def test_every_spec_field_and_optimizer_argument_has_a_flag():
    """...except the general form's input_shape and layers, which a --spec file gives."""
    args = vars(build_parser().parse_args(["train"]))
    assert GENERAL == ("input_shape", "layers")
    for f in fields(NetworkSpec):
        if f.name not in GENERAL:
            assert f.name in args, f.name
    assert not set(GENERAL) & set(args)
    for cls in OPTIMIZERS.values():
        for f in fields(cls):
            assert f.name in args, (cls.__name__, f.name)
    assert "dataset" in args and "spec" in args
    # and compare takes the same spec flags
    compare_args = vars(build_parser().parse_args(["compare"]))
    assert set(args) - {"backend", "run", "command", "save", "resume"} <= set(compare_args)


def test_no_flags_give_the_notebook_spec():
    assert parse() == notebook_spec()


@pytest.mark.parametrize("flags, changes", [
    pytest.param(["--sizes", "3,5,2"], {"sizes": (3, 5, 2)}, id="sizes"),
    pytest.param(["--sizes", "64,64,10"], {"sizes": (64, 64, 10)}, id="sizes-digits"),
    pytest.param(["--activation", "tanh"], {"activation": "tanh"}, id="activation"),
    pytest.param(["--sizes", "2,4,4,1", "--activation", "relu,tanh"],
                 {"sizes": (2, 4, 4, 1), "activation": ("relu", "tanh")}, id="activation-list"),
    pytest.param(["--sizes", "2,4,4,1", "--activation", "gelu"],
                 {"sizes": (2, 4, 4, 1), "activation": "gelu"}, id="activation-one-for-all"),
    pytest.param(["--activation", "leaky_relu", "--activation-params",
                  '{"leaky_relu": {"negative_slope": 0.1}}'],
                 {"activation": "leaky_relu",
                  "activation_params": {"leaky_relu": {"negative_slope": 0.1}}},
                 id="activation-params"),
    pytest.param(["--init", "he_normal"], {"init": "he_normal"}, id="init"),
    pytest.param(["--init", "xavier_uniform"], {"init": "xavier_uniform"}, id="init-xavier"),
    pytest.param(["--loss", "mae"], {"loss": "mae"}, id="loss"),
    pytest.param(["--loss", "huber", "--loss-params", '{"delta": 2.0}'],
                 {"loss": "huber", "loss_params": {"delta": 2.0}}, id="loss-params"),
    pytest.param(["--batch-size", "8"], {"batch_size": 8}, id="batch-size"),
    pytest.param(["--epochs", "7"], {"epochs": 7}, id="epochs"),
    pytest.param(["--epochs", "0"], {"epochs": 0}, id="epochs-0"),
    pytest.param(["--seed", "3"], {"seed": 3}, id="seed"),
    pytest.param(["--dtype", "float32"], {"dtype": "float32"}, id="dtype"),
    pytest.param(["--shuffle"], {"shuffle": True}, id="shuffle"),
    pytest.param(["--no-shuffle"], {"shuffle": False}, id="no-shuffle"),
])
def test_each_flag_sets_its_field(flags, changes):
    """The flag changes its field(s); every other field keeps the notebook's value."""
    spec = parse(*flags)
    assert spec == notebook_spec().replace(**changes)
    for field, value in changes.items():
        assert getattr(spec, field) == value


def test_loss_params_reach_the_loss():
    spec = parse("--loss", "huber", "--loss-params", '{"delta": 2.5}')
    assert spec.loss == "huber" and spec.loss_kwargs == {"delta": 2.5}


def test_activation_params_reach_the_activation():
    spec = parse("--activation", "leaky_relu", "--activation-params",
                 '{"leaky_relu": {"negative_slope": 0.25}}')
    (act,) = [layer for layer in spec.layers if isinstance(layer, Activation)]
    assert act.name == "leaky_relu" and dict(act.params) == {"negative_slope": 0.25}


@pytest.mark.parametrize("flags, expected", [
    pytest.param(["--lr", "0.1"], SGD(lr=0.1), id="sgd-lr"),
    pytest.param(["--momentum", "0.9", "--dampening", "0.1", "--weight-decay", "1e-4"],
                 SGD(lr=1e-5, momentum=0.9, dampening=0.1, weight_decay=1e-4),
                 id="sgd-momentum-dampening-wd"),
    pytest.param(["--momentum", "0.9", "--nesterov"], SGD(lr=1e-5, momentum=0.9, nesterov=True),
                 id="sgd-nesterov"),
    pytest.param(["--optimizer", "sgd", "--lr", "0.5", "--no-nesterov"], SGD(lr=0.5),
                 id="sgd-no-nesterov"),
    pytest.param(["--optimizer", "adam"], Adam(), id="adam-defaults"),
    pytest.param(["--optimizer", "adam", "--lr", "0.01", "--betas", "0.8,0.99", "--eps", "1e-6",
                  "--weight-decay", "0.1"],
                 Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), id="adam-all"),
    pytest.param(["--optimizer", "adamw"], AdamW(), id="adamw-defaults"),
    pytest.param(["--optimizer", "adamw", "--lr", "0.003", "--betas", "0.5,0.9", "--eps",
                  "1e-7", "--weight-decay", "0"],
                 AdamW(lr=0.003, betas=(0.5, 0.9), eps=1e-7, weight_decay=0.0), id="adamw-all"),
    pytest.param(["--optimizer", "rmsprop"], RMSprop(), id="rmsprop-defaults"),
    pytest.param(["--optimizer", "rmsprop", "--lr", "0.02", "--alpha", "0.9", "--eps", "1e-7",
                  "--weight-decay", "0.01", "--momentum", "0.5", "--centered"],
                 RMSprop(lr=0.02, alpha=0.9, eps=1e-7, weight_decay=0.01, momentum=0.5,
                         centered=True), id="rmsprop-all"),
    pytest.param(["--optimizer", "rmsprop", "--no-centered"], RMSprop(), id="rmsprop-no-centered"),
])
def test_optimizer_flags(flags, expected):
    spec = parse(*flags)
    assert type(spec.optimizer) is type(expected) and spec.optimizer == expected


# --------------------------------------------------------------------------- flags over --spec


FILE_SPEC = NetworkSpec(sizes=(3, 6, 2), activation="leaky_relu",
                        activation_params={"leaky_relu": {"negative_slope": 0.2}},
                        init="xavier_uniform", loss="huber", loss_params={"delta": 3.0},
                        optimizer=Adam(lr=0.01, betas=(0.8, 0.9)), batch_size=5, epochs=11,
                        seed=7, dtype="float32", shuffle=True)


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(FILE_SPEC.to_json())
    return str(path)


OVERRIDES = [
    pytest.param([], {}, id="nothing"),
    pytest.param(["--sizes", "3,4,4,2"], {"sizes": (3, 4, 4, 2)}, id="sizes"),
    pytest.param(["--init", "zeros"], {"init": "zeros"}, id="init"),
    pytest.param(["--batch-size", "2"], {"batch_size": 2}, id="batch-size"),
    pytest.param(["--epochs", "3"], {"epochs": 3}, id="epochs"),
    pytest.param(["--seed", "1"], {"seed": 1}, id="seed"),
    pytest.param(["--dtype", "float64"], {"dtype": "float64"}, id="dtype"),
    pytest.param(["--no-shuffle"], {"shuffle": False}, id="no-shuffle"),
    pytest.param(["--lr", "0.5"], {"optimizer": Adam(lr=0.5, betas=(0.8, 0.9))}, id="lr"),
    pytest.param(["--eps", "1e-6"], {"optimizer": Adam(lr=0.01, betas=(0.8, 0.9), eps=1e-6)},
                 id="eps-keeps-file-lr-and-betas"),
    pytest.param(["--optimizer", "adam"], {}, id="same-optimizer"),
    pytest.param(["--optimizer", "adamw"], {"optimizer": AdamW()}, id="other-optimizer"),
    pytest.param(["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.5"],
                 {"optimizer": SGD(lr=0.1, momentum=0.5)}, id="sgd"),
    pytest.param(["--loss", "huber"], {}, id="same-loss-keeps-params"),
    pytest.param(["--loss", "mae"], {"loss": "mae", "loss_params": {}}, id="other-loss"),
    pytest.param(["--loss-params", '{"delta": 0.5}'], {"loss_params": {"delta": 0.5}},
                 id="loss-params"),
    pytest.param(["--activation", "tanh"], {"activation": "tanh", "activation_params": {}},
                 id="other-activation"),
    pytest.param(["--activation", "leaky_relu"], {}, id="same-activation-keeps-params"),
    pytest.param(["--activation-params", '{"leaky_relu": {"negative_slope": 0.3}}'],
                 {"activation_params": {"leaky_relu": {"negative_slope": 0.3}}},
                 id="activation-params"),
]


@pytest.mark.parametrize("flags, changes", OVERRIDES)
def test_flags_override_a_spec_file(spec_file, flags, changes):
    assert parse("--spec", spec_file, *flags) == FILE_SPEC.replace(**changes)


@pytest.mark.parametrize("flags, changes", OVERRIDES[:3] + OVERRIDES[8:10])
def test_spec_from_stdin(monkeypatch, flags, changes):
    monkeypatch.setattr(sys, "stdin", io.StringIO(FILE_SPEC.to_json()))
    assert parse("--spec", "-", *flags) == FILE_SPEC.replace(**changes)


def test_spec_from_stdin_runs_through_main(monkeypatch, capsys):
    spec = notebook_spec().replace(epochs=3)
    monkeypatch.setattr(sys, "stdin", io.StringIO(spec.to_json()))
    assert main(["train", "--spec", "-", "--epochs", "5", "--lr", "1e-4"]) == 0
    out = capsys.readouterr().out
    expected = train(spec.replace(epochs=5, optimizer=SGD(lr=1e-4)), notebook_data())
    assert f"error: {expected.metrics['test_loss']}" in out


#: a network in the general layer form (not an MLP: spec.sizes is None)
LAYER_FILE_SPEC = NetworkSpec(input_shape=(2,), layers=(
    Dense(5), Activation("tanh"), Activation("leaky_relu", {"negative_slope": 0.1}), Dense(1)),
    init="torch_default", optimizer=SGD(lr=0.01), epochs=4)


@pytest.fixture
def layer_spec_file(tmp_path):
    path = tmp_path / "layers.json"
    path.write_text(LAYER_FILE_SPEC.to_json())
    return str(path)


@pytest.mark.parametrize("flags, changes", [
    pytest.param([], {}, id="nothing"),
    pytest.param(["--epochs", "2", "--lr", "0.5"], {"epochs": 2, "optimizer": SGD(lr=0.5)},
                 id="training-flags-keep-the-layers"),
    pytest.param(["--sizes", "2,3,1"], {"sizes": (2, 3, 1)}, id="sizes-replace-the-layers"),
])
def test_flags_on_a_layer_form_spec_file(layer_spec_file, flags, changes):
    assert LAYER_FILE_SPEC.sizes is None
    spec = parse("--spec", layer_spec_file, *flags)
    assert spec == LAYER_FILE_SPEC.replace(**changes)
    if "sizes" in changes:
        assert spec.layers == (Dense(3), Activation("relu"), Dense(1))
    else:
        assert spec.layers == LAYER_FILE_SPEC.layers and spec.sizes is None


@pytest.mark.parametrize("flag", ["--activation", "--activation-params"])
def test_activation_flags_on_a_layer_form_spec_file_are_refused(layer_spec_file, capsys, flag):
    value = "relu" if flag == "--activation" else '{"relu": {}}'
    code = main(["train", "--spec", layer_spec_file, flag, value])
    assert_one_line_error(code, capsys.readouterr().err, flag)


def test_a_layer_form_spec_file_trains_through_main(layer_spec_file, capsys):
    assert main(["train", "--spec", layer_spec_file]) == 0
    out = capsys.readouterr().out
    expected = train(LAYER_FILE_SPEC, notebook_data())
    assert f"error: {expected.metrics['test_loss']}" in out


def test_flag_order_does_not_matter(spec_file):
    a = parse("--epochs", "4", "--spec", spec_file, "--optimizer", "rmsprop", "--alpha", "0.5")
    b = parse("--alpha", "0.5", "--optimizer", "rmsprop", "--spec", spec_file, "--epochs", "4")
    assert a == b == FILE_SPEC.replace(epochs=4, optimizer=RMSprop(alpha=0.5))


# --------------------------------------------------------------------------- bad flags


BAD_FLAGS = [
    pytest.param(["--sizes", "2,x"], "--sizes", id="sizes-not-int"),
    pytest.param(["--sizes", "2"], "sizes", id="sizes-one-layer"),
    pytest.param(["--sizes", "2,0,1"], "sizes[1]", id="sizes-zero"),
    pytest.param(["--optimizer", "adam", "--betas", "0.9"], "--betas", id="betas-one-number"),
    pytest.param(["--optimizer", "adam", "--betas", "0.9,1.0"], "betas[1]", id="betas-1"),
    pytest.param(["--optimizer", "adam", "--momentum", "0.9"], "--momentum",
                 id="momentum-with-adam"),
    pytest.param(["--betas", "0.9,0.99"], "--betas", id="betas-with-sgd"),
    pytest.param(["--optimizer", "adam", "--alpha", "0.9"], "--alpha", id="alpha-with-adam"),
    pytest.param(["--optimizer", "adamw", "--centered"], "--centered", id="centered-with-adamw"),
    pytest.param(["--optimizer", "rmsprop", "--nesterov"], "--nesterov",
                 id="nesterov-with-rmsprop"),
    pytest.param(["--nesterov"], "nesterov", id="nesterov-without-momentum"),
    pytest.param(["--optimizer", "bogus"], "bogus", id="unknown-optimizer"),
    pytest.param(["--dataset", "mnist"], "mnist", id="unknown-dataset"),
    pytest.param(["--loss", "cross_entropy"], "y_train", id="ce-on-float-targets"),
    pytest.param(["--loss", "hinge"], "hinge", id="unknown-loss"),
    pytest.param(["--loss-params", '{"delta": 2}'], "delta", id="loss-params-for-mse"),
    pytest.param(["--loss", "huber", "--loss-params", '{"delta": -1}'], "delta",
                 id="huber-negative-delta"),
    pytest.param(["--loss-params", "[1, 2]"], "--loss-params", id="loss-params-not-object"),
    pytest.param(["--activation-params", "{not json"], "--activation-params",
                 id="activation-params-not-json"),
    pytest.param(["--activation-params", '{"elu": {"alpha": 1.0}}'], "elu",
                 id="activation-params-unused"),
    pytest.param(["--activation", "bogus"], "bogus", id="unknown-activation"),
    pytest.param(["--activation", "relu,tanh"], "activation", id="too-many-activations"),
    pytest.param(["--init", "ones"], "ones", id="unknown-init"),
    pytest.param(["--lr", "-1"], "lr", id="lr-negative"),
    pytest.param(["--lr", "0"], "lr", id="lr-zero"),
    pytest.param(["--lr", "nan"], "lr", id="lr-nan"),
    pytest.param(["--lr", "fast"], "--lr", id="lr-not-a-number"),
    pytest.param(["--momentum", "-0.5"], "momentum", id="momentum-negative"),
    pytest.param(["--epochs", "-1"], "epochs", id="epochs-negative"),
    pytest.param(["--epochs", "1.5"], "--epochs", id="epochs-not-int"),
    pytest.param(["--batch-size", "0"], "batch_size", id="batch-size-0"),
    pytest.param(["--seed", "-1"], "seed", id="seed-negative"),
    pytest.param(["--seed", str(2**32)], "seed", id="seed-too-big"),
    pytest.param(["--dtype", "float16"], "float16", id="dtype-float16"),
    pytest.param(["--dataset", "digits"], "x_train", id="digits-with-notebook-sizes"),
    pytest.param(["--dataset", "digits", "--sizes", "64,8,5", "--loss", "cross_entropy"],
                 "y_train[", id="digits-labels-out-of-range"),
    pytest.param(["--dataset", "diabetes", "--sizes", "10,4,1", "--loss", "bce_with_logits"],
                 "y_train[", id="diabetes-bce-targets-outside-0-1"),
]


def assert_one_line_error(code, err, named):
    assert code == 2
    assert err.startswith("nnparity: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert named in err, err


@pytest.mark.parametrize("flags, named", BAD_FLAGS)
def test_bad_flags_give_one_line_and_exit_2(capsys, flags, named):
    """In train and in compare (which share the spec flags)."""
    if "--dataset" in flags and flags[flags.index("--dataset") + 1] != "mnist":
        require("sklearn")
    for command in ("train", "compare"):
        code = main([command, *flags])
        captured = capsys.readouterr()
        try:
            assert_one_line_error(code, captured.err, named)
            assert captured.out == ""
        except AssertionError as exc:
            raise AssertionError(f"nnparity {command}: {exc}") from None


def test_missing_sklearn_gives_one_line_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code = main(["train", *DIGITS_FLAGS])
    assert_one_line_error(code, capsys.readouterr().err, "nnparity[datasets]")


@pytest.mark.parametrize("flags, named", [
    pytest.param(["--loss", "cross_entropy"], "integer class labels", id="ce-on-float-targets"),
    pytest.param(["--sizes", "2,x"], "--sizes", id="sizes-not-int"),
    pytest.param(["--lr", "-1"], "lr", id="lr-negative"),
])
def test_bad_flags_in_a_subprocess(flags, named):
    code, out, err = run_cli("train", *flags)
    assert_one_line_error(code, err, named)


def test_sgd_from_an_adam_spec_file_needs_lr(spec_file, capsys):
    code = main(["train", "--spec", spec_file, "--optimizer", "sgd"])
    assert_one_line_error(code, capsys.readouterr().err, "--lr")


# --------------------------------------------------------------------------- progress


class FakeStream(io.StringIO):
    def __init__(self, tty: bool = True):
        super().__init__()
        self.tty, self.flushes = tty, 0

    def isatty(self) -> bool:
        return self.tty

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class FakeClock:
    """perf_counter that returns ``start``, then advances by ``step`` on every call."""

    def __init__(self, start: float = 100.0, step: float = 0.0):
        self.now, self.step = start, step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


def test_progress_is_silent_for_the_first_two_seconds(monkeypatch):
    clock = FakeClock(100.0)
    monkeypatch.setattr(time, "perf_counter", clock)
    stream = FakeStream()
    progress = Progress(stream)
    clock.now = 101.9
    progress(1, 10, 0.5)
    progress.close()
    assert stream.getvalue() == "" and stream.flushes == 0


def test_progress_prints_epochs_and_loss_after_two_seconds(monkeypatch):
    clock = FakeClock(100.0)
    monkeypatch.setattr(time, "perf_counter", clock)
    stream = FakeStream()
    progress = Progress(stream)
    clock.now = 101.0
    progress(1, 10, 0.9)
    clock.now = 102.0
    progress(2, 10, 0.123456789)
    clock.now = 105.0
    progress(10, 10, 1.5e-7)
    progress.close()
    assert stream.getvalue() == "\repoch 2/10  loss 0.123457\repoch 10/10  loss 1.5e-07\n"
    assert stream.flushes >= 2


def progress_entries(text: str) -> list[tuple[int, int, str]]:
    return [(int(a), int(b), c)
            for a, b, c in re.findall(r"\repoch (\d+)/(\d+)  loss (\S+)", text)]


def test_cli_shows_progress_on_a_slow_terminal_run(monkeypatch):
    monkeypatch.setattr(time, "perf_counter", FakeClock(0.0, step=1.0))   # 1 s per look
    stream = FakeStream(tty=True)
    monkeypatch.setattr(sys, "stdout", stream)
    assert main(["train", "--epochs", "40"]) == 0
    out = stream.getvalue()
    entries = progress_entries(out)
    assert len(entries) >= 10, out
    done = [e[0] for e in entries]
    assert done == sorted(set(done)) and done[-1] == 40
    assert all(total == 40 for _, total, _ in entries)
    # the progress line is ended before the results are printed
    assert re.search(r"epoch 40/40  loss \S+\nhidden weight:", out), out
    expected = train(notebook_spec().replace(epochs=40), notebook_data())
    assert re.search(rf"epoch 40/40  loss {float(expected.losses[-1]):.6g}\n", out), out
    assert f"error: {expected.metrics['test_loss']}" in out


def test_cli_shows_no_progress_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr(time, "perf_counter", FakeClock(0.0, step=1.0))
    stream = FakeStream(tty=False)
    monkeypatch.setattr(sys, "stdout", stream)
    assert main(["train", "--epochs", "40"]) == 0
    assert "epoch" not in stream.getvalue() and "\r" not in stream.getvalue()


def test_cli_shows_no_progress_on_a_fast_terminal_run(monkeypatch):
    monkeypatch.setattr(time, "perf_counter", FakeClock(0.0, step=0.0))   # no time passes
    stream = FakeStream(tty=True)
    monkeypatch.setattr(sys, "stdout", stream)
    assert main(["train", "--epochs", "40"]) == 0
    out = stream.getvalue()
    assert "epoch" not in out and out.startswith("hidden weight:")


@pytest.mark.slow
def test_real_terminal_shows_progress_for_a_long_run():
    """End to end on a pseudo-terminal: a run of several seconds prints progress."""
    require("sklearn")
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nnparity.shared.cli.main", "train",
                             "--dataset", "digits", "--sizes", "64,32,10", "--loss",
                             "cross_entropy", "--optimizer", "adam", "--batch-size", "1",
                             "--epochs", "40"],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:                               # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0, err
    elapsed = time.perf_counter() - start
    out = b"".join(chunks).decode()
    assert elapsed > 3.0, f"the run took {elapsed:.1f} s: too short to need progress"
    entries = progress_entries(out)
    assert entries and entries[-1][:2] == (40, 40), out
    assert re.search(r"^accuracy: 0\.\d{4}", out.replace("\r\n", "\n"), re.M), out


# train(..., progress=callback)


def progress_data():
    rs = np.random.RandomState(5)
    x = rs.randn(14, 3)
    y = np.tanh(x @ rs.randn(3, 2))
    return Dataset(x[:11], y[:11], x[11:], y[11:])


PROGRESS_OPTIMIZERS = {
    "sgd-momentum": SGD(lr=0.05, momentum=0.9),
    "adam": Adam(lr=0.01),
    "rmsprop-centered-momentum": RMSprop(lr=0.005, momentum=0.5, centered=True),
}


def progress_spec(opt: str, epochs: int) -> NetworkSpec:
    return NetworkSpec(sizes=(3, 6, 2), activation="tanh", init="xavier_uniform",
                       optimizer=PROGRESS_OPTIMIZERS[opt], batch_size=4, epochs=epochs, seed=2,
                       shuffle=True)


@pytest.mark.parametrize("epochs", [45, 20, 7, 1])
def test_train_calls_progress_with_increasing_epochs(epochs):
    spec = progress_spec("adam", epochs)
    calls = []
    result = train(spec, progress_data(), progress=lambda *a: calls.append(a))
    done = [c[0] for c in calls]
    assert done == sorted(set(done)) and done[-1] == epochs and done[0] >= 1
    assert all(total == epochs for _, total, _ in calls)
    assert len(calls) == len(range(0, epochs, max(1, epochs // 20)))
    steps = 3                                          # 11 rows, batch 4
    for k, _, loss in calls:                           # the loss after epoch k's last step
        assert isinstance(loss, float) and loss == float(result.losses[k * steps - 1])


def test_train_with_zero_epochs_never_calls_progress():
    calls = []
    result = train(progress_spec("adam", 0), progress_data(), progress=lambda *a: calls.append(a))
    assert calls == [] and result.losses.shape == (0,)


def assert_same_results(a, b, tol=None):
    """Exactly equal (tol None) or equal under ``tol``: params, losses, state, metrics."""
    def same(x, y):
        x, y = np.asarray(x), np.asarray(y)
        if tol is None:
            return x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        return difference(x, y, tol).ok

    assert len(a.params) == len(b.params)
    flat_a, flat_b = to_flat(a.params), to_flat(b.params)
    assert list(flat_a) == list(flat_b)
    for name in flat_a:
        assert same(flat_a[name], flat_b[name]), name
    assert same(a.losses, b.losses)
    assert a.opt_state.buffers.keys() == b.opt_state.buffers.keys()
    assert a.opt_state.step == b.opt_state.step
    for key in a.opt_state.buffers:
        buffer_a, buffer_b = to_flat(a.opt_state.buffers[key]), to_flat(b.opt_state.buffers[key])
        assert list(buffer_a) == list(buffer_b), key
        for name in buffer_a:
            assert same(buffer_a[name], buffer_b[name]), (key, name)
    assert a.metrics.keys() == b.metrics.keys()
    for key in a.metrics:
        assert same(a.metrics[key], b.metrics[key]), key


@pytest.mark.parametrize("opt", list(PROGRESS_OPTIMIZERS))
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_progress_does_not_change_the_result(backend, opt):
    """Training in chunks (with a progress callback) gives the same result: exactly
    in NumPy, within the float64 policy in torch and JAX."""
    if backend != "numpy":
        require(backend)
    spec = progress_spec(opt, 45)
    data = progress_data()
    calls = []
    chunked = train(spec, data, backend=backend, progress=lambda *a: calls.append(a))
    whole = train(spec, data, backend=backend)
    assert len(calls) == 23 and calls[-1][0] == 45
    assert chunked.opt_state.step == 45 * 3
    assert_same_results(chunked, whole, None if backend == "numpy" else POLICY["float64"])


def test_progress_result_float32_within_policy():
    """The same in float32, jax (compiled per chunk), under the float32 policy."""
    require("jax")
    spec = progress_spec("adam", 45).replace(dtype="float32")
    data = progress_data()
    chunked = train(spec, data, backend="jax", progress=lambda *a: None)
    whole = train(spec, data, backend="jax")
    assert chunked.params[0]["weight"].dtype == np.float32
    assert_same_results(chunked, whole, POLICY["float32"])


def test_spec_dests_are_exactly_the_spec_flags():
    """``--resume`` rejects every spec flag by this list: it must not miss one."""
    import argparse

    from nnparity.shared.cli.spec_flags import SPEC_DESTS, add_spec_flags, spec_flags_given
    parser = argparse.ArgumentParser()
    add_spec_flags(parser)
    defaults = vars(parser.parse_args([]))
    assert set(SPEC_DESTS) == set(defaults) - {"dataset"}
    assert all(defaults[dest] is None for dest in SPEC_DESTS)
    assert spec_flags_given(parser.parse_args(["--lr", "0.1", "--batch-size", "3"])) == [
        "--batch-size", "--lr"]
