"""``to_flax`` / ``from_flax`` (``nnparity.backends.interop.flax_nnx``) against nnparity.

For small float64 networks holding every layer kind the export supports:

1. forward: the Flax module in evaluation mode equals ``predict`` with the parameters
   and running statistics of a short ``train`` (float64 policy, normwise);
2. one training step in Flax's idiom (``nnx.split``/``nnx.merge``, ``jax.grad`` of the
   spec's loss in jax.numpy, the optax rule equal to the spec's optimizer) equals
   nnparity's NumPy ``step``: every parameter; the running mean; the running variance
   differs by exactly Flax's trap (the biased batch variance where torch keeps the
   unbiased one, a factor n/(n-1) on the batch's term), and Flax does not count
   batches;
3. ``from_flax(to_flax(...))`` gives back the spec, parameters and state bitwise;
   building calls no sampling function of ``jax.random`` (each Flax module the export
   builds draws with Flax's default initializers: the control);
4. negative controls, each failing check 1 or 2: a convolution kernel transposed
   (3, 2, 1, 0) (on a square kernel nothing raises; a (2, 3) one changes the output's
   shape); LSTM and GRU gate blocks swapped; BatchNorm's momentum passed
   unconverted; the Dense after a channels-last Flatten with torch's column order;
   a norm over two axes with its scale flattened column-major;
5. bad input is refused, naming the argument (an attention_fn that is not nnparity's
   among it).

Traps measured here: Flax's default attention runs its softmax in float32; its
Embedding has no padding row; its GRU update rounds differently from torch's; a
float64 network called with JAX's x64 off computes in float32 (the export refuses).
"""
from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from conftest import require
from layer_contract import data_for, with_targets

from nnparity.backends import get_backend, predict, train
from nnparity.backends.interop import flax_nnx, layouts
from nnparity.shared import (GRU, LSTM, RNN, SGD, Activation, Adam, AdamW, AvgPool1d,
                             AvgPool2d, BatchNorm, Conv1d, Conv2d, Dataset, Dense, Dropout,
                             Embedding, Flatten, LayerNorm, MaxPool2d, MultiHeadAttention,
                             NetworkSpec, Residual, RMSNorm, init_params, to_flat)
from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.core.draws import step_draws
from nnparity.shared.core.optimizers import init_state
from nnparity.shared.core.spec import walk_layers
from nnparity.shared.core.tolerance import POLICY, tensorwise_difference

jax = require("jax")
optax = require("optax")
nnx = require("flax.nnx")
from nnparity.backends.jax.activations import ACTIVATIONS as JAX_ACTIVATIONS  # noqa: E402
jnp = jax.numpy
TOL = POLICY["float64"]
FIELDS = ("init", "loss", "loss_params", "optimizer", "batch_size", "epochs", "seed", "shuffle")


def net(input_shape, layers, loss="cross_entropy", optimizer=None, **fields):
    return NetworkSpec(input_shape=input_shape, layers=tuple(layers), loss=loss,
                       optimizer=optimizer or SGD(lr=0.1), batch_size=4, epochs=2,
                       init="torch_default", seed=3, **fields)


CASES = {
    "mlp-dropout-sgd": net((5,), [Dense(6), Activation("leaky_relu", {"negative_slope": 0.2}),
                                  Dropout(0.3), Dense(4), Activation("gelu"), Dense(3)]),
    "cnn-batchnorm-momentum": net((2, 6, 6), [
        Conv2d(3, 3, padding=1), BatchNorm(momentum=0.2), Activation("relu"), MaxPool2d(2),
        Conv2d(3, (2, 3), stride=(1, 2), padding="valid"), AvgPool2d(2, stride=1, padding=1,
                                                                    count_include_pad=False),
        Activation("tanh"), Flatten(), Dense(3)], optimizer=SGD(lr=0.05, momentum=0.9)),
    "conv1d-adam": net((2, 7), [Conv1d(3, 4, padding="same", dilation=1), Activation("silu"),
                                AvgPool1d(2), Flatten(), Dense(2)], loss="mse",
                       optimizer=Adam(lr=0.01)),
    "norms-adamw": net((5,), [Dense(6), LayerNorm(), Activation("elu"), Dense(6), RMSNorm(),
                              BatchNorm(), Dense(3)], optimizer=AdamW(lr=0.01)),
    "residual": net((3, 4), [Residual((LayerNorm(eps=1e-4), Dense(6), Activation("softplus"),
                                       Dense(4))), Flatten(), Dense(2)]),
    "embedding": net((4,), [Embedding(6, 3, padding_idx=1), Activation("tanh"), Flatten(),
                            Dense(2)]),
    "lstm": net((4, 3), [LSTM(5, num_layers=2, return_sequence=False), Dense(2)],
                optimizer=Adam(lr=0.01)),
    "gru": net((4, 3), [GRU(4), Flatten(), Dense(2)]),
    "rnn-relu": net((4, 3), [RNN(4, nonlinearity="relu", bias=False), Flatten(), Dense(2)]),
    "attention": net((4, 6), [Residual((LayerNorm(), MultiHeadAttention(2, causal=True))),
                              Flatten(), Dense(2)], optimizer=SGD(lr=0.05, momentum=0.5)),
    "attention-no-bias": net((3, 4), [MultiHeadAttention(2, bias=False), Flatten(), Dense(2)]),
    "norms-over-two-axes": net((3, 4), [
        LayerNorm(dims=2), Activation("tanh"), Residual((RMSNorm(dims=2), Dense(4))),
        LayerNorm(dims=2, eps=1e-3, bias=False), Flatten(), Dense(2)], optimizer=Adam(lr=0.01)),
}


