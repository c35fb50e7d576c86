"""Fuzzing the command line (issue 17): argument lists for ``train``, ``predict``
and ``compare`` with hostile numbers, nested or huge JSON, hostile spec files
(the MLP shorthand and the layer form: input shapes, layer lists, kinds and fields),
checkpoints and input files, and odd paths (FIFOs, directories, symlinks,
devices, names with a newline or a NUL, names longer than NAME_MAX, names that
are not UTF-8), run in-process through ``main(argv)`` and, a few, in a
subprocess.

The property, for every argument list, within a time bound:

- the exit code is 0 (a valid run), 1 (compare: parity failed) or 2;
- exit 2 is exactly one line on stderr, "nnparity: error: ...", from a check
  (never the last-resort handler's "not caught by a check"), no traceback,
  and short (values are shown cut: under 1000 characters here);
- nothing outside the example's workspace is written (an audit hook records,
  and blocks, every write, rename, removal or link outside it);
- on exit 2 nothing in the workspace changed: no file written or replaced, no
  existing output altered, no temporary left behind; on success no temporary
  is left either, nothing but the outputs changed, and a --save'd checkpoint
  loads.

A run that succeeds may still warn (numpy's overflow warnings, e.g. ``train
--momentum 1e300`` ends with finite parameters whose predictions overflow):
such runs are counted as events (``--hypothesis-show-statistics``), not failed.

Every example runs in a fresh workspace. Valid values are kept cheap (tiny
networks, at most a few epochs, --backends numpy); hostile ones are the
point. ``--hypothesis-show-statistics`` prints the counts and outcomes per
target; the default ("ci") profile runs ``settings.default.max_examples``
examples per in-process target, ``--hypothesis-profile fuzz`` many more.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import itertools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
from crafted_checkpoints import npy_header
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nnparity.shared import load_checkpoint
from nnparity.shared.cli.main import main
from conftest import deadline

EXAMPLES = settings.default.max_examples
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
#: a few examples through the real process boundary (each costs an interpreter start)
SUBPROCESS = settings(FUZZ, max_examples=max(4, EXAMPLES // 10))
#: seconds one command may take (a valid one here takes a few milliseconds)
TIME_BOUND = 30.0
TEMPORARY = re.compile(r"\..*\.[0-9]{1,10}\.[0-9a-f]{16}\.tmp")

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module", autouse=True)
def pyplot_imported():
    """matplotlib writes its font cache on first import: let it, before the guard
    below watches (--plot and --html import pyplot)."""
    if HAVE_MATPLOTLIB:
        import matplotlib.pyplot  # noqa: F401


# ---------------------------------------------------------------- writes outside

class Guard:
    """An audit hook that records and blocks every write outside ``root`` while
    active (``with GUARD.watching(root):``). Audit hooks cannot be removed; this one
    does nothing while inactive."""

    WRITES = frozenset({"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
              "os.truncate", "os.chmod", "os.chown", "os.utime", "os.mkfifo", "os.mknod",
              "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree"})
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self) -> None:
        self.root: str | None = None
        self.violations: list[tuple[str, str]] = []
        sys.addaudithook(self.hook)

    def inside(self, path) -> bool:
        path = os.fsdecode(path)
        for candidate in (os.path.abspath(path), os.path.realpath(path)):
            if os.path.commonpath([candidate, self.root]) != self.root:
                return False
        return True

    def hook(self, event_name: str, args: tuple) -> None:
        if self.root is None:
            return
        if event_name == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & self.WRITE_FLAGS)
            paths = [path] if writing else []
        elif event_name in self.WRITES:
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
            if event_name not in ("os.rename", "os.link", "os.symlink", "shutil.move",
                                  "shutil.copyfile", "shutil.copytree"):
                paths = paths[:1]
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and not self.inside(path):
                self.violations.append((event_name, os.fsdecode(path)))
                raise PermissionError(f"test guard: {event_name} outside the workspace: "
                                      f"{os.fsdecode(path)!r}")

    @contextlib.contextmanager
    def watching(self, root: str):
        self.root, self.violations = root, []
        dont_write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            yield self.violations
        finally:
            self.root = None
            sys.dont_write_bytecode = dont_write_bytecode


GUARD = Guard()


# ---------------------------------------------------------------- the workspace

SPEC = {"sizes": [2, 3, 1], "epochs": 2, "batch_size": 2,
        "optimizer": {"name": "adam", "lr": 0.01}}
#: the same run in the general layer form, not an MLP (two Dense layers in a row)
LAYER_SPEC = {"input_shape": [2], "layers": [{"kind": "dense", "units": 3},
                                             {"kind": "activation", "name": "tanh"},
                                             {"kind": "dense", "units": 2},
                                             {"kind": "dense", "units": 1}],
              "epochs": 2, "batch_size": 2, "optimizer": {"name": "adam", "lr": 0.01}}


def valid_checkpoint_bytes() -> bytes:
    """A checkpoint of SPEC after 1 epoch, with Adam's state (made once, by the CLI)."""
    with tempfile.TemporaryDirectory() as directory:
        spec = os.path.join(directory, "spec.json")
        with open(spec, "w") as f:
            json.dump(SPEC, f)
        path = os.path.join(directory, "c.npz")
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["train", "--spec", spec, "--epochs", "1", "--save", path]) == 0
        with open(path, "rb") as f:
            return f.read()


