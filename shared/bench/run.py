"""``nnparity bench``: the backends against what users would pick instead.

Measured in one run on one machine, medians over ``repeats`` timings after a
warm-up. Timings on a shared machine are noisy, so what is compared is timed
in turn within every repetition (``interleaved_medians``): a change in load
then slows both sides of a ratio alike.

1. The notebook spec (2000 SGD steps, float64):
   - each backend warm, and cold (the first ``train`` call in a fresh process,
     compilation included, imports excluded);
   - the peers training the same network: the notebook's own NumPy loop, a
     ``torch.nn`` + ``torch.optim`` loop, an ``optax`` jitted-step loop, a
     minimal hand-written ``jit`` + ``lax.scan`` loop, and Keras 3 ``fit``
     (jax backend, in float32: all Keras 3 computes in) when Keras is installed
     (``peers``);
   - ``nnparity compare`` end to end in a fresh process, imports included.
2. A compute-bound spec, sizes (512, 1024, 1024, 10), float32, batch 512, mse,
   SGD, synthetic data: each backend's achieved GFLOP/s, counting
   6 * batch * sum(in * out) per step, next to the same framework's 1024 x 1024
   float32 matmul rate, timed in turn with that backend's training.

Every peer returns its trained parameters; the tests check that they equal the
backends' (so the benchmark compares equal work). Nothing here is imported by
the library: only ``nnparity bench`` loads this package.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from nnparity.shared.bench.peers import PEERS
from nnparity.shared.core.data import Dataset, notebook_data
from nnparity.shared.core.optimizers import SGD
from nnparity.shared.core.spec import NetworkSpec, notebook_spec
from nnparity.shared.io.files import check_output_path, write_atomic

COMPUTE_SPEC = NetworkSpec(sizes=(512, 1024, 1024, 10), activation="relu", init="he_normal",
                           loss="mse", optimizer=SGD(lr=1e-3), batch_size=512, epochs=4,
                           seed=0, dtype="float32")
COMPUTE_ROWS = 512 * 4


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------- runs

def backend_trainer(backend: str, spec: NetworkSpec, data: Dataset):
    from nnparity.backends import train

    return lambda: train(spec, data, backend=backend).params


def cold_seconds(backend: str) -> float:
    """The first train() call in a fresh process: compilation included, imports excluded."""
    framework = {"numpy": "numpy", "torch": "torch", "jax": "jax"}[backend]
    code = (f"import time, {framework}\n"
            "from nnparity.backends import train, get_backend\n"
            "from nnparity.shared import notebook_spec, notebook_data\n"
            f"get_backend({backend!r}); spec, data = notebook_spec(), notebook_data()\n"
            "start = time.perf_counter()\n"
            f"train(spec, data, backend={backend!r})\n"
            "print(time.perf_counter() - start)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def compare_cli_seconds() -> float:
    """``nnparity compare`` on the notebook spec in a fresh process, imports included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nnparity.shared.cli.main", "compare"],
                   capture_output=True, check=True)
    return time.perf_counter() - start


MATMUL_N = 1024


def matmul(framework: str) -> Callable[[], object]:
    """One 1024 x 1024 float32 matrix product in ``framework`` (2 n^3 flops)."""
    a = np.random.default_rng(0).standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    if framework == "numpy":
        return lambda: a @ a
    if framework == "torch":
        import torch
        t = torch.from_numpy(a)
        return lambda: t @ t
    import jax
    j = jax.numpy.asarray(a)
    product = jax.jit(lambda m: m @ m)
    return lambda: product(j).block_until_ready()


