"""Fuzzing the input validation (issue 17): hostile specs, parameters and arrays.

The property, for every target: a call either is a valid run (it returns, or
training diverges with ``DivergenceError``, which is a run's result) or raises
the validation layer's ``InputValueError``/``InputTypeError`` (subclasses of
ValueError/TypeError) whose message names the argument, the value and what is
allowed (or Python's own TypeError for an unknown keyword argument); a rejection
comes before any work (no backend function ran, no initial parameters, optimizer
state or batch plan were built) and quickly; a run stays
within a time bound. Anything else (OverflowError, IndexError, a framework's
RuntimeError, a raw NumPy ValueError, a hang) fails.

Targets:

- ``spec_kwargs``: NetworkSpec(**fields), most fields valid and one or two hostile
  (wrong types, bools for ints, huge/negative/NaN/inf numbers, 400- and
  5000-digit integers, deep nesting, unknown keys, strings with NUL/newlines);
  a spec that is built round-trips through JSON and hashes.
- ``spec_json``: NetworkSpec.from_json(text): the same values written as JSON,
  then mangled (huge number literals, NaN/Infinity, deep nesting, duplicate
  keys, raw control characters, truncation).
- ``layer_spec_kwargs`` and ``layer_spec_json``: the same for the layer form
  (input_shape and Dense/Activation layers, most not an MLP): hostile input
  shapes, layers, layer items, Dense units, Activation names and parameters,
  unknown layer kinds and fields, shorthand fields beside the layers.
- ``edge_parameters``: activation, loss and optimizer parameters at the edges of
  float32 and float64 (subnormals, the smallest normal, the largest finite,
  just beyond it, -0.0, 1 - 2**-24, 1 - 1e-10), in float32 and float64 specs; a
  spec that is built trains one epoch (numpy, sometimes torch or jax).
- ``train_arrays``: Dataset(...) then train(...) and evaluate(...) with arrays of
  every dtype, shape, mask, stride, np.matrix and lists.
- ``predict_arrays``: predict(...) with hostile inputs and parameter trees (tensors,
  and structures: the old (W, b) pairs, flat lists, flat names, missing layers) (and evaluate(...)
  with the same parameters, when the input can be a Dataset's).
- ``elementwise_arrays``: loss_with_grad and activation_with_grad.

The default ("ci") profile runs a multiple of ``settings.default.max_examples``
per target (about 15 s in all); a profile with more examples (``--hypothesis-profile
fuzz`` or ``thorough``) scales every target with it. ``--hypothesis-show-statistics``
prints, per target, how many examples were valid runs, divergences, and
rejections of each argument.
"""
from __future__ import annotations

import importlib.util
import json
import math
import re
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnparity.backends
import nnparity.backends.api
from nnparity.backends import activation_with_grad, evaluate, loss_with_grad, predict, train
from nnparity.shared import (SGD, Activation, Adam, AdamW, Dataset, Dense, NetworkSpec, RMSprop,
                             init_params)
from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.core.divergence import DivergenceError
from nnparity.shared.core.losses import LOSSES
from nnparity.shared.core.tree import copy_tree, leaves, to_flat
from nnparity.shared.core.validation import InputTypeError, InputValueError

