"""Input validation: the one place where user input is checked.

Every public entry point calls these before doing any work. Each failure is a
``ValueError`` or ``TypeError`` whose message names the argument, the value
it got and what is allowed.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import reprlib
import sys
from typing import Any, Iterable, Mapping, NoReturn

import numpy as np

FLOAT_DTYPES = ("float64", "float32")
#: the largest value of an int64, e.g. a step count in a checkpoint file
INT64_MAX = 2**63 - 1
#: array types accepted as data and parameters: plain arrays and memory-mapped ones
#: (np.load(..., mmap_mode="r")). Subclasses that change what the values mean, such
#: as np.ma.MaskedArray (values under a mask still count) and np.matrix (``*`` is a
#: matrix product, reductions stay 2-d), are refused.
PLAIN_ARRAYS = (np.ndarray, np.memmap)


class InputValueError(ValueError):
    """An input has the right type but a value that is not allowed."""


class InputTypeError(TypeError):
    """An input has a type that is not allowed."""


class MissingFrameworkError(ImportError):
    """An optional dependency is not installed; the message names the extra."""


def fail(name: str, value: Any, allowed: str, error: type = ValueError) -> NoReturn:
    """Raise ``InputValueError`` (or ``InputTypeError`` when ``error`` is TypeError),
    naming the argument, the value (see ``show``) and what is allowed."""
    error = InputTypeError if error is TypeError else InputValueError
    raise error(f"{name}={show(value)} is not allowed: expected {allowed}")


def _int_text(value: int) -> str:
    """repr of an int, or "<5001-digit integer>" when it would be longer than a message
    shows (and Python refuses to write ints of more than 4300 digits at all)."""
    if value.bit_length() <= 256:                     # at most 78 digits
        return repr(value)
    digits = int(value.bit_length() * math.log10(2)) + 1
    if abs(value) < 10 ** (digits - 1):
        digits -= 1
    return f"<{'negative ' if value < 0 else ''}{digits}-digit integer>"


class _Bounded(reprlib.Repr):
    """repr with bounded depth, length and integers, for values whose repr fails
    (a 5000-digit int inside a list, a list nested 100000 deep) or would be huge."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 4, 80, 80

    def repr_int(self, x: int, level: int) -> str:
        return _int_text(x)


def show(value: Any) -> str:
    """How an error message shows ``value``: its repr, at most 80 characters. It never
    fails: giant integers, deeply nested or huge containers, objects whose repr raises."""
    if type(value) is int:
        shown = _int_text(value)
    else:
        try:
            if isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > 100:
                raise OverflowError("too long to show whole")
            shown = repr(value)
        except Exception:            # ValueError (int digits), RecursionError, a user's repr
            try:
                shown = _Bounded().repr(value)
            except Exception:
                shown = f"<{type(value).__name__} object>"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_int(name: str, value: Any, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """A true integer (not bool, not float) >= ``minimum`` and <= ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, value, "an integer", TypeError)
    value = int(value)
    too_small = minimum is not None and value < minimum
    if maximum is not None and (too_small or value > maximum):
        fail(name, value, f"an integer <= {maximum}" if minimum is None
             else f"an integer in {minimum} .. {maximum}")
    if too_small:
        fail(name, value, f"an integer >= {minimum}")
    return value


def check_count(name: str, value: Any, minimum: int, maximum: int, shown: str) -> int:
    """An integer >= ``minimum`` and <= ``maximum``, a bound written ``shown`` ("2**32 - 1")."""
    value = check_int(name, value, minimum)
    if value > maximum:
        fail(name, value, f"an integer >= {minimum} and <= {shown} = {maximum}")
    return value


def check_float(name: str, value: Any, *, low: float | None = None,
                low_open: bool = False, high: float | None = None,
                high_open: bool = False) -> float:
    """A finite real number (int or float, not bool) inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, value, "a real number", TypeError)
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    allowed = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
    given = value
    try:
        value = float(value)
    except OverflowError:            # an int (or Fraction) beyond float64, e.g. 10**400
        fail(name, given, allowed)
    if (not math.isfinite(value)
            or (low is not None and (value < low or (low_open and value == low)))
            or (high is not None and (value > high or (high_open and value == high)))):
        fail(name, given, allowed)
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        fail(name, value, "True or False", TypeError)
    return bool(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str):
        fail(name, value, f"one of {', '.join(map(repr, choices))}", TypeError)
    if value not in choices:
        fail(name, value, f"one of {', '.join(map(repr, choices))}")
    return value


