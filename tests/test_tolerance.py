"""nnparity.shared.core.tolerance.difference against hand-computed expectations.

A value a matches the expected e when |a - e| <= atol + rtol * |e|. The cases
use values that are exact in binary so that every expected gap is exact.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnparity.shared import POLICY, Tolerance
from nnparity.shared.core.tolerance import difference, tensorwise_difference

F64 = POLICY["float64"]           # rtol 1e-10, atol 1e-12
F32 = POLICY["float32"]
INF, NAN = math.inf, math.nan


def test_policy_values_are_the_documented_ones():
    assert (F64.rtol, F64.atol) == (1e-10, 1e-12)
    assert F32.rtol > F64.rtol and F32.atol > F64.atol


# (actual, expected, max_abs, max_rel, ok) under POLICY["float64"], worked out by hand.
# The bound at e = 1.0 is 1e-12 + 1e-10 = 1.01e-10; 2**-34 = 5.8e-11 is inside it,
# 2**-33 = 1.16e-10 outside. At e = 0 the bound is atol = 1e-12.
CASES = [
    pytest.param([0.0], [0.0], 0.0, 0.0, True, id="exact-zero"),
    pytest.param([0.0, -0.0], [-0.0, 0.0], 0.0, 0.0, True, id="signed-zeros"),
    pytest.param([1.5, -2.25], [1.5, -2.25], 0.0, 0.0, True, id="exact-equal"),
    pytest.param([1.0 + 2**-34], [1.0], 2**-34, 2**-34, True, id="inside-rtol"),
    pytest.param([1.0 + 2**-33], [1.0], 2**-33, 2**-33, False, id="outside-rtol"),
    pytest.param([2.0 - 2**-33], [2.0], 2**-33, 2**-34, True, id="inside-rtol-below"),
    pytest.param([2**40 + 2**8], [2**40], 2**8, 2**-32, False, id="outside-rtol-large"),
    pytest.param([2**40 + 2**6], [2**40], 2**6, 2**-34, True, id="inside-rtol-large"),
    pytest.param([2**-41], [0.0], 2**-41, 0.0, True, id="inside-atol-at-zero"),
    pytest.param([2**-39], [0.0], 2**-39, 0.0, False, id="outside-atol-at-zero"),
    pytest.param([1e-12], [0.0], 1e-12, 0.0, True, id="atol-boundary-inclusive"),
    pytest.param([np.nextafter(1e-12, 1.0)], [0.0], np.nextafter(1e-12, 1.0), 0.0, False,
                 id="just-past-atol-boundary"),
    pytest.param([NAN], [1.0], INF, INF, False, id="nan-vs-number"),
    pytest.param([1.0], [NAN], INF, INF, False, id="number-vs-nan"),
    pytest.param([NAN], [NAN], 0.0, 0.0, True, id="nan-vs-nan"),
    pytest.param([INF], [INF], 0.0, 0.0, True, id="inf-vs-inf"),
    pytest.param([-INF], [-INF], 0.0, 0.0, True, id="neginf-vs-neginf"),
    pytest.param([INF], [-INF], INF, INF, False, id="inf-vs-neginf"),
    pytest.param([INF], [1.0], INF, INF, False, id="inf-vs-number"),
    pytest.param([NAN], [INF], INF, INF, False, id="nan-vs-inf"),
    pytest.param([1.0, 3.0, 0.0], [1.0, 4.0, 0.0], 1.0, 0.25, False, id="one-bad-element"),
    pytest.param([[1.0, NAN], [3.0, 4.0]], [[1.0, NAN], [3.0, 4.0]], 0.0, 0.0, True,
                 id="2d-with-matching-nan"),
    pytest.param(np.empty((0, 3)), np.empty((0, 3)), 0.0, 0.0, True, id="empty"),
]


@pytest.mark.parametrize("actual, expected, max_abs, max_rel, ok", CASES)
def test_difference_hand_computed(actual, expected, max_abs, max_rel, ok):
    d = difference(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                   F64)
    assert d.ok is ok
    assert d.max_abs == max_abs
    assert d.max_rel == max_rel


def test_rtol_boundary_is_inclusive():
    """With dyadic tolerances every quantity is exact: gap == bound passes, one ulp more fails.

    (These tolerances test the function's boundary, not a parity claim.)
    """
    tol = Tolerance(rtol=2**-10, atol=2**-20)
    bound = 2**-20 + 2**-10 * 1.0
    assert difference([1.0 + bound], [1.0], tol).ok
    assert difference([1.0 - bound], [1.0], tol).ok
    assert not difference([np.nextafter(1.0 + bound, 2.0)], [1.0], tol).ok
    assert not difference([np.nextafter(1.0 - bound, 0.0)], [1.0], tol).ok


def test_tolerance_is_relative_to_expected_not_actual():
    """|a - e| <= atol + rtol*|e| is asymmetric: swapping the sides can change the verdict."""
    tol = Tolerance(rtol=0.5, atol=0.0)
    assert difference([1.0], [2.0], tol).ok          # 1 <= 0.5 * 2
    assert not difference([2.0], [1.0], tol).ok      # 1 >  0.5 * 1


@pytest.mark.parametrize("actual_shape, expected_shape", [
    pytest.param((2,), (2, 1), id="2-vs-2x1"),
    pytest.param((3,), (2,), id="3-vs-2"),
    pytest.param((1,), (3,), id="broadcastable-1-vs-3"),
    pytest.param((2, 1), (1, 2), id="transposed"),
    pytest.param((), (1,), id="scalar-vs-1"),
])
def test_shape_mismatch_fails(actual_shape, expected_shape):
    d = difference(np.zeros(actual_shape), np.zeros(expected_shape), F64)
    assert not d.ok
    assert d.max_abs == INF and d.max_rel == INF


def test_same_shape_zeros_pass():
    """Control for the shape cases: equal shapes of the same values pass."""
    for shape in [(2,), (2, 1), (1, 2), ()]:
        assert difference(np.zeros(shape), np.zeros(shape), F64).ok


@pytest.mark.parametrize("index", [(0, 0), (0, 2), (1, 1), (2, 0)])
def test_every_element_is_checked(index):
    """A single element moved outside the tolerance is found wherever it is."""
    e = np.arange(1.0, 10.0).reshape(3, 3)
    a = e.copy()
    a[index] += 1e-6 * e[index]
    d = difference(a, e, F64)
    assert not d.ok
    assert d.max_abs == pytest.approx(1e-6 * e[index], rel=1e-9)
    assert d.max_rel == pytest.approx(1e-6, rel=1e-9)


def test_compares_in_float64():
    """float32 input is compared in float64: float32(0.1) differs from 0.1 by 1.5e-9 relative."""
    assert not difference(np.float32(0.1), 0.1, F64).ok
    assert difference(np.float32(0.1), 0.1, F32).ok
    assert difference(np.float32(0.1), np.float32(0.1), F64).ok


def test_inputs_are_not_modified():
    a, e = np.array([NAN, INF, 1.0]), np.array([1.0, INF, NAN])
    a0, e0 = a.copy(), e.copy()
    difference(a, e, F64)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(e, e0)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64,
                          min_value=None, max_value=None)
near_values = st.sampled_from([0.0, 1.0, -1.0, 1e-12, 1e300, NAN, INF, -INF])


@settings(max_examples=300, deadline=None)
@given(data=st.data(), shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=4))
def test_agrees_with_numpy_isclose(data, shape):
    """Oracle: np.isclose(a, e, rtol, atol, equal_nan=True) uses the same rule,
    |a-e| <= atol + rtol|e|."""
    elements = st.one_of(finite_or_not, near_values)
    e = data.draw(hnp.arrays(np.float64, shape, elements=elements))
    # actual: sometimes e itself, sometimes e nudged by a few ulps or by a lot, sometimes random
    kind = data.draw(st.sampled_from(["same", "ulps", "random"]))
    if kind == "same":
        a = e.copy()
    elif kind == "ulps":
        steps = data.draw(st.integers(-3, 3))
        a = e.copy()
        with np.errstate(over="ignore"):
            for _ in range(abs(steps)):
                a = np.nextafter(a, np.sign(steps) * INF)
    else:
        a = data.draw(hnp.arrays(np.float64, shape, elements=elements))
    with np.errstate(invalid="ignore", over="ignore"):
        expected_ok = bool(np.all(np.isclose(a, e, rtol=F64.rtol, atol=F64.atol, equal_nan=True)))
        actual = difference(a, e, F64)       # warnings are tested separately below
    assert actual.ok is expected_ok


@pytest.mark.parametrize("actual, expected, ok, max_rel", [
    # gap < atol; |e| is below atol/rtol, where atol governs, so no relative error is reported
    pytest.param([1e-13], [5e-324], True, 0.0, id="subnormal-expected"),
    pytest.param([1e308], [-1e308], False, INF, id="gap-overflows"),
    pytest.param([-1e308], [1e308], False, INF, id="gap-overflows-negative"),
])
def test_extreme_finite_values_give_no_floating_point_warnings(actual, expected, ok, max_rel):
    """Finite extreme inputs are valid; the result is right and no RuntimeWarning is emitted
    (under NumPy's default error state, in which underflow is silent)."""
    with warnings.catch_warnings(), np.errstate(divide="warn", over="warn", invalid="warn",
                                                under="ignore"):
        warnings.simplefilter("error")
        d = difference(actual, expected, F64)
    assert d.ok is ok
    assert d.max_rel == max_rel


# ------------------------------------------------------- tensorwise (normwise)

def test_tensorwise_is_normwise_per_tensor():
    """max|a - e| <= atol + rtol * max|e| for each tensor on its own: a small
    element may move by rtol times its tensor's largest, a small tensor may not
    borrow a large tensor's scale."""
    e = {"0.weight": np.array([1.0, 1e-6]), "0.bias": np.array([1e-6])}
    inside = {"0.weight": np.array([1.0, 1e-6 + 5e-11]), "0.bias": np.array([1e-6])}
    assert tensorwise_difference(inside, e, F64).ok
    assert not difference(inside["0.weight"], e["0.weight"], F64).ok         # elementwise it fails
    borrowing = {"0.weight": np.array([1.0, 1e-6]), "0.bias": np.array([1e-6 + 5e-11])}
    d = tensorwise_difference(borrowing, e, F64)
    assert not d.ok
    assert d.worst.tensor == "0.bias" and d.worst.index == (0,)
    assert d.worst.expected == 1e-6 and d.worst.actual == 1e-6 + 5e-11
    assert d.worst.criterion.startswith("normwise: max|a - e| = 5e-11 beyond")
    assert d.used == pytest.approx(5e-11 / (1e-12 + 1e-10 * 1e-6), rel=1e-6)


def test_tensorwise_rounding_allowance_is_the_multiple_of_the_sensitivity():
    from nnparity.shared.core.tolerance import ROUNDING_MULTIPLE
    e = {"grad 0.weight": np.array([1e-3, -2e-3])}
    gap = 1e-9                                           # beyond atol + rtol * 2e-3
    a = {"grad 0.weight": e["grad 0.weight"] + np.array([0.0, gap])}
    assert not tensorwise_difference(a, e, F64).ok
    just_enough = (gap - F64.atol - F64.rtol * 2e-3) / ROUNDING_MULTIPLE
    assert tensorwise_difference(a, e, F64, {"grad 0.weight": just_enough * 1.01}).ok
    d = tensorwise_difference(a, e, F64, {"grad 0.weight": just_enough * 0.99})
    assert not d.ok and "sensitivity" in d.worst.criterion
    assert d.worst.index == (1,)


def test_tensorwise_mismatches_name_their_element():
    d = tensorwise_difference({"0.weight": np.array([1.0, NAN])},
                              {"0.weight": np.array([1.0, 2.0])}, F64, {"0.weight": INF})
    assert not d.ok and d.used == INF                     # no allowance excuses a NaN
    assert d.worst.index == (1,) and d.worst.criterion.startswith("non-finite")
    d = tensorwise_difference({"2.bias": np.zeros(2)}, {"2.bias": np.zeros(3)}, F64)
    assert not d.ok and d.worst.criterion == "shape: (2,) against the reference's (3,)"
    with pytest.raises(ValueError, match="tensor names differ"):
        tensorwise_difference({"0.weight": np.zeros(1)}, {"2.weight": np.zeros(1)}, F64)


def test_elementwise_difference_names_its_worst_element():
    d = difference(np.array([[1.0, 2.0], [3.0, 4.0 + 1e-6]]), np.array([[1.0, 2.0], [3.0, 4.0]]),
                   F64, name="predictions")
    assert not d.ok and d.worst.tensor == "predictions" and d.worst.index == (1, 1)
    assert str(d.worst).startswith("predictions[1, 1]: expected 4.0, actual 4.000001")
    assert "elementwise" in d.worst.criterion and "beyond" in d.worst.criterion
