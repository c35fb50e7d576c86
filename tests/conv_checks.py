"""Checks shared by tests/test_layer_conv2d.py and test_layer_conv1d.py: one
convolution layer alone, in every backend, against torch with copied weights.

The oracle is ``torch.nn.Conv1d``/``Conv2d`` (``torch_module``) when torch can
express the padding; explicit asymmetric pairs have no torch argument, so their
oracle is ``F.pad`` then the same module with padding 0.
"""
from __future__ import annotations

import numpy as np
from conftest import require
from layer_vjp import RESULTS

from nnparity.backends.numpy.layers import LAYERS as NUMPY_LAYERS
from nnparity.shared import POLICY
from nnparity.shared.core.tolerance import tensorwise_difference


def torch_module(layer, input_shape):
    """``torch.nn.Conv{1,2}d`` with the layer's arguments (in_channels from the input)."""
    import torch
    cls = torch.nn.Conv2d if layer.spatial == 2 else torch.nn.Conv1d
    return cls(input_shape[0], layer.out_channels, layer.kernel_size, stride=layer.stride,
               padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
               bias=layer.bias)


def torch_expressible(layer) -> bool:
    return layer.padding == "same" or all(b == a for b, a in layer.pads)


def torch_oracle(layer, input_shape, params, dtype):
    """A function x -> y in torch: the module loaded with ``params`` (after ``F.pad``
    for explicit asymmetric pairs)."""
    torch = require("torch")
    F = torch.nn.functional
    if torch_expressible(layer):
        module = torch_module(layer, input_shape)
        pad = None
    else:
        module = torch_module(type(layer)(layer.out_channels, layer.kernel_size,
                                          stride=layer.stride, padding=0,
                                          dilation=layer.dilation, groups=layer.groups,
                                          bias=layer.bias), input_shape)
        pad = [v for pair in reversed(layer.pads) for v in pair]     # last axis first
    module = module.to(getattr(torch, dtype))
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    return (lambda x: module(F.pad(x, pad))) if pad else module, module


def random_case(layer, input_shape, dtype, batch=3, seed=0):
    """(params, x, d_y) drawn with the layer's shapes."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype)
              for k, s in layer.param_shapes(input_shape).items()}
    x = rng.standard_normal((batch, *input_shape)).astype(dtype)
    d_y = rng.standard_normal((batch, *layer.output_shape(input_shape))).astype(dtype)
    return params, x, d_y


def backend_layer(backend, layer, params, x, d_y):
    """(y, dL/dx, {name: dL/dparameter}) of the layer alone in ``backend``
    (``layer_vjp.RESULTS``: the NumPy backward, torch's and JAX's autograd)."""
    require(backend)
    y, grads = RESULTS[backend](layer, params, x, d_y)
    d_x = grads.pop("x")
    return y, d_x, grads


def numpy_layer(layer, params, x, d_y):
    """The NumPy backend's forward and hand-written backward: (y, dL/dx, grads)."""
    return backend_layer("numpy", layer, params, x, d_y)


def jax_backend_layer(layer, params, x, d_y):
    return backend_layer("jax", layer, params, x, d_y)


def expected_from_torch(layer, input_shape, params, x, d_y, dtype):
    torch = require("torch")
    oracle, module = torch_oracle(layer, input_shape, params, dtype)
    xt = torch.tensor(x, requires_grad=True)
    y = oracle(xt)
    y.backward(torch.from_numpy(d_y))
    return (y.detach().numpy(), xt.grad.numpy(),
            {k: v.grad.numpy() for k, v in module.named_parameters()})


def check_against_torch(layer, input_shape, dtype, backend):
    """Output, input gradient and parameter gradients of ``backend`` against torch."""
    params, x, d_y = random_case(layer, input_shape, dtype)
    y, d_x, grads = backend_layer(backend, layer, params, x, d_y)
    e_y, e_dx, e_grads = expected_from_torch(layer, input_shape, params, x, d_y, dtype)
    assert y.dtype == np.dtype(dtype) and d_x.dtype == np.dtype(dtype), (y.dtype, d_x.dtype)
    assert sorted(grads) == sorted(e_grads) == sorted(params)
    diff = tensorwise_difference({"y": y, "d_x": d_x, **{k: grads[k] for k in params}},
                                 {"y": e_y, "d_x": e_dx, **{k: e_grads[k] for k in params}},
                                 POLICY[dtype])
    assert diff.ok, diff


def input_and_param_finite_differences(layer, input_shape, seed=0) -> float:
    """Norm-relative error of the NumPy backward (dL/dx and every parameter's) against
    central differences of L = sum(y * d_y), float64."""
    params, x, d_y = random_case(layer, input_shape, "float64", batch=2, seed=seed)
    _, d_x, grads = numpy_layer(layer, params, x, d_y)
    module = NUMPY_LAYERS[layer.kind]

    def loss():
        return float(np.sum(module.forward(layer, params, {}, x, True)[0] * d_y))

    actual, expected = [], []
    for value, grad in [(x, d_x), *((params[k], grads[k]) for k in params)]:
        numeric = np.empty_like(value)
        for index in np.ndindex(value.shape):
            saved = value[index]
            value[index] = saved + 1e-6
            up = loss()
            value[index] = saved - 1e-6
            down = loss()
            value[index] = saved
            numeric[index] = (up - down) / 2e-6
        actual.append(grad.ravel())
        expected.append(numeric.ravel())
    a, e = np.concatenate(actual), np.concatenate(expected)
    return float(np.linalg.norm(a - e) / np.linalg.norm(e))