#: networks of the negative controls only: one square-kernel convolution, in != out
#: channels and in == out
SQUARE = {
    f"square-conv-{c}-to-3": net((c, 5, 5), [Conv2d(3, 3, padding=1), Activation("tanh"),
                                             Flatten(), Dense(2)]) for c in (2, 3)}
#: ... and one convolution whose kernel is (2, 3), not square
CONTROLS = {**SQUARE, "oblong-conv": net((2, 5, 6), [Conv2d(3, (2, 3)), Activation("tanh"),
                                                      Flatten(), Dense(2)])}


def labelled_data(spec):
    """Eight seeded rows for ``spec`` (``layer_contract.data_for``), with targets for its loss."""
    return with_targets(spec, data_for(spec, rows=8))


@functools.lru_cache(maxsize=None)
def trained(case):
    """The spec, its data, and the parameters and state of a short NumPy run."""
    spec = {**CASES, **CONTROLS}[case]
    data = labelled_data(spec)
    result = train(spec, data, "numpy", metrics=False)
    return spec, data, result.params, result.model_state


def flax_x(spec, x):
    """x in the layout the exported module takes: channels-last for a conv network."""
    if layouts.channels_last_input(spec.input_shape, spec.layers):
        return np.moveaxis(x, 1, -1)
    return x


def flax_forward(spec, params, state, x):
    with jax.enable_x64(True):
        model = flax_nnx.to_flax(spec, params, state)
        return np.asarray(model(jnp.asarray(flax_x(spec, x))))


def forward_difference(case):
    spec, data, params, state = trained(case)
    x = data.x_train[:5]
    expected = predict(spec, params, x, "numpy", model_state=state)
    return tensorwise_difference({"output": flax_forward(spec, params, state, x)},
                                 {"output": expected}, TOL)


@pytest.mark.parametrize("case", CASES)
def test_forward_equals_predict(case):
    difference = forward_difference(case)
    assert difference.ok, difference.worst


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_is_the_jax_backends(name):
    """Each of the activations exports as the JAX backend's function (``jax.nn``'s where
    that follows nnparity's definition), on inputs at its breakpoints and far out, and
    reads back as the same layer."""
    params = {"negative_slope": 0.25} if name == "leaky_relu" else (
        {"alpha": 0.5} if name in ("elu", "celu") else {})
    spec = net((9,), [Activation(name, params), Dense(2)])
    weights = init_params(spec)
    x = np.array([[-30.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0],
                  [-6.0, -2.0, -1e-3, 1e-3, 2.0, 4.0, 5.0, 7.0, 30.0]])
    expected = predict(spec, weights, x, "numpy")
    got = flax_forward(spec, weights, [{}, {}], x)
    difference = tensorwise_difference({"output": got}, {"output": expected}, TOL)
    assert difference.ok, difference.worst
    with jax.enable_x64(True):
        model = flax_nnx.to_flax(spec, weights)
    assert model.layers[0] is JAX_ACTIVATIONS[name] or model.layers[0].func is JAX_ACTIVATIONS[name]
    assert flax_nnx.from_flax(model, (9,), **{f: getattr(spec, f) for f in FIELDS})[0] == spec


# ---------------------------------------------------------------- one training step