#: examples per target, scaled from the profile's max_examples (50 in "ci")
BASE = settings.default.max_examples
FAST = settings(max_examples=4 * BASE, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
RUNS = settings(FAST, max_examples=BASE)

#: seconds a rejection may take, and a valid run (1 epoch of at most 6 rows; a jax
#: run includes compiling a new network structure)
REJECT_SECONDS = 1.0
RUN_SECONDS = {"numpy": 2.0, "torch": 2.0, "jax": 8.0}

BACKEND_WORK = ("train", "step", "predict", "activation_with_grad", "loss_with_grad")
ALLOCATION = ("init_params", "init_state", "batch_plan")
INSTALLED = [name for name, (framework, _) in nnparity.backends.BACKENDS.items()
             if importlib.util.find_spec(framework) is not None]

#: names of the work functions called since the last reset (see ``recorder``)
CALLS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def recorder():
    """Wrap every backend's work functions, and the run's allocations, to record
    that they were called (they still run). Imports the frameworks first, so that
    no example pays for an import."""
    with pytest.MonkeyPatch.context() as patch:
        targets = [(nnparity.backends.get_backend(name), BACKEND_WORK) for name in INSTALLED]
        targets.append((nnparity.backends.api, ALLOCATION))
        for module, names in targets:
            for name in names:
                real = getattr(module, name)

                def recorded(*args, _real=real, _where=f"{module.__name__}.{name}", **kwargs):
                    CALLS.append(_where)
                    return _real(*args, **kwargs)
                patch.setattr(module, name, recorded)
        yield


def record(label: str) -> None:
    """An event for --hypothesis-show-statistics (when run by hypothesis)."""
    if currently_in_test_context():
        event(label)


def outcome(target: str, call, seconds: float = 2.0):
    """Run ``call`` and check the property; returns its result, or None when it was
    rejected or diverged. Records an event per outcome for the statistics."""
    CALLS.clear()
    start = time.perf_counter()
    try:
        result = call()
    except (InputValueError, InputTypeError) as exc:
        elapsed = time.perf_counter() - start
        message = str(exc)
        assert not CALLS, f"rejected after work started ({CALLS}): {message}"
        assert elapsed < REJECT_SECONDS, f"rejection took {elapsed:.2f} s: {message}"
        assert re.match(r"^[^\n=]+=.+ is not allowed: expected .+", message, re.S), message
        assert len(message) < 2000, message
        argument = re.sub(r"\[.*", "", message.split("=", 1)[0])
        record(f"{target}: rejected {type(exc).__bases__[0].__name__} {argument}")
        return None
    except TypeError as exc:
        # Python's own check of a call's keywords (NetworkSpec(Sizes=...), SGD(betas=...))
        if "got an unexpected keyword argument" not in str(exc) or CALLS:
            raise
        record(f"{target}: rejected TypeError unexpected keyword")
        return None
    except DivergenceError as exc:
        record(f"{target}: diverged")
        if currently_in_test_context():
            note(str(exc))
        return None
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"a valid run took {elapsed:.2f} s"
    record(f"{target}: valid")
    return result


# --------------------------------------------------------------------- hostile values

INT_EDGES = [0, 1, -1, 2, 3, 2**24, 2**24 + 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1,
             2**63, 2**64, 10**12, 10**400, -(10**400), 10**5000, -(10**5000)]
F32 = np.finfo(np.float32)
F64 = np.finfo(np.float64)
FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-8, 1 - 2**-24, 1 - 1e-10, 1 + 1e-10,
               float(F32.tiny), float(F32.tiny) / 2, float(F32.smallest_subnormal), 1e-40,
               1e-46, float(F32.max), float(np.nextafter(F32.max, np.inf, dtype=np.float64)),
               3.4028235677973366e38, 1e39, float(F64.tiny), float(F64.tiny) / 2, 5e-324,
               float(F64.max), 1e300, -1e300, math.nan, math.inf, -math.inf]
FUNNY_TEXT = st.text(alphabet=st.sampled_from(["a", "r", "e", "l", "u", "\x00", "\n", "\t",
                                               "\u2028", "\ud800", "é", " ", "_", "{", '"']),
                     max_size=12)


def pick(items: list):
    """sampled_from, without putting the items in the strategy's repr (a 5000-digit int
    or a list nested 50000 deep has none)."""
    items = list(items)

    def item(i: int):
        return items[i]
    return st.integers(0, len(items) - 1).map(item)


def deep(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), pick(INT_EDGES),
    st.floats(), st.sampled_from(FLOAT_EDGES), FUNNY_TEXT, st.binary(max_size=4),
    st.sampled_from([np.float32(1.5), np.float16(2), np.int64(3), np.uint64(2**64 - 1),
                     np.bool_(True), np.complex128(1), np.longdouble("1e4000"),
                     np.float64("nan"), np.int8(-1), complex(1, 1)]),
)
HOSTILE = st.one_of(
    LEAVES,
    st.recursive(LEAVES, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner),
        st.dictionaries(st.one_of(FUNNY_TEXT, st.integers(-2, 2)), inner, max_size=3)),
        max_leaves=8),
    pick([deep(50_000), [1] * 2000, list(range(1100)), range(3), {2, 3},
                     {2: 1, 3: 1}, np.array([2, 1]), np.array(5),
                     np.array([[2, 1]]), object()]),
)

ACTIVATION_NAMES = sorted(ACTIVATIONS)
OPTIMIZER_CLASSES = (SGD, Adam, AdamW, RMSprop)


@st.composite
def valid_fields(draw, max_width: int = 4) -> dict:
    """The fields of a small valid spec (1 epoch, so that it trains in milliseconds)."""
    sizes = draw(st.lists(st.integers(1, max_width), min_size=2, max_size=4))
    act = draw(st.sampled_from(ACTIVATION_NAMES))
    opt = draw(st.sampled_from([SGD(lr=1e-3), SGD(lr=1e-2, momentum=0.9, nesterov=True),
                                Adam(), AdamW(lr=1e-2), RMSprop(centered=True, momentum=0.5)]))
    return dict(sizes=sizes, activation=act, init=draw(st.sampled_from(
        ["uniform_fan_in", "zeros", "xavier_uniform", "he_normal"])), loss="mse",
        optimizer=opt, batch_size=draw(st.integers(1, 5)), epochs=1,
        seed=draw(st.integers(0, 2**32 - 1)), dtype=draw(st.sampled_from(["float64",
                                                                          "float32"])),
        shuffle=draw(st.booleans()))


