"""The tests every layer kind must pass, written once.

A layer kind's test module (``tests/test_layer_<kind>.py``) subclasses
``LayerContract`` and sets:

- ``cases``: {id: NetworkSpec} small float64 networks that use the kind (smooth
  ones: the finite-difference check needs no kinks near the data);
and defines, at module level, ``torch_module(layer, input_shape)``: the
``torch.nn`` module that computes the same layer (the outside oracle), with
parameters named as ours. A network mixes kinds, so the oracle of each layer
is looked up in its own kind's test module (``torch_oracle``).

Every test below then runs for every case (``conftest.pytest_generate_tests``
parametrizes ``case``):

- shapes: init, every backend's forward and the spec agree;
- gradients: the NumPy backend's hand-written backward pass against central
  finite differences, and against ``torch.nn`` + autograd in training mode (a
  ``nn.Dropout`` draws its masks from torch's stream; our layers are given them);
- forward: the NumPy, torch and JAX backends (``predict``, evaluation mode)
  against ``torch.nn.Sequential`` in ``eval()`` loaded with our parameters and
  model state by their flat names (``load_state_dict`` with ``strict=True``:
  the names are torch's);
- model state: after one training-mode forward pass, the NumPy layers' buffers
  (e.g. running statistics) against the torch modules' buffers (Dropout's masks
  again torch's);
- parity: ``compare`` in all three backends, with a negative control;
- checkpoints: save, load, predict the same; the file names tensors by their
  flat names.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from conftest import perturb_torch, require

from nnparity.backends import get_backend, predict, train
from nnparity.backends.numpy.network import empty_like, forward, loss_and_gradients
from nnparity.shared import (POLICY, Dataset, NetworkSpec, compare, init_model_state,
                             init_params, load_checkpoint, save_checkpoint, to_flat)
from nnparity.shared.core.draws import step_draws
from nnparity.shared.core.tolerance import difference, tensorwise_difference
from nnparity.shared.core.tree import leaves

#: the finite-difference acceptance threshold (norm-based relative error), as in
#: tests/test_gradcheck.py
MAX_RELATIVE_ERROR = 1e-6
BACKENDS = ("numpy", "torch", "jax")


@functools.cache
def torch_oracle(kind: str):
    """``torch_module`` of ``tests/test_layer_<kind>.py``, loaded from its file."""
    path = Path(__file__).with_name(f"test_layer_{kind}.py")
    assert path.exists(), f"layer kind {kind!r} has no test module {path.name}"
    spec = importlib.util.spec_from_file_location(f"_oracle_{kind}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.torch_module


def data_for(spec: NetworkSpec, rows: int = 12, seed: int = 0) -> Dataset:
    """Seeded regression data shaped for ``spec`` (targets of ``spec.n_outputs`` columns):
    x Gaussian, or integer tokens of the whole vocabulary for a network that starts
    with an Embedding."""
    rng = np.random.default_rng(seed)
    if spec.takes_tokens:
        x = rng.integers(0, spec.layers[0].num_embeddings, (rows, *spec.input_shape))
    else:
        x = rng.standard_normal((rows, *spec.input_shape))
    y = rng.standard_normal((rows, spec.n_outputs))
    return Dataset(x, y, x[:4], y[:4])


def with_targets(spec: NetworkSpec, data: Dataset) -> Dataset:
    """``data`` with targets for the spec's loss: class labels for cross_entropy,
    probabilities in [0, 1] for bce_with_logits, ``data_for``'s values otherwise."""
    rng = np.random.default_rng(5)
    rows = len(data.y_train)
    if spec.loss == "cross_entropy":
        y = rng.integers(0, spec.n_outputs, rows)
    elif spec.loss == "bce_with_logits":
        y = rng.uniform(0.0, 1.0, (rows, spec.n_outputs))
    else:
        return data
    return Dataset(data.x_train, y, data.x_test, y[:len(data.x_test)])


def torch_batch_norm_after_a_step(batch_norm_params, batch_norm_state, z, momentum):
    """``torch.nn.BatchNorm2d``'s running statistics after one training-mode call on z
    (N, C, H, W), from nnparity's BatchNorm parameters and model state (6 batches
    tracked), with the batch's biased variance per channel and n, the values per
    channel: (running_mean, running_var, batch_var, n)."""
    torch = require("torch")
    zt = torch.from_numpy(z)
    oracle = torch.nn.BatchNorm2d(z.shape[1], momentum=momentum, dtype=zt.dtype)
    oracle.load_state_dict({"weight": torch.from_numpy(batch_norm_params["weight"]),
                            "bias": torch.from_numpy(batch_norm_params["bias"]),
                            "running_mean": torch.from_numpy(batch_norm_state["running_mean"]),
                            "running_var": torch.from_numpy(batch_norm_state["running_var"]),
                            "num_batches_tracked": torch.tensor(6)})
    oracle.train()(zt)
    batch_var = z.astype(np.float64).var(axis=(0, 2, 3))
    n = z.shape[0] * z.shape[2] * z.shape[3]
    return oracle.running_mean.numpy(), oracle.running_var.numpy(), batch_var, n


