"""Losses: every backend against torch.nn.functional, finite differences, bad targets.

- Oracles: ``torch.nn.functional`` (mse_loss, l1_loss, huber_loss, cross_entropy,
  binary_cross_entropy_with_logits, all ``reduction="mean"``) in float64, with
  torch autograd for dL/dp. Every backend's ``loss_with_grad`` value and
  gradient must match under ``ELEMENTWISE`` of the inputs' dtype (float32
  inputs are compared against the float64 oracle on the same rounded inputs).
  Cases include ties (p == y, |p - y| == delta), a non-default huber delta,
  logits of +-1000 and +-30, and all-zero logits for bce.
- Central finite differences of every hand-written NumPy gradient (float64,
  away from kinks): relative error <= 1e-6, with a negative control.
- Bad targets are rejected with the argument, the expected and the actual
  value named, through ``loss_with_grad``, ``Dataset`` and ``train``; never
  broadcast the way ``F.mse_loss`` does.
- Training parity of all three backends for every loss (SGD with momentum,
  Nesterov SGD or Adam), including all-zero input rows (logits exactly 0 at
  step 0).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import nnparity.backends.numpy.losses as numpy_losses
from nnparity.backends import loss_with_grad, predict, train
from nnparity.shared import SGD, Adam, Dataset, NetworkSpec, compare, init_params
from nnparity.shared.core.losses import LOSSES
from nnparity.shared.core.tolerance import ELEMENTWISE, POLICY, difference
from nnparity.shared.core.tree import leaves
from conftest import require

BACKEND_NAMES = ("numpy", "torch", "jax")
BACKENDS = [pytest.param(name, id=name) for name in BACKEND_NAMES]


def use_backend(backend: str) -> None:
    if backend != "numpy":
        require(backend)


# --------------------------------------------------------------------------- oracle


def torch_oracle(name, p, y, dtype=np.float64, **params):
    """(L, dL/dp) from torch.nn.functional (in float64 unless ``dtype`` says otherwise),
    autograd for the gradient."""
    torch = require("torch")
    F = torch.nn.functional
    pt = torch.tensor(np.asarray(p, dtype=dtype), requires_grad=True)
    if name == "cross_entropy":
        yt = torch.tensor(np.asarray(y, dtype=np.int64))
    else:
        yt = torch.tensor(np.asarray(y, dtype=dtype))
    assert name == "cross_entropy" or pt.shape == yt.shape   # never let the oracle broadcast
    if name == "mse":
        value = F.mse_loss(pt, yt, reduction="mean")
    elif name == "mae":
        value = F.l1_loss(pt, yt, reduction="mean")
    elif name == "huber":
        value = F.huber_loss(pt, yt, reduction="mean", delta=params.get("delta", 1.0))
    elif name == "cross_entropy":
        value = F.cross_entropy(pt, yt, reduction="mean")
    elif name == "bce_with_logits":
        value = F.binary_cross_entropy_with_logits(pt, yt, reduction="mean")
    else:
        raise AssertionError(name)
    value.backward()
    return value.detach().numpy(), pt.grad.numpy()


def rs(seed):
    return np.random.RandomState(seed)


def regression(seed, n=6, k=3):
    r = rs(seed)
    return r.randn(n, k), r.randn(n, k)


def mae_ties():
    p, y = regression(1)
    p[0, :] = y[0, :]                     # r = 0 exactly: derivative 0 (as l1_loss)
    p[2, 1] = y[2, 1]
    return p, y


def huber_ties(delta):
    """Entries with r = 0, r = +delta and r = -delta exactly (dyadic numbers)."""
    r = rs(2)
    y = np.round(r.randn(6, 3) * 8) / 8   # multiples of 1/8: y +- delta is exact
    p = y + r.randn(6, 3) * delta * 1.5
    p[0, 0] = y[0, 0]
    p[1, 0] = y[1, 0] + delta
    p[1, 1] = y[1, 1] - delta
    p[2, 2] = y[2, 2] + delta
    assert np.abs(p[1, 0] - y[1, 0]) == delta and np.abs(p[1, 1] - y[1, 1]) == delta
    return p, y


def labels_case(seed, n=7, k=4, scale=1.0):
    r = rs(seed)
    return r.randn(n, k) * scale, r.randint(0, k, size=n).astype(np.int64)


def ce_large():
    p = np.array([[1000.0, -1000.0, 0.0],
                  [-1000.0, 1000.0, 30.0],
                  [30.0, -30.0, 0.0],
                  [1000.0, 1000.0, -1000.0],
                  [-30.0, 30.0, 30.0],
                  [0.0, 0.0, 0.0]])
    y = np.array([1, 1, 0, 0, 0, 2], dtype=np.int64)   # several far from their target
    return p, y


def probabilities(seed, n=6, k=3, scale=2.0):
    r = rs(seed)
    t = r.rand(n, k)
    t[0, 0], t[1, 1] = 0.0, 1.0
    return r.randn(n, k) * scale, t


def bce_large():
    p = np.array([[1000.0, -1000.0, 30.0, -30.0],
                  [-1000.0, 1000.0, -30.0, 30.0],
                  [1000.0, -30.0, 30.0, 0.5]])
    t = np.array([[0.0, 1.0, 0.0, 1.0],
                  [0.0, 1.0, 0.3, 1.0],
                  [1.0, 0.5, 1.0, 0.0]])
    return p, t


def bce_zero_logits():
    t = np.array([[0.0, 1.0], [0.25, 0.5], [1.0, 0.75]])
    return np.zeros_like(t), t


#: id -> (loss, params, () -> (p, y))
CASES = {
    "mse": ("mse", {}, lambda: regression(0)),
    "mae": ("mae", {}, lambda: regression(3)),
    "mae-ties": ("mae", {}, mae_ties),
    "huber": ("huber", {}, lambda: regression(4)),
    "huber-delta2": ("huber", {"delta": 2.0}, lambda: regression(5, k=4)),
    "huber-delta0.25": ("huber", {"delta": 0.25}, lambda: regression(6)),
    "huber-ties": ("huber", {}, lambda: huber_ties(1.0)),
    "huber-delta2-ties": ("huber", {"delta": 2.0}, lambda: huber_ties(2.0)),
    "cross_entropy": ("cross_entropy", {}, lambda: labels_case(7)),
    "cross_entropy-one-class-output": ("cross_entropy", {}, lambda: labels_case(8, k=1)),
    "cross_entropy-large-logits": ("cross_entropy", {}, ce_large),
    "cross_entropy-logits-x30": ("cross_entropy", {}, lambda: labels_case(9, scale=30.0)),
    "bce_with_logits": ("bce_with_logits", {}, lambda: probabilities(10)),
    "bce_with_logits-large-logits": ("bce_with_logits", {}, bce_large),
    "bce_with_logits-zero-logits": ("bce_with_logits", {}, bce_zero_logits),
}
CASE_PARAMS = [pytest.param(case, id=case) for case in CASES]


def assert_close(actual, expected, tol, what):
    d = difference(actual, expected, tol)
    assert d.ok, (f"{what}: max abs {d.max_abs:.3e}, max rel {d.max_rel:.3e} ({tol})\n"
                  f"actual   {np.asarray(actual)!r}\nexpected {np.asarray(expected)!r}")


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_matches_torch_functional(backend, case):
    use_backend(backend)
    name, params, make = CASES[case]
    p, y = make()
    value, grad = loss_with_grad(name, p, y, backend=backend, **params)
    expected_value, expected_grad = torch_oracle(name, p, y, **params)
    assert np.shape(value) == () and grad.shape == p.shape
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert grad.dtype == np.float64
    tol = ELEMENTWISE["float64"]
    assert_close(value, expected_value, tol, f"{backend} {case} value")
    assert_close(grad, expected_grad, tol, f"{backend} {case} gradient")


#: JAX compiles each primitive again for every new shape and dtype: its float32 cases
#: (the float64 cases' code with float32 inputs) are slow tests; NumPy's and torch's run
#: in the default run
FLOAT32_BACKENDS = [pytest.param("numpy", id="numpy"), pytest.param("torch", id="torch"),
                    pytest.param("jax", id="jax", marks=pytest.mark.slow)]


@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("backend", FLOAT32_BACKENDS)
def test_loss_float32_matches_torch_functional(backend, case):
    """float32 p and y: results in float32, within ELEMENTWISE['float32'] of the
    float64 oracle evaluated on the same (rounded) inputs."""
    use_backend(backend)
    name, params, make = CASES[case]
    p, y = make()
    p32 = p.astype(np.float32)
    y32 = y if y.dtype.kind in "iu" else y.astype(np.float32)
    value, grad = loss_with_grad(name, p32, y32, backend=backend, **params)
    assert grad.dtype == np.float32 and np.asarray(value).dtype == np.float32
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    y_oracle = y32 if y.dtype.kind in "iu" else y32.astype(np.float64)
    expected_value, expected_grad = torch_oracle(name, p32.astype(np.float64), y_oracle,
                                                 **params)
    tol = ELEMENTWISE["float32"]
    assert_close(value, expected_value, tol, f"{backend} {case} float32 value")
    assert_close(grad, expected_grad, tol, f"{backend} {case} float32 gradient")


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_float32_tolerance_is_met_by_torch_functional_itself(case):
    """The float32 comparison above is fair: torch.nn.functional's own float32
    results are within ELEMENTWISE['float32'] of its float64 results."""
    name, params, make = CASES[case]
    p, y = make()
    p = p.astype(np.float32).astype(np.float64)
    if y.dtype.kind == "f":
        y = y.astype(np.float32).astype(np.float64)
    value32, grad32 = torch_oracle(name, p, y, dtype=np.float32, **params)
    value64, grad64 = torch_oracle(name, p, y, **params)
    tol = ELEMENTWISE["float32"]
    assert_close(value32, value64, tol, f"F float32 {case} value")
    assert_close(grad32, grad64, tol, f"F float32 {case} gradient")


def test_tie_cases_really_are_ties():
    """The tie cases hit the kinks exactly: r == 0 for mae, |r| == delta for huber."""
    p, y = mae_ties()
    assert np.sum(p == y) >= 4
    for delta in (1.0, 2.0):
        p, y = huber_ties(delta)
        assert np.sum(np.abs(p - y) == delta) >= 3 and np.sum(p == y) >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_mae_derivative_at_a_tie_is_zero(backend):
    use_backend(backend)
    p, y = mae_ties()
    _, grad = loss_with_grad("mae", p, y, backend=backend)
    assert np.all(grad[p == y] == 0.0), f"{backend}: dL/dp at p == y is {grad[p == y]}, not 0"
    assert np.all(np.abs(grad[p != y]) == 1.0 / p.size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bce_zero_logits_derivative_is_sigmoid0_minus_target(backend):
    use_backend(backend)
    p, t = bce_zero_logits()
    value, grad = loss_with_grad("bce_with_logits", p, t, backend=backend)
    tol = ELEMENTWISE["float64"]
    assert_close(grad, (0.5 - t) / t.size, tol, f"{backend} bce gradient at 0")
    assert_close(value, np.log(2.0), tol, f"{backend} bce value at 0")


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_logits_stay_finite_and_exact(backend):
    """Values known in closed form at +-1000 (e^-1000 underflows to 0 exactly)."""
    use_backend(backend)
    tol = ELEMENTWISE["float64"]
    p = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    value, grad = loss_with_grad("cross_entropy", p, np.array([1, 0]), backend=backend)
    assert_close(value, 2000.0, tol, "ce value")
    assert_close(grad, np.array([[0.5, -0.5], [-0.5, 0.5]]), tol, "ce gradient")
    value, grad = loss_with_grad("bce_with_logits", p, np.array([[0.0, 1.0], [1.0, 0.0]]),
                                 backend=backend)
    assert_close(value, 1000.0, tol, "bce value")
    assert_close(grad, np.array([[0.25, -0.25], [-0.25, 0.25]]), tol, "bce gradient")


# --------------------------------------------------------------------------- finite differences

MAX_RELATIVE_ERROR = 1e-6
FD_STEP = 1e-6
KINK_MARGIN = 1e-3


def fd_relative_error(name, p, y, **params):
    """max |central difference - dL/dp| / max |dL/dp| of the NumPy backend (float64)."""
    _, grad = loss_with_grad(name, p, y, backend="numpy", **params)
    fd = np.empty_like(p)
    for idx in np.ndindex(p.shape):
        up, down = p.copy(), p.copy()
        up[idx] += FD_STEP
        down[idx] -= FD_STEP
        h = up[idx] - down[idx]                         # the step actually taken
        fd[idx] = (loss_with_grad(name, up, y, backend="numpy", **params)[0]
                   - loss_with_grad(name, down, y, backend="numpy", **params)[0]) / h
    return float(np.max(np.abs(fd - grad)) / np.max(np.abs(grad)))


def away_from_kinks(p, y, kinks):
    """p with every |p - y| at least KINK_MARGIN away from each value in ``kinks``."""
    r = p - y
    for kink in kinks:
        near = np.abs(np.abs(r) - kink) < KINK_MARGIN
        r = np.where(near, np.where(r >= 0, 1.0, -1.0) * (kink + 10 * KINK_MARGIN), r)
    for kink in kinks:
        assert np.all(np.abs(np.abs(r) - kink) >= KINK_MARGIN)
    return y + r


def fd_cases():
    cases = {}
    p, y = regression(20, n=5, k=3)
    cases["mse"] = ("mse", {}, p, y)
    p, y = regression(21, n=5, k=3)
    cases["mae"] = ("mae", {}, away_from_kinks(p, y, [0.0]), y)
    for delta in (1.0, 2.0, 0.3):
        p, y = regression(22, n=5, k=4)
        p = y + (p - y) * delta                       # both sides of delta represented
        p = away_from_kinks(p, y, [0.0, delta])
        r = np.abs(p - y)
        assert np.any(r < delta) and np.any(r > delta)
        cases[f"huber-delta{delta:g}"] = ("huber", {"delta": delta}, p, y)
    p, y = labels_case(23, n=6, k=4, scale=2.0)
    cases["cross_entropy"] = ("cross_entropy", {}, p, y)
    p, y = probabilities(24, n=5, k=3)
    cases["bce_with_logits"] = ("bce_with_logits", {}, p, y)
    return cases


FD_CASES = fd_cases()


def test_every_loss_has_a_finite_difference_case():
    assert {case[0] for case in FD_CASES.values()} == set(LOSSES)


@pytest.mark.parametrize("case", [pytest.param(c, id=c) for c in FD_CASES])
def test_numpy_gradient_matches_finite_differences(case):
    name, params, p, y = FD_CASES[case]
    error = fd_relative_error(name, p, y, **params)
    assert error <= MAX_RELATIVE_ERROR, f"{case}: relative error {error:.3e}"


@pytest.mark.parametrize("wrong_kind", ["no-clip", "one-percent-off"])
def test_negative_control_wrong_huber_gradient_fails(monkeypatch, wrong_kind):
    huber, right = numpy_losses.LOSSES["huber"]

    def wrong(p, y, delta):
        if wrong_kind == "no-clip":                # the quadratic branch's gradient everywhere
            return (p - y) / p.size
        return 1.01 * right(p, y, delta)

    name, params, p, y = FD_CASES["huber-delta1"]
    assert fd_relative_error(name, p, y, **params) <= MAX_RELATIVE_ERROR
    monkeypatch.setitem(numpy_losses.LOSSES, "huber", (huber, wrong))
    error = fd_relative_error(name, p, y, **params)
    assert error > MAX_RELATIVE_ERROR, f"wrong gradient passed: relative error {error:.3e}"


# --------------------------------------------------------------------------- bad targets

N = 4


def raises_naming(error, *fragments):
    """pytest.raises for ``error`` whose message contains every fragment literally."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# F.mse_loss turns (n, 1) against (n,) into an (n, n) mean with only a warning
