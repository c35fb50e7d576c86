"""load_dataset: the bundled datasets, their fixed split, and the digits recipe.

The raw data comes straight from scikit-learn (the oracle); the checks do not
reuse the split code under test. The digits recipe (sizes 64-64-10, relu,
he_normal, cross_entropy, Adam(lr=1e-3), batch 32, 20 epochs, seed 0) must
reach 95% test accuracy in every backend with parity under the float64 policy.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from nnparity.backends import evaluate, predict, train
from nnparity.shared import (Adam, Dataset, MissingFrameworkError, NetworkSpec, compare,
                             load_dataset, notebook_data)
from nnparity.shared.core.tolerance import POLICY, difference
from conftest import require

BACKEND_NAMES = ("numpy", "torch", "jax")


def sorted_rows(a: np.ndarray) -> np.ndarray:
    """Rows of a 2-D array in lexicographic order (a multiset of rows)."""
    return a[np.lexsort(a.T[::-1])]


# --------------------------------------------------------------------------- notebook


def test_notebook_equals_notebook_data():
    loaded, expected = load_dataset("notebook"), notebook_data()
    assert isinstance(loaded, Dataset)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        a, e = getattr(loaded, field), getattr(expected, field)
        assert a.dtype == e.dtype and a.shape == e.shape and np.array_equal(a, e), field


def test_notebook_needs_no_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert np.array_equal(load_dataset("notebook").x_train, notebook_data().x_train)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["mnist", "Digits", "", "digits "])
def test_unknown_name_lists_the_names(name):
    with pytest.raises(ValueError) as info:
        load_dataset(name)
    message = str(info.value)
    assert "dataset" in message and repr(name) in message
    for known in ("'notebook'", "'digits'", "'diabetes'"):
        assert known in message, message


@pytest.mark.parametrize("name", [None, 3, ("digits",)])
def test_non_string_name_is_a_type_error(name):
    with pytest.raises(TypeError, match="dataset"):
        load_dataset(name)


@pytest.mark.parametrize("name", ["digits", "diabetes"])
@pytest.mark.parametrize("blocked", [("sklearn", "sklearn.datasets"), ("sklearn.datasets",)])
def test_missing_sklearn_names_the_extra(monkeypatch, name, blocked):
    for module in blocked:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingFrameworkError) as info:
        load_dataset(name)
    assert isinstance(info.value, ImportError)
    message = str(info.value)
    assert "nnparity[datasets]" in message and "scikit-learn" in message, message
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    require("sklearn")
    return load_dataset("digits")


@pytest.fixture(scope="module")
def raw_digits():
    """scikit-learn's digits as shipped: pixels 0..16 (1797, 64), labels (1797,)."""
    require("sklearn")
    import sklearn.datasets
    raw = sklearn.datasets.load_digits()
    return raw.data.astype(np.float64), raw.target.astype(np.int64)


def test_digits_shapes_and_types(digits):
    assert digits.x_train.shape == (1438, 64) and digits.x_test.shape == (359, 64)
    assert digits.y_train.shape == (1438,) and digits.y_test.shape == (359,)
    assert digits.x_train.dtype == np.float64 and digits.x_test.dtype == np.float64
    assert digits.y_train.dtype == np.int64 and digits.y_test.dtype == np.int64


def test_digits_pixels_in_unit_interval(digits):
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    # 0..16 scaled by 1/16: every value is a multiple of 1/16
    both = np.vstack([digits.x_train, digits.x_test]) * 16
    assert np.array_equal(both, np.round(both))


def test_digits_labels_are_0_to_9(digits):
    for y in (digits.y_train, digits.y_test):
        assert set(np.unique(y)) == set(range(10))


def test_digits_split_is_stratified(digits, raw_digits):
    _, labels = raw_digits
    for c in range(10):
        n_c = int(np.sum(labels == c))
        n_test = int(np.sum(digits.y_test == c))
        n_train = int(np.sum(digits.y_train == c))
        assert n_train + n_test == n_c
        assert abs(n_test - 0.2 * n_c) <= 1, (c, n_test, n_c)


def test_digits_train_and_test_partition_the_raw_rows(digits, raw_digits):
    """train + test is exactly the raw data (as a multiset of (pixels, label) rows)."""
    x, labels = raw_digits
    raw = np.column_stack([x, labels])
    ours = np.vstack([np.column_stack([digits.x_train * 16, digits.y_train]),
                      np.column_stack([digits.x_test * 16, digits.y_test])])
    assert ours.shape == raw.shape == (1797, 65)
    assert np.array_equal(sorted_rows(ours), sorted_rows(raw))


