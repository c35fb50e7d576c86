"""Hostile files and arguments (issue 17): FIFOs and other files that are not
regular, numbers too big for any field, headers that claim more than the file
holds, names that are too long or hold a newline or a NUL, outputs that are
FIFOs or symlinks, and the temporaries a killed writer leaves behind.

Every test reproduces a finding of the fuzz campaign and has a negative control
(a valid file or argument that passes).
"""
from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from crafted_checkpoints import (
    members_of,
    npy_bytes,
    npy_header,
    replace_member,
    zip_bytes,
)
from nnparity.shared import NetworkSpec, load_checkpoint, save_checkpoint
from nnparity.shared.io import files
from nnparity.shared.io.checkpoint import Checkpoint, checkpoint_arrays
from nnparity.shared.cli.main import main
from nnparity.shared.io.files import check_output_path, write_atomic
from nnparity.shared.core.init import init_params
from nnparity.shared.core.optimizers import init_state
from conftest import deadline

#: a tiny network that trains in milliseconds on the notebook's data (2 inputs, 1 output)
SPEC = NetworkSpec(sizes=(2, 3, 1), epochs=1, batch_size=2)
HUGE_INT = "1" + "0" * 400                 # a JSON int far beyond float64's range


def arrays_of(spec: NetworkSpec = SPEC, with_state: bool = False) -> dict:
    params = init_params(spec)
    state = init_state(spec.optimizer, params) if with_state else None
    return checkpoint_arrays(Checkpoint(spec, params, state, 0))


def write_checkpoint(path, arrays: dict) -> str:
    with open(path, "wb") as f:
        f.write(zip_bytes(members_of(arrays)))
    return str(path)


def with_spec_text(arrays: dict, text: str) -> dict:
    return {**arrays, "spec": np.array(text)}




def run(argv, capsys, seconds: float = 60) -> tuple[int, str, str]:
    """main(argv) in-process within a time bound: (exit code, stdout, stderr)."""
    capsys.readouterr()
    with deadline(seconds):
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *fragments):
    """Exit 2 and exactly one line on stderr, holding every fragment."""
    assert code == 2, err
    assert err.startswith("nnparity: error: ") and err.endswith("\n"), err
    assert len(err.splitlines()) == 1 and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# ============================================================ finding 2: huge numbers

HUGE_SPECS = {
    "lr": {"optimizer": {"name": "sgd", "lr": HUGE_INT}},
    "betas": {"optimizer": {"name": "adam", "lr": 0.1, "betas": [HUGE_INT, 0.999]}},
    "delta": {"loss": "huber", "loss_params": {"delta": HUGE_INT}},
    "negative_slope": {"activation": "leaky_relu",
                       "activation_params": {"leaky_relu": {"negative_slope": HUGE_INT}}},
    "epochs-5000-digits": {"epochs": "1" + "0" * 5000},
}


def spec_text(changes: dict, huge: str | None = None) -> str:
    """SPEC's JSON with ``changes``; the placeholder HUGE_INT string becomes the bare
    number ``huge`` (default: HUGE_INT itself; a small number for the negative control)."""
    d = {**SPEC.to_dict(), **changes}
    text = json.dumps(d)
    return text.replace(f'"{HUGE_INT}"', huge or HUGE_INT).replace(
        '"1' + "0" * 5000 + '"', huge or "1" + "0" * 5000)


@pytest.mark.parametrize("field", HUGE_SPECS)
def test_checkpoint_spec_with_a_huge_number_is_a_value_error(tmp_path, field):
    """Finding 2: a number no float64 holds, in the embedded spec: a ValueError naming
    the file (was an OverflowError, or for 5000 digits a ValueError from int())."""
    path = write_checkpoint(tmp_path / "huge.npz",
                            with_spec_text(arrays_of(), spec_text(HUGE_SPECS[field])))
    with pytest.raises(ValueError, match=r"checkpoint .*huge.npz: the embedded spec is invalid"):
        load_checkpoint(path)


@pytest.mark.parametrize("field", HUGE_SPECS)
def test_negative_control_the_same_spec_with_a_small_number_loads(tmp_path, field):
    small = "1" if field == "epochs-5000-digits" else "0.5"
    spec = NetworkSpec.from_json(spec_text(HUGE_SPECS[field], huge=small))
    path = write_checkpoint(tmp_path / "ok.npz", arrays_of(spec))
    assert load_checkpoint(path).spec == spec


