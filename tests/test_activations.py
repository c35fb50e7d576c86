"""The 18 hidden activations in every backend, against an outside oracle.

- The oracle is mpmath at 50 digits, evaluating each formula and its analytic
  derivative as written *here* (not in the library), checked itself against
  ``mpmath.diff``.
- The breakpoint table of the issue is written here independently and checked
  against ``shared.activations.breakpoints`` and, point by point, against every
  backend (tests/upstream checks it against torch's own autograd, the
  convention's source).
- Extreme inputs stay finite, keep dtype and shape, and raise no NumPy warning.
- The backends avoid the framework traps that force our own implementations
  (tests/upstream/test_activation_builtins.py demonstrates the traps).
- Bad input to ``activation_with_grad`` and the spec's activation fields fail
  with errors that name the argument.

Tolerances come from ``nnparity.shared.core.tolerance.ELEMENTWISE`` only.
"""
from __future__ import annotations

import functools
import math
import warnings

import mpmath
import numpy as np
import pytest

from nnparity.backends import activation_with_grad
from nnparity.shared import SGD, NetworkSpec
from nnparity.shared.core.activations import ACTIVATIONS, breakpoints
from nnparity.shared.core.layers import Activation
from nnparity.shared.core.tolerance import ELEMENTWISE, Tolerance, difference
from conftest import require

NAMES = tuple(ACTIVATIONS)
BACKENDS = ("numpy", "torch", "jax")
DTYPES = ("float64", "float32")

#: every activation with its defaults, plus non-default parameters of the parametric ones
VARIANTS = [(name, {}) for name in NAMES] + [
    ("leaky_relu", {"negative_slope": 0.2}),
    ("leaky_relu", {"negative_slope": -0.5}),
    ("elu", {"alpha": 2.0}),
    ("elu", {"alpha": 0.3}),
    ("celu", {"alpha": 0.5}),
    ("celu", {"alpha": 2.0}),
]


def variant_id(name, params):
    if not params:
        return name
    return name + "(" + ",".join(f"{k}={v:g}" for k, v in params.items()) + ")"


#: JAX runs each primitive as its own compiled program, compiled again for every new
#: input shape and dtype: its float32 checks (the float64 checks' code with float32
#: inputs) cost about a third of this file's time, so they are slow tests. NumPy and
#: torch run every float32 check in the default run.
def marks(backend, dtype):
    return [pytest.mark.slow] if (backend, dtype) == ("jax", "float32") else []


def need(backend):
    if backend != "numpy":
        require(backend)


# ---------------------------------------------------------------- the oracle

# torch.nn.SELU's constants, as decimal strings (Klambauer et al. 2017)
SELU_ALPHA = mpmath.mpf("1.6732632423543772848170429916717")
SELU_SCALE = mpmath.mpf("1.0507009873554804934193349852946")
DEFAULTS = {"leaky_relu": {"negative_slope": 0.01}, "elu": {"alpha": 1.0},
            "celu": {"alpha": 1.0}}


def _sigmoid_and_slope(x):
    """sigmoid(x) and sigmoid'(x) = e^-x / (1 + e^-x)^2 (no cancellation in either tail)."""
    e = mpmath.exp(-x)
    return 1 / (1 + e), e / (1 + e) ** 2