def assert_biased_running_variance(mean, var, torch_after, momentum, tol):
    """A BatchNorm whose running variance takes the *biased* batch variance (Flax's,
    Equinox's, Keras's) against torch's after the same step (``torch_after`` from
    ``torch_batch_norm_after_a_step``): the means agree; the variances differ by
    momentum * batch_var * (1 - n / (n - 1)) = -momentum * batch_var / (n - 1), and
    by that alone."""
    torch_mean, torch_var, batch_var, n = torch_after
    assert difference(mean, torch_mean, tol).ok
    assert not difference(var, torch_var, tol).ok
    assert difference(var, torch_var - momentum * batch_var / (n - 1), tol).ok


def batch(spec: NetworkSpec):
    data = data_for(spec)
    return data.x_train[:spec.batch_size], data.y_train[:spec.batch_size]


def numpy_gradients(spec, params, x, y, draws=None):
    """(loss, gradients) of a NumPy training step on (x, y); Dropout's masks are
    ``draws`` (one entry per layer), or those of step 0."""
    loss, grads = loss_and_gradients(spec, params, init_model_state(spec), x, y,
                                     empty_like(params),
                                     step_draws(spec, 0, x.shape[0]) if draws is None else draws)
    return float(loss), grads


def torch_training_forward(model, x):
    """``model`` (a ``torch.nn.Sequential``) in training mode on x, and the masks its
    ``nn.Dropout`` modules drew from torch's own random stream, as draws for our
    layers (None for the others): keep = output != 0, read where the input is
    nonzero (x here is Gaussian, and every test input is)."""
    torch = require("torch")
    draws = [None] * len(model)

    def hook(index):
        def record(module, inputs, output):
            assert bool((inputs[0] != 0).all()), "a zero input hides its dropout mask"
            draws[index] = (output != 0).numpy().copy()
        return record

    handles = [module.register_forward_hook(hook(i)) for i, module in enumerate(model)
               if isinstance(module, torch.nn.Dropout)]
    try:
        torch.manual_seed(0)
        out = model.train()(torch.from_numpy(x))
    finally:
        for handle in handles:
            handle.remove()
    return out, draws


def finite_difference_gradients(spec, params, x, y):
    """Central differences of the NumPy loss in every parameter element."""
    out = []
    for layer in params:
        entry = {}
        for name, value in layer.items():
            grad = np.empty_like(value)
            for index in np.ndindex(value.shape):
                saved = value[index]
                h = 1e-6 * max(1.0, abs(saved))
                value[index] = saved + h
                up = numpy_gradients(spec, params, x, y)[0]
                value[index] = saved - h
                down = numpy_gradients(spec, params, x, y)[0]
                value[index] = saved
                grad[index] = (up - down) / (2 * h)
            entry[name] = grad
        out.append(entry)
    return out


def relative_error(actual, expected) -> float:
    a = np.concatenate([np.ravel(t) for t in leaves(actual)])
    e = np.concatenate([np.ravel(t) for t in leaves(expected)])
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-300))


