"""The data-parallel row of ``nnparity bench`` (issue 16): the compute-bound spec
(``run.COMPUTE_SPEC``, float32, batch 512, sizes (512, 1024, 1024, 10)) trained with
1 and with 2 replicas in each backend.

What is measured, and why so:

- **Threads.** Each backend is measured in a fresh process whose frameworks use one
  thread each (``run.one_thread_env``): one replica then computes on one core, and
  two replicas (NumPy: two threads, each BLAS call single-threaded and outside the
  GIL; torch: two processes of ``max(1, min(torch.get_num_threads(), cpu_count //
  2))`` = 1 thread each; JAX: two host devices, Eigen's pool off) can use two. The
  comparison is thus 1 core against 2 cores, which is what a 2-core machine allows.
  One thread is not always one core: XLA's CPU runtime runs independent
  operations of one device concurrently on its own pool (a 1-replica JAX run kept
  1.5 cores busy here), so the 1-replica runs are also pinned to one CPU
  (``on_cpus``: every thread of the process, Linux's ``sched_setaffinity``).
- **Steady state apart from the fixed cost.** A data-parallel call pays a fixed
  cost before its first step (torch: two processes that import torch and meet;
  JAX: a fresh process that imports JAX and compiles; NumPy threads: almost
  nothing). Every configuration is timed for ``SHORT_EPOCHS`` and for
  ``LONG_EPOCHS`` epochs (8 and 40 steps), in turn within every repetition (as
  ``run.interleaved_medians`` does), and the steady-state time per step is the
  median over repetitions of (long - short) / (the extra steps); the fixed cost is
  the median of short - (short's steps) x that repetition's time per step. The
  extra steps are many (32) because the launch's jitter (tenths of a second on a
  busy machine) lands in the difference. The throughput is the batch's rows over
  the time per step.
- **Parallel efficiency** = t1 / (2 x t2), with t1 and t2 the steady-state times
  per step of 1 and of 2 replicas (each step is the same global batch of 512 rows):
  1.0 means two cores train twice as fast as one, 0.5 that the second core
  brought nothing.
- **What the machine allows.** The same efficiency of a workload with nothing to
  share (``ceiling_work``: float32 1024 x 1024 matrix products in NumPy, all in one
  thread, or half in each of two threads), timed in turn with the backend's runs:
  on a shared machine the second core is often busy with someone else's work, and
  this shows by how much. The CPU time of each timing over its wall time (the
  cores it kept busy, children included) is reported too.

``tests/test_bench_replicas.py`` checks that the 2-replica run the bench times
trains the 1-replica run's parameters (the float32 policy), the arithmetic, and
the table.
"""
from __future__ import annotations

import contextlib
import functools
import os
import resource
import statistics
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence


from nnparity.backends.processes import DEVICE_FLAG   # dropped from the timing processes

#: the replica counts compared
REPLICA_COUNTS = (1, 2)
#: the two run lengths, in epochs of the compute data (``run.COMPUTE_ROWS`` rows, 4
#: steps of 512 rows an epoch); the steady state is their difference
SHORT_EPOCHS = 2
LONG_EPOCHS = 10
#: the matrix products of the ceiling workload (each 1024 x 1024, float32)
CEILING_PRODUCTS = 16
#: a ceiling efficiency below this says the second core was busy with other work
CEILING_WARNING = 0.9


# ----------------------------------------------------------------------------- arithmetic

def steady_and_fixed(short: Sequence[float], long: Sequence[float], short_steps: int,
                     long_steps: int) -> dict[str, float]:
    """The steady-state seconds per step and the fixed seconds per call of a
    configuration timed ``short`` (``short_steps`` steps) and ``long`` (``long_steps``)
    in each repetition: per repetition, step = (long - short) / (long_steps -
    short_steps) and fixed = short - short_steps * step; the medians, and the
    smallest and largest step (the spread of the estimate)."""
    if len(short) != len(long) or not short:
        raise ValueError(f"short and long: expected one timing of each per repetition, "
                         f"got {len(short)} and {len(long)}")
    if not 0 < short_steps < long_steps:
        raise ValueError(f"short_steps, long_steps: expected 0 < short_steps < long_steps, "
                         f"got {short_steps}, {long_steps}")
    steps = [(b - a) / (long_steps - short_steps) for a, b in zip(short, long, strict=True)]
    fixed = [a - short_steps * step for a, step in zip(short, steps, strict=True)]
    return {"seconds_per_step": statistics.median(steps), "fixed_seconds":
            statistics.median(fixed), "step_min": min(steps), "step_max": max(steps)}


def parallel_efficiency(one_replica: float, many_replicas: float, replicas: int = 2) -> float:
    """t1 / (replicas x t_replicas): the share of the ideal speed-up achieved when
    ``replicas`` replicas (one core each) do the work one replica does in
    ``one_replica`` seconds in ``many_replicas`` seconds."""
    if one_replica <= 0 or many_replicas <= 0:
        raise ValueError(f"one_replica, many_replicas: expected positive times, got "
                         f"{one_replica}, {many_replicas}")
    return one_replica / (replicas * many_replicas)


