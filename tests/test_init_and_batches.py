"""init_params and the batch plan: computed once in NumPy for every backend.

Each init rule is rewritten here from the RandomState stream, independently of
the library, and compared under the float64 policy.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnparity.shared import POLICY, NetworkSpec, init_params, notebook_spec
from nnparity.shared.core.data import batch_plan

TOL = POLICY["float64"]


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=TOL.rtol, atol=TOL.atol)


def expected_weights(rule, sizes, seed):
    """The documented formulas, drawn from one RandomState layer by layer."""
    rs = np.random.RandomState(seed)
    ws = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        if rule == "uniform_fan_in":
            ws.append(rs.rand(n_out, n_in) / n_in)
        elif rule == "zeros":
            ws.append(np.zeros((n_out, n_in)))
        elif rule == "xavier_uniform":
            a = np.sqrt(6.0 / (n_in + n_out))
            ws.append(a * (rs.rand(n_out, n_in) * 2.0 - 1.0))
        elif rule == "he_normal":
            ws.append(np.sqrt(2.0 / n_in) * rs.randn(n_out, n_in))
    return ws


# ---------------------------------------------------------------- uniform_fan_in

def test_uniform_fan_in_reproduces_the_notebook_draws():
    """The notebook: np.random.seed(99); rand(4, 2) / 2; then rand(1, 4) / 4; zero biases."""
    rs = np.random.RandomState(99)
    hidden_weight = rs.rand(4, 2) / 2
    output_weight = rs.rand(1, 4) / 4
    (w0, b0), (w1, b1) = init_params(notebook_spec())
    np.testing.assert_array_equal(w0, hidden_weight)      # bitwise: same draws, same division
    np.testing.assert_array_equal(w1, output_weight)
    np.testing.assert_array_equal(b0, np.zeros(4))
    np.testing.assert_array_equal(b1, np.zeros(1))
    assert w0.shape == (4, 2) and w1.shape == (1, 4)      # (out, in)


def test_negative_control_fresh_stream_per_layer_differs():
    """One stream for the network: re-seeding per layer would give a different W1."""
    (_, _), (w1, _) = init_params(notebook_spec())
    assert not np.array_equal(w1, np.random.RandomState(99).rand(1, 4) / 4)
    assert not np.array_equal(init_params(notebook_spec().replace(seed=98))[0][0],
                              init_params(notebook_spec())[0][0])


# ---------------------------------------------------------------- every rule

RULE_CASES = [
    pytest.param(rule, sizes, seed, id=f"{rule}-{'x'.join(map(str, sizes))}-seed{seed}")
    for rule in ("uniform_fan_in", "zeros", "xavier_uniform", "he_normal")
    for sizes, seed in [((2, 4, 1), 99), ((3, 5, 4, 2), 7)]
]


@pytest.mark.parametrize("rule, sizes, seed", RULE_CASES)
def test_init_rule_matches_formula(rule, sizes, seed):
    spec = NetworkSpec(sizes=sizes, init=rule, seed=seed)
    params = init_params(spec)
    assert len(params) == len(sizes) - 1
    for (w, b), w_expected, n_in, n_out in zip(params, expected_weights(rule, sizes, seed),
                                               sizes[:-1], sizes[1:], strict=True):
        assert w.shape == (n_out, n_in) and b.shape == (n_out,)
        assert w.dtype == np.float64 and b.dtype == np.float64
        assert_close(w, w_expected)
        np.testing.assert_array_equal(b, np.zeros(n_out))


@pytest.mark.parametrize("rule", ["uniform_fan_in", "xavier_uniform", "he_normal"])
def test_negative_control_rules_are_distinguishable(rule):
    """The formula check can fail: every random rule differs from the other rules' formulas."""
    sizes = (3, 5, 4, 2)
    params = init_params(NetworkSpec(sizes=sizes, init=rule, seed=7))
    for other in ("uniform_fan_in", "zeros", "xavier_uniform", "he_normal"):
        if other == rule:
            continue
        with pytest.raises(AssertionError):
            assert_close(params[0][0], expected_weights(other, sizes, 7)[0])


def test_zeros_init():
    for w, b in init_params(NetworkSpec(sizes=(3, 5, 2), init="zeros")):
        assert not w.any() and not b.any()


def test_xavier_uniform_bounds():
    sizes = (30, 50, 20)
    for (w, _), n_in, n_out in zip(init_params(NetworkSpec(sizes=sizes, init="xavier_uniform")),
                                   sizes[:-1], sizes[1:], strict=True):
        a = np.sqrt(6.0 / (n_in + n_out))
        assert np.all(w >= -a) and np.all(w < a)
        # the draws use the range: both tails are reached (1500 and 1000 draws)
        assert w.min() < -0.9 * a and w.max() > 0.9 * a


def test_he_normal_statistics():
    """W ~ N(0, 2/in). 60000 draws: the sample mean and std are within 5 standard errors."""
    n_in, n_out = 300, 200
    (w, _), = init_params(NetworkSpec(sizes=(n_in, n_out), init="he_normal", seed=3))
    sigma = np.sqrt(2.0 / n_in)
    n = w.size
    assert abs(w.mean()) <= 5 * sigma / np.sqrt(n)
    assert abs(w.std() / sigma - 1.0) <= 5 / np.sqrt(2 * n)
    # negative control: the uniform_fan_in draws from the same seed fail the same std check
    (u, _), = init_params(NetworkSpec(sizes=(n_in, n_out), init="uniform_fan_in", seed=3))
    assert abs(u.std() / sigma - 1.0) > 5 / np.sqrt(2 * n)