CHECKPOINT = valid_checkpoint_bytes()
ROWS = np.array([[28.1, 58.0], [31.4, 45.0]])
_buffer = io.BytesIO()
np.save(_buffer, ROWS)
NPY_ROWS = _buffer.getvalue()
NON_UTF8 = os.fsdecode(b"\xff\xfe")                   # a name that is not UTF-8
LONG = 255                                            # NAME_MAX of the usual file systems


class Workspace:
    """A fresh directory per example: ``root`` (realpath) with the working
    directory ``root/cwd``; every path the fuzzer names is inside ``root``."""

    def __init__(self) -> None:
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="nnparity-fuzz-"))
        self.cwd = os.path.join(self.root, "cwd")
        os.mkdir(self.cwd)

    def path(self, name: str) -> str:
        return os.path.join(self.cwd, name)

    def write(self, name: str, data: bytes) -> str:
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def input_path(self, kind: str, valid: bytes, suffix: str) -> str:
        """A path of ``kind`` to read, where ``valid`` is what a valid file holds."""
        if kind == "valid":
            return self.write(f"in{suffix}", valid)
        if kind == "relative":
            self.write(f"in{suffix}", valid)
            return f"in{suffix}"
        if kind == "dotdot":
            self.write(f"in{suffix}", valid)
            return f"../cwd/in{suffix}"
        if kind == "symlink":
            os.symlink(self.write(f"target{suffix}", valid), self.path(f"in{suffix}"))
            return self.path(f"in{suffix}")
        if kind == "newline-name":
            return self.write(f"new\nline{suffix}", valid)
        if kind == "long-name":
            return self.write("i" * (LONG - len(suffix)) + suffix, valid)
        if kind == "non-utf8-name":
            return self.write(NON_UTF8 + suffix, valid)
        if kind == "fifo":
            os.mkfifo(self.path(f"in{suffix}"))
            return self.path(f"in{suffix}")
        if kind == "directory":
            os.mkdir(self.path(f"in{suffix}"))
            return self.path(f"in{suffix}")
        if kind == "dev-zero-link":
            os.symlink("/dev/zero", self.path(f"in{suffix}"))
            return self.path(f"in{suffix}")
        if kind == "dangling-link":
            os.symlink(self.path("nowhere"), self.path(f"in{suffix}"))
            return self.path(f"in{suffix}")
        if kind == "loop-link":
            os.symlink(self.path(f"in{suffix}"), self.path(f"in{suffix}"))
            return self.path(f"in{suffix}")
        if kind == "empty-file":
            return self.write(f"in{suffix}", b"")
        fixed = {"missing": self.path(f"missing{suffix}"), "dev-null": "/dev/null",
                 "too-long-name": self.path("i" * (LONG + 1 - len(suffix)) + suffix),
                 "nul": self.path(f"a\0b{suffix}"), "empty": "",
                 "under-a-file": os.path.join(self.write("plain", b"x"), f"in{suffix}")}
        return fixed[kind]

    def output_path(self, kind: str, suffix: str) -> str:
        """A path of ``kind`` to write."""
        name = f"out{suffix}"
        if kind == "new":
            return self.path(name)
        if kind == "relative":
            return name
        if kind == "dotdot":
            return f"../cwd/{name}"
        if kind == "existing":
            return self.write(name, b"the old file")
        if kind == "fifo":
            os.mkfifo(self.path(name))
            return self.path(name)
        if kind == "directory":
            os.mkdir(self.path(name))
            return self.path(name)
        if kind == "symlink-to-file":
            os.symlink(self.write(f"target{suffix}", b"the target"), self.path(name))
            return self.path(name)
        if kind == "dangling-link":
            os.symlink(self.path(f"nowhere{suffix}"), self.path(name))
            return self.path(name)
        if kind == "stale-temporary":                  # a killed writer's leftover
            self.write(f".{name}.999999999.{'0' * 16}.tmp", b"half")
            return self.path(name)
        fixed = {"newline-name": self.path(f"new\nline{suffix}"),
                 "long-name": self.path("o" * (LONG - len(suffix)) + suffix),
                 "too-long-name": self.path("o" * (LONG + 1 - len(suffix)) + suffix),
                 "non-utf8-name": self.path(NON_UTF8 + suffix),
                 "nul": self.path(f"a\0b{suffix}"), "empty": "",
                 "trailing-slash": self.path(name) + "/",
                 "missing-directory": self.path(f"no/such/{name}"),
                 "under-a-file": os.path.join(self.write("plain", b"x"), name),
                 "dev-null": "/dev/null"}
        return fixed[kind]

    def snapshot(self) -> dict[str, tuple]:
        """Every entry under root: its kind and content (regular files: a hash;
        symlinks: the target). FIFOs are never opened."""
        entries = {}
        for directory, dirs, names in os.walk(self.root):
            for name in dirs + names:
                path = os.path.join(directory, name)
                st_ = os.lstat(path)
                if stat.S_ISREG(st_.st_mode):
                    with open(path, "rb") as f:
                        entries[path] = ("file", hashlib.sha256(f.read()).hexdigest())
                elif stat.S_ISLNK(st_.st_mode):
                    entries[path] = ("link", os.readlink(path))
                else:
                    entries[path] = (stat.S_IFMT(st_.st_mode),)
        return entries


