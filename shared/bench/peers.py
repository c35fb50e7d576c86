"""The benchmark's peers: the notebook spec, and the digits CNN, trained the way a
user of each tool would.

Each peer trains ``spec`` on ``data`` from the same initial parameters
(``init_params``) on the same batches as the backends, and returns its trained
parameters as NumPy arrays: ``[(W (out, in), b (out,)), ...]`` for the notebook
spec's peers (``PEERS``), the torch ``state_dict`` names for the CNN's
(``CNN_PEERS``, see below); ``tests/test_bench.py`` checks that they equal the
backends', so the benchmark compares equal work. Every framework is imported
inside its peer. The sequence models' peers (``peers_sequence``) train through
``torch_adam_loop``, the loop of the CNN's ``torch.nn`` peer.

Keras 3 is the exception on precision: it computes in float32 whatever it is
asked for (its type promotion maps float64 to float32), so its peer runs in
float32 and is checked against a float32 run of the same spec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from nnparity.shared.core.data import Dataset, batch_plan
from nnparity.shared.core.init import init_params
from nnparity.shared.core.optimizers import Adam
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
    are returned. Keras is imported as ``to_keras`` imports it (``KERAS_BACKEND`` jax
    unless already set).
    """
    from nnparity.backends.interop.keras_model import keras_module

    keras = keras_module()

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


# ----------------------------------------------------------------------------- the digits CNN
#
# The CNN peers train ``recipes.digits_cnn_spec`` (any dtype, Dropout p, BatchNorm
# momentum and eps, Adam's numbers, epochs, batch size, seed and shuffle taken from the
# spec; the architecture is written out, as a user would) from the same initial
# parameters on the same batches as the backends. They return the trained model's
# state as torch's ``state_dict`` names it (parameters and BatchNorm's running
# statistics, without ``num_batches_tracked``): ``state_dict`` turns a backend's result
# into the same. Their Dropout masks come from their own framework's random stream (the
# usual idiom), which no other framework reproduces: the tests that compare them with
# the backends set Dropout's p to 0.

State = dict[str, np.ndarray]


def state_dict(params, model_state) -> State:
    """A backend's parameters and model state as ``torch.nn.Sequential.state_dict()``
    names and orders them (layer by layer, parameters before buffers), without
    ``num_batches_tracked`` (a count, not trained)."""
    out: State = {}
    for index, (layer_params, buffers) in enumerate(zip(params, model_state, strict=True)):
        for name, value in (*layer_params.items(), *buffers.items()):
            if name != "num_batches_tracked":
                out[f"{index}.{name}"] = value
    return out


@dataclass(frozen=True)
class CnnSettings:
    """The numbers of a digits-CNN spec that a peer reads (the rest is written out)."""

    p: float                 # Dropout's probability of dropping
    momentum: float          # BatchNorm's (torch's meaning: the weight of the new batch)
    bn_eps: float
    lr: float
    betas: tuple[float, float]
    adam_eps: float


def recipe_adam(spec: NetworkSpec, recipe: Callable[[str], NetworkSpec],
                layers: tuple | None = None) -> Adam:
    """``spec``'s Adam, after checking that ``spec`` trains the network a peer writes
    out: ``recipe(spec.dtype)``'s input shape, loss and ``layers`` (by default the
    recipe's), and plain Adam (any lr, betas, eps; no weight decay). A ``ValueError``
    naming the recipe otherwise. Epochs, batch size, seed, shuffle and dtype are free."""
    expected = recipe(spec.dtype)
    opt = spec.optimizer
    if (spec.layers != (expected.layers if layers is None else layers)
            or spec.input_shape != expected.input_shape or spec.loss != expected.loss
            or spec.loss_kwargs or not isinstance(opt, Adam) or opt.weight_decay != 0):
        raise ValueError(f"this peer is written for {recipe.__name__}'s network (its "
                         "layers, cross-entropy, Adam without weight decay)")
    return opt


def cnn_settings(spec: NetworkSpec) -> CnnSettings:
    """The peers' numbers from ``spec``, which must be ``digits_cnn_spec``'s network
    (any Dropout p and BatchNorm momentum/eps, plain Adam): a ``ValueError`` otherwise."""
    from nnparity.shared.core.layers.batch_norm import BatchNorm
    from nnparity.shared.core.layers.dropout import Dropout
    from nnparity.shared.core.recipes import digits_cnn_spec

    dropout = next((layer for layer in spec.layers if isinstance(layer, Dropout)), None)
    norm = next((layer for layer in spec.layers if isinstance(layer, BatchNorm)), None)
    if dropout is None or norm is None or not norm.affine:
        raise ValueError("this peer is written for digits_cnn_spec's network (its layers, "
                         "cross-entropy, Adam without weight decay)")
    expected = tuple(dropout if isinstance(layer, Dropout) else
                     norm if isinstance(layer, BatchNorm) else layer
                     for layer in digits_cnn_spec(spec.dtype).layers)
    opt = recipe_adam(spec, digits_cnn_spec, expected)
    return CnnSettings(dropout.p, norm.momentum, norm.eps, opt.lr, (opt.betas[0], opt.betas[1]),
                       opt.eps)