# (tests/upstream/test_framework_traps.py); loss_with_grad refuses mismatched shapes.
# Shapes are checked in loss_with_grad before any backend runs, so one backend suffices.

@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "bce_with_logits"])
def test_loss_with_grad_rejects_n_against_n1(loss):
    """Targets (n,) for outputs (n, 1): ValueError naming y, (n,) and the expected (n, 1)."""
    p = np.full((N, 1), 0.5)
    with raises_naming(ValueError, "y.shape", f"({N},)", f"({N}, 1)"):
        loss_with_grad(loss, p, np.full(N, 0.5))


@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "bce_with_logits"])
def test_loss_with_grad_rejects_n1_against_n(loss):
    """Outputs (n,) against targets (n, 1): rejected, not an (n, n) matrix."""
    with raises_naming(ValueError, "p.shape", f"({N},)"):
        loss_with_grad(loss, np.full(N, 0.5), np.full((N, 1), 0.5))


@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "bce_with_logits"])
def test_loss_with_grad_rejects_wrong_width(loss):
    with raises_naming(ValueError, "y.shape", f"({N}, 1)", f"({N}, 3)"):
        loss_with_grad(loss, np.zeros((N, 3)), np.zeros((N, 1)))
    with raises_naming(ValueError, "y.shape", f"({N}, 3)", f"({N}, 1)"):
        loss_with_grad(loss, np.zeros((N, 1)), np.zeros((N, 3)))


