"""The benchmark compares equal work: every peer trains the same parameters.

Timings are never asserted here (they belong to ``nnparity bench``).
"""
import json

import numpy as np
import pytest

from nnparity.backends import train
from nnparity.shared import POLICY, notebook_data, notebook_spec
from nnparity.shared.bench import peers
from nnparity.shared.bench import run as bench
from nnparity.shared.core.tolerance import difference, tensorwise_difference
from conftest import require

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


def test_table_and_json_from_a_result(tmp_path):
    result = {"repeats": 5, "notebook": {"numpy": 0.03, "torch": 0.2},
              "cold": {"numpy": 0.05, "torch": 0.4},
              "peers": {"notebook loop": 0.04, "torch.nn + torch.optim": 0.8},
              "skipped": {peers.KERAS: "keras is not installed"},
              "compare_cli_cold": 5.0,
              "compute": {"numpy": {"seconds": 1.0, "gflops": 40.0, "matmul_gflops": 50.0}}}
    text = bench.table(result)
    assert "numpy / notebook loop = 0.75" in text
    assert "torch / torch.nn+optim = 0.25" in text
    assert "skipped: keras is not installed" in text
    assert "0.80" in text                                   # 40 / 50 of the matmul rate
    path = tmp_path / "bench.json"
    bench.write_json(result, str(path))
    assert json.loads(path.read_text()) == result


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
