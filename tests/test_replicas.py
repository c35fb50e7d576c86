"""Data-parallel training (issue 16): a run on N replicas equals the single-device run.

- Semantics (``nnparity.shared.core.replicas``): contiguous shards split as
  ``np.array_split`` splits, loss weights w_r = N_r / N counting elements (mse)
  or counted positions (cross_entropy with IGNORE_INDEX labels), checked against
  computations written here.
- Bad input: a bad ``replicas`` or ``sync_batch_norm``, a batch with fewer rows
  than replicas, per-replica BatchNorm on one value per channel: ValueError or
  TypeError naming the argument, before any work (no backend loaded, nothing
  initialised).
- Parity: 2 replicas (and 3, on uneven shards) in each backend equal that
  backend's single-device run and the NumPy single-device run, under
  ``POLICY[dtype]``: the notebook, a deeper shuffled MLP with a partial last
  batch, the digits CNN (BatchNorm, Dropout) and a GRU over token sequences whose
  shards count different numbers of positions.
- Negative controls, each failing the same assertion: gradients summed instead
  of averaged, shards weighted equally instead of by their terms, replicas that
  draw their own rows, per-replica BatchNorm (which the three backends compute
  alike).
- Teacher-forced steps: ``steps(..., Replicas(2))`` equals the single-device
  ``step`` from a snapshot on a partial batch (the CNN's too: Dropout's masks
  and BatchNorm's running statistics); wrong weights fail.
- DivergenceError at the same step, with its backend, in every backend.

Torch and JAX runs launch processes (about 2 s and 1 s each), so most of them
are marked slow; the MLP keeps one quick run of each in the default set.
"""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import require
from replica_cases import (CASES, NUMPY_TRAIN, assert_same_run, cnn_case, gap, mlp_case,
                           outcome, run, sequence_case, sequence_data)

import nnparity.backends.api as api
from nnparity.backends import as_arrays, get_backend, train
from nnparity.shared import (SGD, Activation, BatchNorm, Dense, DivergenceError, NetworkSpec,
                             POLICY)
from nnparity.shared.core.data import batch_plan
from nnparity.shared.core.losses import IGNORE_INDEX
from nnparity.shared.core.replicas import (MAX_REPLICAS, Replicas, loss_terms, my_shard,
                                           shard_bounds, shard_weights)
from nnparity.shared.core.synthetic import regression
from nnparity.shared.testing import assert_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see conftest

TOL = POLICY["float64"]
FRAMEWORKS = ("torch", "jax")


# ---------------------------------------------------------------- semantics