FIELDS = ["sizes", "activation", "activation_params", "init", "loss", "loss_params",
          "optimizer", "batch_size", "epochs", "seed", "dtype", "shuffle"]


@st.composite
def hostile_fields(draw) -> dict:
    """A valid spec's fields with one to three replaced by hostile values (or a
    hostile element inside sizes / activation / a params mapping), or an unknown key."""
    fields = draw(valid_fields())
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(FIELDS + ["unknown"]))
        value = draw(HOSTILE)
        how = draw(st.integers(0, 3))
        if name == "sizes" and how == 0 and isinstance(fields["sizes"], list):
            sizes = list(fields["sizes"]) or [1]
            sizes[draw(st.integers(0, len(sizes) - 1))] = value
            fields["sizes"] = sizes
        elif name == "activation_params" and how == 0:
            act = fields["activation"] if isinstance(fields["activation"], str) \
                and fields["activation"] in ACTIVATIONS else "elu"
            key = draw(st.sampled_from(sorted(ACTIVATIONS[act].defaults) or ["alpha"]))
            fields["activation_params"] = {act: {key: value}}
        elif name == "loss_params" and how == 0:
            fields["loss"] = "huber"
            fields["loss_params"] = {draw(st.sampled_from(["delta", "beta"])): value}
        elif name == "optimizer" and how == 0:
            cls = draw(st.sampled_from(OPTIMIZER_CLASSES))
            arg = draw(st.sampled_from(["lr", "momentum", "betas", "eps", "alpha",
                                        "weight_decay", "nesterov", "centered", "dampening"]))
            fields["optimizer"] = (cls, {arg: value})
        elif name == "unknown":
            fields[draw(st.sampled_from(["Sizes", "lr", "epochs "]))] = value
        else:
            fields[name] = value
    return fields


def build(fields: dict) -> NetworkSpec:
    fields = dict(fields)
    if isinstance(fields.get("optimizer"), tuple) and len(fields["optimizer"]) == 2 \
            and fields["optimizer"][0] in OPTIMIZER_CLASSES:
        cls, kwargs = fields["optimizer"]
        if cls is SGD:
            kwargs = {"lr": 1e-3, **kwargs}
        fields["optimizer"] = cls(**kwargs)       # inside the call: its errors count
    return NetworkSpec(**fields)


def check_usable(spec: NetworkSpec) -> None:
    """A spec that was built is hashable and round-trips through JSON."""
    text = spec.to_json()
    assert NetworkSpec.from_json(text) == spec
    assert hash(NetworkSpec.from_json(text)) == hash(spec)


@FAST
@given(fields=hostile_fields())
def test_fuzz_spec_kwargs(fields):
    spec = outcome("spec_kwargs", lambda: build(fields))
    if spec is not None:
        check_usable(spec)


# --------------------------------------------------------------------- JSON text

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5),
                        pick([i for i in INT_EDGES if abs(i) < 10**4000]), st.floats(),
                        st.sampled_from(FLOAT_EDGES), FUNNY_TEXT)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(FUNNY_TEXT, inner, max_size=3)),
    max_leaves=8)