class LayerContract:
    """Subclass it in the layer kind's test module (see the module docstring)."""

    cases: ClassVar[dict[str, NetworkSpec]] = {}

    # ------------------------------------------------------------------ shapes

    def test_shapes_agree(self, case):
        spec = case
        params = init_params(spec)
        assert [{k: v.shape for k, v in layer.items()} for layer in params] == \
            list(spec.param_shapes)
        assert all(v.dtype == np.dtype(spec.dtype) for v in leaves(params))
        x, _ = batch(spec)
        for backend in BACKENDS:
            require(backend)
            out = predict(spec, params, x, backend)
            assert out.shape == (x.shape[0], *spec.output_shape), backend

    # --------------------------------------------------------------- gradients

    def expected_gradients(self, spec, x, finite_differences):
        """The gradients the backward pass must give on input x: the finite
        differences, unless the kind's convention says otherwise (a subclass
        overrides this; Embedding's padding row gets none, as in torch)."""
        return finite_differences

    def test_backward_matches_finite_differences(self, case):
        spec = case
        params = init_params(spec)
        x, y = batch(spec)
        _, grads = numpy_gradients(spec, params, x, y)
        expected = self.expected_gradients(spec, x,
                                           finite_difference_gradients(spec, params, x, y))
        assert relative_error(grads, expected) <= MAX_RELATIVE_ERROR

    def test_negative_control_a_wrong_gradient_fails_the_finite_differences(self, case):
        spec = case
        params = init_params(spec)
        x, y = batch(spec)
        _, grads = numpy_gradients(spec, params, x, y)
        first = leaves(grads)[0]
        first.flat[0] += 1e-3 * max(1.0, np.abs(first).max())
        assert relative_error(grads, finite_difference_gradients(spec, params, x, y)) \
            > MAX_RELATIVE_ERROR

    def sequential(self, spec, params, model_state=None):
        """torch.nn.Sequential of the oracle modules, loaded with ``params`` and the
        model state by flat name (``strict=True``: the names must be torch's; each
        array takes the dtype of torch's entry, e.g. an int64 batch count)."""
        torch = require("torch")
        modules = [torch_oracle(layer.kind)(layer, shape)
                   for layer, shape in zip(spec.layers, spec.layer_input_shapes, strict=False)]
        model = torch.nn.Sequential(*modules).to(getattr(torch, spec.dtype))
        state = model.state_dict()
        ours = {**to_flat(params),
                **to_flat(init_model_state(spec) if model_state is None else model_state)}
        assert sorted(ours) == sorted(state), (sorted(ours), sorted(state))
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)).to(state[k].dtype)
                               for k, v in ours.items()}, strict=True)
        return model

    def test_backward_matches_torch_nn_autograd(self, case):
        torch = require("torch")
        spec = case
        params = init_params(spec)
        x, y = batch(spec)
        model = self.sequential(spec, params)
        out, draws = torch_training_forward(model, x)          # torch's own dropout masks
        loss, grads = numpy_gradients(spec, params, x, y, draws)
        expected_loss = torch.nn.functional.mse_loss(out, torch.from_numpy(y))
        expected_loss.backward()
        expected = {name: p.grad.numpy() for name, p in model.named_parameters()}
        tol = POLICY[spec.dtype]
        assert tensorwise_difference({"loss": loss}, {"loss": expected_loss.item()}, tol).ok
        assert list(expected) == list(to_flat(grads))
        assert tensorwise_difference(to_flat(grads), expected, tol).ok

    # ----------------------------------------------------------------- forward

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_forward_matches_torch_nn(self, case, backend):
        torch = require("torch")
        require(backend)
        spec = case
        params = init_params(spec)
        x, _ = batch(spec)
        with torch.no_grad():                       # predict is evaluation mode
            expected = self.sequential(spec, params).eval()(torch.from_numpy(x)).numpy()
        actual = predict(spec, params, x, backend)
        assert tensorwise_difference({"out": actual}, {"out": expected}, POLICY[spec.dtype]).ok

    def test_model_state_after_a_training_forward_matches_torch_nn(self, case):
        torch = require("torch")
        spec = case
        params, model_state = init_params(spec), init_model_state(spec)
        x, _ = batch(spec)
        model = self.sequential(spec, params, model_state)
        with torch.no_grad():
            _, draws = torch_training_forward(model, x)
        forward(spec, params, model_state, x, True, draws)        # updates it in place
        expected = {k: v.numpy() for k, v in model.state_dict().items()
                    if k in to_flat(model_state)}
        assert list(expected) == list(to_flat(model_state))
        for name, value in to_flat(model_state).items():
            assert tensorwise_difference({name: value}, {name: expected[name]},
                                         POLICY[spec.dtype]).ok, name

    # ------------------------------------------------------------------ parity

    def test_parity_in_every_backend(self, case):
        for backend in BACKENDS:
            require(backend)
        spec = case
        report = compare(spec, data_for(spec))
        assert report.ok, str(report)

    def test_negative_control_a_perturbed_torch_run_fails_parity(self, case, monkeypatch):
        require("torch")
        perturb_torch(monkeypatch)
        spec = case
        report = compare(spec, data_for(spec), backends=("numpy", "torch"))
        assert not report.ok

    # ------------------------------------------------------------- checkpoints

    def test_checkpoint_round_trip(self, case, tmp_path):
        spec = case
        data = data_for(spec)
        result = train(spec, data)
        path = tmp_path / "net.npz"
        save_checkpoint(path, spec, result.params, result.opt_state,
                        model_state=result.model_state)
        with np.load(path, allow_pickle=False) as archive:
            stored = {k[len("params."):] for k in archive.files if k.startswith("params.")}
        assert stored == set(to_flat(result.params))
        loaded = load_checkpoint(path)
        assert loaded.spec == spec
        for backend in BACKENDS:
            require(backend)
            expected = get_backend(backend).predict(spec, result.params, result.model_state,
                                                    data.x_test)
            actual = predict(spec, loaded.params, data.x_test, backend,
                             model_state=loaded.model_state)
            assert np.array_equal(actual, expected), backend
