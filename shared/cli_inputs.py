"""Reading the rows ``nnparity predict`` runs the network on.

``--input "a,b;c,d"`` (rows separated by ';'), or ``--input-file`` naming a
CSV file (one row per line, no header) or a ``.npy`` file holding a float
(n, inputs) array, read with ``allow_pickle=False``. Every problem is a
one-line ``ValueError`` naming the flag, the value and what is allowed.
"""
from __future__ import annotations

import re

import numpy as np

from .validation import check_float_array, fail


def read_inputs(args, width: int) -> np.ndarray:
    """The rows to predict, (n, width) float: from --input ("a,b;c,d"), a CSV file
    (one row per line) or a .npy file (a float32/float64 (n, width) array)."""
    if args.input is not None:
        return parse_rows("--input", args.input.split(";"), width)
    path = args.input_file
    if path.endswith(".csv"):
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            fail("--input-file", path, f"a readable UTF-8 text file ({exc})")
        return parse_rows(f"--input-file {path}", lines, width)
    if path.endswith(".npy"):
        try:
            with open(path, "rb") as f:
                is_npy = f.read(6) == b"\x93NUMPY"
            x = np.load(path, allow_pickle=False) if is_npy else None
        except OSError as exc:
            fail("--input-file", path, f"a readable file ({exc.strerror or exc})")
        except (ValueError, EOFError) as exc:    # an object array (pickled data), truncated
            fail("--input-file", path, f"a .npy file of a float array ({exc})")
        if x is None:
            fail("--input-file", path, "a .npy file (it does not start with b'\\x93NUMPY')")
        check_float_array(f"--input-file {path}", x, 2)
        if x.shape[0] == 0 or x.shape[1] != width:
            fail(f"--input-file {path}.shape", x.shape,
                 f"(n, {width}) with n >= 1: {width} columns, the network's input width")
        return x
    fail("--input-file", path, "a file ending in .csv or .npy")


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
