"""Hand-written NumPy derivatives against central finite differences (float64).

- Each activation's f' (``nnparity.backends.numpy.activations``) at points at
  least 1e-3 from its breakpoints: relative error <= 1e-6 point by point.
- The whole network's backprop (``nnparity.backends.numpy.network.loss_and_gradients``)
  for small random specs with every activation: norm-based relative error
  <= 1e-6 over all parameters, with a check that no finite-difference step
  moves a pre-activation across a breakpoint.
- Negative controls: a wrong derivative, a slightly wrong derivative and a
  wrong loss gradient each make the check fail.
"""
from __future__ import annotations

import numpy as np
import pytest

from nnparity.backends.numpy import activations as numpy_activations
from nnparity.backends.numpy import network as numpy_network
from nnparity.shared import Activation, NetworkSpec, init_model_state, init_params
from nnparity.shared.core.activations import ACTIVATIONS, breakpoints
from nnparity.shared.core.tree import leaves

NAMES = tuple(ACTIVATIONS)
VARIANTS = [(name, {}) for name in NAMES] + [
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {"alpha": 2.0}),
    ("celu", {"alpha": 0.5}),
    ("celu", {"alpha": 3.0}),
]

#: the acceptance threshold of every check here (the issue's number)
MAX_RELATIVE_ERROR = 1e-6
#: breakpoints are kinks: central differences are only meaningful this far from one
KINK_MARGIN = 1e-3
#: near a zero of f' the rounding error of a central difference (about eps*|f|/h ~ 1e-10
#: absolute) dominates any relative measure; such points are skipped (see below)
SMALLEST_CHECKED_SLOPE = 1e-3


def variant_id(name, params):
    if not params:
        return name
    return name + "(" + ",".join(f"{k}={v:g}" for k, v in params.items()) + ")"


def steps(x):
    """h ~ 1e-6 scaled to |x|, rounded so that x + h and x - h are exactly x +- h."""
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    return (x + h) - x


def central_difference(f, x):
    h = steps(x)
    return (f(x + h) - f(x - h)) / (2 * h)


def far_from_breakpoints(x, name, params):
    """Mask of points at least KINK_MARGIN from every breakpoint of the activation."""
    points = np.array(list(breakpoints(name, params)), dtype=np.float64)
    if points.size == 0:
        return np.ones(x.shape, dtype=bool)
    return np.min(np.abs(x[:, None] - points[None, :]), axis=1) >= KINK_MARGIN


def derivative_check(name, params, x):
    """Compare the NumPy f' with central differences of the NumPy f at x.

    Returns (worst relative error, number of points checked). A point counts when
    the difference quotient is exactly 0 (a flat piece: f' must be exactly 0 there)
    or at least SMALLEST_CHECKED_SLOPE in magnitude.
    """
    activation = Activation(name, params)
    f, df = numpy_activations.ACTIVATIONS[name]
    kwargs = activation.kwargs
    x = x[far_from_breakpoints(x, name, params)]
    fd = central_difference(lambda t: f(t, **kwargs), x)
    slope = df(x, **kwargs)
    flat = fd == 0
    checked = flat | (np.abs(fd) >= SMALLEST_CHECKED_SLOPE)
    scale = np.maximum(np.abs(fd), np.abs(slope))
    gap = np.abs(slope - fd)
    errors = np.where(flat, np.where(slope == 0, 0.0, np.inf),
                      gap / np.where(flat, 1.0, scale))
    return float(np.max(errors[checked])), int(checked.sum())


def gradcheck_points(seed=0):
    rs = np.random.RandomState(seed)
    fixed = np.array([-9.7, -6.5, -4.2, -3.5, -2.9, -1.5, -0.75, -0.3, -1e-2, 2e-3, 0.3, 0.9,
                      1.5, 2.9, 3.5, 5.3, 6.5, 9.7])
    return np.concatenate([fixed, rs.uniform(-4, 4, 200), rs.uniform(-10, 10, 60)])


@pytest.mark.parametrize("name, params", [
    pytest.param(n, p, id=variant_id(n, p)) for n, p in VARIANTS])
def test_activation_derivative(name, params):
    x = gradcheck_points()
    worst, n_checked = derivative_check(name, params, x)
    assert n_checked >= 0.8 * len(x), f"only {n_checked} of {len(x)} points were checkable"
    assert worst <= MAX_RELATIVE_ERROR, f"{name}: relative error {worst:.3e}"


@pytest.mark.parametrize("name, params", [
    pytest.param(n, p, id=variant_id(n, p)) for n, p in VARIANTS if breakpoints(n, p)])