@pytest.mark.parametrize("field", HUGE_SPECS)
def test_cli_huge_number_in_a_spec_file_or_checkpoint_is_one_line(tmp_path, capsys, field):
    text = spec_text(HUGE_SPECS[field])
    (tmp_path / "spec.json").write_text(text)
    code, out, err = run(["train", "--spec", tmp_path / "spec.json"], capsys)
    assert_usage_error(code, err)
    # named by the field (NetworkSpec's check) or, failing that, by the flag (the CLI's)
    assert field.split("-")[0] in err or "--spec=" in err or "spec JSON=" in err, err
    assert out == ""
    path = write_checkpoint(tmp_path / "huge.npz", with_spec_text(arrays_of(), text))
    code, out, err = run(["predict", "--checkpoint", path, "--input", "1,2"], capsys)
    assert_usage_error(code, err, "huge.npz", "the embedded spec is invalid")
    code, out, err = run(["train", "--resume", path], capsys)
    assert_usage_error(code, err, "huge.npz", "the embedded spec is invalid")


@pytest.mark.parametrize("flag, field, json_text", [
    ("--loss-params", "delta", f'{{"delta": {HUGE_INT}}}'),
    ("--activation-params", "negative_slope",
     f'{{"leaky_relu": {{"negative_slope": {HUGE_INT}}}}}'),
    ("--loss-params", "digits", '{"delta": 1' + "0" * 5000 + "}"),
])
def test_cli_huge_number_in_a_json_flag_is_one_line_naming_it(capsys, flag, field, json_text):
    argv = ["train", "--epochs", "1", "--loss", "huber", "--activation", "leaky_relu",
            flag, json_text]
    code, out, err = run(argv, capsys)
    assert_usage_error(code, err)
    # named by the field (NetworkSpec's check) or, failing that, by the flag (the CLI's)
    assert f"{flag}=" in err or field in err, err
    assert out == ""


def test_negative_control_json_flags_with_ordinary_numbers_train(capsys):
    code, _out, err = run(["train", "--epochs", "1", "--loss", "huber", "--activation",
                          "leaky_relu", "--loss-params", '{"delta": 2}',
                          "--activation-params", '{"leaky_relu": {"negative_slope": 1}}'],
                         capsys)
    assert code == 0, err


# ============================================================ finding 3: FIFOs

@pytest.fixture
def fifo(tmp_path):
    """A FIFO named like each input file (nobody ever opens its other end)."""
    def make(name):
        path = tmp_path / name
        os.mkfifo(path)
        return str(path)
    return make


@pytest.fixture
def saved(tmp_path):
    """A valid checkpoint of SPEC with its optimizer state, after 1 epoch."""
    path = tmp_path / "saved.npz"
    spec = SPEC.replace(epochs=1)
    params = init_params(spec)
    save_checkpoint(path, spec, params, init_state(spec.optimizer, params), epochs_done=0)
    return str(path)


def test_load_checkpoint_refuses_a_fifo_without_blocking(fifo):
    path = fifo("f.npz")
    with deadline(10), pytest.raises(ValueError, match="a regular file") as exc:
        load_checkpoint(path)
    assert "FIFO" in str(exc.value) and "f.npz" in str(exc.value)
    assert stat.S_ISFIFO(os.stat(path).st_mode)


def test_fifo_swapped_in_after_the_check_is_refused_without_blocking(fifo, tmp_path,
                                                                      monkeypatch):
    """Time of check to time of use: the name is a regular file when stat'ed and a
    FIFO when opened (os.stat is made to report the regular file). The open does not
    wait for a writer (O_NONBLOCK) and fstat on the opened descriptor refuses it."""
    path = fifo("swapped.npz")
    regular = os.stat(tmp_path)                             # any stat result...
    regular = os.stat_result((stat.S_IFREG | 0o644,) + tuple(regular)[1:])   # ...of a file
    real_stat = os.stat
    monkeypatch.setattr(files.os, "stat",
                        lambda p, *a, **k: regular if str(p) == path else real_stat(p, *a, **k))
    with deadline(10), pytest.raises(ValueError, match="a regular file .it is a FIFO"):
        load_checkpoint(path)


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/zero"])
@pytest.mark.parametrize("argv, flag", [
    (["predict", "--checkpoint", "{path}.npz", "--input", "1,2"], "--checkpoint"),
    (["train", "--resume", "{path}.npz"], "--resume"),
    (["predict", "--checkpoint", "{ck}", "--input-file", "{path}.npy"], "--input-file"),
    (["predict", "--checkpoint", "{ck}", "--input-file", "{path}.csv"], "--input-file"),
    (["train", "--spec", "{path}.json"], "--spec"),
])
def test_cli_refuses_an_input_that_is_not_a_regular_file(tmp_path, fifo, saved, capsys,
                                                         kind, argv, flag):
    """Finding 3: predict --checkpoint, train --resume, predict --input-file and
    train --spec given a FIFO (hung forever), a directory or /dev/zero (read without
    end): one line naming the flag, at once."""
    suffix = next(a for a in argv if "{path}" in a).rsplit(".", 1)[1]
    if kind == "fifo":
        path = fifo(f"in.{suffix}")
    elif kind == "directory":
        path = str(tmp_path / f"in.{suffix}")
        os.mkdir(path)
    else:
        path = str(tmp_path / f"zero.{suffix}")
        os.symlink("/dev/zero", path)
    argv = [a.replace("{path}." + suffix, path).replace("{ck}", saved) for a in argv]
    code, out, err = run(argv, capsys, seconds=10)
    assert_usage_error(code, err, flag, "a regular file")
    assert out == ""