@st.composite
def hostile_json(draw) -> str:
    fields = draw(valid_fields())
    fields["optimizer"] = fields["optimizer"].to_dict()
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(FIELDS + ["unknown", "optimizer.lr", "optimizer.betas",
                                              "optimizer.name", "loss_params.delta",
                                              "activation_params"]))
        value = draw(JSON_VALUES)
        if name.startswith("optimizer."):
            if not isinstance(fields["optimizer"], dict):
                fields["optimizer"] = {"name": "adam"}
            fields["optimizer"][name.split(".")[1]] = value
        elif name == "loss_params.delta":
            fields["loss"], fields["loss_params"] = "huber", {"delta": value}
        elif name == "activation_params":
            fields["activation"] = "leaky_relu"
            fields["activation_params"] = {"leaky_relu": {"negative_slope": value}}
        else:
            fields["unknown" if name == "unknown" else name] = value
    if draw(st.booleans()):
        del fields["sizes"]
    text = json.dumps(fields, allow_nan=True)
    mangle = draw(st.sampled_from(["none", "number", "deep", "duplicate", "control",
                                   "truncate", "not-an-object", "nul"]))
    if mangle == "number":           # a literal no float holds, or longer than Python reads
        literal = draw(st.sampled_from(["1" + "0" * 400, "-1" + "0" * 400, "1" + "0" * 5000,
                                        "1e400", "-1e400", "1e-400", "NaN", "-Infinity",
                                        "0.1e99999999999"]))
        numbers = list(re.finditer(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?", text))
        if numbers:
            m = numbers[draw(st.integers(0, len(numbers) - 1))]
            text = text[:m.start()] + literal + text[m.end():]
    elif mangle == "deep":
        depth = draw(st.sampled_from([10, 1000, 100_000]))
        text = text[:-1] + ', "seed": ' + "[" * depth + "]" * depth + "}"
    elif mangle == "duplicate":
        text = text[:-1] + ', "epochs": 1}'
    elif mangle == "control":
        text = text.replace('"relu"', '"re\nlu"')
    elif mangle == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    elif mangle == "not-an-object":
        text = json.dumps(draw(JSON_VALUES), allow_nan=True)
    elif mangle == "nul":
        text = text.replace('"mse"', '"ms\\u0000e"')
    return text


@FAST
@given(text=hostile_json())
def test_fuzz_spec_json(text):
    note(text[:2000])
    spec = outcome("spec_json", lambda: NetworkSpec.from_json(text))
    if spec is not None:
        check_usable(spec)


def test_fuzz_spec_json_rejects_a_text_that_is_not_a_str():
    for text in (None, b'{"sizes": [1, 1]}', 1, ['{"sizes": [1, 1]}']):
        outcome("spec_json", lambda text=text: NetworkSpec.from_json(text))


# --------------------------------------------------------------------- the layer form

class Lazy(tuple):
    """(layer class, kwargs): a layer built inside the call under test, so that its
    constructor's errors count as the call's."""


@st.composite
def layer_fields(draw) -> dict:
    """A valid spec's fields in the layer form: input_shape and 1 to 5 Dense and
    Activation layers in any order, at least one Dense (an MLP now and then, mostly
    not)."""
    fields = draw(valid_fields())
    del fields["sizes"], fields["activation"]
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            layers.append(Dense(draw(st.integers(1, 4))))
        else:
            name = draw(st.sampled_from(ACTIVATION_NAMES))
            params = {}
            if ACTIVATIONS[name].defaults and draw(st.booleans()):
                key = draw(st.sampled_from(sorted(ACTIVATIONS[name].defaults)))
                params[key] = draw(st.floats(0.01, 2.0))
            layers.append(Activation(name, params))
    if not any(isinstance(layer, Dense) for layer in layers):
        layers.append(Dense(draw(st.integers(1, 4))))       # something to train
    fields["input_shape"] = (draw(st.integers(1, 4)),)
    fields["layers"] = tuple(layers)
    return fields


LAYER_TARGETS = ["input_shape", "input_shape[i]", "layers", "layers[i]", "Dense.units",
                 "Activation.name", "Activation.params", "Activation.params[key]",
                 "activation", "activation_params", "sizes", "unknown"]


@st.composite
def hostile_layer_fields(draw) -> dict:
    """Layer-form fields with one to three hostile values: input_shape or one of its
    entries, layers or one layer, a Dense layer's units, an Activation layer's name
    or parameters, or a shorthand field given beside the layers."""
    fields = draw(layer_fields())
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(LAYER_TARGETS))
        value = draw(HOSTILE)
        layers = list(fields["layers"]) if isinstance(fields["layers"], tuple) else None
        if target == "input_shape[i]" and isinstance(fields["input_shape"], tuple):
            fields["input_shape"] = (value,) + fields["input_shape"][1:]
        elif target == "layers[i]" and layers:
            layers[draw(st.integers(0, len(layers) - 1))] = value
            fields["layers"] = tuple(layers)
        elif target in ("Dense.units", "Activation.name", "Activation.params",
                        "Activation.params[key]") and layers is not None:
            index = draw(st.integers(0, len(layers)))
            if target == "Dense.units":
                layer = Lazy((Dense, {"units": value}))
            elif target == "Activation.name":
                layer = Lazy((Activation, {"name": value}))
            elif target == "Activation.params":
                layer = Lazy((Activation, {"name": "leaky_relu", "params": value}))
            else:
                key = draw(st.sampled_from(["negative_slope", "alpha", "beta", ""]))
                layer = Lazy((Activation, {"name": draw(st.sampled_from(
                    ["leaky_relu", "elu", "celu", "relu"])), "params": {key: value}}))
            fields["layers"] = tuple(layers[:index] + [layer] + layers[index:])
        elif target == "unknown":
            fields[draw(st.sampled_from(["Layers", "input", "units"]))] = value
        elif target not in ("input_shape[i]", "layers[i]", "Dense.units", "Activation.name",
                            "Activation.params", "Activation.params[key]"):
            fields[target] = value
    return fields


def build_layers(fields: dict) -> NetworkSpec:
    """``build``, with the Lazy layers built first (inside the call under test)."""
    fields = dict(fields)
    if isinstance(fields.get("layers"), tuple):
        fields["layers"] = tuple(layer[0](**layer[1]) if isinstance(layer, Lazy) else layer
                                 for layer in fields["layers"])
    return build(fields)


@FAST
@given(fields=hostile_layer_fields())
def test_fuzz_layer_spec_kwargs(fields):
    spec = outcome("layer_spec_kwargs", lambda: build_layers(fields))
    if spec is not None:
        check_usable(spec)


def test_fuzz_layer_spec_kwargs_negative_control():
    """Layer-form fields build specs (MLPs or not) that round-trip, Lazy layers
    included; a hostile Lazy layer is refused by name."""
    forms = set()
    specs = [build_layers(f) for f in (
        {"input_shape": (2,), "layers": (Dense(3), Dense(1))},
        {"input_shape": (3,), "layers": (Activation("tanh"), Dense(2), Activation("elu"))},
        {"input_shape": (2,), "layers": (Lazy((Dense, {"units": 4})), Activation("relu"),
                                         Dense(1))})]
    for spec in specs:
        check_usable(spec)
        forms.add(spec.sizes is None)
    assert forms == {True, False}
    with pytest.raises(InputTypeError, match=r"Dense.units=2.5 is not allowed"):
        build_layers({"input_shape": (2,), "layers": (Lazy((Dense, {"units": 2.5})),)})


@st.composite
def hostile_layer_json(draw) -> str:
    """A layer-form spec's JSON with hostile values in its input_shape, its layers'
    list, kinds and fields, then perhaps mangled as ``hostile_json`` does."""
    fields = draw(layer_fields())
    d = {**fields, "optimizer": fields["optimizer"].to_dict(),
         "input_shape": list(fields["input_shape"]),
         "layers": [layer.to_dict() for layer in fields["layers"]]}
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["input_shape", "input_shape[0]", "layers", "layers[i]",
                                       "kind", "units", "name", "params", "field", "sizes",
                                       "activation", "no-input_shape"]))
        value = draw(JSON_VALUES)
        layers = d["layers"] if isinstance(d["layers"], list) else None
        layer = (layers[draw(st.integers(0, len(layers) - 1))]
                 if layers and isinstance(layers[0], dict) else None)
        if target == "input_shape[0]" and isinstance(d.get("input_shape"), list) \
                and d["input_shape"]:
            d["input_shape"][0] = value
        elif target == "layers[i]" and layers:
            layers[draw(st.integers(0, len(layers) - 1))] = value
        elif target in ("kind", "units", "name", "params") and isinstance(layer, dict):
            layer[target] = value
        elif target == "field" and isinstance(layer, dict):
            layer[draw(st.sampled_from(["bias", "Units", "", "kind "]))] = value
        elif target == "no-input_shape":
            d.pop("input_shape", None)
        elif target in ("input_shape", "layers", "sizes", "activation"):
            d[target] = value
    text = json.dumps(d, allow_nan=True)
    mangle = draw(st.sampled_from(["none", "none", "deep", "number", "truncate"]))
    if mangle == "deep":
        depth = draw(st.sampled_from([10, 1000, 100_000]))
        text = text.replace('"layers": [', '"layers": [' + "[" * depth + "]" * depth + ", ", 1)
    elif mangle == "number":
        literal = draw(st.sampled_from(["1" + "0" * 5000, "1e400", "NaN", "-Infinity", "2.5"]))
        text = re.sub(r'"units": \d+', lambda m: '"units": ' + literal, text, count=1)
    elif mangle == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    return text


