"""Golden test: the numpy backend reproduces the seed notebook's printed results.

The expected strings are copied from the notebook's output cells
(../shared/seed/000_a015704251cd606b.txt), printed there with NumPy's default
print options.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnparity.backends import predict, train
from nnparity.shared import SGD, notebook_data, notebook_spec

# The notebook's printed parameters, exactly as printed (f"{array}").
NOTEBOOK_PRINTED = {
    "hidden weight": ("[[ 1.77287337 -0.19123894]\n"
                      " [ 1.21893235 -0.3820917 ]\n"
                      " [ 1.84963539 -0.20055538]\n"
                      " [ 0.8768276  -0.16608484]]"),
    "hidden bias": "[0.02536611 0.01382147 0.0251332  0.01305339]",
    "output weight": "[[1.71187452 1.19856222 1.76712731 0.87289168]]",
    "output bias": "[0.03423008]",
}
NOTEBOOK_PREDICTION = 165.324277          # printed as [[165.324277]]
NOTEBOOK_ERROR = 0.1051555710067635      # printed as error: 0.1051555710067635
ERROR_RTOL = 1e-12                        # the golden tolerance

# NumPy's default print options (np.set_printoptions docs), pinned so that a
# user's or another test's settings cannot change the printed digits.
DEFAULT_PRINTOPTIONS = dict(precision=8, threshold=1000, edgeitems=3, linewidth=75,
                            suppress=False, nanstr="nan", infstr="inf", sign="-",
                            floatmode="maxprec", legacy=False)


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
