"""Datasets that ship with a package: nothing is downloaded at run time.

``load_dataset(name)`` returns a ``Dataset`` with a fixed train/test split:

- ``"notebook"``: the seed notebook's 4 training rows and 1 test row.
- ``"digits"``: scikit-learn's bundled 8x8 digits, 1797 x 64, 10 classes;
  pixels scaled from 0..16 to [0, 1]; labels int64 (for ``cross_entropy``).
- ``"digits_images"``: the same rows, split and labels as ``"digits"``, each
  row an image of one channel, (1797, 1, 8, 8): channels first, as torch's
  convolutions take them (``input_shape=(1, 8, 8)``).
- ``"digits_rows"``: the same again, each image as a sequence of its 8 rows of
  8 pixels, (1797, 8, 8) = (n, T, features), for recurrent networks.
- ``"zen"``: the Zen of Python (the standard library's ``this`` module, its
  856 characters decoded from the module's source, never imported: importing
  it prints), as next-character prediction: x every window of ``ZEN_WINDOW``
  characters as tokens (indices into ``zen_vocabulary()``, 45 characters), y
  the characters that follow each position, (824, 32) both. The test rows are
  the training rows: a model of 856 characters can only memorise them, and
  its test loss says how well it did.
- ``"diabetes"``: scikit-learn's bundled regression set, 442 x 10; features
  and the target standardized with the training rows' mean and standard
  deviation; target as a column (n, 1).

The split is 80/20, drawn once from ``np.random.default_rng(SPLIT_SEED)``:
stratified by class for digits (each class split 80/20), then the training
rows are put in a shuffled order. The raw files are sorted, so the order
matters: an unshuffled split or order trains worse.

scikit-learn is the optional extra ``datasets`` (not needed for ``"zen"``).
"""
from __future__ import annotations

import ast
import codecs
import importlib.util

import numpy as np

from nnparity.shared.core.data import Dataset, notebook_data
from nnparity.shared.core.validation import MissingFrameworkError, check_choice

DATASETS = ("notebook", "digits", "digits_images", "digits_rows", "zen", "diabetes")
#: characters per training window of the "zen" dataset
ZEN_WINDOW = 32
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def split_rows(n_rows: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows in shuffled order, test rows sorted): 80/20, stratified by ``labels``."""
    rng = np.random.default_rng(SPLIT_SEED)
    groups = [np.arange(n_rows)] if labels is None else [
        np.flatnonzero(labels == c) for c in np.unique(labels)]
    train, test = [], []
    for rows in groups:
        rows = rng.permutation(rows)
        n_test = int(round(len(rows) * TEST_FRACTION))
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(test))


def _sklearn_datasets():
    try:
        import sklearn.datasets
    except ImportError:
        raise MissingFrameworkError("this dataset needs scikit-learn, which is not installed: "
                                    "pip install 'nnparity[datasets]'") from None
    return sklearn.datasets


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    return (train - mean) / std, (test - mean) / std


def zen_text() -> str:
    """The Zen of Python, decoded from the source of the standard library's ``this``
    module (its rot13 string ``s``), without importing it."""
    spec = importlib.util.find_spec("this")
    assert spec is not None and spec.origin is not None, "the standard library's this.py"
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    encoded = next(node.value.value for node in tree.body
                   if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                   and [getattr(t, "id", None) for t in node.targets] == ["s"])
    assert isinstance(encoded, str)
    return codecs.decode(encoded, "rot13")


def zen_vocabulary() -> str:
    """The characters of ``zen_text()``, sorted: token i is character ``vocabulary[i]``."""
    return "".join(sorted(set(zen_text())))


def _zen() -> Dataset:
    text, vocabulary = zen_text(), zen_vocabulary()
    tokens = np.array([vocabulary.index(c) for c in text], dtype=np.int64)    # (856,)
    starts = np.arange(len(tokens) - ZEN_WINDOW)                               # (824,)
    windows = starts[:, None] + np.arange(ZEN_WINDOW)                          # (824, 32)
    x, y = tokens[windows], tokens[windows + 1]                                # next chars
    return Dataset(x, y, x.copy(), y.copy())


def load_dataset(name: str) -> Dataset:
    """The dataset called ``name`` (see the module docstring): float64 features, or
    int64 tokens for ``"zen"``."""
    check_choice("dataset", name, DATASETS)
    if name == "notebook":
        return notebook_data()
    if name == "zen":
        return _zen()
    sklearn_datasets = _sklearn_datasets()
    if name in ("digits", "digits_images", "digits_rows"):
        digits = sklearn_datasets.load_digits()
        x = digits.data.astype(np.float64) / 16.0              # (1797, 64) in [0, 1]
        y = digits.target.astype(np.int64)                     # (1797,) labels 0..9
        if name == "digits_images":
            x = x.reshape(-1, 1, 8, 8)                         # (1797, 1, 8, 8), row-major
        elif name == "digits_rows":
            x = x.reshape(-1, 8, 8)                            # (1797, 8 rows, 8 pixels)
        train, test = split_rows(len(y), labels=y)
        return Dataset(x[train], y[train], x[test], y[test])
    diabetes = sklearn_datasets.load_diabetes(scaled=False)
    x = diabetes.data.astype(np.float64)                       # (442, 10)
    y = diabetes.target.astype(np.float64)[:, None]            # (442, 1)
    train, test = split_rows(len(y))
    x_train, x_test = _standardize(x[train], x[test])
    y_train, y_test = _standardize(y[train], y[test])
    return Dataset(x_train, y_train, x_test, y_test)