def raw_index(rows: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """For each row, the index of the equal raw row (raw rows are unique)."""
    lookup = {row.tobytes(): i for i, row in enumerate(raw)}
    assert len(lookup) == len(raw), "raw rows are expected to be unique"
    return np.array([lookup[row.tobytes()] for row in rows])


def digits_indices(digits, raw_digits):
    """(raw index of each training row in order, raw index of each test row)."""
    x, labels = raw_digits
    raw = np.column_stack([x, labels])
    return (raw_index(np.column_stack([digits.x_train * 16, digits.y_train]), raw),
            raw_index(np.column_stack([digits.x_test * 16, digits.y_test]), raw))


def test_digits_train_and_test_rows_are_disjoint_and_cover_all(digits, raw_digits):
    train_idx, test_idx = digits_indices(digits, raw_digits)
    assert len(set(train_idx)) == 1438 and len(set(test_idx)) == 359
    assert not set(train_idx) & set(test_idx)
    assert set(train_idx) | set(test_idx) == set(range(1797))


def test_digits_training_order_is_shuffled(digits, raw_digits):
    train_idx, _ = digits_indices(digits, raw_digits)
    increasing = np.mean(np.diff(train_idx) > 0)
    assert 0.3 < increasing < 0.7, increasing          # file order would give 1.0
    assert not np.all(np.diff(digits.y_train) >= 0)    # not sorted by label
    for c in range(10):                                # nor in file order within a class
        assert not np.all(np.diff(train_idx[digits.y_train == c]) > 0), c
    # the test rows are not all from the end of the file (an unshuffled split)
    _, test_idx = digits_indices(digits, raw_digits)
    assert test_idx.min() < 100 and test_idx.max() > 1700


def test_digits_is_deterministic(digits):
    again = load_dataset("digits")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(again, field), getattr(digits, field)), field


def test_digits_is_a_fresh_copy(digits):
    """Mutating one loaded dataset does not change the next one."""
    mine = load_dataset("digits")
    mine.x_train[0, 0] = 123.0
    assert load_dataset("digits").x_train[0, 0] == digits.x_train[0, 0]


# --------------------------------------------------------------------------- diabetes


@pytest.fixture(scope="module")
def diabetes():
    require("sklearn")
    return load_dataset("diabetes")


@pytest.fixture(scope="module")
def raw_diabetes():
    require("sklearn")
    import sklearn.datasets
    raw = sklearn.datasets.load_diabetes(scaled=False)
    return raw.data.astype(np.float64), raw.target.astype(np.float64)[:, None]


def test_diabetes_shapes_and_types(diabetes):
    assert diabetes.x_train.shape == (354, 10) and diabetes.x_test.shape == (88, 10)
    assert diabetes.y_train.shape == (354, 1) and diabetes.y_test.shape == (88, 1)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert getattr(diabetes, field).dtype == np.float64


def test_diabetes_train_columns_standardized(diabetes):
    for a in (diabetes.x_train, diabetes.y_train):
        assert np.max(np.abs(a.mean(axis=0))) <= 1e-12
        assert np.max(np.abs(a.std(axis=0) - 1)) <= 1e-12


def test_diabetes_test_uses_the_training_statistics(diabetes):
    """Test columns are standardized with the train mean/std, not their own."""
    means = np.abs(diabetes.x_test.mean(axis=0))
    stds = diabetes.x_test.std(axis=0)
    assert np.max(means) > 1e-3 and np.max(np.abs(stds - 1)) > 1e-3


def diabetes_in_raw_units(diabetes, raw_diabetes):
    """Undo the per-column standardization without knowing its mean and std.

    z = (v - mean) / std is increasing in v, so the sorted columns of train+test
    correspond to the sorted raw columns; a line fitted through them gives
    (std, mean). Returns (train rows, test rows) in raw units (up to rounding;
    ``diabetes_indices`` then finds each row in the raw data).
    """
    x_raw, y_raw = raw_diabetes
    raw = np.hstack([x_raw, y_raw])
    train = np.hstack([diabetes.x_train, diabetes.y_train])
    test = np.hstack([diabetes.x_test, diabetes.y_test])
    ours = np.vstack([train, test])
    assert ours.shape == raw.shape == (442, 11)
    std, mean = np.empty(11), np.empty(11)
    for j in range(11):
        v, z = np.sort(raw[:, j]), np.sort(ours[:, j])
        std[j], mean[j] = np.polyfit(z, v, 1)
    return train * std + mean, test * std + mean


def diabetes_indices(diabetes, raw_diabetes):
    """Raw index of each training row (in order) and of each test row."""
    x_raw, y_raw = raw_diabetes
    raw = np.round(np.hstack([x_raw, y_raw]), 6)
    train, test = diabetes_in_raw_units(diabetes, raw_diabetes)
    # the raw values have at most 4 decimals: rounding to 6 recovers them exactly
    return raw_index(np.round(train, 6) + 0.0, raw), raw_index(np.round(test, 6) + 0.0, raw)


