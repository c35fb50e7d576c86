"""Output files: the one place where a path to write is checked and a file is written.

- ``check_output_path(name, path, suffix=None)``: before any work, that a file
  can be written at ``path`` (errors name the argument ``name``, e.g. "--save").
- ``write_atomic(path, write)``: ``write(f)`` into a temporary file in the same
  directory, flushed and fsynced, then ``os.replace`` onto ``path``. The file
  at ``path`` is the old one or the complete new one, never half written; on
  any failure the temporary file is removed. The new file gets the
  permissions of an ordinary new file (0o666 less the process umask), which
  ``os.open`` applies itself: the umask is never read or changed.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any, BinaryIO

from .validation import fail


def check_output_path(name: str, path: Any, suffix: str | None = None) -> str:
    """``path`` as a str if a file can be written there: a non-empty str or
    os.PathLike, not a directory, in an existing writable directory, and ending
    in ``suffix`` (case-insensitive) if one is given."""
    if not isinstance(path, (str, os.PathLike)):
        fail(name, path, "a file path (str or os.PathLike)", TypeError)
    path = os.fspath(path)
    if not isinstance(path, str):
        fail(name, path, "a file path (str or os.PathLike of str)", TypeError)
    if not path:
        fail(name, path, "a non-empty file path")
    if suffix is not None and not path.lower().endswith(suffix):
        fail(name, path, f"a file name ending in {suffix}")
    if os.path.isdir(path):
        fail(name, path, "a file path, not a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        fail(name, path, f"a path in an existing directory ({directory} does not exist)")
    if not os.access(directory, os.W_OK | os.X_OK):
        fail(name, path, f"a path in a writable directory ({directory} is not writable)")
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(f)`` with a binary file object and put what it wrote at ``path``
    atomically (see the module docstring). Exceptions from ``write`` or the file
    system propagate, after the temporary file is removed."""
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    temp = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies
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
