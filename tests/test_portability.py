"""Parity verdicts are properties of the code, not of the CPU.

Developers' machines and CI differ: NumPy's OpenBLAS picks other kernels on
another CPU, XLA's float64 ``tanh`` is up to 6 ulps from NumPy's on some, and
the thread count changes how sums are split. These tests make such a machine
here, and ``compare`` must give the same verdicts:

- NumPy's tanh, exp, expm1, log, log1p and erfc results moved by up to +-4 ulps
  (a different libm): the chaotic spec is still diagnosed "amplification" with
  every teacher-forced step agreeing, a well-conditioned spec is still ok, and a
  wrong update rule is still caught at step 0;
- NumPy with 1 and with 2 BLAS threads (threadpoolctl);
- JAX with ``--xla_cpu_multi_thread_eigen=false`` (in a fresh process: XLA reads
  its flags once).

The thread-count tests take about 16 s, so they are marked ``slow`` (CI runs them).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import nnparity.backends.numpy.activations as numpy_activations
import nnparity.backends.numpy.losses as numpy_losses
from nnparity.shared import SGD, Adam, NetworkSpec, compare
from nnparity.shared.parity.rounding import move_ulps
from nnparity.shared.core.synthetic import chaotic_case, regression
from conftest import require

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see conftest

ULPS = 4


def off_by_ulps(function):
    """``function`` with every result moved by -4..4 ulps, the same move for the same
    value (a deterministic function of the result's bits, as a libm would be)."""
    def perturbed(*args, **kwargs):
        result = np.array(function(*args, **kwargs))
        if result.dtype.kind == "f":
            bits = result.view(np.int64 if result.dtype.itemsize == 8 else np.int32)
            k = (bits.astype(np.int64) * 0x9E3779B1 >> 17) % (2 * ULPS + 1) - ULPS
            move_ulps(result, k)
        return result
    return perturbed


TRANSCENDENTALS = ("tanh", "exp", "expm1", "log", "log1p")


@pytest.fixture
def other_libm(monkeypatch):
    """The NumPy backend's transcendental functions as another CPU's libm might give them."""
    fake_np = types.SimpleNamespace(**{name: getattr(np, name) for name in dir(np)
                                       if not name.startswith("__")})
    for name in TRANSCENDENTALS:
        setattr(fake_np, name, off_by_ulps(getattr(np, name)))
    for module in (numpy_activations, numpy_losses):
        monkeypatch.setattr(module, "np", fake_np)
    monkeypatch.setattr(numpy_activations, "_erfc", off_by_ulps(numpy_activations._erfc))


def test_off_by_ulps_moves_results_by_at_most_4_ulps_and_not_all_by_zero():
    x = np.linspace(-5, 5, 10001)
    exact, moved = np.tanh(x), off_by_ulps(np.tanh)(x)
    ulps = np.abs(moved.view(np.int64) - exact.view(np.int64))
    assert ulps.max() == ULPS
    assert np.count_nonzero(ulps) > 0.8 * x.size
    assert set(np.unique(ulps)) == set(range(ULPS + 1))


def test_other_libm_changes_the_numpy_backend(other_libm):
    """The monkeypatch reaches the backend's activations (negative control of the fixture)."""
    x = np.linspace(-3, 3, 101)
    tanh, d_tanh = numpy_activations.ACTIVATIONS["tanh"]
    assert not np.array_equal(tanh(x), np.tanh(x))
    assert not np.array_equal(d_tanh(x), 1 - np.tanh(x) ** 2)


WELL_CONDITIONED = NetworkSpec(sizes=(3, 8, 8, 2), activation="tanh", init="xavier_uniform",
                               optimizer=Adam(lr=0.01), batch_size=4, epochs=20, seed=2,
                               shuffle=True)
WELL_DATA = regression(10, 3, 2, seed=5, n_test=3)


def assert_chaotic_verdict(report):
    assert not report.ok
    for p in report.parity:
        assert all(d.ok for d in p.teacher), [(d.step, d.worst) for d in p.teacher if not d.ok]
        assert p.teacher[0].sensitivity < 1e-13              # step 0 is a real test
        assert p.diagnosis.startswith("amplification"), p.diagnosis


@pytest.mark.parametrize("libm", [
    # this machine's libm is test_harness.py's chaotic case too: here a slow test
    pytest.param("this machine's", marks=pytest.mark.slow), "off by 4 ulps"])
def test_chaotic_spec_is_amplification_on_any_libm(request, libm):
    require("torch")
    require("jax")
    if libm != "this machine's":
        request.getfixturevalue("other_libm")
    spec, data = chaotic_case()
    assert_chaotic_verdict(compare(spec, data))


def test_well_conditioned_spec_is_ok_on_another_libm(other_libm):
    require("torch")
    require("jax")
    report = compare(WELL_CONDITIONED, WELL_DATA)
    assert report.ok, str(report)


def test_wrong_update_is_still_caught_at_step_0_on_another_libm(other_libm, monkeypatch):
    require("torch")
    import nnparity.backends.torch.optimizers as torch_optimizers
    original = torch_optimizers.UPDATES["sgd"]

    def sgd_too_long(opt, params, grads, state):
        original(SGD(lr=opt.lr * 1.001, momentum=opt.momentum), params, grads, state)

    monkeypatch.setitem(torch_optimizers.UPDATES, "sgd", sgd_too_long)
    spec, data = chaotic_case()
    report = compare(spec, data, backends=("numpy", "torch"))
    (p,) = report.parity
    assert not p.ok and not p.teacher[0].ok
    assert p.diagnosis.startswith("implementation differs: step 0"), p.diagnosis


def test_negative_control_without_the_rounding_allowance_another_libm_fails(other_libm,
                                                                            monkeypatch):
    """What makes the chaotic spec pass on another libm is the measured rounding
    allowance: with its multiple at 0, late, ill-conditioned teacher-forced steps fail."""
    require("torch")
    import nnparity.shared.core.tolerance as tolerance
    monkeypatch.setattr(tolerance, "ROUNDING_MULTIPLE", 0.0)
    spec, data = chaotic_case()
    report = compare(spec, data, backends=("numpy", "torch"))
    (p,) = report.parity
    assert not all(d.ok for d in p.teacher)
    assert not p.diagnosis.startswith("amplification")


# ---------------------------------------------------------------- thread counts

@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_verdicts_hold_with_1_and_2_blas_threads(threads):
    """NumPy's OpenBLAS splits a product over its threads; the verdicts stay."""
    require("torch")
    require("jax")
    threadpoolctl = require("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        assert {info["num_threads"] for info in threadpoolctl.threadpool_info()
                if info["user_api"] == "blas"} == {threads}
        assert_chaotic_verdict(compare(*chaotic_case()))
        report = compare(WELL_CONDITIONED, WELL_DATA)
    assert report.ok, str(report)


#: run in a fresh process: the verdicts on the chaotic and the well-conditioned spec
VERDICTS_SCRIPT = """
import json
from nnparity.shared import compare
from nnparity.shared.core.synthetic import chaotic_case
import test_portability as here
chaotic = compare(*chaotic_case(), backends=("numpy", "jax"))
well = compare(here.WELL_CONDITIONED, here.WELL_DATA, backends=("numpy", "jax"))
print(json.dumps({"chaotic": chaotic.parity[0].diagnosis, "well_ok": well.ok,
                  "teacher_ok": all(d.ok for d in chaotic.parity[0].teacher)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("flags", ["--xla_cpu_multi_thread_eigen=false", ""],
                         ids=["eigen-one-thread", "default"])
def test_verdicts_hold_with_xla_single_threaded_eigen(flags):
    require("jax")
    env = {**os.environ, "XLA_FLAGS": flags,
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", VERDICTS_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    verdicts = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdicts["chaotic"].startswith("amplification"), verdicts
    assert verdicts["teacher_ok"] and verdicts["well_ok"], verdicts


def test_negative_control_xla_reads_the_flags():
    """XLA refuses a flag it does not know, so the flag above is really read."""
    require("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_no_such_flag_for_nnparity=false"}
    done = subprocess.run([sys.executable, "-c", "import jax.numpy as j; j.ones(2).sum()"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Unknown flag" in done.stderr