@FAST
@given(text=hostile_layer_json())
def test_fuzz_layer_spec_json(text):
    note(text[:2000])
    spec = outcome("layer_spec_json", lambda: NetworkSpec.from_json(text))
    if spec is not None:
        check_usable(spec)


# --------------------------------------------------------------------- edge parameters

EDGE = st.one_of(st.sampled_from(FLOAT_EDGES), st.sampled_from([-x for x in FLOAT_EDGES]),
                 st.floats(width=32), st.floats(min_value=-10, max_value=10))
#: an edge value, or one a run might use
EDGE_OR_PLAUSIBLE = st.one_of(st.floats(1e-4, 0.9), EDGE)


def backend_choice():
    """numpy in most examples, torch in some, jax in a few (each jax structure compiles)."""
    names = ["numpy"] * 14 + ["torch"] * 4 + ["jax"] * 2     # shrinking goes to numpy
    return st.sampled_from([name for name in names if name in INSTALLED])


@st.composite
def edge_spec(draw) -> dict:
    fields = draw(valid_fields(max_width=3))
    fields["sizes"] = [2] + fields["sizes"][1:-1] + [1]
    if len(fields["sizes"]) == 2:
        fields["sizes"].insert(1, 3)
    act = draw(st.sampled_from(["leaky_relu", "elu", "celu", fields["activation"]]))
    fields["activation"] = act
    if ACTIVATIONS[act].defaults:
        key = next(iter(ACTIVATIONS[act].defaults))
        fields["activation_params"] = {act: {key: draw(EDGE_OR_PLAUSIBLE)}}
    if draw(st.booleans()):
        fields["loss"], fields["loss_params"] = "huber", {"delta": draw(EDGE_OR_PLAUSIBLE)}
    cls = draw(st.sampled_from(OPTIMIZER_CLASSES))
    kwargs = {"lr": draw(EDGE_OR_PLAUSIBLE)}
    for arg in draw(st.sets(st.sampled_from(["momentum", "dampening", "eps", "alpha",
                                             "weight_decay", "betas"]), max_size=3)):
        if arg == "betas":
            if cls in (Adam, AdamW):
                kwargs["betas"] = (draw(EDGE_OR_PLAUSIBLE), draw(EDGE_OR_PLAUSIBLE))
        elif arg in cls.__dataclass_fields__:
            kwargs[arg] = draw(EDGE_OR_PLAUSIBLE)
    fields["optimizer"] = (cls, kwargs)
    return fields


