"""The benchmark compares equal work: every peer trains the same parameters.

Timings are never asserted here (they belong to ``nnparity bench``).
"""
import json

import numpy as np
import pytest

from nnparity.backends import train
from nnparity.shared import POLICY, notebook_data, notebook_spec
from nnparity.shared.bench import peers
from nnparity.shared.bench import peers_sequence
from nnparity.shared.bench import run as bench
from nnparity.shared.core.data import Dataset
from nnparity.shared.core.layers import Dense
from nnparity.shared.core.layers.batch_norm import BatchNorm
from nnparity.shared.core.layers.dropout import Dropout
from nnparity.shared.core.optimizers import SGD
from nnparity.shared.core.recipes import digits_cnn_spec, digits_gru_spec, zen_transformer_spec
from nnparity.shared.core.tolerance import difference, tensorwise_difference
from conftest import require

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # for speed only: see conftest

SPEC = notebook_spec().replace(epochs=50)
PEERS = [pytest.param(name, id=name.split()[0]) for name, (module, _) in peers.PEERS.items()
         if module != "keras"]          # keras computes in float32: checked on its own below


def assert_same_params(params, reference, dtype="float64"):
    """Every W and b within the policy of ``dtype``, normwise per tensor."""
    tol = POLICY[dtype]
    for (w, b), (w_ref, b_ref) in zip(params, peers.as_pairs(reference), strict=True):
        assert w.dtype == w_ref.dtype == b.dtype == b_ref.dtype == np.dtype(dtype)
        assert difference(w, w_ref, tol).ok, (w, w_ref)
        assert difference(b, b_ref, tol).ok, (b, b_ref)


@pytest.mark.parametrize("peer", PEERS)
def test_peer_trains_the_same_parameters(peer):
    module, trainer = peers.PEERS[peer]
    require(module)
    data = notebook_data()
    assert_same_params(trainer(SPEC, data), train(SPEC, data).params)


def test_negative_control_a_different_learning_rate_is_caught():
    data = notebook_data()
    other = peers.notebook_loop(SPEC.replace(optimizer=type(SPEC.optimizer)(lr=1.01e-5)), data)
    with pytest.raises(AssertionError):
        assert_same_params(other, train(SPEC, data).params)


def test_keras_peer_trains_the_same_parameters_in_float32(monkeypatch):
    """Keras 3 computes in float32 even when asked for float64, so its peer runs in
    float32 and is held to what a float32 run can promise: the float32 policy
    (rtol 1e-4, atol 1e-5, measured by tools/measure_float32.py) against nnparity's
    own float32 run of the same spec. The test extra installs keras; without it the
    test is skipped, and fails under CI (``conftest.require``)."""
    monkeypatch.setenv("KERAS_BACKEND", "jax")          # as keras_fit sets it before import
    require("keras")
    data = notebook_data()
    assert peers.KERAS in peers.PEERS and "float32" in peers.KERAS     # the row says so
    assert_same_params(peers.keras_fit(SPEC, data),
                       train(SPEC.replace(dtype="float32"), data).params, dtype="float32")


def test_negative_control_the_float32_comparison_catches_a_different_learning_rate():
    """The float32 policy used for the Keras peer still separates a 1% longer step."""
    data = notebook_data()
    spec32 = SPEC.replace(dtype="float32")
    other = train(spec32.replace(optimizer=type(SPEC.optimizer)(lr=1.01e-5)), data).params
    with pytest.raises(AssertionError):
        assert_same_params(peers.as_pairs(other), train(spec32, data).params, dtype="float32")


def test_as_pairs_reads_both_parameter_layouts():
    w, b = np.ones((4, 2)), np.zeros(4)
    for params in ([(w, b)], [{"weight": w, "bias": b}, {}]):
        (got_w, got_b), = peers.as_pairs(params)
        assert got_w is w and got_b is b
    assert len(peers.as_pairs([{"weight": w, "bias": b}, {}, {"weight": w, "bias": b}])) == 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_compute_spec_trains_in_float32(backend):
    """The compute-bound workload is real: float32 parameters that moved."""
    if backend != "numpy":
        require(backend)
    spec, data = bench.COMPUTE_SPEC, bench.compute_data()
    assert spec.dtype == "float32" and data.x_train.shape == (bench.COMPUTE_ROWS, 512)
    result = train(spec, data, backend=backend)
    assert peers.as_pairs(result.params)[0][0].dtype == np.float32
    assert len(result.losses) == spec.epochs * bench.COMPUTE_ROWS // spec.batch_size


