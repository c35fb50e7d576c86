"""Checkpoints: the file round trip, resuming on every pair of backends, and every
way a file or an argument can be wrong."""
import functools
import io
import itertools
import json
import os
import pickle
from pathlib import Path

import nnparity.shared.io.checkpoint as checkpoint_module
import numpy as np
import pytest
from conftest import require
from crafted_checkpoints import METHOD, crafted_files, members_of, patched, zip_bytes
from nnparity.backends import predict, train
from nnparity.shared import (
    POLICY,
    SGD,
    Activation,
    Adam,
    AdamW,
    Checkpoint,
    Dataset,
    Dense,
    NetworkSpec,
    RMSprop,
    load_checkpoint,
    save_checkpoint,
)
from nnparity.shared.io.checkpoint import FORMAT_VERSION, checkpoint_arrays
from nnparity.shared.core.init import init_params
from nnparity.shared.core.optimizers import OptimizerState, init_state, state_buffers
from nnparity.shared.core.spec import MAX_COUNT
from nnparity.shared.core.tolerance import difference
from nnparity.shared.core.tree import copy_tree, flat_names, leaves, map_tree, to_flat

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKENDS = ("numpy", "torch", "jax")
N_TRAIN, BATCH = 7, 3                  # batches of 3, 3 and a tail of 1
STEPS_PER_EPOCH = 3
TOTAL, DONE = 6, 2                     # epochs of the whole run, and before the checkpoint


def make_data(dtype="float64"):
    """7 training rows (3 features, 2 targets), 3 test rows."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_TRAIN + 3, 3)).astype(dtype)
    y = np.stack([np.sin(x[:, 0]) + x[:, 1], x[:, 2] * x[:, 0]], axis=1).astype(dtype)
    return Dataset(x_train=x[:N_TRAIN], y_train=y[:N_TRAIN], x_test=x[N_TRAIN:],
                   y_test=y[N_TRAIN:])


DATA = make_data()


def make_spec(optimizer, dtype="float64", epochs=TOTAL):
    return NetworkSpec(sizes=(3, 5, 2), activation="tanh", init="xavier_uniform",
                       optimizer=optimizer, batch_size=BATCH, epochs=epochs, seed=3,
                       dtype=dtype, shuffle=True)


RESUME_SPECS = {
    "adam": make_spec(Adam(lr=0.05)),
    "sgd-momentum": make_spec(SGD(lr=0.05, momentum=0.9)),
    "adam-float32": make_spec(Adam(lr=0.05), dtype="float32"),
}

ROUND_TRIP_OPTIMIZERS = {
    "sgd": SGD(lr=0.05),
    "sgd-momentum": SGD(lr=0.05, momentum=0.9, nesterov=True),
    "adam": Adam(lr=0.05),
    "adamw": AdamW(lr=0.05),
    "rmsprop-centered-momentum": RMSprop(lr=0.01, momentum=0.5, centered=True),
}


@functools.cache
def uninterrupted(spec, backend):
    return train(spec, DATA, backend)


def checkpoint_after(spec, backend, epochs_done=DONE):
    """A Checkpoint of ``spec`` (spec.epochs in total) after its first ``epochs_done``
    epochs."""
    part = uninterrupted(spec.replace(epochs=epochs_done), backend)
    return Checkpoint(spec, part.params, part.opt_state, epochs_done)


def worst_difference(result, reference):
    """(all within the policy, max abs difference) over params, test predictions, losses."""
    tol = POLICY[reference.spec.dtype]
    pairs = list(zip(leaves(result.params), leaves(reference.params), strict=True))
    pairs.append((predict(result.spec, result.params, DATA.x_test),
                  predict(reference.spec, reference.params, DATA.x_test)))
    pairs.append((result.losses, reference.losses[-len(result.losses):]))
    diffs = [difference(a, e, tol) for a, e in pairs]
    return all(d.ok for d in diffs), max(d.max_abs for d in diffs)


def trees_equal(got, want, dtype):
    """The same layers, names, dtype (``dtype``) and values, exactly."""
    return (len(got) == len(want)
            and all(list(g) == list(w) for g, w in zip(got, want, strict=True))
            and all(a.dtype == b.dtype == np.dtype(dtype) and np.array_equal(a, b)
                    for a, b in zip(leaves(got), leaves(want), strict=True)))


def require_backend(name):
    if name != "numpy":
        require(name)


# ---------------------------------------------------------------- round trip

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ROUND_TRIP_OPTIMIZERS.values(),
                         ids=ROUND_TRIP_OPTIMIZERS.keys())
def test_round_trip_is_exact(tmp_path, optimizer, dtype):
    spec = make_spec(optimizer, dtype)
    saved = checkpoint_after(spec, "numpy")
    path = tmp_path / "run.ckpt"                       # no .npz suffix: none is added
    save_checkpoint(path, saved.spec, saved.params, saved.opt_state, epochs_done=DONE)
    assert os.listdir(tmp_path) == ["run.ckpt"]
    loaded = load_checkpoint(str(path))
    assert loaded.spec == saved.spec and loaded.epochs_done == DONE
    assert trees_equal(loaded.params, saved.params, dtype)
    assert isinstance(loaded.opt_state, OptimizerState)
    assert set(loaded.opt_state.buffers) == set(state_buffers(optimizer))
    assert loaded.opt_state.step == DONE * STEPS_PER_EPOCH
    for buffer in state_buffers(optimizer):
        assert trees_equal(loaded.opt_state.buffers[buffer], saved.opt_state.buffers[buffer],
                           dtype)


def test_checkpoint_unpacks_as_the_issue_s_three_tuple(tmp_path):
    spec = RESUME_SPECS["adam"]
    saved = checkpoint_after(spec, "numpy")
    save_checkpoint(tmp_path / "c", *saved, epochs_done=saved.epochs_done)
    loaded_spec, params, opt_state = load_checkpoint(tmp_path / "c")
    assert loaded_spec == spec and opt_state.step == saved.opt_state.step
    assert np.array_equal(params[0]["weight"], saved.params[0]["weight"])


def test_without_optimizer_state_and_epochs_done_defaults_to_the_total(tmp_path):
    result = uninterrupted(RESUME_SPECS["adam"], "numpy")
    save_checkpoint(tmp_path / "c.npz", result.spec, result.params)
    loaded = load_checkpoint(tmp_path / "c.npz")
    assert loaded.opt_state is None and loaded.epochs_done == TOTAL
    assert not any(key.startswith("opt.") for key in np.load(tmp_path / "c.npz").files)


def test_file_holds_only_plain_arrays(tmp_path):
    saved = checkpoint_after(RESUME_SPECS["adam"], "numpy")
    save_checkpoint(tmp_path / "c.npz", *saved, epochs_done=DONE)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        assert not any(npz[key].dtype.hasobject for key in npz.files)
        assert int(npz["version"]) == FORMAT_VERSION
        assert NetworkSpec.from_json(str(npz["spec"])) == saved.spec
        assert sorted(npz.files) == sorted(checkpoint_arrays(saved))


# ---------------------------------------------------------------- resume

@pytest.mark.parametrize("spec_name", RESUME_SPECS)
@pytest.mark.parametrize("first, second", list(itertools.product(BACKENDS, repeat=2)))
def test_resume_on_any_backend_equals_an_uninterrupted_run(tmp_path, first, second, spec_name):
    require_backend(first)
    require_backend(second)
    spec = RESUME_SPECS[spec_name]
    part = uninterrupted(spec.replace(epochs=DONE), first)
    save_checkpoint(tmp_path / "c.npz", part.spec, part.params, part.opt_state,
                    epochs_done=part.epochs_done)
    resumed = train(spec, DATA, second, resume=load_checkpoint(tmp_path / "c.npz"))
    reference = uninterrupted(spec, second)
    ok, worst = worst_difference(resumed, reference)
    assert ok, f"{first} -> {second}: max abs difference {worst:.3g}"
    assert resumed.epochs_done == TOTAL and resumed.opt_state.step == TOTAL * STEPS_PER_EPOCH
    assert len(resumed.losses) == (TOTAL - DONE) * STEPS_PER_EPOCH


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("first, second", list(itertools.product(BACKENDS, repeat=2)))
def test_a_checkpoint_predicts_the_same_in_every_backend(tmp_path, first, second, dtype):
    """Trained in ``first``, saved, loaded, predicting in ``second``: the predictions
    are ``first``'s own, within the policy; a perturbed weight is caught."""
    require_backend(first)
    require_backend(second)
    spec = RESUME_SPECS["adam"].replace(dtype=dtype)
    trained = uninterrupted(spec, first)
    save_checkpoint(tmp_path / "c.npz", spec, trained.params, trained.opt_state)
    loaded_spec, params, _ = load_checkpoint(tmp_path / "c.npz")
    x = DATA.x_test.astype(dtype)
    expected = predict(spec, trained.params, x, backend=first)
    tol = POLICY[dtype]
    assert difference(predict(loaded_spec, params, x, backend=second), expected, tol).ok

    def nudged(times):
        """The loaded parameters with W0[0, 0] moved by ``times`` the tolerance at its
        own scale (atol + rtol * |w|); the outputs are O(1), so about one tolerance
        on the weight is one on the outputs."""
        copy = copy_tree(params)
        w = copy[0]["weight"]
        w[0, 0] += times * (tol.atol + tol.rtol * abs(float(w[0, 0])))
        return predict(loaded_spec, copy, x, backend=second)

    assert not difference(nudged(10), expected, tol).ok    # negative control: caught
    assert difference(nudged(0.1), expected, tol).ok       # and not by any change at all


