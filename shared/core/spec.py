"""The network specification: everything that defines one training run."""
from __future__ import annotations

import json
from functools import cached_property
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nnparity.shared.core.activations import ACTIVATIONS, check_activation_params
from nnparity.shared.core.layers import (LAYERS, Activation, Dense, Layer, Shape,
                                         layer_from_dict)
from nnparity.shared.core.losses import LOSSES, check_loss_params
from nnparity.shared.core.optimizers import OPTIMIZERS, SGD, Optimizer, optimizer_from_dict
from nnparity.shared.core.validation import (FLOAT_DTYPES, parse_json, InputValueError, check_bool,
                                             check_choice, check_count, check_in_dtype, fail)

INITS = ("uniform_fan_in", "zeros", "xavier_uniform", "he_normal", "torch_default")

# Bounds no real run reaches; they keep every count a small int (hashable, JSON,
# an int64 in a checkpoint) and refuse absurd specs before anything is allocated.
# Whether a run within them fits in memory is checked by ``train``/``predict``.
#: most entries in ``sizes`` (layers + 1), and most layers
MAX_LAYERS = 1024
#: widest layer
MAX_WIDTH = 2**24
#: most parameters (weights and biases) in a network: 32 GiB in float64
MAX_PARAMETERS = 2**32 - 1
#: largest epochs, batch_size and seed (the seed's bound is np.random.RandomState's)
MAX_COUNT = 2**32 - 1
#: the MLP shorthand's fields, and the general form's
SHORTHAND = ("sizes", "activation", "activation_params")
GENERAL = ("input_shape", "layers")
#: the default of ``input_shape`` and ``layers``: None, "not given, built from
#: ``sizes``". ``__post_init__`` always replaces it, so a built spec's fields have
#: their declared types (typed ``Any`` only so that it can be their default).
FROM_SIZES: Any = None


