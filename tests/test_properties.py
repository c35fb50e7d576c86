"""Property-based parity: hypothesis draws random valid specs and data, and the
three backends must agree under the tolerance policy.

The strategy covers, per issue 5:

- 1-4 hidden layers of widths 1-16; one activation for every hidden layer or a
  tuple with one per layer, every activation, random valid activation parameters;
- or, a third of the time, the general layer form: 1-6 Dense (widths 1-16) and
  Activation layers in any order (activations in a row, Dense after Dense, an
  activation first or last; at least one Dense), so ``spec.sizes`` is usually
  None;
- every loss (huber with a random delta) with targets that suit it: floats for
  mse/mae/huber, int labels in [0, k) for cross_entropy, values in [0, 1]
  (including exact 0 and 1) for bce_with_logits;
- every optimizer with random valid hyperparameters, learning rates modest
  enough that runs stay finite (a run that diverges anyway must diverge at the
  same step in every backend, which ``compare`` checks);
- batch sizes that leave partial batches (and one larger than the data), shuffle
  on and off, float64 and float32 (judged by ``POLICY["float32"]``);
- 1-20 training rows and 1-4 test rows of random data, some rows all zero.

Divergence has its own property: the same random networks trained by SGD on mse
with a huge learning rate, where every backend must raise at the same step.
``FOUND`` keeps the examples the random search found, as plain parametrized
cases, so they run on every profile.

Each new network structure costs a JAX compilation (about 1-3 s on a 2-core
machine), so runs are short (1-3 epochs) and the data is generated in NumPy from
a drawn seed rather than element by element. The "ci" profile (tests/conftest.py)
runs 50 derandomized examples (10 for divergence); ``--hypothesis-profile
thorough`` runs 1000 (200). The two random-spec properties take about a minute,
so they are marked ``slow``: CI runs them, the default test command does not
(``python -m pytest -m slow`` runs them; the fixed examples below always run).

On a failure the assertion message holds the spec's JSON, the data and the
parity report, so the example can be rerun with ``compare`` directly.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from nnparity.backends import train
from nnparity.shared import (ACTIVATIONS, SGD, Activation, Adam, AdamW, Dataset, Dense,
                             NetworkSpec, RMSprop, compare, init_params, to_flat)
from nnparity.shared.core.losses import LOSSES
from nnparity.shared.core.optimizers import init_state
from nnparity.shared.core.spec import INITS
from conftest import require

# ------------------------------------------------------------------ strategies

def unit(low: float, high: float) -> st.SearchStrategy[float]:
    """A float in [low, high], with float32's subnormals drawn as 0 (a float32 spec
    refuses a parameter it cannot represent as 0 or a normal number)."""
    return st.floats(low, high).map(lambda v: 0.0 if abs(v) < 2.0 ** -126 else v)


#: a strategy for each parameter of each parametric activation (every valid value
#: is a finite float, alpha > 0; the ranges keep the networks' outputs moderate)
ACTIVATION_PARAMS = {
    "leaky_relu": {"negative_slope": unit(-1.0, 1.0)},
    "elu": {"alpha": st.floats(0.05, 3.0)},
    "celu": {"alpha": st.floats(0.05, 3.0)},
}
assert {n for n, a in ACTIVATIONS.items() if a.defaults} == set(ACTIVATION_PARAMS)


def log_uniform(low_exp: float, high_exp: float) -> st.SearchStrategy[float]:
    """10**e for e in [low_exp, high_exp]."""
    return st.floats(low_exp, high_exp).map(lambda e: float(10.0 ** e))


unit_or_zero = st.one_of(st.just(0.0), unit(0.0, 0.95))
weight_decay = st.one_of(st.just(0.0), log_uniform(-4, -1))
eps = log_uniform(-8, -4)
betas = st.tuples(unit(0.0, 0.99), unit(0.5, 0.9999))


@st.composite
def sgd(draw):
    nesterov = draw(st.booleans())
    if nesterov:
        momentum, dampening = draw(st.floats(0.05, 0.95)), 0.0
    else:
        momentum, dampening = draw(unit_or_zero), draw(st.one_of(st.just(0.0),
                                                                 unit(0.0, 1.0)))
    return SGD(lr=draw(log_uniform(-4, -1.3)), momentum=momentum, dampening=dampening,
               nesterov=nesterov, weight_decay=draw(weight_decay))


@st.composite
def adam_family(draw, cls):
    return cls(lr=draw(log_uniform(-4, -1.5)), betas=draw(betas), eps=draw(eps),
               weight_decay=draw(weight_decay))


@st.composite
def rmsprop(draw):
    return RMSprop(lr=draw(log_uniform(-4, -2)), alpha=draw(st.floats(0.5, 0.999)),
                   eps=draw(eps), weight_decay=draw(weight_decay),
                   momentum=draw(unit_or_zero), centered=draw(st.booleans()))


optimizers = st.one_of(sgd(), adam_family(Adam), adam_family(AdamW), rmsprop())


@st.composite
def activations(draw, n_hidden: int):
    """(activation field, activation_params field) for ``n_hidden`` hidden layers."""
    names = st.sampled_from(sorted(ACTIVATIONS))
    if draw(st.booleans()):
        activation = draw(names)
        used = {activation}
    else:
        activation = tuple(draw(st.lists(names, min_size=n_hidden, max_size=n_hidden)))
        used = set(activation)
    params = {}
    for name in sorted(used & set(ACTIVATION_PARAMS)):
        chosen = {key: draw(value) for key, value in ACTIVATION_PARAMS[name].items()
                  if draw(st.booleans())}
        if chosen or draw(st.booleans()):        # sometimes an empty mapping, sometimes none
            params[name] = chosen
    return activation, params


@st.composite
def activation_layers(draw) -> Activation:
    """An Activation layer: any activation, with random valid parameters."""
    name = draw(st.sampled_from(sorted(ACTIVATIONS)))
    params = {key: draw(value) for key, value in ACTIVATION_PARAMS.get(name, {}).items()
              if draw(st.booleans())}
    return Activation(name, params)


@st.composite
def network(draw) -> dict:
    """The network's fields: the MLP shorthand (sizes, activation, activation_params)
    two times in three, else the general form (input_shape, layers)."""
    if draw(st.integers(0, 2)):
        n_hidden = draw(st.integers(1, 4))
        sizes = tuple(draw(st.lists(st.integers(1, 16), min_size=n_hidden + 2,
                                    max_size=n_hidden + 2)))
        activation, activation_params = draw(activations(n_hidden))
        return dict(sizes=sizes, activation=activation, activation_params=activation_params)
    layers = draw(st.lists(st.one_of(st.integers(1, 16).map(Dense), activation_layers()),
                           max_size=5))
    # at least one Dense layer anywhere: a network without parameters is refused
    layers.insert(draw(st.integers(0, len(layers))), Dense(draw(st.integers(1, 16))))
    return dict(input_shape=(draw(st.integers(1, 16)),), layers=tuple(layers))


@st.composite
def specs(draw, n_rows: int | None = None) -> NetworkSpec:
    loss = draw(st.sampled_from(sorted(LOSSES)))
    loss_params = {"delta": draw(st.floats(0.1, 3.0))} if loss == "huber" and draw(
        st.booleans()) else {}
    rows = n_rows if n_rows is not None else 20
    return NetworkSpec(
        **draw(network()),
        init=draw(st.sampled_from(INITS)), loss=loss, loss_params=loss_params,
        optimizer=draw(optimizers), batch_size=draw(st.integers(1, rows + 1)),
        epochs=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**32 - 1)),
        dtype=draw(st.sampled_from(["float64", "float32"])), shuffle=draw(st.booleans()))


def targets(rng: np.random.Generator, loss: str, n: int, k: int, scale: float) -> np.ndarray:
    kind = LOSSES[loss].targets
    if kind == "labels":
        return rng.integers(0, k, size=n)                               # (n,) int64
    if kind == "probabilities":
        y = rng.uniform(0.0, 1.0, size=(n, k))
        hard = rng.random((n, k)) < 0.3                                  # exact 0s and 1s
        return np.where(hard, rng.integers(0, 2, size=(n, k)), y).astype(np.float64)
    return rng.normal(0.0, scale, size=(n, k))                           # (n, k)


@st.composite
def datasets(draw, spec: NetworkSpec, n_rows: int) -> Dataset:
    """Random data for ``spec``: n_rows training rows, 1-4 test rows, some rows all zero."""
    n_test = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    x_train = rng.normal(0.0, scale, size=(n_rows, *spec.input_shape))
    x_test = rng.normal(0.0, scale, size=(n_test, *spec.input_shape))
    zero_rows = draw(st.sets(st.integers(0, n_rows - 1), max_size=n_rows))
    x_train[sorted(zero_rows)] = 0.0
    if draw(st.booleans()):
        x_test[0] = 0.0
    k = spec.n_outputs
    return Dataset(x_train, targets(rng, spec.loss, n_rows, k, scale), x_test,
                   targets(rng, spec.loss, n_test, k, scale))


@st.composite
def spec_and_data(draw) -> tuple[NetworkSpec, Dataset]:
    n_rows = draw(st.integers(1, 20))
    spec = draw(specs(n_rows))
    return spec, draw(datasets(spec, n_rows))


@st.composite
def diverging_spec_and_data(draw) -> tuple[NetworkSpec, Dataset]:
    """A random network trained by SGD on mse with a huge learning rate: most runs
    overflow within a few steps, some stay finite."""
    n_rows = draw(st.integers(1, 20))
    spec = draw(specs(n_rows))
    nesterov = draw(st.booleans())
    optimizer = SGD(lr=draw(log_uniform(8, 16)),
                    momentum=draw(st.floats(0.1, 0.9) if nesterov else unit_or_zero),
                    nesterov=nesterov)
    spec = spec.replace(loss="mse", loss_params={}, optimizer=optimizer, epochs=3)
    return spec, draw(datasets(spec, n_rows))


def describe(spec: NetworkSpec, data: Dataset) -> str:
    """Everything needed to rerun one example with ``compare``."""
    with np.printoptions(precision=17, threshold=10_000):
        arrays = "\n".join(f"{name} = np.array({getattr(data, name)!r})"
                           for name in ("x_train", "y_train", "x_test", "y_test"))
    return f"spec = NetworkSpec.from_json({spec.to_json()!r})\n{arrays}"


# ------------------------------------------------------------------ JAX's compiled code

#: clear JAX's compilation caches after this many compared examples. Each new network
#: structure leaves about 470 memory mappings of compiled code behind (measured with
#: jax 0.10.2); Linux allows 65530 per process (vm.max_map_count), so a long run
#: (the "thorough" profile: 1000 structures) would otherwise crash with "LLVM
#: compilation error: Cannot allocate memory" and a segfault after ~130 structures.
CLEAR_JAX_EVERY = 40
_compared = [0]


def _count_compare() -> None:
    _compared[0] += 1
    if _compared[0] % CLEAR_JAX_EVERY == 0:
        require("jax").clear_caches()


@pytest.fixture(scope="module", autouse=True)
def _release_jax_code():
    """Leave no compiled code of this module's examples behind for the rest of the suite."""
    yield
    if _compared[0]:
        require("jax").clear_caches()


