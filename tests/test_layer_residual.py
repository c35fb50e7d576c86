"""Residual, plugged into the shared layer tests (``layer_contract.py``); its oracle
is a ``torch.nn.Module`` computing ``x + self.layers(x)`` with ``layers`` an
``nn.Sequential`` of the sub-layers' own oracles (so the state-dict names,
``layers.0.weight``, are ours).

Beyond the contract: a pre-LN transformer block against torch's own
``nn.TransformerEncoderLayer(norm_first=True)`` with copied weights, the skip's
gradient (a backward without it fails), the shape rule, nesting, JSON, and the
sub-layers a Residual refuses."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract, torch_oracle
from layer_vjp import one_layer

from nnparity.backends import predict
from nnparity.backends.numpy.layers import residual as numpy_residual
from nnparity.shared import (POLICY, SGD, Activation, BatchNorm, Dense, Dropout, Embedding,
                             Flatten, LayerNorm, MultiHeadAttention, NetworkSpec, init_params)
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.layers.residual import Residual
from nnparity.shared.core.tolerance import tensorwise_difference


def torch_module(layer: Residual, input_shape):
    import torch

    class TorchResidual(torch.nn.Module):
        def __init__(self, modules):
            super().__init__()
            self.layers = torch.nn.Sequential(*modules)

        def forward(self, x):
            return x + self.layers(x)

    return TorchResidual([torch_oracle(sub.kind)(sub, shape)
                          for sub, shape in zip(layer.layers, layer.shapes(input_shape),
                                                strict=False)])


def block(embed=4, heads=2, hidden=8):
    """A pre-LN transformer block: attention, then a GELU MLP, each in a Residual."""
    return (Residual((LayerNorm(), MultiHeadAttention(heads, causal=True, bias=False))),
            Residual((LayerNorm(), Dense(hidden), Activation("gelu"), Dense(embed))))


class TestResidual(LayerContract):
    cases = {
        "dense-tanh": NetworkSpec(
            input_shape=(3,), layers=(Dense(4), Residual((Dense(4), Activation("tanh"))),
                                      Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3),
        "pre-ln-transformer-block": NetworkSpec(
            input_shape=(5, 4), layers=(*block(), Flatten(), Dense(2)),
            init="torch_default", optimizer=SGD(lr=0.05), batch_size=4, epochs=3, seed=1),
        "batch-norm-inside": NetworkSpec(
            input_shape=(2, 5), layers=(Residual((BatchNorm(), Activation("tanh"))), Flatten(),
                                        Dense(2)),
            init="xavier_uniform", optimizer=SGD(lr=0.05), batch_size=5, epochs=3, seed=2,
            shuffle=True),
        "nested": NetworkSpec(
            input_shape=(4,), layers=(Residual((Residual((Dense(4), Activation("tanh"))),
                                                Dense(4))), Dense(2)),
            init="he_normal", optimizer=SGD(lr=0.05), batch_size=4, epochs=3, seed=3),
    }


# --------------------------------------------- a transformer block, torch's own module

def test_a_pre_ln_block_equals_torch_transformer_encoder_layer():
    """Two Residuals as above are torch's ``TransformerEncoderLayer(norm_first=True,
    dropout=0, activation="gelu", batch_first=True)`` with its weights copied (its
    feed-forward is linear1 -> gelu -> linear2; its attention keeps both biases)."""
    torch = require("torch")
    embed, heads, hidden = 4, 2, 8
    torch.manual_seed(0)
    reference = torch.nn.TransformerEncoderLayer(
        embed, heads, dim_feedforward=hidden, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=True).double().eval()
    spec = NetworkSpec(input_shape=(5, embed), layers=(
        Residual((LayerNorm(), MultiHeadAttention(heads, causal=True))),
        Residual((LayerNorm(), Dense(hidden), Activation("gelu"), Dense(embed))),
        Flatten(), Dense(5 * embed)))                          # an identity head, below
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    attention = {f"layers.1.{k}": state[f"self_attn.{k}"]
                 for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")}
    params = [
        {"layers.0.weight": state["norm1.weight"], "layers.0.bias": state["norm1.bias"],
         **attention},
        {"layers.0.weight": state["norm2.weight"], "layers.0.bias": state["norm2.bias"],
         "layers.1.weight": state["linear1.weight"], "layers.1.bias": state["linear1.bias"],
         "layers.3.weight": state["linear2.weight"], "layers.3.bias": state["linear2.bias"]},
        {}, {"weight": np.eye(5 * embed), "bias": np.zeros(5 * embed)}]
    x = np.random.default_rng(0).standard_normal((3, 5, embed))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x), src_mask=mask, is_causal=True).numpy()
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        ours = predict(spec, params, x, backend).reshape(3, 5, embed)
        assert tensorwise_difference({"y": ours}, {"y": expected}, POLICY["float64"]).ok, backend


# ------------------------------------------------------------------------- the skip

def test_negative_control_a_backward_without_the_skip_fails_finite_differences(monkeypatch):
    """Returning only the sub-stack's gradient (forgetting dL/dy itself) is caught
    by the contract's finite-difference check."""
    from layer_contract import (MAX_RELATIVE_ERROR, batch, finite_difference_gradients,
                                numpy_gradients, relative_error)
    real = numpy_residual.backward

    def no_skip(layer, params, cache, d_y, grads, need_input_grad):
        return real(layer, params, cache, d_y, grads, need_input_grad) - d_y

    monkeypatch.setattr(numpy_residual, "backward", no_skip)
    spec = TestResidual.cases["dense-tanh"]
    params = init_params(spec)
    x, y = batch(spec)
    _, grads = numpy_gradients(spec, params, x, y)
    assert relative_error(grads, finite_difference_gradients(spec, params, x, y)) \
        > MAX_RELATIVE_ERROR


