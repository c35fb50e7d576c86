"""The network specification: everything that defines one training run."""
from __future__ import annotations

import json
from functools import cached_property
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .activations import ACTIVATIONS, Activation, check_activation_params, resolve
from .losses import LOSSES, check_loss_params
from .optimizers import OPTIMIZERS, SGD, Optimizer, optimizer_from_dict
from .validation import FLOAT_DTYPES, check_bool, check_choice, check_int, fail

INITS = ("uniform_fan_in", "zeros", "xavier_uniform", "he_normal")


@dataclass(frozen=True)
class NetworkSpec:
    """A fully connected network and how to train it.

    Layer l maps (batch, sizes[l]) to (batch, sizes[l+1]) as ``x @ W.T + b``
    with W of shape (sizes[l+1], sizes[l]). Hidden layers apply ``activation``;
    the output layer is linear.

    Fields (defaults are the notebook's values):
        sizes: layer widths, input first; at least 2 entries, each >= 1.
        activation: one name for every hidden layer, or a tuple with one name
            per hidden layer (``len(sizes) - 2`` of them); see
            ``nnparity.shared.activations``.
        activation_params: parameters of parametric activations by activation
            name, e.g. ``{"leaky_relu": {"negative_slope": 0.1}}``; unset ones
            keep their defaults. Only activations the spec uses may appear.
        init: parameter initialisation rule, see ``nnparity.shared.init``.
        loss: training loss, see ``nnparity.shared.losses``.
        loss_params: the loss's parameters, e.g. ``{"delta": 2.0}`` for huber.
        optimizer: an optimizer dataclass such as ``SGD(lr=1e-5)`` or ``Adam()``.
        batch_size: rows per minibatch; the last batch of an epoch may be smaller.
        epochs: passes over the training data; 0 returns the initial parameters.
        seed: seeds initialisation and shuffling (0 <= seed < 2**32).
        dtype: "float64" or "float32"; parameters and data use it.
        shuffle: draw a new permutation of the training rows every epoch.
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
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            fail("sizes", sizes, "a sequence of at least 2 integers >= 1", TypeError)
        sizes = tuple(check_int(f"sizes[{i}]", s, 1) for i, s in enumerate(sizes))
        if len(sizes) < 2:
            fail("sizes", sizes, "at least 2 layer widths (input and output)")
        object.__setattr__(self, "sizes", sizes)

        n_hidden = len(sizes) - 2
        activation = self.activation
        if isinstance(activation, str):
            check_choice("activation", activation, ACTIVATIONS)
        elif isinstance(activation, (tuple, list)):
            activation = tuple(check_choice(f"activation[{i}]", a, ACTIVATIONS)
                               for i, a in enumerate(activation))
            if len(activation) != n_hidden:
                fail("activation", activation,
                     f"one name, or a tuple of {n_hidden} names (one per hidden layer)")
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
        object.__setattr__(self, "batch_size", check_int("batch_size", self.batch_size, 1))
        object.__setattr__(self, "epochs", check_int("epochs", self.epochs, 0))
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0))
        if self.seed >= 2**32:
            fail("seed", self.seed, "an integer in [0, 2**32)")
        check_choice("dtype", self.dtype, FLOAT_DTYPES)
        object.__setattr__(self, "shuffle", check_bool("shuffle", self.shuffle))

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
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            fail("spec JSON", text, f"valid JSON ({exc})")
        except RecursionError:
            fail("spec JSON", text, "a spec object, not JSON nested too deeply to parse")
        return cls.from_dict(d)


def notebook_spec() -> NetworkSpec:
    """The seed notebook's network: 2-4-1 ReLU, SGD(lr=1e-5), batch 2, 1000 epochs."""
    return NetworkSpec(sizes=(2, 4, 1), activation="relu", init="uniform_fan_in", loss="mse",
                       optimizer=SGD(lr=1e-5), batch_size=2, epochs=1000, seed=99,
                       dtype="float64", shuffle=False)