def test_flops_per_step_counts_six_per_weight_and_row():
    spec = bench.COMPUTE_SPEC
    assert bench.flops_per_step(spec) == 6 * 512 * (512 * 1024 + 1024 * 1024 + 1024 * 10)


def part_result(per_epoch, part=bench.CNN):
    """A part of ``run``'s result for ``per_epoch`` {row: seconds}, as run_part builds it."""
    return {"dtype": "float32", "rows": 1438, "batch_size": 32, "steps_per_epoch": 45,
            "seconds_per_epoch": per_epoch, "epochs": {name: 2 for name in per_epoch},
            "skipped_peers": {}, "ratios": bench.part_ratios(part, per_epoch),
            "threads": {**bench.ONE_THREAD, "XLA_FLAGS": bench.XLA_ONE_THREAD,
                        "torch.get_num_threads()": 1},
            "load_average": 0.25}


CNN_ROWS = {"nnparity numpy": 0.4, "nnparity torch": 0.1, "nnparity jax": 0.02,
            "torch.nn + torch.optim": 0.08}
GRU_PEER, = peers_sequence.GRU_PEERS
TRANSFORMER_PEER, = peers_sequence.TRANSFORMER_PEERS


def test_table_and_json_from_a_result(tmp_path):
    result = {"repeats": 5, "notebook": {"numpy": 0.03, "torch": 0.2},
              "cold": {"numpy": 0.05, "torch": 0.4},
              "peers": {"notebook loop": 0.04, "torch.nn + torch.optim": 0.8},
              "skipped": {peers.KERAS: "keras is not installed"},
              "compare_cli_cold": 5.0,
              "cnn": part_result(CNN_ROWS),
              "gru": part_result({"nnparity numpy": 0.03, "nnparity torch": 0.06,
                                  "nnparity jax": 0.01, GRU_PEER: 0.05}, bench.GRU),
              "transformer": part_result({"nnparity numpy": 1.2, "nnparity torch": 0.15},
                                         bench.TRANSFORMER),
              "compute": {"numpy": {"seconds": 1.0, "gflops": 40.0, "matmul_gflops": 50.0}}}
    text = bench.table(result)
    assert "numpy / notebook loop = 0.75" in text
    assert "torch / torch.nn+optim = 0.25" in text
    assert "skipped: keras is not installed" in text
    assert "0.80" in text                                   # 40 / 50 of the matmul rate
    assert "float32, the dtype CNNs are trained in" in text
    path = tmp_path / "bench.json"
    bench.write_json(result, str(path))
    assert json.loads(path.read_text()) == result
    assert json.loads(path.read_text())["cnn"]["ratios"]["numpy / torch"] == {
        "measured": 4.0, "target": 3.0, "met": False}
    assert "row-by-row GRU (digits_gru_spec), float32; 45 steps" in text
    assert "transformer block (zen_transformer_spec), float32" in text
    gru = json.loads(path.read_text())["gru"]["ratios"]
    assert gru["numpy / torch"] == {"measured": 0.5, "target": 5.0, "met": True}
    assert gru[f"torch / {GRU_PEER}"] == {"measured": 0.06 / 0.05, "target": None, "met": None}
    assert text.index("digits CNN") < text.index("row-by-row GRU") < text.index("transformer")


def test_a_result_without_the_parts_still_makes_a_table():
    """A result from before the per-epoch parts (tests/test_cli.py's) has no such keys."""
    result = {"repeats": 5, "notebook": {"numpy": 0.03}, "cold": {"numpy": 0.05},
              "peers": {}, "skipped": {}, "compare_cli_cold": 5.0,
              "compute": {"numpy": {"seconds": 1.0, "gflops": 40.0, "matmul_gflops": 50.0}}}
    assert "s / epoch" not in bench.table(result)


