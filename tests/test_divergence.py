"""Divergence: a non-finite loss, parameter or optimizer state raises DivergenceError, at the same
global step (and epoch) in every backend, and ``compare`` reports it as a result.

- ``DivergenceError`` is exported by ``nnparity.shared``, is a
  ``FloatingPointError`` with ``.backend``, ``.step``, ``.epoch`` and a message
  that suggests a smaller learning rate.
- Several diverging specs (identity notebook, lr=1e10 ReLU notebook, partial
  last batch with shuffle, Adam with a huge lr) stop at the same step in all
  three backends, also when ``progress=`` splits the run into chunks; the
  numpy backend emits no RuntimeWarning on the way.
- A parameter that becomes non-finite while the loss is finite counts: at the
  step it happens, and in a run whose loss then stays finite forever.
- ``compare``: parity ok only when every backend diverged at the same step;
  negative controls patch torch to diverge one step late, or not at all.
"""
from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

import nnparity.shared
from nnparity.backends import get_backend, train
from nnparity.shared import (SGD, Adam, Dataset, DivergenceError, NetworkSpec, RMSprop, compare,
                             init_params, notebook_data, notebook_spec)
from nnparity.shared.core.init import init_model_state
from nnparity.shared.core.optimizers import init_state
from nnparity.shared.core.tree import leaves
from conftest import require


def _all_finite(tree):
    return all(np.isfinite(a).all() for a in leaves(tree))