@pytest.mark.parametrize("suffix", ["npz", "npy", "csv", "json"])
def test_negative_control_a_symlink_to_a_regular_file_is_read(tmp_path, saved, capsys,
                                                              suffix):
    target = tmp_path / f"target.{suffix}"
    if suffix == "npz":
        target = saved
    elif suffix == "npy":
        np.save(target, np.array([[1.0, 2.0]]))
    elif suffix == "csv":
        target.write_text("1,2\n")
    else:
        target.write_text(SPEC.to_json())
    link = tmp_path / f"link.{suffix}"
    os.symlink(target, link)
    argv = {"npz": ["predict", "--checkpoint", link, "--input", "1,2"],
            "npy": ["predict", "--checkpoint", saved, "--input-file", link],
            "csv": ["predict", "--checkpoint", saved, "--input-file", link],
            "json": ["train", "--spec", link]}[suffix]
    code, _out, err = run(argv, capsys)
    assert code == 0, err


def test_spec_file_larger_than_the_bound_is_refused_without_reading_it_all(tmp_path,
                                                                          capsys):
    """--spec /dev/zero read without limit; a regular file is bounded too (2**20 bytes)."""
    path = tmp_path / "big.json"
    with open(path, "wb") as f:
        f.truncate(2**30)                                   # sparse: 1 GiB of zeros
    code, _out, err = run(["train", "--spec", path], capsys, seconds=10)
    assert_usage_error(code, err, "--spec", "at most 1048576 bytes")


def test_spec_from_stdin_is_bounded_too():
    with open("/dev/zero", "rb") as zeros:
        proc = subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", "train", "--spec",
                               "-"], stdin=zeros, capture_output=True, text=True, timeout=60,
                              check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "--spec" in proc.stderr and "at most 1048576 bytes" in proc.stderr


# ============================================================ finding 4: CLI tracebacks

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("argv, fragments", [
    pytest.param(["train", "--lr", "1e300", "--activation", "identity"],
                 ["diverged", "lr=1e+300"], id="divergence"),
    pytest.param(["train", "--loss-params", "[" * 3000], ["--loss-params", "nested too deeply"],
                 id="loss-params-3000-brackets"),
    pytest.param(["train", "--activation-params", "{\"a\": " * 3000],
                 ["--activation-params", "nested too deeply"], id="activation-params-nested"),
    pytest.param(["train", "--epochs", "1000000000000"], ["epochs"], id="epochs-1e12"),
    pytest.param(["train", "--batch-size", "4611686018427387904"], ["batch"],
                 id="batch-size-2**62"),
])
def test_cli_error_is_one_line_and_exit_2(capsys, argv, fragments):
    code, out, err = run(argv, capsys)
    assert_usage_error(code, err, *fragments)
    assert out == ""


@pytest.mark.parametrize("argv, fragments", [
    (["train", "--epochs", "1" + "0" * 5000], ["--epochs", "invalid int value: '1000", "...'"]),
    (["train", "--sizes", "2," + "9" * 5000 + ",1"], ["--sizes", "integers"]),
    (["train", "x" * 100_000], ["unrecognized arguments: xxx", "..."]),
    (["train", "--backend", "y" * 5000], ["--backend", "invalid choice: 'yyy", "...'"]),
])
def test_cli_usage_error_shows_a_huge_value_shortened(capsys, argv, fragments):
    """argparse repeats what it was given; a 5000-digit number or 100 kB of text is
    shown cut, as every other error shows values (at most 80 characters)."""
    code, _out, err = run(argv, capsys)
    assert_usage_error(code, err, *fragments)
    assert len(err) < 500, len(err)


def test_negative_control_a_short_usage_error_is_shown_whole(capsys):
    code, _out, err = run(["train", "--epochs", "x" * 60], capsys)
    assert_usage_error(code, err, f"invalid int value: '{'x' * 60}'")


def test_cli_spec_file_with_a_5000_digit_integer_is_one_line(tmp_path, capsys):
    (tmp_path / "spec.json").write_text('{"sizes": [2, 3, 1], "seed": 1' + "0" * 5000 + "}")
    code, _out, err = run(["train", "--spec", tmp_path / "spec.json"], capsys)
    assert_usage_error(code, err, "spec", "digits")


def test_cli_nested_spec_file_is_one_line(tmp_path, capsys):
    (tmp_path / "spec.json").write_text(nested(100_000))
    code, _out, err = run(["train", "--spec", tmp_path / "spec.json"], capsys)
    assert_usage_error(code, err, "nested too deeply")