def test_activation_derivative_close_to_breakpoints(name, params):
    """Both sides of each breakpoint, 1.1e-3 to 1e-2 away."""
    points = list(breakpoints(name, params))
    offsets = np.array([1.1e-3, 2e-3, 5e-3, 1e-2])
    x = np.concatenate([[x0 - offsets, x0 + offsets] for x0 in points]).ravel()
    worst, n_checked = derivative_check(name, params, x)
    assert n_checked == len(x)
    assert worst <= MAX_RELATIVE_ERROR, f"{name}: relative error {worst:.3e}"


# ---------------------------------------------------------------- the whole network

def flatten(grads):
    return np.concatenate([a.ravel() for a in leaves(grads)])


def hidden_pre_activations(spec, params, x):
    """(Activation layer, its input z) for every Activation layer, in order: an
    Activation layer's NumPy cache is (its input, f' of it)."""
    _, caches = numpy_network.forward(spec, params, init_model_state(spec), x)
    return [(layer, cache[0]) for layer, cache in zip(spec.layers, caches, strict=True)
            if isinstance(layer, Activation)]


def loss_and_gradients(spec, params, x, y):
    """The NumPy reference's minibatch loss and gradients (a tree like ``params``)."""
    return numpy_network.loss_and_gradients(spec, params, init_model_state(spec), x, y,
                                            numpy_network.empty_like(params))


def pre_activation_sides(spec, params, x):
    """For every hidden pre-activation and breakpoint, which side of it it lies on."""
    sides = []
    for activation, z in hidden_pre_activations(spec, params, x):
        for x0 in breakpoints(activation.name, activation.kwargs):
            sides.append(np.sign(z - x0))
    return sides


def min_kink_distance(spec, params, x):
    distance = np.inf
    for activation, z in hidden_pre_activations(spec, params, x):
        for x0 in breakpoints(activation.name, activation.kwargs):
            distance = min(distance, float(np.min(np.abs(z - x0))))
    return distance


def network_check(spec, params, x, y):
    """Norm-based relative error of the hand-written gradient against central
    differences of the loss, over every parameter of every layer.

    Asserts that no step of the finite differences moves any hidden pre-activation
    across a breakpoint (that would make the difference quotient meaningless).
    """
    _, grads = loss_and_gradients(spec, params, x, y)
    analytic = flatten(grads)
    base_sides = pre_activation_sides(spec, params, x)
    numeric = []
    for array in leaves(params):                              # in the order of leaves(grads)
        for index in np.ndindex(array.shape):
            p0 = array[index]
            h = steps(np.float64(p0))
            values = []
            for sign in (1, -1):
                array[index] = p0 + sign * h
                for now, before in zip(pre_activation_sides(spec, params, x), base_sides,
                                       strict=True):
                    assert np.array_equal(now, before), "a step crossed a breakpoint"
                values.append(loss_and_gradients(spec, params, x, y)[0])
            array[index] = p0
            numeric.append((values[0] - values[1]) / (2 * h))
    numeric = np.array(numeric)
    scale = max(np.linalg.norm(numeric), np.linalg.norm(analytic))
    assert scale > 0, "every gradient is zero: the check would be vacuous"
    return float(np.linalg.norm(numeric - analytic) / scale)


def random_problem(spec, seed, x_scale):
    """init_params(spec) with random nonzero biases, and random x (6 rows), y."""
    rs = np.random.RandomState(seed)
    params = init_params(spec)
    for b in (layer["bias"] for layer in params if layer):
        b[:] = rs.choice([-1, 1], b.shape) * rs.uniform(0.05, 0.5, b.shape)
    x = rs.randn(6, spec.sizes[0]) * x_scale
    y = rs.randn(6, spec.sizes[-1])
    return params, x, y


def kink_free_problem(spec, x_scale=5.0):
    """The first seed whose pre-activations are all at least KINK_MARGIN from a breakpoint."""
    for seed in range(50):
        params, x, y = random_problem(spec, seed, x_scale)
        if min_kink_distance(spec, params, x) >= KINK_MARGIN:
            return params, x, y
    raise AssertionError("no kink-free problem in 50 seeds")


def pieces_visited(spec, params, x):
    """How many of each hidden layer's linear/smooth pieces the pre-activations visit."""
    counts = []
    for activation, z in hidden_pre_activations(spec, params, x):
        edges = sorted(breakpoints(activation.name, activation.kwargs))
        counts.append(len(np.unique(np.searchsorted(edges, z.ravel()))))
    return counts


def network_spec(activation, params=None, sizes=(3, 5, 4, 2)):
    name = activation if isinstance(activation, str) else None
    activation_params = {}
    if params:
        activation_params = {name: params}
    return NetworkSpec(sizes=sizes, activation=activation, activation_params=activation_params,
                       init="xavier_uniform", seed=sum(map(ord, str(activation))) % 1000)