def interleaved_medians(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function, timed in turn within every repetition
    (after one warm-up call each), so that a change in the machine's load
    affects all of them alike and their ratio stays meaningful."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def compute_data() -> Dataset:
    rng = np.random.default_rng(0)
    spec = COMPUTE_SPEC
    x = rng.standard_normal((COMPUTE_ROWS, *spec.input_shape)).astype(np.float32)
    y = rng.standard_normal((COMPUTE_ROWS, spec.n_outputs)).astype(np.float32)
    return Dataset(x, y, x[:8], y[:8])


def flops_per_step(spec: NetworkSpec) -> float:
    """6 * batch * sum(in * out): forward 2, backward 4 flops per weight and row."""
    sizes = spec.sizes
    assert sizes is not None, "the benchmark's networks are MLPs (NetworkSpec(sizes=...))"
    return 6 * spec.batch_size * sum(i * o for i, o in zip(sizes[:-1], sizes[1:], strict=True))


def run(backends, repeats: int = 5) -> dict:
    """Every measurement, as a JSON-able dict."""
    spec, data = notebook_spec(), notebook_data()
    result: dict[str, Any] = {"repeats": repeats, "notebook": {}, "peers": {}, "skipped": {},
                              "cold": {}, "compute": {}}
    for backend in backends:
        result["cold"][backend] = cold_seconds(backend)
    timed: dict[tuple[str, str], Callable[[], object]] = {
        ("notebook", backend): backend_trainer(backend, spec, data) for backend in backends}
    for name, (module, trainer) in PEERS.items():
        if installed(module):
            timed["peers", name] = functools.partial(trainer, spec, data)
        else:
            result["skipped"][name] = f"{module} is not installed"
    medians = interleaved_medians(list(timed.values()), repeats)
    for (group, name), seconds in zip(timed, medians, strict=True):
        result[group][name] = seconds
    result["compare_cli_cold"] = compare_cli_seconds()

    cspec, cdata = COMPUTE_SPEC, compute_data()
    steps = cspec.epochs * COMPUTE_ROWS // cspec.batch_size
    for backend in backends:
        seconds, matmul_seconds = interleaved_medians(
            [backend_trainer(backend, cspec, cdata), matmul(backend)], repeats)
        result["compute"][backend] = {
            "seconds": seconds,
            "gflops": flops_per_step(cspec) * steps / seconds / 1e9,
            "matmul_gflops": 2 * MATMUL_N ** 3 / matmul_seconds / 1e9,
        }
    return result


def table(result: dict) -> str:
    """The human-readable table, with ratios."""
    nb, peers = result["notebook"], result["peers"]
    lines = [f"notebook spec, 2000 SGD steps, float64 (median of {result['repeats']}, warm)"]
    lines.append(f"  {'implementation':<32} {'seconds':>10} {'cold s':>8}")
    for backend, seconds in nb.items():
        lines.append(f"  {'nnparity ' + backend:<32} {seconds:>10.4f} "
                     f"{result['cold'][backend]:>8.3f}")
    for name, seconds in peers.items():
        lines.append(f"  {name:<32} {seconds:>10.4f}")
    for name, why in result["skipped"].items():
        lines.append(f"  {name:<32} skipped: {why}")
    ratios = []
    if "numpy" in nb and "notebook loop" in peers:
        ratios.append(f"numpy / notebook loop = {nb['numpy'] / peers['notebook loop']:.2f}")
    if "torch" in nb and "torch.nn + torch.optim" in peers:
        ratios.append(f"torch / torch.nn+optim = "
                      f"{nb['torch'] / peers['torch.nn + torch.optim']:.2f}")
    if "jax" in nb and "jit + lax.scan (hand-written)" in peers:
        ratios.append(f"jax / hand-written scan = "
                      f"{nb['jax'] / peers['jit + lax.scan (hand-written)']:.2f}")
    lines += ["  ratios: " + "; ".join(ratios)] if ratios else []
    lines.append(f"  nnparity compare, fresh process, imports included: "
                 f"{result['compare_cli_cold']:.2f} s")
    lines.append("compute-bound spec (512, 1024, 1024, 10), float32, batch 512")
    lines.append(f"  {'backend':<10} {'GFLOP/s':>8} {'matmul GFLOP/s':>15} {'ratio':>6}")
    for backend, c in result["compute"].items():
        lines.append(f"  {backend:<10} {c['gflops']:>8.1f} {c['matmul_gflops']:>15.1f} "
                     f"{c['gflops'] / c['matmul_gflops']:>6.2f}")
    return "\n".join(lines)


def write_json(result: dict, path: str) -> None:
    """Write ``result`` to ``path`` as JSON, atomically (``files.write_atomic``)."""
    path = check_output_path("path", path)
    data = (json.dumps(result, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_atomic(path, lambda f: f.write(data))