@pytest.mark.parametrize("spec_name", ["adam", "sgd-momentum"])
def test_negative_control_fresh_optimizer_buffers_differ(spec_name):
    spec = RESUME_SPECS[spec_name]
    saved = checkpoint_after(spec, "numpy")
    fresh = init_state(spec.optimizer, saved.params)._replace(step=saved.opt_state.step)
    resumed = train(spec, DATA, resume=Checkpoint(spec, saved.params, fresh, DONE))
    ok, worst = worst_difference(resumed, uninterrupted(spec, "numpy"))
    assert not ok and worst > 1e3 * POLICY["float64"].atol


def test_negative_control_wrong_start_epoch_differs():
    """The same epochs of training from the same state, but the batch order of
    epochs 3..6 instead of 2..5 (SGD's update does not depend on the step count
    after the first step, so only the order changes)."""
    spec = RESUME_SPECS["sgd-momentum"]
    saved = checkpoint_after(spec, "numpy")
    shifted = saved.opt_state._replace(step=(DONE + 1) * STEPS_PER_EPOCH)
    resumed = train(spec.replace(epochs=TOTAL + 1), DATA,
                    resume=Checkpoint(spec.replace(epochs=TOTAL + 1), saved.params, shifted,
                                      DONE + 1))
    assert len(resumed.losses) == (TOTAL - DONE) * STEPS_PER_EPOCH
    ok, worst = worst_difference(resumed, uninterrupted(spec, "numpy"))
    assert not ok and worst > 1e3 * POLICY["float64"].atol


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_checkpoint_start_trains_given_weights_as_a_fresh_run(backend):
    """``Checkpoint.start(spec, params)`` is epoch 0 with the optimizer's initial state:
    from ``init_params(spec)`` it is bitwise the run without ``resume``; from other
    weights (negative control) it is another run."""
    require(backend)
    spec = RESUME_SPECS["adam"]
    fresh = train(spec, DATA, backend)
    started = train(spec, DATA, backend, resume=Checkpoint.start(spec, init_params(spec)))
    assert all(a.tobytes() == b.tobytes() for a, b in
               zip(leaves(started.params), leaves(fresh.params), strict=True))
    assert started.losses.tobytes() == fresh.losses.tobytes()
    moved = map_tree(lambda w: w + 1e-3, init_params(spec))
    ok, _ = worst_difference(train(spec, DATA, backend, resume=Checkpoint.start(spec, moved)),
                             fresh)
    assert not ok
    with pytest.raises(TypeError, match="spec"):
        Checkpoint.start({"sizes": (3, 5, 2)}, init_params(spec))