def check_in_dtype(name: str, value: float, dtype: Any) -> float:
    """``value`` (a finite float) rounded to ``dtype``: it must be within the dtype's
    range (|value| <= its largest finite number) and round to 0 or a normal number (a
    subnormal is flushed to 0 by XLA on CPU; one that rounds to 0 is not the number
    given). Returns the rounded value."""
    dtype = np.dtype(dtype)
    info = np.finfo(dtype)
    largest, smallest = float(info.max), float(info.tiny)
    with np.errstate(over="ignore", under="ignore"):
        rounded = float(dtype.type(value))
    if not math.isfinite(rounded):
        why = "it overflows to inf"
    elif abs(value) > largest:   # rounds to the largest, but torch refuses a Python float
        why = f"it is beyond the largest {dtype.name}, which torch refuses"
    elif rounded == 0 and value != 0:
        why = "it underflows to 0"
    elif 0 < abs(rounded) < smallest:
        why = f"it is a subnormal {dtype.name}, which XLA flushes to 0"
    else:
        return rounded
    fail(name, value, f"a number representable in {dtype.name}, the dtype it is used in: 0, "
         f"or {smallest!r} <= |x| <= {largest!r} ({why})")


def check_array(name: str, value: Any) -> np.ndarray:
    """A NumPy array of one of the ``PLAIN_ARRAYS`` types; nothing is converted."""
    if type(value) not in PLAIN_ARRAYS:
        if isinstance(value, np.ndarray):
            fail(name, f"{type(value).__name__} of shape {value.shape}",
                 "a plain NumPy array (np.ndarray): masked arrays and np.matrix are refused "
                 "because their values mean something else (use np.asarray(x), or "
                 "x.filled(value) for a masked array)", TypeError)
        fail(name, value, "a NumPy array of float32 or float64", TypeError)
    return value