BACKENDS = [pytest.param("numpy", id="numpy"), pytest.param("torch", id="torch"),
            pytest.param("jax", id="jax")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see conftest


def synthetic(n_train, n_in, seed):
    rs = np.random.RandomState(seed)
    x = rs.randn(n_train + 2, n_in)
    y = 3 * x.sum(1, keepdims=True)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


#: name -> (spec, data, the step and epoch it diverges at, steps per epoch)
DIVERGING = {
    # the notebook without its ReLU: lr=1e-3 blows up within three epochs
    "identity-notebook": (notebook_spec().replace(activation="identity", optimizer=SGD(lr=1e-3),
                                                  epochs=300), notebook_data(), 5, 2),
    # slower: the loss grows for 14 epochs; with progress= it diverges in the 3rd chunk
    "identity-notebook-slow": (notebook_spec().replace(
        activation="identity", optimizer=SGD(lr=7.6e-5), epochs=100), notebook_data(), 28, 14),
    "relu-notebook-lr-1e10": (notebook_spec().replace(optimizer=SGD(lr=1e10)),
                              notebook_data(), 14, 7),
    # 10 rows in batches of 4, 4, 2; epoch 2 is in the second progress chunk
    "partial-last-batch-shuffle": (NetworkSpec(
        sizes=(3, 8, 1), activation="identity", init="xavier_uniform", optimizer=SGD(lr=0.5),
        batch_size=4, epochs=50, seed=3, shuffle=True), synthetic(10, 3, seed=1), 7, 2),
    # Adam's first step moves every parameter by about lr = 1e300
    "adam-lr-1e300": (notebook_spec().replace(optimizer=Adam(lr=1e300), epochs=50),
                      notebook_data(), 1, 0),
}
CASES = [pytest.param(name, id=name) for name in DIVERGING]


def test_divergence_error_is_exported_by_nnparity_shared():
    assert "DivergenceError" in nnparity.shared.__all__
    from nnparity.shared.core.divergence import DivergenceError as defined
    assert nnparity.shared.DivergenceError is defined is DivergenceError


def test_divergence_error_is_a_floating_point_error_with_step_epoch_backend():
    assert issubclass(DivergenceError, FloatingPointError)
    err = DivergenceError("torch", 17, 8, 0.5)
    assert (err.backend, err.step, err.epoch) == ("torch", 17, 8)
    assert "smaller learning rate" in str(err) and "lr=0.5" in str(err)
    assert "step 17" in str(err) and "epoch 8" in str(err) and "torch" in str(err)
    with pytest.raises(FloatingPointError):
        raise err


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_diverges_at_the_same_step(backend, case):
    require(backend)
    spec, data, step, epoch = DIVERGING[case]
    per_epoch = -(-data.x_train.shape[0] // spec.batch_size)
    assert step // per_epoch == epoch
    with pytest.raises(DivergenceError) as info:
        train(spec, data, backend=backend)
    err = info.value
    assert (err.backend, err.step, err.epoch) == (backend, step, epoch), str(err)
    assert "smaller learning rate" in str(err)
    assert f"lr={spec.optimizer.lr:g}" in str(err)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_step_is_the_same_with_progress_chunks(backend, case):
    require(backend)
    spec, data, step, epoch = DIVERGING[case]
    calls = []
    with pytest.raises(DivergenceError) as info:
        train(spec, data, backend=backend, progress=lambda *args: calls.append(args))
    assert (info.value.step, info.value.epoch) == (step, epoch)
    chunk = max(1, spec.epochs // 20)
    # progress was called for every chunk that finished before the diverging one
    assert [c[0] for c in calls] == list(range(chunk, epoch + 1, chunk))[:epoch // chunk]
    assert all(np.isfinite(c[2]) for c in calls)


@pytest.mark.parametrize("case", CASES)
def test_numpy_diverges_without_runtime_warnings(case):
    spec, data, step, _ = DIVERGING[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DivergenceError) as info:
            train(spec, data, backend="numpy")
    assert info.value.step == step
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, [str(w.message) for w in runtime]


@pytest.mark.parametrize("case", [c for c in CASES if DIVERGING[c.id][3] > 0])
def test_a_run_stopped_before_the_diverging_epoch_trains(case):
    """The steps before the diverging one trained normally: a numpy run of only the
    epochs before the diverging epoch does not raise, and its losses and parameters
    are finite. (Its test-set loss may overflow to inf: numpy's evaluate() then warns
    "overflow encountered in square", which is not training's business, so ignored.)"""
    spec, data, step, epoch = DIVERGING[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = train(spec.replace(epochs=epoch), data, backend="numpy")
    per_epoch = -(-data.x_train.shape[0] // spec.batch_size)
    assert result.losses.shape == (epoch * per_epoch,)
    assert np.all(np.isfinite(result.losses)) and _all_finite(result.params)


# ---------------------------------------------- a parameter non-finite, loss finite

def test_parameter_overflow_with_finite_loss_diverges_at_that_step():
    """lr=1e308: step 0's loss is finite, its update overflows the parameters.
    A loss-only check would report step 1; every backend reports step 0."""
    spec, data = notebook_spec().replace(optimizer=SGD(lr=1e308)), notebook_data()
    params = init_params(spec)
    with np.errstate(over="ignore", invalid="ignore"):
        out = get_backend("numpy").step(
            spec, params, init_model_state(spec), init_state(spec.optimizer, params),
            data.x_train[:2], data.y_train[:2])
    assert np.isfinite(out.loss) and not _all_finite(out.params)
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        with pytest.raises(DivergenceError) as info:
            train(spec, data, backend=backend)
        assert (info.value.step, info.value.epoch) == (0, 0), backend


#: one input x = 10, target 1, two ReLU units, MAE. Step 0 moves 0.weight[0, 0] by
#: lr * sign * 2.weight[0, 0] * x = 1e307 * 2.43 * 10, which overflows to -inf; every
#: other update stays finite. Unit 0 is then dead (z = -inf, relu = 0, relu' = 0),
#: so the -inf never reaches the output, and MAE's bounded gradient keeps the
#: output layer finite: the loss stays finite for ever while 0.weight holds -inf.
DEAD_UNIT_SPEC = NetworkSpec(sizes=(1, 2, 1), activation="relu", init="he_normal", loss="mae",
                             optimizer=SGD(lr=1e307), batch_size=1, epochs=50, seed=5)
DEAD_UNIT_DATA = Dataset(np.array([[10.0]]), np.array([[1.0]]),
                         np.array([[10.0]]), np.array([[1.0]]))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dead_unit_case_keeps_the_loss_finite_with_an_infinite_weight(backend):
    """Stepping by hand past the divergence: every loss finite, 0.weight[0, 0] = -inf from
    step 0 on. (JAX is left out: its SGD adds weight_decay * p even when the decay
    is 0, and 0 * -inf = nan, so after the divergence its state differs.)"""
    require(backend)
    spec, data = DEAD_UNIT_SPEC, DEAD_UNIT_DATA
    module = get_backend(backend)
    params, model_state = init_params(spec), init_model_state(spec)
    state = init_state(spec.optimizer, params)
    losses = []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(spec.epochs):
            loss, _, params, model_state, state = module.step(
                spec, params, model_state, state, data.x_train, data.y_train)
            losses.append(float(loss))
            assert params[0]["weight"][0, 0] == -np.inf
            assert np.isfinite(params[0]["weight"][1, 0])
            assert np.isfinite(params[0]["bias"]).all()
            assert _all_finite(params[2:])                   # the output layer
    assert np.all(np.isfinite(losses)), losses


@pytest.mark.parametrize("backend", BACKENDS)
def test_dead_unit_case_diverges_at_step_0(backend):
    require(backend)
    with pytest.raises(DivergenceError) as info:
        train(DEAD_UNIT_SPEC, DEAD_UNIT_DATA, backend=backend)
    assert (info.value.backend, info.value.step, info.value.epoch) == (backend, 0, 0)


# ---------------------------------------------------------------- compare

def test_compare_reports_divergence_at_the_same_step_as_parity_ok():
    require("torch")
    require("jax")
    spec, data, step, _ = DIVERGING["identity-notebook"]
    report = compare(spec, data)                             # no exception
    assert report.reference_diverged_at == step
    assert report.ok, str(report)
    assert report.results == {} and report.predictions == {}
    for p in report.parity:
        assert p.ok and p.diverged_at == step
        assert p.differences == {} and p.trajectory == () and p.teacher == ()
        assert p.diagnosis == (f"divergence: {p.backend} diverged at step {step}, "
                               f"numpy diverged at step {step} (same step)")
    text = str(report)
    assert "diagnosis torch: divergence" in text and text.endswith("verdict: PARITY OK")


def late_by_one(original):
    """A torch train() that reports its divergence one step later than it happened."""
    def train_late(spec, *args, **kwargs):
        try:
            return original(spec, *args, **kwargs)
        except DivergenceError as exc:
            raise DivergenceError("torch", exc.step + 1, exc.epoch, spec.optimizer.lr) from exc
    return train_late


def test_negative_control_divergence_at_a_different_step_is_a_mismatch(monkeypatch):
    require("torch")
    import nnparity.backends.torch as torch_backend
    monkeypatch.setattr(torch_backend, "train", late_by_one(torch_backend.train))
    spec, data, step, _ = DIVERGING["identity-notebook"]
    report = compare(spec, data, backends=("numpy", "torch"))
    (p,) = report.parity
    assert not report.ok and not p.ok
    assert p.diverged_at == step + 1
    assert "MISMATCH" in p.diagnosis
    assert p.diagnosis == (f"divergence: torch diverged at step {step + 1}, "
                           f"numpy diverged at step {step} (MISMATCH)")


def test_negative_control_backend_that_does_not_diverge_is_a_mismatch(monkeypatch):
    """torch's finiteness check switched off: it trains on with inf and nan."""
    require("torch")
    # the training loop's module (the package's ``train`` attribute is the function)
    torch_loop = importlib.import_module("nnparity.backends.torch.train")
    monkeypatch.setattr(torch_loop, "raise_divergence", lambda *args: None)
    spec, data, step, _ = DIVERGING["identity-notebook"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # the patched run computes nan
        report = compare(spec, data, backends=("numpy", "torch"))
    (p,) = report.parity
    assert not report.ok and not p.ok
    assert p.diverged_at is None and report.reference_diverged_at == step
    assert "MISMATCH" in p.diagnosis and "torch did not diverge" in p.diagnosis


def test_negative_control_only_the_backend_diverges_is_a_mismatch(monkeypatch):
    """The reference trains fine; torch (patched) reports a divergence at step 3."""
    require("torch")
    import nnparity.backends.torch as torch_backend

    def diverging_train(spec, *args, **kwargs):
        raise DivergenceError("torch", 3, 1, spec.optimizer.lr)

    monkeypatch.setattr(torch_backend, "train", diverging_train)
    report = compare(notebook_spec().replace(epochs=5), notebook_data(),
                     backends=("numpy", "torch"))
    (p,) = report.parity
    assert report.reference_diverged_at is None
    assert not report.ok and p.diverged_at == 3
    assert p.diagnosis == ("divergence: torch diverged at step 3, numpy did not diverge "
                           "(MISMATCH)")


# ----------------------------------------------- the per-step check itself

def _framework_array(backend, values, dtype):
    array = np.array(values, dtype=dtype)
    if backend == "torch":
        return require("torch").from_numpy(array)
    return array


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_finite_decides_by_the_elements_not_by_their_sum(backend, dtype):
    """The check sums first; the sum of finite values can overflow (not a
    divergence), and any NaN or infinity must be caught whatever the sum."""
    get_backend(backend)
    all_finite = importlib.import_module(f"nnparity.backends.{backend}.train").all_finite
    big = float(np.finfo(dtype).max)
    cases = {
        (0.5, (1.0, -2.0, 3.0)): True,
        (0.5, (big, big, big)): True,           # the sum overflows, the elements do not
        (0.5, (-big, -big)): True,
        (0.5, (1.0, np.nan, 3.0)): False,
        (0.5, (1.0, np.inf, -np.inf)): False,   # inf - inf: the sum is NaN
        (0.5, (big, big, np.inf)): False,
        (np.inf, (1.0, 2.0)): False,
        (np.nan, (1.0, 2.0)): False,
    }
    for (loss, values), expected in cases.items():
        loss_value = _framework_array(backend, loss, dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            assert all_finite(loss_value, _framework_array(backend, values, dtype)) is expected, \
                (loss, values)


# ------------------------------------------------- a non-finite optimizer state

def _scaled_notebook(factor):
    d = notebook_data()
    return Dataset(d.x_train * factor, d.y_train, d.x_test * factor, d.y_test)


#: issue 17 findings 1 and 5: the parameters stay finite (or turn NaN in some
#: backends only) while a buffer overflows. name -> (spec, data, expected step)
STATE_OVERFLOW = {
    # centred RMSprop: a*a overflows in sqrt(v - a*a); XLA kept square_avg = inf
    **{f"rmsprop-centered-lr-{lr:g}-float32": (
        NetworkSpec(sizes=(2, 4, 1), optimizer=RMSprop(lr=lr, centered=True), epochs=3,
                    dtype="float32"), notebook_data(), 1) for lr in (1e5, 1e6, 1e8)},
    # features of 1e9: g*g overflows float32 in exp_avg_sq / square_avg at step 0
    "adam-features-1e9-float32": (NetworkSpec(sizes=(2, 4, 1), optimizer=Adam(lr=1e-3),
                                              epochs=3, dtype="float32"),
                                  _scaled_notebook(1e9), 0),
    "rmsprop-features-1e9-float32": (NetworkSpec(sizes=(2, 4, 1), optimizer=RMSprop(lr=1e-3),
                                                 epochs=3, dtype="float32"),
                                     _scaled_notebook(1e9), 0),
}


@pytest.mark.parametrize("case", list(STATE_OVERFLOW))
def test_non_finite_optimizer_state_diverges_at_the_same_step_everywhere(case):
    require("torch")
    require("jax")
    spec, data, expected = STATE_OVERFLOW[case]
    steps = {}
    for backend in ("numpy", "torch", "jax"):
        with pytest.raises(DivergenceError) as caught:
            train(spec, data, backend=backend)
        assert "optimizer state" in str(caught.value)
        steps[backend] = caught.value.step
    assert steps == dict.fromkeys(steps, expected), steps


def test_the_state_check_is_what_catches_adam_on_huge_features():
    """At step 0 Adam's parameters and loss are finite; only exp_avg_sq is inf,
    so a check of the loss and parameters alone would let the run stall on."""
    spec, data, _ = STATE_OVERFLOW["adam-features-1e9-float32"]
    params = init_params(spec)
    x, y = data.x_train.astype(np.float32), data.y_train.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        loss, _, new_params, _, state = get_backend("numpy").step(
            spec, params, init_model_state(spec), init_state(spec.optimizer, params), x, y)
    assert np.isfinite(loss) and _all_finite(new_params)
    assert not _all_finite(state.buffers["exp_avg_sq"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_control_the_same_optimizers_at_sane_scales_stay_finite(backend):
    require(backend)
    for spec in (NetworkSpec(sizes=(2, 4, 1), optimizer=RMSprop(lr=1e-2, centered=True),
                             epochs=3, dtype="float32"),
                 NetworkSpec(sizes=(2, 4, 1), optimizer=Adam(lr=1e-3), epochs=3,
                             dtype="float32")):
        result = train(spec, _scaled_notebook(1e3), backend=backend)
        assert _all_finite(result.opt_state.buffers[
            "exp_avg_sq" if spec.optimizer.name == "adam" else "square_avg"])