def optax_rule(opt):
    """The optax transformation that is ``opt``'s rule (tests/test_optimizers.py)."""
    if isinstance(opt, SGD):
        return optax.sgd(opt.lr, momentum=opt.momentum or None, nesterov=opt.nesterov)
    if isinstance(opt, AdamW):
        return optax.adamw(opt.lr, *opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
    return optax.adam(opt.lr, *opt.betas, eps=opt.eps, eps_root=0.0)


def jnp_loss(loss, out, y):
    if loss == "mse":
        return jnp.mean((out - y) ** 2)
    picked = jnp.take_along_axis(out, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(out, axis=1) - picked)


def flax_step(spec, model, x, y, masks, monkeypatch):
    """One step as a Flax user takes it: training mode, ``nnx.value_and_grad`` of the
    loss, ``nnx.Optimizer``. Dropout's draws are nnparity's (``masks``, in layer
    order), handed to Flax's bernoulli."""
    queue = list(masks)
    monkeypatch.setattr(jax.random, "bernoulli",
                        lambda key, p, shape, **kw: jnp.asarray(queue.pop(0)).reshape(shape))
    model.train()
    optimizer = nnx.Optimizer(model, optax_rule(spec.optimizer), wrt=nnx.Param)
    _, grads = nnx.value_and_grad(lambda m: jnp_loss(spec.loss, m(x), y))(model)
    optimizer.update(model, grads)
    assert not queue, "a Dropout mask was not used"
    return model


def step_both(case, monkeypatch):
    """(nnparity's step, Flax's parameters and state after one step read back, the
    state before) from the trained state of ``case``."""
    spec, data, params, state = trained(case)
    x, y = data.x_train[:4], data.y_train[:4]
    ours = get_backend("numpy").step(spec, params, state, init_state(spec.optimizer, params),
                                     x, y)
    masks = [m for m in step_draws(spec, 0, x.shape[0]) if m is not None]
    with jax.enable_x64(True):
        model = flax_step(spec, flax_nnx.to_flax(spec, params, state), jnp.asarray(flax_x(spec, x)),
                          jnp.asarray(y), masks, monkeypatch)
        _, flax_params, flax_state = flax_nnx.from_flax(model, flax_nnx.flax_input_shape(spec),
                                                        **{f: getattr(spec, f) for f in FIELDS})
    return ours, flax_params, flax_state, state


def batch_norm_expectation(spec, before, ours, rows):
    """Flax's running statistics after one step, derived from nnparity's: the same
    mean, the batch term of the variance times (n - 1)/n (biased), the count unchanged;
    n the values per channel of each BatchNorm's batch."""
    expected = []
    for layer, shape, old, new in zip(spec.layers, spec.layer_input_shapes, before, ours,
                                      strict=False):
        if layer.kind != "batch_norm":
            expected.append(new)
            continue
        n = rows * int(np.prod(shape[1:]))
        keep = 1 - layer.momentum
        biased = (new["running_var"] - keep * old["running_var"]) * ((n - 1) / n)
        expected.append({"running_mean": new["running_mean"],
                         "running_var": keep * old["running_var"] + biased,
                         "num_batches_tracked": old["num_batches_tracked"]})
    return expected


def step_differences(case, monkeypatch):
    ours, flax_params, flax_state, before = step_both(case, monkeypatch)
    spec = {**CASES, **CONTROLS}[case]
    params = tensorwise_difference(to_flat(flax_params), to_flat(ours.params), TOL)
    state = tensorwise_difference(
        to_flat(flax_state), to_flat(batch_norm_expectation(spec, before, ours.model_state, 4)),
        TOL)
    return params, state, (flax_state, ours.model_state)


#: the step cases left to the slow run (compiling their steps takes 3-6 s each)
SLOW_STEPS = ("norms-adamw", "residual", "lstm", "attention", "attention-no-bias")


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=[pytest.mark.slow] if c in SLOW_STEPS else [])
    for c in CASES if c != "embedding"])
def test_one_training_step_equals_nnparitys(case, monkeypatch):
    params, state, _ = step_differences(case, monkeypatch)
    assert params.ok, params.worst
    assert state.ok, state.worst


def test_batch_norm_running_variance_is_the_biased_one(monkeypatch):
    """The difference the step test allows is real: Flax's running var after one step
    against nnparity's (torch's), unconverted, is beyond the policy; and Flax leaves
    num_batches_tracked where it was."""
    _, state, (flax_state, ours) = step_differences("cnn-batchnorm-momentum", monkeypatch)
    assert state.ok, state.worst
    flax_var, our_var = flax_state[1]["running_var"], ours[1]["running_var"]
    assert not tensorwise_difference({"v": flax_var}, {"v": our_var}, TOL).ok
    assert flax_state[1]["num_batches_tracked"] == ours[1]["num_batches_tracked"] - 1


