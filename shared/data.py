"""Datasets and the batch plan: computed once, in NumPy, for every backend."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .losses import check_targets
from .spec import NetworkSpec
from .validation import check_float_array, check_shape, check_targets_array, fail


@dataclass(frozen=True)
class Dataset:
    """Training and test data.

    Args:
        x_train: (n_train, n_in) float32/float64 array, finite.
        y_train: targets: (n_train, n_out) float array, or (n_train,) integer
            class labels (for ``cross_entropy``).
        x_test: (n_test, n_in) float array, finite.
        y_test: targets of the test rows, of the same kind as y_train.

    Whether the targets suit a spec's loss is checked by ``check_fits``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = check_float_array(f"x_{split}", getattr(self, f"x_{split}"), 2)
            y = check_targets_array(f"y_{split}", getattr(self, f"y_{split}"))
            if x.shape[0] == 0 or x.shape[1] == 0:
                fail(f"x_{split}.shape", x.shape, "at least one row and one column")
            if y.shape[0] != x.shape[0]:
                fail(f"y_{split}.shape", y.shape,
                     f"{x.shape[0]} rows, as many as x_{split} (shape {x.shape})")
        if self.x_test.shape[1] != self.x_train.shape[1]:
            fail("x_test.shape", self.x_test.shape,
                 f"{self.x_train.shape[1]} columns, as many as x_train")
        if (self.y_test.dtype.kind == "f") != (self.y_train.dtype.kind == "f"):
            fail("y_test.dtype", self.y_test.dtype.name,
                 f"targets of the same kind as y_train ({self.y_train.dtype.name})", TypeError)
        if self.y_test.shape[1:] != self.y_train.shape[1:]:
            fail("y_test.shape", self.y_test.shape,
                 f"the shape of y_train's rows, {self.y_train.shape[1:]}")


def notebook_data() -> Dataset:
    """The seed notebook's four training samples and one test sample (float64)."""
    return Dataset(
        x_train=np.array([[22.5, 72.0], [31.4, 45.0], [19.8, 85.0], [27.6, 63.0]]),
        y_train=np.array([[95.0], [210.0], [70.0], [155.0]]),
        x_test=np.array([[28.1, 58.0]]),
        y_test=np.array([[165.0]]),
    )


def epoch_order(n_rows: int, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    """Row order of one epoch, (n_rows,) int64.

    Without shuffling it is 0..n_rows-1. With shuffling it is a permutation drawn
    from ``np.random.default_rng([seed, epoch])``: each epoch's order depends only
    on (seed, epoch), so a resumed run sees the batches an uninterrupted run would.
    """
    if not shuffle:
        return np.arange(n_rows)
    return np.random.default_rng([seed, epoch]).permutation(n_rows)


def epoch_orders(n_rows: int, epochs: int, seed: int, shuffle: bool,
                 first_epoch: int = 0) -> np.ndarray:
    """Row order of epochs first_epoch .. first_epoch+epochs-1, (epochs, n_rows) int64."""
    orders = np.empty((epochs, n_rows), dtype=np.int64)
    for k in range(epochs):
        orders[k] = epoch_order(n_rows, first_epoch + k, seed, shuffle)
    return orders


@dataclass(frozen=True)
class BatchPlan:
    """Row indices of every minibatch of a run, for every backend.

    Batches are consecutive slices of each epoch's order of ``batch_size`` rows;
    when batch_size does not divide n_rows the last batch of an epoch holds the
    remainder.

    Attributes:
        full: (epochs, n_full, batch_size) int64, the full batches.
        tail: (epochs, n_rows % batch_size) int64, the partial last batch, or
            None when batch_size divides n_rows.
        first_epoch: the global index of the plan's first epoch.

    Steps are numbered globally from 0: step s is batch s % steps_per_epoch of
    epoch s // steps_per_epoch.
    """

    full: np.ndarray
    tail: np.ndarray | None
    first_epoch: int = 0

    @property
    def first_step(self) -> int:
        """Global index of this plan's first step (steps before first_epoch)."""
        return self.first_epoch * self.steps_per_epoch

    @property
    def epochs(self) -> int:
        return self.full.shape[0]

    @property
    def steps_per_epoch(self) -> int:
        return self.full.shape[1] + (self.tail is not None)

    def rows(self, step: int) -> np.ndarray:
        """The row indices of global step ``step``."""
        epoch, k = divmod(step - self.first_step, self.steps_per_epoch)
        return self.batches(epoch)[k]

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The row indices of each minibatch of epoch ``epoch`` (0-based in this plan)."""
        rows = list(self.full[epoch])
        if self.tail is not None:
            rows.append(self.tail[epoch])
        return rows


def batch_plan(n_rows: int, batch_size: int, epochs: int, seed: int, shuffle: bool,
               first_epoch: int = 0) -> BatchPlan:
    """The minibatches of ``epochs`` epochs starting at ``first_epoch``."""
    orders = epoch_orders(n_rows, epochs, seed, shuffle, first_epoch)  # (epochs, n_rows)
    n_full = n_rows // batch_size
    full = orders[:, :n_full * batch_size].reshape(epochs, n_full, batch_size)
    tail = orders[:, n_full * batch_size:] if n_rows % batch_size else None
    return BatchPlan(full=full, tail=tail, first_epoch=first_epoch)


def check_fits(spec: NetworkSpec, data: Dataset) -> None:
    """Check that ``data`` fits ``spec``: feature width, and targets that suit the loss."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    if not isinstance(data, Dataset):
        fail("data", data, "a Dataset(x_train, y_train, x_test, y_test)", TypeError)
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        check_float_array(f"x_{split}", x, 2)     # again: the arrays may have changed since
        check_shape(f"x_{split}", x, (x.shape[0], spec.sizes[0]))
        check_targets(spec.loss, f"y_{split}", y, spec.sizes[-1])