def test_diabetes_is_the_raw_data_standardized_with_train_statistics(diabetes, raw_diabetes):
    """Every raw row appears exactly once, and each split equals its raw rows
    standardized with the training rows' mean and (population) standard deviation."""
    train_idx, test_idx = diabetes_indices(diabetes, raw_diabetes)
    assert len(set(train_idx)) == 354 and len(set(test_idx)) == 88
    assert not set(train_idx) & set(test_idx)
    assert set(train_idx) | set(test_idx) == set(range(442))
    x_raw, y_raw = raw_diabetes
    raw = np.hstack([x_raw, y_raw])
    mean, std = raw[train_idx].mean(axis=0), raw[train_idx].std(axis=0)
    tol = POLICY["float64"]
    for idx, x, y in ((train_idx, diabetes.x_train, diabetes.y_train),
                      (test_idx, diabetes.x_test, diabetes.y_test)):
        expected = (raw[idx] - mean) / std
        assert difference(x, expected[:, :10], tol).ok
        assert difference(y, expected[:, 10:], tol).ok


def test_diabetes_is_deterministic(diabetes):
    again = load_dataset("diabetes")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(again, field), getattr(diabetes, field)), field


def test_diabetes_split_is_shuffled(diabetes, raw_diabetes):
    train_idx, test_idx = diabetes_indices(diabetes, raw_diabetes)
    increasing = np.mean(np.diff(train_idx) > 0)
    assert 0.3 < increasing < 0.7, increasing
    assert test_idx.min() < 50 and test_idx.max() > 400


# --------------------------------------------------------------------------- the recipe


RECIPE = NetworkSpec(sizes=(64, 64, 10), activation="relu", init="he_normal",
                     loss="cross_entropy", optimizer=Adam(lr=1e-3), batch_size=32, epochs=20,
                     seed=0)


@pytest.fixture(scope="module")
def recipe_report(digits):
    """The recipe trained in all three backends (about 6 s): the tests using it are slow."""
    for name in ("torch", "jax"):
        require(name)
    return compare(RECIPE, digits, backends=BACKEND_NAMES)


def test_recipe_is_as_specified():
    assert RECIPE.optimizer == Adam(lr=1e-3)
    assert RECIPE.optimizer.betas == (0.9, 0.999) and RECIPE.optimizer.eps == 1e-8
    assert RECIPE.dtype == "float64"