def test_embedding_padding_row_gets_a_gradient_in_flax(monkeypatch):
    """Flax has no padding_idx: after one step everything equals nnparity's except the
    padding row, which nnparity (as torch) leaves unchanged and Flax moves."""
    ours, flax_params, _, _ = step_both("embedding", monkeypatch)
    row = CASES["embedding"].layers[0].padding_idx
    spec, data, params, _ = trained("embedding")
    assert (data.x_train[:4] == row).any()
    theirs, mine = flax_params[0]["weight"].copy(), ours.params[0]["weight"].copy()
    assert np.array_equal(mine[row], params[0]["weight"][row])          # nnparity: no gradient
    assert not np.allclose(theirs[row], mine[row], rtol=0, atol=1e-6)   # Flax: moved
    theirs[row] = mine[row]
    flax_params[0]["weight"] = theirs
    difference = tensorwise_difference(to_flat(flax_params), to_flat(ours.params), TOL)
    assert difference.ok, difference.worst


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("case", CASES)
def test_round_trip_is_bitwise(case):
    spec, _, params, state = trained(case)
    with jax.enable_x64(True):
        model = flax_nnx.to_flax(spec, params, state)
    spec2, params2, state2 = flax_nnx.from_flax(model, flax_nnx.flax_input_shape(spec),
                                                **{f: getattr(spec, f) for f in FIELDS})
    assert spec2 == spec
    for mine, theirs in ((params, params2), (state, state2)):
        a, b = to_flat(mine), to_flat(theirs)
        assert list(a) == list(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


def test_a_float32_network_stays_float32():
    """A float32 spec exports float32 parameters (no x64 needed) and predicts within the
    float32 policy; the round trip is still bitwise."""
    import dataclasses
    spec = dataclasses.replace(CASES["cnn-batchnorm-momentum"], dtype="float32")
    data = labelled_data(spec)
    result = train(spec, Dataset(*(a.astype(np.float32) if a.dtype.kind == "f" else a
                                   for a in (data.x_train, data.y_train, data.x_test,
                                             data.y_test))), "numpy", metrics=False)
    x = data.x_train[:5].astype(np.float32)
    with jax.enable_x64(False):
        model = flax_nnx.to_flax(spec, result.params, result.model_state)
        got = np.asarray(model(jnp.asarray(flax_x(spec, x))))
    expected = predict(spec, result.params, x, "numpy", model_state=result.model_state)
    assert got.dtype == np.float32
    difference = tensorwise_difference({"output": got}, {"output": expected}, POLICY["float32"])
    assert difference.ok, difference.worst
    spec2, params2, _ = flax_nnx.from_flax(model, flax_nnx.flax_input_shape(spec),
                                           **{f: getattr(spec, f) for f in FIELDS})
    assert spec2 == spec
    assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in
               zip(to_flat(params2).values(), to_flat(result.params).values(), strict=True))


def test_a_float64_network_refuses_to_run_with_x64_off():
    """Called with JAX's x64 off, the float64 export raises a ValueError naming
    jax_enable_x64 (as ``to_equinox``'s network does). Control, the trap it guards
    against: the same layers in a plain ``nnx.Sequential`` run, in float32, with nothing
    but JAX's truncation warnings, beyond the float64 policy; and ``from_flax`` reads
    the export (the round-trip test) as it reads that plain Sequential."""
    import warnings
    spec, data, params, state = trained("norms-adamw")
    x = data.x_train[:5]
    with jax.enable_x64(True):
        model = flax_nnx.to_flax(spec, params, state)
    with jax.enable_x64(False), pytest.raises(ValueError, match="jax_enable_x64"):
        model(x)
    plain = nnx.Sequential(*model.layers)
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)                    # JAX's truncation
        got = np.asarray(plain(x))
    assert got.dtype == np.float32
    expected = predict(spec, params, x, "numpy", model_state=state)
    assert not tensorwise_difference({"output": got.astype(np.float64)},
                                     {"output": expected}, TOL).ok
    assert flax_nnx.from_flax(plain, (5,), **{f: getattr(spec, f) for f in FIELDS})[0] == spec


def test_parameters_are_float64_in_flax():
    """Flax's default param_dtype is float32, with x64 on too; and its BatchNorm keeps
    running statistics in float32 whatever param_dtype. The export sets both."""
    spec, _, params, state = trained("cnn-batchnorm-momentum")
    with jax.enable_x64(True):
        model = flax_nnx.to_flax(spec, params, state)
        default = nnx.BatchNorm(3, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model))
              if hasattr(leaf, "dtype") and leaf.dtype.kind == "f"}
    assert dtypes == {np.dtype("float64")}
    assert default.scale[...].dtype == np.float64 and default.var[...].dtype == np.float32


#: jax.random's functions that make or derive keys; each of its other public
#: functions samples
KEY_FUNCTIONS = {"PRNGKey", "key", "split", "fold_in", "clone", "key_data", "key_dtype",
                 "key_impl", "wrap_key_data"}


@pytest.fixture
def no_random_draws(monkeypatch):
    """Every sampling function of ``jax.random`` raises while the test runs, patched in
    ``jax.random`` and in ``jax._src.random``, the module through which
    ``jax.nn.initializers`` (Flax's initializers) call them."""
    import inspect

    import jax._src.random as internal
    for name, fn in inspect.getmembers(jax.random, inspect.isfunction):
        if name.startswith("_") or name in KEY_FUNCTIONS:
            continue

        def refuse(*args, _name=name, **kwargs):
            raise AssertionError(f"jax.random.{_name} called")

        monkeypatch.setattr(jax.random, name, refuse)
        if getattr(internal, name, None) is fn:
            monkeypatch.setattr(internal, name, refuse)


