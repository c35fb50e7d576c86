"""Reading the rows ``nnparity predict`` runs the network on.

``--input "a,b;c,d"`` (rows separated by ';'), or ``--input-file`` naming a
CSV file (one row per line, no header) or a ``.npy`` file holding a float
(n, inputs) array, read with ``allow_pickle=False``. Every problem is a
one-line ``ValueError`` naming the flag, the value and what is allowed.
"""
from __future__ import annotations

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
        if x.shape[1] != width:
            fail(f"--input-file {path}.shape", x.shape,
                 f"(n, {width}): {width} columns, the network's input width")
        return x
    fail("--input-file", path, "a file ending in .csv or .npy")


def parse_rows(name: str, rows: list[str], width: int) -> np.ndarray:
    """Rows of ``width`` comma-separated finite numbers -> (len(rows), width) float64."""
    values = []
    for i, row in enumerate(rows):
        numbers = []
        for part in row.split(","):
            try:
                numbers.append(float(part))
            except ValueError:
                fail(f"{name} row {i + 1}", row,
                     f"{width} comma-separated numbers ({part.strip()!r} is not a number)")
        if len(numbers) != width:
            fail(f"{name} row {i + 1}", row,
                 f"{width} comma-separated numbers (the network's input width)")
        if not all(np.isfinite(numbers)):
            fail(f"{name} row {i + 1}", row, "finite numbers")
        values.append(numbers)
    return np.array(values, dtype=np.float64)
