"""Optimizer specifications: hyperparameters only, no arithmetic.

Each optimizer is a frozen dataclass with ``torch.optim``'s names and defaults,
validated on construction. The update rule of each is written here once, as
equations; every backend implements exactly these equations in its own idiom.

SGD (plain)::

    p <- p - lr * g

where g is the gradient of the minibatch loss with respect to p.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .validation import check_float, fail


@dataclass(frozen=True)
class SGD:
    """Plain stochastic gradient descent, ``p <- p - lr * g``.

    Args:
        lr: learning rate, finite and > 0.
    """

    lr: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_float("SGD.lr", self.lr, low=0.0, low_open=True))

    name = "sgd"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


OPTIMIZERS = {cls.name: cls for cls in (SGD,)}

Optimizer = SGD


def optimizer_from_dict(d: Mapping[str, Any]) -> Optimizer:
    """Inverse of ``optimizer.to_dict()``."""
    if not isinstance(d, Mapping) or "name" not in d:
        fail("optimizer", d, "a mapping with a 'name' key, e.g. {'name': 'sgd', 'lr': 1e-5}",
             TypeError)
    name = d["name"]
    if name not in OPTIMIZERS:
        fail("optimizer.name", name, f"one of {', '.join(map(repr, OPTIMIZERS))}")
    kwargs = {k: v for k, v in d.items() if k != "name"}
    try:
        return OPTIMIZERS[name](**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "missing" in str(exc):
            fail("optimizer", dict(d), f"the arguments of {OPTIMIZERS[name].__name__}: {exc}",
                 TypeError)
        raise