def test_building_draws_nothing_random(no_random_draws):
    """Every weight ``to_flax`` builds is replaced at once, so it is created with a
    constant initializer: no random draw, whose programs JAX compiles (seconds on a
    first call in a process), for values thrown away. The networks hold every kind
    ``to_flax`` builds (max_pool1d is a function with no parameters, like the other
    pools)."""
    from nnparity.backends.interop import flax_layers
    kinds = {layer.kind for spec in CASES.values() for _, layer in walk_layers(spec.layers)}
    assert set(flax_layers.BUILD) - kinds == {"max_pool1d"}
    for case in CASES:
        spec, _, params, state = trained(case)
        with jax.enable_x64(True):
            flax_nnx.to_flax(spec, params, state)


@pytest.mark.parametrize("build", [
    lambda rngs: nnx.Linear(3, 2, rngs=rngs), lambda rngs: nnx.Conv(2, 3, (3, 3), rngs=rngs),
    lambda rngs: nnx.Embed(5, 3, rngs=rngs), lambda rngs: nnx.MultiHeadAttention(2, 4, rngs=rngs),
    lambda rngs: nnx.LSTMCell(3, 2, rngs=rngs), lambda rngs: nnx.GRUCell(3, 2, rngs=rngs),
    lambda rngs: nnx.SimpleCell(3, 2, rngs=rngs)],
    ids=["Linear", "Conv", "Embed", "MultiHeadAttention", "LSTMCell", "GRUCell", "SimpleCell"])
def test_no_random_draws_catches_flaxs_default_initializers(build, no_random_draws):
    """Negative control of the test above: each Flax module the export builds, with
    Flax's default initializers, is caught drawing."""
    with pytest.raises(AssertionError, match="jax.random"):
        build(nnx.Rngs(0))


# ---------------------------------------------------------------- negative controls


def wrong_transpose(w):
    """(O, I, kh, kw) -> (kw, kh, I, O): on a square kernel the shape of (kh, kw, I, O)."""
    return np.ascontiguousarray(w.transpose(3, 2, 1, 0))


@pytest.mark.parametrize("case", SQUARE)
def test_wrong_conv_transpose_on_a_square_kernel_fails_the_forward(case, monkeypatch):
    """(3, 2, 1, 0) instead of (2, 3, 1, 0) swaps the kernel's two spatial axes and keeps
    the channels where they belong, whether in != out or not: nothing raises, the
    forward check fails."""
    assert forward_difference(case).ok
    monkeypatch.setattr(layouts, "conv_kernel_channels_last", wrong_transpose)
    assert not forward_difference(case).ok


def test_wrong_conv_transpose_on_an_oblong_kernel_fails_loudly(monkeypatch):
    """The (3, 2, 1, 0) transpose raises only because this kernel is not square: the
    (3, 2, 2, 3) weight (O, I, kh, kw) becomes a (3, 2, 2, 3) kernel, read as kh = 3,
    kw = 2 where (2, 3, 1, 0) gives (2, 3, 2, 3); the convolution's output on (5, 6)
    is (3, 5) instead of (4, 4) per channel, and the Dense after the Flatten refuses
    the 45 columns for 48. The channel axes are never swapped: a square (3, 2, 3, 3)
    weight, in != out, gives (3, 3, 2, 3) either way, so on a square kernel the wrong
    transpose raises nothing (the forward check catches it: the test above)."""
    spec = CONTROLS["oblong-conv"]
    weight = np.zeros(spec.layers[0].param_shapes(spec.input_shape)["weight"])
    assert weight.shape == (3, 2, 2, 3)                                     # (O, I, kh, kw)
    assert wrong_transpose(weight).shape == (3, 2, 2, 3)
    assert layouts.conv_kernel_channels_last(weight).shape == (2, 3, 2, 3)
    square = np.zeros((3, 2, 3, 3))                                         # (O, I, k, k)
    assert wrong_transpose(square).shape == layouts.conv_kernel_channels_last(square).shape
    assert forward_difference("oblong-conv").ok
    monkeypatch.setattr(layouts, "conv_kernel_channels_last", wrong_transpose)
    with pytest.raises(TypeError, match="dot_general"):
        forward_difference("oblong-conv")


@pytest.mark.parametrize("case, order, swapped", [
    ("lstm", ("i", "f", "g", "o"), ("f", "i", "g", "o")),
    ("gru", ("r", "z", "n"), ("z", "r", "n"))])
def test_swapped_gate_blocks_fail_the_forward(case, order, swapped, monkeypatch):
    from nnparity.backends.interop import flax_cells
    real = flax_cells.build_cell

    def swapping(layer, params, k, dtype):
        params = {name: layouts.reorder_gate_blocks(value, order, swapped)
                  for name, value in params.items()}
        return real(layer, params, k, dtype)

    monkeypatch.setattr(flax_cells, "build_cell", swapping)
    assert not forward_difference(case).ok