INPUT_KINDS = ["valid", "relative", "dotdot", "symlink", "newline-name", "long-name",
               "non-utf8-name", "fifo", "directory", "dev-zero-link", "dangling-link",
               "loop-link", "empty-file", "missing", "dev-null", "too-long-name", "nul",
               "empty", "under-a-file"]
OUTPUT_KINDS = ["new", "relative", "dotdot", "existing", "fifo", "directory",
                "symlink-to-file", "dangling-link", "stale-temporary", "newline-name",
                "long-name", "too-long-name", "non-utf8-name", "nul", "empty",
                "trailing-slash", "missing-directory", "under-a-file", "dev-null"]


def mostly(common: str, kinds: list[str]):
    """``common`` two times in three, else any of ``kinds``: most paths are ordinary
    ones, so that the other arguments are reached too."""
    return st.integers(0, 2).flatmap(lambda i: st.just(common) if i < 2
                                     else st.sampled_from(kinds))


input_kinds = mostly("valid", INPUT_KINDS)
output_kinds = mostly("new", OUTPUT_KINDS)


# ---------------------------------------------------------------- hostile values

HUGE = ["1" + "0" * 400, "1" + "0" * 5000, str(2**63), str(2**64), str(2**62), "-" + "9" * 30]
int_texts = {
    # valid values are cheap ones: no run of many epochs or wide layers
    "--epochs": ["0", "1", "2", "1_0", "\u0663", " 2", "-1", str(2**32), str(10**12), "1.5",
                 "1e3", "", "0x10", "two"] + HUGE,
    "--batch-size": ["1", "2", "3", "5", "1000", str(2**32 - 1), "0", "-1", str(2**32),
                     str(2**62)] + HUGE,
    "--seed": ["0", "7", str(2**32 - 1), str(2**32), "-1"] + HUGE,
}
float_texts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e300", "1e-320", "0", "-0.0", "1e400", "0.5",
                     "0.1", "1e-3", "0x1p3", "1_0.5", "", "infinity", "NaN", "1" + "0" * 400,
                     "\u0661.5", "0.9"]),
)
hidden_widths = ["1", "3", "8", "0", "-1", str(2**24 + 1), str(2**31), str(10**30),
                 "1" + "0" * 5000, "x", ""]


