"""The command line's checkpoints: train --save, train --resume, predict, and
every mistake as one line on stderr with exit code 2."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import require
from crafted_checkpoints import crafted_files
from nnparity.backends import predict, train
from nnparity.shared import (
    POLICY,
    Activation,
    Adam,
    Dense,
    NetworkSpec,
    load_checkpoint,
    notebook_data,
    save_checkpoint,
)
from nnparity.shared.io.checkpoint import Checkpoint, checkpoint_arrays
from nnparity.shared.cli.main import main
from nnparity.shared.core.init import init_params
from nnparity.shared.core.optimizers import init_state
from nnparity.shared.core.tolerance import difference
from nnparity.shared.core.tree import leaves

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the notebook's 4 rows in batches of 3 (a tail of 1), shuffled, with Adam's state
SPEC = NetworkSpec(sizes=(2, 4, 1), init="xavier_uniform", optimizer=Adam(lr=0.1),
                   batch_size=3, epochs=3, seed=5, shuffle=True)


def require_backend(name):
    if name != "numpy":
        require(name)


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(SPEC.to_json())
    return str(path)


@pytest.fixture
def checkpoint(tmp_path, spec_file, capsys):
    """A checkpoint of SPEC after 3 epochs, written by the CLI."""
    path = str(tmp_path / "three.npz")
    assert main(["train", "--spec", spec_file, "--save", path]) == 0
    capsys.readouterr()
    return path


def params_match(a, b):
    """(all within the policy, max abs difference) of two checkpoints' parameters."""
    tol = POLICY[a.spec.dtype]
    diffs = [difference(x, y, tol)
             for x, y in zip(leaves(a.params), leaves(b.params), strict=True)]
    return all(d.ok for d in diffs), max(d.max_abs for d in diffs)


@pytest.mark.parametrize("first, second", [("numpy", "torch"), ("torch", "jax"),
                                           ("jax", "numpy")])
def test_resume_on_another_backend_with_more_epochs_equals_an_uninterrupted_run(
        tmp_path, spec_file, capsys, first, second):
    require_backend(first)
    require_backend(second)
    part, resumed, whole, shorter = (str(tmp_path / f"{n}.npz")
                                     for n in ("part", "resumed", "whole", "shorter"))
    assert main(["train", "--spec", spec_file, "--backend", first, "--save", part]) == 0
    assert main(["train", "--resume", part, "--backend", second, "--epochs", "8",
                 "--save", resumed]) == 0
    out = capsys.readouterr().out
    assert f"resumed: {part} at epoch 3 of 8" in out and f"saved: {resumed} (8 epochs)" in out
    assert main(["train", "--spec", spec_file, "--backend", second, "--epochs", "8",
                 "--save", whole]) == 0
    resumed, whole = load_checkpoint(resumed), load_checkpoint(whole)
    assert resumed.spec == whole.spec == SPEC.replace(epochs=8)
    assert resumed.epochs_done == whole.epochs_done == 8
    assert resumed.opt_state.step == whole.opt_state.step == 16
    ok, worst = params_match(resumed, whole)
    assert ok, worst
    # negative control: the same comparison fails against a run one epoch shorter
    assert main(["train", "--spec", spec_file, "--backend", second, "--epochs", "7",
                 "--save", shorter]) == 0
    assert not params_match(resumed, load_checkpoint(shorter))[0]