def test_part_table_reports_each_target_met_or_not_with_the_measured_ratio():
    lines = bench.part_table(bench.CNN, part_result(CNN_ROWS), repeats=7)
    text = "\n".join(lines)
    assert "float32, the dtype CNNs are trained in" in text and "median of 7" in text
    assert "one thread per framework; load average 0.2 before the timings" in text
    assert "nnparity numpy                       0.4000                  2" in text
    assert [line.split(": ")[-1] for line in lines if "target <=" in line] == [
        "NOT MET", "met", "NOT MET"]                         # 4.0 > 3, 0.2 <= 1, 1.25 > 1.1
    assert "numpy / torch = 4.00" in text and "target <= 3" in text
    assert "torch / torch.nn + torch.optim = 1.25" in text and "target <= 1.1" in text
    assert "not measured" not in text


def test_sequence_tables_show_issue_14s_targets_and_the_peer_ratio_without_one():
    rows = {"nnparity numpy": 0.9, "nnparity torch": 0.15, "nnparity jax": 0.2,
            TRANSFORMER_PEER: 0.12}
    lines = bench.part_table(bench.TRANSFORMER, part_result(rows, bench.TRANSFORMER), 5)
    ratios = [line.split() for line in lines if " = " in line]
    assert [r[:5] for r in ratios[:2]] == [["numpy", "/", "torch", "=", "6.00"],
                                           ["jax", "/", "torch", "=", "1.33"]]
    assert [line.split(": ")[-1] for line in lines if "target <=" in line] == [
        "NOT MET", "NOT MET"]                                # 6 > 5, 1.33 > 1
    assert lines[-1].split()[-2:] == ["no", "target"]        # torch / the peer: 1.25
    assert f"torch / {TRANSFORMER_PEER} = 1.25" in lines[-1]
    assert "the dtype CNNs" not in lines[0]


def test_part_table_says_which_targets_were_not_measured_and_why_a_part_was_skipped():
    m = part_result({"nnparity numpy": 0.4, "nnparity torch": 0.1})    # no jax, no peers
    m["skipped_peers"] = {"torch.nn + torch.optim": "torch is not installed"}
    text = "\n".join(bench.part_table(bench.CNN, m, repeats=5))
    assert list(m["ratios"]) == ["numpy / torch"]
    assert "not measured (a row is missing): jax / torch, torch / torch.nn + torch.optim" in text
    assert "skipped: torch is not installed" in text
    assert bench.part_table(bench.CNN, None, 5) == []       # a result from before the part
    assert bench.part_table(bench.GRU, {"skipped": "no sklearn"}, 5) == [
        "row-by-row GRU (digits_gru_spec): skipped: no sklearn"]


def test_every_parts_targets_name_rows_the_bench_times():
    for part in bench.PARTS.values():
        rows = {f"nnparity {b}" for b in ("numpy", "torch", "jax")} | set(part.peers)
        for top, bottom, target in part.targets.values():
            assert {top, bottom} <= rows and (target is None or target > 0)
    assert {name: t for name, (_, _, t) in bench.CNN_TARGETS.items()} == {
        "numpy / torch": 3.0, "jax / torch": 1.0, "torch / torch.nn + torch.optim": 1.1}
    for part, peer in ((bench.GRU, GRU_PEER), (bench.TRANSFORMER, TRANSFORMER_PEER)):
        assert {name: t for name, (_, _, t) in part.targets.items()} == {
            "numpy / torch": 5.0, "jax / torch": 1.0, f"torch / {peer}": None}
    assert list(bench.PARTS) == ["cnn", "gru", "transformer"]
    assert [bench.RECIPES[p.recipe].dataset for p in bench.PARTS.values()] == [
        "digits_images", "digits_rows", "zen"]


def test_the_digits_parts_are_skipped_without_scikit_learn(monkeypatch):
    monkeypatch.setattr(bench, "installed", lambda module: module != "sklearn")
    assert "scikit-learn" in bench.run_part(bench.CNN, ["numpy"], repeats=5)["skipped"]
    assert "digits_rows" in bench.run_part(bench.GRU, ["numpy"], repeats=5)["skipped"]
    assert not bench.TRANSFORMER.needs_sklearn              # zen is read from Python's source