@st.composite
def sizes_texts(draw):
    kind = draw(st.sampled_from(["hidden", "hidden", "deep", "odd"]))
    if kind == "hidden":
        return f"2,{draw(st.sampled_from(hidden_widths))},1"
    if kind == "deep":
        return "2," + "1," * draw(st.sampled_from([0, 50, 1030])) + "1"
    return draw(st.sampled_from(["", ",", "2,,1", "2", "2.5,1", "a,b", "2,3,1,", " 2 , 3 , 1"]))


numbers_json = st.one_of(
    st.sampled_from(["1", "0.5", "-1", "0", "1e400", "-1e400", "NaN", "Infinity", "1e-400",
                     "true", '"1"', "null", "[]", "{}"] + HUGE),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.integers().map(str),
)
json_leaves = st.one_of(st.none(), st.booleans(), st.floats(), st.integers(),
                        st.text(max_size=4))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["delta", "negative_slope", "alpha", "leaky_relu", "elu",
                                     "x", ""]), inner, max_size=3)), max_leaves=8)


@st.composite
def json_flag_texts(draw):
    kind = draw(st.sampled_from(["delta", "slope", "value", "nested", "raw"]))
    if kind == "delta":
        return f'{{"delta": {draw(numbers_json)}}}'
    if kind == "slope":
        return f'{{"leaky_relu": {{"negative_slope": {draw(numbers_json)}}}}}'
    if kind == "value":
        return json.dumps(draw(json_values))
    if kind == "nested":
        depth = draw(st.sampled_from([10, 1000, 3000, 100_000]))
        return draw(st.sampled_from(["[" * depth + "]" * depth, '{"a":' * depth + "1" +
                                     "}" * depth, "[" * depth]))
    return draw(st.sampled_from(['{"delta": 1, "delta": 2}', "[1]", "", "{", "null",
                                 '{"delta": 1}\n{"x": 2}', '{"leaky_relu": null}']))


@st.composite
def spec_flag_pairs(draw):
    """(flag, value) pairs for the spec and optimizer flags."""
    flag = draw(st.sampled_from(["--epochs", "--batch-size", "--seed", "--lr", "--momentum",
                                 "--eps", "--weight-decay", "--alpha", "--dampening",
                                 "--betas", "--sizes", "--loss-params", "--activation-params",
                                 "--activation", "--loss", "--optimizer", "--init", "--dtype",
                                 "--dataset", "--shuffle", "--nesterov", "--centered"]))
    if flag in int_texts:
        return [flag, draw(st.sampled_from(int_texts[flag]))]
    if flag == "--betas":
        return [flag, draw(st.one_of(st.tuples(float_texts, float_texts).map(",".join),
                                     st.sampled_from(["0.9", "0.9,0.99,0.5", "", ","])))]
    if flag == "--sizes":
        return [flag, draw(sizes_texts())]
    if flag in ("--loss-params", "--activation-params"):
        return [flag, draw(json_flag_texts())]
    if flag == "--activation":
        return [flag, draw(st.sampled_from(["relu", "leaky_relu", "tanh", "relu,tanh", "bogus",
                                            "", "leaky_relu,leaky_relu", "relu\n"]))]
    if flag == "--loss":
        return [flag, draw(st.sampled_from(["mse", "huber", "mae", "cross_entropy", "hinge"]))]
    if flag == "--optimizer":
        return [flag, draw(st.sampled_from(["sgd", "adam", "adamw", "rmsprop", "lbfgs"]))]
    if flag == "--init":
        return [flag, draw(st.sampled_from(["zeros", "he_normal", "ones"]))]
    if flag == "--dtype":
        return [flag, draw(st.sampled_from(["float32", "float64", "float16"]))]
    if flag == "--dataset":
        return [flag, draw(st.sampled_from(["notebook", "digits", "diabetes", "mnist", ""]))]
    if flag in ("--shuffle", "--nesterov", "--centered"):
        return [draw(st.sampled_from([flag, "--no-" + flag[2:]]))]
    return [flag, draw(float_texts)]


