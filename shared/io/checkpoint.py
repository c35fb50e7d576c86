"""Checkpoints: a trained network, its optimizer state and its epoch count in one file.

The file is an uncompressed ``.npz`` (a zip of ``.npy`` arrays) written to
exactly the path given (no suffix is added). Format version 2, with these entries:

- ``format``: unicode string ``"nnparity checkpoint"``
- ``version``: int64 scalar, ``FORMAT_VERSION`` (2)
- ``spec``: unicode string, ``NetworkSpec.to_json()``
- ``epochs_done``: int64 scalar, 0 <= epochs_done <= spec.epochs
- ``params.{name}`` for every parameter, by its flat name (torch's
  ``nn.Sequential`` state-dict key: ``params.0.weight``, ``params.0.bias``,
  ``params.2.weight``...), in the spec's dtype
- ``model.{name}`` for every model-state buffer (none for Dense networks)
- with an optimizer state only: ``opt.step`` (int64 scalar, updates done) and
  ``opt.{buffer}.{name}`` for every buffer the spec's optimizer keeps
  (``state_buffers``), shaped and typed like the parameters

Version 1 files (written before the layer architecture, MLPs only) still load:
they name layer l's tensors ``{l}.W`` and ``{l}.b`` (l counting Dense layers),
which are the flat names ``{2l}.weight`` and ``{2l}.bias``.

It is written atomically (``files.write_atomic``: a temporary file in the same
directory, then ``os.replace``). Reading opens only a regular file
(``files.open_input``: a FIFO or a device is refused, never read) and never
unpickles: the zip records are checked first (stored entries only, no
encryption, each entry's data stored in full within the file, the members one
after the other as zipfile writes them: no overlap, no gap, none hidden from
the central directory), then the entry names and each entry's ``.npy``
header against what the embedded spec implies, all before any array data is
read, so nothing is allocated for sizes the file only claims; the arrays then
become a ``Checkpoint``, whose own checks are the one validation of their
values. A file that does not match raises ``ValueError`` saying what is wrong;
nothing from the file is ever executed.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Mapping, NoReturn, Sequence, TypeVar

import numpy as np

from nnparity.shared.io.files import (check_output_path, npy_array, open_input, read_npy_header,
                                      write_atomic)
from nnparity.shared.core.checkpoint import Checkpoint
from nnparity.shared.core.optimizers import OptimizerState
from nnparity.shared.core.tree import Params, ShapeTree, named_leaves
from nnparity.shared.core.optimizers import state_buffers
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.validation import InputValueError, fail

FORMAT = "nnparity checkpoint"
FORMAT_VERSION = 2
#: the versions this module reads
READABLE_VERSIONS = (1, 2)
ZIP_MAGIC = b"PK\x03\x04"
#: the longest ``format`` and ``spec`` entries read, in characters (a spec's JSON is
#: well under a kilobyte; the bound keeps a crafted file from claiming gigabytes)
MAX_FORMAT_CHARS = 64
MAX_SPEC_CHARS = 2**20
T = TypeVar("T")


def save_checkpoint(path: str | os.PathLike, spec: NetworkSpec, params: Params,
                    opt_state: OptimizerState | None = None, *, epochs_done: int | None = None,
                    model_state: Params | None = None) -> None:
    """Write ``spec``, ``params`` (and ``opt_state``, ``model_state``) to ``path``
    as a checkpoint.

    ``epochs_done`` defaults to ``spec.epochs`` (a finished run); ``model_state``
    to the initial one. Everything is
    checked before anything is written; the file appears at ``path`` complete
    or not at all (an existing file there is replaced). ``path`` must be a file
    in an existing, writable directory (``files.check_output_path``).
    """
    path = check_output_path("path", path)
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    checkpoint = Checkpoint(spec, params, opt_state,
                            spec.epochs if epochs_done is None else epochs_done, model_state)
    arrays = checkpoint_arrays(checkpoint)
    # a file object: np.savez adds no ".npz", and stores (never compresses) its entries
    # numpy's stub types savez(file, *args, allow_pickle: bool, **kwds), and mypy matches
    # an unpacked dict against allow_pickle too; every entry here is an array
    write_atomic(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def checkpoint_arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The file's entries (see the module docstring), all plain arrays."""
    arrays = {"format": np.array(FORMAT), "version": np.array(FORMAT_VERSION, np.int64),
              "spec": np.array(checkpoint.spec.to_json()),
              "epochs_done": np.array(checkpoint.epochs_done, np.int64)}
    arrays.update(tree_arrays("params", checkpoint.params))
    arrays.update(tree_arrays("model", checkpoint.model_state))
    if checkpoint.opt_state is not None:
        arrays["opt.step"] = np.array(checkpoint.opt_state.step, np.int64)
        for buffer in state_buffers(checkpoint.spec.optimizer):
            arrays.update(tree_arrays(f"opt.{buffer}", checkpoint.opt_state.buffers[buffer]))
    return arrays


