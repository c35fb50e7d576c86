"""Files: the one place where a path from the user is opened for reading, or
checked and written, and where ``.npy`` headers are read.

Reading:

- ``open_input(name, path, max_bytes=None)``: the regular file at ``path``
  (symlinks to one are followed), opened for reading. Anything else (a FIFO, a
  directory, a device, a socket) is refused before it is read, so a FIFO
  cannot hang the reader and ``/dev/zero`` cannot feed it without end: the
  path is stat'ed, opened with ``O_NONBLOCK`` (opening a FIFO does not wait
  for a writer) and the opened descriptor is ``fstat``'ed, so a file swapped in
  between is caught too.
- ``read_npy_header(f)`` / ``npy_array(header, data)``: a ``.npy`` header read
  and checked (format 1.0 or 2.0, at most 10000 bytes, the three keys numpy
  writes, a shape of non-negative ints) before any data, and the array built
  from data whose length the caller has checked against the header: nothing is
  allocated for what the file only claims to hold.

Writing:

- ``check_output_path(name, path, suffix=None)``: before any work, that a file
  can be written at ``path``: a non-empty path without NUL, ending in ``suffix``
  if one is given, in an existing writable directory, a name the file system
  allows (at most NAME_MAX bytes), and nothing at ``path`` or a regular file
  there. A symbolic link, a FIFO, a device, a socket or a directory at
  ``path`` is refused, never replaced and never written through: give the
  target's path to write where a link points. The temporary file the write
  will use is created and removed, so a read-only file system or a full
  directory is found before the work, not after it.
- ``write_atomic(path, write)``: ``write(f)`` into a temporary file in the same
  directory, flushed and fsynced, then ``os.replace`` onto ``path``. The file
  at ``path`` is the old one or the complete new one, never half written; on
  any failure the temporary file is removed. The new file gets the
  permissions of an ordinary new file (0o666 less the process umask), which
  ``os.open`` applies itself: the umask is never read or changed. What is at
  ``path`` is checked as above just before the write; the rename itself never
  writes through a link or a FIFO, it would replace one created in between.

The temporary is named ``.NAME.PID.TOKEN.tmp`` (NAME shortened so that the
whole fits NAME_MAX; PID the writer's process id; TOKEN 16 random hex digits).
A writer killed before it can remove its temporary (``kill -9``, a power cut)
leaves it behind; the next successful ``write_atomic`` of the same path
removes such leftovers: files of exactly that name pattern, regular files owned
by the same user, older than ``STALE_SECONDS``, whose process id is not a
running process. Nothing else is ever deleted.
"""
from __future__ import annotations

import math
import os
import re
import secrets
import stat
import time
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal

import numpy as np

from nnparity.shared.core.validation import dtype_name, fail

#: a leftover temporary is removed only once it is this old (and its writer is gone)
STALE_SECONDS = 3600
#: what the temporary's name adds to ".NAME": "." PID (at most 10 digits) "." TOKEN ".tmp"
TEMPORARY_TAIL = re.compile(r"([0-9]{1,10})\.[0-9a-f]{16}\.tmp")
TEMPORARY_EXTRA_BYTES = len(".") + len(".") + 10 + len(".") + 16 + len(".tmp")
#: the longest .npy header read (numpy's own default limit)
MAX_NPY_HEADER = 10_000
NPY_MAGIC = b"\x93NUMPY"
#: the largest byte count an array may have (numpy's limit, an intp)
MAX_ARRAY_BYTES = 2**63 - 1


# ---------------------------------------------------------------- paths

def check_path(name: str, path: Any) -> str:
    """``path`` as a str: a non-empty str or os.PathLike of str, without NUL, that
    the file system can encode. Errors name the argument ``name``."""
    if not isinstance(path, (str, os.PathLike)):
        fail(name, path, "a file path (str or os.PathLike)", TypeError)
    path = os.fspath(path)
    if not isinstance(path, str):
        fail(name, path, "a file path (str or os.PathLike of str)", TypeError)
    if not path:
        fail(name, path, "a non-empty file path")
    if "\0" in path:
        fail(name, path, "a path without NUL characters")
    try:
        os.fsencode(path)
    except UnicodeEncodeError as exc:
        fail(name, path, f"a path the file system can encode ({exc.reason} at "
                         f"character {exc.start})")
    return path