@pytest.mark.parametrize("rule", ["uniform_fan_in", "zeros", "xavier_uniform", "he_normal"])
def test_float32_init(rule):
    spec = NetworkSpec(sizes=(3, 5, 2), init=rule, dtype="float32")
    params32 = init_params(spec)
    params64 = init_params(spec.replace(dtype="float64"))
    for (w, b), (w64, b64) in zip(params32, params64, strict=True):
        assert w.dtype == np.float32 and b.dtype == np.float32
        np.testing.assert_array_equal(w, w64.astype(np.float32))   # same draws, rounded once
        np.testing.assert_array_equal(b, b64.astype(np.float32))


def test_init_params_returns_fresh_arrays():
    """Training updates in place; a second call must not see the first call's changes."""
    first = init_params(notebook_spec())
    first[0][0][:] = 123.0
    assert not np.any(init_params(notebook_spec())[0][0] == 123.0)


# ---------------------------------------------------------------- batch plan

def flat_batches(plan, epoch):
    return [list(map(int, rows)) for rows in plan.batches(epoch)]


def test_sequential_slices():
    plan = batch_plan(6, 2, 3, seed=0, shuffle=False)
    assert plan.epochs == 3 and plan.steps_per_epoch == 3
    assert plan.tail is None
    for epoch in range(3):
        assert flat_batches(plan, epoch) == [[0, 1], [2, 3], [4, 5]]


def test_partial_last_batch():
    plan = batch_plan(7, 3, 2, seed=0, shuffle=False)
    assert plan.steps_per_epoch == 3
    for epoch in range(2):
        assert flat_batches(plan, epoch) == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_larger_than_rows():
    plan = batch_plan(5, 16, 2, seed=0, shuffle=False)
    assert plan.steps_per_epoch == 1
    assert flat_batches(plan, 0) == [[0, 1, 2, 3, 4]]


def test_zero_epochs():
    plan = batch_plan(5, 2, 0, seed=0, shuffle=False)
    assert plan.epochs == 0


def test_notebook_plan():
    """The notebook's loop: for i in range(0, 4, 2): rows i:i+2, 1000 times."""
    plan = batch_plan(4, 2, 1000, seed=99, shuffle=False)
    assert plan.epochs == 1000
    assert all(flat_batches(plan, e) == [[0, 1], [2, 3]] for e in (0, 1, 999))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 20), batch=st.integers(1, 25), epochs=st.integers(0, 3),
       seed=st.integers(0, 2**32 - 1), shuffle=st.booleans())
def test_plan_matches_python_slicing(n, batch, epochs, seed, shuffle):
    """Each epoch is the notebook's ``order[i:i + batch]`` slicing of a permutation of all rows."""
    plan = batch_plan(n, batch, epochs, seed=seed, shuffle=shuffle)
    assert plan.epochs == epochs
    assert plan.steps_per_epoch == -(-n // batch)
    for epoch in range(epochs):
        batches = plan.batches(epoch)
        order = np.concatenate(batches)
        assert sorted(order.tolist()) == list(range(n))                    # every row, once
        if not shuffle:
            np.testing.assert_array_equal(order, np.arange(n))
        assert [b.tolist() for b in batches] == [order[i:i + batch].tolist()
                                                 for i in range(0, n, batch)]


def test_shuffle_is_a_new_permutation_each_epoch():
    plan = batch_plan(10, 3, 4, seed=5, shuffle=True)
    orders = [np.concatenate(plan.batches(e)) for e in range(4)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(10))
    assert any(not np.array_equal(order, np.arange(10)) for order in orders)
    assert len({tuple(order) for order in orders}) > 1


def test_shuffle_depends_only_on_seed_and_epoch():
    """A plan starting at epoch 2 has the same rows as epochs 2.. of a longer plan."""
    long = batch_plan(10, 3, 5, seed=5, shuffle=True)
    resumed = batch_plan(10, 3, 3, seed=5, shuffle=True, first_epoch=2)
    for k in range(3):
        assert flat_batches(resumed, k) == flat_batches(long, 2 + k)
    # the same plan again is identical (no hidden global state)
    again = batch_plan(10, 3, 5, seed=5, shuffle=True)
    for e in range(5):
        assert flat_batches(again, e) == flat_batches(long, e)


def test_shuffle_order_does_not_depend_on_batch_size():
    a = batch_plan(10, 3, 3, seed=5, shuffle=True)
    b = batch_plan(10, 4, 3, seed=5, shuffle=True)
    for e in range(3):
        np.testing.assert_array_equal(np.concatenate(a.batches(e)), np.concatenate(b.batches(e)))


def test_negative_control_shuffle_depends_on_seed_and_epoch():
    """The resumption check can fail: another seed, or an epoch offset, gives other orders."""
    long = batch_plan(10, 3, 5, seed=5, shuffle=True)
    other_seed = batch_plan(10, 3, 5, seed=6, shuffle=True)
    assert any(flat_batches(other_seed, e) != flat_batches(long, e) for e in range(5))
    resumed = batch_plan(10, 3, 3, seed=5, shuffle=True, first_epoch=2)
    assert any(flat_batches(resumed, k) != flat_batches(long, k) for k in range(3))


def test_shuffle_does_not_touch_global_numpy_random_state():
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    batch_plan(10, 3, 3, seed=5, shuffle=True)
    init_params(NetworkSpec(sizes=(3, 4, 1), init="he_normal"))
    assert np.random.rand() == expected