def _initial_state(spec: NetworkSpec) -> State:
    from nnparity.shared.core.init import init_model_state

    return state_dict(init_params(spec), init_model_state(spec))


def renamed(name: str, prefixes: dict[str, str]) -> str:
    """``name`` with the first of ``prefixes``' keys it starts with replaced by that key's
    value (a backend's flat name to a module's ``state_dict`` name); unchanged if none."""
    for ours, theirs in prefixes.items():
        if name.startswith(ours):
            return theirs + name[len(ours):]
    return name


def torch_adam_loop(model, spec: NetworkSpec, data: Dataset, loss_fn: Callable,
                    prefixes: dict[str, str] | None = None) -> State:
    """Train a ``torch.nn`` model the usual way and return its trained state by the
    backends' flat names: load the initial state (``init_params``; a backend's name
    maps to the model's by ``renamed(name, prefixes)``; every parameter must be
    loaded, a missing ``num_batches_tracked`` excepted), ``torch.optim.Adam`` with the
    spec's numbers (``recipe_adam`` has checked them), ``model.train()``, then per
    batch of the backends' plan zero_grad, ``loss_fn(model(x), y)``, backward, step.
    Float inputs are cast to the spec's dtype; token inputs stay integers."""
    import torch

    prefixes = prefixes or {}
    initial = _initial_state(spec)
    names = {ours: renamed(ours, prefixes) for ours in initial}
    missing, unexpected = model.load_state_dict(
        {names[k]: torch.from_numpy(v) for k, v in initial.items()}, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise ValueError(f"the peer's model does not hold the spec's parameters: missing "
                         f"{missing}, unexpected {unexpected}")
    adam = spec.optimizer
    assert isinstance(adam, Adam), "recipe_adam checks that a peer's spec trains with Adam"
    optimizer = torch.optim.Adam(model.parameters(), lr=adam.lr,
                                 betas=(adam.betas[0], adam.betas[1]), eps=adam.eps)
    inputs = data.x_train
    x = torch.from_numpy(inputs.astype(spec.dtype) if inputs.dtype.kind == "f" else inputs)
    y = torch.from_numpy(data.y_train)
    plan = batch_plan(len(x), spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
    model.train()
    for epoch in range(spec.epochs):
        for rows in plan.batches(epoch):
            batch = torch.from_numpy(rows)
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    trained = model.state_dict()
    return {ours: trained[theirs].detach().numpy().copy() for ours, theirs in names.items()}


def cnn_torch_nn(spec: NetworkSpec, data: Dataset) -> State:
    """``torch.nn.Sequential`` + ``torch.optim.Adam`` + ``nn.CrossEntropyLoss``, the usual
    loop (``torch_adam_loop``). Dropout's masks come from torch's stream
    (``torch.manual_seed(spec.seed)``)."""
    import torch
    from torch import nn

    s = cnn_settings(spec)
    torch.manual_seed(spec.seed)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16, eps=s.bn_eps, momentum=s.momentum), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(s.p), nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    ).to(getattr(torch, spec.dtype))
    return torch_adam_loop(model, spec, data, nn.CrossEntropyLoss())


class _Optimizer(NamedTuple):
    """optax's interface: ``init(params) -> state``, ``update(grads, state, params) ->
    (updates, state)``, the updates added to the parameters."""

    init: Callable
    update: Callable


def _adam(s: CnnSettings, use_optax: bool) -> _Optimizer:
    """``optax.adam``, or (``use_optax`` False) the same rule written out: torch's and
    optax's, bias-corrected moments, eps outside the square root."""
    import jax
    import jax.numpy as jnp

    if use_optax:
        import optax
        adam = optax.adam(s.lr, b1=s.betas[0], b2=s.betas[1], eps=s.adam_eps)
        return _Optimizer(adam.init, adam.update)
    b1, b2 = s.betas

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return jnp.zeros((), jnp.int32), zeros, zeros

    def update(grads, state, params=None):
        t, m, v = state
        t = t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        updates = jax.tree.map(lambda m, v: -s.lr * (m / c1) / (jnp.sqrt(v / c2) + s.adam_eps),
                               m, v)
        return updates, (t, m, v)

    return _Optimizer(init, update)