def test_one_residual_layer_matches_its_torch_module():
    layer = Residual((Dense(3), Activation("tanh"), Dense(3)))
    params, x, d_y = one_layer(layer, (3,), "float64")
    from layer_vjp import backend_against_torch
    for backend in ("numpy", "torch", "jax"):
        assert backend_against_torch(backend, layer, params, x, d_y).ok, backend


# ------------------------------------------------------------------------ the spec

def test_names_nesting_and_json():
    spec = TestResidual.cases["nested"]
    assert list(spec.param_shapes[0]) == ["layers.0.layers.0.weight", "layers.0.layers.0.bias",
                                         "layers.1.weight", "layers.1.bias"]
    assert NetworkSpec.from_json(spec.to_json()) == spec
    layer = spec.layers[0]
    assert layer_from_dict(layer.to_dict()) == layer
    assert TestResidual.cases["batch-norm-inside"].buffer_shapes[0] == {
        "layers.0.running_mean": (2,), "layers.0.running_var": (2,),
        "layers.0.num_batches_tracked": ()}


@pytest.mark.parametrize("layers, error, match", [
    ((Dense(3),), ValueError, r"layers\[0\] input shape=\(4,\).*map \(4,\) to \(3,\)"),
    ((Dropout(0.1), Dense(4)), ValueError, r"Residual\.layers\[0\].*put it outside"),
    ((Embedding(4, 4),), ValueError, r"Residual\.layers\[0\].*put it outside"),
    ((), ValueError, r"Residual\.layers.*1 to 64 layers"),
    ("dense", TypeError, r"Residual\.layers='dense'"),
    ((Dense(4), "relu"), TypeError, r"Residual\.layers\[1\]"),
])
def test_bad_sub_stacks_are_refused(layers, error, match):
    with pytest.raises(error, match=match):
        NetworkSpec(input_shape=(4,), layers=(Residual(layers), Dense(1)))


def test_float_fields_inside_are_checked_in_the_spec_dtype():
    with pytest.raises(ValueError, match=r"layers\[0\]\.layers\[0\]\.eps"):
        NetworkSpec(input_shape=(4,), layers=(Residual((LayerNorm(eps=1e-50),)), Dense(1)),
                    dtype="float32")