def test_loss_with_grad_rejects_wrong_row_count():
    with raises_naming(ValueError, "y.shape", "(3, 1)", f"{N} rows"):
        loss_with_grad("mse", np.zeros((N, 1)), np.zeros((3, 1)))
    with raises_naming(ValueError, "y.shape", "(3,)", f"{N} rows"):
        loss_with_grad("cross_entropy", np.zeros((N, 3)), np.array([0, 1, 2]))


@pytest.mark.parametrize("labels", [
    pytest.param(np.array([0.0, 1.0, 2.0, 1.0]), id="float-n"),
    pytest.param(np.array([[0.0], [1.0], [2.0], [1.0]]), id="float-n1"),
    pytest.param(np.array([0.0, 1.0, 2.0, 1.0], dtype=np.float32), id="float32-n"),
])
def test_cross_entropy_float_labels_are_a_type_error(labels):
    with raises_naming(TypeError, "y", "integer class labels", f"({N},)"):
        loss_with_grad("cross_entropy", np.zeros((N, 3)), labels)


def test_cross_entropy_int_labels_of_shape_n1_rejected():
    # integer labels of the wrong shape: the loss knows the shape it needs and says so
    with pytest.raises(ValueError, match=r"y\.shape=\(4, 1\).*\(4,\) class labels"):
        loss_with_grad("cross_entropy", np.zeros((N, 3)), np.array([[0], [1], [2], [1]]))