# ------------------------------------------------------------------ properties


def checked_compare(spec: NetworkSpec, data: Dataset):
    """compare() in every backend; on a failure the message holds the spec, data and report."""
    require("torch")
    require("jax")
    report = compare(spec, data, backends=("numpy", "torch", "jax"))
    _count_compare()
    return report, f"parity failed for\n{describe(spec, data)}\n\n{report}"


@pytest.mark.slow
@given(spec_and_data())
def test_backends_agree_on_random_specs(example):
    """numpy, torch and jax agree under POLICY[spec.dtype] (or diverge at the same step).

    One exception, which the harness itself explains: a run in which one step
    amplifies rounding beyond the policy (Adam or RMSprop normalising a gradient
    that cancels exactly to a 1e-17 residual, see AMPLIFIED below) fails the
    free-running check for honest backends. Such a run passes this property only
    when every teacher-forced step of every backend agrees within its rounding
    allowance, so the diagnosis is "amplification"; the loop itself is checked
    by the trajectory tests in tests/test_harness.py."""
    spec, data = example
    note(describe(spec, data))
    report, failure = checked_compare(spec, data)
    if not report.ok and all(p.ok or p.diagnosis.startswith("amplification")
                             for p in report.parity):
        event("rounding amplified by a step (diagnosed, not passed as parity)")
        return
    event(f"dtype {spec.dtype}")
    event(f"optimizer {spec.optimizer.name}")
    event(f"loss {spec.loss}")
    event("diverged" if report.reference_diverged_at is not None else "finite run")
    event("partial batch" if data.x_train.shape[0] % spec.batch_size else "full batches only")
    assert report.ok, failure


