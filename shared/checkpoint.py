"""Checkpoints: a trained network, its optimizer state and its epoch count in one file.

The file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays) written to
exactly the path given (no suffix is added), with these entries:

- ``format``: unicode string ``"nnparity checkpoint"``
- ``version``: int64 scalar, ``FORMAT_VERSION`` (1)
- ``spec``: unicode string, ``NetworkSpec.to_json()``
- ``epochs_done``: int64 scalar, 0 <= epochs_done <= spec.epochs
- ``params.{l}.W`` (out, in) and ``params.{l}.b`` (out,) for every layer l,
  in the spec's dtype
- with an optimizer state only: ``opt.step`` (int64 scalar, updates done) and
  ``opt.{buffer}.{l}.W`` / ``opt.{buffer}.{l}.b`` for every buffer the spec's
  optimizer keeps (``state_buffers``), shaped and typed like the parameters

It is written atomically (a temporary file in the same directory, then
``os.replace``) and read with ``allow_pickle=False``; every entry is checked
against the embedded spec, so nothing from the file is ever executed and a
file that does not match raises ``ValueError`` saying what is wrong.
"""
from __future__ import annotations

import os
import secrets
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .init import Params, check_params
from .optimizers import state_buffers
from .spec import NetworkSpec
from .validation import (
    InputValueError,
    check_int,
    fail,
)

FORMAT = "nnparity checkpoint"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True, eq=False)      # arrays have no single truth value
class Checkpoint:
    """A network's state after ``epochs_done`` epochs of ``spec``.

    Unpacks as ``spec, params, opt_state = checkpoint``.

    Attributes:
        spec: the NetworkSpec; ``spec.epochs`` is the run's total.
        params: [(W (out, in), b (out,)), ...] in ``spec.dtype``.
        opt_state: ``{"step": int, buffer: [(W-shaped, b-shaped), ...]}`` for the
            spec's optimizer, or None (enough to predict, not to resume).
        epochs_done: epochs trained, 0 <= epochs_done <= spec.epochs.
    """

    spec: NetworkSpec
    params: Params
    opt_state: dict | None
    epochs_done: int

    def __post_init__(self) -> None:
        if not isinstance(self.spec, NetworkSpec):
            fail("spec", self.spec, "a NetworkSpec", TypeError)
        object.__setattr__(self, "params", check_params(self.spec, self.params))
        if self.opt_state is not None:
            object.__setattr__(self, "opt_state", check_opt_state(self.spec, self.opt_state))
        epochs_done = check_int("epochs_done", self.epochs_done, 0)
        if epochs_done > self.spec.epochs:
            fail("epochs_done", epochs_done,
                 f"at most spec.epochs={self.spec.epochs} (the run's total)")
        object.__setattr__(self, "epochs_done", epochs_done)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.spec, self.params, self.opt_state))


def check_opt_state(spec: NetworkSpec, state: Any, name: str = "opt_state") -> dict:
    """Check that ``state`` is a state of ``spec.optimizer`` for parameters shaped by
    ``spec``: exactly the keys "step" (an integer >= 0) and ``state_buffers``, each
    buffer a list of (W (out, in), b (out,)) pairs in ``spec.dtype``, finite."""
    buffers = state_buffers(spec.optimizer)
    expected = ("step",) + buffers
    if not isinstance(state, dict):
        fail(name, state, f"a dict with keys {expected}", TypeError)
    if set(state) != set(expected):
        fail(f"{name} keys", sorted(state, key=str),
             f"exactly {expected}, the state of {spec.optimizer}")
    step = state["step"]
    if isinstance(step, np.integer):
        step = int(step)
    checked = {"step": check_int(f"{name}['step']", step, 0)}
    for buffer in buffers:
        checked[buffer] = check_params(spec, state[buffer], f"{name}[{buffer!r}]")
    return checked


def save_checkpoint(path: str | os.PathLike, spec: NetworkSpec, params: Params,
                    opt_state: dict | None = None, *, epochs_done: int | None = None) -> None:
    """Write ``spec``, ``params`` (and ``opt_state``) to ``path`` as a checkpoint.

    ``epochs_done`` defaults to ``spec.epochs`` (a finished run). Everything is
    checked before anything is written; the file appears at ``path`` complete
    or not at all (an existing file there is replaced).
    """
    if not isinstance(path, (str, os.PathLike)):
        fail("path", path, "a file path (str or os.PathLike)", TypeError)
    path = os.fspath(path)
    if not isinstance(path, str) or not path:
        fail("path", path, "a non-empty str path", TypeError)
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    checkpoint = Checkpoint(spec, params, opt_state,
                            spec.epochs if epochs_done is None else epochs_done)
    arrays = checkpoint_arrays(checkpoint)
    directory, base = os.path.split(os.path.abspath(path))
    temp = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:          # a file object: np.savez adds no ".npz"
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def checkpoint_arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The file's entries (see the module docstring), all plain arrays."""
    arrays = {"format": np.array(FORMAT), "version": np.array(FORMAT_VERSION, np.int64),
              "spec": np.array(checkpoint.spec.to_json()),
              "epochs_done": np.array(checkpoint.epochs_done, np.int64)}
    arrays.update(layer_arrays("params", checkpoint.params))
    if checkpoint.opt_state is not None:
        arrays["opt.step"] = np.array(checkpoint.opt_state["step"], np.int64)
        for buffer in state_buffers(checkpoint.spec.optimizer):
            arrays.update(layer_arrays(f"opt.{buffer}", checkpoint.opt_state[buffer]))
    return arrays


