"""Optimizer specifications and their update rules, written once as equations.

Each optimizer is a frozen dataclass with ``torch.optim``'s argument names and
defaults, validated on construction. Every backend implements exactly the
equations below by hand, in its own idiom; ``torch.optim`` and ``optax`` are
only the tests' oracles.

Notation: p a parameter, g its minibatch gradient, t = 1, 2, ... the step
number, buffers start as zeros of p's shape unless stated otherwise.

SGD(lr, momentum=0, dampening=0, nesterov=False, weight_decay=0)::

    g <- g + weight_decay * p
    if momentum != 0:
        b <- g                                   at t = 1 (the buffer starts at g)
        b <- momentum * b + (1 - dampening) * g  at t > 1
        g <- g + momentum * b   if nesterov   else   b
    p <- p - lr * g

Adam(lr=1e-3, betas=(b1, b2)=(0.9, 0.999), eps=1e-8, weight_decay=0)::

    g <- g + weight_decay * p                    (L2 added to the gradient)
    m <- b1 * m + (1 - b1) * g
    v <- b2 * v + (1 - b2) * g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    eps sits outside the square root (as in torch and optax.adam).

AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)::

    p <- p * (1 - lr * weight_decay)             (decoupled decay, before the step)
    then Adam's m, v and p updates with weight_decay = 0.

RMSprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)::

    g <- g + weight_decay * p
    v <- alpha * v + (1 - alpha) * g^2
    if centered:  a <- alpha * a + (1 - alpha) * g;  d <- sqrt(v - a^2) + eps
    else:         d <- sqrt(v) + eps
    if momentum > 0:  b <- momentum * b + g / d;  p <- p - lr * b
    else:             p <- p - lr * g / d

    eps sits outside the square root; all buffers start at zero.

Optimizer state is data: ``OptimizerState(step, buffers)``, ``step`` the updates
done so far (t - 1 before step t) and ``buffers`` one tree per buffer name
(``state_buffers``), shaped like the parameters.
"""
from __future__ import annotations

from dataclasses import Field, dataclass, fields
from typing import Any, ClassVar, Mapping, NamedTuple

import numpy as np

from nnparity.shared.core.validation import check_bool, check_float, fail


def _check_betas(name: str, betas: Any) -> tuple[float, float]:
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        fail(name, betas, "a pair (beta1, beta2)", TypeError)
    beta1, beta2 = (check_float(f"{name}[{i}]", b, low=0.0, high=1.0, high_open=True)
                    for i, b in enumerate(betas))
    return beta1, beta2


class _Optimizer:
    """Common behaviour: JSON round trip and the split into numbers and structure."""

    name: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]   # every optimizer is a dataclass

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            d[f.name] = list(value) if isinstance(value, tuple) else value
        return d

    def hyperparameters(self) -> dict[str, float]:
        """The numeric arguments (betas split into beta1, beta2): what may change
        between runs without changing the computation's structure."""
        numbers = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                numbers.update({f"beta{i + 1}": v for i, v in enumerate(value)})
            elif not isinstance(value, bool):
                numbers[f.name] = value
        return numbers


@dataclass(frozen=True)
class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 decay."""

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    name: ClassVar[str] = "sgd"

    def __post_init__(self) -> None:
        _set(self, "lr", check_float("SGD.lr", self.lr, low=0.0, low_open=True))
        _set(self, "momentum", check_float("SGD.momentum", self.momentum, low=0.0))
        _set(self, "dampening", check_float("SGD.dampening", self.dampening, low=0.0, high=1.0))
        _set(self, "nesterov", check_bool("SGD.nesterov", self.nesterov))
        _set(self, "weight_decay", check_float("SGD.weight_decay", self.weight_decay, low=0.0))
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            fail("SGD.nesterov", True, "nesterov only with momentum > 0 and dampening = 0 "
                 f"(got momentum={self.momentum}, dampening={self.dampening})")


@dataclass(frozen=True)
class Adam(_Optimizer):
    """Adam with L2 weight decay added to the gradient (torch.optim.Adam)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    name: ClassVar[str] = "adam"

    def __post_init__(self) -> None:
        _check_adam_family(self, "Adam")


