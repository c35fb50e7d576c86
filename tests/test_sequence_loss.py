"""cross_entropy over logits at every position: (n, *s, k) logits and (n, *s)
labels, the mean over the counted positions (label != -100, torch's default
ignore_index), against ``torch.nn.functional.cross_entropy``; a token-in,
token-out network trained with parity; and the targets checked before work."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require

from nnparity.backends import evaluate, predict, train
from nnparity.shared import (POLICY, SGD, Adam, Dataset, Dense, Embedding, LayerNorm,
                             NetworkSpec, compare)
from nnparity.shared.core.losses import IGNORE_INDEX
from nnparity.shared.core.tolerance import tensorwise_difference

BACKENDS = ("numpy", "torch", "jax")


def logits_and_labels(dtype="float64", shape=(3, 5), k=4, seed=0):
    """z (*shape, k) logits and labels (*shape) with a quarter of them -100."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((*shape, k)).astype(dtype)
    labels = rng.integers(0, k, shape)
    labels[rng.random(shape) < 0.25] = IGNORE_INDEX
    if len(shape) > 1:
        labels[:, 0] = 1                                   # every row counts a position
    return z, labels


def backend_loss_and_grad(backend, z, labels):
    """(L, dL/dz) from ``backend``'s cross_entropy: the NumPy one by hand, torch's
    and JAX's by autograd."""
    require(backend)
    if backend == "numpy":
        from nnparity.backends.numpy.losses import LOSSES
        value, gradient = LOSSES["cross_entropy"]
        return float(value(z, labels)), gradient(z, labels)
    if backend == "torch":
        import torch

        from nnparity.backends.torch.losses import cross_entropy
        zt = torch.from_numpy(z).requires_grad_(True)
        loss = cross_entropy(zt, torch.from_numpy(labels))
        loss.backward()
        return loss.item(), zt.grad.numpy()
    import jax

    from nnparity.backends.jax.losses import cross_entropy
    with jax.enable_x64(True):
        loss, grad = jax.value_and_grad(cross_entropy)(jax.numpy.asarray(z),
                                                       jax.numpy.asarray(labels))
        return float(loss), np.asarray(grad)


def torch_reference(z, labels):
    """torch's F.cross_entropy on the flattened positions (ignore_index=-100)."""
    torch = require("torch")
    zt = torch.from_numpy(z).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(zt.reshape(-1, z.shape[-1]),
                                             torch.from_numpy(labels).reshape(-1))
    loss.backward()
    return loss.item(), zt.grad.numpy()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 2), (6,)], ids=["n-T", "n-H-W", "n"])
def test_matches_torch_cross_entropy_with_ignore_index(backend, dtype, shape):
    z, labels = logits_and_labels(dtype, shape)
    if len(shape) == 1:                                     # (n,) labels: all counted
        labels = np.abs(labels) % z.shape[-1]
    loss, grad = backend_loss_and_grad(backend, z, labels)
    expected_loss, expected_grad = torch_reference(z, labels)
    assert grad.dtype == np.dtype(dtype) and grad.shape == z.shape
    assert not grad[labels == IGNORE_INDEX].any()          # ignored: no gradient at all
    assert tensorwise_difference({"loss": loss, "grad": grad},
                                 {"loss": expected_loss, "grad": expected_grad},
                                 POLICY[dtype]).ok


def test_numpy_gradient_matches_finite_differences():
    from nnparity.backends.numpy.losses import LOSSES
    value, gradient = LOSSES["cross_entropy"]
    z, labels = logits_and_labels()
    expected = np.empty_like(z)
    for index in np.ndindex(z.shape):
        saved = z[index]
        z[index] = saved + 1e-6
        up = value(z, labels)
        z[index] = saved - 1e-6
        down = value(z, labels)
        z[index] = saved
        expected[index] = (up - down) / 2e-6
    error = np.linalg.norm(gradient(z, labels) - expected) / np.linalg.norm(expected)
    assert error < 1e-8


