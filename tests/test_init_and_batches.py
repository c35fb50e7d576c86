"""init_params and the batch plan: computed once in NumPy for every backend.

Each init rule is rewritten here from the RandomState stream, independently of
the library, and compared under the float64 policy. ``torch_default`` is also
checked against an outside oracle, torch.nn.Linear's own initialisation: its
bounds from torch's formulas, and its distribution against samples torch draws.

Parameters are one dict per layer; an MLP's Activation layers have none (``{}``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require
from nnparity.shared import POLICY, NetworkSpec, init_params, notebook_spec
from nnparity.shared.core.data import batch_plan
from nnparity.shared.core.tree import leaves

TOL = POLICY["float64"]
RULES = ("uniform_fan_in", "zeros", "xavier_uniform", "he_normal", "torch_default")
RANDOM_RULES = ("uniform_fan_in", "xavier_uniform", "he_normal", "torch_default")


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=TOL.rtol, atol=TOL.atol)


def dense(params):
    """[(weight (out, in), bias (out,)), ...] of the Dense layers; every other layer
    (the MLP's Activation layers) must have no parameters."""
    assert all(set(layer) in ({"weight", "bias"}, set()) for layer in params)
    return [(layer["weight"], layer["bias"]) for layer in params if layer]


def expected_params(rule, sizes, seed):
    """The documented formulas, drawn from one RandomState layer by layer, each
    layer's weight before its bias: [(weight, bias), ...]."""
    rs = np.random.RandomState(seed)
    pairs = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        b = np.zeros(n_out)
        if rule == "uniform_fan_in":
            w = rs.rand(n_out, n_in) / n_in
        elif rule == "zeros":
            w = np.zeros((n_out, n_in))
        elif rule == "xavier_uniform":
            a = np.sqrt(6.0 / (n_in + n_out))
            w = a * (rs.rand(n_out, n_in) * 2.0 - 1.0)
        elif rule == "he_normal":
            w = np.sqrt(2.0 / n_in) * rs.randn(n_out, n_in)
        elif rule == "torch_default":
            w = (2 * rs.rand(n_out, n_in) - 1) / np.sqrt(n_in)
            b = (2 * rs.rand(n_out) - 1) / np.sqrt(n_in)
        pairs.append((w, b))
    return pairs


def expected_weights(rule, sizes, seed):
    return [w for w, _ in expected_params(rule, sizes, seed)]


# ---------------------------------------------------------------- uniform_fan_in

def test_uniform_fan_in_reproduces_the_notebook_draws():
    """The notebook: np.random.seed(99); rand(4, 2) / 2; then rand(1, 4) / 4; zero biases."""
    rs = np.random.RandomState(99)
    hidden_weight = rs.rand(4, 2) / 2
    output_weight = rs.rand(1, 4) / 4
    params = init_params(notebook_spec())
    assert params[1] == {}                                # the ReLU layer
    (w0, b0), (w1, b1) = dense(params)
    np.testing.assert_array_equal(w0, hidden_weight)      # bitwise: same draws, same division
    np.testing.assert_array_equal(w1, output_weight)
    np.testing.assert_array_equal(b0, np.zeros(4))
    np.testing.assert_array_equal(b1, np.zeros(1))
    assert w0.shape == (4, 2) and w1.shape == (1, 4)      # (out, in)


def test_negative_control_fresh_stream_per_layer_differs():
    """One stream for the network: re-seeding per layer would give a different W1."""
    (_, _), (w1, _) = dense(init_params(notebook_spec()))
    assert not np.array_equal(w1, np.random.RandomState(99).rand(1, 4) / 4)
    assert not np.array_equal(init_params(notebook_spec().replace(seed=98))[0]["weight"],
                              init_params(notebook_spec())[0]["weight"])


# ---------------------------------------------------------------- every rule

RULE_CASES = [
    pytest.param(rule, sizes, seed, id=f"{rule}-{'x'.join(map(str, sizes))}-seed{seed}")
    for rule in RULES
    for sizes, seed in [((2, 4, 1), 99), ((3, 5, 4, 2), 7)]
]


@pytest.mark.parametrize("rule, sizes, seed", RULE_CASES)
def test_init_rule_matches_formula(rule, sizes, seed):
    spec = NetworkSpec(sizes=sizes, init=rule, seed=seed)
    params = init_params(spec)
    assert len(params) == 2 * (len(sizes) - 1) - 1        # Dense, Activation, ..., Dense
    assert len(dense(params)) == len(sizes) - 1
    for (w, b), (w_expected, b_expected), n_in, n_out in zip(
            dense(params), expected_params(rule, sizes, seed), sizes[:-1], sizes[1:],
            strict=True):
        assert w.shape == (n_out, n_in) and b.shape == (n_out,)
        assert w.dtype == np.float64 and b.dtype == np.float64
        assert_close(w, w_expected)
        assert_close(b, b_expected)
        if rule != "torch_default":
            np.testing.assert_array_equal(b, np.zeros(n_out))


@pytest.mark.parametrize("rule", RANDOM_RULES)
def test_negative_control_rules_are_distinguishable(rule):
    """The formula check can fail: every random rule differs from the other rules' formulas."""
    sizes = (3, 5, 4, 2)
    params = init_params(NetworkSpec(sizes=sizes, init=rule, seed=7))
    for other in RULES:
        if other == rule:
            continue
        with pytest.raises(AssertionError):
            assert_close(params[0]["weight"], expected_weights(other, sizes, 7)[0])


def test_zeros_init():
    for w, b in dense(init_params(NetworkSpec(sizes=(3, 5, 2), init="zeros"))):
        assert not w.any() and not b.any()


def test_xavier_uniform_bounds():
    sizes = (30, 50, 20)
    for (w, _), n_in, n_out in zip(dense(init_params(NetworkSpec(sizes=sizes,
                                                                 init="xavier_uniform"))),
                                   sizes[:-1], sizes[1:], strict=True):
        a = np.sqrt(6.0 / (n_in + n_out))
        assert np.all(w >= -a) and np.all(w < a)
        # the draws use the range: both tails are reached (1500 and 1000 draws)
        assert w.min() < -0.9 * a and w.max() > 0.9 * a


def test_he_normal_statistics():
    """W ~ N(0, 2/in). 60000 draws: the sample mean and std are within 5 standard errors."""
    n_in, n_out = 300, 200
    (w, _), = dense(init_params(NetworkSpec(sizes=(n_in, n_out), init="he_normal", seed=3)))
    sigma = np.sqrt(2.0 / n_in)
    n = w.size
    assert abs(w.mean()) <= 5 * sigma / np.sqrt(n)
    assert abs(w.std() / sigma - 1.0) <= 5 / np.sqrt(2 * n)
    # negative control: the uniform_fan_in draws from the same seed fail the same std check
    (u, _), = dense(init_params(NetworkSpec(sizes=(n_in, n_out), init="uniform_fan_in",
                                            seed=3)))
    assert abs(u.std() / sigma - 1.0) > 5 / np.sqrt(2 * n)


@pytest.mark.parametrize("rule", RULES)
def test_float32_init(rule):
    spec = NetworkSpec(sizes=(3, 5, 2), init=rule, dtype="float32")
    params32 = init_params(spec)
    params64 = init_params(spec.replace(dtype="float64"))
    assert len(leaves(params32)) == len(leaves(params64)) == 4
    for a, a64 in zip(leaves(params32), leaves(params64), strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, a64.astype(np.float32))   # same draws, rounded once


def test_init_params_returns_fresh_arrays():
    """Training updates in place; a second call must not see the first call's changes."""
    first = init_params(notebook_spec())
    first[0]["weight"][:] = 123.0
    assert not np.any(init_params(notebook_spec())[0]["weight"] == 123.0)


# ---------------------------------------------------------------- torch_default against torch

#: fan-ins of the bound checks (1: the widest bound; 512: the statistical layer)
FAN_INS = (1, 2, 3, 7, 64, 512)
#: the statistical layer: 512 x 512 weights (262144 draws), 512 biases
BIG = 512
#: every statistical check allows this many standard errors (a deviation that large
#: has probability < 6e-7 under the hypothesis; the seeds are fixed, so no test flickers)
Z = 5.0
#: the KS significance level; its asymptotic critical value sqrt(ln(2/alpha)/2) = 1.95
#: times 1/sqrt(n) (Kolmogorov's limit; n = 262144 is far in the asymptotic regime)
KS_ALPHA = 1e-3
KS_C = math.sqrt(math.log(2 / KS_ALPHA) / 2)


def torch_linear_bounds(torch, fan_in, fan_out=5):
    """(weight bound, bias bound) as torch.nn.Linear.reset_parameters computes them:
    kaiming_uniform_(weight, a=sqrt(5)) has bound gain * sqrt(3 / fan), gain =
    calculate_gain('leaky_relu', sqrt(5)); the bias bound is 1 / sqrt(fan_in)."""
    weight = torch.empty(fan_out, fan_in, dtype=torch.float64)
    fan = torch.nn.init._calculate_correct_fan(weight, "fan_in")
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    bias_fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(weight)
    return gain * math.sqrt(3.0 / fan), 1.0 / math.sqrt(bias_fan_in)


def within_uniform_bound(params, bound):
    """Every weight and bias of one Dense layer in [-bound, bound)."""
    return all(np.all(a >= -bound) and np.all(a < bound) for a in (params["weight"],
                                                                  params["bias"]))


def ks_uniform(samples, bound):
    """The one-sample Kolmogorov-Smirnov statistic of ``samples`` against U(-bound, bound)."""
    x = np.sort(np.ravel(samples))
    n = x.size
    cdf = np.clip((x + bound) / (2 * bound), 0.0, 1.0)
    return max(float(np.max(np.arange(1, n + 1) / n - cdf)),
               float(np.max(cdf - np.arange(n) / n)))


def ks_two_sample(a, b):
    """The two-sample Kolmogorov-Smirnov statistic: max |F_a - F_b| over both samples."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    points = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, points, side="right") / a.size
                               - np.searchsorted(b, points, side="right") / b.size)))


@pytest.fixture(scope="module")
def big_layer():
    """Our 512 x 512 torch_default Dense layer, and torch.nn.Linear(512, 512)'s own
    init in float64 (seeded, so the statistics below are reproducible)."""
    torch = require("torch")
    (ours,) = init_params(NetworkSpec(sizes=(BIG, BIG), init="torch_default", seed=11))
    with torch.random.fork_rng():                        # leave torch's global RNG alone
        torch.manual_seed(0)
        linear = torch.nn.Linear(BIG, BIG, dtype=torch.float64)
    theirs = {"weight": linear.weight.detach().numpy().copy(),
              "bias": linear.bias.detach().numpy().copy()}
    return ours, theirs


@pytest.mark.parametrize("fan_in", FAN_INS)
def test_torch_default_bound_is_torch_linear_bound(fan_in):
    """torch's formulas give 1/sqrt(fan_in) for the weight and the bias, and every
    parameter we draw lies in [-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear's do."""
    torch = require("torch")
    weight_bound, bias_bound = torch_linear_bounds(torch, fan_in)
    bound = 1.0 / math.sqrt(fan_in)
    assert math.isclose(weight_bound, bound, rel_tol=4 * np.finfo(np.float64).eps)
    assert bias_bound == bound
    spec = NetworkSpec(sizes=(fan_in, 5, 3), init="torch_default", seed=fan_in)
    first = init_params(spec)[0]
    assert first["weight"].shape == (5, fan_in) and first["bias"].shape == (5,)
    assert within_uniform_bound(first, bound)
    assert first["bias"].any()                           # the bias is drawn, not zero
    # the oracle itself keeps to its bound (torch's weight bound may be an ulp above ours)
    with torch.random.fork_rng():
        torch.manual_seed(fan_in)
        linear = torch.nn.Linear(fan_in, 5, dtype=torch.float64)
    assert within_uniform_bound({"weight": linear.weight.detach().numpy(),
                                 "bias": linear.bias.detach().numpy()}, bound * (1 + 1e-15))


@pytest.mark.parametrize("rule", ["he_normal", "xavier_uniform"])
def test_negative_control_other_rules_break_the_torch_bound(rule):
    """The bound check can fail: he_normal (std sqrt(2/in) > 1/sqrt(in)) and
    xavier_uniform (bound sqrt(6/(in+out)) > 1/sqrt(in) for in = out) leave it."""
    (layer,) = init_params(NetworkSpec(sizes=(BIG, BIG), init=rule, seed=11))
    assert not within_uniform_bound(layer, 1.0 / math.sqrt(BIG))


def test_torch_default_statistics_match_the_uniform(big_layer):
    """262144 weights ~ U(-b, b), b = 1/sqrt(512): the extremes come within 1e-4 b of
    +-b (each misses with probability (1 - 5e-5)^262144 = 2e-6), and the mean (SE
    b/sqrt(3n)) and variance (b^2/3, SE b^2 sqrt(4/45)/sqrt(n)) are within Z standard
    errors. The 512 biases: the same mean and variance checks."""
    ours, _ = big_layer
    b = 1.0 / math.sqrt(BIG)
    w = ours["weight"]
    assert w.shape == (BIG, BIG)
    assert w.max() > b * (1 - 1e-4) and w.min() < -b * (1 - 1e-4)
    for a in (w, ours["bias"]):
        n = a.size
        assert abs(a.mean()) <= Z * b / math.sqrt(3 * n), (n, a.mean())
        assert abs(a.var() - b * b / 3) <= Z * b * b * math.sqrt(4 / 45) / math.sqrt(n), \
            (n, a.var())


def test_torch_default_matches_torch_linear_in_distribution(big_layer):
    """Kolmogorov-Smirnov at alpha = 1e-3: our weights and torch.nn.Linear's each pass
    against U(-b, b) (D < 1.95/sqrt(n) = 0.0038), and against each other (D < 1.95
    sqrt(2/n) = 0.0054). torch's biases (512) pass against U(-b, b) too."""
    ours, theirs = big_layer
    b = 1.0 / math.sqrt(BIG)
    n = BIG * BIG
    assert ks_uniform(ours["weight"], b) < KS_C / math.sqrt(n)
    assert ks_uniform(theirs["weight"], b) < KS_C / math.sqrt(n)
    assert ks_two_sample(ours["weight"], theirs["weight"]) < KS_C * math.sqrt(2 / n)
    for bias in (ours["bias"], theirs["bias"]):
        assert ks_uniform(bias, b) < KS_C / math.sqrt(BIG)
    assert ks_two_sample(ours["bias"], theirs["bias"]) < KS_C * math.sqrt(2 / BIG)


def test_negative_control_the_ks_check_sees_a_wrong_scale(big_layer):
    """The KS checks can fail: torch's kaiming_uniform_ with a = 0 (bound sqrt(6/in), the
    classic misreading of torch's default), he_normal, and our own weights scaled by
    1.02 (D about 0.01, at the edges) are all rejected."""
    torch = require("torch")
    ours, theirs = big_layer
    b = 1.0 / math.sqrt(BIG)
    n = BIG * BIG
    with torch.random.fork_rng():
        torch.manual_seed(0)
        he_uniform = torch.nn.init.kaiming_uniform_(
            torch.empty(BIG, BIG, dtype=torch.float64), a=0).numpy()
    (he_normal,) = init_params(NetworkSpec(sizes=(BIG, BIG), init="he_normal", seed=11))
    for wrong in (he_uniform, he_normal["weight"], ours["weight"] * 1.02):
        assert ks_uniform(wrong, b) > KS_C / math.sqrt(n)
        assert ks_two_sample(wrong, theirs["weight"]) > KS_C * math.sqrt(2 / n)


def test_torch_default_draws_weight_then_bias_layer_by_layer():
    """One RandomState(seed): layer 0's weight, then its bias, then layer 1's weight...
    The first weight is (2 rand(out, in) - 1) / sqrt(in); the same seed reproduces
    every array bitwise."""
    sizes, seed = (3, 5, 4, 2), 21
    spec = NetworkSpec(sizes=sizes, init="torch_default", seed=seed)
    params = init_params(spec)
    rs = np.random.RandomState(seed)
    assert_close(params[0]["weight"], (2 * rs.rand(5, 3) - 1) / np.sqrt(3))
    assert_close(params[0]["bias"], (2 * rs.rand(5) - 1) / np.sqrt(3))
    assert_close(params[2]["weight"], (2 * rs.rand(4, 5) - 1) / np.sqrt(5))
    again = init_params(NetworkSpec(sizes=sizes, init="torch_default", seed=seed))
    for a, a2 in zip(leaves(params), leaves(again), strict=True):
        np.testing.assert_array_equal(a, a2)


def test_negative_control_bias_first_or_fresh_stream_differs():
    """The order check can fail: drawing the bias before the weight, or re-seeding for
    the second layer, gives other numbers."""
    spec = NetworkSpec(sizes=(3, 5, 2), init="torch_default", seed=21)
    params = init_params(spec)
    rs = np.random.RandomState(21)
    bias_first = (2 * rs.rand(5) - 1) / np.sqrt(3)
    with pytest.raises(AssertionError):
        assert_close(params[0]["bias"], bias_first)
    fresh = np.random.RandomState(21)
    with pytest.raises(AssertionError):
        assert_close(params[2]["weight"], (2 * fresh.rand(2, 5) - 1) / np.sqrt(5))


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