def test_resume_without_epochs_continues_to_the_checkpoint_s_total(tmp_path, capsys):
    """A checkpoint saved mid-run (epochs_done < spec.epochs) runs to spec.epochs."""
    data = notebook_data()
    part = train(SPEC.replace(epochs=1), data)
    path = str(tmp_path / "mid.npz")
    save_checkpoint(path, SPEC, part.params, part.opt_state, epochs_done=1)
    assert main(["train", "--resume", path, "--save", path]) == 0
    assert "at epoch 1 of 3" in capsys.readouterr().out
    ok, _ = params_match(load_checkpoint(path), train(SPEC, data))
    assert ok


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_predict_prints_what_backends_predict_gives(tmp_path, checkpoint, capsys, backend):
    require_backend(backend)
    x = np.array([[28.1, 58.0], [31.4, 45.0], [0.0, -1.5]])
    csv, npy = tmp_path / "x.csv", tmp_path / "x.npy"
    csv.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n")
    np.save(npy, x)
    spec, params, _ = load_checkpoint(checkpoint)
    expected = predict(spec, params, x, backend=backend)              # (3, 1)
    for source in (["--input", "28.1,58.0;31.4,45.0;0,-1.5"], ["--input-file", str(csv)],
                   ["--input-file", str(npy)]):
        assert main(["predict", "--checkpoint", checkpoint, "--backend", backend,
                     *source]) == 0
        lines = capsys.readouterr().out.splitlines()
        printed = np.array([[float(v) for v in line.split(",")] for line in lines])
        assert np.array_equal(printed, expected), source          # printed in full precision


#: SPEC's run in the general layer form, not an MLP (two Dense layers in a row)
LAYER_SPEC = NetworkSpec(input_shape=(2,), layers=(Dense(4), Activation("tanh"), Dense(3),
                                                   Dense(1)),
                         init="xavier_uniform", optimizer=Adam(lr=0.1), batch_size=3, epochs=3,
                         seed=5, shuffle=True)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_a_layer_form_spec_trains_saves_resumes_and_predicts(tmp_path, capsys, backend):
    """train --spec (layers) --save, train --resume, predict --checkpoint: the file keeps
    the layer form, and the CLI's numbers are the library's."""
    require_backend(backend)
    assert LAYER_SPEC.sizes is None
    spec_file, part, whole = (str(tmp_path / n) for n in ("spec.json", "part.npz", "whole.npz"))
    (tmp_path / "spec.json").write_text(LAYER_SPEC.to_json())
    assert main(["train", "--spec", spec_file, "--backend", backend, "--epochs", "1",
                 "--save", part]) == 0
    assert main(["train", "--resume", part, "--backend", backend, "--epochs", "3",
                 "--save", whole]) == 0
    capsys.readouterr()
    resumed = load_checkpoint(whole)
    assert resumed.spec == LAYER_SPEC and resumed.spec.layers == LAYER_SPEC.layers
    assert resumed.epochs_done == 3
    assert params_match(resumed, train(LAYER_SPEC, notebook_data(), backend))[0]
    assert main(["predict", "--checkpoint", whole, "--backend", backend,
                 "--input", "28.1,58.0;0,-1.5"]) == 0
    printed = np.array([[float(v) for v in line.split(",")]
                        for line in capsys.readouterr().out.splitlines()])
    expected = predict(resumed.spec, resumed.params, np.array([[28.1, 58.0], [0.0, -1.5]]),
                       backend=backend)
    assert np.array_equal(printed, expected)