def test_resume_with_a_larger_total_equals_the_longer_uninterrupted_run():
    spec = RESUME_SPECS["adam"]
    finished = uninterrupted(spec, "numpy")
    checkpoint = Checkpoint(finished.spec, finished.params, finished.opt_state,
                            finished.epochs_done)
    longer = spec.replace(epochs=TOTAL + 3)
    ok, worst = worst_difference(train(longer, DATA, resume=checkpoint),
                                 uninterrupted(longer, "numpy"))
    assert ok, worst


def test_resume_at_the_total_trains_nothing_and_leaves_the_checkpoint_alone():
    spec = RESUME_SPECS["adam"]
    saved = checkpoint_after(spec, "numpy", TOTAL)
    before = saved.params[0]["weight"].copy()
    result = train(spec, DATA, resume=saved)
    assert len(result.losses) == 0 and np.array_equal(result.params[0]["weight"], before)
    result = train(spec.replace(epochs=TOTAL + 1), DATA, resume=saved)
    assert len(result.losses) == STEPS_PER_EPOCH
    assert np.array_equal(saved.params[0]["weight"], before)                # not updated in place


def test_resume_with_progress_chunks_gives_the_same_result():
    spec = RESUME_SPECS["adam"].replace(epochs=45)
    calls = []
    saved = checkpoint_after(spec, "numpy")
    result = train(spec, DATA, resume=saved, progress=lambda *a: calls.append(a[:2]))
    assert calls[0] == (DONE + 2, 45) and calls[-1] == (45, 45)
    assert worst_difference(result, uninterrupted(spec, "numpy"))[0]


def wrong_resumes():
    spec = RESUME_SPECS["adam"]
    saved = checkpoint_after(spec, "numpy")
    state = saved.opt_state
    return {
        "not-a-checkpoint": (spec, (spec, saved.params, state), TypeError, "resume="),
        "other-lr": (spec.replace(optimizer=Adam(lr=0.01)), saved, ValueError,
                     "resume.spec.optimizer"),
        "other-seed": (spec.replace(seed=4), saved, ValueError, "resume.spec.seed"),
        "total-below-done": (spec.replace(epochs=DONE - 1), saved, ValueError, "spec.epochs=1"),
        "no-opt-state": (spec, Checkpoint(spec, saved.params, None, DONE), ValueError,
                         "resume.opt_state=None"),
        "fresh-state-step-0": (spec, Checkpoint(spec, saved.params,
                                                init_state(spec.optimizer, saved.params), DONE),
                               ValueError, "resume.opt_state.step=0"),
    }


@pytest.mark.parametrize("case", wrong_resumes())
def test_wrong_resume_is_rejected_before_training(case, monkeypatch):
    """The backend's training never starts (it is replaced by one that fails the test)."""
    spec, resume, error, named = wrong_resumes()[case]
    import nnparity.backends.numpy as numpy_backend

    def tripped(*args, **kwargs):
        pytest.fail("numpy.train ran: the wrong resume was not rejected first", pytrace=False)

    monkeypatch.setattr(numpy_backend, "train", tripped)
    with pytest.raises(error, match=named.replace("[", r"\[").replace("(", r"\(")):
        train(spec, DATA, backend="numpy", resume=resume)


# ---------------------------------------------------------------- format version 1

DATA_DIR = Path(__file__).parent / "data"
V1_FILE = DATA_DIR / "checkpoint_v1.npz"
#: v1 names (``{d}.W``/``{d}.b``, d counting Dense layers) -> the flat names of version 2
V1_NAMES = {f"{d}.{old}": f"{2 * d}.{new}" for d in range(3)
            for old, new in (("W", "weight"), ("b", "bias"))}


