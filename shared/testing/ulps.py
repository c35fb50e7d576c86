"""How many representable numbers lie between two floats: the distance in ulps.

The floats of one dtype, ordered from -inf to +inf, can be numbered with
consecutive integers: reading a non-negative float's bits as an integer gives
its place above +0 (IEEE 754 orders the bit patterns of one sign as the
magnitudes), and a negative float's place is minus its magnitude's. Both zeros
get 0 (they are equal), the smallest subnormal 1, the largest finite float
2**(bits - 1) - 2**mantissa - 1 and infinity one more, as ``np.nextafter``
steps. The distance between a and e is the difference of their places: the
number of ``np.nextafter`` steps from e to a, across zero and up to infinity
included. It is counted with Python integers, so the distance from the most
negative float to the most positive does not overflow.
"""
from __future__ import annotations

import math

import numpy as np

_BITS = {np.dtype(np.float32): (np.uint32, 32), np.dtype(np.float64): (np.uint64, 64)}


def place(value: float, dtype: np.dtype) -> int:
    """The place of ``value`` (rounded to ``dtype``, float32 or float64) among that
    dtype's floats: 0 for either zero, n for the n-th float above zero, -n below."""
    unsigned, bits = _BITS[np.dtype(dtype)]
    pattern = int(np.array(value, dtype=dtype).view(unsigned))
    magnitude = pattern & ((1 << (bits - 1)) - 1)            # drop the sign bit
    return -magnitude if pattern >> (bits - 1) else magnitude


def ulp_distance(actual: float, expected: float, dtype: np.dtype) -> int | None:
    """|place(actual) - place(expected)| in ``dtype``: 0 for two NaNs (they match),
    None when only one is NaN (no distance exists). ``actual`` is first rounded to
    ``dtype`` (exact when it already is one of its values)."""
    if math.isnan(actual) or math.isnan(expected):
        return 0 if math.isnan(actual) and math.isnan(expected) else None
    with np.errstate(over="ignore"):                          # float64 -> float32 may be inf
        return abs(place(actual, dtype) - place(expected, dtype))


def ulp_text(actual: float, expected: float, dtype: np.dtype) -> str:
    """The distance for a message: "3 ulps of float64", or why there is none."""
    distance = ulp_distance(actual, expected, dtype)
    if distance is None:
        return f"no distance in ulps of {np.dtype(dtype).name}: one of the two is NaN"
    return f"{distance} ulp{'' if distance == 1 else 's'} of {np.dtype(dtype).name}"
