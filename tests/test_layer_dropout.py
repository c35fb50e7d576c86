"""Dropout, plugged into the shared layer tests (``layer_contract.py``); its oracle
is ``torch.nn.Dropout``, whose masks come from torch's own random stream: the
contract reads them off torch's output and hands them to our layers.

Beyond the contract: kept values bitwise equal to ``F.dropout``'s in every
backend, float64 and float32 (and the division form as a negative control); the
masks (rate, independence, determinism, the JAX loop's layout); evaluation is the
identity; resume draws what the uninterrupted run drew; and a mask drawn per
backend fails parity.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract, data_for

from nnparity.backends import predict, train
from nnparity.shared import (SGD, Activation, Adam, Conv2d, Dense, Dropout, Flatten,
                             NetworkSpec, compare, init_params, load_checkpoint,
                             save_checkpoint)
from nnparity.shared.core.data import batch_plan
from nnparity.shared.core.draws import step_draws
from nnparity.shared.core.layers import layer_from_dict

BACKENDS = ("numpy", "torch", "jax")


def torch_module(layer: Dropout, input_shape):
    import torch
    return torch.nn.Dropout(layer.p)


class TestDropout(LayerContract):
    cases = {
        "dense-tanh-dropout-dense": NetworkSpec(
            input_shape=(5,), layers=(Dense(6), Activation("tanh"), Dropout(0.3), Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        "input-dropout-shuffled-partial": NetworkSpec(
            input_shape=(4,), layers=(Dropout(0.5), Dense(3), Activation("tanh"), Dropout(0.1),
                                      Dense(2)),
            init="xavier_uniform", optimizer=Adam(lr=0.01), batch_size=5, epochs=3, seed=2,
            shuffle=True),
        "conv-dropout-flatten": NetworkSpec(
            input_shape=(1, 4, 4), layers=(Conv2d(2, 3, padding=1), Activation("tanh"),
                                           Dropout(0.25), Flatten(), Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=2, seed=3),
    }


# ------------------------------------------------------------ one layer, against torch

def one_layer_forward_and_backward(backend, layer, x, keep, d_y):
    """(y, dL/dx) of one Dropout layer in ``backend`` given the mask, L = sum(y * d_y)."""
    require(backend)
    if backend == "numpy":
        from nnparity.backends.numpy.layers import dropout
        y, cache = dropout.forward(layer, {}, {}, x, True, keep)
        return y, dropout.backward(layer, {}, cache, d_y, {}, need_input_grad=True)
    if backend == "torch":
        import torch

        from nnparity.backends.torch.layers import dropout
        xt = torch.from_numpy(x).requires_grad_(True)
        y = dropout.forward(layer, {}, {}, xt, True, keep)
        (y * torch.from_numpy(d_y)).sum().backward()
        return y.detach().numpy(), xt.grad.numpy()
    import jax

    from nnparity.backends.jax.layers import dropout
    with jax.enable_x64(True):
        y, vjp = jax.vjp(lambda x: dropout.forward(layer, {}, {}, x, True, keep)[0],
                         jax.numpy.asarray(x))
        return np.asarray(y), np.asarray(vjp(jax.numpy.asarray(d_y))[0])


def torch_dropout(p, x, d_y):
    """torch's ``F.dropout`` in training mode: (y, dL/dx, its keep mask)."""
    torch = require("torch")
    torch.manual_seed(0)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = torch.nn.functional.dropout(xt, p, training=True)
    (y * torch.from_numpy(d_y)).sum().backward()
    keep = (y != 0).numpy() if p < 1 else np.zeros(x.shape, bool)
    return y.detach().numpy(), xt.grad.numpy(), keep


def gaussian(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    assert (x != 0).all()                           # a zero would hide torch's mask
    return x, rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.0, 1.0])
def test_kept_values_and_gradients_equal_torch_dropout_bitwise(backend, dtype, p):
    """Given torch's mask, every backend's y and dL/dx are torch's, bit for bit:
    the scale is 1/(1-p) rounded as torch rounds it, multiplied, not divided."""
    x, d_y = gaussian((64, 3, 5), dtype)
    y_ref, dx_ref, keep = torch_dropout(p, x, d_y)
    y, dx = one_layer_forward_and_backward(backend, Dropout(p), x, keep, d_y)
    assert y.dtype == np.dtype(dtype) and dx.dtype == np.dtype(dtype)
    assert np.array_equal(y, y_ref) and np.array_equal(dx, dx_ref)


def test_negative_control_dividing_by_1_minus_p_differs_from_torch():
    """flax's eager arithmetic, x / (1 - p), is not torch's x * (1 / (1 - p)): the
    bitwise check above would catch a backend that divides."""
    p = 0.1
    x, d_y = gaussian((64, 3, 5), "float64")
    y_ref, _, keep = torch_dropout(p, x, d_y)
    divided = np.where(keep, x / (1 - p), 0.0)
    differs = (divided != y_ref)[keep]
    assert differs.mean() > 0.2                    # about 40% of the kept elements


# ------------------------------------------------------------------------ the masks

def test_masks_keep_each_element_with_probability_1_minus_p():
    spec = NetworkSpec(input_shape=(1000,), layers=(Dropout(0.3), Dense(1)))
    keep = step_draws(spec, 0, 200)[0]                         # 200,000 draws
    assert keep.shape == (200, 1000) and keep.dtype == bool
    assert abs(keep.mean() - 0.7) < 0.005                      # 4.9 standard deviations
    assert step_draws(spec, 0, 200)[1] is None                 # Dense draws nothing