def v1_data():
    """The data tests/data/make_checkpoint_v1.py trained on, and its query rows."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    return Dataset(x, y, x[:4], y[:4]), rng.standard_normal((6, 3))


def v1_raw():
    """The v1 file's entries as they are stored."""
    with np.load(V1_FILE, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_v1_file_is_what_its_script_wrote():
    """The stored file is format version 1 with the old names (so the tests below
    read the old layout), and the script's data reproduces the stored query rows."""
    raw = v1_raw()
    assert int(raw["version"]) == 1 and int(raw["opt.step"]) == 9
    assert {key for key in raw if key.startswith("params.")} == {f"params.{k}" for k in V1_NAMES}
    assert np.array_equal(v1_data()[1], np.load(DATA_DIR / "checkpoint_v1_x.npy"))


def test_v1_checkpoint_loads_onto_the_new_trees():
    raw = v1_raw()
    loaded = load_checkpoint(V1_FILE)
    spec = loaded.spec
    assert spec.sizes == (3, 5, 4, 2) and spec.activation == ("tanh", "leaky_relu")
    assert spec.layers == (Dense(5), Activation("tanh"), Dense(4),
                           Activation("leaky_relu", {"negative_slope": 0.1}), Dense(2))
    assert spec.optimizer == Adam(lr=0.01) and loaded.epochs_done == 3 == spec.epochs
    assert [list(layer) for layer in loaded.params] == [["weight", "bias"], [],
                                                        ["weight", "bias"], [],
                                                        ["weight", "bias"]]
    flat = to_flat(loaded.params)
    assert list(flat) == list(V1_NAMES.values())
    for old, new in V1_NAMES.items():
        assert flat[new].dtype == np.float64 and np.array_equal(flat[new], raw[f"params.{old}"])
    # Adam's state at step 9 (3 epochs of 3 batches): every buffer on the new names
    state = loaded.opt_state
    assert isinstance(state, OptimizerState) and state.step == 9
    assert set(state.buffers) == {"exp_avg", "exp_avg_sq"}
    for buffer, tree in state.buffers.items():
        flat = to_flat(tree)
        assert list(flat) == list(V1_NAMES.values())
        for old, new in V1_NAMES.items():
            assert np.array_equal(flat[new], raw[f"opt.{buffer}.{old}"]), (buffer, new)


@pytest.mark.parametrize("backend", BACKENDS)
def test_v1_checkpoint_predicts_what_the_old_code_predicted(backend):
    require_backend(backend)
    spec, params, _ = load_checkpoint(V1_FILE)
    x = np.load(DATA_DIR / "checkpoint_v1_x.npy")
    expected = np.load(DATA_DIR / "checkpoint_v1_predictions.npy")
    got = predict(spec, params, x, backend=backend)
    assert got.shape == expected.shape == (6, 2) and got.dtype == np.float64
    if backend == "numpy":
        assert np.array_equal(got, expected)
    else:
        assert difference(got, expected, POLICY["float64"]).ok


def test_negative_control_v1_predictions_see_a_swapped_layer():
    """The comparison above is not vacuous: the same file with its two hidden
    activations' order changed predicts something else."""
    spec, params, _ = load_checkpoint(V1_FILE)
    x = np.load(DATA_DIR / "checkpoint_v1_x.npy")
    expected = np.load(DATA_DIR / "checkpoint_v1_predictions.npy")
    swapped = spec.replace(activation=("leaky_relu", "tanh"))
    assert not difference(predict(swapped, params, x), expected, POLICY["float64"]).ok


def test_v1_checkpoint_is_what_the_new_code_trains():
    """The new code, trained on the script's data, reaches the v1 file's parameters
    and optimizer state (within the policy): the old names map onto the right tensors."""
    loaded = load_checkpoint(V1_FILE)
    data, _ = v1_data()
    fresh = train(loaded.spec, data, "numpy")
    tol = POLICY["float64"]
    assert fresh.opt_state.step == loaded.opt_state.step == 9
    for got, want in zip(leaves(loaded.params), leaves(fresh.params), strict=True):
        assert difference(got, want, tol).ok
    for buffer in ("exp_avg", "exp_avg_sq"):
        for got, want in zip(leaves(loaded.opt_state.buffers[buffer]),
                             leaves(fresh.opt_state.buffers[buffer]), strict=True):
            assert difference(got, want, tol).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_from_a_v1_checkpoint_equals_an_uninterrupted_run(backend):
    require_backend(backend)
    loaded = load_checkpoint(V1_FILE)
    data, _ = v1_data()
    longer = loaded.spec.replace(epochs=5)
    resumed = train(longer, data, backend, resume=loaded)
    reference = train(longer, data, backend)
    tol = POLICY["float64"]
    assert resumed.epochs_done == 5 and resumed.opt_state.step == 15
    assert len(resumed.losses) == 2 * 3
    for got, want in zip(leaves(resumed.params), leaves(reference.params), strict=True):
        assert difference(got, want, tol).ok
    assert difference(resumed.losses, reference.losses[-6:], tol).ok


def test_v1_checkpoint_resaved_is_version_2_with_flat_names(tmp_path):
    loaded = load_checkpoint(V1_FILE)
    path = tmp_path / "v2.npz"
    save_checkpoint(path, *loaded, epochs_done=loaded.epochs_done)
    with np.load(path, allow_pickle=False) as npz:
        assert int(npz["version"]) == FORMAT_VERSION == 2
        names = set(npz.files)
    dense = ("0", "2", "4")
    assert names == ({"format", "version", "spec", "epochs_done", "opt.step"}
                     | {f"{prefix}.{i}.{name}" for prefix in
                        ("params", "opt.exp_avg", "opt.exp_avg_sq")
                        for i in dense for name in ("weight", "bias")})
    assert {"params.0.weight", "params.2.weight", "params.4.weight",
            "opt.exp_avg.0.weight"} <= names
    again = load_checkpoint(path)
    assert again.spec == loaded.spec and again.epochs_done == loaded.epochs_done
    assert trees_equal(again.params, loaded.params, "float64")
    assert again.opt_state.step == loaded.opt_state.step
    for buffer in ("exp_avg", "exp_avg_sq"):
        assert trees_equal(again.opt_state.buffers[buffer], loaded.opt_state.buffers[buffer],
                           "float64")


@pytest.mark.parametrize("old, new", [("params.1.W", "params.2.weight"),
                                      ("opt.exp_avg_sq.2.b", "opt.exp_avg_sq.2.B")])
def test_negative_control_a_v1_file_with_an_entry_renamed_is_refused(tmp_path, old, new):
    """One entry of the v1 file under another name (a v2 name, or a misspelt one):
    a clear ValueError naming both, not a KeyError or a silent mix of layouts."""
    raw = v1_raw()
    raw[new] = raw.pop(old)
    path = tmp_path / "renamed.npz"
    write_npz(path, raw)
    with pytest.raises(ValueError, match="checkpoint .*renamed.npz") as exc:
        load_checkpoint(path)
    message = str(exc.value)
    assert f"missing {old}" in message and f"unexpected {new}" in message


# ---------------------------------------------------------------- the general layer form

GENERAL_SPEC = NetworkSpec(input_shape=(3,), layers=(Dense(5), Activation("tanh"), Dense(4),
                                                     Dense(2)),
                           init="xavier_uniform", optimizer=Adam(lr=0.05), batch_size=BATCH,
                           epochs=TOTAL, seed=3, shuffle=True)
GENERAL_SPECS = {
    "dense-dense": GENERAL_SPEC,
    "activation-first-and-last": GENERAL_SPEC.replace(layers=(
        Activation("leaky_relu", {"negative_slope": 0.2}), Dense(4), Activation("tanh"),
        Dense(2), Activation("sigmoid"))),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", GENERAL_SPECS)
def test_round_trip_of_a_network_that_is_not_an_mlp(tmp_path, name, dtype):
    spec = GENERAL_SPECS[name].replace(dtype=dtype)
    assert spec.sizes is None and spec.activation is None
    saved = checkpoint_after(spec, "numpy")
    path = tmp_path / "c.npz"
    save_checkpoint(path, *saved, epochs_done=DONE)
    with np.load(path, allow_pickle=False) as npz:
        assert int(npz["version"]) == FORMAT_VERSION
        assert "layers" in json.loads(str(npz["spec"])) and "sizes" not in json.loads(
            str(npz["spec"]))
        assert sorted(k for k in npz.files if k.startswith("params.")) == sorted(
            f"params.{n}" for n in flat_names(spec.param_shapes))
    loaded = load_checkpoint(path)
    assert loaded.spec == spec and loaded.spec.layers == spec.layers
    assert loaded.spec.sizes is None and loaded.epochs_done == DONE
    assert trees_equal(loaded.params, saved.params, dtype)
    assert loaded.opt_state.step == saved.opt_state.step == DONE * STEPS_PER_EPOCH
    for buffer in state_buffers(spec.optimizer):
        assert trees_equal(loaded.opt_state.buffers[buffer], saved.opt_state.buffers[buffer],
                           dtype)


def test_general_form_flat_names_skip_the_parameter_free_layers(tmp_path):
    saved = checkpoint_after(GENERAL_SPEC, "numpy")
    save_checkpoint(tmp_path / "c.npz", *saved, epochs_done=DONE)
    with np.load(tmp_path / "c.npz") as npz:
        assert [k for k in npz.files if k.startswith("params.")] == [
            "params.0.weight", "params.0.bias", "params.2.weight", "params.2.bias",
            "params.3.weight", "params.3.bias"]


@pytest.mark.parametrize("second", BACKENDS)
def test_resume_of_a_network_that_is_not_an_mlp(tmp_path, second):
    require_backend(second)
    saved = checkpoint_after(GENERAL_SPEC, "numpy")
    save_checkpoint(tmp_path / "c.npz", *saved, epochs_done=DONE)
    resumed = train(GENERAL_SPEC, DATA, second, resume=load_checkpoint(tmp_path / "c.npz"))
    ok, worst = worst_difference(resumed, uninterrupted(GENERAL_SPEC, second))
    assert ok, f"numpy -> {second}: max abs difference {worst:.3g}"


def test_layers_that_form_an_mlp_are_saved_in_the_shorthand(tmp_path):
    """input_shape and layers that are what sizes builds give the same spec, which
    the file holds as the shorthand (a v1-compatible spec)."""
    spec = NetworkSpec(input_shape=(3,), layers=(Dense(5), Activation("tanh"), Dense(2)),
                       init="xavier_uniform", optimizer=Adam(lr=0.05), batch_size=BATCH,
                       epochs=TOTAL, seed=3, shuffle=True)
    assert spec == RESUME_SPECS["adam"] and spec.sizes == (3, 5, 2)
    saved = checkpoint_after(spec, "numpy")
    save_checkpoint(tmp_path / "c.npz", *saved, epochs_done=DONE)
    with np.load(tmp_path / "c.npz") as npz:
        assert json.loads(str(npz["spec"]))["sizes"] == [3, 5, 2]
    assert load_checkpoint(tmp_path / "c.npz").spec == spec


def v1_labelled(arrays):
    """``arrays`` (a version 2 file's entries) with the version entry set to 1."""
    return {**arrays, "version": np.array(1, np.int64)}


def test_a_v1_labelled_file_whose_spec_has_layers_is_refused(tmp_path):
    arrays = checkpoint_arrays(checkpoint_after(GENERAL_SPEC, "numpy"))
    path = tmp_path / "bad.npz"
    write_npz(path, v1_labelled(arrays))
    with pytest.raises(ValueError, match="checkpoint .*bad.npz") as exc:
        load_checkpoint(path)
    assert "format version 1 holds MLPs only, but the embedded spec has layers" in str(
        exc.value)


def test_negative_control_a_v1_labelled_mlp_with_v1_names_loads(tmp_path):
    """The refusal above is about the layers: an MLP labelled version 1 with v1's
    names loads (the v1 file, rewritten entry by entry, is the same checkpoint)."""
    path = tmp_path / "v1.npz"
    write_npz(path, v1_raw())
    assert trees_equal(load_checkpoint(path).params, load_checkpoint(V1_FILE).params,
                       "float64")


def test_a_v1_labelled_mlp_with_v2_names_is_refused(tmp_path):
    """An MLP's version 2 arrays relabelled version 1: the names are the other
    version's, a clear ValueError."""
    arrays = checkpoint_arrays(checkpoint_after(RESUME_SPECS["adam"], "numpy"))
    path = tmp_path / "bad.npz"
    write_npz(path, v1_labelled(arrays))
    with pytest.raises(ValueError, match="checkpoint .*bad.npz") as exc:
        load_checkpoint(path)
    missing, unexpected = str(exc.value).split("missing ")[1].split("; unexpected ")
    assert "params.0.W" in missing.split(", ") and "params.0.weight" in unexpected.split(", ")


# ---------------------------------------------------------------- bad files

def valid_arrays():
    return checkpoint_arrays(checkpoint_after(RESUME_SPECS["adam"], "numpy"))


def write_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


class Sentinel:
    """Unpickling this creates the file ``path``: proof that the payload ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def saved_file(tmp_path):
    path = tmp_path / "good.npz"
    write_npz(path, valid_arrays())
    return path


def without(arrays, key):
    return {k: v for k, v in arrays.items() if k != key}


def bad_files():
    """name -> (write(path, tmp_path), text the error must contain)."""
    def truncated(size):
        return lambda path, tmp: path.write_bytes(saved_file(tmp).read_bytes()[:size])

    def flipped(path, tmp):
        data = bytearray(saved_file(tmp).read_bytes())
        start = data.index(b"params.0.weight.npy") + 200          # inside that array's data
        data[start:start + 8] = bytes(255 - b for b in data[start:start + 8])
        path.write_bytes(bytes(data))

    def npz(change):
        return lambda path, tmp: write_npz(path, change(valid_arrays()))

    def replaced(key, value):
        return npz(lambda a: {**a, key: value})

    def spec_of(**changes):
        return replaced("spec", np.array(make_spec(Adam(lr=0.05)).replace(**changes).to_json()))

    def float32_spec(path, tmp):
        write_npz(path, {**valid_arrays(), "spec": np.array(
            make_spec(Adam(lr=0.05), dtype="float32").to_json())})

    return {
        "empty": (lambda p, t: p.write_bytes(b""), "not an .npz"),
        "text": (lambda p, t: p.write_text("hello"), "not an .npz"),
        "npy-file": (lambda p, t: np.save(p.open("wb"), np.zeros(3)), "not an .npz"),
        "truncated-half": (truncated(1500), "truncated or corrupt"),
        "truncated-header": (truncated(10), "truncated or corrupt"),
        "flipped-bytes": (flipped, "corrupt"),
        "missing-param": (npz(lambda a: without(a, "params.0.weight")), "missing params.0.weight"),
        "extra-entry": (replaced("notes", np.array("hi")), "unexpected notes"),
        "missing-version": (npz(lambda a: without(a, "version")), "no entry 'version'"),
        "unknown-version": (replaced("version", np.array(FORMAT_VERSION + 1)),
                            f"format version {FORMAT_VERSION + 1} is unknown"),
        "version-as-text": (replaced("version", np.array("1")),
                            ("entry 'version' is a unicode string of length 1, expected an "
                             "int64 scalar")),
        "wrong-format": (replaced("format", np.array("something else")), "entry 'format'"),
        "spec-not-json": (replaced("spec", np.array("{not json")), "embedded spec is invalid"),
        "spec-invalid": (replaced("spec", np.array('{"sizes": [3, 0, 2]}')), "sizes[1]=0"),
        "spec-as-bytes": (replaced("spec", np.frombuffer(b"{}", np.uint8)), "entry 'spec'"),
        "spec-other-sizes": (spec_of(sizes=(3, 4, 2)), ("params.0.weight' is float64 (5, 3), "
                                                       "expected float64 (4, 3)")),
        "transposed-weight": (
            npz(lambda a: {**a, "params.0.weight": a["params.0.weight"].T.copy()}),
            "expected float64 (5, 3)"),
        "float32-params-in-float64-spec": (
            npz(lambda a: {**a, "params.2.bias": a["params.2.bias"].astype(np.float32)}),
            "'params.2.bias' is float32 (2,), expected float64"),
        "float64-params-in-float32-spec": (float32_spec, "expected float32"),
        "int-params": (npz(lambda a: {**a, "params.0.bias": np.zeros(5, np.int64)}),
                       "'params.0.bias' is int64"),
        "nan-param": (npz(lambda a: {**a, "params.0.weight": np.full((5, 3), np.nan)}),
                      "params[0]['weight'][0, 0]=nan is not allowed: expected finite values"),
        "nan-in-an-optimizer-buffer": (
            npz(lambda a: {**a, "opt.exp_avg.2.bias": np.array([0.0, np.inf])}),
            ("opt_state.buffers['exp_avg'][2]['bias'][1]=inf is not allowed: expected finite "
             "values")),
        "opt-of-another-optimizer": (spec_of(optimizer=SGD(lr=0.1, momentum=0.9)),
                                     "unexpected opt.exp_avg.0.bias, opt.exp_avg.0.weight"),
        "opt-buffer-missing": (npz(lambda a: without(a, "opt.exp_avg_sq.2.bias")),
                               "missing opt.exp_avg_sq.2.bias"),
        "opt-buffer-wrong-shape": (replaced("opt.exp_avg.2.weight", np.zeros((5, 2))),
                                   "'opt.exp_avg.2.weight' is float64 (5, 2)"),
        "opt-step-negative": (replaced("opt.step", np.array(-1)),
                              "opt_state.step=-1 is not allowed"),
        "opt-step-int32": (replaced("opt.step", np.array(6, np.int32)),
                           "entry 'opt.step' is int32 (), expected an int64 scalar"),
        "opt-buffers-without-step": (npz(lambda a: without(a, "opt.step")),
                                     "missing opt.step"),
        "epochs-done-beyond-total": (replaced("epochs_done", np.array(TOTAL + 1)),
                                     ("epochs_done=7 is not allowed: expected at most "
                                      "spec.epochs=6")),
        **{name: (lambda p, t, data=data: p.write_bytes(data), named)
           for name, (data, named) in crafted_files(valid_arrays()).items()},
    }


@pytest.mark.parametrize("craft", ["zip-stored", "method-0-flags-0", "fortran-order",
                                   "npy-version-2"])
def test_negative_control_the_crafting_tools_write_a_loadable_file(tmp_path, craft):
    """The bad files above differ from a good one only in what each case changes:
    the same tools with nothing wrong give a file that loads (a Fortran-ordered or
    version 2.0 .npy entry is valid; np.save writes them)."""
    arrays = valid_arrays()
    members = members_of(arrays)
    if craft == "fortran-order":
        w = np.asfortranarray(arrays["params.0.weight"])
        members = members_of({**arrays, "params.0.weight": w})
    data = zip_bytes(members)
    if craft == "method-0-flags-0":
        data = patched(data, METHOD, 0)
    if craft == "npy-version-2":
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, arrays["params.0.weight"], version=(2, 0))
        data = zip_bytes([(n, buffer.getvalue() if n == "params.0.weight.npy" else d)
                          for n, d in members])
    path = tmp_path / "good.npz"
    path.write_bytes(data)
    loaded = load_checkpoint(path)
    assert np.array_equal(loaded.params[0]["weight"], arrays["params.0.weight"])
    assert loaded.params[0]["weight"].dtype == np.float64 and loaded.opt_state.step == 6


@pytest.mark.parametrize("case", bad_files())
def test_bad_file_raises_value_error_saying_what_is_wrong(tmp_path, case):
    write, named = bad_files()[case]
    path = tmp_path / "bad.npz"
    write(path, tmp_path)
    with pytest.raises(ValueError, match="checkpoint .*bad.npz") as exc:
        load_checkpoint(path)
    assert named in str(exc.value)


def test_missing_file_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="a readable file"):
        load_checkpoint(tmp_path / "nothing.npz")


@pytest.mark.parametrize("where", ["whole-file", "object-array-entry"])
def test_pickle_payload_is_never_executed(tmp_path, where):
    sentinel = tmp_path / "payload-ran"
    path = tmp_path / "evil.npz"
    if where == "whole-file":
        path.write_bytes(pickle.dumps(Sentinel(sentinel)))
        named = "not an .npz"
    else:
        arrays = valid_arrays()
        arrays["spec"] = np.array([Sentinel(sentinel)], dtype=object)
        write_npz(path, arrays)                           # np.savez pickles object arrays
        named = "pickled data"
    assert not sentinel.exists()
    with pytest.raises(ValueError, match=named):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_negative_control_the_pickle_payload_is_live(tmp_path):
    """Unpickling the payload (as allow_pickle=True would) does create the file."""
    sentinel = tmp_path / "payload-ran"
    path = tmp_path / "evil.npz"
    arrays = valid_arrays()
    arrays["spec"] = np.array([Sentinel(sentinel)], dtype=object)
    write_npz(path, arrays)
    with np.load(path, allow_pickle=True) as npz:
        npz["spec"]
    assert sentinel.exists()
    sentinel.unlink()
    pickle.loads(pickle.dumps(Sentinel(sentinel)))
    assert sentinel.exists()


# ---------------------------------------------------------------- bad arguments to save

def bad_saves():
    spec = RESUME_SPECS["adam"]
    saved = checkpoint_after(spec, "numpy")
    params, state = saved.params, saved.opt_state
    return {
        "spec-not-a-spec": ((spec.to_dict(), params, state), {}, TypeError, "spec="),
        "params-not-a-list": ((spec, params[0]["weight"], state), {}, TypeError, "params="),
        "params-wrong-shape": ((spec, [{**params[0], "weight": params[0]["weight"].T},
                                       *params[1:]], state),
                               {}, ValueError, "params[0]['weight'].shape"),
        "params-float32": ((spec, map_tree(lambda a: a.astype(np.float32), params), state), {},
                           TypeError, "params[0]['weight'].dtype"),
        "params-old-pairs": ((spec, [(layer["weight"], layer["bias"]) for layer in params
                                     if layer], state), {}, TypeError, "params="),
        "state-of-sgd": ((spec, params, init_state(SGD(lr=1, momentum=0.5), params)), {},
                         ValueError, "opt_state.buffers keys"),
        "state-a-dict": ((spec, params, {"step": state.step, **state.buffers}), {}, TypeError,
                         "opt_state="),
        "state-step-float": ((spec, params, state._replace(step=6.0)), {}, TypeError,
                             "opt_state.step=6.0"),
        "state-buffer-shape": ((spec, params, state._replace(
            buffers={**state.buffers, "exp_avg": state.buffers["exp_avg"][:1]})), {},
                               TypeError, "opt_state.buffers['exp_avg']"),
        "epochs-done-beyond-total": ((spec, params, state), {"epochs_done": TOTAL + 1},
                                     ValueError, "epochs_done=7"),
        "epochs-done-bool": ((spec, params, state), {"epochs_done": True}, TypeError,
                             "epochs_done=True"),
        "params-big-endian": ((spec, map_tree(lambda a: a.astype(">f8"), params), state), {},
                              TypeError, "params[0]['weight'].dtype='>f8'"),
        "state-buffer-big-endian": (
            (spec, params, state._replace(buffers={**state.buffers, "exp_avg": [
                {key: value.astype(">f8") if key == "bias" else value
                 for key, value in layer.items()} for layer in state.buffers["exp_avg"]]})), {},
            TypeError, "opt_state.buffers['exp_avg'][0]['bias'].dtype='>f8'"),
        "path-empty": ((spec, params, state), {"path": ""}, ValueError, "path='' is not allowed"),
        "state-step-beyond-int64": ((spec, params, state._replace(step=2**63)), {}, ValueError,
                                    "opt_state.step=9223372036854775808"),
        "state-step-uint64": ((spec, params, state._replace(step=np.uint64(2**64 - 1))), {},
                              ValueError, "opt_state.step=18446744073709551615"),
        # a spec's epochs are at most MAX_COUNT, but the int64 bound is checked first
        "epochs-done-beyond-int64": ((spec, params, state), {"epochs_done": 2**63}, ValueError,
                                     "epochs_done=9223372036854775808"),
    }


def test_negative_control_the_largest_step_and_epoch_count_round_trip(tmp_path):
    """The largest step count (int64's) and epoch count (a spec's MAX_COUNT) are saved
    and loaded exactly."""
    spec = RESUME_SPECS["adam"].replace(epochs=MAX_COUNT)
    saved = checkpoint_after(RESUME_SPECS["adam"], "numpy")
    state = saved.opt_state._replace(step=np.uint64(2**63 - 1))
    save_checkpoint(tmp_path / "c.npz", spec, saved.params, state, epochs_done=MAX_COUNT)
    loaded = load_checkpoint(tmp_path / "c.npz")
    assert loaded.opt_state.step == 2**63 - 1 and loaded.epochs_done == MAX_COUNT


@pytest.mark.parametrize("case", bad_saves())
def test_bad_save_arguments_raise_before_writing(tmp_path, case):
    args, kwargs, error, named = bad_saves()[case]
    path = kwargs.pop("path", tmp_path / "c.npz")
    with pytest.raises(error) as exc:
        save_checkpoint(path, *args, **kwargs)
    assert named in str(exc.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", [3, None, b"c.npz"])
def test_save_path_must_be_a_path(tmp_path, path):
    saved = checkpoint_after(RESUME_SPECS["adam"], "numpy")
    with pytest.raises(TypeError, match="path="):
        save_checkpoint(path, *saved)


# ---------------------------------------------------------------- atomic write

@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("fails_in", ["savez", "replace"])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, existing, fails_in):
    saved = checkpoint_after(RESUME_SPECS["adam"], "numpy")
    path = tmp_path / "c.npz"
    if existing:
        save_checkpoint(path, *saved, epochs_done=DONE)
        before = path.read_bytes()

    def half_written(f, **arrays):
        f.write(b"PK\x03\x04 half of a zip")
        raise OSError("disk full")

    def no_replace(src, dst):
        raise OSError("rename failed")

    if fails_in == "savez":
        monkeypatch.setattr(checkpoint_module.np, "savez", half_written)
    else:
        monkeypatch.setattr(checkpoint_module.os, "replace", no_replace)
    with pytest.raises(OSError):
        save_checkpoint(path, *saved, epochs_done=DONE)
    monkeypatch.undo()
    if existing:
        assert os.listdir(tmp_path) == ["c.npz"] and path.read_bytes() == before
        assert load_checkpoint(path).epochs_done == DONE
    else:
        assert os.listdir(tmp_path) == []


def test_negative_control_a_non_atomic_replace_would_leave_a_partial_file(tmp_path,
                                                                          monkeypatch):
    """The test above catches a writer that is not atomic: the real writer with
    os.replace swapped for an in-place copy that fails halfway leaves half a file,
    which the test's checks (and load_checkpoint) see."""
    saved = checkpoint_after(RESUME_SPECS["adam"], "numpy")
    path = tmp_path / "c.npz"

    def copy_in_place(src, dst):
        with open(src, "rb") as f, open(dst, "wb") as out:
            out.write(f.read()[:1000])
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.os, "replace", copy_in_place)
    with pytest.raises(OSError):
        save_checkpoint(path, *saved, epochs_done=DONE)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c.npz"]              # what the test above rules out
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


# ---------------------------------------------------------------- Checkpoint itself

def test_checkpoint_validates_its_fields():
    spec = RESUME_SPECS["adam"]
    saved = checkpoint_after(spec, "numpy")
    with pytest.raises(TypeError, match="spec="):
        Checkpoint(None, saved.params, None, 0)
    with pytest.raises(ValueError, match="epochs_done=-1"):
        Checkpoint(spec, saved.params, None, -1)
    with pytest.raises(TypeError, match="opt_state="):
        Checkpoint(spec, saved.params, {"step": 0}, 0)
    with pytest.raises(ValueError, match=r"opt_state.buffers keys=\[\]"):
        Checkpoint(spec, saved.params, OptimizerState(0, {}), 0)
    with pytest.raises(TypeError, match="model_state="):
        Checkpoint(spec, saved.params, None, 0, model_state={})