DATA = Dataset(x_train=np.array([[0.5, -1.0], [0.0, 0.0], [2.0, 1.0], [-3.0, 0.25]]),
               y_train=np.array([[1.0], [0.0], [-1.0], [0.5]]),
               x_test=np.array([[1.0, 1.0]]), y_test=np.array([[0.0]]))


@RUNS
@given(fields=edge_spec(), backend=backend_choice())
def test_fuzz_edge_parameters(fields, backend):
    spec = outcome("edge_parameters", lambda: build(fields))
    if spec is None:
        return
    check_usable(spec)
    result = outcome(f"edge_parameters train {backend}", lambda: train(spec, DATA, backend),
                     RUN_SECONDS[backend])
    if result is not None:
        assert result.losses.shape == (-(-4 // spec.batch_size),)
        assert all(np.isfinite(a).all() for a in leaves(result.params))
        assert all(a.dtype == np.dtype(spec.dtype) for a in leaves(result.params))


# --------------------------------------------------------------------- arrays

DTYPES = [np.bool_, np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float16, np.float32,
          np.float64, np.dtype(">f8"), np.dtype("<f4").newbyteorder(">"), np.longdouble,
          np.complex64, np.complex128, object, "U3", "S2", "datetime64[s]",
          "timedelta64[ms]"]
FLOAT_DTYPES = [np.float32, np.float64]


def elements(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "O":
        return st.one_of(st.integers(), st.floats(), st.text(max_size=2), st.none())
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return st.one_of(st.floats(-100, 100, width=min(64, dtype.itemsize * 8)),
                         st.sampled_from([0.0, -0.0, 1e-45 if dtype.itemsize == 4 else 5e-324,
                                          float(np.finfo(dtype).max), math.nan, math.inf]))
    return None


VALID_WRAPS = ["plain", "flipped", "strided", "readonly", "fortran", "memmap-like"]
HOSTILE_WRAPS = ["masked", "masked-all", "matrix", "list", "scalar", "0-d", "extra-dim",
                 "1-d"]


@st.composite
def array_for(draw, shape, hostile: bool, dtype=None):
    """An array that should be accepted in place of a (shape) float array when not
    ``hostile`` (float32/64, finite small values; plain, flipped, strided, read-only,
    Fortran-ordered or a view with an offset), or with one hostile aspect: its dtype
    (ints, bools, float16, big-endian, longdouble, complex, object, strings,
    datetime), values (NaN, inf, float32/64 extremes, subnormals), shape (0-size,
    other), a mask, np.matrix, a list, a scalar, 0-d, an extra or a missing dimension."""
    aspect = draw(st.sampled_from(["dtype", "values", "shape", "wrap", "wrap"])) \
        if hostile else None
    if dtype is None:
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
    if aspect == "dtype":
        dtype = draw(st.sampled_from(DTYPES))
    dtype = np.dtype(dtype)
    if aspect == "shape":
        shape = draw(st.one_of(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                max_side=4),
                               st.just((0,) + tuple(shape[1:])), st.just(tuple(shape) + (1,))))
    if aspect in ("dtype", "values") or dtype.kind != "f":
        array = draw(hnp.arrays(dtype, shape, elements=elements(dtype)))
    else:
        array = draw(hnp.arrays(dtype, shape, elements=st.floats(
            -10, 10, width=min(64, dtype.itemsize * 8))))
    wrap = draw(st.sampled_from(HOSTILE_WRAPS if aspect == "wrap" else VALID_WRAPS))
    return wrapped(array, wrap, draw)


def wrapped(array: np.ndarray, wrap: str, draw) -> object:
    if wrap == "masked":
        return np.ma.masked_array(array, mask=draw(hnp.arrays(bool, array.shape)))
    if wrap == "masked-all":
        return np.ma.masked_all(array.shape, array.dtype)
    if wrap == "matrix" and array.ndim <= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.matrix(array)
    if wrap == "list":
        return array.tolist()
    if wrap == "scalar":
        return array.flat[0] if array.size else 1.0
    if wrap == "0-d":
        return np.array(array.flat[0] if array.size else 1.0, dtype=array.dtype)
    if wrap == "extra-dim":
        return array[..., None]
    if wrap == "1-d":
        return array.reshape(-1)
    if wrap == "flipped" and array.ndim:
        return np.flip(np.flip(array).copy())           # the same values, negative strides
    if wrap == "strided" and array.ndim:
        return np.repeat(array, 2, axis=-1)[..., ::2]   # the same values, not contiguous
    if wrap == "readonly":
        array.flags.writeable = False
    if wrap == "fortran":
        return np.asfortranarray(array)
    if wrap == "memmap-like":                           # a view at an offset in a buffer
        buffer = np.empty(array.size + 1, array.dtype)
        view = buffer[1:].reshape(array.shape)
        view[...] = array
        return view
    return array


@st.composite
def train_case(draw):
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n_train, n_test = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    spec = dict(sizes=(n_in, 3, n_out), loss=loss, optimizer=SGD(lr=1e-3), epochs=1,
                batch_size=draw(st.integers(1, 4)),
                dtype=draw(st.sampled_from(["float64", "float32"])))
    bad = draw(st.sets(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]),
                       max_size=2))
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = f"x_{split}", f"y_{split}"
        arrays[x] = draw(array_for((n, n_in), x in bad))
        if loss == "cross_entropy":
            arrays[y] = draw(array_for((n,), y in bad, np.int64)) if y in bad else draw(
                hnp.arrays(st.sampled_from([np.int64, np.int32, np.uint8]), (n,),
                           elements=st.integers(0, n_out - 1)))
        else:
            arrays[y] = draw(array_for((n, n_out), y in bad))
            if loss == "bce_with_logits" and type(arrays[y]) is np.ndarray \
                    and arrays[y].dtype.kind == "f" and y not in bad:
                arrays[y] = np.abs(arrays[y]) / 10            # targets in [0, 1]
    return spec, arrays, draw(backend_choice())