class FakeReplica:
    """Just what ``my_shard`` reads of a replica."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size, self.sync_batch_norm = rank, size, True


@pytest.mark.parametrize("rows", range(1, 41))
def test_shard_bounds_split_as_array_split(rows):
    for count in range(1, min(rows, 9) + 1):
        bounds = shard_bounds(rows, count)
        expected = [(int(part[0]), int(part[-1]) + 1)
                    for part in np.array_split(np.arange(rows), count)]
        assert bounds == expected, (rows, count)
        sizes = [stop - start for start, stop in bounds]
        assert sum(sizes) == rows and max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)          # the larger shards first


def test_shard_bounds_of_a_partial_batch_are_uneven():
    assert shard_bounds(11, 2) == [(0, 6), (6, 11)]
    assert shard_bounds(16, 3) == [(0, 6), (6, 11), (11, 16)]


def count_counted(labels: np.ndarray) -> int:
    """Positions whose label is not IGNORE_INDEX, one by one."""
    return sum(1 for label in labels.ravel().tolist() if label != IGNORE_INDEX)


def test_loss_terms_count_elements_or_counted_positions():
    y = np.random.default_rng(0).standard_normal((7, 3))
    for loss in ("mse", "mae", "huber", "bce_with_logits"):
        assert loss_terms(loss, y) == 7 * 3
    labels = sequence_data().y_train
    assert IGNORE_INDEX in labels
    assert loss_terms("cross_entropy", labels) == count_counted(labels) < labels.size
    assert loss_terms("cross_entropy", np.array([0, 2, 1])) == 3      # (n,) labels: rows


def test_shard_weights_are_terms_over_total_terms():
    labels = sequence_data().y_train[:6]                  # one batch: 3 and 15 positions
    total = count_counted(labels)
    assert shard_weights("cross_entropy", labels, 2) == [count_counted(labels[:3]) / total,
                                                          count_counted(labels[3:]) / total]
    assert shard_weights("cross_entropy", labels, 2) == [3 / 18, 15 / 18]   # not 1/2, 1/2
    y = np.zeros((11, 3))
    assert shard_weights("mse", y, 2) == [6 * 3 / 33, 5 * 3 / 33]
    weights = shard_weights("mse", np.zeros((16, 3)), 3)
    assert weights == [6 / 16, 5 / 16, 5 / 16] and sum(weights) == pytest.approx(1, abs=1e-15)


def test_my_shard_is_the_ranks_bounds_and_weight():
    labels = sequence_data().y_train[:6]
    for rank in range(3):
        part, weight = my_shard(FakeReplica(rank, 3), labels, "cross_entropy")
        assert (part.start, part.stop) == shard_bounds(6, 3)[rank]
        assert weight == shard_weights("cross_entropy", labels, 3)[rank]


# ---------------------------------------------------------------- bad input


@pytest.fixture
def nothing_trained(monkeypatch):
    """Fail the test if ``train`` gets as far as loading a backend or drawing
    parameters (the checks must come first)."""
    def trained(*args, **kwargs):
        raise AssertionError("train went past its checks: a backend was loaded or "
                             "parameters were drawn")

    monkeypatch.setattr(api, "get_backend", trained)
    monkeypatch.setattr(api, "init_params", trained)


SMALL = NetworkSpec(sizes=(5, 4, 3), batch_size=16, epochs=1)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("replicas, error", [
    (0, ValueError), (MAX_REPLICAS + 1, ValueError), (-2, ValueError), (2.0, TypeError),
    (True, TypeError), ("2", TypeError), (None, TypeError)])
def test_bad_replicas_are_refused_before_any_work(nothing_trained, backend, replicas, error):
    require(backend)                     # so that check_backend passes: replicas is refused
    with pytest.raises(error, match=r"^replicas="):
        train(SMALL, regression(75, 5, 3, seed=3), backend, replicas=replicas)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_sync_batch_norm_is_refused_before_any_work(nothing_trained, value):
    with pytest.raises(TypeError, match=r"^sync_batch_norm="):
        train(SMALL, regression(75, 5, 3, seed=3), replicas=2, sync_batch_norm=value)


@pytest.mark.parametrize("rows, batch_size, replicas", [
    (4, 16, 5),           # the only batch has 4 rows
    (17, 16, 2),          # the partial last batch has 1 row
    (33, 16, 2),          # the same in a later batch position
    (75, 16, 12),         # the partial batch (11 rows) is the smallest
], ids=["4-rows-5-replicas", "last-batch-1-row", "33-rows", "partial-11-rows"])
def test_a_batch_smaller_than_replicas_is_refused(nothing_trained, rows, batch_size, replicas):
    spec = SMALL.replace(batch_size=batch_size)
    with pytest.raises(ValueError, match=r"^replicas=.*every replica needs at least one row"):
        train(spec, regression(rows, 5, 3, seed=3), replicas=replicas)


def test_negative_control_valid_replicas_reach_the_backend(nothing_trained):
    """The checks above are not passing by accident: a valid call (every batch has
    at least ``replicas`` rows) gets past them, to the spy."""
    for rows, replicas in [(75, 11), (4, 4), (17, 1), (64, 16)]:
        with pytest.raises(AssertionError, match="went past its checks"):
            train(SMALL, regression(rows, 5, 3, seed=3), replicas=replicas)


#: Dense -> BatchNorm over 4 features: one value per channel per row
BATCH_NORM_MLP = NetworkSpec(input_shape=(5,), layers=(Dense(4), BatchNorm(), Activation("relu"),
                                                       Dense(3)),
                             batch_size=4, epochs=1, optimizer=SGD(lr=0.1))


@pytest.mark.parametrize("rows, replicas", [(8, 4), (6, 2)], ids=["shards-of-1", "3-rows-2+1"])
def test_per_replica_batch_norm_on_one_value_per_channel_is_refused(nothing_trained, rows,
                                                                    replicas):
    """(6, 2): batches of 4 and 2 rows, the 2-row batch split 1 + 1."""
    data = regression(rows, 5, 3, seed=3)
    with pytest.raises(ValueError, match=r"^replicas=\d+ is not allowed.*per-replica BatchNorm"):
        train(BATCH_NORM_MLP, data, replicas=replicas, sync_batch_norm=False)
    with pytest.raises(AssertionError, match="went past its checks"):   # synchronised: fine
        train(BATCH_NORM_MLP, data, replicas=replicas)


# ---------------------------------------------------------------- parity


NUMPY_PARITY = [("notebook", 2), ("mlp", 2), ("mlp", 3), ("cnn", 2), ("cnn", 3),
                ("sequence", 2), ("sequence", 3)]


@pytest.mark.parametrize("case, replicas", NUMPY_PARITY,
                         ids=[f"{case}-{count}" for case, count in NUMPY_PARITY])
def test_numpy_replicas_equal_one_device(case, replicas):
    result = run(case, "numpy", replicas)
    assert result.replicas == replicas
    assert_same_run(result, run(case, "numpy"), f"{case}: {replicas} NumPy replicas")


def test_the_cases_exercise_what_they_claim():
    """The premises of the parity cases: uneven shards, a shuffle, a partial batch,
    BatchNorm and Dropout, and shards counting different numbers of positions."""
    spec, data = mlp_case()
    assert spec.shuffle and len(data.x_train) % spec.batch_size == 11
    assert shard_bounds(11, 2) == [(0, 6), (6, 11)]
    spec, data = cnn_case()
    kinds = {type(layer).__name__ for layer in spec.layers}
    assert {"BatchNorm", "Dropout"} <= kinds and spec.shuffle
    assert len(data.x_train) % spec.batch_size != 0
    spec, data = sequence_case()
    for start in range(0, len(data.y_train), spec.batch_size):
        weights = shard_weights(spec.loss, data.y_train[start:start + spec.batch_size], 2)
        assert weights == [3 / 18, 15 / 18]


def framework_params(cases):
    """pytest params (backend, case), the torch and JAX runs marked slow except the MLP's."""
    return [pytest.param(backend, case, id=f"{backend}-{case}",
                         marks=() if case == "mlp" else pytest.mark.slow)
            for backend in FRAMEWORKS for case in cases]