@pytest.mark.slow
def test_folded_recurrent_biases_fail_the_step(monkeypatch):
    """Flax's stock LSTMCell has one bias per gate; folding torch's two into it keeps the
    forward pass but halves the bias's step under SGD (both torch biases get the same
    gradient): check 2 fails. The export keeps both."""
    from nnparity.backends.interop import flax_cells
    real = flax_cells.build_cell

    def folded(layer, params, k, dtype):
        cell = real(layer, params, k, dtype)
        for name_i, name_h in flax_cells.LSTM_GATES:
            into, out = getattr(cell, name_h), getattr(cell, name_i)
            into.bias[...] = into.bias[...] + out.bias[...]
            setattr(cell, name_i, nnx.Linear(out.in_features, out.out_features,
                                             use_bias=False, param_dtype=jnp.float64,
                                             rngs=nnx.Rngs(0)))
            getattr(cell, name_i).kernel[...] = out.kernel[...]
        return cell

    CONTROLS["lstm-sgd"] = net((4, 3), [LSTM(3), Flatten(), Dense(2)])
    try:
        assert forward_difference("lstm-sgd").ok
        monkeypatch.setattr(flax_cells, "build_cell", folded)
        assert forward_difference("lstm-sgd").ok                      # the forward pass holds
        ours, theirs, _, _ = step_both("lstm-sgd", monkeypatch)
        sums = [{"bias": p[0]["bias_ih_l0"] + p[0]["bias_hh_l0"]}
                for p in (theirs, ours.params)]
        weights = [{n: p[0][n] for n in ("weight_ih_l0", "weight_hh_l0")}
                   for p in (theirs, ours.params)]
        assert tensorwise_difference(*weights, TOL).ok
        assert not tensorwise_difference(*sums, TOL).ok
    finally:
        del CONTROLS["lstm-sgd"]


def test_unconverted_batch_norm_momentum_fails_the_step(monkeypatch):
    monkeypatch.setattr(layouts, "momentum_of_old_value", lambda m: m)
    _, state, _ = step_differences("cnn-batchnorm-momentum", monkeypatch)
    assert not state.ok


def test_norm_scale_flattened_column_major_fails_the_forward(monkeypatch):
    """A norm over (3, 4) gives Flax its scale and bias flattened row-major, the order in
    which Flax lays them back on the feature axes; flattened column-major (the (4, 3)
    transpose's rows), every shape still fits and the forward check fails."""
    from nnparity.backends.interop import flax_layers
    assert forward_difference("norms-over-two-axes").ok
    monkeypatch.setattr(flax_layers, "flat_scale",
                        lambda w: np.ascontiguousarray(w.T.reshape(-1)))
    assert not forward_difference("norms-over-two-axes").ok


def test_unpermuted_flatten_columns_fail_the_forward(monkeypatch):
    monkeypatch.setattr(layouts, "flatten_columns_channels_last", lambda w, shape: w)
    assert not forward_difference("cnn-batchnorm-momentum").ok


# ---------------------------------------------------------------- traps


def test_flax_default_attention_softmax_is_float32():
    """nnx.MultiHeadAttention's default attention_fn calls jax.nn.dot_product_attention,
    whose softmax runs in float32 for float64 inputs: beyond the float64 policy, at the
    float32 rounding level. The export passes ``attention_in_dtype`` instead."""
    spec, data, params, state = trained("attention-no-bias")
    x = data.x_train[:5]
    expected = predict(spec, params, x, "numpy", model_state=state)
    with jax.enable_x64(True):
        model = flax_nnx.to_flax(spec, params, state)
        model.layers[0].attention.attention_fn = nnx.dot_product_attention
        got = np.asarray(model(jnp.asarray(x)))
    difference = tensorwise_difference({"output": got}, {"output": expected}, TOL)
    assert not difference.ok
    assert 1e-12 < difference.max_rel < 1e-5


# ---------------------------------------------------------------- a user's own network