def npy_claiming(shape, data: bytes = b"", descr="<f8") -> bytes:
    return npy_header(shape, descr) + data


def predict_measuring_memory(checkpoint, input_file, capsys):
    """``predict --input-file``: (exit code, stderr, peak bytes Python allocated)."""
    tracemalloc.start()
    try:
        code, _out, err = run(["predict", "--checkpoint", checkpoint, "--input-file",
                               input_file], capsys)
        return code, err, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("shape, data", [((10**7, 10**7), b""), ((10**7, 2), bytes(16)),
                                         ((1, 2), bytes(8)), ((1, 2), bytes(24))])
def test_cli_npy_input_claiming_more_data_than_the_file_holds(tmp_path, saved, capsys,
                                                             shape, data):
    """Finding 4: a .npy header claiming (10**7, 10**7): MemoryError (728 TiB) before;
    now the header's size is checked against the file's before anything is allocated."""
    path = tmp_path / "x.npy"
    path.write_bytes(npy_claiming(shape, data))
    code, err, peak = predict_measuring_memory(saved, path, capsys)
    assert_usage_error(code, err, "--input-file", "x.npy", "bytes")
    assert peak < 2**24, peak


def test_negative_control_a_npy_input_of_the_size_its_header_says_predicts(tmp_path, saved,
                                                                          capsys):
    path = tmp_path / "x.npy"
    path.write_bytes(npy_claiming((2, 2), np.array([[1.0, 2.0], [3.0, 4.0]]).tobytes()))
    code, out, err = run(["predict", "--checkpoint", saved, "--input-file", path], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 2


def test_cli_fortran_order_npy_input_is_read_in_its_order(tmp_path, saved, capsys):
    """A header saying fortran_order True (np.save writes one for an F-contiguous
    array): the same rows as the C-ordered file."""
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    assert b"'fortran_order': True" in (tmp_path / "f.npy").read_bytes()
    outs = []
    for name in ("c.npy", "f.npy"):
        code, out, err = run(["predict", "--checkpoint", saved, "--input-file",
                              tmp_path / name], capsys)
        assert code == 0, err
        outs.append(out)
    assert outs[0] == outs[1]


# ============================================================ finding 9: long names

def test_a_255_byte_file_name_can_be_written(tmp_path):
    """Finding 9: the temporary was 22 characters longer than the name."""
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    for name in ("a" * (name_max - 4) + ".npz", "é" * ((name_max - 4) // 2) + ".npz"):
        path = tmp_path / name
        assert check_output_path("--save", path) == str(path)
        write_atomic(path, lambda f: f.write(b"data"))
        assert path.read_bytes() == b"data"
        assert os.listdir(tmp_path) == [name]
        path.unlink()


def test_cli_save_with_a_240_character_name_writes_it(tmp_path, capsys):
    path = tmp_path / ("c" * 236 + ".npz")
    code, _out, err = run(["train", "--epochs", "1", "--save", path], capsys)
    assert code == 0, err
    assert load_checkpoint(path).epochs_done == 1


def test_cli_save_with_a_name_too_long_fails_before_training(tmp_path, capsys):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    path = tmp_path / ("c" * (name_max - 3) + ".npz")
    code, out, err = run(["train", "--epochs", "1", "--save", path], capsys)
    assert_usage_error(code, err, "--save", f"a file name of at most {name_max} bytes")
    assert out == ""                                      # no training
    assert os.listdir(tmp_path) == []


def test_output_check_creates_the_temporary_before_any_work(tmp_path, capsys, monkeypatch):
    """When the temporary cannot be created (a read-only file system, a full
    directory, a quota...), --save fails before training, not after."""
    real_open = os.open

    def read_only_fs(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(30, "Read-only file system", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", read_only_fs)
    code, out, err = run(["train", "--epochs", "1", "--save", tmp_path / "c.npz"], capsys)
    assert_usage_error(code, err, "--save", "Read-only file system")
    assert out == ""                                      # no training
    monkeypatch.undo()
    code, out, err = run(["train", "--epochs", "1", "--save", tmp_path / "c.npz"], capsys)
    assert code == 0 and os.listdir(tmp_path) == ["c.npz"], err      # negative control


# ============================================================ finding 10: declared sizes

def record_claiming_more_data(arrays: dict, key: str, shape: tuple) -> bytes:
    """A checkpoint whose embedded spec and ``key``'s header and zip record all claim
    a float64 array of ``shape``, while the file stores only 8 bytes of it."""
    members = replace_member(members_of(arrays), f"{key}.npy",
                             npy_header(shape) + bytes(8))
    data = bytearray(zip_bytes(members))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        infos = archive.infolist()
    record = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    for info in infos:
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data,
                                                                       record + 28)
        if info.filename == f"{key}.npy":
            claimed = len(npy_header(shape)) + 8 * int(np.prod(shape))
            struct.pack_into("<I", data, info.header_offset + 22, claimed)   # local
            struct.pack_into("<I", data, record + 24, claimed)               # central
        record += 46 + name_length + extra_length + comment_length
    return bytes(data)


def vm_crafted_file(tmp_path) -> str:
    shape = (2**24, 14)                   # the widest layer allowed: 1.88 GB of float64
    spec = NetworkSpec(sizes=(14, 2**24))
    arrays = with_spec_text(arrays_of(NetworkSpec(sizes=(1, 1))), spec.to_json())
    data = record_claiming_more_data(arrays, "params.0.weight", shape)
    path = tmp_path / "vm.npz"
    path.write_bytes(data)
    return str(path)


def test_checkpoint_record_claiming_more_data_than_stored_allocates_nothing(tmp_path):
    """Finding 10: a 2.8 KB file raised the virtual memory by 1.86 GiB (numpy's
    read_array allocates the header's shape before reading). Measured with
    tracemalloc (numpy reports its allocations to it) and, in a fresh process,
    with VmPeak."""
    path = vm_crafted_file(tmp_path)
    size = os.path.getsize(path)
    assert size < 4096
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="vm.npz") as exc:
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**22, f"{peak} bytes allocated"
    assert "params.0.weight" in str(exc.value) and "bytes" in str(exc.value)
    script = textwrap.dedent(f"""
        from nnparity.shared import load_checkpoint
        def peak():
            return next(int(l.split()[1]) for l in open("/proc/self/status")
                        if l.startswith("VmPeak"))
        before = peak()
        try:
            load_checkpoint({path!r})
        except ValueError:
            pass
        print(peak() - before)
    """)
    grown_kib = int(subprocess.run([sys.executable, "-c", script], capture_output=True,
                                   text=True, check=True, timeout=120).stdout)
    assert grown_kib < 64 * 1024, f"VmPeak grew by {grown_kib} KiB"


def test_negative_control_tracemalloc_sees_what_numpy_would_allocate(tmp_path):
    tracemalloc.start()
    try:
        np.ndarray(230_000_000, dtype=np.float64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak > 1_800_000_000


def quoted_overlap() -> tuple[bytes, bytes]:
    """(a checkpoint whose entry params.0.bias lies inside the data of params.0.weight,
    the same file with params.0.bias at its own place): the "quoted overlap" of zip bombs,
    which lets each entry pass every check of its own while together they read more
    than the file holds. The spec (sizes 23, 1) makes the weight's data exactly as
    long as the bias's local record (30 + 17 name + 136 .npy bytes) plus 1 byte of
    padding."""
    arrays = arrays_of(NetworkSpec(sizes=(23, 1)))
    b_name, w_name = "params.0.bias.npy", "params.0.weight.npy"
    alone = zip_bytes([(b_name, npy_bytes(arrays["params.0.bias"]))])
    local_b = alone[:alone.index(b"PK\x01\x02")]                # b's local record
    assert len(local_b) == 183
    w_data = npy_header((1, 23)) + local_b + bytes(1)
    members = replace_member(members_of(arrays), w_name, w_data)
    plain = zip_bytes(members)
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        offsets = {info.filename: info.header_offset for info in archive.infolist()}
    inner = offsets[w_name] + 30 + len(w_name) + len(npy_header((1, 23)))
    assert plain[inner:inner + len(local_b)] == local_b
    data = bytearray(plain)
    record = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    for name in offsets:                        # central records, in the order written
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data,
                                                                       record + 28)
        if name == b_name:
            struct.pack_into("<I", data, record + 42, inner)
        record += 46 + name_length + extra_length + comment_length
    return bytes(data), plain


def test_entries_whose_data_overlap_are_refused(tmp_path):
    overlapping, plain = quoted_overlap()
    (tmp_path / "overlap.npz").write_bytes(overlapping)
    with pytest.raises(ValueError, match="overlap.npz: .*'params.0.bias' overlaps"):
        load_checkpoint(tmp_path / "overlap.npz")
    (tmp_path / "plain.npz").write_bytes(plain)                      # negative control
    assert load_checkpoint(tmp_path / "plain.npz").spec.sizes == (23, 1)


def central_records(data: bytes) -> list[tuple[str, int]]:
    """(member name, offset of its central directory record), in directory order."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [info.filename for info in archive.infolist()]
    record = struct.unpack_from("<I", data, data.rfind(b"PK\x05\x06") + 16)[0]
    records = []
    for name in names:
        records.append((name, record))
        record += 46 + sum(struct.unpack_from("<HHH", data, record + 28))
    return records


def test_member_hidden_by_a_damaged_central_record_is_refused(tmp_path):
    """Found by the fuzz suite (test_zip_record_fields, 5000 examples): one central
    record's comment length set to 32768 made zipfile stop reading the directory
    there, so the last member (opt.step) vanished and the file loaded as a valid
    checkpoint without its optimizer state. The end record still lists every member."""
    data = zip_bytes(members_of(arrays_of(with_state=True)))
    (_, record), (last, _) = central_records(data)[-2:]
    assert last == "opt.step.npy"
    damaged = bytearray(data)
    struct.pack_into("<H", damaged, record + 32, 32768)        # the comment's length
    with zipfile.ZipFile(io.BytesIO(bytes(damaged))) as archive:   # what zipfile sees
        assert "opt.step.npy" not in archive.namelist()
    (tmp_path / "hidden.npz").write_bytes(damaged)
    with pytest.raises(ValueError, match="end record lists 9 entries, its central "
                                         "directory 8"):
        load_checkpoint(tmp_path / "hidden.npz")
    (tmp_path / "whole.npz").write_bytes(data)                      # negative control
    assert load_checkpoint(tmp_path / "whole.npz").opt_state is not None


def test_bytes_that_belong_to_no_member_are_refused(tmp_path):
    """A member whose central record is removed (and the end record's count and size
    made to agree): its bytes lie between the others, part of no entry."""
    data = zip_bytes(members_of(arrays_of(with_state=True)))
    records = central_records(data)
    _, record = records[4]
    length = 46 + sum(struct.unpack_from("<HHH", data, record + 28))
    end = data.rfind(b"PK\x05\x06")
    trimmed = bytearray(data[:record] + data[record + length:])
    end -= length
    entries, size = struct.unpack_from("<HI", trimmed, end + 10)
    struct.pack_into("<HHI", trimmed, end + 8, entries - 1, entries - 1, size - length)
    (tmp_path / "gap.npz").write_bytes(trimmed)
    with pytest.raises(ValueError, match=r"bytes before entry '.*' belong to no entry"):
        load_checkpoint(tmp_path / "gap.npz")


# ============================================================ finding 11: internals' errors

def header_text(text: str) -> bytes:
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


BAD_HEADERS = {
    "bytes-key": "{b'descr': '<f8', 'fortran_order': False, 'shape': (3, 2)}",
    "extra-key": "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), 'x': 1}",
    "bool-in-shape": "{'descr': '<f8', 'fortran_order': False, 'shape': (3, True)}",
    "negative-shape": "{'descr': '<f8', 'fortran_order': False, 'shape': (3, -2)}",
    "not-a-dict": "[('descr', '<f8')]",
    "deep": "{'descr': '<f8', 'fortran_order': False, 'shape': " + "(" * 3000 + ")" * 3000 + "}",
    "huge-int": "{'descr': '<f8', 'fortran_order': False, 'shape': (1" + "0" * 5000 + ", 2)}",
    # no bytes per element: numpy allocates <U0 as <U1 (364 TiB for this shape)
    "zero-itemsize": "{'descr': '<U0', 'fortran_order': False, 'shape': (10000000, 10000000)}",
    # a 9000-character header: numpy's message quotes it whole
    "long": "{'descr': '<f8', 'fortran_order': False, 'shape': (" + "9" * 300 + ",) * 29}",
    "long-shape": "{'descr': '<f8', 'fortran_order': False, 'shape': ("
                  + ", ".join(["9" * 300] * 29) + ")}",
}


@pytest.mark.parametrize("header", BAD_HEADERS)
def test_checkpoint_npy_header_that_is_not_a_header_is_a_value_error(tmp_path, header):
    """Finding 11: a bytes key made numpy's parser raise a bare TypeError."""
    arrays = arrays_of()
    weight = arrays["params.0.weight"]
    members = replace_member(members_of(arrays), "params.0.weight.npy",
                             header_text(BAD_HEADERS[header]) + weight.tobytes())
    path = tmp_path / "header.npz"
    path.write_bytes(zip_bytes(members))
    with pytest.raises(ValueError, match=r"checkpoint .*header.npz: entry 'params.0.weight'"):
        load_checkpoint(path)


def test_negative_control_the_same_header_written_by_hand_loads(tmp_path):
    arrays = arrays_of()
    w = arrays["params.0.weight"]
    text = repr({"descr": "<f8", "fortran_order": False, "shape": w.shape})
    members = replace_member(members_of(arrays), "params.0.weight.npy",
                             header_text(text) + w.tobytes())
    path = tmp_path / "header.npz"
    path.write_bytes(zip_bytes(members))
    np.testing.assert_array_equal(load_checkpoint(path).params[0]["weight"], w)


@pytest.mark.parametrize("header", BAD_HEADERS)
def test_cli_npy_input_header_that_is_not_a_header_is_one_line(tmp_path, saved, capsys,
                                                              header):
    path = tmp_path / "x.npy"
    path.write_bytes(header_text(BAD_HEADERS[header].replace("(3, ", "(1, ")) + bytes(16))
    code, err, peak = predict_measuring_memory(saved, path, capsys)
    assert_usage_error(code, err, "--input-file", "x.npy", "malformed .npy header")
    assert peak < 2**24, peak
    assert len(err) < 600, f"a message of {len(err)} characters"


def test_temporary_name_of_a_file_system_with_short_names_terminates(monkeypatch, tmp_path):
    """NAME_MAX smaller than the temporary's own suffix: the name shrinks to nothing
    (and creating it is then the file system's to refuse) instead of looping."""
    monkeypatch.setattr(files, "name_max", lambda directory: 14)
    with deadline(5):
        assert files.temporary_prefix(tmp_path / "out.npz") == str(tmp_path / "..")


def test_path_with_a_nul_is_a_value_error_naming_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"path='.*\\x00.*' is not allowed: expected a path "
                                         "without NUL"):
        load_checkpoint(f"{tmp_path}/a\0b.npz")
    with pytest.raises(ValueError, match=r"--save='.*\\x00.*' is not allowed: expected a path "
                                         "without NUL"):
        check_output_path("--save", f"{tmp_path}/a\0b.npz")
    with pytest.raises(ValueError, match=r"path='.*\\x00.*' is not allowed"):
        save_checkpoint(f"{tmp_path}/a\0b.npz", SPEC, init_params(SPEC))
    assert os.listdir(tmp_path) == []


def test_cli_path_with_a_nul_is_one_line(tmp_path, saved, capsys):
    """argv cannot hold a NUL, but main(argv) can be called with one."""
    for argv, flag in ((["predict", "--checkpoint", "a\0b.npz", "--input", "1,2"],
                        "--checkpoint"),
                       (["train", "--epochs", "1", "--save", f"{tmp_path}/a\0b"], "--save"),
                       (["predict", "--checkpoint", saved, "--input-file", "a\0.csv"],
                        "--input-file"),
                       (["train", "--spec", "a\0.json"], "--spec")):
        code, _out, err = run(argv, capsys)
        assert_usage_error(code, err, flag, "\\x00")


# ============================================================ finding 14: one line

@pytest.mark.parametrize("argv, fragment", [
    (["predict", "--checkpoint", "{tmp}/new\nline.npz", "--input", "1,2"], "new\\nline"),
    (["predict", "--checkpoint", "{tmp}/corrupt\nname.npz", "--input", "1,2"],
     "corrupt\\nname"),
    (["predict", "--checkpoint", "{ck}", "--input-file", "{tmp}/x\ny.csv"], "x\\ny"),
    (["predict", "--checkpoint", "{ck}", "--input-file", "{tmp}/wide\r\n.csv"], "wide\\r\\n"),
    (["train", "--epochs", "1", "--save", "{tmp}/no\ndir/c.npz"], "no\\ndir"),
    (["train", "--spec", "{tmp}/a\u2028b.json"], "a\\u2028b"),
    (["train", "unexpected\nargument"], "unexpected\\nargument"),
    (["train", "--backend", "no\nsuch"], "no\\nsuch"),
])
def test_every_cli_error_is_one_line_even_with_newlines_in_a_name(tmp_path, saved, capsys,
                                                                 argv, fragment):
    """Finding 14: a file name holding a newline made the error span lines."""
    (tmp_path / "corrupt\nname.npz").write_bytes(b"not a zip file")
    (tmp_path / "wide\r\n.csv").write_text("1,2,3\n")
    argv = [a.format(tmp=tmp_path, ck=saved) for a in argv]
    code, _out, err = run(argv, capsys)
    assert_usage_error(code, err, fragment)


def test_negative_control_a_name_with_a_newline_is_a_valid_name(tmp_path, saved, capsys):
    path = tmp_path / "new\nline.npz"
    code, _out, err = run(["train", "--epochs", "1", "--save", path], capsys)
    assert code == 0, err
    code, _out, err = run(["predict", "--checkpoint", path, "--input", "1,2"], capsys)
    assert code == 0, err


# ============================================================ finding 15: what is replaced

def test_output_path_that_is_a_fifo_is_refused_before_any_work(tmp_path, capsys):
    """Finding 15: a FIFO at the output path was replaced by a regular file. The
    choice: an existing output must be a regular file (it is replaced atomically);
    anything else is refused, before any work and again just before the rename."""
    path = tmp_path / "out.npz"
    os.mkfifo(path)
    code, out, err = run(["train", "--epochs", "1", "--save", path], capsys, seconds=10)
    assert_usage_error(code, err, "--save", "FIFO")
    assert out == "" and stat.S_ISFIFO(os.lstat(path).st_mode)
    with pytest.raises(ValueError, match="FIFO"):
        write_atomic(path, lambda f: f.write(b"x"))
    assert sorted(os.listdir(tmp_path)) == ["out.npz"] and stat.S_ISFIFO(os.lstat(path).st_mode)


def test_output_path_that_is_a_symlink_is_refused_and_both_are_left_alone(tmp_path, capsys):
    target = tmp_path / "target.npz"
    target.write_bytes(b"the target")
    link = tmp_path / "link.npz"
    os.symlink(target, link)
    code, out, err = run(["train", "--epochs", "1", "--save", link], capsys)
    assert_usage_error(code, err, "--save", "symbolic link", str(target))
    assert out == ""
    with pytest.raises(ValueError, match="symbolic link"):
        write_atomic(link, lambda f: f.write(b"x"))
    with pytest.raises(ValueError, match="symbolic link"):
        check_output_path("--json", link)
    assert os.readlink(link) == str(target) and target.read_bytes() == b"the target"
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "target.npz"]


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero"])
def test_device_output_path_is_refused(path):
    """Root may write in /dev: replacing /dev/null with a regular file would break the
    system. (The checks run as whoever runs the tests; nothing is written.)"""
    before = os.lstat(path)
    with pytest.raises(ValueError, match="a character device"):
        check_output_path("--json", path)
    with pytest.raises(ValueError, match="a character device"):
        write_atomic(path, lambda f: f.write(b"x"))
    after = os.lstat(path)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_negative_control_an_existing_regular_file_is_replaced(tmp_path, capsys):
    path = tmp_path / "out.npz"
    path.write_bytes(b"old")
    code, _out, err = run(["train", "--epochs", "1", "--save", path], capsys)
    assert code == 0, err
    assert load_checkpoint(path).epochs_done == 1 and os.listdir(tmp_path) == ["out.npz"]


def temporary_of(path) -> str:
    """The name write_atomic gives its temporary for ``path``, any pid and token."""
    return files.temporary_prefix(os.fspath(path))


def test_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    """Finding 15: kill -9 during a write leaves .NAME.<pid>.<hex>.tmp behind. A later
    write of the same file removes such a temporary once its writer is gone (no
    process with its pid) and it is older than files.STALE_SECONDS."""
    path = tmp_path / "out.npz"
    script = textwrap.dedent(f"""
        import sys, time
        from nnparity.shared.io.files import write_atomic
        def write(f):
            f.write(b"half")
            f.flush()
            print("writing", flush=True)
            time.sleep(600)
        write_atomic({str(path)!r}, write)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.kill()                                   # SIGKILL: nothing is cleaned up
        writer.wait()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(os.path.basename(temporary_of(path)))
    stale = tmp_path / left[0]
    write_atomic(path, lambda f: f.write(b"new"))             # too young: kept
    assert stale.exists()
    old = time.time() - files.STALE_SECONDS - 60
    os.utime(stale, (old, old))
    write_atomic(path, lambda f: f.write(b"newer"))
    assert sorted(os.listdir(tmp_path)) == ["out.npz"] and path.read_bytes() == b"newer"


def test_temporaries_that_are_not_stale_or_not_ours_are_left_alone(tmp_path):
    """Negative controls: a live writer's temporary (however old), a young one,
    names that only look like ours, a directory, a symlink and another user's file."""
    path = tmp_path / "out.npz"
    prefix = os.path.basename(temporary_of(path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        token = "0123456789abcdef"
        names = {
            "live": f"{prefix}{alive.pid}.{token}.tmp",
            "young": f"{prefix}{dead}.{token}.tmp",
            "other-file": f".other.npz.{dead}.{token}.tmp",
            "short-token": f"{prefix}{dead}.0123.tmp",
            "upper-token": f"{prefix}{dead}.{token.upper()}.tmp",
            "no-pid": f"{prefix}x.{token}.tmp",
            "other-suffix": f"{prefix}{dead}.{token}.bak",
            "directory": f"{prefix}{dead}.{'1' * 16}.tmp",
            "symlink": f"{prefix}{dead}.{'2' * 16}.tmp",
            "other-user": f"{prefix}{dead}.{'3' * 16}.tmp",
            "stale": f"{prefix}{dead}.{'4' * 16}.tmp",
        }
        old = time.time() - files.STALE_SECONDS - 60
        for kind, name in names.items():
            entry = tmp_path / name
            if kind == "directory":
                entry.mkdir()
            elif kind == "symlink":
                os.symlink(tmp_path / names["live"], entry)
            else:
                entry.write_bytes(b"x")
            if kind == "other-user":
                if os.geteuid() != 0:
                    pytest.skip("chown to another user needs root")
                os.chown(entry, 65534, 65534)
            if kind != "young":
                os.utime(entry, (old, old), follow_symlinks=False)
        write_atomic(path, lambda f: f.write(b"new"))
        left = set(os.listdir(tmp_path))
        assert left == {"out.npz"} | set(names.values()) - {names["stale"]}
    finally:
        alive.kill()
        alive.wait()