@pytest.mark.parametrize("labels, index, value", [
    pytest.param([0, 1, -1, 2], 2, -1, id="minus-1"),
    pytest.param([0, 3, 1, 2], 1, 3, id="k"),
    pytest.param([0, 1, 2, 100], 3, 100, id="far"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_labels_out_of_range(backend, labels, index, value):
    use_backend(backend)
    with raises_naming(ValueError, f"y[{index}]={value}", "[0, 3)"):
        loss_with_grad("cross_entropy", np.zeros((N, 3)), np.array(labels), backend=backend)


def test_unsigned_labels_in_range_are_accepted():
    p, y = labels_case(30, n=N, k=3)
    expected = loss_with_grad("cross_entropy", p, y)
    actual = loss_with_grad("cross_entropy", p, y.astype(np.uint8))
    assert actual[0] == expected[0] and np.array_equal(actual[1], expected[1])


@pytest.mark.parametrize("loss, y", [
    pytest.param("cross_entropy", np.array([True, False, True, True]), id="ce-bool-labels"),
    pytest.param("mse", np.ones((N, 1), dtype=bool), id="mse-bool"),
    pytest.param("bce_with_logits", np.ones((N, 1), dtype=bool), id="bce-bool"),
])
def test_bool_targets_rejected(loss, y):
    k = 3 if loss == "cross_entropy" else 1
    with raises_naming(TypeError, "y", "bool"):
        loss_with_grad(loss, np.zeros((N, k)), y)


@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "bce_with_logits"])
def test_integer_targets_for_value_losses_rejected(loss):
    with raises_naming(TypeError, "y", "int64", f"({N}, 2)"):
        loss_with_grad(loss, np.zeros((N, 2)), np.array([0, 1, 1, 0]))


@pytest.mark.parametrize("bad, where", [
    pytest.param(1.5, "y[1, 0]=1.5", id="above-1"),
    pytest.param(-0.5, "y[1, 0]=-0.5", id="below-0"),
    pytest.param(1 + 1e-12, "y[1, 0]=1.000000000001", id="just-above-1"),
])
def test_bce_targets_outside_unit_interval(bad, where):
    t = np.array([[0.0, 1.0], [bad, 0.5], [0.25, 1.0], [0.0, 0.0]])
    with raises_naming(ValueError, where, "[0, 1]"):
        loss_with_grad("bce_with_logits", np.zeros((N, 2)), t)


def test_bce_targets_at_the_bounds_accepted():
    t = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 1.0], [0.0, 0.0]])
    value, grad = loss_with_grad("bce_with_logits", np.zeros((N, 2)), t)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_nonfinite_targets_rejected():
    y = np.zeros((N, 1))
    y[2, 0] = np.nan
    with raises_naming(ValueError, "y[2, 0]", "nan"):
        loss_with_grad("mse", np.zeros((N, 1)), y)


