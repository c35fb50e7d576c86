"""Golden test: the numpy backend reproduces the seed notebook's printed results
(``seed_notebook``: copied from the notebook's output cells)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnparity.backends import predict, train
from nnparity.shared import SGD, notebook_data, notebook_spec
from seed_notebook import (DEFAULT_PRINTOPTIONS, ERROR_RTOL, NOTEBOOK_ERROR, NOTEBOOK_PREDICTION,
                           NOTEBOOK_PRINTED)


def run_notebook(spec):
    """Train with the numpy backend; return (printed params, prediction, error)."""
    data = notebook_data()
    result = train(spec, data, backend="numpy")
    hidden, relu, output = result.params     # Dense(4), Activation("relu"), Dense(1)
    assert relu == {}
    w0, b0, w1, b1 = hidden["weight"], hidden["bias"], output["weight"], output["bias"]
    predictions = predict(spec, result.params, data.x_test, backend="numpy")  # (1, 1)
    error = float(((predictions - data.y_test) ** 2).mean())
    with np.printoptions(**DEFAULT_PRINTOPTIONS):
        printed = {"hidden weight": f"{w0}", "hidden bias": f"{b0}",
                   "output weight": f"{w1}", "output bias": f"{b1}",
                   "predictions": f"{predictions}"}
    return result, printed, predictions, error


@pytest.fixture(scope="module")
def notebook_run():
    return run_notebook(notebook_spec())


@pytest.mark.parametrize("name", list(NOTEBOOK_PRINTED))
def test_printed_parameters_match_notebook(notebook_run, name):
    _, printed, _, _ = notebook_run
    assert printed[name] == NOTEBOOK_PRINTED[name]


def test_prediction_matches_notebook(notebook_run):
    _, printed, predictions, _ = notebook_run
    assert predictions.shape == (1, 1)
    assert round(float(predictions[0, 0]), 6) == NOTEBOOK_PREDICTION
    assert printed["predictions"] == "[[165.324277]]"


def test_error_matches_notebook(notebook_run):
    _, _, _, error = notebook_run
    assert math.isclose(error, NOTEBOOK_ERROR, rel_tol=ERROR_RTOL, abs_tol=0.0), (
        f"error {error!r} vs notebook {NOTEBOOK_ERROR!r}")


def test_run_shape_matches_notebook(notebook_run):
    """1000 epochs of 2 batches: 2000 losses, float64 params in torch's (out, in)
    layout, one dict per layer (the ReLU layer has none)."""
    result, _, _, _ = notebook_run
    assert result.losses.shape == (2000,)
    assert [{name: a.shape for name, a in layer.items()} for layer in result.params] == [
        {"weight": (4, 2), "bias": (4,)}, {}, {"weight": (1, 4), "bias": (1,)}]
    assert all(a.dtype == np.float64 for layer in result.params for a in layer.values())


@pytest.mark.parametrize("lr", [
    pytest.param(1.0001e-5, id="lr+1e-4rel"),
    pytest.param(0.9999e-5, id="lr-1e-4rel"),
])
def test_negative_control_perturbed_lr_does_not_reproduce(lr):
    """The golden check can fail: a 1e-4 relative change of lr changes the digits."""
    _, printed, predictions, error = run_notebook(notebook_spec().replace(optimizer=SGD(lr=lr)))
    assert any(printed[name] != NOTEBOOK_PRINTED[name] for name in NOTEBOOK_PRINTED)
    assert printed["hidden weight"] != NOTEBOOK_PRINTED["hidden weight"]
    assert round(float(predictions[0, 0]), 6) != NOTEBOOK_PREDICTION
    assert not math.isclose(error, NOTEBOOK_ERROR, rel_tol=ERROR_RTOL, abs_tol=0.0)


def test_negative_control_printoptions_matter():
    """The string comparison really depends on the print options being the defaults."""
    w0 = train(notebook_spec(), notebook_data()).params[0]["weight"]
    with np.printoptions(**{**DEFAULT_PRINTOPTIONS, "precision": 4}):
        assert f"{w0}" != NOTEBOOK_PRINTED["hidden weight"]
