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
     (jax backend) when Keras is installed;
   - ``nnparity compare`` end to end in a fresh process, imports included.
2. A compute-bound spec, sizes (512, 1024, 1024, 10), float32, batch 512, mse,
   SGD, synthetic data: each backend's achieved GFLOP/s, counting
   6 * batch * sum(in * out) per step, next to the same framework's 1024 x 1024
   float32 matmul rate, timed in turn with that backend's training.

Every peer returns its trained parameters; the tests check that they equal the
backends' (so the benchmark compares equal work).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from typing import Callable, Sequence

import numpy as np

from nnparity.shared.core.data import Dataset, batch_plan, notebook_data
from nnparity.shared.io.files import check_output_path, write_atomic
from nnparity.shared.core.init import init_params
from nnparity.shared.core.optimizers import SGD
from nnparity.shared.core.spec import NetworkSpec, notebook_spec

COMPUTE_SPEC = NetworkSpec(sizes=(512, 1024, 1024, 10), activation="relu", init="he_normal",
                           loss="mse", optimizer=SGD(lr=1e-3), batch_size=512, epochs=4,
                           seed=0, dtype="float32")
COMPUTE_ROWS = 512 * 4


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------- peers
# Each peer trains notebook_spec() on notebook_data() the way a user of that
# tool would write it, from the same initial parameters and batches, and
# returns [(W, b), ...] as NumPy arrays.

def notebook_loop(spec: NetworkSpec, data: Dataset):
    """The seed notebook's own loop (cells 6-16), parameters from init_params."""
    (hidden_weight, hidden_bias), (output_weight, output_bias) = init_params(spec)
    train_features, train_labels = data.x_train, data.y_train
    learning_rate = spec.optimizer.lr

    def forward(x, w, b):
        return x @ w.T + b

    def relu(x):
        return np.maximum(0, x)

    def gradient(p, y):
        return 2 * (p - y) / len(y)

    def backward(x, d, w, b):
        w -= d.T @ x * learning_rate
        b -= np.sum(d, axis=0) * learning_rate
        return w, b

    for epoch in range(spec.epochs):
        for i in range(0, len(train_features), spec.batch_size):
            features = train_features[i: i + spec.batch_size]
            labels = train_labels[i: i + spec.batch_size]
            hidden = relu(forward(features, hidden_weight, hidden_bias))
            predictions = forward(hidden, output_weight, output_bias)
            output_delta = gradient(predictions, labels)
            hidden_delta = (hidden > 0) * (output_delta @ output_weight)
            output_weight, output_bias = backward(hidden, output_delta, output_weight, output_bias)
            hidden_weight, hidden_bias = backward(features, hidden_delta, hidden_weight,
                                                  hidden_bias)
    return [(hidden_weight, hidden_bias), (output_weight, output_bias)]


def torch_nn_loop(spec: NetworkSpec, data: Dataset):
    """torch.nn.Sequential + torch.optim.SGD + F.mse_loss."""
    import torch

    layers = []
    for (w, b), last in zip(init_params(spec), [False] * (len(spec.sizes) - 2) + [True],
                            strict=True):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear] if last else [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.optimizer.lr)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    for epoch in range(spec.epochs):
        for i in range(0, len(x), spec.batch_size):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[i:i + spec.batch_size]),
                                                y[i:i + spec.batch_size])
            loss.backward()
            optimizer.step()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linears]


def _jax_mse(params, x, y):
    import jax
    import jax.numpy as jnp

    h = x
    for w, b in params[:-1]:
        h = jax.nn.relu(h @ w.T + b)
    w, b = params[-1]
    return jnp.mean((h @ w.T + b - y) ** 2)


