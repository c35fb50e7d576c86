"""Input validation: the one place where user input is checked.

Every public entry point calls these before doing any work. Each failure is a
``ValueError`` or ``TypeError`` whose message names the argument, the value
it got and what is allowed.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np

FLOAT_DTYPES = ("float64", "float32")
#: the largest value of an int64, e.g. a step count in a checkpoint file
INT64_MAX = 2**63 - 1


class InputValueError(ValueError):
    """An input has the right type but a value that is not allowed."""


class InputTypeError(TypeError):
    """An input has a type that is not allowed."""


class MissingFrameworkError(ImportError):
    """An optional dependency is not installed; the message names the extra."""


def fail(name: str, value: Any, allowed: str, error: type = ValueError) -> None:
    """Raise ``InputValueError`` (or ``InputTypeError`` when ``error`` is TypeError),
    naming the argument, the value and what is allowed."""
    error = InputTypeError if error is TypeError else InputValueError
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise error(f"{name}={shown} is not allowed: expected {allowed}")


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


def check_float(name: str, value: Any, *, low: float | None = None,
                low_open: bool = False, high: float | None = None,
                high_open: bool = False) -> float:
    """A finite real number (int or float, not bool) inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, value, "a real number", TypeError)
    given, value = value, float(value)
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    allowed = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
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


def check_float_array(name: str, value: Any, ndim: int | None) -> np.ndarray:
    """A finite float32/float64 NumPy array with exactly ``ndim`` dimensions (any if None).

    Integer, bool, object and complex arrays are rejected rather than cast.
    """
    if not isinstance(value, np.ndarray):
        fail(name, value, "a NumPy array of float32 or float64", TypeError)
    if value.dtype not in tuple(map(np.dtype, FLOAT_DTYPES)):   # '>f8' is not float64 here
        fail(f"{name}.dtype", dtype_name(value.dtype),
             "float32 or float64 in native byte order (convert explicitly)", TypeError)
    if ndim is not None and value.ndim != ndim:
        fail(f"{name}.shape", value.shape, f"{ndim} dimensions")
    if not np.all(np.isfinite(value)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        fail(f"{name}[{', '.join(map(str, bad))}]", value[bad].item(), "finite values")
    return value


def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name`` ("float64"), or ``dtype.str`` (">f8") when the byte order is
    not native, which ``.name`` does not show."""
    return dtype.name if dtype.isnative else dtype.str


def check_shape(name: str, value: np.ndarray, expected: tuple) -> None:
    if value.shape != tuple(expected):
        fail(f"{name}.shape", value.shape, f"shape {tuple(expected)}")


def check_targets_array(name: str, value: Any) -> np.ndarray:
    """Targets: a finite float (n, k) array, or an integer (n,) array of class labels."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        if value.ndim != 1:
            fail(f"{name}.dtype", value.dtype.name, "float32 or float64 for (n, k) targets "
                 "(integers only as (n,) class labels)", TypeError)
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim != 2:
        fail(f"{name}.shape", value.shape, "(n, k) for float targets ((n,) only for integer "
             "class labels)")
    return check_float_array(name, value, 2)