def tree_arrays(prefix: str, tree: Sequence[Mapping[str, T]]) -> dict[str, T]:
    """{"{prefix}.{flat name}": array} for a tree (or a tree of shapes)."""
    return {f"{prefix}.{name}": value for name, value in named_leaves(tree)}


def entry_name(version: int, flat_name: str) -> str:
    """The file's name for a tensor's flat name: itself in version 2; in version 1
    (MLPs only) ``{l}.W``/``{l}.b`` for ``{2l}.weight``/``{2l}.bias``."""
    if version >= 2:
        return flat_name
    index, name = flat_name.split(".")
    return f"{int(index) // 2}.{ {'weight': 'W', 'bias': 'b'}[name]}"


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    Returns a ``Checkpoint``, which unpacks as ``(spec, params, opt_state)`` and
    has ``.epochs_done``. Raises ``ValueError`` naming the file and what is wrong
    when it is not a readable regular file, not a checkpoint of this format
    version or does not match its own spec (entries, shapes, dtypes, optimizer
    buffers); ``TypeError`` when ``path`` is not a path.

    Nothing is unpickled, and no entry is read before its zip record and its
    ``.npy`` header are checked against the file's size and what the embedded
    spec implies, so a crafted file cannot make this allocate much more than
    its own size.
    """
    return read_checkpoint("path", path)


def read_checkpoint(name: str, path: str | os.PathLike) -> Checkpoint:
    """``load_checkpoint(path)``, naming the argument ``name`` (e.g. "--resume")
    when ``path`` is not a readable regular file."""
    with open_input(name, path) as f:
        path = os.fspath(path)
        size = os.fstat(f.fileno()).st_size
        magic = f.read(len(ZIP_MAGIC))
        if magic != ZIP_MAGIC:
            bad(path, f"not an .npz (zip) file: it starts with {magic!r}, not {ZIP_MAGIC!r}")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                reader = EntryReader(path, archive, size)
                spec, has_state = read_spec(reader)
                params = reader.tree("params", spec.param_shapes, spec)
                model_state = reader.tree("model", spec.buffer_shapes, spec)
                opt_state = None
                if has_state:
                    opt_state = OptimizerState(
                        int(reader.read("opt.step", INT64_SCALAR)[()]),
                        {buffer: reader.tree(f"opt.{buffer}", spec.param_shapes, spec)
                         for buffer in state_buffers(spec.optimizer)})
                epochs_done = int(reader.read("epochs_done", INT64_SCALAR)[()])
        except InputValueError:
            raise
        except (zipfile.BadZipFile, zlib.error, struct.error, EOFError, OSError, ValueError,
                TypeError, ArithmeticError, LookupError, RuntimeError, MemoryError) as exc:
            # the last resort: zipfile's own parsing of a damaged file
            bad(path, f"the file is truncated or corrupt ({type(exc).__name__}: {exc})")
    try:                        # the one validation of what the file holds
        return Checkpoint(spec, params, opt_state, epochs_done, model_state)
    except (ValueError, TypeError) as exc:
        bad(path, str(exc))


def bad(path: str, problem: str) -> NoReturn:
    """Raise the ValueError for a file that is not a valid checkpoint."""
    raise InputValueError(f"checkpoint {path}: {problem}") from None


@dataclass(frozen=True)
class Entry:
    """What an entry must be: ``dtype`` and ``shape``, or, when ``dtype`` is None, a
    0-d unicode string of at most ``max_chars`` characters."""

    shape: tuple = ()
    dtype: np.dtype | None = None
    max_chars: int = 0

    def wanted(self) -> str:
        if self.dtype is None:
            return f"a unicode string of at most {self.max_chars} characters"
        if self.shape == ():
            return f"an {self.dtype.name} scalar"
        return f"{self.dtype.name} {self.shape}"

    def matches(self, shape: tuple, dtype: np.dtype) -> bool:
        if self.dtype is None:
            return (dtype.kind == "U" and dtype.isnative and shape == ()
                    and dtype.itemsize <= 4 * self.max_chars)
        return dtype == self.dtype and shape == self.shape


INT64_SCALAR = Entry((), np.dtype(np.int64))
#: the smallest local file header of a zip member (30 bytes before its name), and the
#: end of central directory record (22 bytes before its comment)
LOCAL_HEADER, END_RECORD = 30, 22


class EntryReader:
    """The entries of an open checkpoint zip of ``size`` bytes, each read only after
    its zip record and its ``.npy`` header are checked."""

    def __init__(self, path: str, archive: zipfile.ZipFile, size: int) -> None:
        self.path, self.archive = path, archive
        self.version = FORMAT_VERSION             # read_spec sets the file's
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            key = info.filename[:-len(".npy")]
            if not info.filename.endswith(".npy") or not key:
                bad(path, f"member {info.filename!r} is not an .npy array")
            if key in self.members:
                bad(path, f"entry {key!r} appears more than once")
            if info.flag_bits & 0x1:
                bad(path, f"entry {key!r} is encrypted; save_checkpoint never encrypts")
            if info.compress_type != zipfile.ZIP_STORED:
                bad(path, f"entry {key!r} is compressed (zip method {info.compress_type}); "
                          "save_checkpoint writes stored (uncompressed) entries only")
            if info.header_offset + LOCAL_HEADER + info.compress_size > size:
                bad(path, f"the file is truncated or corrupt: entry {key!r} claims "
                          f"{info.compress_size} bytes, more than the file's {size}")
            if info.file_size != info.compress_size:    # stored: the data is the bytes
                bad(path, f"the file is truncated or corrupt: entry {key!r} claims "
                          f"{info.file_size} bytes of data but stores {info.compress_size}")
            self.members[key] = info
        assert archive.fp is not None           # an open archive has its file
        self.check_layout(archive.fp, size)

    def check_layout(self, fp: IO[bytes], size: int) -> None:
        """The records lie as zipfile writes them: the members one after the other
        from byte 0, then the central directory, then the end record, which lists
        exactly the members zipfile found. So no entry's data overlaps another's (a
        "quoted overlap" would read the same bytes many times over), and no member is
        hidden from the directory (a damaged length in a central record makes
        zipfile stop early and silently drop the members after it)."""
        path = self.path
        tail_start = max(0, size - END_RECORD - 0xFFFF)
        fp.seek(tail_start)
        tail = fp.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < END_RECORD:
            bad(path, "the file is truncated or corrupt: no zip end record")
        _, _, _, here, total, directory_size, directory_offset, _ = struct.unpack_from(
            "<4s4H2LH", tail, at)
        if 0xFFFF in (here, total) or 0xFFFFFFFF in (directory_size, directory_offset):
            directory_offset = None                  # zip64: zipfile's own records rule
        elif here != total or total != len(self.members):
            bad(path, f"the file is corrupt: its end record lists {total} entries, its "
                      f"central directory {len(self.members)}")
        elif directory_offset + directory_size != tail_start + at:
            bad(path, "the file is corrupt: the central directory does not end where the "
                      "end record starts")
        position, previous = 0, None
        for key, info in sorted(self.members.items(), key=lambda item: item[1].header_offset):
            if info.header_offset < position:
                bad(path, f"the file is corrupt: entry {key!r} overlaps the data of entry "
                          f"{previous!r}")
            if info.header_offset > position:
                bad(path, f"the file is corrupt: {info.header_offset - position} bytes before "
                          f"entry {key!r} belong to no entry")
            if info.flag_bits & 0x8:
                bad(path, f"entry {key!r} has a data descriptor; save_checkpoint never "
                          "writes one")
            fp.seek(info.header_offset)
            local = fp.read(LOCAL_HEADER)
            if len(local) < LOCAL_HEADER or local[:4] != ZIP_MAGIC:
                bad(path, f"the file is corrupt: entry {key!r} has no local header")
            name_length, extra_length = struct.unpack_from("<HH", local, 26)
            position = (info.header_offset + LOCAL_HEADER + name_length + extra_length
                        + info.compress_size)
            previous = key
        if directory_offset is not None and position != directory_offset:
            bad(path, f"the file is corrupt: {directory_offset - position} bytes between the "
                      "last entry and the central directory")

    def read(self, key: str, entry: Entry, why: str = "") -> np.ndarray:
        """The array in entry ``key``, which must be as ``entry`` describes: the header
        is checked before any data is read."""
        if key not in self.members:
            bad(self.path, f"no entry {key!r} (entries: "
                           f"{', '.join(sorted(self.members)) or 'none'})")
        info = self.members[key]
        with self.archive.open(info) as f:
            problem: str | None
            try:
                header = read_npy_header(f)
            except ValueError as exc:
                problem = f"entry {key!r} has a malformed .npy header ({exc})"
            else:
                problem = None
        if problem is not None:
            bad(self.path, problem)
        shape, dtype = header.shape, header.dtype
        if dtype.hasobject:
            bad(self.path, f"entry {key!r} is an object array (pickled data), which is "
                           "never loaded")
        if not entry.matches(shape, dtype):
            found = (f"a unicode string of length {dtype.itemsize // 4}"
                     if dtype.kind == "U" and shape == () else header.describe())
            bad(self.path, f"entry {key!r} is {found}, expected {entry.wanted()}{why}")
        if info.file_size != header.size + header.data_bytes:
            bad(self.path, f"entry {key!r} holds {info.file_size - header.size} bytes of "
                           f"data, but its header {header.describe()} needs "
                           f"{header.data_bytes}")
        data = self.archive.read(info)             # at most the file's bytes; checks the CRC
        return npy_array(header, data, offset=header.size)

    def tree(self, prefix: str, shapes: ShapeTree, spec: NetworkSpec) -> Params:
        """The tree shaped like ``shapes`` from entries ``{prefix}.{name}``, each of
        the spec's dtype."""
        dtype = np.dtype(spec.dtype)
        return [{key: self.read(f"{prefix}.{entry_name(self.version, f'{index}.{key}')}",
                                Entry(shape, dtype), " as the embedded spec implies")
                 for key, shape in layer.items()}
                for index, layer in enumerate(shapes)]