def efficiency_or_none(one_replica: float, many_replicas: float) -> float | None:
    """``parallel_efficiency`` of 2 replicas, or None when a time is not positive: a
    steady state that the machine's noise swamped (the longer run was timed no
    slower than the shorter) is reported as not measured, never as a number."""
    if one_replica <= 0 or many_replicas <= 0:
        return None
    return parallel_efficiency(one_replica, many_replicas)


# ----------------------------------------------------------------------------- what is timed

def replica_trainer(backend: str, replicas: int) -> Callable[[int], Any]:
    """``trainer(epochs)``: the compute-bound spec trained for ``epochs`` epochs on
    ``run.compute_data()`` by ``backend`` with ``replicas`` replicas, training alone
    (no metrics); it returns the trained parameters."""
    from nnparity.backends import train
    from nnparity.shared.bench.run import COMPUTE_SPEC, compute_data

    data = compute_data()

    def trainer(epochs: int):
        return train(COMPUTE_SPEC.replace(epochs=epochs), data, backend=backend,
                     metrics=False, replicas=replicas).params
    return trainer


def ceiling_work(threads: int, products: int = CEILING_PRODUCTS,
                 product: Callable[[], object] | None = None) -> Callable[[], None]:
    """``products`` calls of ``product`` (default: a float32 1024 x 1024 product in
    NumPy, ``run.matmul("numpy")``, whose BLAS releases the GIL), split evenly over
    ``threads`` threads: work with nothing to share."""
    from nnparity.shared.bench.run import matmul

    if products % threads:
        raise ValueError(f"products: expected a multiple of threads={threads}, got {products}")
    product = product or matmul("numpy")

    def share() -> None:
        for _ in range(products // threads):
            product()

    def work() -> None:
        if threads == 1:
            share()
            return
        workers = [threading.Thread(target=share) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return work


#: whether ``on_cpus`` can pin this process's threads (Linux)
CAN_PIN = hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")


def pin_threads(cpus: set[int]) -> None:
    """Allow every current thread of this process only ``cpus`` (threads it starts
    later inherit their starter's)."""
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except ProcessLookupError:           # the thread ended meanwhile
            pass


@contextlib.contextmanager
def on_cpus(cpus: set[int] | None) -> Iterator[None]:
    """Run the block with this process on ``cpus`` only (None: unchanged); every
    thread gets the CPUs it had before back afterwards."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    pin_threads(cpus)
    try:
        yield
    finally:
        pin_threads(before)


def pinned(fn: Callable[[], object], cpus: set[int] | None) -> Callable[[], object]:
    """``fn`` run ``on_cpus(cpus)``."""
    def call() -> object:
        with on_cpus(cpus):
            return fn()
    return call


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children so far."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, cores kept busy: CPU seconds / wall seconds) of one call."""
    start_cpu, start = cpu_seconds(), time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return wall, (cpu_seconds() - start_cpu) / wall


def interleaved_timings(fns: dict[str, Callable[[], object]], repeats: int
                        ) -> dict[str, list[tuple[float, float]]]:
    """Every ``timed`` call of each function, in turn within every repetition, after
    one untimed warm-up call each (compilation, first imports)."""
    for fn in fns.values():
        fn()
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            out[name].append(timed(fn))
    return out


def measure_data_parallel(backend: str, repeats: int) -> dict:
    """The row of ``backend`` (in a process with one thread per framework: see
    ``run_data_parallel``): for 1 and 2 replicas the steady-state seconds per step,
    rows per second, fixed seconds per call and cores kept busy; the parallel
    efficiency; the ceiling's efficiency; the threads; the load average before."""
    from nnparity.shared.bench.run import COMPUTE_ROWS, COMPUTE_SPEC, ONE_THREAD

    load = os.getloadavg()[0]
    steps_per_epoch = COMPUTE_ROWS // COMPUTE_SPEC.batch_size
    one_cpu = {min(os.sched_getaffinity(0))} if CAN_PIN else None
    fns: dict[str, Callable[[], object]] = {}
    for count in REPLICA_COUNTS:
        trainer = replica_trainer(backend, count)
        cpus = one_cpu if count == 1 else None
        fns[f"{count} short"] = pinned(functools.partial(trainer, SHORT_EPOCHS), cpus)
        fns[f"{count} long"] = pinned(functools.partial(trainer, LONG_EPOCHS), cpus)
    for count in REPLICA_COUNTS:
        fns[f"ceiling {count}"] = pinned(ceiling_work(count), one_cpu if count == 1 else None)
    timings = interleaved_timings(fns, repeats)
    rows: dict[str, dict[str, float]] = {}
    for count in REPLICA_COUNTS:
        short = [wall for wall, _ in timings[f"{count} short"]]
        long = [wall for wall, _ in timings[f"{count} long"]]
        row = steady_and_fixed(short, long, SHORT_EPOCHS * steps_per_epoch,
                               LONG_EPOCHS * steps_per_epoch)
        row["rows_per_second"] = COMPUTE_SPEC.batch_size / row["seconds_per_step"]
        row["cores_busy"] = statistics.median(busy for _, busy in timings[f"{count} long"])
        rows[str(count)] = row
    ceiling = {str(count): statistics.median(wall for wall, _ in timings[f"ceiling {count}"])
               for count in REPLICA_COUNTS}
    torch = sys.modules.get("torch")
    torch_threads: int | None = torch.get_num_threads() if torch else None
    per_replica = (None if torch_threads is None else    # backends/torch/replicas.py's rule
                   max(1, min(torch_threads, (os.cpu_count() or 1) // 2)))
    return {
        "replicas": rows,
        "efficiency": efficiency_or_none(rows["1"]["seconds_per_step"],
                                         rows["2"]["seconds_per_step"]),
        "ceiling_efficiency": efficiency_or_none(ceiling["1"], ceiling["2"]),
        "steps": {"short": SHORT_EPOCHS * steps_per_epoch,
                  "long": LONG_EPOCHS * steps_per_epoch},
        "batch_size": COMPUTE_SPEC.batch_size, "dtype": COMPUTE_SPEC.dtype,
        "threads": {**ONE_THREAD, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
                    "torch.get_num_threads()": torch_threads,
                    "torch threads per replica (2 replicas)": per_replica},
        "one_replica_cpus": None if one_cpu is None else sorted(one_cpu),
        "cpu_count": os.cpu_count(), "load_average": load, "repeats": repeats,
    }


def run_data_parallel(backends: Sequence[str], repeats: int) -> dict:
    """{backend: ``measure_data_parallel(backend, repeats)``}, each measured in its own
    fresh process with one thread per framework (``run.one_thread_env``, as
    ``run.run_part`` measures the per-epoch parts) and one JAX device, as a user's
    process starts (a ``DEVICE_FLAG`` in ``XLA_FLAGS`` is dropped), so that 2 JAX
    replicas are timed with the fresh process ``train`` launches for them."""
    from nnparity.shared.bench.run import json_from_fresh_process, one_thread_env

    code = ("import json, sys\n"
            "from nnparity.shared.bench.replicas import measure_data_parallel\n"
            "print(json.dumps(measure_data_parallel(sys.argv[1], int(sys.argv[2]))))\n")
    env = one_thread_env(dict(os.environ))
    env["XLA_FLAGS"] = " ".join(flag for flag in env["XLA_FLAGS"].split()
                                if not flag.startswith(DEVICE_FLAG))
    return {backend: json_from_fresh_process(code, [backend, str(repeats)], env,
                                             f"the data-parallel timing process of {backend}")
            for backend in backends}


# ----------------------------------------------------------------------------- table

def ratio(value: float | None) -> str:
    """An efficiency as the table shows it: two decimals, or "n/a" (not measured)."""
    return "n/a" if value is None else f"{value:.2f}"


def data_parallel_table(measured: dict | None) -> list[str]:
    """The row's lines of ``run.table`` (none for a result from before the row): per
    backend and replica count the steady-state ms per step with the range of its
    per-repetition estimates, rows per second, fixed seconds per call, cores kept
    busy; per backend the efficiency, the ceiling and the load average; and a
    warning when a ceiling says that the second core was not free."""
    if not measured:
        return []
    first = next(iter(measured.values()))
    pinning = ("pinned to one CPU" if first.get("one_replica_cpus") else
               "not pinned to one CPU")
    lines = [f"data-parallel: compute-bound spec, {first['dtype']}, batch "
             f"{first['batch_size']}, 1 and 2 replicas (median of {first['repeats']}; "
             f"steady state = ({first['steps']['long']} steps - {first['steps']['short']} "
             f"steps) / {first['steps']['long'] - first['steps']['short']})",
             f"  one thread per replica, each backend in a fresh process; {first['cpu_count']} "
             f"CPUs; 1 replica {pinning}; efficiency = t1 / (2 t2); ceiling = the same "
             f"for NumPy matmuls in 1 vs 2 threads",
             f"  {'backend':<8} {'replicas':>8} {'ms / step':>10} {'range':>9} {'rows / s':>9} "
             f"{'fixed s':>8} {'cores':>6} {'efficiency':>11} {'ceiling':>8} {'load':>5}"]
    for backend, m in measured.items():
        for count, row in m["replicas"].items():
            tail = (f" {ratio(m['efficiency']):>11} {ratio(m['ceiling_efficiency']):>8} "
                    f"{m['load_average']:>5.1f}" if count != "1" else "")
            spread = f"{1000 * row['step_min']:.0f}-{1000 * row['step_max']:.0f}"
            lines.append(f"  {backend:<8} {count:>8} {1000 * row['seconds_per_step']:>10.1f} "
                         f"{spread:>9} {row['rows_per_second']:>9.0f} "
                         f"{row['fixed_seconds']:>8.2f} {row['cores_busy']:>6.2f}{tail}")
    busy = [backend for backend, m in measured.items()
            if m["ceiling_efficiency"] is None or m["ceiling_efficiency"] < CEILING_WARNING]
    if busy:
        lines.append(f"  ceiling below {CEILING_WARNING:g} for {', '.join(busy)}: other work "
                     f"kept the second core busy, so those efficiencies measure the machine's "
                     f"load as much as the backends")
    return lines