@pytest.mark.parametrize("backend, case", framework_params(CASES))
def test_two_replicas_equal_one_device_in_torch_and_jax(backend, case):
    require(backend)
    result = run(case, backend, 2)
    assert result.replicas == 2 and result.backend == backend
    assert_same_run(result, run(case, backend), f"{case}: 2 {backend} replicas vs one device")
    assert_same_run(result, run(case, "numpy"), f"{case}: 2 {backend} replicas vs NumPy")


@pytest.mark.slow
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_three_uneven_replicas_equal_one_device_in_torch_and_jax(backend):
    require(backend)
    result = run("mlp", backend, 3)
    assert_same_run(result, run("mlp", backend), f"mlp: 3 {backend} replicas vs one device")
    assert_same_run(result, run("mlp", "numpy"), f"mlp: 3 {backend} replicas vs NumPy")


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.slow),
                                     pytest.param("jax", marks=pytest.mark.slow)])
def test_snapshots_of_a_replica_run_equal_one_devices(backend):
    """``record_every`` (the harness's trajectory) works the same on replicas."""
    require(backend)
    spec, data = mlp_case()
    replicated = train(spec, data, backend, replicas=2, record_every=3, metrics=False)
    one_device = train(spec, data, "numpy", record_every=3, metrics=False)
    assert [s.step for s in replicated.snapshots] == [0, 3, 6, 9, 12, 15, 18]
    assert_close([(s.step, s.params, s.opt_state.buffers) for s in replicated.snapshots],
                 [(s.step, s.params, s.opt_state.buffers) for s in one_device.snapshots])