def test_reads_a_users_sequential():
    """Layers a Flax user writes (a channels-last convolution with Flax's default 'SAME'
    padding, stock BatchNorm with its float32 running statistics, a stock LSTMCell with
    biases on one side only) read back to a spec whose ``predict`` is the module's
    output (NHWC input moved to the spec's NCHW)."""
    from nnparity.backends.interop.flax_modules import flatten
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        f64 = dict(param_dtype=jnp.float64, dtype=jnp.float64, rngs=nnx.Rngs(0))
        dense_net = nnx.Sequential(
            nnx.Linear(3, 5, **f64), jax.nn.relu,
            nnx.BatchNorm(5, momentum=0.9, use_fast_variance=False, **f64),
            nnx.Linear(5, 2, **f64))
        lstm_net = nnx.Sequential(nnx.RNN(nnx.LSTMCell(3, 4, **f64)), flatten,
                                  nnx.Linear(20, 2, **f64))
        for name in ("hi", "hf", "hg", "ho"):
            bias = getattr(lstm_net.layers[0].cell, name).bias
            bias[...] = jnp.asarray(rng.standard_normal(4))
        conv_net = nnx.Sequential(
            nnx.Conv(1, 4, (3, 3), **f64), jax.nn.relu,
            functools.partial(nnx.max_pool, window_shape=(2, 2), strides=(2, 2)), flatten,
            nnx.Linear(36, 2, **f64))
        for model, shape in ((dense_net, (3,)), (lstm_net, (5, 3)), (conv_net, (6, 6, 1))):
            model.eval()
            x = rng.standard_normal((4, *shape))
            got = np.asarray(model(jnp.asarray(x)))
            spec, params, state = flax_nnx.from_flax(model, shape, loss="mse")
            if model is conv_net:
                assert spec.input_shape == (1, 6, 6) and spec.layers[0].padding == "same"
                x = np.moveaxis(x, -1, 1)                               # NHWC -> NCHW
            expected = predict(spec, params, x, "numpy", model_state=state)
            difference = tensorwise_difference({"y": got}, {"y": expected}, TOL)
            assert difference.ok, difference.worst
        lstm_spec, lstm_params, _ = flax_nnx.from_flax(lstm_net, (5, 3), loss="mse")
    assert lstm_spec.layers[0].kind == "lstm" and not lstm_params[0]["bias_ih_l0"].any()


def _doubled(*args, **kwargs):
    """An attention function that is not nnparity's: twice Flax's."""
    return 2.0 * nnx.dot_product_attention(*args, **kwargs)


def _attention_net(attention_fn):
    """(an ``nnx.Sequential`` of self-attention (E = 4, two heads) with ``attention_fn``
    and an ``nnx.Linear(4, 2)``, float64; x (3, 5, 4)); the same weights for any
    function."""
    with jax.enable_x64(True):
        f64 = dict(param_dtype=jnp.float64, dtype=jnp.float64, rngs=nnx.Rngs(0))
        model = nnx.Sequential(nnx.MultiHeadAttention(num_heads=2, in_features=4, decode=False,
                                                      attention_fn=attention_fn, **f64),
                               nnx.Linear(4, 2, **f64))
    return model, np.random.default_rng(2).standard_normal((3, 5, 4))


def test_reads_only_attention_functions_that_are_nnparitys():
    """``attention_in_dtype`` reads as nnparity's attention within the float64 policy,
    Flax's default within float32's (its softmax is float32); any other attention_fn is
    refused (bad-input cases), here one whose output is far from the ``predict`` of the
    layer it would otherwise read as."""
    from nnparity.backends.interop.flax_modules import attention_in_dtype
    outputs = {}
    for fn, policy in ((attention_in_dtype, TOL), (nnx.dot_product_attention,
                                                   POLICY["float32"])):
        model, x = _attention_net(fn)
        spec, params, state = flax_nnx.from_flax(model, (5, 4), loss="cross_entropy")
        assert spec.layers[0].kind == "multi_head_attention"
        expected = predict(spec, params, x, "numpy", model_state=state)
        with jax.enable_x64(True):
            outputs[fn] = np.asarray(model(jnp.asarray(x)))
        difference = tensorwise_difference({"y": outputs[fn]}, {"y": expected}, policy)
        assert difference.ok, difference.worst
    model, x = _attention_net(_doubled)
    with jax.enable_x64(True):
        doubled = np.asarray(model(jnp.asarray(x)))
    assert not tensorwise_difference({"y": doubled}, {"y": expected}, POLICY["float32"]).ok
    with pytest.raises(ValueError, match=re.escape("module.layers[0].attention_fn")):
        flax_nnx.from_flax(model, (5, 4), loss="cross_entropy")