def oracle_mp(name, x, params=None):
    """(f(x), f'(x)) as mpf at the current mpmath precision; x an mpf.

    Away from breakpoints; at a breakpoint the value is still right (every f is
    continuous), the derivative is one of the one-sided ones.
    """
    p = {**DEFAULTS.get(name, {}), **(params or {})}
    one, zero = mpmath.mpf(1), mpmath.mpf(0)
    if name == "identity":
        return x, one
    if name == "relu":
        return (x, one) if x > 0 else (zero, zero)
    if name == "leaky_relu":
        s = mpmath.mpf(p["negative_slope"])
        return (x, one) if x > 0 else (s * x, s)
    if name in ("elu", "selu"):
        a = SELU_ALPHA if name == "selu" else mpmath.mpf(p["alpha"])
        k = SELU_SCALE if name == "selu" else one
        return (k * x, k) if x > 0 else (k * a * mpmath.expm1(x), k * a * mpmath.exp(x))
    if name == "celu":
        a = mpmath.mpf(p["alpha"])
        return (x, one) if x > 0 else (a * mpmath.expm1(x / a), mpmath.exp(x / a))
    if name == "gelu":
        if abs(x) > 10 ** 6:
            # mpmath.erfc overflows converting its argument near 1e300. Out here the true
            # value is x (x > 0) or 0 (x < 0), and the slope 1 or 0, to within
            # e^(-10^11), far below float64's resolution.
            return (x, one) if x > 0 else (zero, zero)
        cdf = mpmath.erfc(-x / mpmath.sqrt(2)) / 2
        pdf = mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)
        return x * cdf, cdf + x * pdf
    if name == "gelu_tanh":
        c, k = mpmath.sqrt(2 / mpmath.pi), mpmath.mpf("0.044715")
        u = c * (x + k * x ** 3)
        one_plus_t = 2 / (1 + mpmath.exp(-2 * u))          # 1 + tanh(u), no cancellation
        return x / 2 * one_plus_t, (one_plus_t / 2
                                    + x / 2 * mpmath.sech(u) ** 2 * c * (1 + 3 * k * x * x))
    if name == "sigmoid":
        return _sigmoid_and_slope(x)
    if name == "tanh":
        return mpmath.tanh(x), mpmath.sech(x) ** 2
    if name == "softplus":
        return mpmath.log1p(mpmath.exp(x)), _sigmoid_and_slope(x)[0]
    if name == "silu":
        s, ds = _sigmoid_and_slope(x)
        return x * s, s + x * ds
    if name == "mish":
        sp = mpmath.log1p(mpmath.exp(x))
        s, _ = _sigmoid_and_slope(x)
        return x * mpmath.tanh(sp), mpmath.tanh(sp) + x * mpmath.sech(sp) ** 2 * s
    if name == "softsign":
        return x / (1 + abs(x)), 1 / (1 + abs(x)) ** 2
    if name == "relu6":
        return min(max(x, zero), mpmath.mpf(6)), (one if 0 < x < 6 else zero)
    if name == "hardtanh":
        return min(max(x, -one), one), (one if -1 < x < 1 else zero)
    if name == "hardsigmoid":
        return min(max(x / 6 + one / 2, zero), one), (one / 6 if -3 < x < 3 else zero)
    if name == "hardswish":
        hs = min(max(x / 6 + one / 2, zero), one)
        slope = zero if x < -3 else one if x > 3 else (2 * x + 3) / 6
        return x * hs, slope
    raise AssertionError(f"the oracle does not know {name!r}")


def oracle(name, x, params=None):
    """(f(x), f'(x)) as float64 arrays (correctly rounded), from 50-digit mpmath."""
    values, slopes = [], []
    with mpmath.workdps(50):
        for xi in np.asarray(x, dtype=np.float64).ravel():
            v, d = oracle_mp(name, mpmath.mpf(float(xi)), params)
            values.append(float(v))
            slopes.append(float(d))
    shape = np.shape(x)
    return np.array(values).reshape(shape), np.array(slopes).reshape(shape)


BREAK_XS = (-3.0, -1.0, 0.0, 1.0, 3.0, 6.0)          # every breakpoint of every activation
GRID = np.array([-1000, -20.1, -6.5, -3.5, -1.5, -1e-300, 1e-300, 0.3, 1.5, 2.9, 3.5, 6.5,
                 20.1, 1000])


def random_grid(seed=0, n=40):
    """Random points of both signs on a wide log scale, at least 1e-3 from any breakpoint."""
    rs = np.random.RandomState(seed)
    x = np.concatenate([rs.uniform(-8, 8, n), rs.choice([-1, 1], n) * 10 ** rs.uniform(-12, 3, n)])
    far = np.min(np.abs(x[:, None] - np.array(BREAK_XS)[None, :]), axis=1) >= 1e-3
    return x[far]


#: float64 points, none of them a breakpoint; the oracle is exact on either side of a
#: kink, so +-1e-300 (and the random tiny ones) test the two sides of the kink at 0
POINTS = np.concatenate([GRID, random_grid()])


def test_grid_avoids_breakpoints_and_has_the_required_points():
    for x0 in BREAK_XS:
        assert not np.any(POINTS == x0)
        assert np.min(np.abs(random_grid() - x0)) >= 1e-3
    for name, params in VARIANTS:
        for x0 in breakpoints(name, params):
            assert x0 in BREAK_XS
    assert set(GRID) <= set(POINTS) and len(POINTS) > len(GRID) + 40


@pytest.mark.parametrize("name", NAMES)
def test_oracle_derivative_is_the_derivative_of_the_oracle_value(name):
    """The hand-derived oracle derivatives agree with mpmath.diff of the oracle values."""
    with mpmath.workdps(50):
        for xi in POINTS:
            if abs(xi) < 0.1 or abs(xi) > 100:   # keep mpmath.diff's step clear of any kink
                continue
            x = mpmath.mpf(float(xi))
            numeric = mpmath.diff(lambda t: oracle_mp(name, t)[0], x)
            analytic = oracle_mp(name, x)[1]
            assert abs(numeric - analytic) <= mpmath.mpf("1e-30") * max(1, abs(analytic)), \
                (name, xi, numeric, analytic)