def cheap(field: str, value):
    """``value`` for ``field``, or 1 / [2, 3, 1] instead of a valid but costly one (many
    epochs, a wide layer): the fuzzer looks for errors, not for long runs."""
    number = value
    if isinstance(value, tuple):                         # ("raw", number text)
        try:
            number = int(value[1])
        except ValueError:
            return value
    if field == "epochs" and isinstance(number, int) and 2 < number <= 2**32:
        return 1
    if field == "sizes" and isinstance(value, list) and any(
            isinstance(n, int) and 64 < n <= 2**24 for n in value):
        return [2, 3, 1]
    if field == "units" and isinstance(number, int) and 64 < number <= 2**24:
        return 3
    return value


@st.composite
def spec_file_bytes(draw):
    """What a --spec file holds: SPEC with fields made hostile, or hostile text."""
    kind = draw(st.sampled_from(["fields", "fields", "layer-fields", "layer-fields", "raw"]))
    if kind == "layer-fields":
        d = json.loads(json.dumps(LAYER_SPEC))
        for _ in range(draw(st.integers(1, 3))):
            field = draw(st.sampled_from(["input_shape", "input_shape[0]", "layers",
                                          "layers[i]", "kind", "units", "name", "params",
                                          "bias", "sizes", "activation", "epochs"]))
            value = cheap(field, draw(st.one_of(json_values,
                                                numbers_json.map(lambda t: ("raw", t)))))
            layers = d["layers"] if isinstance(d.get("layers"), list) else []
            layer = layers[draw(st.integers(0, len(layers) - 1))] if layers else None
            if field == "input_shape[0]" and isinstance(d.get("input_shape"), list) \
                    and d["input_shape"]:
                d["input_shape"][0] = value
            elif field == "layers[i]" and layers:
                layers[draw(st.integers(0, len(layers) - 1))] = value
            elif field in ("kind", "units", "name", "params", "bias") \
                    and isinstance(layer, dict):
                layer[field] = value
            elif field in ("input_shape", "layers", "sizes", "activation", "epochs"):
                d[field] = value
        text = json.dumps(d, default=str)
        text = re.sub(r'\["raw", "([^"]*)"\]', r"\1", text)      # raw number texts, unquoted
        return text.encode()
    if kind == "fields":
        d = json.loads(json.dumps(SPEC))
        for _ in range(draw(st.integers(1, 3))):
            field = draw(st.sampled_from(["sizes", "epochs", "batch_size", "seed", "lr",
                                          "betas", "loss_params", "activation_params",
                                          "activation", "colour", "optimizer", "dtype"]))
            value = cheap(field, draw(st.one_of(json_values,
                                                numbers_json.map(lambda t: ("raw", t)))))
            if field in ("lr", "betas") and isinstance(d["optimizer"], dict):
                d["optimizer"][field] = value
            else:
                d[field] = value
        text = json.dumps(d, default=str)
        text = re.sub(r'\["raw", "([^"]*)"\]', r"\1", text)      # raw number texts, unquoted
        return text.encode()
    return draw(st.sampled_from([
        b"", b"{", b"[]", b"null", b"[" * 100_000,
        b'{"sizes": [2, 3, 1], "seed": 1' + b"0" * 5000 + b"}",
        json.dumps(SPEC).encode("utf-16"), b"\xef\xbb\xbf" + json.dumps(SPEC).encode(),
        b'{"sizes": [2, 3, 1], "sizes": [2, 4, 1]}', json.dumps(SPEC).encode() + b"\0",
        json.dumps(LAYER_SPEC).encode(),
        b'{"input_shape": [2], "layers": [' + b'{"kind": "activation", "name": "relu"}, '
        * 2000 + b'{"kind": "dense", "units": 1}]}',
        b'{"input_shape": [2], "layers": [{"kind": "dense", "units": 1' + b"0" * 5000 + b"}]}",
        b" " * (2**20 + 1)]))