def kind_of(mode: int) -> str:
    """What a file of st_mode ``mode`` is, for messages: "a FIFO", "a directory", ..."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


# ---------------------------------------------------------------- reading

def open_input(name: str, path: Any, max_bytes: int | None = None,
               readable: str = "a readable file") -> BinaryIO:
    """The regular file at ``path`` opened for binary reading (see the module
    docstring), of at most ``max_bytes`` bytes if given. Errors name ``name``;
    one that cannot be opened is not ``readable`` (what the message expects)."""
    path = check_path(name, path)
    try:
        before = os.stat(path)              # a FIFO or a device is refused unopened
    except OSError as exc:
        fail(name, path, f"{readable} ({exc.strerror})")
    if not stat.S_ISREG(before.st_mode):
        fail(name, path, f"a regular file (it is {kind_of(before.st_mode)})")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        fail(name, path, f"{readable} ({exc.strerror})")
    try:
        opened = os.fstat(fd)               # what was opened, not what the name shows now
        if not stat.S_ISREG(opened.st_mode):
            fail(name, path, f"a regular file (it is {kind_of(opened.st_mode)})")
        if max_bytes is not None and opened.st_size > max_bytes:
            fail(name, path, f"a file of at most {max_bytes} bytes (it has {opened.st_size})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(name: str, path: str, f: BinaryIO, max_bytes: int) -> bytes:
    """All of ``f``, which must hold at most ``max_bytes`` bytes (read no further:
    a file that grows, or reports size 0 as /proc's do, cannot feed more)."""
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        fail(name, path, f"a file of at most {max_bytes} bytes")
    return data


@dataclass(frozen=True)
class NpyHeader:
    """A checked ``.npy`` header: ``shape`` (non-negative ints), ``fortran_order``,
    ``dtype``, and ``size``, the bytes from the magic string to the data."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    size: int

    @property
    def data_bytes(self) -> int:
        """The bytes of data the header says follow it."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        return shortened(f"{dtype_name(self.dtype)} {self.shape}")


def read_npy_header(f: IO[bytes]) -> NpyHeader:
    """Read the ``.npy`` header at ``f``'s position (``f.tell()`` must work).

    Raises ``ValueError`` saying what is wrong, in words a caller puts after "a
    malformed .npy header": not ``.npy`` at all, a format other than 1.0 and 2.0,
    a header longer than ``MAX_NPY_HEADER`` bytes or one numpy's parser rejects
    (any exception it raises, e.g. the TypeError of a bytes key), other keys than
    numpy writes, a shape that is not a tuple of ints >= 0 (bools included) or
    whose byte count no array can have, or elements of no bytes (``<U0``, which
    numpy would allocate as ``<U1``). Reads at most the header.
    """
    start = f.tell()
    magic = f.read(len(NPY_MAGIC) + 2)
    if magic[:len(NPY_MAGIC)] != NPY_MAGIC:
        raise ValueError(f"it does not start with {NPY_MAGIC!r}")
    version = tuple(magic[len(NPY_MAGIC):])
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version} (1.0 and 2.0 are read)")
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    try:
        shape, fortran_order, dtype = read_header(f, max_header_size=MAX_NPY_HEADER)
    except (ValueError, TypeError, SyntaxError, tokenize.TokenError, ArithmeticError,
            RecursionError, MemoryError, EOFError, KeyError) as exc:   # numpy's parser
        raise ValueError(shortened(f"{type(exc).__name__}: {exc}")) from None
    if not isinstance(shape, tuple) or any(type(n) is not int or n < 0 for n in shape):
        raise ValueError(f"shape {shortened(repr(shape))} is not a tuple of integers >= 0")
    if math.prod(shape) * max(dtype.itemsize, 1) > MAX_ARRAY_BYTES:
        raise ValueError(f"shape {shortened(repr(shape))} of {dtype} is larger than any "
                         "array")
    if dtype.itemsize == 0 and math.prod(shape) > 0:     # numpy would make it <U1, |S1...
        raise ValueError(f"dtype {dtype.str} has no bytes per element")
    if not isinstance(fortran_order, bool):
        raise ValueError(f"fortran_order {fortran_order!r} is not True or False")
    return NpyHeader(shape, fortran_order, dtype, f.tell() - start)