def test_reads_a_users_norms_over_two_axes():
    """A user's ``nnx.LayerNorm`` and ``nnx.RMSNorm`` over the last two axes (12 features,
    reduction_axes = feature_axes = (-2, -1), scale and bias (12,) drawn at random) read
    back as LayerNorm(dims=2) and RMSNorm(dims=2) whose ``predict`` is the module's
    output; the weights come back (3, 4)."""
    from nnparity.backends.interop.flax_modules import flatten
    rng = np.random.default_rng(4)
    axes = dict(reduction_axes=(-2, -1), feature_axes=(-2, -1))
    with jax.enable_x64(True):
        f64 = dict(param_dtype=jnp.float64, dtype=jnp.float64, rngs=nnx.Rngs(0))
        model = nnx.Sequential(nnx.LayerNorm(12, use_fast_variance=False, **axes, **f64),
                               nnx.RMSNorm(12, epsilon=1e-5, **axes, **f64), flatten,
                               nnx.Linear(12, 2, **f64))
        for variable in (model.layers[0].scale, model.layers[0].bias, model.layers[1].scale):
            variable[...] = jnp.asarray(rng.standard_normal(12))
        x = rng.standard_normal((4, 3, 4))
        got = np.asarray(model(jnp.asarray(x)))
    spec, params, state = flax_nnx.from_flax(model, (3, 4), loss="mse")
    assert [(layer.kind, layer.dims) for layer in spec.layers[:2]] == [("layer_norm", 2),
                                                                       ("rms_norm", 2)]
    assert params[0]["weight"].shape == (3, 4)
    assert np.array_equal(params[0]["bias"].ravel(), np.asarray(model.layers[0].bias[...]))
    expected = predict(spec, params, x, "numpy", model_state=state)
    difference = tensorwise_difference({"y": got}, {"y": expected}, TOL)
    assert difference.ok, difference.worst


# ---------------------------------------------------------------- bad input


def _model():
    with jax.enable_x64(True):
        return nnx.Sequential(nnx.Linear(3, 2, param_dtype=jnp.float64, rngs=nnx.Rngs(0)))


def _unbiased():
    return nnx.Sequential(nnx.Linear(3, 2, use_bias=False, rngs=nnx.Rngs(0)))


BAD = {
    "spec-not-a-spec": (lambda: flax_nnx.to_flax("spec", []), TypeError, "spec"),
    "params-wrong": (lambda: flax_nnx.to_flax(CASES["gru"], [{}]), TypeError, "params"),
    "dense-on-conv-output": (lambda: flax_nnx.to_flax(*_spec_and_params(
        (2, 5, 5), [Conv2d(2, 3), Dense(3), Flatten(), Dense(2)])), ValueError,
        "spec.layers[1]"),
    "layer-norm-dims-2-on-channels-last": (lambda: flax_nnx.to_flax(*_spec_and_params(
        (2, 5, 5), [Conv2d(2, 3), LayerNorm(dims=2), Flatten(), Dense(2)])), ValueError,
        "spec.layers[1]"),
    "norm-axes-differ": (lambda: flax_nnx.from_flax(nnx.Sequential(nnx.LayerNorm(
        4, reduction_axes=(-2, -1), feature_axes=-1, rngs=nnx.Rngs(0))), (3, 4)), ValueError,
        "module.layers[0].reduction_axes, feature_axes"),
    "norm-axes-not-last": (lambda: flax_nnx.from_flax(nnx.Sequential(nnx.RMSNorm(
        3, reduction_axes=-2, feature_axes=-2, rngs=nnx.Rngs(0))), (3, 4)), ValueError,
        "module.layers[0].reduction_axes, feature_axes"),
    "attention-fn-other": (lambda: flax_nnx.from_flax(_attention_net(_doubled)[0], (5, 4)),
                           ValueError, "module.layers[0].attention_fn"),
    "batch-norm-on-a-sequence": (lambda: flax_nnx.to_flax(*_spec_and_params(
        (4, 3), [Dense(5), BatchNorm(), Flatten(), Dense(2)])), ValueError, "spec.layers[1]"),
    "module-not-a-module": (lambda: flax_nnx.from_flax("model", (3,)), TypeError, "module"),
    "input-shape-string": (lambda: flax_nnx.from_flax(_model(), "abc"), TypeError,
                           "input_shape"),
    "input-shape-zero": (lambda: flax_nnx.from_flax(_model(), (0,)), ValueError,
                         "input_shape[0]"),
    "input-shape-wrong": (lambda: flax_nnx.from_flax(_model(), (4,)), ValueError,
                          "module.layers[0] (Linear) weight"),
    "dtype-given": (lambda: flax_nnx.from_flax(_model(), (3,), dtype="float32"), TypeError,
                    "dtype"),
    "lambda": (lambda: flax_nnx.from_flax(nnx.Sequential(_model().layers[0], lambda x: x),
                                          (3,)), ValueError, "module.layers[1]"),
    "jax-gelu": (lambda: flax_nnx.from_flax(nnx.Sequential(_model().layers[0], jax.nn.gelu),
                                            (3,)), ValueError, "tanh approximation"),
    "optimized-lstm-cell": (lambda: flax_nnx.from_flax(nnx.Sequential(nnx.RNN(
        nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0)))), (5, 3)), ValueError,
        "module.layers[0].cell"),
    "no-bias": (lambda: flax_nnx.from_flax(_unbiased(), (3,)), ValueError,
                "module.layers[0].use_bias"),
}


def _spec_and_params(input_shape, layers):
    spec = net(input_shape, layers)
    return spec, init_params(spec)


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_naming_the_argument(case):
    call, error, name = BAD[case]
    with pytest.raises(error, match=re.escape(name)):
        call()