_CNN_EPOCH_CACHE: dict = {}


def _cnn_epoch_fn(s: CnnSettings, use_optax: bool):
    """(the optimizer, the jitted epoch): ``lax.scan`` of the training step over the
    epoch's full batches, then one step on its partial last batch (when there is one).
    Cached per settings, so a timing after the first call compiles nothing."""
    if (s, use_optax) in _CNN_EPOCH_CACHE:
        return _CNN_EPOCH_CACHE[s, use_optax]
    import jax
    import jax.numpy as jnp
    from jax import lax

    optimizer = _adam(s, use_optax)
    dims = ("NCHW", "OIHW", "NCHW")

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)

    def max_pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss_fn(params, stats, x, y, key):
        h = jax.nn.relu(conv(x, params["0.weight"]) + params["0.bias"][:, None, None])
        h = conv(max_pool(h), params["3.weight"])                      # (batch, 16, 4, 4)
        mean, var = h.mean(axis=(0, 2, 3)), h.var(axis=(0, 2, 3))       # var biased
        n = h.size // h.shape[1]                                        # values per channel
        h = (h - mean[:, None, None]) / jnp.sqrt(var[:, None, None] + s.bn_eps)
        h = h * params["4.weight"][:, None, None] + params["4.bias"][:, None, None]
        h = max_pool(jax.nn.relu(h))
        keep = jax.random.bernoulli(key, 1 - s.p, h.shape)
        h = jnp.where(keep, h / (1 - s.p), 0) if s.p < 1 else jnp.zeros_like(h)
        logits = h.reshape(h.shape[0], -1) @ params["9.weight"].T + params["9.bias"]
        loss = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1).mean()
        m = s.momentum                                   # torch's: the new batch's weight
        stats = {"4.running_mean": (1 - m) * stats["4.running_mean"] + m * mean,
                 "4.running_var": (1 - m) * stats["4.running_var"] + m * var * n / (n - 1)}
        return loss, stats

    @jax.jit
    def epoch(params, stats, opt_state, key, x, y, full, tail):
        def step(carry, rows):
            params, stats, opt_state, key = carry
            key, sub = jax.random.split(key)
            (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, stats, x[rows], y[rows], sub)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = jax.tree.map(lambda p, u: p + u, params, updates)
            return (params, stats, opt_state, key), loss

        carry, _ = lax.scan(step, (params, stats, opt_state, key), full)
        if tail is not None:
            carry, _ = step(carry, tail)
        return carry

    _CNN_EPOCH_CACHE[s, use_optax] = optimizer, epoch
    return optimizer, epoch


def cnn_jax_scan(spec: NetworkSpec, data: Dataset, use_optax: bool | None = None) -> State:
    """The minimal compiled JAX loop: a jitted epoch (``lax.scan`` over its batches,
    ``lax.conv_general_dilated``, ``lax.reduce_window``) called once per epoch; Adam by
    optax when it is installed (``use_optax=None``) or asked for, else written out;
    Dropout's masks from ``jax.random.bernoulli``, the key split every step. float64
    specs run under ``jax.enable_x64``."""
    import importlib.util

    import jax

    if use_optax is None:
        use_optax = importlib.util.find_spec("optax") is not None
    s = cnn_settings(spec)
    initial = _initial_state(spec)
    with jax.enable_x64(spec.dtype == "float64"):
        optimizer, epoch = _cnn_epoch_fn(s, use_optax)
        stats = {k: jax.numpy.asarray(initial[k]) for k in ("4.running_mean", "4.running_var")}
        params = {k: jax.numpy.asarray(v) for k, v in initial.items() if k not in stats}
        opt_state = optimizer.init(params)
        x, y = data.x_train.astype(spec.dtype), data.y_train.astype(np.int32)
        plan = batch_plan(len(x), spec.batch_size, spec.epochs, spec.seed, spec.shuffle)
        key = jax.random.key(spec.seed)
        for e in range(spec.epochs):
            tail = None if plan.tail is None else plan.tail[e]
            params, stats, opt_state, key = epoch(params, stats, opt_state, key, x, y,
                                                  plan.full[e], tail)
        trained = {**params, **stats}
        return {name: np.array(trained[name]) for name in initial}


#: name -> (module that must be installed, trainer): the digits CNN's peers
CNN_PEERS: dict[str, tuple[str, Callable[[NetworkSpec, Dataset], State]]] = {
    "torch.nn + torch.optim": ("torch", cnn_torch_nn),
    "jit + lax.scan (hand-written)": ("jax", cnn_jax_scan),
}