#: one rank of a torchrun job: trains the pickled (spec, data) on 2 torch replicas and
#: writes what it returned. With "own", the script makes the process group itself
#: and ends it afterwards, as torchrun scripts do (nnparity must leave it alone:
#: "-kept" says whether it was still there after train); with "leave", nnparity
#: makes it, and a second train call must reuse it. At exit it writes whether a
#: process group was still initialised (its atexit handler, registered first, runs
#: after any registered later)
TORCHRUN_SCRIPT = """
import atexit, os, pickle, sys
import torch.distributed as dist
from nnparity.backends import train
case, out, ending = sys.argv[1:4]
rank = os.environ["RANK"]

def at_exit():
    with open(f"{out}-{rank}-at-exit", "w") as file:
        file.write(str(dist.is_initialized()))

atexit.register(at_exit)
with open(case, "rb") as file:
    spec, data = pickle.load(file)
if ending == "own":
    dist.init_process_group("gloo")
result = train(spec, data, "torch", replicas=2, metrics=False)
if ending == "leave":                                 # again, in the same job
    again = train(spec, data, "torch", replicas=2, metrics=False)
    assert all((a == b).all() for a, b in zip(again.losses, result.losses))
with open(f"{out}-{rank}", "wb") as file:
    pickle.dump({"params": result.params, "model_state": result.model_state,
                 "losses": result.losses}, file)
with open(f"{out}-{rank}-kept", "w") as file:
    file.write(str(dist.is_initialized()))
if ending == "own":
    dist.destroy_process_group()
"""



def torchrun(tmp_path, ending: str) -> subprocess.CompletedProcess:
    """The 2-process torchrun job of TORCHRUN_SCRIPT on the MLP case."""
    (tmp_path / "job.py").write_text(TORCHRUN_SCRIPT)
    with open(tmp_path / "case.pkl", "wb") as file:
        pickle.dump(CASES["mlp"](), file)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(tmp_path / "job.py"),
                           str(tmp_path / "case.pkl"), str(tmp_path / "result"), ending],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["own", "leave"])
def test_under_torchrun_every_rank_returns_the_one_device_run(tmp_path, ending):
    """The same ``train(..., replicas=2)`` call, each process of a 2-process torchrun
    job one replica (no processes launched by nnparity).

    "own": the script made the process group, and nnparity leaves it alone. "leave":
    nnparity makes it; it serves a second call (destroyed after the first, the second
    call's rendezvous failed: "Gloo connectFullMesh failed ... Connection refused")
    and is gone at exit (gloo otherwise aborts the process at exit about half the
    time: with a plain torch script, 6 of 10 torchrun jobs failed without
    ``destroy_process_group``, 0 of 10 with it)."""
    require("torch")
    done = torchrun(tmp_path, ending)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        with open(tmp_path / f"result-{rank}", "rb") as file:
            assert_close(pickle.load(file), outcome(run("mlp")))
        assert (tmp_path / f"result-{rank}-kept").read_text() == "True"
        assert (tmp_path / f"result-{rank}-at-exit").read_text() == "False", \
            f"rank {rank}: a process group was still initialised at exit"


# ---------------------------------------------------------------- negative controls


def patch_numpy_shards(monkeypatch, choose):
    """Replace the NumPy backend's ``my_shard`` by ``choose(replica, y_batch, loss)``
    -> (rows, weight) (the NumPy replicas are threads of this process)."""
    monkeypatch.setattr(NUMPY_TRAIN, "my_shard", choose)


def assert_control_fails(control, expected, what: str) -> float:
    """``control`` must fail ``assert_same_run`` against ``expected``, its parameters
    alone by more than 100 times their allowance; returns their largest normwise
    relative difference."""
    with pytest.raises(AssertionError):
        assert_same_run(control, expected)
    used, relative = gap(control.params, expected.params, expected.spec.dtype)
    assert used > 100, f"{what}: the parameters use only {used:.3g} times the allowance"
    return relative