# Through Dataset construction

def test_int_2d_targets_are_sequence_labels_refused_for_one_output_row():
    """A Dataset may hold (n, T) labels (for logits at every position); a network
    whose output rows are (k,) refuses them, naming the shape it needs."""
    data = Dataset(np.zeros((N, 2)), np.zeros((N, 1), dtype=np.int64), np.zeros((1, 2)),
                   np.zeros((1, 1), dtype=np.int64))
    spec = NetworkSpec(sizes=(2, 3), loss="cross_entropy")
    with raises_naming(ValueError, "y_train.shape", f"({N}, 1)", f"({N},) class labels"):
        train(spec, data)


def test_dataset_rejects_1d_float_targets():
    with raises_naming(ValueError, "y_train.shape", f"({N},)"):
        Dataset(np.zeros((N, 2)), np.zeros(N), np.zeros((1, 2)), np.zeros((1, 1)))


@pytest.mark.parametrize("y_train, y_test, named", [
    pytest.param(np.zeros(N, dtype=np.int64), np.zeros((1, 1)), ("y_test.dtype", "float64",
                                                                 "int64"), id="float-test"),
    pytest.param(np.zeros((N, 1)), np.zeros(1, dtype=np.int64), ("y_test.dtype", "int64",
                                                                 "float64"), id="int-test"),
])
def test_dataset_rejects_test_targets_of_another_kind(y_train, y_test, named):
    with raises_naming(TypeError, *named):
        Dataset(np.zeros((N, 2)), y_train, np.zeros((1, 2)), y_test)


