"""The data-parallel row of ``nnparity bench`` (shared/bench/replicas.py): the runs it
times are equal work, its arithmetic is right, and the table shows the row.

Timings are never asserted here (they belong to ``nnparity bench``).
"""
import contextlib
import functools
import os
import time

import numpy as np
import pytest

from nnparity.backends import train
from nnparity.shared.bench import replicas as dp
from nnparity.shared.bench import run as bench
from nnparity.shared.core.optimizers import SGD
from nnparity.shared.testing import assert_close
from conftest import require

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # for speed only: see conftest


# ----------------------------------------------------------------------------- equal work

def first_tensor(params):
    """The first weight matrix of a backend's parameters (dicts of arrays or tensors)."""
    return np.asarray(params[0]["weight"])


def assert_equal_work(backend):
    """The 2-replica run the bench times trains, in one epoch (4 steps of 512 rows),
    the parameters of its 1-replica run, under the float32 policy."""
    if backend != "numpy":
        require(backend)
    one, two = (dp.replica_trainer(backend, count)(1) for count in (1, 2))
    assert first_tensor(one).dtype == first_tensor(two).dtype == np.float32
    assert first_tensor(one).shape == (1024, 512)
    assert_close(two, one, dtype="float32")
    return one


def test_two_numpy_replicas_train_what_one_does():
    one = assert_equal_work("numpy")
    start = train(bench.COMPUTE_SPEC.replace(epochs=0), bench.compute_data(),
                  metrics=False).params
    assert not np.allclose(first_tensor(one), first_tensor(start))      # the run trained


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_two_replicas_train_what_one_does(backend):
    """torch (two gloo processes) and JAX (two host devices in a fresh process): a
    few seconds each, mostly the launch."""
    assert_equal_work(backend)


def test_negative_control_gradients_summed_without_weights_are_caught():
    """Two replicas that summed their shards' mean gradients without the weights N_r/N
    would take twice the step: a 1-replica run with twice the learning rate differs
    from the bench's 2-replica run beyond the float32 policy."""
    two = dp.replica_trainer("numpy", 2)(1)
    lr = bench.COMPUTE_SPEC.optimizer.lr
    spec = bench.COMPUTE_SPEC.replace(epochs=1, optimizer=SGD(lr=2 * lr))
    doubled = train(spec, bench.compute_data(), metrics=False).params
    with pytest.raises(AssertionError):
        assert_close(two, doubled, dtype="float32")


def test_the_trainers_time_the_compute_spec_with_the_replicas_asked(monkeypatch):
    seen = []

    def fake_train(spec, data, backend, metrics, replicas):
        seen.append((spec, data.x_train.shape, backend, metrics, replicas))
        return type("R", (), {"params": "trained"})()

    monkeypatch.setattr("nnparity.backends.train", fake_train)
    assert dp.replica_trainer("jax", 2)(3) == "trained"
    spec, shape, backend, metrics, replicas = seen[0]
    assert spec == bench.COMPUTE_SPEC.replace(epochs=3) and spec.dtype == "float32"
    assert spec.batch_size == 512 and spec.sizes == (512, 1024, 1024, 10)
    assert (shape, backend, metrics, replicas) == ((bench.COMPUTE_ROWS, 512), "jax", False, 2)