def mismatch(actual, expected, tol, what, x):
    """None when ``actual`` is within ``tol`` of ``expected`` elementwise (the project's
    rule), else a message naming the worst point."""
    d = difference(actual, expected, tol)
    if d.ok:
        return None
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    with np.errstate(all="ignore"):
        excess = np.abs(a - e) - (tol.atol + tol.rtol * np.abs(e))
    excess[~np.isfinite(excess)] = np.inf
    i = int(np.argmax(excess))
    return (f"{what}: max abs {d.max_abs:.3e}, max rel {d.max_rel:.3e} > {tol}; "
            f"worst at x={np.ravel(x)[i]!r}: got {a[i]!r}, expected {e[i]!r}")


def assert_close(actual, expected, tol, what, x):
    """Elementwise under ``tol``; the failure names the worst point."""
    message = mismatch(actual, expected, tol, what, x)
    if message:
        pytest.fail(message)


ORACLE_CASES = [pytest.param(backend, name, params, dtype,
                             id=f"{backend}-{variant_id(name, params)}-{dtype}",
                             marks=marks(backend, dtype))
                for backend in BACKENDS for name, params in VARIANTS for dtype in DTYPES]


@pytest.mark.parametrize("backend, name, params, dtype", ORACLE_CASES)
def test_value_and_derivative(backend, name, params, dtype):
    """f(x) and f'(x) on the grid, against the oracle at the (rounded) input."""
    need(backend)
    x = POINTS.astype(dtype)
    if dtype == "float32":
        x = x[np.abs(x) >= 1e-30]     # below float32's normal range the input itself flushes
    value, slope = activation_with_grad(name, x, backend, **params)
    expected_value, expected_slope = oracle(name, x, params)
    assert value.dtype == np.dtype(dtype) and value.shape == x.shape
    assert slope.dtype == np.dtype(dtype) and slope.shape == x.shape
    messages = [mismatch(value, expected_value, ELEMENTWISE[dtype], f"{name} value", x),
                mismatch(slope, expected_slope, ELEMENTWISE[dtype], f"{name} derivative", x)]
    assert not any(messages), "\n".join(m for m in messages if m)


@pytest.mark.parametrize("backend, name, params", [
    pytest.param(b, n, p, id=f"{b}-{variant_id(n, p)}") for b in BACKENDS for n, p in VARIANTS])
def test_value_relative_at_tiny_inputs(backend, name, params):
    """At +-1e-300 ELEMENTWISE's atol would accept anything; here only rtol counts."""
    need(backend)
    x = np.array([-1e-300, -3e-200, 1e-300, 3e-200])
    value, slope = activation_with_grad(name, x, backend, **params)
    expected_value, expected_slope = oracle(name, x, params)
    strict = Tolerance(rtol=ELEMENTWISE["float64"].rtol, atol=0.0)     # stricter, not looser
    assert_close(value, expected_value, strict, f"{name} value near 0", x)
    assert_close(slope, expected_slope, strict, f"{name} derivative near 0", x)


# ---------------------------------------------------------------- breakpoints

#: the issue's convention table, written out independently: (name, params) -> {x0: f'(x0)}
SELU_AT_0 = 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717
EXPECTED_BREAKPOINTS = {
    ("relu", ()): {0.0: 0.0},
    ("leaky_relu", ()): {0.0: 0.01},
    ("leaky_relu", (("negative_slope", 0.2),)): {0.0: 0.2},
    ("leaky_relu", (("negative_slope", -0.5),)): {0.0: -0.5},
    ("elu", ()): {0.0: 1.0},
    ("elu", (("alpha", 2.0),)): {0.0: 2.0},
    ("elu", (("alpha", 0.3),)): {0.0: 0.3},
    ("selu", ()): {0.0: SELU_AT_0},
    ("celu", ()): {0.0: 1.0},
    ("celu", (("alpha", 0.5),)): {0.0: 1.0},
    ("celu", (("alpha", 2.0),)): {0.0: 1.0},
    ("relu6", ()): {0.0: 0.0, 6.0: 0.0},
    ("hardtanh", ()): {-1.0: 0.0, 1.0: 0.0},
    ("hardsigmoid", ()): {-3.0: 0.0, 3.0: 0.0},
    ("hardswish", ()): {-3.0: 0.0, 3.0: 1.0},
}


def expected_breakpoints(name, params):
    return EXPECTED_BREAKPOINTS.get((name, tuple(sorted(params.items()))), {})