@pytest.mark.slow
@settings(max_examples=max(10, settings.default.max_examples // 5))
@given(diverging_spec_and_data())
def test_backends_diverge_at_the_same_step(example):
    """With a huge learning rate most runs overflow: every backend reports
    DivergenceError at the same global step, and compare counts that as parity,
    unless the runs had already separated by amplification before it.
    (Runs that stay finite are chaotic at these rates and are not judged here.)"""
    spec, data = example
    note(describe(spec, data))
    report, failure = checked_compare(spec, data)
    steps = {"numpy": report.reference_diverged_at}
    steps.update({p.backend: p.diverged_at for p in report.parity})
    if all(step is None for step in steps.values()):
        event("stayed finite")
        return
    if len(set(steps.values())) == 1:
        event(f"diverged at the same step ({spec.dtype})")
        assert report.ok, failure
        return
    # Different steps are honest only when the runs had already separated by
    # amplification before the first divergence (at these rates a 1-ulp difference
    # grows to 1e30 in a few steps): every step agrees when teacher-forced, yet the
    # free-running runs of the epochs before it leave tolerance.
    first = min(step for step in steps.values() if step is not None)
    epochs_before = first // -(-len(data.x_train) // spec.batch_size)
    if uses_product_form(spec) and steps["numpy"] != first:
        # the known overflow difference (test_autograd_of_x_times_f_overflows_to_nan): the
        # NumPy reference multiplies dL/dy by f'(x) = 0 where autograd forms x * dL/dy
        event("autograd's x * dL/dy overflowed before the reference diverged")
        return
    assert epochs_before > 0, f"divergence steps differ in the first epoch: {steps}\n{failure}"
    early = compare(spec.replace(epochs=epochs_before), data, backends=("numpy", "torch", "jax"),
                    record_every=1)
    assert not early.ok, f"divergence steps differ: {steps}, runs agree before\n{failure}"
    for p in early.parity:
        assert all(d.ok for d in p.teacher), f"{p.backend}: {p.diagnosis}\n{failure}"
    event(f"diverged at different steps after amplification ({spec.dtype})")


#: activations of the form x * g(x): autograd's product rule forms x * dL/dy
PRODUCT_FORM = {"gelu", "gelu_tanh", "silu", "mish", "hardswish"}


def uses_product_form(spec: NetworkSpec) -> bool:
    return any(isinstance(layer, Activation) and layer.name in PRODUCT_FORM
               for layer in spec.layers)


@pytest.mark.xfail(strict=True, reason="known: torch's autograd of x * Phi(x) multiplies "
                   "an overflowed x * dL/dy by phi(x) = 0 (NaN), where the hand-written "
                   "backward multiplies dL/dy by gelu'(x) = 0; the torch and JAX backends "
                   "should mask the tails (|x| > 40) so that no backend overflows first")
def test_autograd_of_x_times_f_overflows_to_nan():
    """At x = -1e200 with dL/dy = 1e200, dL/dx = dL/dy * gelu'(x) = 0 exactly in floating
    point (the NumPy backend's value); torch's autograd gives NaN."""
    torch = require("torch")
    from nnparity.backends.torch.activations import ACTIVATIONS as TORCH_ACTIVATIONS
    x = torch.tensor([-1e200, 1e200], dtype=torch.float64, requires_grad=True)
    TORCH_ACTIVATIONS["gelu"](x).backward(torch.tensor([1e200, 1e200], dtype=torch.float64))
    assert torch.isfinite(x.grad).all(), x.grad


def one_row(x, y, x_test=None, y_test=None) -> Dataset:
    x, y = np.array(x, dtype=np.float64), np.array(y)
    return Dataset(x, y, x if x_test is None else np.array(x_test), y if y_test is None
                   else np.array(y_test))


#: Examples the random search found, kept so that they run on every profile
#: (a derandomized profile's draws change whenever this file changes).
FOUND = [
    # torch's F.celu computes the slope with alpha in float32: in float64 with
    # alpha=0.05, celu'(0) is 0.999999985 (the shared table says 1), off by up to
    # 8.8e-7 relative for x < 0. The teacher-forced step 0 disagrees at 1.1e-8.
    pytest.param(
        NetworkSpec(sizes=(1, 1, 1), activation="celu",
                    activation_params={"celu": {"alpha": 0.05}}, optimizer=SGD(lr=0.1),
                    batch_size=1, epochs=1, seed=0),
        one_row([[0.0]], [[1.0]]), id="celu-alpha-0.05-float64-sgd"),
    # Fixed: the torch backend now writes celu out (see backends/torch/activations.py).
]

#: Rounding amplified beyond the float64 policy by the step itself: honest
#: implementations disagree, and the harness must say so (these are not parity
#: cases; they document what the policy cannot absorb).
AMPLIFIED = [
    # gelu_tanh = x/2 (1 + tanh(u)) cancels in the negative tail: at x = -6.95 the
    # backends' values are 3% (numpy, torch) and 6% (jax) off the true -4.12e-15,
    # and its gradient differs by 9% between numpy and jax. RMSprop divides that
    # 1.5e-14 gradient by eps = 3.1e-8, so one step moves 0.bias by 5.0e-11 (numpy) and
    # 4.6e-11 (jax): 4.6e-12 apart, beyond atol 1e-12. The teacher-forced step
    # agrees normwise (3.5e-12), so the report reads "amplification".
    pytest.param(
        NetworkSpec(sizes=(6, 1, 1), activation="gelu_tanh", init="he_normal",
                    loss="bce_with_logits", seed=4250, batch_size=2, epochs=1,
                    optimizer=RMSprop(lr=1e-4, alpha=0.5, eps=3.124575981520492e-08,
                                      weight_decay=1e-4)),
        one_row([[0.17805547947387357, 0.01412449043298771, -1.3599967021235462,
                  -1.8272531476512217, -2.365979367361227, 4.701482001827749]],
                [[0.7444341543050887]]),
        id="gelu_tanh-tail-rmsprop-float64"),
    # mae's bias gradient is a sum of +-1/N terms; with three targets above and three
    # below the output it is exactly 0, but the backends' summation leaves a rounding
    # residual in some of them (float64: 5.6e-17 in numpy, 0 in torch; float32:
    # 2.98e-8 in numpy and jax, 0 in torch). Adam's first step is
    # lr * g / (|g| + eps), so the residual moves 2.bias by 5.55e-12 (float64, beyond
    # atol 1e-12) or 7.49e-4 (float32, 75% of lr), and the report reads
    # "implementation differs: step 0 already disagrees (max rel 0.0e+00)".
    *[pytest.param(
        NetworkSpec(sizes=(1, 1, 1), activation="tanh", init="zeros", loss="mae",
                    optimizer=Adam(lr=1e-3), batch_size=6, epochs=1, dtype=dtype),
        one_row(np.ones((6, 1)), [[0.5], [0.5], [0.5], [-0.5], [-0.5], [-0.5]]),
        id=f"mae-balanced-signs-adam-{dtype}") for dtype in ("float64", "float32")],
]


@pytest.mark.parametrize("spec, data", FOUND)
def test_backends_agree_on_found_examples(spec, data):
    report, failure = checked_compare(spec, data)
    assert report.ok, failure


@pytest.mark.parametrize("spec, data", AMPLIFIED)
def test_rounding_amplified_by_one_step_is_reported(spec, data):
    """A tiny gradient divided by eps (RMSprop) or normalised to +-1 (Adam) turns a
    1e-17 rounding difference into a step beyond the policy: compare reports a
    failure and names the step; it never passes it silently."""
    require("torch")
    require("jax")
    report = compare(spec, data, backends=("numpy", "torch", "jax"))
    assert not report.ok
    assert any(p.teacher and (p.first_step_out is not None or not p.teacher[0].ok)
               or not p.ok for p in report.parity)



@given(specs())
def test_spec_round_trips_through_json(spec):
    """to_dict() is plain JSON, and from_dict/from_json give back an equal spec."""
    d = spec.to_dict()
    text = json.dumps(d)
    again = NetworkSpec.from_dict(json.loads(text))
    assert again == spec, f"{spec!r}\n!=\n{again!r}"
    assert again.to_dict() == d
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert hash(again) == hash(spec)
    assert (again.input_shape, again.layers) == (spec.input_shape, spec.layers)
    assert (again.sizes is None) == (spec.sizes is None)
    assert again.loss_kwargs == spec.loss_kwargs


@given(spec_and_data())
def test_zero_epochs_returns_initial_parameters(example):
    """train with epochs=0 returns init_params(spec) exactly, in spec.dtype, and no losses."""
    spec, data = example
    spec = spec.replace(epochs=0)
    result = train(spec, data, backend="numpy")
    expected = init_params(spec)
    assert len(result.params) == len(expected) == len(spec.layers)
    got_flat, want_flat = to_flat(result.params), to_flat(expected)
    assert list(got_flat) == list(want_flat)                # "0.weight", "0.bias", ...
    for name, want in want_flat.items():
        got = got_flat[name]
        assert got.dtype == np.dtype(spec.dtype), (name, got.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        assert np.array_equal(got, want), f"{name} changed after 0 epochs"
    assert result.losses.shape == (0,)
    assert result.opt_state.step == 0
    initial_state = init_state(spec.optimizer, expected)
    assert sorted(result.opt_state.buffers) == sorted(initial_state.buffers)
