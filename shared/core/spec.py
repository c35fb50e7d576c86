"""The network specification: everything that defines one training run."""
from __future__ import annotations

import json
from functools import cached_property
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nnparity.shared.core.activations import ACTIVATIONS, Activation, check_activation_params, resolve
from nnparity.shared.core.losses import LOSSES, check_loss_params
from nnparity.shared.core.optimizers import OPTIMIZERS, SGD, Optimizer, optimizer_from_dict
from nnparity.shared.core.validation import (FLOAT_DTYPES, parse_json, InputValueError, check_bool, check_choice,
                         check_count, check_in_dtype, fail)

INITS = ("uniform_fan_in", "zeros", "xavier_uniform", "he_normal")

# Bounds no real run reaches; they keep every count a small int (hashable, JSON,
# an int64 in a checkpoint) and refuse absurd specs before anything is allocated.
# Whether a run within them fits in memory is checked by ``train``/``predict``.
#: most entries in ``sizes`` (layers + 1)
MAX_LAYERS = 1024
#: widest layer
MAX_WIDTH = 2**24
#: most parameters (weights and biases) in a network: 32 GiB in float64
MAX_PARAMETERS = 2**32 - 1
#: largest epochs, batch_size and seed (the seed's bound is np.random.RandomState's)
MAX_COUNT = 2**32 - 1


@dataclass(frozen=True)
class NetworkSpec:
    """A fully connected network and how to train it.

    Layer l maps (batch, sizes[l]) to (batch, sizes[l+1]) as ``x @ W.T + b``
    with W of shape (sizes[l+1], sizes[l]). Hidden layers apply ``activation``;
    the output layer is linear.

    Fields (defaults are the notebook's values):
        sizes: layer widths, input first; 2 to ``MAX_LAYERS`` entries, each 1 ..
            ``MAX_WIDTH``, at most ``MAX_PARAMETERS`` weights and biases in all.
        activation: one name for every hidden layer, or a tuple with one name
            per hidden layer (``len(sizes) - 2`` of them); see
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

    Every float parameter (activation and loss parameters, the optimizer's
    hyperparameters) is used in ``dtype``, so it must be a number there: rounded
    to ``dtype``, finite, 0 or normal (XLA flushes subnormals to 0), and still
    allowed (a beta of 1 - 1e-10 rounds to 1 in float32).
    """

    sizes: tuple[int, ...]
    activation: str | tuple[str, ...] = "relu"
    activation_params: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    init: str = "uniform_fan_in"
    loss: str = "mse"
    loss_params: Mapping[str, float] = field(default_factory=dict)
    optimizer: Optimizer = SGD(lr=1e-5)
    batch_size: int = 2
    epochs: int = 1000
    seed: int = 99
    dtype: str = "float64"
    shuffle: bool = False

    def __post_init__(self) -> None:
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
        activation = self.activation
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

        if not isinstance(self.activation_params, Mapping):
            fail("activation_params", self.activation_params,
                 "a mapping {activation name: {parameter: value}}", TypeError)
        used = set(activation if isinstance(activation, tuple) else [activation] * n_hidden)
        checked = {}
        for name, params in self.activation_params.items():
            if name not in used:
                fail("activation_params", name,
                     f"names of activations this spec uses: {sorted(used) or 'none'}")
            checked[name] = check_activation_params(name, params,
                                                    f"activation_params[{name!r}]")
        object.__setattr__(self, "activation_params", checked)

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
        for name, params in self.activation_params.items():
            check_activation_in_dtype(name, params, self.dtype, f"activation_params[{name!r}]")
        check_loss_in_dtype(self.loss, self.loss_params, self.dtype)
        check_optimizer_in_dtype(self.optimizer, self.dtype)

    def __hash__(self) -> int:
        return hash(self.to_json())

    @cached_property
    def hidden_activations(self) -> tuple[Activation, ...]:
        """Each hidden layer's activation with its parameters, ``len(sizes) - 2`` of them."""
        names = self.activation
        if isinstance(names, str):
            names = (names,) * (len(self.sizes) - 2)
        return tuple(resolve(name, self.activation_params.get(name)) for name in names)

    @cached_property
    def loss_kwargs(self) -> dict[str, float]:
        """The loss's parameters, defaults filled in."""
        return {**LOSSES[self.loss].defaults, **self.loss_params}

    @property
    def param_shapes(self) -> list[tuple[tuple[int, int], tuple[int]]]:
        """[(W shape (out, in), b shape (out,)), ...] layer by layer."""
        return [((o, i), (o,)) for i, o in zip(self.sizes[:-1], self.sizes[1:], strict=True)]

    def replace(self, **changes: Any) -> "NetworkSpec":
        """A copy with some fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(changes) - set(values)
        if unknown:
            fail("replace", sorted(unknown), f"field names of NetworkSpec: {', '.join(values)}",
                 TypeError)
        return NetworkSpec(**{**values, **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict; ``NetworkSpec.from_dict`` inverts it."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["sizes"] = list(self.sizes)
        if not isinstance(self.activation, str):
            d["activation"] = list(self.activation)
        d["activation_params"] = {k: dict(v) for k, v in self.activation_params.items()}
        d["loss_params"] = dict(self.loss_params)
        d["optimizer"] = self.optimizer.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetworkSpec":
        """Build a spec from ``to_dict()`` output (e.g. parsed JSON).

        Unknown keys are rejected; missing keys take their defaults, except ``sizes``.
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
        if "sizes" not in d:
            fail("spec", dict(d), "a 'sizes' entry")
        kwargs = dict(d)
        if "optimizer" in kwargs:
            kwargs["optimizer"] = optimizer_from_dict(kwargs["optimizer"])
        if isinstance(kwargs.get("activation"), list):
            kwargs["activation"] = tuple(kwargs["activation"])
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NetworkSpec":
        if not isinstance(text, str):
            fail("spec JSON", text, "a str", TypeError)
        d = parse_json("spec JSON", text, "valid JSON")
        return cls.from_dict(d)


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
        _check_rounded(f"{label}[{key!r}]", value, dtype,
                       lambda r, key=key: check_activation_params(name, {**params, key: r}))


def check_loss_in_dtype(loss: str, params: Mapping[str, float], dtype: Any) -> None:
    """The loss's (checked) ``params`` are numbers in ``dtype``."""
    dtype = np.dtype(dtype).name
    for key, value in params.items():
        _check_rounded(f"loss_params[{key!r}]", value, dtype,
                       lambda r, key=key: check_loss_params(loss, {**params, key: r}))


def check_optimizer_in_dtype(opt: Optimizer, dtype: Any) -> None:
    """Every hyperparameter of ``opt`` is a number in ``dtype``."""
    dtype = np.dtype(dtype).name
    for f in fields(opt):
        value = getattr(opt, f.name)
        if not isinstance(value, bool):
            _check_rounded(f"{type(opt).__name__}.{f.name}", value, dtype,
                           lambda r, name=f.name: replace(opt, **{name: r}))


def notebook_spec() -> NetworkSpec:
    """The seed notebook's network: 2-4-1 ReLU, SGD(lr=1e-5), batch 2, 1000 epochs."""
    return NetworkSpec(sizes=(2, 4, 1), activation="relu", init="uniform_fan_in", loss="mse",
                       optimizer=SGD(lr=1e-5), batch_size=2, epochs=1000, seed=99,
                       dtype="float64", shuffle=False)