def test_breakpoint_table_is_the_issues():
    wrong = [f"{variant_id(name, params)}: {breakpoints(name, params)} != "
             f"{expected_breakpoints(name, params)}" for name, params in VARIANTS
             if breakpoints(name, params) != expected_breakpoints(name, params)]
    assert not wrong, "\n".join(wrong)


BREAK_CASES = [pytest.param(backend, name, params, x0, d0,
                            id=f"{backend}-{variant_id(name, params)}-at{x0:g}")
               for backend in BACKENDS for name, params in VARIANTS
               for x0, d0 in expected_breakpoints(name, params).items()]


@pytest.mark.parametrize("backend, name, params, x0, d0", BREAK_CASES)
def test_breakpoint(backend, name, params, x0, d0):
    """f'(x0) is exactly the table's value in float64, and f(x0) is the formula's."""
    need(backend)
    value, slope = activation_with_grad(name, np.array([x0]), backend, **params)
    assert slope[0] == d0, f"{name}'({x0}) = {slope[0]!r}, the table says {d0!r}"
    expected_value, _ = oracle(name, np.array([x0]), params)
    assert value[0] == expected_value[0], f"{name}({x0}) = {value[0]!r}, not {expected_value[0]!r}"
    # a breakpoint in a larger array (mixed with other points) gets the same derivative
    xs = np.array([x0 - 0.25, x0, x0 + 0.25, x0])
    _, slopes = activation_with_grad(name, xs, backend, **params)
    assert slopes[1] == d0 and slopes[3] == d0


@pytest.mark.parametrize("backend, name, params, x0, d0", BREAK_CASES)
def test_breakpoint_one_sided_neighbours(backend, name, params, x0, d0):
    """Just beside a breakpoint, the derivative is the oracle's one-sided one."""
    need(backend)
    # next to 0 use +-1e-300, not the subnormal nextafter(0): XLA on CPU flushes
    # subnormal inputs to 0 (tests/upstream: test_trap_xla_flushes_subnormal_inputs)
    step = 1e-300 if x0 == 0 else 0.0
    xs = np.array([np.nextafter(x0, -np.inf) - step, x0 - 1e-9, x0 + 1e-9,
                   np.nextafter(x0, np.inf) + step])
    value, slope = activation_with_grad(name, xs, backend, **params)
    expected_value, expected_slope = oracle(name, xs, params)
    assert_close(value, expected_value, ELEMENTWISE["float64"], f"{name} value", xs)
    assert_close(slope, expected_slope, ELEMENTWISE["float64"], f"{name} derivative", xs)


def test_every_activation_with_a_kink_has_breakpoints():
    """Names whose definition is piecewise have table entries; smooth ones have none."""
    piecewise = {"relu", "leaky_relu", "elu", "selu", "celu", "relu6", "hardtanh",
                 "hardsigmoid", "hardswish"}
    for name in NAMES:
        assert bool(breakpoints(name)) == (name in piecewise), name


# ---------------------------------------------------------------- extreme inputs

EXTREMES = {
    "float64": [1e300, -1e300, 1000.0, -1000.0, 1e-300, -1e-300, 0.0],
    "float32": [3e38, -3e38, 1000.0, -1000.0, 1e-30, -1e-30, 0.0],
}
SHAPES = {"1d": lambda v: v, "2d": lambda v: np.stack([v, v[::-1]]),
          "0d": lambda v: v[0]}


def extreme_inputs(dtype, shape):
    v = np.array(EXTREMES[dtype], dtype=dtype)
    if shape == "0d":
        return [np.array(e, dtype=dtype) for e in v]       # one 0-d array per value
    return [SHAPES[shape](v)]


@pytest.mark.parametrize("backend, dtype", [
    pytest.param(b, dt, id=f"{b}-{dt}", marks=marks(b, dt)) for b in BACKENDS for dt in DTYPES])