def summed(replica, y_batch, loss):
    """Each replica's mean gradient with weight 1: summed, not averaged."""
    return my_shard(replica, y_batch, loss)[0], 1.0


def equal_weights(replica, y_batch, loss):
    """w_r = 1/R whatever the shard's share of the terms."""
    return my_shard(replica, y_batch, loss)[0], 1.0 / replica.size


def rows_weights(replica, y_batch, loss):
    """w_r = rows_r / rows: right for mse, wrong when positions are ignored."""
    part = my_shard(replica, y_batch, loss)[0]
    return part, (part.stop - part.start) / len(y_batch)


def own_rows(seed_base: int = 1000):
    """Replicas that draw their own rows: replica r takes its shard's share of a
    permutation of the batch drawn from its own generator (seeded by its rank)."""
    generators: dict[int, np.random.RandomState] = {}

    def choose(replica, y_batch, loss):
        part, weight = my_shard(replica, y_batch, loss)
        generator = generators.setdefault(replica.rank, np.random.RandomState(seed_base
                                                                              + replica.rank))
        rows = generator.permutation(len(y_batch))[part]
        return rows, weight

    return choose


def test_negative_control_summed_gradients_fail(monkeypatch):
    """Summing the replicas' mean gradients doubles the step of every full batch
    (an effective learning rate R times too large): measured, the parameters end
    3.4 relative apart. The MLP trains with SGD for this: Adam divides each step by
    the root of its second moment, so a gradient scaled by R everywhere changes its
    update only through eps (measured on 80 rows, equal shards: the parameters end
    3e-6 relative apart, which the float32 policy, rtol 1e-4, would pass)."""
    patch_numpy_shards(monkeypatch, summed)
    spec, data = mlp_case()
    assert isinstance(spec.optimizer, SGD)
    control = train(spec, data, replicas=2, metrics=False)
    relative = assert_control_fails(control, run("mlp"), "summed gradients")
    assert relative > 1e-2, relative


@pytest.mark.parametrize("case, replicas, weights", [
    ("mlp", 2, equal_weights), ("mlp", 3, equal_weights),
    ("sequence", 2, equal_weights), ("sequence", 2, rows_weights)],
    ids=["mlp-2-equal", "mlp-3-equal", "sequence-equal", "sequence-by-rows"])
def test_negative_control_shards_weighted_wrongly_fail(monkeypatch, case, replicas, weights):
    """Equal weights 1/R differ from N_r/N only on the uneven shards (the MLP's
    partial batches, 6 + 5 rows); the sequence case's halves have equal rows but
    count 3 and 15 positions, so weights by rows fail too."""
    patch_numpy_shards(monkeypatch, weights)
    spec, data = CASES[case]()
    control = train(spec, data, replicas=replicas, metrics=False)
    assert_control_fails(control, run(case), f"{case}: {weights.__name__}")


def test_negative_control_replicas_drawing_their_own_rows_fail(monkeypatch):
    patch_numpy_shards(monkeypatch, own_rows())
    spec, data = mlp_case()
    control = train(spec, data, replicas=2, metrics=False)
    assert_control_fails(control, run("mlp"), "per-replica shuffles")


def test_negative_control_the_honest_patch_passes(monkeypatch):
    """The patching itself changes nothing: ``my_shard`` passed through (and a
    permutation that is the identity) still equals the single-device run."""
    patch_numpy_shards(monkeypatch, lambda replica, y, loss: my_shard(replica, y, loss))
    spec, data = mlp_case()
    assert_same_run(train(spec, data, replicas=2, metrics=False), run("mlp"))

    def in_order(replica, y_batch, loss):
        part, weight = my_shard(replica, y_batch, loss)
        return np.arange(len(y_batch))[part], weight

    patch_numpy_shards(monkeypatch, in_order)
    assert_same_run(train(spec, data, replicas=2, metrics=False), run("mlp"))