@st.composite
def checkpoint_bytes(draw):
    """The valid checkpoint, or it with a few bytes flipped, cut short, or noise."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "flipped", "truncated", "noise"]))
    if kind == "valid":
        return CHECKPOINT
    if kind == "flipped":
        data = bytearray(CHECKPOINT)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            data[position] ^= draw(st.integers(1, 255))
        return bytes(data)
    if kind == "truncated":
        return CHECKPOINT[:draw(st.integers(0, len(CHECKPOINT) - 1))]
    return draw(st.binary(max_size=64))


@st.composite
def npy_input_bytes(draw):
    kind = draw(st.sampled_from(["valid", "wide", "int", "nan", "object", "claims-more",
                                 "claims-huge", "bytes-key", "fortran", "not-npy", "empty",
                                 "crafted"]))
    if kind == "crafted":               # any dtype and shape, with a little data or none
        descr = draw(st.sampled_from(["<f8", "<f4", ">f8", "<U0", "|S0", "|V0", "<U3", "|O",
                                      "<i8", "<c16", "|b1", "<M8[s]", [("a", "<f8")]]))
        shape = draw(st.one_of(
            st.lists(st.one_of(st.integers(0, 3), st.sampled_from([-1, 10**7, 2**62])),
                     max_size=3).map(tuple),
            st.sampled_from([(True, 2), (2.0, 2), [1, 2], 3])))
        text = repr({"descr": descr, "fortran_order": draw(st.booleans()), "shape": shape})
        text += " " * (-(10 + len(text) + 1) % 64) + "\n"
        return (b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()
                + draw(st.binary(max_size=48)))
    buffer = io.BytesIO()
    if kind in ("valid", "wide", "int", "nan", "fortran"):
        x = {"valid": ROWS, "wide": np.ones((2, 3)), "int": np.ones((2, 2), np.int64),
             "nan": np.array([[np.nan, 1.0]]), "fortran": np.asfortranarray(ROWS)}[kind]
        np.save(buffer, x)
        return buffer.getvalue()
    if kind == "object":
        np.save(buffer, np.array([[1, "x"]], dtype=object), allow_pickle=True)
        return buffer.getvalue()
    if kind == "claims-more":
        return npy_header((draw(st.integers(3, 10**6)), 2)) + ROWS.tobytes()
    if kind == "claims-huge":
        return npy_header(draw(st.sampled_from([(10**7, 10**7), (2**62, 2), (2**40, 2**40)])))
    if kind == "bytes-key":
        text = "{b'descr': '<f8', 'fortran_order': False, 'shape': (2, 2)}"
        text += " " * (-(10 + len(text) + 1) % 64) + "\n"
        return (b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()
                + ROWS.tobytes())
    if kind == "not-npy":
        return b"28.1,58.0\n"
    return b""


rows_texts = st.one_of(
    st.lists(st.lists(float_texts, min_size=1, max_size=3).map(",".join), min_size=1,
             max_size=3).map(";".join),
    st.sampled_from(["28.1,58.0", "1,2;3,4", "", ";", "1,2;", "1e999,1", "nan,1", "1_0,2",
                     "1,2\n3,4", "\u0661,2"]),
)


# ---------------------------------------------------------------- argument lists

@st.composite
def train_argv(draw, ws: Workspace):
    argv = ["train", "--backend", "numpy", "--epochs", "1"]
    for _ in range(draw(st.integers(0, 3))):
        argv += draw(spec_flag_pairs())
    if draw(st.integers(0, 3)) == 3:
        kind = draw(st.one_of(input_kinds, st.just("stdin-like")))
        if kind == "stdin-like":
            argv += ["--spec", "/dev/stdin"]
        else:
            argv += ["--spec", ws.input_path(kind, draw(spec_file_bytes()), ".json")]
    if draw(st.booleans()):
        argv += ["--save", ws.output_path(draw(output_kinds), ".npz")]
    if draw(st.integers(0, 3)) == 3:                 # resume: spec flags are usage errors
        flags = argv[5:] if draw(st.integers(0, 3)) == 3 else argv[argv.index("--save"):] \
            if "--save" in argv else []
        argv = ["train", "--backend", "numpy", "--epochs", draw(st.sampled_from(["1", "2", "0"])),
                "--resume", ws.input_path(draw(input_kinds),
                                          draw(checkpoint_bytes()), ".npz")] + flags
    if draw(st.integers(0, 9)) == 9:
        argv.append(draw(st.sampled_from(["stray", "--bogus", "new\nline", "-", "--"])))
    return argv


@st.composite
def predict_argv(draw, ws: Workspace):
    argv = ["predict", "--backend", "numpy", "--checkpoint",
            ws.input_path(draw(input_kinds), draw(checkpoint_bytes()), ".npz")]
    source = draw(st.sampled_from(["valid", "input", "csv", "npy", "other-suffix", "none"]))
    if source == "valid":
        argv += draw(st.sampled_from([["--input", "28.1,58.0;31.4,45.0"],
                                      ["--input-file", ws.write("rows.csv", b"28.1,58.0\n")],
                                      ["--input-file", ws.write("rows.npy", NPY_ROWS)]]))
    elif source == "input":
        argv += ["--input", draw(rows_texts)]
    elif source == "csv":
        text = draw(st.one_of(rows_texts.map(lambda t: t.replace(";", "\n")),
                              st.binary(max_size=32).map(lambda b: b.decode("latin1"))))
        argv += ["--input-file", ws.input_path(draw(input_kinds),
                                               text.encode("utf-8", "surrogateescape"), ".csv")]
    elif source == "npy":
        argv += ["--input-file", ws.input_path(draw(input_kinds),
                                               draw(npy_input_bytes()), ".npy")]
    elif source == "other-suffix":
        argv += ["--input-file", ws.input_path("valid", b"1,2\n", ".txt")]
    if draw(st.integers(0, 9)) == 9:
        argv += draw(spec_flag_pairs())                      # not a predict flag
    return argv


@st.composite
def compare_argv(draw, ws: Workspace):
    argv = ["compare", "--backends", "numpy", "--epochs", "1"]
    for _ in range(draw(st.integers(0, 2))):
        pair = draw(spec_flag_pairs())
        if pair[0] == "--sizes" and pair[1].count(",") > 10:
            continue                                         # deep networks: train only
        argv += pair
    outputs = [("--json", ".json")]
    if HAVE_MATPLOTLIB and draw(st.integers(0, 4)) == 4:
        outputs += [draw(st.sampled_from([("--plot", ".png"), ("--html", ".html")]))]
    for flag, suffix in outputs:
        if draw(st.booleans()):
            argv += [flag, ws.output_path(draw(output_kinds), suffix)]
    return argv


ARGV = {"train": train_argv, "predict": predict_argv, "compare": compare_argv}


# ---------------------------------------------------------------- the property



def outputs_of(argv: list[str]) -> set[str]:
    """The paths the command may write on success (absolute)."""
    paths = set()
    for flag, value in itertools.pairwise(argv):
        if flag in ("--save", "--json", "--plot", "--html") and value:
            paths.add(value)
    return paths


def check_outcome(ws: Workspace, argv: list[str], code, out: str, err: str, before: dict,
                  violations: list) -> None:
    assert not violations, f"wrote outside the workspace: {violations}"
    assert code in ((0, 1, 2) if argv[0] == "compare" else (0, 2)), (code, err)
    assert "Traceback" not in err, err
    after = ws.snapshot()
    new_temporaries = [p for p in set(after) - set(before)
                       if TEMPORARY.fullmatch(os.path.basename(p))]
    assert not new_temporaries, f"temporaries left behind: {new_temporaries}"
    if code == 2:
        assert err.startswith("nnparity: error: ") and err.endswith("\n"), err
        assert len(err.splitlines()) == 1 and err.count("\n") == 1, err
        assert "not caught by a check" not in err, err
        assert len(err) < 1000, f"a message of {len(err)} characters: {err[:200]}..."
        assert after == before, "a failed command changed the workspace"
        event(f"exit 2: {re.sub(r'=.*', '', err[17:].split(' is not allowed')[0])[:40]}")
        return
    event(f"exit {code}")
    written = {os.path.realpath(os.path.join(ws.cwd, p)) for p in outputs_of(argv)}
    for path, entry in before.items():
        if os.path.realpath(path) not in written and not TEMPORARY.fullmatch(
                os.path.basename(path)):
            assert after.get(path) == entry, f"{path} changed"
    for path in written:
        assert stat.S_ISREG(os.lstat(path).st_mode), path
        if path.endswith(".npz"):
            load_checkpoint(path)


def run_in_process(ws: Workspace, argv: list[str]):
    before = ws.snapshot()
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ws.cwd)
    try:
        with GUARD.watching(ws.root) as violations, deadline(TIME_BOUND, "the command"), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught, \
                open(os.devnull, "rb") as nothing:
            warnings.simplefilter("always")
            stdin, sys.stdin = sys.stdin, io.TextIOWrapper(nothing)    # --spec /dev/stdin
            try:
                code = main(argv)
            finally:
                sys.stdin, wrapper = stdin, sys.stdin
                wrapper.detach()                    # the with statement closes the file
    finally:
        os.chdir(cwd)
    for warning in caught:      # reported, not failed: a run may warn (see the module doc)
        event(f"exit {code} with a {warning.category.__name__}")
    check_outcome(ws, argv, code, out.getvalue(), err.getvalue(), before, violations)


@pytest.mark.parametrize("command", sorted(ARGV))
def test_negative_control_the_property_catches_a_traceback_a_write_and_two_lines(command):
    """The checks above can fail: an uncaught error, a file written on failure, an
    error of two lines and a write outside the workspace are each caught."""
    ws = Workspace()
    try:
        with pytest.raises(AssertionError, match="Traceback"):
            check_outcome(ws, [command], 2, "", "Traceback (most recent call last):\n",
                          ws.snapshot(), [])
        before = ws.snapshot()
        ws.write("new.npz", b"x")
        with pytest.raises(AssertionError, match="changed the workspace"):
            check_outcome(ws, [command], 2, "", "nnparity: error: x\n", before, [])
        with pytest.raises(AssertionError):
            check_outcome(ws, [command], 2, "", "nnparity: error: a\nb\n", ws.snapshot(), [])
        outside = os.path.join(tempfile.gettempdir(), "nnparity-fuzz-guard-control")
        with GUARD.watching(ws.root) as violations, pytest.raises(PermissionError), \
                open(outside, "w"):
            pass
        assert violations and not os.path.exists(outside)
    finally:
        ws.cleanup()


@pytest.mark.parametrize("command", sorted(ARGV))
@FUZZ
@given(data=st.data())
def test_cli_in_process(command, data):
    ws = Workspace()
    try:
        argv = data.draw(ARGV[command](ws), label="argv")
        run_in_process(ws, argv)
    finally:
        ws.cleanup()


def passable(argv: list[str]) -> bool:
    """Whether execve can pass ``argv``: no NUL, no argument over 128 KiB (Linux's
    MAX_ARG_STRLEN; a JSON flag nested 100000 deep is 200 kB)."""
    return not any("\0" in a or len(os.fsencode(a)) >= 2**17 for a in argv)


@SUBPROCESS
@given(data=st.data(), command=st.sampled_from(sorted(ARGV)))
def test_cli_in_a_subprocess(data, command):
    """The same, through the real entry point: the process's own stderr, exit code and
    no traceback (arguments with a NUL or over 128 KiB cannot be passed to a process;
    writes outside the workspace are not watched here, only in-process)."""
    ws = Workspace()
    try:
        argv = data.draw(ARGV[command](ws).filter(passable), label="argv")
        before = ws.snapshot()
        with tempfile.TemporaryDirectory() as config:        # matplotlib's cache, not ours
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLCONFIGDIR": config}
            proc = subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", *argv],
                                  cwd=ws.cwd, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=TIME_BOUND + 30, check=False, env=env)
        err = proc.stderr.decode("utf-8", "backslashreplace")
        if proc.returncode != 2 and err:
            event(f"exit {proc.returncode} with stderr: {err.splitlines()[0][-40:]}")
        check_outcome(ws, argv, proc.returncode, proc.stdout.decode("utf-8", "replace"), err,
                      before, [])
    finally:
        ws.cleanup()