def check_float_array(name: str, value: Any, ndim: int | None,
                      dtype: Any = None) -> np.ndarray:
    """A finite float32/float64 NumPy array with exactly ``ndim`` dimensions (any if None).

    Integer, bool, object and complex arrays are rejected rather than cast. With
    ``dtype`` (the dtype the array will be converted to), every value must also stay
    finite in it: float64 data above float32's largest value would become inf.
    """
    check_array(name, value)
    if value.dtype not in tuple(map(np.dtype, FLOAT_DTYPES)):   # '>f8' is not float64 here
        fail(f"{name}.dtype", dtype_name(value.dtype),
             "float32 or float64 in native byte order (convert explicitly)", TypeError)
    if ndim is not None and value.ndim != ndim:
        fail(f"{name}.shape", value.shape, f"{ndim} dimensions")
    if not np.all(np.isfinite(value)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        fail(f"{name}[{', '.join(map(str, bad))}]", value[bad].item(), "finite values")
    if dtype is not None and np.dtype(dtype) != value.dtype:
        with np.errstate(over="ignore"):
            overflows = ~np.isfinite(value.astype(dtype))
        if overflows.any():
            bad = tuple(int(i) for i in np.argwhere(overflows)[0])
            fail(f"{name}[{', '.join(map(str, bad))}]", value[bad].item(),
                 f"values that stay finite in {np.dtype(dtype).name}, the dtype they are "
                 f"converted to (|x| <= {np.finfo(dtype).max:.7g})")
    return value


def plain_layout(array: np.ndarray) -> np.ndarray:
    """``array`` as a C-contiguous, aligned, writeable np.ndarray without negative
    strides, which every framework takes as it is: the array itself when it is one,
    else a copy (slices, flipped or read-only arrays, memory maps)."""
    flags = array.flags
    # NumPy calls an axis of length 1 contiguous whatever its stride; torch.from_numpy
    # refuses any negative stride
    if (type(array) is np.ndarray and flags.c_contiguous and flags.aligned
            and flags.writeable and min(array.strides, default=0) >= 0):
        return array
    return np.array(array, order="C")


def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name`` ("float64"), or ``dtype.str`` (">f8") when the byte order is
    not native, which ``.name`` does not show."""
    return dtype.name if dtype.isnative else dtype.str


def check_input_array(name: str, value: Any) -> np.ndarray:
    """Network inputs: a finite float32/float64 array (``check_float_array``), or an
    integer array of tokens (for a network that starts with an Embedding, which
    checks their range). Bool arrays are neither."""
    check_array(name, value)
    if value.dtype.kind in "iu":
        return value
    return check_float_array(name, value, None)


def check_shape(name: str, value: np.ndarray, expected: tuple) -> None:
    if value.shape != tuple(expected):
        fail(f"{name}.shape", value.shape, f"shape {tuple(expected)}")


def check_targets_array(name: str, value: Any, dtype: Any = None) -> np.ndarray:
    """Targets: a finite float (n, k) array (finite in ``dtype`` too, when given), or
    an integer array of class labels, (n,) or (n, *s) for a network that outputs
    logits at every position of s (whether they suit the spec's output is
    ``losses.check_targets``'s to say)."""
    check_array(name, value)
    if value.dtype.kind in "iu":
        if value.ndim == 0:
            fail(f"{name}.shape", value.shape, "(n,) class labels")
        return value
    if value.dtype.kind == "f" and value.ndim != 2:
        fail(f"{name}.shape", value.shape, "(n, k) for float targets ((n,) only for integer "
             "class labels)")
    return check_float_array(name, value, 2, dtype)


def memory_limit() -> int | None:
    """The bytes of physical memory of this machine, or None when it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):      # not POSIX
        return None


def size_text(n_bytes: float) -> str:
    """1536 -> "1.5 KiB", 8 * 10**12 -> "7.28 TiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.3g} {unit}" if unit != "bytes" else f"{n_bytes} bytes"
        n_bytes /= 1024
    raise AssertionError("unreachable: the loop returns at PiB")


def check_memory(name: str, value: Any, parts: Mapping[str, int],
                 blame: Mapping[str, tuple[str, Any]] | None = None) -> None:
    """Refuse a run whose arrays (``parts``: what -> bytes, a lower bound of what it
    allocates) cannot fit in this machine's memory, before anything is allocated.

    The error names the argument ``blame`` gives for the largest part (what ->
    (argument, value)), or ``name`` and ``value``."""
    needed = sum(parts.values())
    limit = memory_limit()
    if limit is not None and needed > limit:
        name, value = (blame or {}).get(max(parts, key=parts.__getitem__), (name, value))
        detail = ", ".join(f"{what} {size_text(n)}" for what, n in parts.items()
                           if n >= needed / 100)
        fail(name, value, f"a run that fits in memory: it needs at least "
             f"{size_text(needed)} ({detail}), more than this machine's {size_text(limit)}")


def parse_json(name: str, text: str, what: str = "JSON") -> Any:
    """The value JSON ``text`` holds. Text that is not JSON, is nested too deeply
    to parse, holds an integer longer than Python reads or a key twice in an
    object is a ValueError naming ``name`` and saying ``what`` was expected."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        fail(name, text, f"{what} ({exc})")
    except RecursionError:
        fail(name, text, f"{what}, not JSON nested too deeply to parse")
    except _DuplicateKey as exc:
        fail(name, text, f"{what} with each key once in an object (found {exc.args[0]!r} twice)")
    except ValueError:               # an integer longer than Python reads (sys.int_info)
        fail(name, text, f"{what} whose numbers have at most {sys.get_int_max_str_digits()} "
             "digits")


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a repeated key is an error, not "the last one wins"."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return d
