"""Small seeded synthetic data sets, for the tests and the measurement tools.

Each draws from ``np.random.RandomState(seed)`` (features first, then the
hidden weights, then the noise), returns ``n_train`` training rows followed by
``n_test`` test rows, and is float64 except for class labels (int64):

- ``regression``: y = tanh(x @ W) + 0.1 * noise, shape (n, n_out);
- ``classification``: labels = argmax(x @ W + noise_scale * noise), shape (n,);
- ``binary``: y = (x @ W > 0) as 0.0/1.0, shape (n, n_out).

``chaotic_case`` is the README's example of a run that separates by
amplification: a spec and its 12 + 4 rows of data. ``uneven_shards_case`` is
the data-parallel example of a deeper MLP whose partial last batch splits
unevenly across replicas.
"""
from __future__ import annotations

import numpy as np

from nnparity.shared.core.data import Dataset
from nnparity.shared.core.optimizers import SGD, Optimizer
from nnparity.shared.core.spec import NetworkSpec


def _split(x: np.ndarray, y: np.ndarray, n_train: int) -> Dataset:
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def regression(n_train: int, n_in: int, n_out: int, seed: int, n_test: int = 16) -> Dataset:
    """x (n, n_in) standard normal; y = tanh(x @ W) + 0.1 * noise, (n, n_out)."""
    rs = np.random.RandomState(seed)
    x = rs.randn(n_train + n_test, n_in)
    y = np.tanh(x @ rs.randn(n_in, n_out)) + 0.1 * rs.randn(n_train + n_test, n_out)
    return _split(x, y, n_train)


def classification(n_train: int, n_in: int, k: int, seed: int, n_test: int = 16,
                   noise_scale: float = 0.3) -> Dataset:
    """x (n, n_in) standard normal; labels (n,) = argmax(x @ W + noise_scale * noise)
    over k classes (no noise drawn when noise_scale is 0)."""
    rs = np.random.RandomState(seed)
    x = rs.randn(n_train + n_test, n_in)
    scores = x @ rs.randn(n_in, k)                                     # (n, k)
    if noise_scale:
        scores = scores + noise_scale * rs.randn(n_train + n_test, k)
    return _split(x, np.argmax(scores, axis=1), n_train)


def binary(n_train: int, n_in: int, n_out: int, seed: int, n_test: int = 16) -> Dataset:
    """x (n, n_in) standard normal; y = (x @ W > 0) as 0.0/1.0, (n, n_out)."""
    rs = np.random.RandomState(seed)
    x = rs.randn(n_train + n_test, n_in)
    y = (x @ rs.randn(n_in, n_out) > 0).astype(np.float64)
    return _split(x, y, n_train)


def chaotic_case(lr: float = 0.1) -> tuple[NetworkSpec, Dataset]:
    """The README's chaotic run: sizes (3, 16, 16, 1), tanh, SGD(lr, momentum=0.9),
    batch 4, 500 epochs (1500 steps) on y = sin(2 * sum(x)), x (16, 3) standard
    normal, 12 training rows. At lr=0.1 every step agrees across backends, yet the
    free-running runs separate after about 80 steps; at lr=0.05 they stay together."""
    rs = np.random.RandomState(0)
    x = rs.randn(16, 3)
    y = np.sin(x.sum(1, keepdims=True) * 2)                              # (16, 1)
    spec = NetworkSpec(sizes=(3, 16, 16, 1), activation="tanh", init="xavier_uniform",
                       optimizer=SGD(lr=lr, momentum=0.9), batch_size=4, epochs=500, seed=1)
    return spec, _split(x, y, 12)


def uneven_shards_case(optimizer: Optimizer | None = None, epochs: int = 4,
                       activation: str = "tanh") -> tuple[NetworkSpec, Dataset]:
    """A deeper MLP for data parallelism: sizes (5, 16, 16, 8, 3), ``activation``,
    ``optimizer`` (default SGD(lr=0.05, momentum=0.9)), batch 16 on 75 rows
    reshuffled every epoch (``regression(75, 5, 3, seed=3)``). Every epoch ends
    with a partial batch of 11 rows: 6 + 5 on 2 replicas, 4 + 4 + 3 on 3 (the full
    batches split 8 + 8 and 6 + 5 + 5)."""
    spec = NetworkSpec(sizes=(5, 16, 16, 8, 3), activation=activation, init="xavier_uniform",
                       optimizer=optimizer or SGD(lr=0.05, momentum=0.9), batch_size=16,
                       epochs=epochs, seed=3, shuffle=True)
    return spec, regression(75, 5, 3, seed=3)