def test_a_part_is_timed_in_a_process_with_one_thread_per_framework(monkeypatch):
    """run_part's child process: its environment pins every pool to one thread, it
    measures the part it is named, and its last line of output is the result (nothing
    is timed here: subprocess.run is faked)."""
    seen = {}

    def fake_run(command, env, capture_output, text):
        seen.update(command=command, env=env)
        return type("Done", (), {"returncode": 0, "stderr": "",
                                 "stdout": 'a warning\n{"ratios": {}}\n'})()

    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    assert bench.run_part(bench.TRANSFORMER, ["numpy", "jax"], repeats=6) == {"ratios": {}}
    assert seen["command"][-4:] == ["transformer", "numpy", "jax", "6"]
    assert "measure_part" in seen["command"][2]
    env = seen["env"]
    assert all(env[name] == "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                             "MKL_NUM_THREADS"))
    assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=2 "
                                "--xla_cpu_multi_thread_eigen=false")        # added, kept
    assert bench.one_thread_env(env)["XLA_FLAGS"] == env["XLA_FLAGS"]        # not twice


def test_run_times_every_part_in_order(monkeypatch):
    """run() hands each part to run_part and files its result under the part's key
    (every other measurement is faked away)."""
    seen = []
    monkeypatch.setattr(bench, "cold_seconds", lambda backend: 0.0)
    monkeypatch.setattr(bench, "compare_cli_seconds", lambda: 0.0)
    monkeypatch.setattr(bench, "interleaved_medians", lambda fns, repeats: [1.0] * len(fns))
    monkeypatch.setattr(bench, "PEERS", {})
    monkeypatch.setattr(bench, "run_part",
                        lambda part, backends, repeats: seen.append(part.key) or {"k": part.key})
    result = bench.run([], repeats=5)
    assert seen == ["cnn", "gru", "transformer"]
    assert [result[key] for key in seen] == [{"k": key} for key in seen]


def test_epochs_per_timing_doubles_until_a_timing_is_long_enough(monkeypatch):
    """A fake clock: each call takes 0.1 s per epoch, so 8 epochs (0.8 s) is the first
    count at or above 0.5 s; the first call (1 epoch) is the untimed warm-up."""
    now = [0.0]
    calls = []

    def trainer(epochs):
        calls.append(epochs)
        now[0] += 0.1 * epochs

    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    assert bench.epochs_per_timing(trainer, seconds=0.5) == 8
    assert calls == [1, 1, 2, 4, 8]
    calls.clear()
    assert bench.epochs_per_timing(trainer, seconds=100.0, most=4) == 4
    assert calls == [1, 1, 2, 4]              # stops at the cap, having called it (warm)
    calls.clear()
    assert bench.epochs_per_timing(trainer, seconds=100.0, most=3) == 3
    assert calls == [1, 1, 2, 3]


def test_part_trainers_cover_every_backend_and_peer_and_pass_the_epochs(monkeypatch):
    require("sklearn")
    seen = []
    monkeypatch.setattr("nnparity.backends.train",
                        lambda spec, data, backend, metrics: seen.append((backend, spec)) or
                        type("R", (), {"params": (backend, metrics)})())
    monkeypatch.setitem(bench.CNN_PEERS, "torch.nn + torch.optim",
                        ("torch", lambda spec, data: seen.append(("peer", spec))))
    monkeypatch.setattr(bench, "installed", lambda module: module != "jax")
    trainers, skipped = bench.part_trainers(bench.CNN, ["numpy", "jax"])
    assert list(trainers) == ["nnparity numpy", "nnparity jax", "torch.nn + torch.optim"]
    assert skipped == {"jit + lax.scan (hand-written)": "jax is not installed"}
    assert trainers["nnparity jax"](3) == ("jax", False)       # training alone, no metrics
    trainers["torch.nn + torch.optim"](5)
    assert [(who, spec.epochs, spec.dtype) for who, spec in seen] == [
        ("jax", 3, "float32"), ("peer", 5, "float32")]
    assert all(spec.layers == digits_cnn_spec().layers for _, spec in seen)