def shapes_of(arrays: dict) -> str:
    return ", ".join(f"{k}: {type(v).__name__} {getattr(v, 'dtype', '')} "
                     f"{getattr(v, 'shape', '')}" for k, v in arrays.items())


@settings(RUNS, max_examples=2 * BASE)
@given(case=train_case())
def test_fuzz_train_arrays(case):
    fields, arrays, backend = case
    note(shapes_of(arrays))
    spec = NetworkSpec(**fields)
    data = outcome("train_arrays Dataset", lambda: Dataset(**arrays))
    if data is None:
        return
    result = outcome(f"train_arrays train {backend}", lambda: train(spec, data, backend),
                     RUN_SECONDS[backend])
    if result is not None:
        assert all(a.dtype == np.dtype(spec.dtype) for a in leaves(result.params))
        metrics = outcome("train_arrays evaluate",
                          lambda: evaluate(spec, result.params, data, backend),
                          RUN_SECONDS[backend])
        assert set(metrics) >= {"test_loss"}


@st.composite
def predict_case(draw):
    dtype = draw(st.sampled_from(["float64", "float32"]))
    spec = NetworkSpec(sizes=(2, 3, 2), dtype=dtype, activation=draw(st.sampled_from(
        ACTIVATION_NAMES)), init="xavier_uniform")
    params = copy_tree(init_params(spec))    # [{weight, bias}, {} (the activation), {...}]
    bad = draw(st.sampled_from(["none", "none", "x", "0.weight", "0.bias", "2.weight",
                                "2.bias", "structure"]))
    for index, layer in enumerate(params):
        for key, original in list(layer.items()):
            if bad == f"{index}.{key}":
                layer[key] = draw(array_for(original.shape, True, original.dtype))
            else:                                # the same values, perhaps another layout
                layer[key] = wrapped(original, draw(st.sampled_from(VALID_WRAPS)), draw)
    if bad == "structure":
        form = draw(st.sampled_from(["pairs", "flat", "flat-names", "short", "no-activation",
                                     "nested-deeper", "dict", "tuple", "extra-key",
                                     "tensor-in-activation", "keys-as-pairs"]))
        if form == "pairs":                      # the parameter form before the layers
            params = [(layer["weight"], layer["bias"]) for layer in params if layer]
        elif form == "flat":
            params = leaves(params)
        elif form == "flat-names":
            params = to_flat(params)
        elif form == "short":
            params = params[:1]
        elif form == "no-activation":
            params = [layer for layer in params if layer]
        elif form == "nested-deeper":
            params = [[layer] for layer in params]
        elif form == "dict":
            params = dict(enumerate(params))
        elif form == "tuple":                    # a tuple of the same dicts is a tree too
            params = tuple(params)
        elif form == "extra-key":
            params[0]["running_mean"] = params[0]["bias"]
        elif form == "tensor-in-activation":
            params[1] = {"weight": params[0]["weight"]}
        else:
            params = [list(layer.items()) for layer in params]
    x = draw(array_for((draw(st.integers(1, 4)), 2), bad == "x"))
    return spec, params, x, draw(backend_choice())