def test_per_replica_batch_norm_differs_from_one_device_in_numpy():
    per_replica = run("cnn", "numpy", 2, sync_batch_norm=False)
    relative = assert_control_fails(per_replica, run("cnn"), "per-replica BatchNorm")
    assert relative > 1e-3, relative


@pytest.mark.slow
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_per_replica_batch_norm_is_the_same_in_every_backend(backend):
    """Per-replica BatchNorm is a different computation (measured: about 0.13
    relative after 2 epochs), and each backend computes the same one."""
    require(backend)
    per_replica = run("cnn", backend, 2, sync_batch_norm=False)
    _, from_one_device = gap(outcome(per_replica), outcome(run("cnn", backend)))
    assert from_one_device > 1e-3, from_one_device
    reference = run("cnn", "numpy", 2, sync_batch_norm=False)
    _, from_numpy = gap(outcome(per_replica), outcome(reference))
    assert_same_run(per_replica, reference,
                    f"per-replica BatchNorm, {backend} vs NumPy: {from_numpy:.3g} relative "
                    f"(both {from_one_device:.3g} from one device)")


@pytest.mark.slow
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_per_replica_batch_norm_on_uneven_shards_is_the_same_in_every_backend(backend):
    """3 replicas: the CNN's batches of 32 split 11 + 11 + 10, each normalised by
    its own statistics (measured: 0.084 relative from one device after an epoch)."""
    require(backend)
    spec, data = cnn_case(epochs=1)
    per_replica = train(spec, data, backend, replicas=3, sync_batch_norm=False, metrics=False)
    reference = train(spec, data, "numpy", replicas=3, sync_batch_norm=False, metrics=False)
    assert_same_run(per_replica, reference, f"per-replica BatchNorm on 3 replicas, {backend}")
    assert_control_fails(reference, train(spec, data, metrics=False), "3 per-replica shards")


# ---------------------------------------------------------------- teacher-forced steps