def test_the_sequence_parts_time_their_recipes_with_a_torch_peer(monkeypatch):
    monkeypatch.setattr(bench, "installed", lambda module: module != "torch")
    for part, recipe, dataset in ((bench.GRU, digits_gru_spec, "digits_rows"),
                                  (bench.TRANSFORMER, zen_transformer_spec, "zen")):
        if part.needs_sklearn:
            require("sklearn")
        spec, data = bench.part_case(part)
        assert spec == recipe("float32") and bench.RECIPES[part.recipe].dataset == dataset
        trainers, skipped = bench.part_trainers(part, ["numpy"])
        assert list(trainers) == ["nnparity numpy"]
        assert skipped == {name: "torch is not installed" for name in part.peers}
        assert [module for module, _ in part.peers.values()] == ["torch"]


# ----------------------------------------------------------------------------- the CNN peers

def subset(data, rows):
    return Dataset(data.x_train[:rows], data.y_train[:rows], data.x_test[:8], data.y_test[:8])


def with_layer(spec, kind, new):
    """``spec`` with its (one) layer of type ``kind`` replaced by ``new``."""
    return spec.replace(layers=tuple(new if isinstance(layer, kind) else layer
                                     for layer in spec.layers))


@pytest.fixture(scope="module")
def cnn_run():
    """The CNN without dropping anything (Dropout(0.0): the peers' masks come from their
    own frameworks' streams), float64, 2 epochs of 200 shuffled rows (6 full batches and
    a partial one of 8), and the torch backend's trained state."""
    require("sklearn")
    require("torch")
    spec = with_layer(digits_cnn_spec("float64").replace(epochs=2), Dropout, Dropout(0.0))
    data = subset(bench.part_case(bench.CNN)[1], 200)
    result = train(spec, data, backend="torch")
    return spec, data, peers.state_dict(result.params, result.model_state)


def same_state(state, reference, dtype="float64"):
    """Every parameter and running statistic within the policy, normwise per tensor
    (the names and their order must match: tensorwise_difference raises otherwise)."""
    assert all(a.dtype == np.dtype(dtype) for a in state.values())
    return tensorwise_difference(state, reference, POLICY[dtype]).ok


CNN_PEERS = [pytest.param(peers.cnn_torch_nn, "torch", id="torch.nn"),
             pytest.param(peers.cnn_jax_scan, "jax", id="jax-scan"),
             pytest.param(lambda spec, data: peers.cnn_jax_scan(spec, data, use_optax=False),
                          "jax", id="jax-scan-adam-written-out")]


@pytest.mark.parametrize("trainer, module", CNN_PEERS)
def test_cnn_peer_trains_the_same_parameters_and_statistics(cnn_run, trainer, module):
    require(module)
    spec, data, reference = cnn_run
    state = trainer(spec, data)
    assert list(state) == ["0.weight", "0.bias", "3.weight", "4.weight", "4.bias",
                           "4.running_mean", "4.running_var", "9.weight", "9.bias"]
    assert same_state(state, reference)


@pytest.mark.parametrize("change", [
    pytest.param(lambda s: s.replace(optimizer=type(s.optimizer)(lr=1.01 * s.optimizer.lr)),
                 id="lr+1%"),
    pytest.param(lambda s: with_layer(s, BatchNorm, BatchNorm(momentum=0.11)), id="momentum"),
    pytest.param(lambda s: with_layer(s, Dropout, Dropout(0.25)), id="dropout-masks"),
])
def test_negative_control_a_different_cnn_peer_is_caught(cnn_run, change):
    """A 1% larger learning rate, another BatchNorm momentum (it moves only the running
    statistics: the check covers them), or Dropout's real p (torch's masks are not the
    backends') each make the torch.nn peer's state differ beyond the policy."""
    require("torch")
    spec, data, reference = cnn_run
    assert not same_state(peers.cnn_torch_nn(change(spec), data), reference)