def read_spec(reader: EntryReader) -> tuple[NetworkSpec, bool]:
    """The embedded spec, after the format and version entries are checked and
    before anything else is read; and whether the file has an optimizer state.
    The file's entries must be exactly the ones this spec implies."""
    path = reader.path
    text = Entry(max_chars=MAX_FORMAT_CHARS)
    found = str(reader.read("format", text)[()])
    if found != FORMAT:
        bad(path, f"entry 'format' is {found!r}, expected {FORMAT!r}")
    version = int(reader.read("version", INT64_SCALAR)[()])
    if version not in READABLE_VERSIONS:
        bad(path, f"format version {version} is unknown; this nnparity reads versions "
                  f"{', '.join(map(str, READABLE_VERSIONS))}")
    reader.version = version
    spec_json = str(reader.read("spec", Entry(max_chars=MAX_SPEC_CHARS))[()])
    try:
        spec = NetworkSpec.from_json(spec_json)
    except (ValueError, TypeError, ArithmeticError, RecursionError, MemoryError) as exc:
        # untrusted text: any rejection is "invalid" (OverflowError: a number no float
        # holds, RecursionError: nesting, as NetworkSpec raised them before it named them)
        bad(path, f"the embedded spec is invalid: {exc}")

    buffers = state_buffers(spec.optimizer)
    has_state = any(key.startswith("opt.") for key in reader.members)
    expected = {"format", "version", "spec", "epochs_done"}
    if version == 1 and spec.sizes is None:
        bad(path, "format version 1 holds MLPs only, but the embedded spec has layers")

    def names(prefix: str, shapes: ShapeTree) -> set[str]:
        return {f"{prefix}.{entry_name(version, name)}" for name, _ in named_leaves(shapes)}

    expected |= names("params", spec.param_shapes) | names("model", spec.buffer_shapes)
    if has_state:
        expected.add("opt.step")
        for buffer in buffers:
            expected |= names(f"opt.{buffer}", spec.param_shapes)
    found_keys = set(reader.members)
    missing, extra = sorted(expected - found_keys), sorted(found_keys - expected)
    if missing or extra:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else [])
        note = ""
        if any(key.startswith("opt.") for key in missing + extra):
            note = (f" (the optimizer state of {spec.optimizer} is opt.step and the buffers "
                    f"{', '.join(buffers) or 'none'})")
        bad(path, f"entries do not match the embedded spec: {'; '.join(problems)}{note}")
    return spec, has_state
