"""What tests/test_replicas.py and tests/test_replica_faults.py share: the
data-parallel cases (issue 16), cached runs, and how two runs are compared.

Cases (each ``CASES[name]()`` -> (spec, data), float64):

- ``notebook``: ``RECIPES["notebook"]``, 4 rows in batches of 2 (one row per
  replica), 1000 epochs;
- ``mlp``: sizes (5, 16, 16, 8, 3), tanh, SGD with momentum, batch 16 on 75
  shuffled rows: every epoch ends with a partial batch of 11 rows, split 6 + 5
  on 2 replicas and 4 + 4 + 3 on 3 (the full batches: 8 + 8, 6 + 5 + 5);
- ``cnn``: ``RECIPES["digits_cnn"]`` (BatchNorm, Dropout, shuffled, a partial
  last batch of 30 rows) for 2 epochs;
- ``sequence``: tokens -> Embedding -> GRU -> Dense, cross_entropy at every
  position, with labels ``IGNORE_INDEX`` arranged so that the two halves of every
  batch count 3 and 15 positions: equal rows, unequal terms.

``run(case, backend, replicas, sync_batch_norm)`` trains a case once per test
session (results are shared: never modify one); tests that monkeypatch the
implementation call ``train`` themselves.
"""
from __future__ import annotations

import functools
import importlib

import numpy as np

from nnparity.backends import TrainResult, train
from nnparity.shared import (GRU, Adam, Dataset, Dense, Embedding, NetworkSpec, POLICY,
                             load_dataset)
from nnparity.shared.core.losses import IGNORE_INDEX
from nnparity.shared.core.recipes import RECIPES
from nnparity.shared.core.synthetic import uneven_shards_case
from nnparity.shared.testing import assert_close

#: the NumPy backend's training module (``nnparity.backends.numpy.train`` is also
#: the name of its ``train`` function, so it is looked up by module name)
NUMPY_TRAIN = importlib.import_module("nnparity.backends.numpy.train")


def notebook_case() -> tuple[NetworkSpec, Dataset]:
    """The notebook recipe on its 4 rows."""
    recipe = RECIPES["notebook"]
    return recipe.spec("float64"), load_dataset(recipe.dataset)


#: the deeper MLP with a partial last batch (SGD: see the summed-gradient control in
#: test_replicas.py): sizes (5, 16, 16, 8, 3), batch 16 on 75 shuffled rows
mlp_case = uneven_shards_case


def cnn_case(epochs: int = 2) -> tuple[NetworkSpec, Dataset]:
    """The digits CNN recipe (BatchNorm, Dropout, reshuffled, partial last batch),
    shortened to ``epochs`` epochs."""
    recipe = RECIPES["digits_cnn"]
    return recipe.spec("float64").replace(epochs=epochs), load_dataset(recipe.dataset)


#: the sequence case's sizes: tokens, positions, batch rows
VOCABULARY, POSITIONS, SEQUENCE_BATCH = 5, 6, 6


def sequence_data(rows: int = 24, seed: int = 0) -> Dataset:
    """Next-token labels where, in every batch of SEQUENCE_BATCH rows (unshuffled),
    the first half of the rows count only their first position and the second half
    every position but the last: 3 against 15 counted positions per half."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCABULARY, (rows + 4, POSITIONS + 1))
    x, y = tokens[:, :-1], tokens[:, 1:].copy()
    for row in range(len(y)):
        if row % SEQUENCE_BATCH < SEQUENCE_BATCH // 2:
            y[row, 1:] = IGNORE_INDEX
        else:
            y[row, -1] = IGNORE_INDEX
    return Dataset(x[:rows], y[:rows], x[rows:], y[rows:])


def sequence_case() -> tuple[NetworkSpec, Dataset]:
    """Embedding(5, 4) -> GRU(6) over the sequence -> Dense(5) at every position,
    cross_entropy over the counted positions, Adam, batches of 6 in order."""
    spec = NetworkSpec(input_shape=(POSITIONS,),
                       layers=(Embedding(VOCABULARY, 4), GRU(6), Dense(VOCABULARY)),
                       init="torch_default", loss="cross_entropy", optimizer=Adam(lr=0.05),
                       batch_size=SEQUENCE_BATCH, epochs=3, seed=1, shuffle=False)
    return spec, sequence_data()


CASES = {"notebook": notebook_case, "mlp": mlp_case, "cnn": cnn_case,
         "sequence": sequence_case}


@functools.lru_cache(maxsize=None)
def run(case: str, backend: str = "numpy", replicas: int = 1,
        sync_batch_norm: bool = True) -> TrainResult:
    """``train`` of ``CASES[case]`` (no test metrics), once per session."""
    spec, data = CASES[case]()
    return train(spec, data, backend, replicas=replicas, sync_batch_norm=sync_batch_norm,
                 metrics=False)


def outcome(result) -> dict:
    """What two runs must agree on: parameters, model state and every step's loss."""
    return {"params": result.params, "model_state": result.model_state,
            "losses": result.losses}


def assert_same_run(actual, expected, what: str = "") -> None:
    """``actual`` equals ``expected`` under ``POLICY[dtype]`` (``assert_close``)."""
    try:
        assert_close(outcome(actual), outcome(expected), dtype=expected.spec.dtype)
    except AssertionError as exc:
        raise AssertionError(f"{what}\n{exc}") from None


def float_leaves(tree) -> list[np.ndarray]:
    """The float arrays of a tree of dicts, lists and tuples, depth first."""
    if isinstance(tree, dict):
        return [leaf for key in tree for leaf in float_leaves(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in float_leaves(item)]
    array = np.asarray(tree)
    return [array] if array.dtype.kind == "f" else []


def gap(actual, expected, dtype: str = "float64") -> tuple[float, float]:
    """(the largest fraction of its allowance any tensor uses, the largest normwise
    relative difference) between two trees of the same structure: a tensor passes
    ``assert_close`` when its fraction is at most 1, max|a - e| <= atol + rtol * max|e|."""
    tolerance = POLICY[dtype]
    used, relative = 0.0, 0.0
    for a, e in zip(float_leaves(actual), float_leaves(expected), strict=True):
        if a.size == 0:
            continue
        distance, scale = float(np.max(np.abs(a - e))), float(np.max(np.abs(e)))
        if not np.isfinite(distance):            # a NaN or infinity: as far as can be
            distance = float("inf")
        used = max(used, distance / (tolerance.atol + tolerance.rtol * scale))
        relative = max(relative, distance / scale if scale else distance)
    return used, relative