def optax_loop(spec: NetworkSpec, data: Dataset):
    """optax.sgd with a jitted step called from a Python loop (float64)."""
    import jax
    import optax

    with jax.enable_x64(True):
        optimizer = optax.sgd(spec.optimizer.lr)

        @jax.jit
        def step(params, opt_state, x, y):
            grads = jax.grad(_jax_mse)(params, x, y)
            updates, opt_state = optimizer.update(grads, opt_state)
            return optax.apply_updates(params, updates), opt_state

        params = [tuple(jax.numpy.asarray(a) for a in pair) for pair in init_params(spec)]
        opt_state = optimizer.init(params)
        x, y = data.x_train, data.y_train
        for epoch in range(spec.epochs):
            for i in range(0, len(x), spec.batch_size):
                params, opt_state = step(params, opt_state, x[i:i + spec.batch_size],
                                         y[i:i + spec.batch_size])
        return [(np.array(w), np.array(b)) for w, b in params]


def jax_scan_loop(spec: NetworkSpec, data: Dataset):
    """The minimal hand-written compiled loop: jit + lax.scan over every batch of the run."""
    import jax

    with jax.enable_x64(True):
        return [(np.array(w), np.array(b)) for w, b in _jax_scan_run(spec, data)]


_SCAN_CACHE: dict = {}


def _jax_scan_run(spec, data):
    import jax
    from jax import lax

    plan = batch_plan(len(data.x_train), spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    rows = plan.full.reshape(-1, spec.batch_size)                  # (steps, batch)
    if "run" not in _SCAN_CACHE:
        @jax.jit
        def run(params, x, y, rows, lr):
            def step(params, r):
                grads = jax.grad(_jax_mse)(params, x[r], y[r])
                return jax.tree.map(lambda p, g: p - lr * g, params, grads), None
            return lax.scan(step, params, rows)[0]
        _SCAN_CACHE["run"] = run
    return _SCAN_CACHE["run"](init_params(spec), data.x_train, data.y_train, rows,
                              spec.optimizer.lr)


def keras_fit(spec: NetworkSpec, data: Dataset):
    """Keras 3 Sequential.fit on the jax backend (KERAS_BACKEND=jax before import)."""
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    model = keras.Sequential([keras.Input((spec.sizes[0],))] + [
        keras.layers.Dense(n, activation="relu" if k < len(spec.sizes) - 2 else None,
                           dtype="float64") for k, n in enumerate(spec.sizes[1:])])
    model.set_weights([a for w, b in init_params(spec) for a in (w.T, b)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=spec.optimizer.lr), loss="mse")
    model.fit(data.x_train, data.y_train, batch_size=spec.batch_size, epochs=spec.epochs,
              shuffle=False, verbose=0)
    weights = model.get_weights()
    return [(weights[2 * k].T, weights[2 * k + 1]) for k in range(len(weights) // 2)]


#: name -> (module that must be installed, trainer)
PEERS = {
    "notebook loop": ("numpy", notebook_loop),
    "torch.nn + torch.optim": ("torch", torch_nn_loop),
    "optax jitted step": ("optax", optax_loop),
    "jit + lax.scan (hand-written)": ("jax", jax_scan_loop),
    "keras 3 fit (jax)": ("keras", keras_fit),
}


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
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def compute_data() -> Dataset:
    rng = np.random.default_rng(0)
    spec = COMPUTE_SPEC
    x = rng.standard_normal((COMPUTE_ROWS, spec.sizes[0])).astype(np.float32)
    y = rng.standard_normal((COMPUTE_ROWS, spec.sizes[-1])).astype(np.float32)
    return Dataset(x, y, x[:8], y[:8])


def flops_per_step(spec: NetworkSpec) -> float:
    """6 * batch * sum(in * out): forward 2, backward 4 flops per weight and row."""
    return 6 * spec.batch_size * sum(i * o for i, o in zip(spec.sizes[:-1], spec.sizes[1:],
                                                           strict=True))


def run(backends, repeats: int = 5) -> dict:
    """Every measurement, as a JSON-able dict."""
    spec, data = notebook_spec(), notebook_data()
    result = {"repeats": repeats, "notebook": {}, "peers": {}, "skipped": {}, "cold": {},
              "compute": {}}
    for backend in backends:
        result["cold"][backend] = cold_seconds(backend)
    timed = {("notebook", backend): backend_trainer(backend, spec, data) for backend in backends}
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