def snapshot_start(case: str, step: int):
    """(params, model_state, opt_state, x, y) before global step ``step`` of the
    single-device NumPy run of ``case``, and that step's global batch."""
    spec, data = CASES[case]()
    spec = spec.replace(epochs=step // -(-len(data.x_train) // spec.batch_size) + 1)
    result = train(spec, data, record_every=step, metrics=False)
    snapshot = result.snapshots[1]
    assert snapshot.step == step
    x, y = as_arrays(spec, data.x_train, data.y_train)
    rows = batch_plan(len(x), spec.batch_size, spec.epochs, spec.seed, spec.shuffle).rows(step)
    return spec, (snapshot.params, snapshot.model_state, snapshot.opt_state, x[rows], y[rows])


#: case -> a step with uneven shares: the MLP's partial batch of 11 rows (6 + 5),
#: the CNN's of 30 (Dropout, BatchNorm), a sequence batch counting 3 + 15 positions
STEP_CASES = {"mlp": 9, "cnn": 44, "sequence": 5}


def step_outcome(result) -> dict:
    """What two steps must agree on."""
    return {"loss": result.loss, "grads": result.grads, "params": result.params,
            "model_state": result.model_state, "buffers": result.opt_state.buffers}


@pytest.mark.parametrize("case", STEP_CASES)
def test_numpy_replica_steps_equal_the_single_device_step(case):
    spec, start = snapshot_start(case, STEP_CASES[case])
    numpy_backend = get_backend("numpy")
    expected = numpy_backend.step(spec, *start)
    for count in (2, 3):
        (actual,) = NUMPY_TRAIN.steps(spec, [start], Replicas(count))
        assert_close(step_outcome(actual), step_outcome(expected))


@pytest.mark.parametrize("case", ["mlp", "sequence"])
def test_negative_control_a_step_with_equal_weights_fails(monkeypatch, case):
    spec, start = snapshot_start(case, STEP_CASES[case])
    expected = get_backend("numpy").step(spec, *start)
    patch_numpy_shards(monkeypatch, equal_weights)
    (control,) = NUMPY_TRAIN.steps(spec, [start], Replicas(2))
    with pytest.raises(AssertionError):
        assert_close(step_outcome(control), step_outcome(expected))
    used, _ = gap(control.grads, expected.grads)
    assert used > 100, used


def test_per_replica_batch_norm_step_keeps_replica_0s_running_statistics():
    """With per-replica BatchNorm the running statistics after a step are those of
    shard 0 alone: a single-device step on shard 0's rows leaves the same (its
    Dropout, after BatchNorm, does not touch them); synchronised ones differ."""
    spec, start = snapshot_start("cnn", STEP_CASES["cnn"])
    params, model_state, opt_state, x, y = start
    (per_replica,) = NUMPY_TRAIN.steps(spec, [start], Replicas(2, sync_batch_norm=False))
    stop = shard_bounds(len(x), 2)[0][1]
    shard_0 = get_backend("numpy").step(spec, params, model_state, opt_state, x[:stop], y[:stop])
    assert_close(per_replica.model_state, shard_0.model_state)
    (synchronised,) = NUMPY_TRAIN.steps(spec, [start], Replicas(2))
    with pytest.raises(AssertionError):
        assert_close(synchronised.model_state, shard_0.model_state)


@pytest.mark.slow
@pytest.mark.parametrize("backend", FRAMEWORKS)
@pytest.mark.parametrize("case", STEP_CASES)
def test_torch_and_jax_replica_steps_equal_the_single_device_step(backend, case):
    require(backend)
    spec, start = snapshot_start(case, STEP_CASES[case])
    module = get_backend(backend)
    expected = module.step(spec, *start)
    reference = get_backend("numpy").step(spec, *start)
    (actual,) = module.steps(spec, [start], Replicas(2))
    assert_close(step_outcome(actual), step_outcome(expected))
    assert_close(step_outcome(actual), step_outcome(reference))


@pytest.mark.slow
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_torch_and_jax_per_replica_batch_norm_steps_equal_numpys(backend):
    require(backend)
    spec, start = snapshot_start("cnn", STEP_CASES["cnn"])
    split = Replicas(2, sync_batch_norm=False)
    (actual,) = get_backend(backend).steps(spec, [start], split)
    (expected,) = NUMPY_TRAIN.steps(spec, [start], split)
    assert_close(step_outcome(actual), step_outcome(expected))


# ---------------------------------------------------------------- divergence


def diverging_case():
    """The MLP with identity activations and SGD(lr=0.5): it diverges at step 7."""
    return mlp_case(optimizer=SGD(lr=0.5, momentum=0.9), epochs=100, activation="identity")


def divergence(backend: str, replicas: int) -> DivergenceError:
    spec, data = diverging_case()
    with pytest.raises(DivergenceError) as caught:
        train(spec, data, backend, replicas=replicas, metrics=False)
    assert type(caught.value) is DivergenceError
    return caught.value


def test_numpy_replicas_diverge_at_the_same_step():
    expected = divergence("numpy", 1)
    assert expected.step == 7
    for count in (2, 3):
        error = divergence("numpy", count)
        assert (error.step, error.epoch, error.backend) == (expected.step, expected.epoch,
                                                            "numpy")


def test_negative_control_summed_gradients_diverge_earlier(monkeypatch):
    """The divergence check can tell: a run with an effective learning rate twice
    as large diverges sooner (the single-device run does not use ``my_shard``)."""
    patch_numpy_shards(monkeypatch, summed)
    assert divergence("numpy", 2).step < divergence("numpy", 1).step


@pytest.mark.slow
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_torch_and_jax_replicas_raise_divergence_at_the_same_step(backend):
    """The error crosses the process boundary as itself: its type, step and backend."""
    require(backend)
    expected = divergence(backend, 1)
    error = divergence(backend, 2)
    assert (error.step, error.epoch, error.backend) == (expected.step, expected.epoch, backend)
    assert error.step == divergence("numpy", 1).step
    assert "diverged at step 7" in str(error)
