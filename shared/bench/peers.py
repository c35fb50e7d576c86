"""The benchmark's peers: the notebook spec trained the way a user of each tool would.

Each peer trains ``spec`` on ``data`` from the same initial parameters
(``init_params``) on the same batches as the backends, and returns
``[(W (out, in), b (out,)), ...]`` as NumPy arrays; ``tests/test_bench.py``
checks that they equal the backends' parameters, so the benchmark compares
equal work. Every framework is imported inside its peer.

Keras 3 is the exception on precision: it computes in float32 whatever it is
asked for (its type promotion maps float64 to float32), so its peer runs in
float32 and is checked against a float32 run of the same spec.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from nnparity.shared.core.data import Dataset, batch_plan
from nnparity.shared.core.init import init_params
from nnparity.shared.core.spec import NetworkSpec

Pairs = list[tuple[np.ndarray, np.ndarray]]


def as_pairs(params) -> Pairs:
    """``[(W, b), ...]`` from a parameter list: either ``(W, b)`` pairs or one dict
    per layer (``{"weight", "bias"}``; parameter-free layers' ``{}`` skipped)."""
    pairs = []
    for layer in params:
        if isinstance(layer, dict):
            if layer:
                pairs.append((layer["weight"], layer["bias"]))
        else:
            w, b = layer
            pairs.append((w, b))
    return pairs


def initial_pairs(spec: NetworkSpec) -> Pairs:
    """The initial parameters every backend starts from, as ``[(W, b), ...]``."""
    return as_pairs(init_params(spec))


def notebook_loop(spec: NetworkSpec, data: Dataset) -> Pairs:
    """The seed notebook's own loop (cells 6-16), parameters from init_params."""
    (hidden_weight, hidden_bias), (output_weight, output_bias) = initial_pairs(spec)
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

    for _epoch in range(spec.epochs):
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


def torch_nn_loop(spec: NetworkSpec, data: Dataset) -> Pairs:
    """torch.nn.Sequential + torch.optim.SGD + F.mse_loss."""
    import torch

    layers: list = []
    pairs = initial_pairs(spec)
    for k, (w, b) in enumerate(pairs):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear] if k == len(pairs) - 1 else [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.optimizer.lr)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    for _epoch in range(spec.epochs):
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


def optax_loop(spec: NetworkSpec, data: Dataset) -> Pairs:
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

        params = [tuple(jax.numpy.asarray(a) for a in pair) for pair in initial_pairs(spec)]
        opt_state = optimizer.init(params)
        x, y = data.x_train, data.y_train
        for _epoch in range(spec.epochs):
            for i in range(0, len(x), spec.batch_size):
                params, opt_state = step(params, opt_state, x[i:i + spec.batch_size],
                                         y[i:i + spec.batch_size])
        return [(np.array(w), np.array(b)) for w, b in params]


def jax_scan_loop(spec: NetworkSpec, data: Dataset) -> Pairs:
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
    return _SCAN_CACHE["run"](initial_pairs(spec), data.x_train, data.y_train, rows,
                              spec.optimizer.lr)


def keras_fit(spec: NetworkSpec, data: Dataset) -> Pairs:
    """Keras 3 ``Sequential.fit`` on the jax backend, in float32 whatever ``spec.dtype``.

    Keras 3 computes in float32 even when asked for float64 (and warns on every
    call that it truncates), so the peer asks for float32: the initial parameters
    and the data are ``spec.replace(dtype="float32")``'s, and the float32 parameters
    are returned. ``KERAS_BACKEND`` is set to jax unless already set.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    spec32 = spec.replace(dtype="float32")
    sizes = spec32.sizes
    assert sizes is not None, "the benchmark's networks are MLPs (NetworkSpec(sizes=...))"
    model = keras.Sequential([keras.Input((sizes[0],), dtype="float32")] + [
        keras.layers.Dense(n, activation="relu" if k < len(sizes) - 2 else None,
                           dtype="float32") for k, n in enumerate(sizes[1:])])
    model.set_weights([a for w, b in initial_pairs(spec32) for a in (w.T, b)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=spec32.optimizer.lr), loss="mse")
    model.fit(data.x_train.astype(np.float32), data.y_train.astype(np.float32),
              batch_size=spec32.batch_size, epochs=spec32.epochs, shuffle=False, verbose=0)
    weights = [keras.ops.convert_to_numpy(v.value) for v in model.weights]   # W (in, out), b
    return [(weights[2 * k].T.copy(), weights[2 * k + 1]) for k in range(len(weights) // 2)]


#: the label of the Keras peer's row: it runs in float32 (see ``keras_fit``)
KERAS = "keras 3 fit (jax), float32"

#: name -> (module that must be installed, trainer)
PEERS: dict[str, tuple[str, Callable[[NetworkSpec, Dataset], Pairs]]] = {
    "notebook loop": ("numpy", notebook_loop),
    "torch.nn + torch.optim": ("torch", torch_nn_loop),
    "optax jitted step": ("optax", optax_loop),
    "jit + lax.scan (hand-written)": ("jax", jax_scan_loop),
    KERAS: ("keras", keras_fit),
}
