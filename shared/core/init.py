"""Initial parameters and model state, drawn once in NumPy so that every backend
starts equal.

One ``np.random.RandomState(spec.seed)`` serves the whole network, layer by
layer from the first; each layer kind says how each rule draws its parameters
(``Layer.init_params``, with the kind's own fan-in and fan-out). Dense and the
convolutions draw with ``layers.base.draw_weight_and_bias``, where the rules
(``uniform_fan_in``, ``zeros``, ``xavier_uniform``, ``he_normal``,
``torch_default``) are written once. For the notebook's ``uniform_fan_in`` this
is ``rand(4, 2) / 2`` then ``rand(1, 4) / 4``, every bias 0.
"""
from __future__ import annotations

from typing import Any

from nnparity.shared.core.spec import NetworkSpec
from nnparity.shared.core.tree import Params, check_tree
from nnparity.shared.core.validation import fail

import numpy as np


def init_params(spec: NetworkSpec) -> Params:
    """One dict of parameters per layer (``{"weight": (out, in), "bias": (out,)}`` for
    Dense, ``{}`` for a parameter-free layer), in ``spec.dtype``."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    rng = np.random.RandomState(spec.seed)
    return [{name: value.astype(spec.dtype)
             for name, value in layer.init_params(spec.init, rng, shape).items()}
            for layer, shape in zip(spec.layers, spec.layer_input_shapes, strict=False)]


def init_model_state(spec: NetworkSpec) -> Params:
    """The model state before training: one dict of buffers per layer, in
    ``spec.dtype`` (all empty for networks of Dense and Activation layers)."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    return [{name: value.astype(spec.dtype) for name, value in layer.init_buffers(shape).items()}
            for layer, shape in zip(spec.layers, spec.layer_input_shapes, strict=False)]


def check_params(spec: NetworkSpec, params: Any, name: str = "params") -> Params:
    """Check that ``params`` (or an optimizer buffer shaped like them, called
    ``name`` in errors) has the layers, names, shapes and dtype ``spec`` asks for;
    see ``tree.check_tree``."""
    return check_tree(params, spec.param_shapes, spec.dtype, name)


def check_model_state(spec: NetworkSpec, state: Any, name: str = "model_state") -> Params:
    """Check a model state against ``spec.buffer_shapes``; see ``tree.check_tree``."""
    return check_tree(state, spec.buffer_shapes, spec.dtype, name)


def check_network(spec: Any, params: Any, model_state: Any = None) -> tuple[Params, Params]:
    """(params, model_state) checked against ``spec``, which must be a NetworkSpec;
    ``model_state`` None is the spec's initial one. What ``predict`` and every export
    (``nnparity.backends.interop``) take."""
    if not isinstance(spec, NetworkSpec):
        fail("spec", spec, "a NetworkSpec", TypeError)
    checked = check_params(spec, params)
    state = (init_model_state(spec) if model_state is None
             else check_model_state(spec, model_state))
    return checked, state