def test_a_layer_form_checkpoint_refuses_the_shorthand_flags(tmp_path, capsys):
    """--resume takes no spec flags (a usage error, one line, exit 2), for a layer-form
    checkpoint as for any."""
    path = str(tmp_path / "c.npz")
    save_checkpoint(path, LAYER_SPEC, init_params(LAYER_SPEC), epochs_done=0)
    capsys.readouterr()
    assert main(["train", "--resume", path, "--sizes", "2,4,1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("nnparity: error: ")


@pytest.mark.parametrize("stdin_path", ["-", "/dev/stdin"])
def test_spec_from_standard_input(tmp_path, stdin_path):
    path = tmp_path / "c.npz"
    spec = SPEC.replace(epochs=2)
    proc = subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", "train", "--spec",
                           stdin_path, "--save", str(path)], input=spec.to_json(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    saved = load_checkpoint(path)
    assert saved.spec == spec and saved.epochs_done == 2


# ---------------------------------------------------------------- mistakes

class Payload:
    """Unpickling this creates the file ``path``; the tests check that it never appears."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_inputs(tmp_path):
    """Input files for predict, each wrong in one way."""
    (tmp_path / "header.csv").write_text("age,weight\n28.1,58.0\n")
    (tmp_path / "wide.csv").write_text("1,2,3\n")
    (tmp_path / "x.txt").write_text("1,2\n")
    np.save(tmp_path / "int.npy", np.array([[1, 2]]))
    np.save(tmp_path / "flat.npy", np.array([1.0, 2.0]))
    np.save(tmp_path / "wide.npy", np.zeros((2, 3)))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    payload = np.array([[1.0, Payload(tmp_path / "payload-ran")]], dtype=object)
    np.save(tmp_path / "object.npy", payload)           # pickled: loading it would run it
    (tmp_path / "text.npy").write_text("1,2\n")
    (tmp_path / "corrupt.npz").write_text("not a checkpoint")
    state_free = tmp_path / "params-only.npz"
    result = train(SPEC, notebook_data())
    save_checkpoint(state_free, SPEC, result.params)
    arrays = checkpoint_arrays(Checkpoint(SPEC, result.params, result.opt_state, SPEC.epochs))
    for name, (data, _) in crafted_files(arrays).items():
        (tmp_path / f"crafted-{name}.npz").write_bytes(data)


def initial_arrays():
    """The file entries of SPEC's untrained checkpoint (the texts below depend only on
    the shapes, which write_inputs' trained checkpoint shares)."""
    params = init_params(SPEC)
    return checkpoint_arrays(Checkpoint(SPEC, params, init_state(SPEC.optimizer, params), 0))


#: a checkpoint crafted to attack the reader (tests/crafted_checkpoints.py) -> expected text
CRAFTED = {name: named for name, (_, named) in crafted_files(initial_arrays()).items()}


MISTAKES = {
    # train --resume
    "resume-with-lr": (["train", "--resume", "{ck}", "--lr", "0.1"],
                       "--lr cannot be used with --resume"),
    "resume-with-spec": (["train", "--resume", "{ck}", "--spec", "{spec}"],
                         "--spec cannot be used with --resume"),
    "resume-with-no-shuffle": (["train", "--resume", "{ck}", "--no-shuffle"],
                               "--shuffle cannot be used with --resume"),
    "resume-epochs-below-done": (["train", "--resume", "{ck}", "--epochs", "2"],
                                 ("--epochs=2 is not allowed: expected the total number of "
                                 "epochs, at least the 3")),
    "resume-epochs-not-int": (["train", "--resume", "{ck}", "--epochs", "x"],
                              "invalid int value"),
    "resume-missing-file": (["train", "--resume", "{tmp}/none.npz"], "a readable file"),
    "resume-corrupt-file": (["train", "--resume", "{tmp}/corrupt.npz"], "not an .npz"),
    "resume-without-state": (["train", "--resume", "{tmp}/params-only.npz"],
                             "resume.opt_state=None"),
    "save-missing-directory": (["train", "--save", "{tmp}/no/such/dir/c.npz"],
                               "--save='"),
    "save-to-a-directory": (["train", "--save", "{tmp}"], "--save='"),
    "save-empty": (["train", "--epochs", "2", "--save", ""],
                   "--save='' is not allowed: expected a non-empty file path"),
    # predict
    "predict-no-checkpoint": (["predict", "--input", "1,2"], "--checkpoint"),
    "predict-no-input": (["predict", "--checkpoint", "{ck}"],
                         "one of the arguments --input --input-file is required"),
    "predict-two-inputs": (["predict", "--checkpoint", "{ck}", "--input", "1,2",
                            "--input-file", "{tmp}/wide.csv"], "not allowed with"),
    "predict-wrong-width": (["predict", "--checkpoint", "{ck}", "--input", "1,2,3"],
                            "--input row 1='1,2,3' is not allowed: expected 2 comma-separated"),
    "predict-not-a-number": (["predict", "--checkpoint", "{ck}", "--input", "1,abc"],
                             ("--input row 1='1,abc' is not allowed: expected 2 comma-separated "
                             "finite decimal numbers ('abc' is not one)")),
    "predict-nan": (["predict", "--checkpoint", "{ck}", "--input", "nan,1"],
                    "finite decimal numbers ('nan' is not one)"),
    "predict-inf": (["predict", "--checkpoint", "{ck}", "--input", "1,2;2,-inf"],
                    ("--input row 2='2,-inf' is not allowed: expected 2 comma-separated "
                     "finite decimal numbers ('-inf' is not one)")),
    "predict-ragged-rows": (["predict", "--checkpoint", "{ck}", "--input", "1,2;3"],
                            "--input row 2='3'"),
    "predict-trailing-separator": (["predict", "--checkpoint", "{ck}", "--input", "1,2;"],
                                   "--input row 2=''"),
    "predict-empty": (["predict", "--checkpoint", "{ck}", "--input", ""], "--input row 1=''"),
    "predict-unknown-extension": (["predict", "--checkpoint", "{ck}", "--input-file",
                                   "{tmp}/x.txt"], "a file ending in .csv or .npy"),
    "predict-missing-csv": (["predict", "--checkpoint", "{ck}", "--input-file",
                             "{tmp}/none.csv"], "a readable UTF-8 text file"),
    "predict-csv-header": (["predict", "--checkpoint", "{ck}", "--input-file",
                            "{tmp}/header.csv"], "row 1='age,weight'"),
    "predict-csv-wide": (["predict", "--checkpoint", "{ck}", "--input-file",
                          "{tmp}/wide.csv"], "row 1='1,2,3'"),
    "predict-npy-int": (["predict", "--checkpoint", "{ck}", "--input-file", "{tmp}/int.npy"],
                        "dtype='int64'"),
    "predict-npy-flat": (["predict", "--checkpoint", "{ck}", "--input-file",
                          "{tmp}/flat.npy"], "2 dimensions"),
    "predict-npy-wide": (["predict", "--checkpoint", "{ck}", "--input-file",
                          "{tmp}/wide.npy"],
                         "wide.npy.shape=(2, 3) is not allowed: expected (n, 2)"),
    "predict-npy-nan": (["predict", "--checkpoint", "{ck}", "--input-file", "{tmp}/nan.npy"],
                        "finite values"),
    "predict-npy-object": (["predict", "--checkpoint", "{ck}", "--input-file",
                            "{tmp}/object.npy"], "allow_pickle=False"),
    "predict-npy-not-npy": (["predict", "--checkpoint", "{ck}", "--input-file",
                             "{tmp}/text.npy"], "does not start with"),
    "predict-corrupt-checkpoint": (["predict", "--checkpoint", "{tmp}/corrupt.npz",
                                    "--input", "1,2"], "not an .npz"),
    "predict-missing-checkpoint": (["predict", "--checkpoint", "{tmp}/none.npz",
                                    "--input", "1,2"], "a readable file"),
    "predict-unknown-backend": (["predict", "--checkpoint", "{ck}", "--input", "1,2",
                                 "--backend", "tensorflow"], "invalid choice"),
    **{f"predict-crafted-{name}": (["predict", "--checkpoint", f"{{tmp}}/crafted-{name}.npz",
                                    "--input", "1,2"], named)
       for name, named in CRAFTED.items()},
    **{f"resume-crafted-{name}": (["train", "--resume", f"{{tmp}}/crafted-{name}.npz"], named)
       for name, named in CRAFTED.items() if name in ("deflated", "big-endian-param")},
}


@pytest.mark.parametrize("case", MISTAKES)
def test_mistake_gives_one_line_and_exit_2(tmp_path, checkpoint, spec_file, capsys, case):
    write_inputs(tmp_path)
    argv, named = MISTAKES[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(ck=checkpoint, spec=spec_file, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""                                   # rejected before any work
    assert err.startswith("nnparity: error: ") and err.count("\n") == 1, err
    assert named in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before        # nothing written