@dataclass(frozen=True)
class AdamW(_Optimizer):
    """Adam with decoupled weight decay, p <- p (1 - lr wd) (torch.optim.AdamW)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    name: ClassVar[str] = "adamw"

    def __post_init__(self) -> None:
        _check_adam_family(self, "AdamW")


@dataclass(frozen=True)
class RMSprop(_Optimizer):
    """RMSprop with optional momentum and centering (torch.optim.RMSprop)."""

    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    name: ClassVar[str] = "rmsprop"

    def __post_init__(self) -> None:
        _set(self, "lr", check_float("RMSprop.lr", self.lr, low=0.0, low_open=True))
        _set(self, "alpha", check_float("RMSprop.alpha", self.alpha, low=0.0, high=1.0))
        _set(self, "eps", check_float("RMSprop.eps", self.eps, low=0.0))
        _set(self, "weight_decay", check_float("RMSprop.weight_decay", self.weight_decay,
                                               low=0.0))
        _set(self, "momentum", check_float("RMSprop.momentum", self.momentum, low=0.0))
        _set(self, "centered", check_bool("RMSprop.centered", self.centered))


def _set(obj, field_name: str, value) -> None:
    object.__setattr__(obj, field_name, value)


def _check_adam_family(opt, label: str) -> None:
    _set(opt, "lr", check_float(f"{label}.lr", opt.lr, low=0.0, low_open=True))
    _set(opt, "betas", _check_betas(f"{label}.betas", opt.betas))
    _set(opt, "eps", check_float(f"{label}.eps", opt.eps, low=0.0))
    _set(opt, "weight_decay", check_float(f"{label}.weight_decay", opt.weight_decay, low=0.0))


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}

Optimizer = SGD | Adam | AdamW | RMSprop


def state_buffers(opt: Optimizer) -> tuple[str, ...]:
    """Names of the per-parameter buffers ``opt`` keeps (torch.optim's names)."""
    if isinstance(opt, SGD):
        return ("momentum_buffer",) if opt.momentum != 0 else ()
    if isinstance(opt, (Adam, AdamW)):
        return ("exp_avg", "exp_avg_sq")
    buffers = ["square_avg"]
    if opt.momentum > 0:
        buffers.append("momentum_buffer")
    if opt.centered:
        buffers.append("grad_avg")
    return tuple(buffers)


class OptimizerState(NamedTuple):
    """An optimizer's state: ``step``, the updates done so far, and ``buffers``,
    {torch.optim's buffer name: a tree shaped like the parameters}.

    A NamedTuple, as optax's states are: a JAX pytree as it is (``step`` then
    becomes an int64 array), and one type for every optimizer."""

    step: Any
    buffers: dict[str, Any]


def init_state(opt: Optimizer, params) -> OptimizerState:
    """The optimizer state before the first step, in NumPy: step 0 and every
    buffer of ``state_buffers(opt)`` zeros like ``params`` (a tree)."""
    return OptimizerState(0, {buffer: [{key: np.zeros_like(value) for key, value in layer.items()}
                                       for layer in params]
                              for buffer in state_buffers(opt)})


def optimizer_from_dict(d: Mapping[str, Any]) -> Optimizer:
    """Inverse of ``optimizer.to_dict()``."""
    if not isinstance(d, Mapping) or "name" not in d:
        fail("optimizer", d, "a mapping with a 'name' key, e.g. {'name': 'sgd', 'lr': 1e-5}",
             TypeError)
    name = d["name"]
    if not isinstance(name, str) or name not in OPTIMIZERS:
        fail("optimizer.name", name, f"one of {', '.join(map(repr, OPTIMIZERS))}")
    cls = OPTIMIZERS[name]
    allowed = [f.name for f in fields(cls)]
    kwargs = {k: v for k, v in d.items() if k != "name"}
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        fail(f"optimizer[{unknown[0]!r}]", kwargs[unknown[0]],
             f"arguments of {cls.__name__}: {', '.join(allowed)}")
    if "betas" in kwargs and isinstance(kwargs["betas"], list):
        kwargs["betas"] = tuple(kwargs["betas"])
    if "lr" not in kwargs and cls is SGD:
        fail("optimizer", dict(d), "an 'lr' entry for SGD")
    return cls(**kwargs)
