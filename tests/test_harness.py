"""The parity harness explains differences: trajectories, teacher forcing, diagnosis.

- Trajectory: ``compare(..., record_every=k)`` keeps a snapshot (parameters and
  optimizer state) before every k-th step in every backend; the snapshot at
  step s is the state after s steps (checked against separate shorter runs);
  the error-growth curve has one point per snapshot; the default k keeps at
  most 200 snapshots and a bounded number of bytes.
- Teacher forcing: each backend's ``step()`` from numpy's parameters and state
  matches numpy's ``step()`` under the policy, for every optimizer.
- The chaotic spec: every teacher-forced step agrees, the trajectories leave
  tolerance around step 80, and the diagnosis says "amplification"; at half
  the learning rate the same spec is parity ok.
- Negative controls: a wrong loss or update rule in one backend is caught by
  the teacher-forced check at step 0; a bug in the momentum buffer's update
  for t > 0 is caught at a later teacher-forced step ("though step 0 agrees").
- The report's text, and argument checks (reference, backends, record_every).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import nnparity.backends
from nnparity.backends import as_arrays, get_backend, train
from nnparity.shared import (POLICY, SGD, Adam, AdamW, Dataset, NetworkSpec, RMSprop, compare,
                             init_params, notebook_data, notebook_spec)
from nnparity.shared.core.data import batch_plan
from nnparity.shared.parity.harness import MAX_TEACHER_STEPS, named_step, step_difference
from nnparity.shared.core.optimizers import init_state, state_buffers
from nnparity.shared.core.tolerance import difference, tensorwise_difference
from nnparity.shared.core.trajectory import (MAX_SNAPSHOT_BYTES, MAX_SNAPSHOTS, copy_state,
                                             default_record_every)
from nnparity.shared.core.tree import copy_tree, leaves
from nnparity.shared.core.synthetic import chaotic_case, regression
from conftest import require

#: a small float64 regression set with 3 test rows
synthetic = functools.partial(regression, n_test=3)

TOL = POLICY["float64"]
OTHERS = [pytest.param("torch", id="torch"), pytest.param("jax", id="jax")]
ALL = [pytest.param("numpy", id="numpy")] + OTHERS


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see conftest


def steps_per_epoch(spec, data):
    return -(-data.x_train.shape[0] // spec.batch_size)


def assert_tree_equal(actual, expected):
    """Two trees (params, model states, ``OptimizerState``s) bitwise equal, with the
    same dtypes."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected)
        for key in expected:
            assert_tree_equal(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_tree_equal(a, e)
    elif isinstance(expected, int):
        assert type(actual) is int and actual == expected
    else:
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        np.testing.assert_array_equal(actual, expected)


def assert_tree_close(actual, expected, tol=TOL):
    """Two trees (params, model states, ``OptimizerState``s) elementwise within
    ``tol``; ints equal."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected)
        for key in expected:
            assert_tree_close(actual[key], expected[key], tol)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_tree_close(a, e, tol)
    elif isinstance(expected, int):
        assert int(actual) == expected
    else:
        assert np.asarray(actual).dtype == np.asarray(expected).dtype
        d = difference(actual, expected, tol)
        assert d.ok, f"max abs {d.max_abs:.2e}, max rel {d.max_rel:.2e} under {tol}"


# ----------------------------------------------------------------- trajectory

#: 10 rows in batches of 4: three steps per epoch (4, 4, 2), shuffled
TRAJ_DATA = synthetic(10, 3, 2, seed=21)
TRAJ_SPECS = {
    "sgd-momentum": NetworkSpec(sizes=(3, 5, 2), activation="tanh", init="xavier_uniform",
                                optimizer=SGD(lr=0.05, momentum=0.9), batch_size=4, epochs=6,
                                seed=3, shuffle=True),
    "adam": NetworkSpec(sizes=(3, 5, 2), activation="tanh", init="xavier_uniform",
                        optimizer=Adam(lr=0.01), batch_size=4, epochs=6, seed=3, shuffle=True),
}


@pytest.fixture(scope="module", params=list(TRAJ_SPECS))
def traj_report(request):
    require("torch")
    require("jax")
    spec = TRAJ_SPECS[request.param]
    return compare(spec, TRAJ_DATA, record_every=3)       # 3 = steps per epoch


def test_trajectory_snapshot_steps_are_the_same_in_every_backend(traj_report):
    spec = traj_report.spec
    total = spec.epochs * steps_per_epoch(spec, TRAJ_DATA)
    assert traj_report.record_every == 3 and total == 18
    for name in ("numpy", "torch", "jax"):
        snaps = traj_report.results[name].snapshots
        assert [s.step for s in snaps] == list(range(0, total, 3)), name
        for s in snaps:
            assert s.opt_state.step == s.step                # updates done before step s
            assert sorted(s.opt_state.buffers) == sorted(state_buffers(spec.optimizer))
            assert s.model_state == [{} for _ in spec.layers]      # Dense networks: none


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_trajectory_step_0_is_init_params_and_initial_state(traj_report, backend):
    spec = traj_report.spec
    first = traj_report.results[backend].snapshots[0]
    assert first.step == 0
    params0 = init_params(spec)
    assert_tree_equal(first.params, params0)
    assert_tree_equal(first.opt_state, init_state(spec.optimizer, params0))


def test_trajectory_snapshot_is_the_state_after_s_steps(traj_report):
    """The snapshot at an epoch boundary s = e * 3 equals a separate numpy run of e
    epochs: bitwise in numpy (the same computation), under the policy elsewhere."""
    spec = traj_report.spec
    per_epoch = steps_per_epoch(spec, TRAJ_DATA)
    for index, snap in enumerate(traj_report.results["numpy"].snapshots):
        assert snap.step % per_epoch == 0
        epochs = snap.step // per_epoch
        short = train(spec.replace(epochs=epochs), TRAJ_DATA, backend="numpy")
        assert_tree_equal(snap.params, short.params)
        assert_tree_equal(snap.opt_state, short.opt_state)
        for name in ("torch", "jax"):
            other = traj_report.results[name].snapshots[index]
            assert other.step == snap.step
            assert_tree_close(other.params, short.params)
            assert_tree_close(other.opt_state, short.opt_state)


def test_trajectory_error_growth_curve_has_one_point_per_snapshot(traj_report):
    assert traj_report.ok, str(traj_report)
    for p in traj_report.parity:
        steps = [s.step for s in traj_report.results[p.backend].snapshots]
        assert [d.step for d in p.trajectory] == steps
        assert p.trajectory[0].max_abs == 0.0                # the same init everywhere
        assert all(d.ok and math.isfinite(d.max_abs) for d in p.trajectory)
        assert p.first_step_out is None
        assert p.diverged_at is None
        assert p.diagnosis.startswith("ok")
        # teacher-forced steps are taken at (a sample of) the reference's snapshots
        assert [d.step for d in p.teacher] == steps          # 6 snapshots <= 50: all of them
        assert all(d.ok for d in p.teacher)


@pytest.mark.parametrize("every", [1, 2, 4, 5, 7, 18, 100])
def test_record_every_k_gives_every_kth_step(every):
    spec = TRAJ_SPECS["sgd-momentum"]
    result = train(spec, TRAJ_DATA, backend="numpy", record_every=every)
    assert [s.step for s in result.snapshots] == list(range(0, 18, every))


@pytest.mark.parametrize("backend", OTHERS)
def test_record_every_with_progress_chunks_matches_one_run(backend):
    """Chunked runs (progress=...) record the same snapshot steps with the same contents."""
    require(backend)
    spec = TRAJ_SPECS["sgd-momentum"].replace(epochs=40)    # chunks of 2 epochs = 6 steps
    whole = train(spec, TRAJ_DATA, backend=backend, record_every=4)
    chunked = train(spec, TRAJ_DATA, backend=backend, record_every=4,
                    progress=lambda *args: None)
    assert [s.step for s in whole.snapshots] == list(range(0, 120, 4))
    assert [s.step for s in chunked.snapshots] == [s.step for s in whole.snapshots]
    for a, e in zip(chunked.snapshots, whole.snapshots, strict=True):
        assert_tree_close(a.params, e.params)
        assert_tree_close(a.opt_state, e.opt_state)


@pytest.mark.parametrize("backend", ALL)
def test_each_backends_step_is_the_step_its_train_takes(backend):
    """step() from snapshot s gives snapshot s + 1 (record_every=1)."""
    require(backend)
    spec, data = TRAJ_SPECS["adam"], TRAJ_DATA
    module = get_backend(backend)
    result = train(spec, data, backend=backend, record_every=1)
    x, y = as_arrays(spec, data.x_train, data.y_train)
    plan = batch_plan(x.shape[0], spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    snaps = result.snapshots
    assert len(snaps) == 18
    for before, after in zip(snaps[:-1], snaps[1:], strict=True):
        rows = plan.rows(before.step)
        out = module.step(spec, before.params, before.model_state, before.opt_state,
                          x[rows], y[rows])
        loss, params, state = out.loss, out.params, out.opt_state
        assert_tree_close(params, after.params)
        assert_tree_close(state, after.opt_state)
        assert_tree_equal(out.model_state, after.model_state)
        assert difference(loss, result.losses[before.step], TOL).ok


def test_default_record_every_small_runs_record_every_step():
    assert default_record_every(1, 10, 0, 8) == 1
    assert default_record_every(10, 10, 1, 8) == 1
    assert default_record_every(200, 10, 2, 8) == 1
    assert default_record_every(201, 10, 2, 8) == 2
    assert default_record_every(0, 10, 0, 8) == 1           # epochs=0: nothing to record


def test_default_record_every_long_run_keeps_200_snapshots():
    assert default_record_every(10**6, 100, 1, 8) == 5000
    assert math.ceil(10**6 / 5000) == MAX_SNAPSHOTS


def test_default_record_every_big_network_keeps_bytes_bounded():
    per = 10**6 * 3 * 8                                     # params + 2 buffers, float64
    k = default_record_every(1000, 10**6, 2, 8)
    count = math.ceil(1000 / k)
    assert count * per <= MAX_SNAPSHOT_BYTES and count == MAX_SNAPSHOT_BYTES // per == 2
    # float32 halves the bytes, so twice as many snapshots fit
    k32 = default_record_every(1000, 10**6, 2, 4)
    assert math.ceil(1000 / k32) == MAX_SNAPSHOT_BYTES // (per // 2)


def test_default_record_every_network_too_big_for_the_budget_keeps_only_step_0():
    """One snapshot is more than the byte budget: k = total steps, i.e. step 0 only."""
    k = default_record_every(500, 10**8, 2, 8)
    assert k == 500


@pytest.mark.parametrize("total", [1, 7, 199, 200, 201, 999, 1500, 12345, 10**7])
@pytest.mark.parametrize("n_params, n_buffers, itemsize", [
    (5, 0, 8), (1000, 1, 8), (10**5, 2, 4), (10**6, 2, 8), (3 * 10**6, 1, 8)])
def test_default_record_every_is_the_smallest_k_within_both_limits(total, n_params,
                                                                    n_buffers, itemsize):
    per = n_params * (1 + n_buffers) * itemsize
    k = default_record_every(total, n_params, n_buffers, itemsize)
    count = math.ceil(total / k)                            # snapshots at 0, k, 2k, ... < total

    def within(count):
        return count <= MAX_SNAPSHOTS and count * per <= max(MAX_SNAPSHOT_BYTES, per)

    assert k >= 1 and within(count)
    if k > 1:
        assert not within(math.ceil(total / (k - 1)))       # smallest such k


def test_compare_default_record_every_on_the_chaotic_run(chaotic_report):
    spec = chaotic_report.spec
    total = spec.epochs * 3
    n_params = sum(o * i + o for i, o in zip(spec.sizes[:-1], spec.sizes[1:], strict=True))
    assert n_params == spec.n_parameters
    expected = default_record_every(total, n_params, 1, 8)
    assert chaotic_report.record_every == expected == 8
    for name, result in chaotic_report.results.items():
        assert [s.step for s in result.snapshots] == list(range(0, total, 8)), name
        assert len(result.snapshots) <= MAX_SNAPSHOTS


# ------------------------------------------------------------ teacher forcing

TEACHER_OPTIMIZERS = {
    "sgd-nesterov-wd": SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": Adam(lr=0.01, weight_decay=0.01),
    "adamw": AdamW(lr=0.01, weight_decay=0.1),
    "rmsprop-centered-momentum": RMSprop(lr=0.01, momentum=0.5, centered=True,
                                          weight_decay=0.01),
}
TEACHER_DATA = synthetic(10, 3, 2, seed=31)


def teacher_spec(optimizer):
    return NetworkSpec(sizes=(3, 6, 4, 2), activation="tanh", init="xavier_uniform",
                       optimizer=optimizer, batch_size=4, epochs=5, seed=7, shuffle=True)


@pytest.mark.parametrize("optimizer", list(TEACHER_OPTIMIZERS))
@pytest.mark.parametrize("backend", OTHERS)
def test_teacher_forced_step_matches_numpy(backend, optimizer):
    """From numpy's params and state at several points along its run, one step
    of ``backend`` gives numpy's loss, gradients, new params and new state."""
    require(backend)
    spec, data = teacher_spec(TEACHER_OPTIMIZERS[optimizer]), TEACHER_DATA
    ref, module = get_backend("numpy"), get_backend(backend)
    run = train(spec, data, backend="numpy", record_every=4)
    x, y = as_arrays(spec, data.x_train, data.y_train)
    plan = batch_plan(x.shape[0], spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    assert [s.step for s in run.snapshots] == [0, 4, 8, 12]
    for snap in run.snapshots:
        rows = plan.rows(snap.step)
        kept = copy_tree(snap.params), copy_state(snap.opt_state)
        expected = ref.step(spec, snap.params, snap.model_state, snap.opt_state, x[rows], y[rows])
        actual = module.step(spec, snap.params, snap.model_state, snap.opt_state,
                             x[rows], y[rows])
        loss, grads, params, state = actual.loss, actual.grads, actual.params, actual.opt_state
        e_loss, e_grads, e_params, e_state = (expected.loss, expected.grads, expected.params,
                                              expected.opt_state)
        assert np.asarray(loss).dtype == np.float64
        assert difference(loss, e_loss, TOL).ok, (snap.step, float(loss), float(e_loss))
        # gradients normwise per tensor: an entry of a saturated unit may cancel
        d = tensorwise_difference(leaves(grads), leaves(e_grads), TOL)
        assert d.ok, (snap.step, d)
        assert_tree_close(params, e_params)
        assert_tree_close(state, e_state)
        assert state.step == snap.step + 1
        assert step_difference(snap.step, named_step(actual), named_step(expected), TOL).ok
        # step() works on copies: the snapshot it started from is unchanged
        assert_tree_equal(snap.params, kept[0])
        assert_tree_equal(snap.opt_state, kept[1])


@pytest.mark.parametrize("optimizer", list(TEACHER_OPTIMIZERS))
def test_compare_teacher_forced_steps_all_agree(optimizer):
    require("torch")
    require("jax")
    spec = teacher_spec(TEACHER_OPTIMIZERS[optimizer])
    report = compare(spec, TEACHER_DATA, record_every=5)
    assert report.ok, str(report)
    for p in report.parity:
        assert [d.step for d in p.teacher] == [0, 5, 10]
        assert all(d.ok for d in p.teacher)
        assert all(d.max_rel <= 1e-12 for d in p.teacher), p.teacher


def test_teacher_steps_are_sampled_at_most_50(chaotic_report):
    for p in chaotic_report.parity:
        snaps = chaotic_report.results["numpy"].snapshots
        assert len(snaps) > MAX_TEACHER_STEPS
        steps = [d.step for d in p.teacher]
        assert len(steps) == MAX_TEACHER_STEPS
        assert steps[0] == 0 and steps[-1] == snaps[-1].step
        assert set(steps) <= {s.step for s in snaps}
        assert steps == sorted(set(steps))


# --------------------------------------------------------------- chaotic case

@pytest.fixture(scope="module")
def chaotic_report():
    require("torch")
    require("jax")
    spec, data = chaotic_case()
    return compare(spec, data)


def test_chaotic_case_separates_by_amplification(chaotic_report):
    report = chaotic_report
    assert not report.ok
    for p in report.parity:
        assert not p.ok
        assert p.diverged_at is None
        assert p.teacher and all(d.ok for d in p.teacher), p.teacher
        # the early steps are well-conditioned, so they test the implementation
        assert all(d.sensitivity < 1e-12 for d in p.teacher if d.step < 64), p.teacher
        assert p.first_step_out is not None and 60 <= p.first_step_out <= 110, p.first_step_out
        assert p.diagnosis.startswith("amplification"), p.diagnosis
        assert f"from step {p.first_step_out}" in p.diagnosis
        # the error-growth curve: exact at step 0, within tolerance early, out later
        assert p.trajectory[0].max_abs == 0.0
        assert all(d.ok for d in p.trajectory if d.step < p.first_step_out)
        assert not p.trajectory[-1].ok
        assert p.trajectory[-1].max_rel > 1e3 * TOL.rtol
        assert any(not d.ok for d in p.differences.values())


def test_chaotic_spec_at_half_the_learning_rate_is_parity_ok():
    require("torch")
    require("jax")
    spec, data = chaotic_case(lr=0.05)
    report = compare(spec, data)
    assert report.ok, str(report)
    for p in report.parity:
        assert p.first_step_out is None
        assert p.diagnosis.startswith("ok")
        assert all(d.ok for d in p.trajectory) and len(p.trajectory) == 188


# ---------------------------------------------------------- negative controls

NEG_SPEC = NetworkSpec(sizes=(3, 5, 1), activation="tanh", init="xavier_uniform",
                       optimizer=SGD(lr=0.05, momentum=0.9), batch_size=4, epochs=10, seed=5)
NEG_DATA = synthetic(8, 3, 1, seed=41)


def assert_caught_at_step_0(report, backend):
    (p,) = report.parity
    assert p.backend == backend
    assert not report.ok and not p.ok
    assert p.teacher[0].step == 0 and not p.teacher[0].ok
    assert p.diagnosis.startswith("implementation differs: step 0"), p.diagnosis
    assert "PARITY FAILED: " + backend in str(report)


def test_negative_control_parity_ok_without_the_patch():
    require("torch")
    require("jax")
    report = compare(NEG_SPEC, NEG_DATA, record_every=4)
    assert report.ok, str(report)


def test_negative_control_wrong_torch_loss_caught_at_step_0(monkeypatch):
    require("torch")
    import nnparity.backends.torch.losses as torch_losses
    monkeypatch.setitem(torch_losses.LOSSES, "mse",
                        lambda p, y: 1.01 * ((p - y) ** 2).mean())
    report = compare(NEG_SPEC, NEG_DATA, backends=("numpy", "torch"), record_every=4)
    assert_caught_at_step_0(report, "torch")
    (p,) = report.parity
    assert p.first_step_out == 0                            # step 0's loss is 1% off
    assert 5e-3 < p.teacher[0].max_rel < 0.05


def test_negative_control_wrong_torch_update_caught_at_step_0(monkeypatch):
    require("torch")
    import nnparity.backends.torch.optimizers as torch_optimizers
    original = torch_optimizers.UPDATES["sgd"]

    def sgd_too_long(opt, params, grads, state):
        longer = SGD(lr=opt.lr * 1.001, momentum=opt.momentum, dampening=opt.dampening,
                     nesterov=opt.nesterov, weight_decay=opt.weight_decay)
        original(longer, params, grads, state)

    monkeypatch.setitem(torch_optimizers.UPDATES, "sgd", sgd_too_long)
    report = compare(NEG_SPEC, NEG_DATA, backends=("numpy", "torch"), record_every=4)
    assert_caught_at_step_0(report, "torch")


def test_negative_control_wrong_jax_loss_caught_at_step_0(monkeypatch):
    jax = require("jax")
    import jax.numpy as jnp
    import nnparity.backends.jax.losses as jax_losses
    jax.clear_caches()            # jitted functions are cached by their static arguments
    try:
        with monkeypatch.context() as m:
            m.setitem(jax_losses.LOSSES, "mse", lambda p, y: 1.01 * jnp.mean((p - y) ** 2))
            report = compare(NEG_SPEC, NEG_DATA, backends=("numpy", "jax"), record_every=4)
    finally:
        jax.clear_caches()
    assert_caught_at_step_0(report, "jax")


def test_negative_control_momentum_bug_after_step_0_caught_later(monkeypatch):
    """The buffer update for t > 0 is wrong (1.01 g instead of g): step 0, where the
    buffer starts at g, agrees; a later teacher-forced step does not."""
    require("torch")
    import nnparity.backends.torch.optimizers as torch_optimizers
    original = torch_optimizers.UPDATES["sgd"]

    def sgd_late_bug(opt, params, grads, state):
        if state.step == 0:
            return original(opt, params, grads, state)
        buffers = leaves(state.buffers["momentum_buffer"])
        for b, p, g in zip(buffers, leaves(params), leaves(grads), strict=True):
            b.mul_(opt.momentum).add_(g, alpha=1.01)        # should be 1 - dampening = 1
            p.sub_(opt.lr * b)

    monkeypatch.setitem(torch_optimizers.UPDATES, "sgd", sgd_late_bug)
    report = compare(NEG_SPEC, NEG_DATA, backends=("numpy", "torch"), record_every=4)
    (p,) = report.parity
    assert not report.ok and not p.ok
    assert p.teacher[0].step == 0 and p.teacher[0].ok
    assert not p.teacher[1].ok and p.teacher[1].step == 4
    assert p.diagnosis.startswith("the teacher-forced step at step 4 disagrees"), p.diagnosis
    assert "though step 0 agrees" in p.diagnosis


# ------------------------------------------------------- the report and checks

def test_report_text_has_trajectory_teacher_and_diagnosis_lines(chaotic_report):
    text = str(chaotic_report)
    assert "trajectory: a snapshot every 8 steps" in text
    for name in ("torch", "jax"):
        assert f"  {name}: free-running max rel by step {{0: " in text
        assert f"  {name}: 50 teacher-forced steps, the closest call at step " in text
        assert f"  {name}: first snapshot out at step " in text
        assert f"diagnosis {name}: amplification" in text
    assert text.splitlines()[-1] == "verdict: PARITY FAILED: torch, jax"


def test_report_text_of_an_ok_run(traj_report):
    text = str(traj_report)
    assert "trajectory: a snapshot every 3 steps; teacher-forced steps from numpy's" in text
    assert "  torch: 6 teacher-forced steps" in text
    assert "diagnosis torch: ok" in text and "diagnosis jax: ok" in text
    assert text.splitlines()[-1] == "verdict: PARITY OK"


@pytest.fixture
def no_training(monkeypatch):
    """Any call to train fails the test: a check must come before all work."""
    def boom(*args, **kwargs):
        raise AssertionError("train was called")
    monkeypatch.setattr(nnparity.backends, "train", boom)


def test_reference_must_be_among_backends(no_training):
    with pytest.raises(ValueError, match="reference"):
        compare(notebook_spec(), notebook_data(), backends=("numpy",), reference="torch")


@pytest.mark.parametrize("backends", [("numpy", "tensorflow"), ("numpy", "Torch"),
                                      ("numpy", "numpy")])
def test_bad_backend_names_raise_before_training(no_training, backends):
    with pytest.raises(ValueError, match="backend"):
        compare(notebook_spec(), notebook_data(), backends=backends)


@pytest.mark.parametrize("record_every, error", [
    (0, ValueError), (-3, ValueError), ("3", TypeError), (2.0, TypeError), (True, TypeError)])
def test_bad_record_every_rejected_before_training(no_training, record_every, error):
    with pytest.raises(error, match="record_every"):
        compare(notebook_spec(), notebook_data(), backends=("numpy",),
                record_every=record_every)


@pytest.mark.parametrize("record_every, error", [(0, ValueError), ("3", TypeError)])
def test_train_rejects_bad_record_every(record_every, error):
    with pytest.raises(error, match="record_every"):
        train(notebook_spec(), notebook_data(), record_every=record_every)


def test_negative_control_snapshot_check_can_fail(traj_report):
    """The snapshot at step 3 is not the state after 2 epochs (6 steps), nor is the
    perturbed one equal to the state after 1 epoch."""
    spec = traj_report.spec
    snap = traj_report.results["numpy"].snapshots[1]
    assert snap.step == 3
    two = train(spec.replace(epochs=2), TRAJ_DATA, backend="numpy")
    with pytest.raises(AssertionError):
        assert_tree_close(snap.params, two.params)
    one = train(spec.replace(epochs=1), TRAJ_DATA, backend="numpy")
    nudged = [{name: value * (1 + 1e-9) if name == "weight" else value
               for name, value in layer.items()} for layer in snap.params]
    with pytest.raises(AssertionError):
        assert_tree_close(nudged, one.params)


# ------------------------------------------------------------ no vacuous pass

def _patch_torch_snapshots(monkeypatch, change):
    import nnparity.backends.torch as torch_backend
    real_train = torch_backend.train

    def patched(*args):
        result = real_train(*args)
        return result._replace(snapshots=change(result.snapshots))

    monkeypatch.setattr(torch_backend, "train", patched)


@pytest.mark.parametrize("change, said", [
    (lambda snaps: snaps[:1], "missing steps 3, 6, 9, 12, 15"),
    (lambda snaps: snaps[:-1], "missing steps 15"),
    (lambda snaps: snaps + snaps[-1:], "the same steps in another order or repeated"),
    (lambda snaps: snaps[::-1], "the same steps in another order or repeated"),
], ids=["only-the-first", "one-missing", "one-repeated", "reversed"])
def test_a_backend_that_drops_snapshots_fails_naming_the_steps(monkeypatch, change, said):
    require("torch")
    _patch_torch_snapshots(monkeypatch, change)
    report = compare(TRAJ_SPECS["adam"], TRAJ_DATA, backends=("numpy", "torch"), record_every=3)
    (p,) = report.parity
    assert not report.ok and not p.ok
    assert p.diagnosis.startswith("incomplete: torch recorded "), p.diagnosis
    assert said in p.diagnosis
    assert "verdict: PARITY FAILED: torch" in str(report)


def test_a_backend_that_drops_losses_fails(monkeypatch):
    require("torch")
    import nnparity.backends.torch as torch_backend
    real_train = torch_backend.train

    def fewer_losses(*args):
        result = real_train(*args)
        return result._replace(losses=result.losses[:-1])

    monkeypatch.setattr(torch_backend, "train", fewer_losses)
    report = compare(TRAJ_SPECS["adam"], TRAJ_DATA, backends=("numpy", "torch"), record_every=3)
    (p,) = report.parity
    assert not p.ok
    assert "torch returned 17 losses, numpy 18" in p.diagnosis
    assert not p.differences["losses"].ok
    assert p.differences["losses"].worst.criterion.startswith("shape: (17,)")


def test_the_same_snapshots_pass_the_pairing_check(traj_report):
    """Negative control of the two tests above: unpatched, the runs pair up."""
    assert all(not p.diagnosis.startswith("incomplete") for p in traj_report.parity)


# ------------------------------------------------ buffers of pure rounding noise

def noise_buffer_case(lr):
    """mae's bias gradient is a sum of +-1/6 that is exactly 0; numpy's summation
    leaves a 1e-17 residual, torch's none. RMSprop's momentum buffer holds
    g / (sqrt(v) + eps): 1.5e-8 in numpy, 0 in torch."""
    x = np.ones((6, 1))
    y = np.array([[0.5]] * 3 + [[-0.5]] * 3)
    spec = NetworkSpec(sizes=(1, 1, 1), activation="tanh", init="zeros", loss="mae",
                       optimizer=RMSprop(lr=lr, alpha=0.5, momentum=0.89), batch_size=6,
                       epochs=3)
    return spec, Dataset(x, y, x, y)


def test_a_buffer_of_rounding_noise_does_not_fail_agreeing_parameters():
    require("torch")
    spec, data = noise_buffer_case(lr=1e-6)
    report = compare(spec, data, backends=("numpy", "torch"), record_every=1)
    assert report.ok, str(report)
    numpy_buffer = report.results["numpy"].opt_state.buffers["momentum_buffer"][2]["bias"]
    torch_buffer = report.results["torch"].opt_state.buffers["momentum_buffer"][2]["bias"]
    # the buffers themselves differ far beyond atol: an elementwise check would fail
    assert not difference(torch_buffer, numpy_buffer, TOL).ok
    (p,) = report.parity
    assert all(d.ok for d in p.teacher)


def test_negative_control_the_noise_moves_parameters_at_a_larger_lr():
    """At lr=1e-2 the same noise moves 2.bias by 3e-10: the parameters fail."""
    require("torch")
    spec, data = noise_buffer_case(lr=1e-2)
    report = compare(spec, data, backends=("numpy", "torch"), record_every=1)
    (p,) = report.parity
    assert not report.ok and not p.differences["2.bias"].ok
    assert p.differences["2.bias"].worst.tensor == "2.bias"


# ---------------------------------------------------- failing points are named

def test_a_failing_teacher_step_names_its_worst_element(monkeypatch):
    require("torch")
    import nnparity.backends.torch.losses as torch_losses
    monkeypatch.setitem(torch_losses.LOSSES, "mse",
                        lambda p, y: 1.01 * ((p - y) ** 2).mean())
    report = compare(NEG_SPEC, NEG_DATA, backends=("numpy", "torch"), record_every=4)
    (p,) = report.parity
    worst = p.teacher[0].worst
    tensors = ("0.weight", "0.bias", "2.weight", "2.bias")
    assert worst.tensor in {"loss", *tensors, *(f"grad {t}" for t in tensors),
                            *(f"momentum_buffer {t}" for t in tensors)}
    assert worst.criterion.startswith("normwise: max|a - e| = ") and " beyond " in worst.criterion
    assert worst.actual != worst.expected
    assert p.teacher[0].used > 1
    text = str(report)
    assert f"worst {worst}" in p.diagnosis
    assert "  torch losses worst: losses[" in text


def test_negative_control_without_the_rounding_allowance_the_noise_buffer_fails(monkeypatch):
    """The teacher-forced steps pass the noise buffer only through its measured
    rounding sensitivity: with the allowance's multiple at 0 they fail."""
    require("torch")
    import nnparity.shared.core.tolerance as tolerance
    monkeypatch.setattr(tolerance, "ROUNDING_MULTIPLE", 0.0)
    spec, data = noise_buffer_case(lr=1e-6)
    report = compare(spec, data, backends=("numpy", "torch"), record_every=1)
    (p,) = report.parity
    assert not p.ok and not all(d.ok for d in p.teacher)
    assert any(d.worst.tensor == "momentum_buffer 2.bias" for d in p.teacher if not d.ok)


# ----------------------------------------------------------------- data parallel


def batch_norm_case():
    """Dense -> BatchNorm -> ReLU -> Dense on 40 rows in batches of 8 (shards of 4)."""
    from nnparity.shared import BatchNorm, Activation, Dense

    spec = NetworkSpec(input_shape=(4,), layers=(Dense(6), BatchNorm(), Activation("relu"),
                                                 Dense(2)),
                       optimizer=SGD(lr=0.1, momentum=0.9), batch_size=8, epochs=2, seed=0,
                       shuffle=True)
    return spec, regression(40, 4, 2, seed=1)


@pytest.mark.slow
def test_per_replica_batch_norm_is_shown_apart_and_the_backends_agree_on_it(monkeypatch):
    """With per-replica statistics, compare shows how far the reference's 2-replica run
    is from one device (not counted) and holds torch's 2-replica run to the
    reference's; control: the reference silently synchronised instead fails it."""
    require("torch")
    spec, data = batch_norm_case()
    report = compare(spec, data, backends=("numpy", "torch"), replicas=2,
                     sync_batch_norm=False)
    apart, agree = report.parity
    assert (apart.backend, apart.counted, apart.ok) == ("numpy x2", False, False)
    assert apart.diagnosis.startswith("not counted in the verdict")
    assert (agree.backend, agree.against, agree.counted, agree.ok) == (
        "torch x2 vs numpy x2", "numpy x2", True, True)
    assert report.ok and str(report).endswith("PARITY OK")

    import nnparity.backends.numpy.layers.batch_norm as numpy_batch_norm

    monkeypatch.setattr(numpy_batch_norm, "synced", lambda replica: replica)   # always global
    control = compare(spec, data, backends=("numpy", "torch"), replicas=2,
                      sync_batch_norm=False)
    assert not control.ok and not control.parity[1].ok
    assert "PARITY FAILED: torch x2 vs numpy x2" in str(control)
