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
2. Three recipes in float32, the dtype they are trained in, each a ``Part`` (``PARTS``)
   timed in seconds per epoch, warm, in each backend and in peers written the way a
   user of the framework would, with the ratios of its targets:
   - the digits CNN (``recipes.digits_cnn_spec``: two 3x3 convolutions, max-pooling,
     BatchNorm, Dropout, a Dense head) on ``load_dataset("digits_images")``; peers
     ``peers.CNN_PEERS`` (a ``torch.nn`` + ``torch.optim`` loop, a jitted ``lax.scan``
     epoch); targets ``CNN_TARGETS``;
   - the row-by-row GRU (``recipes.digits_gru_spec``: GRU(32) over the 8 rows of each
     8x8 digit, the last step -> Dense 10) on ``load_dataset("digits_rows")``; peer
     ``peers_sequence.GRU_PEERS`` (``torch.nn.GRU`` + ``nn.Linear`` + ``torch.optim``);
   - the transformer block (``recipes.zen_transformer_spec``: Embedding, a pre-LN block
     with causal attention, LayerNorm, Dense; cross-entropy at every position) on
     ``load_dataset("zen")``; peer ``peers_sequence.TRANSFORMER_PEERS`` (``torch.nn``
     modules in ``nn.TransformerEncoderLayer``'s structure + ``torch.optim``).
   The sequence models' targets are issue 14's (``sequence_targets``). All three are
   trained with cross-entropy, Adam, batch 32, shuffled every epoch. Each
   implementation trains for its own number of epochs per timing, doubled from 1
   until a timing takes ``TIMING_SECONDS`` (``epochs_per_timing``), so that the fast
   ones are not timed at the clock's resolution. Each part is timed in its own fresh
   process with one thread per framework (``run_part`` says why). The digits parts
   need scikit-learn (the ``datasets`` extra) for their data; skipped without it.
3. A compute-bound spec, sizes (512, 1024, 1024, 10), float32, batch 512, mse,
   SGD, synthetic data: each backend's achieved GFLOP/s, counting
   6 * batch * sum(in * out) per step, next to the same framework's 1024 x 1024
   float32 matmul rate, timed in turn with that backend's training.
4. Data parallel (issue 16): the compute-bound spec with 1 and 2 replicas in each
   backend, one thread per replica, each backend in a fresh process: the
   steady-state time per step and rows per second, the fixed cost of a call
   (launch, compilation) apart, the cores kept busy, and the parallel efficiency
   t1 / (2 t2) next to that of matmuls with nothing to share (``replicas``).

Every peer returns its trained parameters; the tests check that they equal the
backends' (so the benchmark compares equal work). Nothing here is imported by
the library: only ``nnparity bench`` loads this package.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from nnparity.shared.bench.peers import CNN_PEERS, PEERS, State
from nnparity.shared.bench.peers_sequence import GRU_PEERS, TRANSFORMER_PEERS
from nnparity.shared.bench.replicas import data_parallel_table, run_data_parallel
from nnparity.shared.core.data import Dataset, notebook_data
from nnparity.shared.core.optimizers import SGD
from nnparity.shared.core.recipes import RECIPES
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


def interleaved_medians(fns: Sequence[Callable[[], object]], repeats: int,
                        warm_up: bool = True) -> list[float]:
    """Median wall time of each function, timed in turn within every repetition
    (after one warm-up call each, unless ``warm_up`` is False because the caller has
    just called each of them), so that a change in the machine's load affects all of
    them alike and their ratio stays meaningful."""
    if warm_up:
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


# ----------------------------------------------------------------------------- per-epoch parts

#: the recipes of the per-epoch parts are timed in float32, the dtype they are trained in
DTYPE = "float32"
#: the epochs per timing are doubled until one timing takes at least this long
TIMING_SECONDS = 0.5
#: and at most this many epochs per timing
MAX_EPOCHS = 512

#: ratio name -> (numerator, denominator, the target: the ratio at most this, or None
#: for a ratio shown without a target); the names of the rows are "nnparity <backend>"
#: for the backends, the peer's name otherwise
Targets = dict[str, tuple[str, str, float | None]]


class Part(NamedTuple):
    """A part of the bench timed in seconds per epoch: a recipe in ``DTYPE`` trained by
    every backend and by ``peers``, with the ratios of ``targets``. Its result is
    ``run(...)[key]``."""

    key: str
    title: str                  # what the table's heading calls it
    recipe: str                 # a name of recipes.RECIPES: the spec and its data set
    peers: dict[str, tuple[str, Callable[[NetworkSpec, Dataset], State]]]
    targets: Targets
    needs_sklearn: bool = False  # its data set is scikit-learn's digits
    note: str = ""              # said after the dtype in the heading


CNN_TARGETS: Targets = {
    "numpy / torch": ("nnparity numpy", "nnparity torch", 3.0),
    "jax / torch": ("nnparity jax", "nnparity torch", 1.0),
    "torch / torch.nn + torch.optim": ("nnparity torch", "torch.nn + torch.optim", 1.1),
}


def sequence_targets(peer: str) -> Targets:
    """Issue 14's targets for the sequence models (NumPy at most 5x the torch backend,
    JAX warm at most the torch backend), and the torch backend against ``peer``
    without a target."""
    return {"numpy / torch": ("nnparity numpy", "nnparity torch", 5.0),
            "jax / torch": ("nnparity jax", "nnparity torch", 1.0),
            f"torch / {peer}": ("nnparity torch", peer, None)}


CNN = Part("cnn", "digits CNN (digits_cnn_spec)", "digits_cnn", CNN_PEERS, CNN_TARGETS,
           needs_sklearn=True, note=", the dtype CNNs are trained in")
GRU = Part("gru", "row-by-row GRU (digits_gru_spec)", "digits_gru", GRU_PEERS,
           sequence_targets(next(iter(GRU_PEERS))), needs_sklearn=True)
TRANSFORMER = Part("transformer", "transformer block (zen_transformer_spec)", "zen_transformer",
                   TRANSFORMER_PEERS, sequence_targets(next(iter(TRANSFORMER_PEERS))))
#: key -> Part, in the order ``run`` times them
PARTS = {part.key: part for part in (CNN, GRU, TRANSFORMER)}


def part_case(part: Part, dtype: str = DTYPE) -> tuple[NetworkSpec, Dataset]:
    """The spec a part times (its recipe in ``dtype``) and the recipe's data set."""
    from nnparity.shared.core.datasets import load_dataset

    recipe = RECIPES[part.recipe]
    return recipe.spec(dtype), load_dataset(recipe.dataset)


def epochs_per_timing(trainer: Callable[[int], object], seconds: float = TIMING_SECONDS,
                      most: int = MAX_EPOCHS) -> int:
    """How many epochs make one call of ``trainer(epochs)`` take ``seconds`` or more:
    after a warm-up call (compilation), 1, 2, 4, ... epochs until a call does (at
    most ``most``). A timing is then between ``seconds`` and about twice that. The
    last call trained the returned count: it is the timings' warm-up."""
    trainer(1)
    epochs = 1
    while True:
        start = time.perf_counter()
        trainer(epochs)
        if time.perf_counter() - start >= seconds or epochs >= most:
            return epochs
        epochs = min(2 * epochs, most)


def part_trainers(part: Part, backends
                  ) -> tuple[dict[str, Callable[[int], object]], dict[str, str]]:
    """{row name: trainer(epochs)} of ``part`` for every backend and installed peer, and
    {row name: why skipped} for the peers whose framework is missing."""
    from nnparity.backends import train

    spec, data = part_case(part)
    trainers: dict[str, Callable[[int], object]] = {}
    for backend in backends:
        trainers[f"nnparity {backend}"] = functools.partial(
            lambda backend, epochs: train(spec.replace(epochs=epochs), data, backend=backend,
                                          metrics=False).params, backend)
    skipped = {}
    for name, (module, trainer) in part.peers.items():
        if installed(module):
            trainers[name] = functools.partial(
                lambda trainer, epochs: trainer(spec.replace(epochs=epochs), data), trainer)
        else:
            skipped[name] = f"{module} is not installed"
    return trainers, skipped


def part_ratios(part: Part, seconds_per_epoch: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Every ratio of ``part.targets`` whose two rows were measured:
    {name: {"measured": ratio, "target": bound or None, "met": ratio <= bound, or None
    without a target}}."""
    out = {}
    for name, (top, bottom, target) in part.targets.items():
        if top in seconds_per_epoch and bottom in seconds_per_epoch:
            ratio = seconds_per_epoch[top] / seconds_per_epoch[bottom]
            out[name] = {"measured": ratio, "target": target,
                         "met": None if target is None else ratio <= target}
    return out


#: the environment of a part's timing process: one thread in every framework's pool
#: (OpenMP, OpenBLAS and MKL, which NumPy's BLAS and torch use; XLA's Eigen pool)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def one_thread_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with every framework's thread pool set to one thread (``ONE_THREAD``,
    and ``XLA_ONE_THREAD`` added to whatever ``XLA_FLAGS`` holds)."""
    env = {**environ, **ONE_THREAD}
    flags = env.get("XLA_FLAGS", "")
    if XLA_ONE_THREAD not in flags.split():
        env["XLA_FLAGS"] = f"{flags} {XLA_ONE_THREAD}".strip()
    return env


def run_part(part: Part, backends, repeats: int) -> dict:
    """``part``'s share of ``run``, measured by ``measure_part`` in a fresh process whose
    frameworks each use one thread (``one_thread_env``): a step of these recipes is
    small, and on a machine that other work keeps busy the thread pools of OpenBLAS
    and torch wait for each other's threads, which made NumPy's and torch's epochs
    several to tens of times slower, by an amount that moved with the load."""
    if part.needs_sklearn and not installed("sklearn"):
        return {"skipped": f"scikit-learn (the datasets extra) is not installed: the "
                           f"{RECIPES[part.recipe].dataset} data needs it"}
    code = ("import json, sys\n"
            "from nnparity.shared.bench.run import measure_part\n"
            "print(json.dumps(measure_part(sys.argv[1], sys.argv[2:-1], int(sys.argv[-1]))))\n")
    return json_from_fresh_process(code, [part.key, *backends, str(repeats)],
                                   one_thread_env(dict(os.environ)),
                                   f"the timing process of the {part.title}")


def json_from_fresh_process(code: str, args: Sequence[str], env: dict[str, str],
                            what: str) -> Any:
    """``python -c code *args`` in a fresh process with ``env``; the JSON value on the
    last line it prints. A RuntimeError saying ``what`` failed, with its stderr, when
    it fails."""
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_part(key: str, backends, repeats: int) -> dict:
    """Seconds per epoch (warm) of every row of ``PARTS[key]``, the epochs each timing
    trained, the ratios with their targets, what was skipped, the threads torch used,
    and the load average before the timings. ``run_part`` calls it in a fresh process."""
    part = PARTS[key]
    load = os.getloadavg()[0]
    trainers, skipped = part_trainers(part, backends)
    epochs = {name: epochs_per_timing(trainer) for name, trainer in trainers.items()}
    medians = interleaved_medians(     # epochs_per_timing's last call warmed each up
        [functools.partial(trainer, epochs[name]) for name, trainer in trainers.items()],
        repeats, warm_up=False)
    per_epoch = {name: seconds / epochs[name]
                 for name, seconds in zip(trainers, medians, strict=True)}
    spec, data = part_case(part)
    steps = -(-len(data.x_train) // spec.batch_size)
    torch = sys.modules.get("torch")
    return {"dtype": spec.dtype, "rows": len(data.x_train), "batch_size": spec.batch_size,
            "steps_per_epoch": steps, "seconds_per_epoch": per_epoch, "epochs": epochs,
            "skipped_peers": skipped, "ratios": part_ratios(part, per_epoch),
            "threads": {**ONE_THREAD, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
                        "torch.get_num_threads()": torch.get_num_threads() if torch else None},
            "load_average": load}


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
    for part in PARTS.values():
        result[part.key] = run_part(part, backends, repeats)

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
    result["data_parallel"] = run_data_parallel(backends, repeats)
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
    for part in PARTS.values():
        lines += part_table(part, result.get(part.key), result["repeats"])
    lines.append("compute-bound spec (512, 1024, 1024, 10), float32, batch 512")
    lines.append(f"  {'backend':<10} {'GFLOP/s':>8} {'matmul GFLOP/s':>15} {'ratio':>6}")
    for backend, c in result["compute"].items():
        lines.append(f"  {backend:<10} {c['gflops']:>8.1f} {c['matmul_gflops']:>15.1f} "
                     f"{c['gflops'] / c['matmul_gflops']:>6.2f}")
    lines += data_parallel_table(result.get("data_parallel"))
    return "\n".join(lines)


def part_table(part: Part, measured: dict | None, repeats: int) -> list[str]:
    """``part``'s lines of ``table``: seconds per epoch, epochs per timing, the ratios
    with their targets (met or not, as measured; a ratio without a target says so)."""
    if measured is None:
        return []
    if "seconds_per_epoch" not in measured:
        return [f"{part.title}: skipped: {measured['skipped']}"]
    m = measured
    lines = [f"{part.title}, {m['dtype']}{part.note}; {m['steps_per_epoch']} steps of batch "
             f"{m['batch_size']} an epoch (median of {repeats}, warm)",
             f"  timed in a fresh process, one thread per framework; load average "
             f"{m['load_average']:.1f} before the timings",
             f"  {'implementation':<32} {'s / epoch':>10} {'epochs per timing':>18}"]
    for name, seconds in m["seconds_per_epoch"].items():
        lines.append(f"  {name:<32} {seconds:>10.4f} {m['epochs'][name]:>18}")
    for name, why in m["skipped_peers"].items():
        lines.append(f"  {name:<32} skipped: {why}")
    for name, r in m["ratios"].items():
        verdict = ("no target" if r["target"] is None else
                   f"target <= {r['target']:g}: {'met' if r['met'] else 'NOT MET'}")
        lines.append(f"  {name + ' = ' + format(r['measured'], '.2f'):<44} {verdict}")
    missing = [name for name in part.targets if name not in m["ratios"]]
    if missing:
        lines.append(f"  not measured (a row is missing): {', '.join(missing)}")
    return lines


def write_json(result: dict, path: str) -> None:
    """Write ``result`` to ``path`` as JSON, atomically (``files.write_atomic``)."""
    path = check_output_path("path", path)
    data = (json.dumps(result, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_atomic(path, lambda f: f.write(data))