def shortened(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters: what a header holds may be 10000 long."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def npy_array(header: NpyHeader, data: bytes | bytearray, offset: int = 0) -> np.ndarray:
    """The array of ``header`` from ``data[offset:]``, which must hold exactly
    ``header.data_bytes`` bytes (checked). A new, writable array."""
    if len(data) - offset != header.data_bytes:
        raise ValueError(f"{header.describe()} needs {header.data_bytes} bytes of data, "
                         f"not {len(data) - offset}")
    if header.data_bytes == 0:
        return np.zeros(header.shape, header.dtype)
    flat = np.frombuffer(data, header.dtype, offset=offset)
    order: Literal["F", "C"] = "F" if header.fortran_order else "C"
    return flat.reshape(header.shape, order=order).copy(order="K")


# ---------------------------------------------------------------- writing

def name_max(directory: str) -> int:
    """The longest file name, in bytes, the file system of ``directory`` allows."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def temporary_prefix(path: str | os.PathLike) -> str:
    """``DIR/.NAME.`` for ``path`` = DIR/NAME: what every temporary of ``path`` starts
    with; NAME is shortened (by characters) until the temporary's name fits NAME_MAX."""
    directory, base = os.path.split(os.path.abspath(os.fspath(path)))
    room = name_max(directory) - TEMPORARY_EXTRA_BYTES
    while base and len(os.fsencode(base)) > room:     # (room < 0: creating it will fail)
        base = base[:-1]
    return os.path.join(directory, f".{base}.")


def create_temporary(path: str) -> tuple[int, str]:
    """(descriptor, name) of a new, empty temporary for ``path``, in its directory."""
    temp = f"{temporary_prefix(path)}{os.getpid()}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    return os.open(temp, flags, 0o666), temp                   # the umask applies


def check_replaceable(name: str, path: str) -> None:
    """Nothing at ``path``, or a regular file (which a write replaces)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        fail(name, path, "a path in an existing directory (a part of it is a file)")
    except OSError as exc:
        fail(name, path, f"a path the system accepts ({exc.strerror})")
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        fail(name, path, "a file path, not a directory")
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        fail(name, path, f"a new file or a regular file, not a symbolic link (to {target!r}, "
                         "which is never written through: give that path instead)")
    fail(name, path, f"a new file or a regular file to replace, not {kind_of(st.st_mode)}")


def check_output_path(name: str, path: Any, suffix: str | None = None) -> str:
    """``path`` as a str if a file can be written there (see the module docstring);
    ``suffix`` is compared case-insensitively. Errors name the argument ``name``."""
    path = check_path(name, path)
    if suffix is not None and not path.lower().endswith(suffix):
        fail(name, path, f"a file name ending in {suffix}")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        fail(name, path, "a file path, not a directory")
    directory, base = os.path.split(os.path.abspath(path))
    longest = name_max(directory)
    if len(os.fsencode(base)) > longest:
        fail(name, path, f"a file name of at most {longest} bytes (this one has "
                         f"{len(os.fsencode(base))})")
    check_replaceable(name, path)
    if not os.path.isdir(directory):
        fail(name, path, f"a path in an existing directory ({directory} does not exist)")
    if not os.access(directory, os.W_OK | os.X_OK):
        fail(name, path, f"a path in a writable directory ({directory} is not writable)")
    try:                                    # the temporary write_atomic will need
        fd, temp = create_temporary(path)
    except OSError as exc:
        fail(name, path, f"a path where a file can be created ({exc.strerror or exc})")
    os.close(fd)
    os.unlink(temp)
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` with a binary file object and put what it wrote at ``path``
    atomically (see the module docstring). Exceptions from ``write`` or the file
    system propagate, after the temporary file is removed; what is at ``path`` must
    be nothing or a regular file (else ``ValueError``, before anything is written)."""
    path = check_path("path", path)
    check_replaceable("path", path)
    fd, temp = create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    remove_stale_temporaries(path)


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (True when that cannot be told)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):         # another user's process, or no such pid
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove the temporaries of ``path`` that killed writers left behind (see the
    module docstring); returns their names. Best effort: errors are ignored."""
    prefix = temporary_prefix(path)
    directory, start = os.path.split(prefix)
    removed: list[str] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = (TEMPORARY_TAIL.fullmatch(entry.name[len(start):])
                 if entry.name.startswith(start) else None)
        if match is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or now - st.st_mtime < STALE_SECONDS or process_exists(int(match[1]))):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.path)
    return removed
