"""Datasets and the batch plan: computed once, in NumPy, for every backend."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnparity.shared.core.losses import LOSSES, check_targets
from nnparity.shared.core.optimizers import state_buffers
from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.validation import (check_array, check_float_array, check_input_array,
                                             check_shape, check_targets_array, fail)


@dataclass(frozen=True)
class Dataset:
    """Training and test data.

    Args:
        x_train: (n_train, *input_shape) float32/float64 array, finite; or an
            integer array of tokens, for a network that starts with an Embedding.
        y_train: targets: (n_train, n_out) float array, or (n_train,) integer
            class labels (for ``cross_entropy``).
        x_test: (n_test, *input_shape), of the same kind as x_train.
        y_test: targets of the test rows, of the same kind as y_train.

    Each is a plain ``np.ndarray`` (or ``np.memmap``): masked arrays and np.matrix
    are refused. Whether the targets suit a spec's loss, and whether the values
    stay finite in the spec's dtype, is checked by ``check_fits``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = check_input_array(f"x_{split}", getattr(self, f"x_{split}"))
            if x.ndim < 2:
                fail(f"x_{split}.ndim", x.ndim, "at least 2: (rows, *input_shape)")
            y = check_targets_array(f"y_{split}", getattr(self, f"y_{split}"))
            if x.size == 0:
                fail(f"x_{split}.shape", x.shape, "at least one row and one column")
            if y.shape[0] != x.shape[0]:
                fail(f"y_{split}.shape", y.shape,
                     f"{x.shape[0]} rows, as many as x_{split} (shape {x.shape})")
        if self.x_test.shape[1:] != self.x_train.shape[1:]:
            what = (f"{self.x_train.shape[1]} columns" if self.x_train.ndim == 2
                    else f"rows of shape {self.x_train.shape[1:]}")
            fail("x_test.shape", self.x_test.shape, f"{what}, as many as x_train")
        if (self.x_test.dtype.kind == "f") != (self.x_train.dtype.kind == "f"):
            fail("x_test.dtype", self.x_test.dtype.name,
                 f"inputs of the same kind as x_train ({self.x_train.dtype.name})", TypeError)
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
    """Check that ``data`` fits ``spec``: input shape, targets that suit the loss,
    and values that stay finite in ``spec.dtype`` (float64 data above float32's
    largest value would become inf in a float32 run)."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    if not isinstance(data, Dataset):
        fail("data", data, "a Dataset(x_train, y_train, x_test, y_test)", TypeError)
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        # again: the arrays may have changed since the Dataset was built
        check_inputs(spec, f"x_{split}", x)
        check_targets(spec.loss, f"y_{split}", y, spec.output_shape)
        check_targets_array(f"y_{split}", y, spec.dtype)


def check_inputs(spec: NetworkSpec, name: str, x: object) -> None:
    """x (n, *input_shape) as ``spec`` takes it: floats that stay finite in
    spec.dtype, or, when the network starts with an Embedding, integer tokens in
    its range (checked before any work: JAX would return NaN or clamp)."""
    ndim = 1 + len(spec.input_shape)
    if spec.takes_tokens:
        check_array(name, x)
        assert isinstance(x, np.ndarray)
        if x.dtype.kind == "f":
            fail(f"{name}.dtype", x.dtype.name, "integer tokens: the network starts with an "
                 "Embedding (convert explicitly, e.g. x.astype(np.int64))", TypeError)
        if x.ndim != ndim:
            fail(f"{name}.shape", x.shape, f"{ndim} dimensions")
        spec.layers[0].check_tokens(name, x)
    else:
        check_float_array(name, x, ndim, spec.dtype)
        assert isinstance(x, np.ndarray)
    check_shape(name, x, (x.shape[0], *spec.input_shape))


def inputs_as(spec: NetworkSpec, x: np.ndarray) -> np.ndarray:
    """Checked inputs as every backend takes them: int64 tokens, or spec.dtype floats."""
    return x.astype(np.int64) if spec.takes_tokens else x.astype(spec.dtype)


def check_training_batches(spec: NetworkSpec, n_rows: int) -> None:
    """Check that every layer can train on the batches of ``n_rows`` training rows:
    the first batch (``batch_size`` rows, or all of them when fewer) and a partial
    last one, which holds ``n_rows % batch_size`` rows."""
    sizes = {min(spec.batch_size, n_rows)}
    if n_rows > spec.batch_size and n_rows % spec.batch_size:
        sizes.add(n_rows % spec.batch_size)
    for rows in sorted(sizes):
        label = (f"rows in a training batch ({n_rows} training rows, batch_size "
                 f"{spec.batch_size})")
        for layer, shape in zip(spec.layers, spec.layer_input_shapes, strict=False):
            layer.check_training_rows(rows, shape, label)


def run_bytes(spec: NetworkSpec, n_rows: int, epochs: int, *, chunk_epochs: int | None = None,
              record_every: int | None = None) -> dict[str, int]:
    """A lower bound of the memory training ``spec`` for ``epochs`` epochs on
    ``n_rows`` rows allocates, by part, in bytes (the batch plan covers
    ``chunk_epochs`` epochs at a time; all of them when None). Every part is an
    array the run must hold at once, so a run whose total exceeds the machine's
    memory cannot succeed; the frameworks' own overheads are left out."""
    item = np.dtype(spec.dtype).itemsize
    n_buffers = sum(int(np.prod(s)) for layer in spec.buffer_shapes for s in layer.values())
    state = (spec.n_parameters * (1 + len(state_buffers(spec.optimizer))) + n_buffers) * item
    steps_per_epoch = -(-n_rows // spec.batch_size)
    total_steps = epochs * steps_per_epoch
    plan_epochs = epochs if chunk_epochs is None else min(chunk_epochs, epochs)
    labels = LOSSES[spec.loss].targets == "labels"
    y_row = (8 * int(np.prod(spec.output_shape[:-1])) if labels     # int64 labels
             else spec.n_outputs * item)                              # or floats
    snapshots = -(-total_steps // record_every) if record_every and total_steps else 0
    return {
        "parameters and optimizer state": state,
        "training data": n_rows * (input_size(spec) * item + y_row),
        "batch plan": plan_epochs * n_rows * 8,                   # int64 row indices
        "losses": total_steps * item,
        "snapshots": snapshots * state,
        "layer outputs": min(spec.batch_size, n_rows) * widest_output(spec) * item,
    }


def predict_bytes(spec: NetworkSpec, n_rows: int) -> dict[str, int]:
    """A lower bound of the memory ``predict`` allocates for ``n_rows`` rows, in bytes:
    the input in ``spec.dtype`` and the widest layer's output."""
    item = np.dtype(spec.dtype).itemsize
    return {"input": n_rows * input_size(spec) * item,
            "layer outputs": n_rows * widest_output(spec) * item}


def input_size(spec: NetworkSpec) -> int:
    """Numbers in one input row."""
    return int(np.prod(spec.input_shape))


def widest_output(spec: NetworkSpec) -> int:
    """Numbers in the largest layer output of one row."""
    return max(int(np.prod(shape)) for shape in spec.layer_input_shapes[1:])

