"""BatchNorm, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.BatchNorm1d`` for inputs (C,) and (C, L), ``BatchNorm2d`` for (C, H, W).

Beyond the contract: training- and evaluation-mode outputs, input and parameter
gradients and the running statistics after several steps against
``nn.BatchNorm2d`` in float64 and float32; a full training run with shuffled
batches and a partial last batch; the n = 1 refusal; and negative controls for
flax's momentum, a biased running variance and eps outside the square root.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract, data_for

from nnparity.backends import get_backend, predict, train
from nnparity.backends.numpy.layers import batch_norm as numpy_bn
from nnparity.backends.numpy.network import empty_like
from nnparity.shared import (POLICY, SGD, Activation, Adam, Dataset, Dense, Flatten,
                             NetworkSpec, compare, init_model_state, init_params, to_flat)
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.layers.batch_norm import BatchNorm
from nnparity.shared.core.tolerance import tensorwise_difference

BACKENDS = ("numpy", "torch", "jax")


def torch_module(layer: BatchNorm, input_shape):
    import torch
    module = torch.nn.BatchNorm2d if len(input_shape) == 3 else torch.nn.BatchNorm1d
    return module(input_shape[0], eps=layer.eps, momentum=layer.momentum, affine=layer.affine)


class TestBatchNorm(LayerContract):
    cases = {
        "dense-bn-tanh-dense": NetworkSpec(
            input_shape=(3,), layers=(Dense(4), BatchNorm(), Activation("tanh"), Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        "channels-length-flatten": NetworkSpec(
            input_shape=(2, 5, 4), layers=(BatchNorm(), Flatten(), Dense(2)),
            init="xavier_uniform", optimizer=Adam(lr=0.01), batch_size=5, epochs=3, seed=3),
        "not-affine": NetworkSpec(
            input_shape=(3, 4), layers=(BatchNorm(affine=False), Flatten(), Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3, seed=5),
        "momentum-0.3-partial-batch": NetworkSpec(
            input_shape=(4,), layers=(Dense(3), BatchNorm(momentum=0.3, eps=1e-3),
                                      Activation("tanh"), Dense(2)),
            init="he_normal", optimizer=SGD(lr=0.05, momentum=0.9), batch_size=5, epochs=3,
            seed=7, shuffle=True),
    }


# ------------------------------------------------------------ against nn.BatchNorm2d

def run_layer_steps(layer, x_steps, dy_steps, params, buffers, train_mode):
    """NumPy forward and backward of one layer over several batches: outputs, dx,
    dγ, dβ per step, the buffers updated in place."""
    out = []
    for x, dy in zip(x_steps, dy_steps, strict=True):
        y, cache = numpy_bn.forward(layer, params, buffers, x, train_mode)
        grads = empty_like([params])[0]
        dx = numpy_bn.backward(layer, params, cache, dy, grads, need_input_grad=True)
        out.append({"y": y, "dx": dx, **{f"d{k}": v for k, v in grads.items()}})
    return out


def torch_layer_steps(layer, x_steps, dy_steps, params, buffers, train_mode, dtype):
    """The same with ``nn.BatchNorm2d`` and autograd; its buffers after the steps."""
    torch = require("torch")
    module = torch_module(layer, x_steps[0].shape[1:]).to(getattr(torch, dtype))
    module.load_state_dict({k: torch.from_numpy(np.array(v)).to(module.state_dict()[k].dtype)
                            for k, v in {**params, **buffers}.items()})
    module.train(train_mode)
    out = []
    for x, dy in zip(x_steps, dy_steps, strict=True):
        xt = torch.from_numpy(x).requires_grad_(True)
        module.zero_grad()
        y = module(xt)
        y.backward(torch.from_numpy(dy))
        out.append({"y": y.detach().numpy(), "dx": xt.grad.numpy(),
                    "dweight": module.weight.grad.numpy(), "dbias": module.bias.grad.numpy()})
    state = {k: v.numpy().astype(dtype) for k, v in module.state_dict().items()
             if k in buffers}
    return out, state


def layer_data(dtype, steps=4, shape=(6, 3, 4, 5), seed=0):
    rng = np.random.default_rng(seed)
    x = [(rng.standard_normal(shape) * 2 + 3).astype(dtype) for _ in range(steps)]
    dy = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
    params = {"weight": rng.uniform(0.5, 1.5, shape[1]).astype(dtype),
              "bias": rng.standard_normal(shape[1]).astype(dtype)}
    return x, dy, params


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("train_mode", [True, False], ids=["train", "eval"])
def test_outputs_gradients_and_running_stats_match_batchnorm2d(dtype, train_mode):
    layer = BatchNorm(momentum=0.2, eps=1e-4)
    x, dy, params = layer_data(dtype)
    buffers = {k: v.astype(dtype) for k, v in layer.init_buffers((3,)).items()}
    if not train_mode:                                      # non-trivial running statistics
        buffers["running_mean"][...] = [0.5, -1.0, 2.0]
        buffers["running_var"][...] = [0.7, 1.3, 2.5]
    expected, expected_state = torch_layer_steps(layer, x, dy, params, dict(buffers),
                                                 train_mode, dtype)
    actual = run_layer_steps(layer, x, dy, params, buffers, train_mode)
    tol = POLICY[dtype]
    for step, (a, e) in enumerate(zip(actual, expected, strict=True)):
        report = tensorwise_difference(a, e, tol)
        assert report.ok, (step, str(report))
    assert tensorwise_difference(buffers, expected_state, tol).ok
    assert buffers["num_batches_tracked"] == (len(x) if train_mode else 0)


def test_running_statistics_differ_between_train_and_eval():
    """predict (evaluation mode) uses the running statistics: after training they
    differ from the batch's, so the two modes give different outputs (torch 0.61
    in layer-traps.md)."""
    layer = BatchNorm()
    x, _, params = layer_data("float64", steps=1)
    buffers = {k: v for k, v in layer.init_buffers((3,)).items()}
    y_train, _ = numpy_bn.forward(layer, params, buffers, x[0], True)
    y_eval, _ = numpy_bn.forward(layer, params, buffers, x[0], False)
    assert not tensorwise_difference({"y": y_eval}, {"y": y_train}, POLICY["float64"]).ok


# ------------------------------------------------------------- negative controls

def variant_forward(layer, params, buffers, x, momentum_old=False, biased_running=False,
                    eps_outside=False):
    """A hand-written BatchNorm forward with one of the three traps switched on."""
    axes = (0, 2, 3)
    n = x.size // x.shape[1]
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    m = layer.momentum
    new_var = var if biased_running else var * n / (n - 1)
    if momentum_old:               # flax/Keras: m weighs the OLD value (their m = 1 - ours)
        buffers["running_mean"] = m * buffers["running_mean"] + (1 - m) * mean
        buffers["running_var"] = m * buffers["running_var"] + (1 - m) * new_var
    else:
        buffers["running_mean"] = (1 - m) * buffers["running_mean"] + m * mean
        buffers["running_var"] = (1 - m) * buffers["running_var"] + m * new_var
    std = np.sqrt(var) + layer.eps if eps_outside else np.sqrt(var + layer.eps)
    c = (slice(None), None, None)
    return (x - mean[c]) / std[c] * params["weight"][c] + params["bias"][c], buffers


@pytest.mark.parametrize("trap, fails", [
    ("momentum_old", "running statistics"), ("biased_running", "running statistics"),
    ("eps_outside", "output"), (None, "nothing")])
def test_negative_controls_each_trap_fails_against_torch(trap, fails):
    """Each trap, alone, makes the output or the running statistics (the one it
    touches) differ from nn.BatchNorm2d beyond the float64 tolerance; with none,
    the same code passes. Measured: flax's momentum rel 2.5 (running_mean), a
    biased running var 5e-3, eps outside the sqrt 3.9e-3 (output)."""
    layer = BatchNorm(momentum=0.1, eps=1e-2)          # a visible eps for the eps trap
    x, dy, params = layer_data("float64", steps=3)
    buffers = {k: v for k, v in layer.init_buffers((3,)).items()}
    expected, expected_state = torch_layer_steps(layer, x, dy, params, dict(buffers), True,
                                                 "float64")
    outs = []
    for xb in x:
        y, buffers = variant_forward(layer, params, buffers, xb, **({trap: True} if trap else {}))
        outs.append(y)
    tol = POLICY["float64"]
    stats = ("running_mean", "running_var")
    output_ok = all(tensorwise_difference({"y": y}, {"y": e["y"]}, tol).ok
                    for y, e in zip(outs, expected, strict=True))
    stats_ok = tensorwise_difference({k: buffers[k] for k in stats},
                                     {k: expected_state[k] for k in stats}, tol).ok
    assert (output_ok, stats_ok) == (fails != "output", fails != "running statistics")


# ------------------------------------------------------------- training runs

@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_run_with_shuffled_and_partial_batches_matches_across_backends(dtype):
    """13 rows in batches of 4 (the last holds 1 row of (C, L) = (2, 3): 3 values per
    channel), shuffled every epoch: parameters, running statistics, batch count and
    predictions agree in every backend."""
    for backend in BACKENDS:
        require(backend)
    spec = NetworkSpec(input_shape=(2, 3), layers=(BatchNorm(momentum=0.2), Flatten(),
                                                   Dense(4), Activation("tanh"), Dense(2)),
                       init="torch_default", optimizer=Adam(lr=0.01), batch_size=4, epochs=5,
                       seed=2, shuffle=True, dtype=dtype)
    data = data_for(spec, rows=13, seed=1)
    data = Dataset(*(a.astype(dtype) for a in (data.x_train, data.y_train, data.x_test,
                                               data.y_test)))
    report = compare(spec, data)
    assert report.ok, str(report)
    results = {b: train(spec, data, b) for b in BACKENDS}
    steps = 5 * 4
    for backend, result in results.items():
        state = to_flat(result.model_state)
        assert state["0.num_batches_tracked"] == steps, backend
        assert tensorwise_difference(state, to_flat(results["numpy"].model_state),
                                     POLICY[dtype]).ok, backend


def test_torch_training_run_matches_torch_nn_with_an_int64_batch_count():
    """The torch backend's run against nn.Sequential + torch.optim.SGD over the same
    batches (a partial last one included): parameters and buffers."""
    torch = require("torch")
    spec = NetworkSpec(input_shape=(3, 2, 2), layers=(BatchNorm(momentum=0.3), Flatten(),
                                                      Dense(2)),
                       init="torch_default", optimizer=SGD(lr=0.1), batch_size=4, epochs=2,
                       seed=4, shuffle=True)
    data = data_for(spec, rows=9, seed=2)
    result = train(spec, data, "torch")
    model = TestBatchNorm().sequential(spec, init_params(spec))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    from nnparity.shared.core.data import batch_plan
    plan = batch_plan(9, 4, 2, spec.seed, True)
    for epoch in range(2):
        for rows in plan.batches(epoch):
            opt.zero_grad()
            out = model(torch.from_numpy(data.x_train[rows]))
            torch.nn.functional.mse_loss(out, torch.from_numpy(data.y_train[rows])).backward()
            opt.step()
    ours = {**to_flat(result.params), **to_flat(result.model_state)}
    expected = {k: model.state_dict()[k].numpy().astype(np.float64) for k in ours}
    assert tensorwise_difference(ours, expected, POLICY["float64"]).ok
    assert model.state_dict()["0.num_batches_tracked"].item() == 6


# ------------------------------------------------------------- validation

def test_one_value_per_channel_is_refused_as_torch_refuses_it():
    torch = require("torch")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(3)(torch.zeros(1, 3))                      # torch's behaviour
    layers = (Dense(3), BatchNorm(), Dense(1))
    with pytest.raises(ValueError, match="batch_size=1 is not allowed.*BatchNorm"):
        NetworkSpec(input_shape=(2,), layers=layers, batch_size=1)
    with pytest.raises(ValueError, match="batch_size=1 is not allowed.*BatchNorm"):
        NetworkSpec(input_shape=(2, 1), layers=(BatchNorm(), Flatten(), Dense(1)),
                    batch_size=1)
    NetworkSpec(input_shape=(2, 2), layers=(BatchNorm(), Flatten(), Dense(1)), batch_size=1)
    spec = NetworkSpec(input_shape=(2,), layers=layers, batch_size=4, epochs=1)
    rng = np.random.default_rng(0)
    for rows in (5, 1):                               # a partial last batch of 1; one row
        data = Dataset(rng.standard_normal((rows, 2)), rng.standard_normal((rows, 1)),
                       rng.standard_normal((2, 2)), rng.standard_normal((2, 1)))
        with pytest.raises(ValueError, match=f"{rows} training rows, batch_size 4.*BatchNorm"):
            train(spec, data)
        for backend in BACKENDS:                      # evaluation mode takes one row
            require(backend)
            predict(spec, init_params(spec), data.x_train[:1], backend)


@pytest.mark.parametrize("bad, match", [
    ({"momentum": 1.5}, "BatchNorm.momentum"), ({"momentum": -0.1}, "BatchNorm.momentum"),
    ({"eps": 0.0}, "BatchNorm.eps"), ({"eps": float("nan")}, "BatchNorm.eps"),
    ({"affine": 1}, "BatchNorm.affine")])
def test_bad_fields_are_refused(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        BatchNorm(**bad)


def test_shapes_round_trip_and_dtype():
    layer = BatchNorm(momentum=0.3, eps=1e-3, affine=False)
    assert layer_from_dict(layer.to_dict()) == layer
    with pytest.raises(ValueError, match=r"layers\[0\] input shape"):
        NetworkSpec(input_shape=(2, 2, 2, 2), layers=(BatchNorm(), Flatten(), Dense(1)))
    with pytest.raises(ValueError, match=r"layers\[0\]\.eps"):      # 0 in float32
        NetworkSpec(input_shape=(2,), layers=(BatchNorm(eps=1e-50), Dense(1)),
                    dtype="float32")
    spec = NetworkSpec(input_shape=(3, 4), layers=(BatchNorm(), Flatten(), Dense(1)),
                       init="zeros", dtype="float32")
    assert spec.param_shapes[0] == {"weight": (3,), "bias": (3,)}
    assert spec.buffer_shapes[0] == {"running_mean": (3,), "running_var": (3,),
                                     "num_batches_tracked": ()}
    state = init_model_state(spec)
    assert all(v.dtype == np.float32 for v in state[0].values())
    params = init_params(spec)                         # ones and zeros whatever the rule
    assert np.array_equal(params[0]["weight"], np.ones(3))
    assert np.array_equal(params[0]["bias"], np.zeros(3))


def test_every_backend_returns_the_updated_model_state_from_a_step():
    """The contract's ``step`` (the harness's teacher-forced steps) carries the
    running statistics out of every backend."""
    spec = TestBatchNorm.cases["dense-bn-tanh-dense"]
    params, state = init_params(spec), init_model_state(spec)
    from nnparity.shared.core.optimizers import init_state
    x, y = data_for(spec).x_train[:4], data_for(spec).y_train[:4]
    results = {}
    for backend in BACKENDS:
        require(backend)
        results[backend] = get_backend(backend).step(spec, params, state,
                                                     init_state(spec.optimizer, params), x, y)
    for backend, result in results.items():
        flat = to_flat(result.model_state)
        assert flat["1.num_batches_tracked"] == 1, backend
        assert not np.array_equal(flat["1.running_mean"], 0), backend
        assert tensorwise_difference(flat, to_flat(results["numpy"].model_state),
                                     POLICY["float64"]).ok, backend
    assert to_flat(state)["1.num_batches_tracked"] == 0          # the arguments untouched


@pytest.mark.parametrize("first, second", [("numpy", "jax"), ("jax", "torch")])
def test_resume_carries_the_running_statistics_through_a_checkpoint(tmp_path, first, second):
    """Train 2 epochs in one backend, save (``model.*`` entries), resume to 4 in
    another: the same parameters and running statistics as 4 epochs in one go."""
    from nnparity.shared import load_checkpoint, save_checkpoint
    require(first)
    require(second)
    spec = TestBatchNorm.cases["momentum-0.3-partial-batch"].replace(epochs=4)
    data = data_for(spec)
    half = train(spec.replace(epochs=2), data, first)
    path = tmp_path / "bn.npz"
    save_checkpoint(path, half.spec, half.params, half.opt_state, model_state=half.model_state)
    with np.load(path, allow_pickle=False) as archive:
        assert {"model.1.running_mean", "model.1.running_var",
                "model.1.num_batches_tracked"} <= set(archive.files)
    resumed = train(spec, data, second, resume=load_checkpoint(path))
    whole = train(spec, data, "numpy")
    assert to_flat(resumed.model_state)["1.num_batches_tracked"] == 4 * 3
    assert tensorwise_difference({**to_flat(resumed.params), **to_flat(resumed.model_state)},
                                 {**to_flat(whole.params), **to_flat(whole.model_state)},
                                 POLICY["float64"]).ok


def test_jax_two_pass_variance_holds_where_the_fast_variance_cancels():
    """float32 inputs of mean 3000 and spread 1 (layer-traps.md X6): against the
    float64 batch normalisation of the same float32 numbers, the JAX layer's
    mean((x - mean)**2) is off by a few ulps of 3000 relative to the spread
    (measured 2.5e-4; torch 9e-5, as the input's own rounding, ulp(3000) = 2.4e-4,
    allows), while flax's default E[x**2] - E[x]**2 cancels to a variance of 0 in
    some channels and misses by hundreds (measured 741)."""
    jnp = require("jax").numpy
    from nnparity.backends.jax.layers import batch_norm as jax_bn
    layer = BatchNorm()
    x = (np.random.default_rng(0).standard_normal((16, 3)) + 3000).astype(np.float32)
    x64 = x.astype(np.float64)
    reference = (x64 - x64.mean(axis=0)) / np.sqrt(x64.var(axis=0) + layer.eps)
    buffers = {k: v.astype(np.float32) for k, v in layer.init_buffers((3,)).items()}
    params = {"weight": np.ones(3, np.float32), "bias": np.zeros(3, np.float32)}
    actual, _ = jax_bn.forward(layer, params, buffers, jnp.asarray(x), True)
    bound = 8 * np.spacing(np.float32(3000)) / x64.std(axis=0).min()   # 8 ulps of the input
    assert np.abs(np.asarray(actual) - reference).max() <= bound
    xj = jnp.asarray(x)
    fast_var = jnp.maximum((xj * xj).mean(axis=0) - xj.mean(axis=0) ** 2, 0)
    fast = (xj - xj.mean(axis=0)) / jnp.sqrt(fast_var + layer.eps)
    assert np.abs(np.asarray(fast) - reference).max() > 1