def test_cnn_settings_refuse_another_network():
    with pytest.raises(ValueError, match="digits_cnn_spec"):
        peers.cnn_settings(notebook_spec())
    spec = digits_cnn_spec()
    with pytest.raises(ValueError, match="digits_cnn_spec"):
        peers.cnn_settings(spec.replace(layers=spec.layers[:-1] + (Dense(12),)))
    with pytest.raises(ValueError, match="digits_cnn_spec"):
        peers.cnn_settings(spec.replace(optimizer=SGD(lr=0.1)))
    settings = peers.cnn_settings(spec)
    assert (settings.p, settings.momentum, settings.lr) == (0.25, 0.1, spec.optimizer.lr)


def test_the_bench_times_the_cnn_recipe_in_float32():
    require("sklearn")
    spec, data = bench.part_case(bench.CNN)
    assert bench.DTYPE == "float32" and spec == digits_cnn_spec("float32")
    assert data.x_train.shape == (1438, 1, 8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("trainer, module", CNN_PEERS)
def test_cnn_peer_does_the_timed_work_in_float32(trainer, module):
    """The timed configuration (float32, every training row) for one epoch, Dropout(0.0):
    each peer's state equals the torch backend's under the float32 policy."""
    require("sklearn")
    require("torch")
    require(module)
    spec, data = bench.part_case(bench.CNN)
    spec = with_layer(spec.replace(epochs=1), Dropout, Dropout(0.0))
    result = train(spec, data, backend="torch")
    reference = peers.state_dict(result.params, result.model_state)
    assert same_state(trainer(spec, data), reference, "float32")


# ----------------------------------------------------------------------------- sequence peers

#: (part, its peer, the names the peer's torch.nn modules give the parameters)
SEQUENCE_PEERS = [
    pytest.param(bench.GRU, peers_sequence.gru_torch_nn,
                 ["gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0",
                  "head.weight", "head.bias"], id="gru"),
    pytest.param(bench.TRANSFORMER, peers_sequence.transformer_torch_nn,
                 ["embedding.weight", "block.norm1.weight", "block.norm1.bias",
                  "block.self_attn.in_proj_weight", "block.self_attn.out_proj.weight",
                  "block.norm2.weight", "block.norm2.bias", "block.linear1.weight",
                  "block.linear1.bias", "block.linear2.weight", "block.linear2.bias",
                  "norm.weight", "norm.bias", "head.weight", "head.bias"], id="transformer"),
]


def sequence_case(part):
    """The part's recipe in float64 for 2 epochs of 200 shuffled training rows (6 full
    batches and a partial one of 8 an epoch), and the torch backend's trained state."""
    if part.needs_sklearn:
        require("sklearn")
    require("torch")
    spec, data = bench.part_case(part, "float64")
    spec, data = spec.replace(epochs=2), subset(data, 200)
    result = train(spec, data, backend="torch")
    return spec, data, peers.state_dict(result.params, result.model_state)


@pytest.fixture(scope="module")
def sequence_runs():
    """{part key: sequence_case(part)}, each computed once, when first asked for."""
    cache = {}

    def get(part):
        if part.key not in cache:
            cache[part.key] = sequence_case(part)
        return cache[part.key]
    return get


@pytest.mark.parametrize("part, trainer, torch_names", SEQUENCE_PEERS)
def test_sequence_peer_trains_the_same_parameters(sequence_runs, part, trainer, torch_names):
    """Each peer's trained parameters, mapped from its modules' names to the backends',
    equal the torch backend's under the float64 policy; the mapping covers every
    parameter of the modules once."""
    spec, data, reference = sequence_runs(part)
    state = trainer(spec, data)
    assert list(state) == list(reference)
    prefixes = (peers_sequence.GRU_NAMES if part is bench.GRU
                else peers_sequence.TRANSFORMER_NAMES)
    assert [peers.renamed(name, prefixes) for name in reference] == torch_names
    assert same_state(state, reference)


@pytest.mark.parametrize("part, trainer, torch_names", SEQUENCE_PEERS)
@pytest.mark.parametrize("change", [
    pytest.param(lambda s: s.replace(optimizer=type(s.optimizer)(lr=1.01 * s.optimizer.lr)),
                 id="lr+1%"),
    pytest.param(lambda s: s.replace(shuffle=False), id="batches-in-order"),
])
def test_negative_control_a_different_sequence_peer_run_is_caught(sequence_runs, part, trainer,
                                                                  torch_names, change):
    """A 1% larger learning rate, or the batches in another order (unshuffled), makes
    each peer's parameters differ from the torch backend's beyond the policy."""
    spec, data, reference = sequence_runs(part)
    assert not same_state(trainer(change(spec), data), reference)


def test_sequence_peers_refuse_another_network():
    spec = digits_gru_spec()
    for trainer, wrong in ((peers_sequence.gru_torch_nn, spec.replace(layers=spec.layers[:1] +
                                                                      (Dense(12),))),
                           (peers_sequence.transformer_torch_nn, spec),
                           (peers_sequence.gru_torch_nn, spec.replace(optimizer=SGD(lr=0.1)))):
        with pytest.raises(ValueError, match="written for"):
            trainer(wrong, Dataset(np.zeros((2, 8, 8)), np.zeros(2, int), np.zeros((1, 8, 8)),
                                   np.zeros(1, int)))


def test_renamed_maps_the_first_matching_prefix():
    prefixes = {"1.layers.0.": "block.norm1.", "1.": "head."}
    assert peers.renamed("1.layers.0.weight", prefixes) == "block.norm1.weight"
    assert peers.renamed("1.weight", prefixes) == "head.weight"
    assert peers.renamed("0.weight", prefixes) == "0.weight"           # no prefix: unchanged


def test_a_peer_whose_model_lacks_a_parameter_is_refused():
    """torch_adam_loop loads every initial parameter into the model or refuses."""
    torch = require("torch")
    spec, data = notebook_spec().replace(epochs=1), notebook_data()
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU()).double()
    with pytest.raises(ValueError, match="does not hold the spec's parameters"):
        peers.torch_adam_loop(model, spec, data, torch.nn.MSELoss())


