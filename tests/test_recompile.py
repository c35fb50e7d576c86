"""JAX compiles the training loop once per structure: a new learning rate, epoch
count, seed or shuffle order reuses it (issue 6). Counted with JAX's own
compile event, not timed."""
import pytest

from nnparity.backends import train
from nnparity.shared import (SGD, Activation, Adam, Dense, NetworkSpec, notebook_data,
                             notebook_spec)
from conftest import require

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
COMPILES = []


def _listen(event, duration, **kwargs):
    if event == COMPILE_EVENT:
        COMPILES.append(event)


@pytest.fixture(scope="module", autouse=True)
def listener():
    require("jax")
    import jax.monitoring
    jax.monitoring.register_event_duration_secs_listener(_listen)
    yield


def compiles_during(fn):
    before = len(COMPILES)
    fn()
    return len(COMPILES) - before


def test_same_shapes_do_not_recompile():
    import jax
    jax.clear_caches()
    spec, data = notebook_spec(), notebook_data()
    assert compiles_during(lambda: train(spec, data, backend="jax")) >= 1   # the first one
    changes = [spec.replace(optimizer=SGD(lr=2e-5)), spec.replace(epochs=999),
               spec.replace(epochs=3000), spec.replace(epochs=1), spec.replace(seed=5),
               spec.replace(shuffle=True), spec,
               # the notebook written as layers is the same spec, so the same program
               NetworkSpec(input_shape=(2,), layers=(Dense(4), Activation("relu"), Dense(1)))]
    for changed in changes:
        assert compiles_during(
            lambda changed=changed: train(changed, data, backend="jax")) == 0, changed


def test_negative_control_a_new_structure_compiles():
    spec, data = notebook_spec(), notebook_data()
    train(spec, data, backend="jax")
    layers = NetworkSpec(input_shape=(2,), layers=(Dense(4), Activation("relu"),
                                                   Activation("tanh"), Dense(1)))
    for changed in (spec.replace(optimizer=Adam()), spec.replace(batch_size=3),
                    spec.replace(activation="tanh"), layers):
        assert compiles_during(
            lambda changed=changed: train(changed, data, backend="jax")) >= 1, changed