@RUNS
@given(case=predict_case())
def test_fuzz_predict_arrays(case):
    spec, params, x, backend = case
    note(shapes_of({"x": x, **{f"p{i}": p for i, p in enumerate(params)}}))
    out = outcome(f"predict_arrays {backend}", lambda: predict(spec, params, x, backend),
                  RUN_SECONDS[backend])
    if out is not None:
        assert type(out) is np.ndarray
        assert out.shape == (np.shape(x)[0], 2) and out.dtype == np.dtype(spec.dtype)
    if np.ndim(x) == 2 and np.shape(x)[1] == 2:
        metrics = outcome(f"evaluate_params {backend}", lambda: evaluate(
            spec, params, Dataset(np.zeros((1, 2)), np.zeros((1, 2)), x,
                                  np.zeros((np.shape(x)[0], 2))), backend),
            RUN_SECONDS[backend])
        assert metrics is None or set(metrics) == {"test_loss"}


@st.composite
def elementwise_case(draw):
    which = draw(st.sampled_from(["loss", "activation"]))
    backend = draw(backend_choice())
    if which == "activation":
        name = draw(st.sampled_from(ACTIVATION_NAMES + ["swish", ""]))
        params = {}
        if name in ACTIVATIONS and ACTIVATIONS[name].defaults and draw(st.booleans()):
            params = {next(iter(ACTIVATIONS[name].defaults)): draw(st.one_of(EDGE, HOSTILE))}
        x = draw(array_for(draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                 max_side=4)), draw(st.booleans())))
        return which, name, x, None, params, backend
    name = draw(st.sampled_from(sorted(LOSSES)))
    n, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    bad = draw(st.sampled_from(["none", "p", "y", "params"]))
    p = draw(array_for((n, k), bad == "p"))
    if name == "cross_entropy":
        y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-1 if bad == "y" else 0,
                                                                 k if bad == "y" else k - 1)))
        if bad == "y" and draw(st.booleans()):
            y = draw(array_for((n,), True, np.int64))
    elif name == "bce_with_logits" and bad != "y":
        y = draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0, 1)))
    else:
        y = draw(array_for((n, k), bad == "y"))
    if bad != "params":
        params = {"delta": draw(EDGE_OR_PLAUSIBLE)} if name == "huber" else {}
    else:
        params = {draw(st.sampled_from(["delta", "delta", "beta"])): draw(st.one_of(EDGE,
                                                                                    HOSTILE))}
    return which, name, p, y, params, backend


@RUNS
@given(case=elementwise_case())
def test_fuzz_elementwise_arrays(case):
    which, name, a, y, params, backend = case
    note(shapes_of({"a": a, "y": y}))
    if which == "activation":
        out = outcome(f"activation_with_grad {backend}",
                      lambda: activation_with_grad(name, a, backend, **params),
                      RUN_SECONDS[backend])
        if out is not None:
            f, df = out
            assert f.shape == df.shape == a.shape and f.dtype == df.dtype == a.dtype
            # finite wherever the true values are (selu(3e38) and leaky_relu with slope
            # 1e30 at -1e30 are not, in float32)
            if np.abs(a).max(initial=0) <= 1e3 and all(abs(v) <= 1e3 for v in params.values()):
                assert np.isfinite(f).all() and np.isfinite(df).all(), (f, df)
    else:
        out = outcome(f"loss_with_grad {backend}",
                      lambda: loss_with_grad(name, a, y, backend, **params),
                      RUN_SECONDS[backend])
        if out is not None:
            value, grad = out
            assert grad.shape == a.shape and grad.dtype == a.dtype