def test_the_ceiling_work_is_split_evenly_over_the_threads():
    """Each thread makes its share of the products; one thread makes them all."""
    import threading

    for threads in (1, 2):
        done: list = []                          # it keeps each thread alive (so its id)
        dp.ceiling_work(threads, products=4, product=functools.partial(
            lambda done: done.append(threading.current_thread()), done))()
        shares = [sum(t is thread for t in done) for thread in {id(t): t for t in done}.values()]
        assert shares == [4 // threads] * threads
    with pytest.raises(ValueError, match="products"):
        dp.ceiling_work(2, products=5)
    assert bench.matmul("numpy")().shape == (1024, 1024)      # the default product


# ----------------------------------------------------------------------------- arithmetic

def test_steady_state_and_fixed_cost_come_apart():
    """Made-up timings: a 2 s launch plus 50 ms a step, with noise in the launch; the
    steady state ignores the launch, the fixed cost is the launch."""
    launch = [2.0, 2.3, 1.9, 2.1, 2.0]
    short = [t + 16 * 0.05 for t in launch]
    long = [t + 0.01 + 32 * 0.05 for t in launch]    # the long call saw 10 ms more noise
    got = dp.steady_and_fixed(short, long, short_steps=16, long_steps=32)
    assert got["seconds_per_step"] == pytest.approx(0.05 + 0.01 / 16)
    assert got["fixed_seconds"] == pytest.approx(2.0 - 0.01)
    for spread in ("step_min", "step_max"):         # the same step in every repetition
        assert got[spread] == pytest.approx(0.05 + 0.01 / 16)
    # negative control: the naive time per step (the short call over its steps) is
    # the launch-laden figure the row must not report
    assert np.median(short) / 16 == pytest.approx(0.175)


def test_steady_state_takes_the_median_over_repetitions():
    got = dp.steady_and_fixed([1.0, 1.0, 1.0], [2.0, 3.0, 9.0], short_steps=10, long_steps=20)
    assert got["seconds_per_step"] == pytest.approx(0.2)        # (3 - 1) / 10
    assert (got["step_min"], got["step_max"]) == (pytest.approx(0.1), pytest.approx(0.8))
    assert got["fixed_seconds"] == pytest.approx(-1.0)          # 1 - 10 x 0.2, as measured


@pytest.mark.parametrize("short, long, steps, match", [
    ([1.0], [2.0, 3.0], (1, 2), "short and long"),
    ([], [], (1, 2), "short and long"),
    ([1.0], [2.0], (2, 2), "short_steps, long_steps"),
    ([1.0], [2.0], (0, 2), "short_steps, long_steps"),
])
def test_steady_and_fixed_refuses_bad_input(short, long, steps, match):
    with pytest.raises(ValueError, match=match):
        dp.steady_and_fixed(short, long, *steps)


def test_parallel_efficiency_is_one_replicas_time_over_twice_two_replicas():
    assert dp.parallel_efficiency(0.1, 0.05) == pytest.approx(1.0)    # twice as fast
    assert dp.parallel_efficiency(0.1, 0.1) == pytest.approx(0.5)     # no faster
    assert dp.parallel_efficiency(0.1, 0.0625) == pytest.approx(0.8)
    assert dp.parallel_efficiency(0.1, 0.025, replicas=4) == pytest.approx(1.0)
    assert dp.parallel_efficiency(0.1, 0.05) != pytest.approx(dp.parallel_efficiency(0.05, 0.1))
    with pytest.raises(ValueError, match="one_replica, many_replicas"):
        dp.parallel_efficiency(0.1, 0.0)


def test_an_efficiency_the_noise_swamped_is_not_a_number():
    assert dp.efficiency_or_none(0.1, 0.05) == pytest.approx(1.0)
    assert dp.efficiency_or_none(0.1, -0.01) is None and dp.efficiency_or_none(0.0, 0.1) is None
    assert (dp.ratio(None), dp.ratio(0.834)) == ("n/a", "0.83")


@pytest.mark.skipif(not dp.CAN_PIN, reason="pinning threads needs Linux's sched_setaffinity")
def test_measure_times_the_replicas_and_pins_only_the_single_ones(monkeypatch):
    """measure_data_parallel's wiring, on made-up timings: which calls it times (the
    1-replica ones on one CPU), and the row it makes of them."""
    calls = []

    def fake_trainer(backend, count):
        return lambda epochs: calls.append((backend, count, epochs, os.sched_getaffinity(0)))

    def fake_timings(fns, repeats):
        for fn in fns.values():
            fn()
        made_up = {"1 short": 0.4, "1 long": 2.0, "2 short": 2.25, "2 long": 3.25,
                   "ceiling 1": 0.2, "ceiling 2": 0.125}
        return {name: [(made_up[name], 1.0)] * repeats for name in fns}

    monkeypatch.setattr(dp, "replica_trainer", fake_trainer)
    monkeypatch.setattr(dp, "ceiling_work", lambda count: lambda: calls.append(("ceiling", count)))
    monkeypatch.setattr(dp, "interleaved_timings", fake_timings)
    m = dp.measure_data_parallel("numpy", repeats=3)
    everywhere = os.sched_getaffinity(0)
    one = {min(everywhere)}
    assert calls == [("numpy", 1, 2, one), ("numpy", 1, 10, one),
                     ("numpy", 2, 2, everywhere), ("numpy", 2, 10, everywhere),
                     ("ceiling", 1), ("ceiling", 2)]
    assert m["steps"] == {"short": 8, "long": 40} and m["one_replica_cpus"] == sorted(one)
    assert m["replicas"]["1"]["seconds_per_step"] == pytest.approx(0.05)      # 1.6 / 32
    assert m["replicas"]["2"]["seconds_per_step"] == pytest.approx(1 / 32)
    assert m["replicas"]["2"]["fixed_seconds"] == pytest.approx(2.0)
    assert m["replicas"]["2"]["rows_per_second"] == pytest.approx(512 * 32)
    assert m["efficiency"] == pytest.approx(0.8) and m["ceiling_efficiency"] == pytest.approx(0.8)
    assert m["threads"]["OMP_NUM_THREADS"] == "1" and m["repeats"] == 3


def test_interleaved_timings_warm_up_then_take_turns(monkeypatch):
    calls = []
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr(dp.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(dp, "cpu_seconds", lambda: 0.0)
    got = dp.interleaved_timings({"a": lambda: calls.append("a"),
                                  "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert got == {"a": [(1.0, 0.0)] * 3, "b": [(1.0, 0.0)] * 3}


@pytest.mark.skipif(not dp.CAN_PIN, reason="pinning threads needs Linux's sched_setaffinity")
def test_on_cpus_pins_every_thread_and_restores_them():
    """Inside the block this thread, one started before and one started inside are on
    the one CPU; afterwards each is back on the CPUs it had."""
    import threading

    before = os.sched_getaffinity(0)
    cpu = {min(before)}
    seen = {}
    go, stop = threading.Event(), threading.Event()

    def worker(name):
        seen[name, "ident"] = threading.get_native_id()
        go.wait()
        seen[name, "inside"] = os.sched_getaffinity(0)
        stop.wait()
        seen[name, "after"] = os.sched_getaffinity(0)

    older = threading.Thread(target=worker, args=("older",))
    older.start()
    with dp.on_cpus(cpu):
        assert os.sched_getaffinity(0) == cpu
        newer = threading.Thread(target=worker, args=("newer",))
        newer.start()
        go.set()
        while ("newer", "inside") not in seen or ("older", "inside") not in seen:
            time.sleep(0.001)
    stop.set()
    older.join()
    newer.join()
    assert seen["older", "inside"] == seen["newer", "inside"] == cpu
    assert seen["older", "after"] == seen["newer", "after"] == before == os.sched_getaffinity(0)
    if len(before) > 1:                       # negative control: pinning did change them
        assert cpu != before
    with dp.on_cpus(None):                    # None: unchanged
        assert os.sched_getaffinity(0) == before


def test_pinned_runs_its_function_on_the_cpus(monkeypatch):
    seen = []

    @contextlib.contextmanager
    def fake_on_cpus(cpus):
        seen.append(("pin", cpus))
        yield
        seen.append(("unpin", cpus))

    monkeypatch.setattr(dp, "on_cpus", fake_on_cpus)
    assert dp.pinned(lambda: seen.append("call") or 3, {0})() == 3
    assert seen == [("pin", {0}), "call", ("unpin", {0})]


def test_timed_reports_the_cores_a_call_kept_busy(monkeypatch):
    ticks = iter([0.0, 2.0])
    cpu = iter([10.0, 13.0])
    monkeypatch.setattr(dp.time, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr(dp, "cpu_seconds", lambda: next(cpu))
    assert dp.timed(lambda: None) == (2.0, 1.5)


# ----------------------------------------------------------------------------- the row

def measured(t1=0.040, t2=0.025, ceiling=0.9, load=0.3):
    """A backend's row as ``measure_data_parallel`` returns it, from made-up timings."""
    def row(step, fixed, cores):
        return {"seconds_per_step": step, "fixed_seconds": fixed, "step_min": step,
                "step_max": step, "rows_per_second": 512 / step, "cores_busy": cores}
    return {"replicas": {"1": row(t1, 0.01, 1.0), "2": row(t2, 2.5, 1.9)},
            "efficiency": dp.parallel_efficiency(t1, t2), "ceiling_efficiency": ceiling,
            "steps": {"short": 16, "long": 32}, "batch_size": 512, "dtype": "float32",
            "threads": {**bench.ONE_THREAD, "XLA_FLAGS": bench.XLA_ONE_THREAD,
                        "torch.get_num_threads()": 1,
                        "torch threads per replica (2 replicas)": 1},
            "one_replica_cpus": [0], "cpu_count": 2, "load_average": load, "repeats": 5}


def test_the_table_shows_the_row():
    lines = dp.data_parallel_table({"numpy": measured(), "torch": measured(0.05, 0.05)})
    text = "\n".join(lines)
    assert "compute-bound spec, float32, batch 512, 1 and 2 replicas (median of 5" in text
    assert "(32 steps - 16 steps) / 16" in text and "efficiency = t1 / (2 t2)" in text
    assert "one thread per replica" in text and "2 CPUs" in text
    assert "1 replica pinned to one CPU" in text
    rows = [line.split() for line in lines[3:]]
    assert rows[0] == ["numpy", "1", "40.0", "40-40", "12800", "0.01", "1.00"]
    assert rows[1] == ["numpy", "2", "25.0", "25-25", "20480", "2.50", "1.90", "0.80", "0.90",
                       "0.3"]
    assert rows[3][:2] == ["torch", "2"] and rows[3][-3] == "0.50"    # no faster: 0.5
    assert len(rows) == 4                                  # no warning: both ceilings 0.9


def test_the_table_warns_when_the_second_core_was_busy_and_shows_noise_as_na():
    swamped = measured(ceiling=0.55)
    swamped["efficiency"] = None
    lines = dp.data_parallel_table({"numpy": measured(), "jax": swamped})
    assert lines[-1].startswith("  ceiling below 0.9 for jax: other work kept the second core")
    assert lines[-2].split()[-3:] == ["n/a", "0.55", "0.3"]


def test_run_table_includes_the_row_and_reads_results_without_it():
    result = {"repeats": 5, "notebook": {"numpy": 0.03}, "cold": {"numpy": 0.05},
              "peers": {}, "skipped": {}, "compare_cli_cold": 5.0,
              "compute": {"numpy": {"seconds": 1.0, "gflops": 40.0, "matmul_gflops": 50.0}}}
    assert "data-parallel" not in bench.table(result)            # from before the row
    text = bench.table({**result, "data_parallel": {"jax": measured()}})
    assert text.index("compute-bound spec (512") < text.index("data-parallel")
    assert "  jax             2       25.0     25-25" in text
    assert dp.data_parallel_table({}) == []


def test_run_files_the_row_under_data_parallel(monkeypatch):
    """run() hands its backends and repeats to run_data_parallel (every other
    measurement faked away)."""
    seen = []
    monkeypatch.setattr(bench, "cold_seconds", lambda backend: 0.0)
    monkeypatch.setattr(bench, "compare_cli_seconds", lambda: 0.0)
    monkeypatch.setattr(bench, "interleaved_medians", lambda fns, repeats: [1.0] * len(fns))
    monkeypatch.setattr(bench, "PEERS", {})
    monkeypatch.setattr(bench, "run_part", lambda part, backends, repeats: {})
    monkeypatch.setattr(bench, "run_data_parallel",
                        lambda backends, repeats: seen.append((backends, repeats)) or {"x": 1})
    result = bench.run(["numpy"], repeats=7)
    assert seen == [(["numpy"], 7)] and result["data_parallel"] == {"x": 1}


def test_each_backend_is_measured_in_a_fresh_process_with_one_thread(monkeypatch):
    """run_data_parallel's child processes: one per backend, every pool pinned to one
    thread, the last line of output the result (subprocess.run is faked)."""
    seen = []

    def fake_run(command, env, capture_output, text):
        seen.append((command, env))
        return type("Done", (), {"returncode": 0, "stderr": "",
                                 "stdout": f'a warning\n{{"backend": "{command[-2]}"}}\n'})()

    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    assert dp.run_data_parallel(["numpy", "jax"], repeats=6) == {
        "numpy": {"backend": "numpy"}, "jax": {"backend": "jax"}}
    assert [command[-2:] for command, _ in seen] == [["numpy", "6"], ["jax", "6"]]
    for command, env in seen:
        assert "measure_data_parallel" in command[2]
        assert all(env[name] == "1" for name in bench.ONE_THREAD)
        assert env["XLA_FLAGS"].split() == [bench.XLA_ONE_THREAD]   # and one JAX device


def test_a_failed_timing_process_is_an_error(monkeypatch):
    monkeypatch.setattr(bench.subprocess, "run", lambda command, env, capture_output, text: type(
        "Done", (), {"returncode": 1, "stderr": "boom", "stdout": ""})())
    with pytest.raises(RuntimeError, match="data-parallel timing process of torch failed:\nboom"):
        dp.run_data_parallel(["torch"], repeats=5)