def test_dataset_rejects_test_targets_of_another_width():
    with raises_naming(ValueError, "y_test.shape", "(1, 2)", "(1,)"):
        Dataset(np.zeros((N, 2)), np.zeros((N, 1)), np.zeros((1, 2)), np.zeros((1, 2)))


def test_dataset_rejects_bool_targets():
    with raises_naming(TypeError, "y_train.dtype", "bool"):
        Dataset(np.zeros((N, 2)), np.zeros(N, dtype=bool), np.zeros((1, 2)),
                np.zeros(1, dtype=bool))


# Through train()

def small_spec(loss, n_out, **changes):
    values = dict(sizes=(2, 3, n_out), loss=loss, optimizer=SGD(lr=0.01), batch_size=2,
                  epochs=2, init="he_normal", seed=0)
    values.update(changes)
    return NetworkSpec(**values)


def data_with(y_train, y_test=None):
    x = np.linspace(-1, 1, 2 * N).reshape(N, 2)
    if y_test is None:
        y_test = y_train[:1]
    return Dataset(x, y_train, x[:len(y_test)], y_test)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", ["mse", "huber", "bce_with_logits"])
def test_train_rejects_target_width_that_does_not_fit(backend, loss):
    use_backend(backend)
    data = data_with(np.full((N, 1), 0.5))
    with raises_naming(ValueError, "y_train.shape", f"({N}, 1)", f"({N}, 3)"):
        train(small_spec(loss, 3), data, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_rejects_float_targets_for_cross_entropy(backend):
    use_backend(backend)
    data = data_with(np.full((N, 1), 1.0))
    with raises_naming(TypeError, "y_train", "integer class labels", f"({N},)"):
        train(small_spec("cross_entropy", 3), data, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_rejects_labels_for_value_losses(backend):
    use_backend(backend)
    data = data_with(np.array([0, 1, 2, 1]))
    with raises_naming(TypeError, "y_train", "int64", f"({N}, 3)"):
        train(small_spec("mse", 3), data, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_train_rejects_labels_out_of_range(backend, split):
    use_backend(backend)
    good = np.array([0, 1, 2, 1])
    bad = np.array([0, 1, 3, 1])
    data = data_with(bad, good[:1]) if split == "train" else data_with(good, bad)
    with raises_naming(ValueError, f"y_{split}[2]=3", "[0, 3)"):
        train(small_spec("cross_entropy", 3), data, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_rejects_negative_label(backend):
    use_backend(backend)
    data = data_with(np.array([0, -1, 2, 1]))
    with raises_naming(ValueError, "y_train[1]=-1", "[0, 3)"):
        train(small_spec("cross_entropy", 3), data, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_rejects_bce_targets_outside_unit_interval(backend):
    use_backend(backend)
    y = np.array([[0.0], [1.0], [2.0], [0.5]])
    with raises_naming(ValueError, "y_train[2, 0]=2.0", "[0, 1]"):
        train(small_spec("bce_with_logits", 1), data_with(y), backend=backend)


# --------------------------------------------------------------------------- training parity

N_IN, N_TRAIN = 3, 12


def parity_data(loss_case, k):
    """12 training rows (rows 0, 1, 5 all zero) and 4 test rows (row 0 all zero).

    For "mae-tie-at-step-0" the zero rows' targets are 0 too: with zero biases
    their outputs are exactly 0 at step 0, so p == y there (mae's kink).
    """
    loss = PARITY_LOSSES[loss_case][0]
    r = rs(40)
    x = r.randn(N_TRAIN + 4, N_IN)
    x[[0, 1, 5, N_TRAIN]] = 0.0
    n = len(x)
    if loss == "cross_entropy":
        y = r.randint(0, k, size=n).astype(np.int64)
        y[:k] = np.arange(k)                            # every class present
    elif loss == "bce_with_logits":
        y = r.rand(n, k)
        y[0, 0], y[1, 0], y[2, -1] = 0.0, 1.0, 1.0
    else:
        y = r.randn(n, k)
    if loss_case == "mae-tie-at-step-0":
        y[[0, 1, 5, N_TRAIN]] = 0.0
    return Dataset(x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:])


OPTIMIZERS = {
    "sgd-momentum": SGD(lr=0.05, momentum=0.9),
    "sgd-nesterov-wd": SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3),
    "adam": Adam(lr=0.01),
}
PARITY_LOSSES = {
    "mse": ("mse", {}, 2),
    "mae": ("mae", {}, 2),
    "mae-tie-at-step-0": ("mae", {}, 2),
    "huber": ("huber", {}, 2),
    "huber-delta0.3": ("huber", {"delta": 0.3}, 2),
    "cross_entropy": ("cross_entropy", {}, 4),
    "bce_with_logits": ("bce_with_logits", {}, 3),
}


def parity_spec(loss_case, opt):
    loss, params, k = PARITY_LOSSES[loss_case]
    return NetworkSpec(sizes=(N_IN, 5, k), activation="tanh", init="he_normal", loss=loss,
                       loss_params=params, optimizer=OPTIMIZERS[opt], batch_size=4, epochs=15,
                       seed=3, shuffle=loss_case != "mae-tie-at-step-0")


#: each loss case trained with one optimizer, every optimizer used: the loss and the
#: update are separate code, and every optimizer x loss pair is checked against
#: torch.optim in every backend by test_optimizers.py (its LOSS_GRID)
PARITY_CASES = {
    "mse": "adam",
    "mae": "sgd-momentum",
    "mae-tie-at-step-0": "sgd-momentum",
    "huber": "sgd-nesterov-wd",
    "huber-delta0.3": "adam",
    "cross_entropy": "sgd-nesterov-wd",
    "bce_with_logits": "adam",
}


def test_parity_cases_use_every_loss_case_and_optimizer():
    assert set(PARITY_CASES) == set(PARITY_LOSSES)
    assert set(PARITY_CASES.values()) == set(OPTIMIZERS)


#: in the default run: the cases with something of their own (mae's kink hit at step 0,
#: huber's non-default delta, bce's zero logits); the plain mse, mae, huber and
#: cross_entropy runs are slow tests (test_optimizers trains every loss in every
#: backend against torch.optim in the default run)
SLOW_PARITY = {"mse", "mae", "huber", "cross_entropy"}


@pytest.mark.parametrize("loss_case, opt", [
    pytest.param(c, o, id=f"{c}-{o}", marks=[pytest.mark.slow] if c in SLOW_PARITY else [])
    for c, o in PARITY_CASES.items()])
def test_training_parity_all_backends(loss_case, opt):
    require("torch")
    require("jax")
    spec = parity_spec(loss_case, opt)
    data = parity_data(loss_case, spec.sizes[-1])
    report = compare(spec, data, backends=BACKEND_NAMES)
    assert report.ok, str(report)
    tol = POLICY["float64"]
    ref = report.results["numpy"]
    assert np.all(np.isfinite(ref.losses)) and len(ref.losses) == 15 * 3
    assert ref.losses[-3:].mean() < ref.losses[:3].mean()  # it trained: last epoch vs first
    for name in ("torch", "jax"):
        other = report.results[name]
        for a, e in zip(leaves(other.params), leaves(ref.params), strict=True):
            assert difference(a, e, tol).ok
        assert difference(other.losses, ref.losses, tol).ok
        assert set(other.metrics) == set(ref.metrics)
        for key, value in ref.metrics.items():
            assert difference(other.metrics[key], value, tol).ok, (name, key)
    classification = LOSSES[spec.loss].classification
    assert ("test_accuracy" in ref.metrics) == classification


def test_parity_data_gives_exactly_zero_logits_at_step_0():
    """With zero biases (he_normal) an all-zero input row has every logit exactly 0."""
    for case in ("bce_with_logits", "mae-tie-at-step-0"):
        spec = parity_spec(case, "adam")
        data = parity_data(case, spec.sizes[-1])
        out = predict(spec, init_params(spec), data.x_train)
        assert np.all(out[[0, 1, 5]] == 0.0)
        assert np.all(out[[2, 3, 4]] != 0.0)
    # the mae case: the first batch (rows 0..3, no shuffling) holds exact ties
    assert not spec.shuffle and spec.batch_size == 4
    assert np.all(data.y_train[[0, 1]] == out[[0, 1]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_bce_first_step_loss_is_log2_on_zero_logits(backend):
    """A batch of all-zero rows: the first recorded loss is exactly mean(log 2) terms."""
    use_backend(backend)
    x = np.zeros((4, N_IN))
    t = np.array([[0.0, 1.0], [0.5, 0.25], [1.0, 1.0], [0.0, 0.75]])
    data = Dataset(x, t, x[:1], t[:1])
    spec = NetworkSpec(sizes=(N_IN, 5, 2), init="he_normal", loss="bce_with_logits",
                       optimizer=SGD(lr=0.1, momentum=0.9), batch_size=4, epochs=3, seed=1)
    result = train(spec, data, backend=backend)
    tol = POLICY["float64"]
    assert difference(result.losses[0], np.log(2.0), tol).ok, result.losses[0]
    # only the output bias moves (dL/db = mean over rows of sigmoid(0) - t)
    hidden, output = result.params[0], result.params[2]     # layer 1 is the activation
    assert np.array_equal(hidden["weight"], init_params(spec)[0]["weight"])
    assert np.all(hidden["bias"] == 0.0)
    assert np.all(output["bias"] != 0.0)