@dataclass(frozen=True)
class NetworkSpec:
    """A network, a tuple of layers, and how to train it.

    The network is ``layers`` applied in order to inputs of shape
    (batch, *input_shape); each layer's input shape comes from ``input_shape``
    and the layers before it (see ``nnparity.shared.core.layers``)::

        NetworkSpec(input_shape=(2,), layers=(Dense(4), Activation("relu"), Dense(1)))

    The MLP shorthand builds exactly that tuple: ``sizes`` are the widths, input
    first, and ``activation`` follows every hidden Dense layer::

        NetworkSpec(sizes=(2, 4, 1), activation="relu")

    Either form gives the same spec: a spec built from layers that form such an
    MLP has ``sizes``, ``activation`` and ``activation_params`` filled in (and
    serialises in the shorthand); otherwise they are None.

    Fields (defaults are the notebook's values):
        sizes: layer widths, input first; 2 to ``MAX_LAYERS`` entries, each 1 ..
            ``MAX_WIDTH``, at most ``MAX_PARAMETERS`` weights and biases in all.
        activation: one name for every hidden layer, or a tuple with one name
            per hidden layer (``len(sizes) - 2`` of them); default "relu"; see
            ``nnparity.shared.core.activations``.
        activation_params: parameters of parametric activations by activation
            name, e.g. ``{"leaky_relu": {"negative_slope": 0.1}}``; unset ones
            keep their defaults. Only activations the spec uses may appear.
        init: parameter initialisation rule, see ``nnparity.shared.core.init``.
        loss: training loss, see ``nnparity.shared.core.losses``.
        loss_params: the loss's parameters, e.g. ``{"delta": 2.0}`` for huber.
        optimizer: an optimizer dataclass such as ``SGD(lr=1e-5)`` or ``Adam()``.
        batch_size: rows per minibatch; the last batch of an epoch may be smaller
            (1 <= batch_size < 2**32).
        epochs: passes over the training data; 0 returns the initial parameters
            (0 <= epochs < 2**32).
        seed: seeds initialisation and shuffling (0 <= seed < 2**32).
        dtype: "float64" or "float32"; parameters and data use it.
        shuffle: draw a new permutation of the training rows every epoch.
        input_shape: one input row's shape, without the batch axis.
        layers: the layer specs, 1 to ``MAX_LAYERS`` of them, at least one with
            parameters (such as Dense). The output must be one axis, (k,), as the
            losses take (batch, k).

    Every float parameter (activation and loss parameters, the optimizer's
    hyperparameters) is used in ``dtype``, so it must be a number there: rounded
    to ``dtype``, finite, 0 or normal (XLA flushes subnormals to 0), and still
    allowed (a beta of 1 - 1e-10 rounds to 1 in float32).
    """

    sizes: tuple[int, ...] | None = None
    activation: str | tuple[str, ...] | None = None
    activation_params: Mapping[str, Mapping[str, float]] | None = None
    init: str = "uniform_fan_in"
    loss: str = "mse"
    loss_params: Mapping[str, float] = field(default_factory=dict)
    optimizer: Optimizer = SGD(lr=1e-5)
    batch_size: int = 2
    epochs: int = 1000
    seed: int = 99
    dtype: str = "float64"
    shuffle: bool = False
    input_shape: Shape = FROM_SIZES
    layers: tuple[Layer, ...] = FROM_SIZES

    def __post_init__(self) -> None:
        if self.sizes is not None:
            input_shape, layers = self._from_shorthand()
            if self.layers is not None or self.input_shape is not None:
                same_input = _same(self.input_shape, input_shape)
                same_layers = _same(self.layers, layers)
                if (self.input_shape is not None and not same_input
                        and (self.layers is None or same_layers)):
                    fail("input_shape", self.input_shape, f"{input_shape}, the input shape "
                         f"sizes={self.sizes} builds, or none: give either the shorthand "
                         "(sizes, activation) or input_shape and layers")
                if not (same_input and same_layers):
                    fail("layers", self.layers, f"the layers sizes={self.sizes} builds "
                         f"({layers}) with input_shape={input_shape}, or no layers: give "
                         "either the shorthand (sizes, activation) or input_shape and layers")
        elif self.layers is None:
            fail("spec", "no sizes and no layers",
                 "sizes (the MLP shorthand) or input_shape and layers", TypeError)
        else:
            for name in ("activation", "activation_params"):
                if getattr(self, name) is not None:
                    fail(name, getattr(self, name), "None with layers: activations are "
                         "Activation layers (activation belongs to the sizes shorthand)")
            input_shape, layers = self._check_layers()
            shorthand = mlp_shorthand(input_shape, layers)
            if shorthand is not None:
                for name, value in zip(SHORTHAND, shorthand, strict=True):
                    object.__setattr__(self, name, value)
        object.__setattr__(self, "input_shape", input_shape)
        object.__setattr__(self, "layers", layers)

        check_choice("init", self.init, INITS)
        check_choice("loss", self.loss, LOSSES)
        object.__setattr__(self, "loss_params", check_loss_params(self.loss, self.loss_params))
        if not isinstance(self.optimizer, tuple(OPTIMIZERS.values())):
            fail("optimizer", self.optimizer,
                 f"an optimizer object ({', '.join(c.__name__ for c in OPTIMIZERS.values())})",
                 TypeError)
        for name, minimum in (("batch_size", 1), ("epochs", 0), ("seed", 0)):
            object.__setattr__(self, name, check_count(name, getattr(self, name), minimum,
                                                  MAX_COUNT, "2**32 - 1"))
        check_choice("dtype", self.dtype, FLOAT_DTYPES)
        object.__setattr__(self, "shuffle", check_bool("shuffle", self.shuffle))

        # every parameter is used in self.dtype: it has to be a number there
        if self.sizes is not None:                  # name them as the user wrote them
            for name, params in (self.activation_params or {}).items():
                check_activation_in_dtype(name, params, self.dtype,
                                          f"activation_params[{name!r}]")
        else:
            for label, layer in walk_layers(self.layers):
                if isinstance(layer, Activation):
                    check_activation_in_dtype(layer.name, dict(layer.params), self.dtype,
                                              f"{label}.params")
        check_loss_in_dtype(self.loss, self.loss_params, self.dtype)
        check_fields_in_dtype(self.optimizer, self.dtype, type(self.optimizer).__name__)
        for label, layer in walk_layers(self.layers):
            check_fields_in_dtype(layer, self.dtype, label)
        for layer, shape in zip(self.layers, self.layer_input_shapes, strict=False):
            layer.check_training_rows(self.batch_size, shape, "batch_size")

    def _from_shorthand(self) -> tuple[Shape, tuple[Layer, ...]]:
        """Check sizes, activation and activation_params; the layers they build."""
        sizes = self.sizes
        if (isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray))
                or (isinstance(sizes, np.ndarray) and sizes.ndim != 1)):
            fail("sizes", sizes, "a sequence of at least 2 integers >= 1", TypeError)
        if not 2 <= len(sizes) <= MAX_LAYERS:
            fail("sizes", f"{len(sizes)} layer widths" if len(sizes) > 10 else tuple(sizes),
                 f"at least 2 layer widths (input and output) and at most {MAX_LAYERS}")
        sizes = tuple(check_count(f"sizes[{i}]", s, 1, MAX_WIDTH, "2**24")
                      for i, s in enumerate(sizes))
        n_parameters = sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
        if n_parameters > MAX_PARAMETERS:
            fail("sizes", sizes, f"a network of at most {MAX_PARAMETERS} parameters "
                 f"(this one has {n_parameters})")
        object.__setattr__(self, "sizes", sizes)

        n_hidden = len(sizes) - 2
        activation = "relu" if self.activation is None else self.activation
        if isinstance(activation, str):
            check_choice("activation", activation, ACTIVATIONS)
        elif isinstance(activation, (tuple, list)):
            if len(activation) != n_hidden:
                fail("activation", activation,
                     f"one name, or a tuple of {n_hidden} names (one per hidden layer)")
            activation = tuple(check_choice(f"activation[{i}]", a, ACTIVATIONS)
                               for i, a in enumerate(activation))
        else:
            fail("activation", activation, "an activation name or a tuple of names", TypeError)
        object.__setattr__(self, "activation", activation)

        activation_params = {} if self.activation_params is None else self.activation_params
        if not isinstance(activation_params, Mapping):
            fail("activation_params", activation_params,
                 "a mapping {activation name: {parameter: value}}", TypeError)
        names = activation if isinstance(activation, tuple) else (activation,) * n_hidden
        checked = {}
        for name, params in activation_params.items():
            if name not in names:
                fail("activation_params", name,
                     f"names of activations this spec uses: {sorted(set(names)) or 'none'}")
            checked[name] = check_activation_params(name, params,
                                                    f"activation_params[{name!r}]")
        object.__setattr__(self, "activation_params", checked)

        layers: list[Layer] = []
        for width, name in zip(sizes[1:-1], names, strict=True):
            layers += [Dense(width), Activation(name, checked.get(name, {}))]
        layers.append(Dense(sizes[-1]))
        return (sizes[0],), tuple(layers)

    def _check_layers(self) -> tuple[Shape, tuple[Layer, ...]]:
        """Check input_shape and layers: every layer takes its input's shape, the
        output is (k,), the parameter count within bounds."""
        input_shape = self.input_shape
        if input_shape is None:
            fail("input_shape", None, "one input row's shape, e.g. (2,), with layers",
                 TypeError)
        if (isinstance(input_shape, (str, bytes))
                or not isinstance(input_shape, (Sequence, np.ndarray))
                or (isinstance(input_shape, np.ndarray) and input_shape.ndim != 1)
                or not 1 <= len(input_shape) <= 8):
            fail("input_shape", input_shape, "a tuple of 1 to 8 integers >= 1", TypeError)
        input_shape = tuple(check_count(f"input_shape[{i}]", s, 1, MAX_WIDTH, "2**24")
                            for i, s in enumerate(input_shape))
        layers = self.layers
        if isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, (list, tuple)):
            fail("layers", layers, "a tuple of layer specs such as Dense(4)", TypeError)
        if not 1 <= len(layers) <= MAX_LAYERS:
            fail("layers", f"{len(layers)} layers", f"1 to {MAX_LAYERS} layers")
        shape, n_parameters = input_shape, 0
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer) or getattr(type(layer), "kind", None) not in LAYERS:
                fail(f"layers[{index}]", layer, "a layer spec such as Dense(4) or "
                     f"Activation('relu') (kinds: {', '.join(LAYERS)})", TypeError)
            if layer.takes_tokens and index > 0:
                fail(f"layers[{index}]", layer, "a layer that takes the data's integer tokens "
                     "(an Embedding) only as layers[0]")
            layer.check_input(shape, f"layers[{index}] input shape")
            n_parameters += sum(int(np.prod(s)) for s in layer.param_shapes(shape).values())
            shape = layer.output_shape(shape)
        if n_parameters > MAX_PARAMETERS:
            fail("layers", f"{n_parameters} parameters", f"at most {MAX_PARAMETERS}")
        if n_parameters == 0:                     # nothing to train (and no gradient)
            fail("layers", f"{len(layers)} layers without parameters",
                 "at least one layer with parameters, such as Dense(k)")
        if len(shape) != 1 and self.loss != "cross_entropy":
            fail("layers", f"an output of shape {shape}",
                 f"an output of one axis, (k,), for loss {self.loss!r} (only cross_entropy "
                 "takes logits at every position, (*s, k), e.g. a sequence's (T, k))")
        return input_shape, tuple(layers)

    def __hash__(self) -> int:
        return hash(self.to_json())

    @cached_property
    def layer_input_shapes(self) -> tuple[Shape, ...]:
        """The shape each layer takes, then the output's: len(layers) + 1 of them."""
        shapes = [self.input_shape]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
        return tuple(shapes)

    @property
    def output_shape(self) -> Shape:
        """One output row's shape: (k,), or (*s, k) for cross_entropy's per-position
        logits."""
        return self.layer_input_shapes[-1]

    @property
    def takes_tokens(self) -> bool:
        """True when the input is integer tokens (the first layer is an Embedding)."""
        return self.layers[0].takes_tokens

    @property
    def n_outputs(self) -> int:
        """k: the output's last axis (outputs, or classes)."""
        return self.output_shape[-1]

    @cached_property
    def param_shapes(self) -> tuple[dict[str, Shape], ...]:
        """Per layer, {parameter name: shape} (``{}`` for a parameter-free layer)."""
        return tuple(layer.param_shapes(shape)
                     for layer, shape in zip(self.layers, self.layer_input_shapes, strict=False))

    @cached_property
    def buffer_shapes(self) -> tuple[dict[str, Shape], ...]:
        """Per layer, {model-state buffer name: shape} (all empty for Dense networks)."""
        return tuple(layer.buffer_shapes(shape)
                     for layer, shape in zip(self.layers, self.layer_input_shapes, strict=False))

    @property
    def n_parameters(self) -> int:
        return sum(int(np.prod(s)) for layer in self.param_shapes for s in layer.values())

    @cached_property
    def loss_kwargs(self) -> dict[str, float]:
        """The loss's parameters, defaults filled in."""
        return {**LOSSES[self.loss].defaults, **self.loss_params}

    def replace(self, **changes: Any) -> "NetworkSpec":
        """A copy with some fields changed (validated again). Changing a shorthand
        field (sizes, activation, activation_params) rebuilds the layers from the
        shorthand; changing input_shape or layers leaves the shorthand behind."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(changes) - set(values)
        if unknown:
            fail("replace", sorted(unknown), f"field names of NetworkSpec: {', '.join(values)}",
                 TypeError)
        if set(changes) & set(SHORTHAND):
            if self.sizes is None and "sizes" not in changes:
                name = sorted(set(changes) & set(SHORTHAND))[0]
                fail(name, changes[name], "a change of input_shape or layers: this network "
                     "is given as layers, not in the MLP shorthand (sizes)")
            for name in GENERAL:
                values[name] = None
        elif set(changes) & set(GENERAL):
            for name in SHORTHAND:
                values[name] = None
        return NetworkSpec(**{**values, **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict; ``NetworkSpec.from_dict`` inverts it. An MLP is
        written in the shorthand (sizes, activation, activation_params), any other
        network as input_shape and layers."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.sizes is not None:
            del d["input_shape"], d["layers"]
            d["sizes"] = list(self.sizes)
            if isinstance(self.activation, tuple):
                d["activation"] = list(self.activation)
            d["activation_params"] = {k: dict(v)
                                      for k, v in (self.activation_params or {}).items()}
        else:
            for name in SHORTHAND:
                del d[name]
            d["input_shape"] = list(self.input_shape)
            d["layers"] = [layer.to_dict() for layer in self.layers]
        d["loss_params"] = dict(self.loss_params)
        d["optimizer"] = self.optimizer.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetworkSpec":
        """Build a spec from ``to_dict()`` output (e.g. parsed JSON).

        Unknown keys are rejected; missing keys take their defaults, except
        ``sizes`` (or ``input_shape`` and ``layers``).
        """
        if not isinstance(d, Mapping):
            fail("spec", d, "a mapping of NetworkSpec fields", TypeError)
        _check_keys("spec", d)
        if isinstance(d.get("optimizer"), Mapping):
            _check_keys("optimizer", d["optimizer"])
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            fail("spec keys", unknown, f"only NetworkSpec fields: {', '.join(names)}")
        if "sizes" not in d and "layers" not in d:
            fail("spec", dict(d), "a 'sizes' entry (or 'input_shape' and 'layers')")
        kwargs = dict(d)
        if "optimizer" in kwargs:
            kwargs["optimizer"] = optimizer_from_dict(kwargs["optimizer"])
        if isinstance(kwargs.get("activation"), list):
            kwargs["activation"] = tuple(kwargs["activation"])
        if isinstance(kwargs.get("input_shape"), list):
            kwargs["input_shape"] = tuple(kwargs["input_shape"])
        if isinstance(kwargs.get("layers"), list):
            if len(kwargs["layers"]) > MAX_LAYERS:        # before building any of them
                fail("layers", f"{len(kwargs['layers'])} layers", f"1 to {MAX_LAYERS} layers")
            kwargs["layers"] = tuple(layer_from_dict(layer, f"layers[{i}]")
                                     for i, layer in enumerate(kwargs["layers"]))
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NetworkSpec":
        if not isinstance(text, str):
            fail("spec JSON", text, "a str", TypeError)
        d = parse_json("spec JSON", text, "valid JSON")
        return cls.from_dict(d)


def mlp_shorthand(input_shape: Shape, layers: tuple[Layer, ...]
                  ) -> tuple[Shape, str | tuple[str, ...], dict[str, dict[str, float]]] | None:
    """(sizes, activation, activation_params) when ``layers`` are what the shorthand
    builds (Dense, then Activation and Dense pairs, on a one-axis input, each
    activation name with one set of parameters), else None."""
    dense = [layer for layer in layers[0::2] if isinstance(layer, Dense)]
    hidden = [layer for layer in layers[1::2] if isinstance(layer, Activation)]
    if len(input_shape) != 1 or len(layers) % 2 != 1 or len(dense) + len(hidden) != len(layers):
        return None
    sizes = input_shape + tuple(layer.units for layer in dense)
    params: dict[str, tuple] = {}
    for layer in hidden:
        if params.setdefault(layer.name, layer.params) != layer.params:
            return None
    names = tuple(layer.name for layer in hidden)
    activation: str | tuple[str, ...] = (
        "relu" if not names else names[0] if len(set(names)) == 1 else names)
    return sizes, activation, {name: dict(p) for name, p in params.items() if p}


def _same(given: Any, built: tuple) -> bool:
    """``given`` (any value) is the tuple ``built``, item for item and type for type (so
    an array never meets ``==``, whose truth value is ambiguous)."""
    return (type(given) is tuple and len(given) == len(built)
            and all(type(a) is type(b) and a == b for a, b in zip(given, built, strict=True)))


def _check_keys(name: str, d: Mapping) -> None:
    """Every key of ``d`` is a str, as in parsed JSON (and names can be sorted)."""
    for key in d:
        if not isinstance(key, str):
            fail(f"{name} key", key, "a str (a spec mapping has JSON's keys)", TypeError)


def _check_rounded(label: str, value: Any, dtype: str,
                   revalidate: Callable[[Any], object]) -> None:
    """``value`` (a float, or a tuple of floats), rounded to ``dtype``, must be a number
    there (``check_in_dtype``) and still pass ``revalidate`` (0.99999999999 as a beta
    rounds to 1 in float32, which is not allowed)."""
    rounded: float | tuple[float, ...]
    if isinstance(value, tuple):
        rounded = tuple(check_in_dtype(f"{label}[{i}]", v, dtype) for i, v in enumerate(value))
    else:
        rounded = check_in_dtype(label, value, dtype)
    if rounded != value:
        try:
            revalidate(rounded)
        except InputValueError as exc:
            fail(label, value, f"a value that is still allowed in {dtype}, the dtype it is "
                 f"used in, where it rounds to {rounded!r}: {exc}")


def check_activation_in_dtype(name: str, params: Mapping[str, float], dtype: Any,
                              label: str = "activation_params") -> None:
    """Activation ``name``'s (checked) ``params`` are numbers in ``dtype``."""
    dtype = np.dtype(dtype).name
    for key, value in params.items():
        def revalidate(r: Any, key: str = key) -> object:
            return check_activation_params(name, {**params, key: r})
        _check_rounded(f"{label}[{key!r}]", value, dtype, revalidate)


