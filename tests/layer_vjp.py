"""One layer alone, with parameters of our choosing (not only the init rule's):
every backend's forward pass and its gradients (dL/dx and dL/dparameters for
L = sum(y * d_y)) against the layer kind's ``torch.nn`` oracle with autograd.

``LayerContract`` checks layers inside networks with their initial parameters;
a LayerNorm's initial weight is all ones and its bias all zeros, which would hide
a backward pass that forgets to multiply by the weight. This helper takes any
parameters, in float64 or float32.
"""
from __future__ import annotations

import numpy as np
from conftest import require
from layer_contract import torch_oracle

from nnparity.shared import POLICY
from nnparity.shared.core.tolerance import tensorwise_difference


def random_params(layer, input_shape, dtype, rng):
    """The layer's parameters, drawn N(0, 1) (the weight around 1), in ``dtype``."""
    shapes = layer.param_shapes(input_shape)
    return {name: ((1.0 if name == "weight" else 0.0) + rng.standard_normal(shape)).astype(dtype)
            for name, shape in shapes.items()}


def one_layer(layer, input_shape, dtype, scale=1.0, seed=0):
    """(params, x, d_y) for ``layer`` on 4 samples of ``input_shape``: random
    parameters, x ~ N(0, scale²), d_y ~ N(0, 1), all in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((4, *input_shape))).astype(dtype)
    d_y = rng.standard_normal(x.shape).astype(dtype)
    return random_params(layer, input_shape, dtype, rng), x, d_y


def torch_results(layer, params, x, d_y):
    """(y, {"x": dL/dx, name: dL/dname}) from the ``torch.nn`` oracle, autograd."""
    torch = require("torch")
    module = torch_oracle(layer.kind)(layer, x.shape[1:]).to(getattr(torch, x.dtype.name))
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = module(xt)
    (y * torch.from_numpy(d_y)).sum().backward()
    grads = {"x": xt.grad.numpy()}
    grads.update({name: p.grad.numpy() for name, p in module.named_parameters()})
    return y.detach().numpy(), grads


def numpy_results(layer, params, x, d_y):
    from nnparity.backends.numpy.layers import LAYERS
    module = LAYERS[layer.kind]
    y, cache = module.forward(layer, params, {}, x, True)
    grads = {name: np.empty_like(value) for name, value in params.items()}
    d_x = module.backward(layer, params, cache, d_y, grads, need_input_grad=True)
    return y, {"x": d_x, **grads}


def torch_backend_results(layer, params, x, d_y):
    torch = require("torch")
    from nnparity.backends.torch.layers import LAYERS
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in params.items()}
    xt = torch.from_numpy(x).requires_grad_(True)
    y = LAYERS[layer.kind].forward(layer, tensors, {}, xt, True)
    (y * torch.from_numpy(d_y)).sum().backward()
    return y.detach().numpy(), {"x": xt.grad.numpy(),
                                **{k: t.grad.numpy() for k, t in tensors.items()}}


def jax_results(layer, params, x, d_y):
    jax = require("jax")
    from nnparity.backends.jax.layers import LAYERS
    with jax.enable_x64(True):
        def f(x, params):
            return LAYERS[layer.kind].forward(layer, params, {}, x, True)[0]
        y, vjp = jax.vjp(f, jax.numpy.asarray(x),
                         {k: jax.numpy.asarray(v) for k, v in params.items()})
        d_x, d_params = vjp(jax.numpy.asarray(d_y))
        return np.asarray(y), {"x": np.asarray(d_x),
                               **{k: np.asarray(v) for k, v in d_params.items()}}


RESULTS = {"numpy": numpy_results, "torch": torch_backend_results, "jax": jax_results}


def backend_against_torch(backend, layer, params, x, d_y):
    """The ``Difference`` (normwise, by the tolerance policy of x's dtype) of
    ``backend``'s y, dL/dx and dL/dparameters against the oracle's."""
    require(backend)
    y, grads = RESULTS[backend](layer, params, x, d_y)
    y_ref, grads_ref = torch_results(layer, params, x, d_y)
    actual = {"y": y, **{f"d_{k}": v for k, v in grads.items()}}
    expected = {"y": y_ref, **{f"d_{k}": v for k, v in grads_ref.items()}}
    assert sorted(actual) == sorted(expected), (sorted(actual), sorted(expected))
    assert all(a.dtype == x.dtype for a in actual.values()), backend
    return tensorwise_difference(actual, {k: expected[k] for k in actual},
                                 POLICY[x.dtype.name])