@pytest.mark.slow
def test_recipe_parity_under_float64_policy(recipe_report):
    assert recipe_report.tolerance == POLICY["float64"]
    assert recipe_report.ok, str(recipe_report)
    assert {p.backend for p in recipe_report.parity} == {"torch", "jax"}
    steps = 20 * -(-1438 // 32)
    for name in BACKEND_NAMES:
        assert recipe_report.results[name].losses.shape == (steps,)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_recipe_reaches_95_percent(recipe_report, backend):
    metrics = recipe_report.results[backend].metrics
    assert set(metrics) == {"test_loss", "test_accuracy"}
    assert metrics["test_accuracy"] >= 0.95, metrics


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_recipe_accuracy_checked_independently(recipe_report, digits, backend):
    """argmax of predict vs the labels, and evaluate(), agree with the metrics."""
    result = recipe_report.results[backend]
    out = predict(RECIPE, result.params, digits.x_test, backend=backend)
    assert out.shape == (359, 10)
    correct = int(np.sum(out.argmax(axis=1) == digits.y_test))
    assert result.metrics["test_accuracy"] == correct / 359
    assert correct >= 0.95 * 359
    again = evaluate(RECIPE, result.params, digits, backend=backend)
    assert again == result.metrics
    # test loss: the mean cross entropy of the predictions, computed here
    shifted = out - out.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.mean(log_softmax[np.arange(359), digits.y_test])
    assert difference(result.metrics["test_loss"], loss, POLICY["float64"]).ok


@pytest.mark.slow
def test_recipe_accuracies_agree_across_backends(recipe_report):
    accuracies = {n: recipe_report.results[n].metrics["test_accuracy"] for n in BACKEND_NAMES}
    assert len(set(accuracies.values())) == 1, accuracies


def test_recipe_with_unshuffled_raw_order_is_worse(digits, raw_digits):
    """The split matters: the first 80% of the raw file as train gives a worse model
    (about 90%) than the shuffled stratified split (the issue's remark)."""
    x, labels = raw_digits
    n_train = 1438
    raw_split = Dataset(x[:n_train] / 16, labels[:n_train], x[n_train:] / 16, labels[n_train:])
    raw = train(RECIPE, raw_split, backend="numpy").metrics["test_accuracy"]
    ours = train(RECIPE, digits, backend="numpy").metrics["test_accuracy"]
    assert ours > raw, (ours, raw)


# ---------------------------------------------------------------- synthetic sets

def test_synthetic_sets_have_the_documented_shapes_and_dtypes():
    from nnparity.shared.core import synthetic
    reg = synthetic.regression(10, 3, 2, seed=1, n_test=4)
    assert (reg.x_train.shape, reg.y_train.shape, reg.x_test.shape) == ((10, 3), (10, 2), (4, 3))
    assert reg.y_train.dtype == np.float64 and np.all(np.abs(reg.y_train) < 2)
    cls = synthetic.classification(12, 4, 3, seed=3)
    assert cls.y_train.shape == (12,) and cls.y_train.dtype.kind == "i"
    assert cls.x_test.shape == (16, 4) and set(np.unique(cls.y_train)) <= {0, 1, 2}
    bin_ = synthetic.binary(8, 5, 2, seed=2)
    assert set(np.unique(bin_.y_train)) <= {0.0, 1.0} and bin_.y_train.shape == (8, 2)


def test_synthetic_sets_depend_only_on_the_seed():
    from nnparity.shared.core import synthetic
    a, b = synthetic.regression(6, 2, 1, seed=5), synthetic.regression(6, 2, 1, seed=5)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    other = synthetic.regression(6, 2, 1, seed=6)                    # negative control
    assert not np.array_equal(a.x_train, other.x_train)


def test_synthetic_classification_without_noise_is_the_argmax_of_the_scores():
    from nnparity.shared.core import synthetic
    data = synthetic.classification(20, 4, 3, seed=7, n_test=1, noise_scale=0)
    rs = np.random.RandomState(7)
    x = rs.randn(21, 4)
    assert np.array_equal(data.y_train, np.argmax(x @ rs.randn(4, 3), axis=1)[:20])
    noisy = synthetic.classification(20, 4, 3, seed=7, n_test=1, noise_scale=5.0)
    assert not np.array_equal(noisy.y_train, data.y_train)           # the noise is drawn


def test_digits_images_are_the_digits_rows_as_one_channel_images():
    require("sklearn")
    flat, images = load_dataset("digits"), load_dataset("digits_images")
    assert images.x_train.shape[1:] == (1, 8, 8) and images.x_test.shape[1:] == (1, 8, 8)
    assert np.array_equal(images.x_train.reshape(len(images.x_train), -1), flat.x_train)
    assert np.array_equal(images.x_test.reshape(len(images.x_test), -1), flat.x_test)
    assert np.array_equal(images.y_train, flat.y_train)
    assert np.array_equal(images.y_test, flat.y_test)
    # row-major: pixel (row 0, column 1) is the second feature, as sklearn's images
    import sklearn.datasets
    raw = sklearn.datasets.load_digits()
    assert np.array_equal(raw.images.reshape(-1, 64), raw.data)


def test_digits_rows_are_the_images_as_sequences_of_rows():
    require("sklearn")
    images, rows = load_dataset("digits_images"), load_dataset("digits_rows")
    assert rows.x_train.shape[1:] == (8, 8)
    assert np.array_equal(rows.x_train, images.x_train[:, 0])    # step t is pixel row t
    assert np.array_equal(rows.y_test, images.y_test)


def test_zen_is_the_zen_of_python_as_next_character_windows(monkeypatch, capsys):
    """Read from the ``this`` module's source (importing it would print), no sklearn."""
    from nnparity.shared.core.datasets import ZEN_WINDOW, zen_text, zen_vocabulary
    monkeypatch.setitem(sys.modules, "sklearn", None)
    data = load_dataset("zen")
    assert capsys.readouterr().out == ""                          # nothing printed
    text, vocabulary = zen_text(), zen_vocabulary()
    from nnparity.shared.core.recipes import ZEN_CHARACTERS
    assert len(text) == 856 and len(vocabulary) == 45 == ZEN_CHARACTERS
    assert text.startswith("The Zen of Python, by Tim Peters\n\nBeautiful is better than ugly.")
    assert data.x_train.shape == data.y_train.shape == (856 - ZEN_WINDOW, ZEN_WINDOW)
    assert data.x_train.dtype == np.int64
    decode = "".join
    assert decode(vocabulary[i] for i in data.x_train[0]) == text[:ZEN_WINDOW]
    assert decode(vocabulary[i] for i in data.y_train[5]) == text[6:6 + ZEN_WINDOW]
    assert np.array_equal(data.x_test, data.x_train)             # it can only memorise