def test_extreme_inputs_finite(backend, dtype):
    """Every variant and shape (1-d, 2-d, 0-d) at the extreme inputs: finite results of
    x's dtype and shape."""
    need(backend)
    bad = []
    for name, params in VARIANTS:
        for shape in SHAPES:
            for x in extreme_inputs(dtype, shape):
                value, slope = activation_with_grad(name, x, backend, **params)
                case = f"{backend} {variant_id(name, params)} {dtype} {shape}"
                for what, out in (("value", value), ("derivative", slope)):
                    if out.dtype != x.dtype:
                        bad.append(f"{case} {what}: dtype {out.dtype}, not {x.dtype}")
                    if out.shape != x.shape:
                        bad.append(f"{case} {what}: shape {out.shape}, not {x.shape}")
                    if not np.all(np.isfinite(out)):
                        bad.append(f"{case} {what} at {x!r}: {out!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_returns_ndarrays(backend):
    """The API returns NumPy arrays: a 0-d input gives 0-d arrays, not NumPy scalars
    (as torch and jax do); every variant, every shape."""
    need(backend)
    bad = []
    for name, params in VARIANTS:
        for shape in SHAPES:
            for x in extreme_inputs("float64", shape):
                value, slope = activation_with_grad(name, x, backend, **params)
                for what, out in (("value", value), ("derivative", slope)):
                    if type(out) is not np.ndarray:
                        bad.append(f"{backend} {variant_id(name, params)} {shape} {what} "
                                   f"at {x!r} is a {type(out).__name__}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_results_do_not_alias_input(backend):
    """Neither result is (or shares memory with) the caller's array, which is unchanged;
    every variant, every shape."""
    need(backend)
    bad = []
    for name, params in VARIANTS:
        for shape in SHAPES:
            for x in extreme_inputs("float64", shape):
                before = x.copy()
                value, slope = activation_with_grad(name, x, backend, **params)
                case = f"{backend} {variant_id(name, params)} {shape}"
                for what, out in (("value", value), ("derivative", slope)):
                    if out is x or np.shares_memory(out, x):
                        bad.append(f"{case}: {what} aliases x")
                if not np.array_equal(x, before):
                    bad.append(f"{case}: x changed from {before!r} to {x!r}")
    assert not bad, "\n".join(bad)


LARGEST = [pytest.param(b, n, p, dt, id=f"{b}-{variant_id(n, p)}-{dt}", marks=marks(b, dt))
           for b in BACKENDS for n, p in VARIANTS for dt in DTYPES]


@pytest.mark.parametrize("backend, name, params, dtype", LARGEST)
def test_largest_finite_inputs(backend, name, params, dtype):
    """+-finfo.max: finite results, and no NumPy warning (overflow, invalid, divide).

    selu's true value at +finfo.max is scale*max > max, which no float can hold, so
    selu is checked only on -max there.
    """
    need(backend)
    big = np.finfo(dtype).max
    x = np.array([-big] if name == "selu" else [big, -big], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            value, slope = activation_with_grad(name, x, backend, **params)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(slope)), (value, slope)
    expected_value, expected_slope = oracle(name, x, params)
    assert_close(value, expected_value, ELEMENTWISE[dtype], f"{name} value", x)
    assert_close(slope, expected_slope, ELEMENTWISE[dtype], f"{name} derivative", x)


@pytest.mark.parametrize("name, params", [
    pytest.param(n, p, id=variant_id(n, p)) for n, p in VARIANTS])
def test_extreme_inputs_match_oracle_float64(name, params):
    """At +-1e300 and +-1000 the numbers are right, not merely finite (all backends)."""
    x = np.array(EXTREMES["float64"])
    expected_value, expected_slope = oracle(name, x, params)
    for backend in BACKENDS:
        if backend != "numpy":
            require(backend)
        value, slope = activation_with_grad(name, x, backend, **params)
        assert_close(value, expected_value, ELEMENTWISE["float64"], f"{backend} {name} value", x)
        assert_close(slope, expected_slope, ELEMENTWISE["float64"],
                     f"{backend} {name} derivative", x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, params", [
    pytest.param(n, p, id=variant_id(n, p)) for n, p in VARIANTS])
def test_numpy_no_floating_point_warnings(name, params, dtype):
    """No RuntimeWarning and no FloatingPointError from overflow, invalid or divide.

    Underflow is the one condition not raised: e^-1000 -> 0 is the correctly rounded
    result (NumPy ignores underflow by default, and the issue asks for no overflow or
    invalid warning); elu, selu, celu, gelu, gelu_tanh, sigmoid, tanh, softplus, silu,
    mish and softsign all underflow somewhere on these inputs, legitimately.
    """
    x = np.concatenate([np.array(EXTREMES[dtype], dtype=dtype), POINTS.astype(dtype),
                        np.array(BREAK_XS, dtype=dtype)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            activation_with_grad(name, x, "numpy", **params)
            for xi in x:                                    # 0-d inputs take other code paths
                activation_with_grad(name, np.array(xi), "numpy", **params)


@pytest.mark.parametrize("backend", [pytest.param(b, marks=marks(b, "float32"))
                                     for b in ("torch", "jax")])
def test_cross_backend_float32(backend):
    """torch and jax agree with numpy on float32 inputs, under ELEMENTWISE["float32"]:
    every variant."""
    require(backend)
    x = np.concatenate([POINTS, np.array(BREAK_XS), np.array(EXTREMES["float32"])])
    x = x.astype(np.float32)
    bad = []
    for name, params in VARIANTS:
        ref_value, ref_slope = activation_with_grad(name, x, "numpy", **params)
        value, slope = activation_with_grad(name, x, backend, **params)
        what = f"{backend} {variant_id(name, params)}"
        if value.dtype != np.float32 or slope.dtype != np.float32:
            bad.append(f"{what}: dtypes {value.dtype}, {slope.dtype}")
        bad += [m for m in (mismatch(value, ref_value, ELEMENTWISE["float32"], f"{what} value", x),
                            mismatch(slope, ref_slope, ELEMENTWISE["float32"],
                                     f"{what} derivative", x)) if m]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name, params", [
    pytest.param(n, p, id=variant_id(n, p)) for n, p in VARIANTS])
def test_cross_backend_float64_with_breakpoints(name, params):
    """On the grid plus every breakpoint, the three backends agree under ELEMENTWISE."""
    x = np.concatenate([POINTS, np.array(BREAK_XS), np.array(EXTREMES["float64"])])
    ref_value, ref_slope = activation_with_grad(name, x, "numpy", **params)
    for backend in ("torch", "jax"):
        require(backend)
        value, slope = activation_with_grad(name, x, backend, **params)
        assert_close(value, ref_value, ELEMENTWISE["float64"], f"{backend} {name} value", x)
        assert_close(slope, ref_slope, ELEMENTWISE["float64"], f"{backend} {name} derivative", x)


def test_float32_input_is_not_silently_float64_in_jax():
    """jax under float32 input really computes in float32 (x64 scoped to float64 only)."""
    require("jax")
    x = np.array([0.1, 1.3], dtype=np.float32)
    value, _ = activation_with_grad("tanh", x, "jax")
    assert value.dtype == np.float32
    assert_close(value, np.tanh(x), ELEMENTWISE["float32"], "jax float32 tanh", x)


# ---------------------------------------------------------------- framework traps
#
# tests/upstream/test_activation_builtins.py shows what the built-ins do; here the
# backends avoid it. The derivatives at the kinks (relu, leaky_relu, hardtanh; jax's
# and torch's built-ins differ there) are test_breakpoint's, for every backend.

def test_softplus_is_the_log_form_without_threshold():
    """No threshold (torch's F.softplus returns 20.1 at 20.1) and no overflow (the naive
    log1p(exp(x)) is inf at 1000), in every backend: exactly log(1 + e^x)."""
    expected = math.log1p(math.exp(20.1))
    for backend in BACKENDS:
        need(backend)
        value = activation_with_grad("softplus", np.array(20.1), backend)[0]
        assert value.item() == expected, backend
        value, slope = activation_with_grad("softplus", np.array(1000.0), backend)
        assert value.item() == 1000.0 and slope.item() == 1.0, backend


def test_hardsigmoid_slope_is_the_float64_sixth():
    """hardsigmoid'(0.5) is 1/6 exactly in every backend (torch's F.hardsigmoid gives
    float32's 1/6 in float64)."""
    for backend in BACKENDS:
        need(backend)
        assert activation_with_grad("hardsigmoid", np.array([0.5]), backend)[1][0] == 1 / 6, \
            backend


def test_gelu_is_the_exact_form_and_gelu_tanh_the_approximation():
    """gelu is torch's exact F.gelu in every backend, not jax.nn.gelu's default tanh
    approximation, which is gelu_tanh."""
    jax, torch = require("jax"), require("torch")
    x = np.linspace(-10, 10, 20001)
    with jax.enable_x64(True):
        approx = np.array(jax.nn.gelu(x))
    torch_exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    for backend in BACKENDS:
        value, _ = activation_with_grad("gelu", x, backend)
        assert_close(value, torch_exact, ELEMENTWISE["float64"], f"{backend} gelu vs F.gelu", x)
        assert difference(value, approx, ELEMENTWISE["float64"]).ok is False
        value_tanh, _ = activation_with_grad("gelu_tanh", x, backend)
        assert_close(value_tanh, approx, ELEMENTWISE["float64"], f"{backend} gelu_tanh", x)


def numpy_shared_work_mismatch(name, x, shared):
    """Where ``shared(x)`` = (f(x), f'(x)) differs in any bit from the NumPy backend's
    separate f and f' (``ACTIVATIONS[name]``), or None."""
    from nnparity.backends.numpy.activations import ACTIVATIONS as NUMPY_ACTIVATIONS

    f, df = NUMPY_ACTIVATIONS[name]
    for what, got, want in zip(("f", "f'"), shared(x), (f(x), df(x)), strict=True):
        if got.dtype != want.dtype or got.tobytes() != want.tobytes():
            return f"{name} {what} differs ({got.dtype} against {want.dtype})"
    return None


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_shared_work_is_bitwise_the_separate_functions(dtype):
    """The NumPy Activation layer trains with ``value_and_derivative`` (GELU's f and f'
    share one Phi(x)) and predicts with f alone: both give the same bits, so a trained
    network predicts what training saw. Control: Phi(x) in float64 throughout, cast once
    at the end, differs in float32."""
    from nnparity.backends.numpy import activations as numpy_activations

    x = np.concatenate([random_grid(seed=3, n=4000), EXTREMES[dtype][2:]]).astype(dtype)
    for name in numpy_activations.SHARED_WORK:
        shared = functools.partial(numpy_activations.value_and_derivative, name)
        assert numpy_shared_work_mismatch(name, x, shared) is None
    if dtype == "float32":
        def phi_kept_in_float64(x):
            y, dy = numpy_activations.gelu_with_derivative(x.astype(np.float64))
            return y.astype(x.dtype), dy.astype(x.dtype)
        assert numpy_shared_work_mismatch("gelu", x, phi_kept_in_float64) is not None


def test_numpy_relu_slope_at_a_subnormal_is_1():
    """NumPy (like torch) does not flush a subnormal input to 0, as compiled XLA does;
    the grid therefore uses +-1e-300 for "just beside 0"."""
    assert activation_with_grad("relu", np.array([1e-310]), "numpy")[1][0] == 1.0


# ---------------------------------------------------------------- bad input

def test_unknown_activation_name():
    with pytest.raises(ValueError, match="swishy"):
        activation_with_grad("swishy", np.zeros(2))


def test_activation_name_not_a_string():
    with pytest.raises(TypeError, match="activation"):
        activation_with_grad(3, np.zeros(2))


@pytest.mark.parametrize("name, params", [
    pytest.param("relu", {"alpha": 1.0}, id="relu-alpha"),
    pytest.param("tanh", {"negative_slope": 0.1}, id="tanh-negative_slope"),
    pytest.param("elu", {"negative_slope": 0.1}, id="elu-negative_slope"),
    pytest.param("leaky_relu", {"slope": 0.1}, id="leaky_relu-slope"),
])
def test_unknown_parameter(name, params):
    key = next(iter(params))
    with pytest.raises(ValueError, match=key):
        activation_with_grad(name, np.zeros(2), **params)


@pytest.mark.parametrize("name", ["elu", "celu"])
@pytest.mark.parametrize("alpha", [0.0, -1.0, math.inf, -math.inf, math.nan],
                         ids=["zero", "negative", "inf", "-inf", "nan"])
def test_bad_alpha(name, alpha):
    with pytest.raises(ValueError, match="alpha"):
        activation_with_grad(name, np.zeros(2), alpha=alpha)


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_bad_negative_slope(value):
    with pytest.raises(ValueError, match="negative_slope"):
        activation_with_grad("leaky_relu", np.zeros(2), negative_slope=value)


@pytest.mark.parametrize("value", [True, "0.1", None], ids=["bool", "str", "none"])
def test_parameter_not_a_number(value):
    with pytest.raises(TypeError, match="negative_slope"):
        activation_with_grad("leaky_relu", np.zeros(2), negative_slope=value)


@pytest.mark.parametrize("x", [
    pytest.param(np.array([1, 2, 3]), id="int64"),
    pytest.param(np.array([1, 2], dtype=np.int32), id="int32"),
    pytest.param(np.array([True, False]), id="bool"),
    pytest.param(np.array([1 + 0j]), id="complex"),
    pytest.param(np.array([1.0], dtype=np.float16), id="float16"),
    pytest.param(np.array([1.0], dtype=object), id="object"),
])
def test_x_wrong_dtype(x):
    with pytest.raises(TypeError, match="x"):
        activation_with_grad("relu", x)


@pytest.mark.parametrize("x", [
    pytest.param([0.0, 1.0], id="list"),
    pytest.param(1.0, id="float"),
    pytest.param((0.5,), id="tuple"),
])
def test_x_not_an_array(x):
    with pytest.raises(TypeError, match="x"):
        activation_with_grad("relu", x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_x_non_finite(bad):
    with pytest.raises(ValueError, match="finite"):
        activation_with_grad("relu", np.array([0.0, bad]))


@pytest.mark.parametrize("backend", ["tensorflow", "NumPy", ""])
def test_unknown_backend(backend):
    with pytest.raises(ValueError, match="backend"):
        activation_with_grad("relu", np.zeros(2), backend)


# ---------------------------------------------------------------- the spec

def hidden_activations(spec):
    """The spec's Activation layers, in order (one per hidden Dense layer)."""
    return [layer for layer in spec.layers if isinstance(layer, Activation)]


def test_spec_accepts_one_name_per_hidden_layer():
    spec = NetworkSpec(sizes=(3, 6, 5, 2), activation=("leaky_relu", "hardswish"),
                       activation_params={"leaky_relu": {"negative_slope": 0.1}})
    assert [a.name for a in hidden_activations(spec)] == ["leaky_relu", "hardswish"]
    assert hidden_activations(spec)[0].kwargs == {"negative_slope": 0.1}
    assert hidden_activations(spec)[1].kwargs == {}
    assert spec.activation == ("leaky_relu", "hardswish")


def test_spec_list_of_names_becomes_tuple():
    spec = NetworkSpec(sizes=(3, 6, 5, 2), activation=["tanh", "gelu"])
    assert spec.activation == ("tanh", "gelu")


def test_spec_one_name_applies_to_every_hidden_layer_with_defaults():
    spec = NetworkSpec(sizes=(3, 6, 5, 4, 2), activation="elu")
    assert [a.name for a in hidden_activations(spec)] == ["elu"] * 3
    assert all(a.kwargs == {"alpha": 1.0} for a in hidden_activations(spec))


@pytest.mark.parametrize("activation", [("relu",), ("relu", "tanh", "gelu"), ()],
                         ids=["too-few", "too-many", "empty"])
def test_spec_rejects_wrong_number_of_names(activation):
    with pytest.raises(ValueError, match="activation"):
        NetworkSpec(sizes=(3, 6, 5, 2), activation=activation)


def test_spec_rejects_unknown_name_in_tuple():
    with pytest.raises(ValueError, match="activation\\[1\\]"):
        NetworkSpec(sizes=(3, 6, 5, 2), activation=("relu", "swishy"))


def test_spec_rejects_params_for_unused_activation():
    with pytest.raises(ValueError, match="elu"):
        NetworkSpec(sizes=(3, 6, 2), activation="relu", activation_params={"elu": {"alpha": 2.0}})
    with pytest.raises(ValueError, match="leaky_relu"):
        NetworkSpec(sizes=(3, 6, 5, 2), activation=("relu", "tanh"),
                    activation_params={"leaky_relu": {"negative_slope": 0.2}})


def test_spec_rejects_params_when_there_is_no_hidden_layer():
    with pytest.raises(ValueError, match="activation_params"):
        NetworkSpec(sizes=(3, 2), activation="elu", activation_params={"elu": {"alpha": 2.0}})


def test_spec_rejects_unknown_parameter():
    with pytest.raises(ValueError, match="beta"):
        NetworkSpec(sizes=(3, 6, 2), activation="elu", activation_params={"elu": {"beta": 2.0}})


@pytest.mark.parametrize("alpha", [0.0, -2.0, math.nan], ids=["zero", "negative", "nan"])
def test_spec_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        NetworkSpec(sizes=(3, 6, 2), activation="celu",
                    activation_params={"celu": {"alpha": alpha}})


def test_spec_rejects_non_mapping_params():
    with pytest.raises(TypeError, match="activation_params"):
        NetworkSpec(sizes=(3, 6, 2), activation="elu", activation_params=[("elu", 1.0)])
    with pytest.raises(TypeError):
        NetworkSpec(sizes=(3, 6, 2), activation="elu", activation_params={"elu": 2.0})


def test_spec_round_trip_with_activation_params():
    spec = NetworkSpec(sizes=(3, 6, 5, 2), activation=("leaky_relu", "celu"),
                       activation_params={"leaky_relu": {"negative_slope": 0.2},
                                          "celu": {"alpha": 0.5}},
                       init="xavier_uniform", optimizer=SGD(lr=0.05), batch_size=3, epochs=2)
    d = spec.to_dict()
    assert d["activation"] == ["leaky_relu", "celu"]
    assert d["activation_params"] == {"leaky_relu": {"negative_slope": 0.2},
                                      "celu": {"alpha": 0.5}}
    again = NetworkSpec.from_dict(d)
    assert again == spec and hash(again) == hash(spec)
    assert hidden_activations(again) == hidden_activations(spec)
    assert NetworkSpec.from_json(spec.to_json()) == spec


def test_spec_params_distinguish_specs():
    a = NetworkSpec(sizes=(3, 6, 2), activation="elu")
    b = NetworkSpec(sizes=(3, 6, 2), activation="elu", activation_params={"elu": {"alpha": 2.0}})
    assert a != b and a.to_json() != b.to_json()