@pytest.mark.parametrize("part, trainer, torch_names", SEQUENCE_PEERS)
def test_sequence_peer_does_the_timed_work_in_float32(part, trainer, torch_names):
    """The timed configuration (float32, every training row) for one epoch: each peer's
    parameters equal the torch backend's under the float32 policy (under a second
    each, so not a slow test, unlike the CNN's)."""
    if part.needs_sklearn:
        require("sklearn")
    require("torch")
    spec, data = bench.part_case(part)
    spec = spec.replace(epochs=1)
    result = train(spec, data, backend="torch")
    reference = peers.state_dict(result.params, result.model_state)
    assert same_state(trainer(spec, data), reference, "float32")


def test_bench_rejects_fewer_than_five_repeats(capsys):
    from nnparity.shared.cli.main import main
    assert main(["bench", "--repeats", "2"]) == 2
    assert "--repeats=2" in capsys.readouterr().err


def test_interleaved_medians_times_the_functions_in_turn(monkeypatch):
    calls = []
    clock = iter(range(1000))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)))
    a = lambda: calls.append("a")  # noqa: E731
    b = lambda: (calls.append("b"), next(clock), next(clock))  # noqa: E731  (b takes 3 ticks)
    assert bench.interleaved_medians([a, b], repeats=5) == [1.0, 3.0]
    assert calls == ["a", "b"] + ["a", "b"] * 5       # one warm-up each, then in turn
    calls.clear()
    assert bench.interleaved_medians([a, b], repeats=3, warm_up=False) == [1.0, 3.0]
    assert calls == ["a", "b"] * 3                    # the caller has warmed them up


@pytest.mark.parametrize("framework", ["numpy", "torch", "jax"])
def test_matmul_is_the_1024_square_float32_product(framework):
    """The rate's denominator is the product it claims: a @ a, 1024 x 1024, float32."""
    if framework != "numpy":
        require(framework)
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    product = np.asarray(bench.matmul(framework)())
    assert product.dtype == np.float32 and product.shape == (1024, 1024)
    exact = a.astype(np.float64) @ a.astype(np.float64)
    # normwise: each element sums 1024 float32 products, some of them cancelling
    assert tensorwise_difference([product], [exact], POLICY["float32"]).ok
    assert not tensorwise_difference([product], [exact + 1], POLICY["float32"]).ok