NETWORK_CASES = [pytest.param(network_spec(n, p), id=variant_id(n, p)) for n, p in VARIANTS] + [
    pytest.param(network_spec(("hardswish", "mish", "leaky_relu"), sizes=(3, 5, 4, 4, 2)),
                 id="hardswish-mish-leaky_relu"),
    pytest.param(network_spec(("relu6", "gelu"), sizes=(4, 6, 3, 1)), id="relu6-gelu"),
    pytest.param(NetworkSpec(sizes=(3, 5, 4, 2), activation=("celu", "elu"), init="he_normal",
                             activation_params={"celu": {"alpha": 0.5}, "elu": {"alpha": 2.0}}),
                 id="celu(alpha=0.5)-elu(alpha=2)"),
]


@pytest.mark.parametrize("spec", NETWORK_CASES)
def test_network_gradients(spec):
    params, x, y = kink_free_problem(spec)
    assert all(layer["bias"].all() for layer in params if layer)   # every bias is nonzero
    error = network_check(spec, params, x, y)
    assert error <= MAX_RELATIVE_ERROR, f"relative error {error:.3e}"


@pytest.mark.parametrize("spec", NETWORK_CASES)
def test_network_problem_visits_both_sides_of_a_kink(spec):
    """For each piecewise activation, some layer's pre-activations lie on both sides
    of a breakpoint, so the check sees more than one piece of f'. (A layer after a
    bounded activation such as hardsigmoid may legitimately stay inside one piece.)"""
    params, x, _ = kink_free_problem(spec)
    most = {}
    activations = [layer for layer in spec.layers if isinstance(layer, Activation)]
    for activation, count in zip(activations, pieces_visited(spec, params, x), strict=True):
        most[activation.name] = max(most.get(activation.name, 0), count)
    for name, count in most.items():
        if breakpoints(name, spec.activation_params.get(name)):
            assert count >= 2, (name, count)


# ---------------------------------------------------------------- negative controls

def wrong_tanh():
    return (numpy_activations.tanh, lambda x: 1 - numpy_activations.tanh(x))


def slightly_wrong_tanh():
    """The right derivative times (1 + 1e-5): ten times the threshold."""
    return (numpy_activations.tanh, lambda x: numpy_activations.d_tanh(x) * (1 + 1e-5))


@pytest.mark.parametrize("wrong", [wrong_tanh, slightly_wrong_tanh],
                         ids=["1-tanh", "off-by-1e-5"])
def test_negative_control_activation_check_fails(monkeypatch, wrong):
    monkeypatch.setitem(numpy_activations.ACTIVATIONS, "tanh", wrong())
    worst, _ = derivative_check("tanh", {}, gradcheck_points())
    assert worst > MAX_RELATIVE_ERROR


@pytest.mark.parametrize("wrong", [wrong_tanh, slightly_wrong_tanh],
                         ids=["1-tanh", "off-by-1e-5"])
def test_negative_control_network_check_fails(monkeypatch, wrong):
    spec = network_spec("tanh")
    params, x, y = kink_free_problem(spec)
    assert network_check(spec, params, x, y) <= MAX_RELATIVE_ERROR    # the control's baseline
    monkeypatch.setitem(numpy_activations.ACTIVATIONS, "tanh", wrong())
    assert network_check(spec, params, x, y) > MAX_RELATIVE_ERROR


def test_negative_control_wrong_loss_gradient_fails(monkeypatch):
    spec = network_spec("gelu")
    params, x, y = kink_free_problem(spec)
    assert network_check(spec, params, x, y) <= MAX_RELATIVE_ERROR
    from nnparity.backends.numpy import losses as numpy_losses
    monkeypatch.setitem(numpy_losses.LOSSES, "mse",
                        (numpy_losses.mse, lambda p, y: (p - y) / p.size))
    assert network_check(spec, params, x, y) > MAX_RELATIVE_ERROR


def test_negative_control_kink_crossing_is_detected():
    """A step that crosses a breakpoint is refused rather than averaged over."""
    spec = network_spec("relu", sizes=(1, 1, 1))
    params = [{"weight": np.array([[1.0]]), "bias": np.array([0.0])}, {},
              {"weight": np.array([[1.0]]), "bias": np.array([0.0])}]
    x = np.array([[1e-9]])                                   # z = 1e-9: h = 1e-6 crosses 0
    with pytest.raises(AssertionError, match="crossed a breakpoint"):
        network_check(spec, params, x, np.array([[1.0]]))