def layer_arrays(prefix: str, pairs) -> dict[str, np.ndarray]:
    return {f"{prefix}.{layer}.{part}": array
            for layer, pair in enumerate(pairs) for part, array in zip("Wb", pair)}


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    Returns a ``Checkpoint``, which unpacks as ``(spec, params, opt_state)`` and
    has ``.epochs_done``. Raises ``ValueError`` naming the file and what is wrong
    when it is not a readable checkpoint of this format version or does not match
    its own spec (entries, shapes, dtypes, optimizer buffers).
    """
    if not isinstance(path, (str, os.PathLike)):
        fail("path", path, "a file path (str or os.PathLike)", TypeError)
    path = os.fspath(path)
    arrays = read_npz(path)

    def entry(key: str, kind: str) -> np.ndarray:
        """A 0-d entry: kind "U" a unicode string, "i" an integer."""
        if key not in arrays:
            bad(path, f"no entry {key!r} (entries: {', '.join(sorted(arrays)) or 'none'})")
        value = arrays[key]
        if value.dtype.kind != kind or value.ndim != 0:
            wanted = {"U": "a unicode string", "i": "an integer scalar"}[kind]
            bad(path, f"entry {key!r} is {value.dtype.name} {value.shape}, expected {wanted}")
        return value[()]

    if entry("format", "U") != FORMAT:
        bad(path, f"entry 'format' is {str(arrays['format'])!r}, expected {FORMAT!r}")
    version = int(entry("version", "i"))
    if version != FORMAT_VERSION:
        bad(path, f"format version {version} is unknown; this nnparity reads version "
                  f"{FORMAT_VERSION}")
    spec_json = str(entry("spec", "U"))
    try:
        spec = NetworkSpec.from_json(spec_json)
    except (ValueError, TypeError) as exc:      # untrusted text: any rejection is "invalid"
        bad(path, f"the embedded spec is invalid: {exc}")

    buffers = state_buffers(spec.optimizer)
    has_state = any(key.startswith("opt.") for key in arrays)
    expected = {"format", "version", "spec", "epochs_done"}
    expected |= set(layer_arrays("params", spec.param_shapes))
    if has_state:
        expected.add("opt.step")
        for buffer in buffers:
            expected |= set(layer_arrays(f"opt.{buffer}", spec.param_shapes))
    missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
    if missing or extra:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else [])
        note = ""
        if any(key.startswith("opt.") for key in missing + extra):
            note = (f" (the optimizer state of {spec.optimizer} is opt.step and the buffers "
                    f"{', '.join(buffers) or 'none'})")
        bad(path, f"entries do not match the embedded spec: {'; '.join(problems)}{note}")

    epochs_done = int(entry("epochs_done", "i"))
    if not 0 <= epochs_done <= spec.epochs:
        bad(path, f"epochs_done={epochs_done} is outside 0..{spec.epochs} (the spec's epochs)")

    def pairs(prefix: str) -> Params:
        result = []
        for layer, shapes in enumerate(spec.param_shapes):
            pair = []
            for part, shape in zip("Wb", shapes):
                key = f"{prefix}.{layer}.{part}"
                value = arrays[key]
                if value.dtype.name != spec.dtype or value.shape != shape:
                    bad(path, f"entry {key!r} is {value.dtype.name} {value.shape}, expected "
                              f"{spec.dtype} {shape} as the embedded spec implies")
                if not np.all(np.isfinite(value)):
                    bad(path, f"entry {key!r} holds non-finite values")
                pair.append(value)
            result.append(tuple(pair))
        return result

    params = pairs("params")
    opt_state = None
    if has_state:
        step = int(entry("opt.step", "i"))
        if step < 0:
            bad(path, f"entry 'opt.step' is {step}, expected an integer >= 0")
        opt_state = {"step": step, **{buffer: pairs(f"opt.{buffer}") for buffer in buffers}}
    return Checkpoint(spec, params, opt_state, epochs_done)


def bad(path: str, problem: str) -> None:
    """Raise the ValueError for a file that is not a valid checkpoint."""
    raise InputValueError(f"checkpoint {path}: {problem}")


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Every entry of the .npz file at ``path``, read with ``allow_pickle=False``.

    Raises ``ValueError`` for a file that is not a zip, is truncated or corrupt,
    or holds anything but plain ``.npy`` arrays (object arrays are pickles).
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(len(ZIP_MAGIC))
    except OSError as exc:
        fail("checkpoint", path, f"a readable file ({exc.strerror})")
    if magic != ZIP_MAGIC:
        bad(path, f"not an .npz (zip) file: it starts with {magic!r}, not {ZIP_MAGIC!r}")
    arrays, problem = {}, None
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                value = npz[key]
                if not isinstance(value, np.ndarray):
                    problem = f"entry {key!r} is not a .npy array"
                    break
                if value.dtype.hasobject:
                    problem = f"entry {key!r} is an object array"
                    break
                arrays[key] = value
    except ValueError as exc:      # an object array (pickled data) or a malformed .npy header
        problem = f"an entry is pickled data or malformed, and is not loaded ({exc})"
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        problem = f"the file is truncated or corrupt ({type(exc).__name__}: {exc})"
    if problem is not None:
        bad(path, problem)
    return arrays