def check_loss_in_dtype(loss: str, params: Mapping[str, float], dtype: Any) -> None:
    """The loss's (checked) ``params`` are numbers in ``dtype``."""
    dtype = np.dtype(dtype).name
    for key, value in params.items():
        def revalidate(r: Any, key: str = key) -> object:
            return check_loss_params(loss, {**params, key: r})
        _check_rounded(f"loss_params[{key!r}]", value, dtype, revalidate)


def walk_layers(layers: Sequence[Layer], label: str = "layers") -> list[tuple[str, Layer]]:
    """(label, layer) for every layer, those inside others (a Residual's) included:
    ``layers[2]``, ``layers[2].layers[0]``, ..."""
    out = []
    for index, layer in enumerate(layers):
        out.append((f"{label}[{index}]", layer))
        out.extend(walk_layers(layer.sublayers(), f"{label}[{index}].layers"))
    return out


def check_fields_in_dtype(value: Any, dtype: Any, label: str) -> None:
    """Every float field (or tuple of floats) of the dataclass ``value``, an optimizer or
    a layer spec named ``label`` in errors, is a number in ``dtype``."""
    dtype = np.dtype(dtype).name
    for f in fields(value):
        item = getattr(value, f.name)
        if isinstance(item, float) or (isinstance(item, tuple) and len(item) > 0
                                       and all(isinstance(v, float) for v in item)):
            def revalidate(r: Any, name: str = f.name) -> object:
                return replace(value, **{name: r})
            _check_rounded(f"{label}.{f.name}", item, dtype, revalidate)


def notebook_spec() -> NetworkSpec:
    """The seed notebook's network: 2-4-1 ReLU, SGD(lr=1e-5), batch 2, 1000 epochs."""
    return NetworkSpec(sizes=(2, 4, 1), activation="relu", init="uniform_fan_in", loss="mse",
                       optimizer=SGD(lr=1e-5), batch_size=2, epochs=1000, seed=99,
                       dtype="float64", shuffle=False)