def test_negative_control_averaging_over_every_position_differs_from_torch():
    """Counting the ignored positions as zero loss (dividing by every position)
    is the trap: it fails against torch."""
    from nnparity.backends.numpy.losses import LOSSES
    z, labels = logits_and_labels()
    expected_loss, _ = torch_reference(z, labels)
    counted = labels != IGNORE_INDEX
    wrong = float(LOSSES["cross_entropy"][0](z, labels)) * counted.sum() / counted.size
    assert not tensorwise_difference({"loss": wrong}, {"loss": expected_loss},
                                     POLICY["float64"]).ok


# ------------------------------------------------------------- a token-to-token network

def next_token_data(rows=14, steps=6, vocabulary=5, seed=0):
    """Token sequences and, at each position, the next token (-100 at the last)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocabulary, (rows + 4, steps + 1))
    x, y = tokens[:, :-1], tokens[:, 1:].copy()
    y[:, -1] = IGNORE_INDEX
    return Dataset(x[:rows], y[:rows], x[rows:], y[rows:])


def token_model(dtype="float64"):
    """(T,) tokens -> Embedding(5, 4) -> LayerNorm -> Dense(5): logits (T, 5)."""
    return NetworkSpec(input_shape=(6,), layers=(Embedding(5, 4), LayerNorm(), Dense(5)),
                       init="torch_default", loss="cross_entropy", optimizer=Adam(lr=0.05),
                       batch_size=4, epochs=4, seed=1, shuffle=True, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_token_to_token_network_has_parity(dtype):
    for backend in ("torch", "jax"):
        require(backend)
    spec = token_model(dtype)
    assert spec.output_shape == (6, 5)
    report = compare(spec, next_token_data())
    assert report.ok, str(report)


def test_accuracy_counts_only_the_counted_positions():
    spec = token_model()
    data = next_token_data()
    result = train(spec, data)
    metrics = evaluate(spec, result.params, data, model_state=result.model_state)
    hits = predict(spec, result.params, data.x_test).argmax(axis=-1) == data.y_test
    counted = data.y_test != IGNORE_INDEX
    assert metrics["test_accuracy"] == hits[counted].mean()
    assert metrics["test_accuracy"] != hits.mean()          # an ignored position never hits


# ------------------------------------------------------------------- bad targets

def row_2_ignored(y):
    y = y.copy()
    y[2] = IGNORE_INDEX
    return y


@pytest.mark.parametrize("change, error, match", [
    (lambda y: y[:, :-1], ValueError, r"y_train\.shape=\(14, 5\).*\(14, 6\) class labels"),
    (lambda y: np.where(y == 3, 5, y), ValueError,
     r"y_train\[\d+, \d+\]=5 .* in \[0, 5\) or -100"),
    (row_2_ignored, ValueError, r"y_train\[2\].*every label -100.*at least one counted"),
    (lambda y: y.astype(np.float64), TypeError, r"y_train.*integer class labels"),
], ids=["shape", "out-of-range", "row-all-ignored", "float"])
def test_bad_sequence_targets_are_refused_before_any_work(change, error, match):
    data = next_token_data()
    bad = Dataset(data.x_train, change(data.y_train), data.x_test, change(data.y_test))
    with pytest.raises(error, match=match):
        train(token_model(), bad)


def test_minus_100_is_not_a_label_for_one_output_row():
    spec = NetworkSpec(sizes=(2, 3), loss="cross_entropy", optimizer=SGD(lr=0.1))
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"y_train\[1\]=-100 .* in \[0, 3\) for loss"):
        train(spec, Dataset(x, np.array([0, -100, 2]), x[:1], np.array([1])))


def test_only_cross_entropy_takes_an_output_per_position():
    with pytest.raises(ValueError, match=r"output of one axis, \(k,\), for loss 'mse'"):
        NetworkSpec(input_shape=(6,), layers=(Embedding(5, 4), Dense(5)), loss="mse")
