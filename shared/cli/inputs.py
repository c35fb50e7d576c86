"""Reading the rows ``nnparity predict`` runs the network on.

``--input "a,b;c,d"`` (rows separated by ';'), or ``--input-file`` naming a
CSV file (one row per line, no header) or a ``.npy`` file holding a float
(n, inputs) array, never unpickled, whose header is checked, and its data
size against the file's, before anything is allocated. The file must be a
regular file (``files.open_input``: a FIFO is refused, never waited on). Every
problem is a one-line ``ValueError`` naming the flag, the value and what is
allowed.
"""
from __future__ import annotations

import os
import re

import numpy as np

from nnparity.shared.io.files import npy_array, open_input, read_npy_header
from nnparity.shared.core.validation import check_float_array, fail


def read_inputs(args, width: int) -> np.ndarray:
    """The rows to predict, (n, width) float: from --input ("a,b;c,d"), a CSV file
    (one row per line) or a .npy file (a float32/float64 (n, width) array)."""
    if args.input is not None:
        return parse_rows("--input", args.input.split(";"), width)
    path = args.input_file
    if path.endswith(".csv"):
        with open_input("--input-file", path, readable="a readable UTF-8 text file") as f:
            try:
                text = f.read().decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                fail("--input-file", path, f"a readable UTF-8 text file ({exc})")
        lines = [line for line in text.splitlines() if line.strip()]
        return parse_rows(f"--input-file {path}", lines, width)
    if path.endswith(".npy"):
        x = read_npy("--input-file", path)
        check_float_array(f"--input-file {path}", x, 2)
        if x.shape[0] == 0 or x.shape[1] != width:
            fail(f"--input-file {path}.shape", x.shape,
                 f"(n, {width}) with n >= 1: {width} columns, the network's input width")
        return x
    fail("--input-file", path, "a file ending in .csv or .npy")


def read_npy(name: str, path: str) -> np.ndarray:
    """The array in the .npy file ``path``, never unpickled: its header is checked,
    and its data size against the file's, before anything is allocated."""
    with open_input(name, path) as f:
        try:
            header = read_npy_header(f)
        except ValueError as exc:
            fail(name, path, f"a .npy file of a float array (a malformed .npy header: {exc})")
        except OSError as exc:
            fail(name, path, f"a readable file ({exc.strerror or exc})")
        if header.dtype.hasobject:
            fail(name, path, "a .npy file of a float array, not of objects (pickled data, "
                             "never loaded: allow_pickle=False)")
        stored = os.fstat(f.fileno()).st_size - header.size
        if stored != header.data_bytes:
            fail(name, path, f"a .npy file holding the data its header describes: "
                             f"{header.describe()} needs {header.data_bytes} bytes, the file "
                             f"holds {stored}")
        try:
            data = f.read(header.data_bytes + 1)
            return npy_array(header, data)          # a file that changed size: ValueError
        except (OSError, ValueError) as exc:
            fail(name, path, f"a readable .npy file ({exc})")


#: one finite decimal number, e.g. 28.1, -3, .5, 1e-3 (not 1_000, inf or nan)
NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def parse_rows(name: str, rows: list[str], width: int) -> np.ndarray:
    """At least one row of ``width`` comma-separated finite decimal numbers
    -> (len(rows), width) float64."""
    if not rows:
        fail(name, "", f"at least one row of {width} comma-separated numbers")
    values = []
    for i, row in enumerate(rows):
        parts = row.split(",")
        for part in parts:
            if not NUMBER.fullmatch(part):
                fail(f"{name} row {i + 1}", row, f"{width} comma-separated finite decimal "
                     f"numbers ({part.strip()!r} is not one)")
        if len(parts) != width:
            fail(f"{name} row {i + 1}", row,
                 f"{width} comma-separated numbers (the network's input width)")
        numbers = [float(part) for part in parts]
        if not all(np.isfinite(numbers)):                   # e.g. 1e999 overflows
            fail(f"{name} row {i + 1}", row, "finite numbers")
        values.append(numbers)
    return np.array(values, dtype=np.float64)