def test_masks_are_a_function_of_seed_step_and_layer_only():
    spec = NetworkSpec(input_shape=(50,), layers=(Dropout(0.5), Dense(50), Dropout(0.5),
                                                  Dense(1)), seed=4)
    first = step_draws(spec, 7, 10)
    assert all(np.array_equal(a, b) for a, b in zip(first[::2], step_draws(spec, 7, 10)[::2],
                                                    strict=True))
    assert not np.array_equal(first[0], first[2])                          # layer
    assert not np.array_equal(first[0], step_draws(spec, 8, 10)[0])        # step
    assert not np.array_equal(first[0], step_draws(spec.replace(seed=5), 7, 10)[0])  # seed


def test_the_jax_loop_scans_exactly_the_masks_of_each_step():
    """The compiled loop's precomputed masks (``chunk_draws``) are the masks each
    step draws, for full batches and the partial last one, every epoch."""
    require("jax")
    from nnparity.backends.jax.train import chunk_draws
    spec = TestDropout.cases["input-dropout-shuffled-partial"]
    plan = batch_plan(12, spec.batch_size, 4, spec.seed, spec.shuffle, first_epoch=2)
    full, tail = chunk_draws(spec, plan, 1, 2, capacity=3)
    assert full[1] is None and tail[2] is None                 # Dense, Activation
    for e in range(2):
        first = plan.first_step + (1 + e) * plan.steps_per_epoch
        for k in range(plan.steps_per_epoch):
            expected = step_draws(spec, first + k, len(plan.rows(first + k)))
            for i in (0, 3):
                got = full[i][e, k] if k < plan.full.shape[1] else tail[i][e]
                assert np.array_equal(got, expected[i]), (e, k, i)
    assert not full[0][2].any()                                # padding, never run


def test_evaluation_is_the_identity():
    spec = TestDropout.cases["dense-tanh-dropout-dense"]
    without = spec.replace(layers=tuple(layer for layer in spec.layers
                                        if not isinstance(layer, Dropout)))
    params = init_params(spec)
    x = data_for(spec).x_test
    for backend in BACKENDS:
        require(backend)
        assert np.array_equal(predict(spec, params, x, backend),
                              predict(without, [params[0], {}, params[3]], x, backend)), backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_resumed_run_draws_the_uninterrupted_runs_masks(backend, tmp_path):
    require(backend)
    spec = TestDropout.cases["input-dropout-shuffled-partial"]
    data = data_for(spec)
    whole = train(spec, data, backend=backend)
    half = train(spec.replace(epochs=1), data, backend=backend)
    save_checkpoint(tmp_path / "half.npz", spec.replace(epochs=1), half.params, half.opt_state,
                    epochs_done=1, model_state=half.model_state)
    resumed = train(spec, data, backend=backend, resume=load_checkpoint(tmp_path / "half.npz"))
    for a, b in zip(whole.params, resumed.params, strict=True):
        for name in a:
            assert np.array_equal(a[name], b[name]), name


def test_negative_control_a_mask_drawn_per_backend_fails_parity(monkeypatch):
    """torch drawing its own masks (here: the next seed's) is caught at step 0."""
    require("torch")
    torch_train = importlib.import_module("nnparity.backends.torch.train")
    real = torch_train.step_draws
    monkeypatch.setattr(torch_train, "step_draws",
                        lambda spec, step, rows: real(spec.replace(seed=spec.seed + 1), step,
                                                      rows))
    spec = TestDropout.cases["dense-tanh-dropout-dense"]
    report = compare(spec, data_for(spec), backends=("numpy", "torch"))
    assert not report.ok
    assert report.parity[0].diagnosis.startswith("implementation differs: step 0")


# --------------------------------------------------------------------- the spec

def test_dropout_round_trips_and_keeps_the_shape():
    assert layer_from_dict(Dropout(0.2).to_dict()) == Dropout(0.2)
    assert Dropout().p == 0.5                                  # torch's default
    spec = NetworkSpec(input_shape=(3, 4), layers=(Dropout(), Flatten(), Dense(2)))
    assert spec.layer_input_shapes == ((3, 4), (3, 4), (12,), (2,))
    assert spec.param_shapes[0] == {} and spec.buffer_shapes[0] == {}


@pytest.mark.parametrize("p, error, match", [
    (1.5, ValueError, r"Dropout\.p.*1\.5.*<= 1"), (-0.1, ValueError, r"Dropout\.p"),
    (float("nan"), ValueError, r"Dropout\.p"), ("0.5", TypeError, r"Dropout\.p.*real number"),
    (True, TypeError, r"Dropout\.p")])
def test_bad_p_is_refused(p, error, match):
    with pytest.raises(error, match=match):
        Dropout(p)


@pytest.mark.parametrize("dtype, expected", [("float64", 1 / 0.9),
                                             ("float32", float(np.float32(1) / np.float32(0.9)))])
def test_the_scale_is_rounded_in_the_spec_dtype(dtype, expected):
    assert Dropout(0.1).scale(dtype) == expected
    assert Dropout(1.0).scale(dtype) == 0.0
