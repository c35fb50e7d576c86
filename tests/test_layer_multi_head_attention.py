"""MultiHeadAttention, plugged into the shared layer tests (``layer_contract.py``);
its oracle is ``torch.nn.MultiheadAttention(E, H, bias, batch_first=True)`` called
as self-attention with ``need_weights=False``. Beside them: one layer with random
parameters in every backend against that oracle in float64 and float32 (y,
dL/dx and every parameter's gradient), every backend against a second oracle
(``F.scaled_dot_product_attention`` with the projections written out here), the
initialisation against torch's, and the traps a port falls into, each shown to
fail: an inverted mask, a missing 1/sqrt(d), a float32 softmax in a float64 run
(``jax.nn.dot_product_attention``'s), the packed weight read as [q; v; k]."""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
from conftest import require
from layer_contract import LayerContract
from layer_vjp import RESULTS, backend_against_torch, one_layer, torch_results

from nnparity.shared import (POLICY, SGD, Activation, Adam, Dense, Flatten, LayerNorm,
                             NetworkSpec, init_params)
from nnparity.shared.core.layers import layer_from_dict
from nnparity.shared.core.layers.attention import MultiHeadAttention
from nnparity.shared.core.tolerance import tensorwise_difference


def torch_module(layer: MultiHeadAttention, input_shape):
    """``nn.MultiheadAttention`` as self-attention on (batch, T, E): forward(x) is
    ``mha(x, x, x, attn_mask=<causal>, need_weights=False)[0]``, the mask torch's
    boolean upper triangle (True = blocked). Its state_dict keys are ours."""
    import torch

    class SelfAttention(torch.nn.MultiheadAttention):
        def forward(self, x):
            length = x.shape[1]
            mask = causal_blocked(torch, length) if layer.causal else None
            return super().forward(x, x, x, attn_mask=mask, need_weights=False)[0]

    return SelfAttention(input_shape[-1], layer.num_heads, bias=layer.bias, batch_first=True)


def causal_blocked(torch, length):
    """torch's causal ``attn_mask`` for nn.MultiheadAttention: True above the diagonal
    (key u > query t), True = blocked."""
    return torch.ones(length, length, dtype=torch.bool).triu(1)


def attention_net(mha, input_shape=(4, 6), before=(), init="torch_default",
                  optimizer=None, seed=0):
    return NetworkSpec(input_shape=input_shape, layers=(*before, mha, Flatten(), Dense(2)),
                       init=init, optimizer=optimizer or SGD(lr=0.05), batch_size=4, epochs=3,
                       seed=seed)


class TestMultiHeadAttention(LayerContract):
    cases = {
        "4x6-2heads-flatten-dense": attention_net(MultiHeadAttention(2)),
        "causal-3heads": attention_net(MultiHeadAttention(3, causal=True), init="xavier_uniform",
                                       seed=1),
        "no-bias-after-dense": attention_net(MultiHeadAttention(2, bias=False), input_shape=(4, 3),
                                             before=(Dense(6), Activation("tanh")), seed=2),
        "one-head": attention_net(MultiHeadAttention(1), init="he_normal", seed=3),
        "one-position-causal": attention_net(MultiHeadAttention(2, causal=True), input_shape=(1, 6),
                                             init="uniform_fan_in", seed=4),
        # Adam only without the biases: see test_the_key_bias_has_a_zero_gradient
        "layernorm-before-causal-no-bias-adam": attention_net(
            MultiHeadAttention(2, causal=True, bias=False), before=(LayerNorm(),),
            optimizer=Adam(lr=0.01), seed=5),
    }


# ----------------------------------------------------- one layer, random parameters

LAYERS = {"2heads": (MultiHeadAttention(2), (5, 6)),
          "causal-3heads": (MultiHeadAttention(3, causal=True), (5, 6)),
          "no-bias-causal": (MultiHeadAttention(2, causal=True, bias=False), (5, 6)),
          "one-position": (MultiHeadAttention(2, causal=True), (1, 6))}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("which", list(LAYERS))
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_values_and_gradients_match_torch(backend, which, dtype):
    layer, shape = LAYERS[which]
    params, x, d_y = one_layer(layer, shape, dtype)
    assert backend_against_torch(backend, layer, params, x, d_y).ok


def sdpa_results(layer, params, x, d_y):
    """(y, {"x": dL/dx, name: dL/dname}) from ``F.scaled_dot_product_attention``
    (``is_causal``; its default scale 1/sqrt(d)), the projections and the heads'
    reshapes written out here: a second oracle, independent of nn.MultiheadAttention's
    own packing code."""
    torch = require("torch")
    F = torch.nn.functional
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in params.items()}
    xt = torch.from_numpy(x).requires_grad_(True)
    batch, length, embed = x.shape
    heads, size = layer.num_heads, embed // layer.num_heads
    w_q, w_k, w_v = tensors["in_proj_weight"].chunk(3)
    b_q, b_k, b_v = tensors["in_proj_bias"].chunk(3) if layer.bias else (None,) * 3

    def split(a):                                             # (B, T, E) -> (B, H, T, d)
        return a.reshape(batch, length, heads, size).transpose(1, 2)

    q, k, v = (split(F.linear(xt, w, b)) for w, b in ((w_q, b_q), (w_k, b_k), (w_v, b_v)))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=layer.causal)
    y = F.linear(o.transpose(1, 2).reshape(batch, length, embed), tensors["out_proj.weight"],
                 tensors.get("out_proj.bias"))
    (y * torch.from_numpy(d_y)).sum().backward()
    return y.detach().numpy(), {"x": xt.grad.numpy(),
                                **{k: t.grad.numpy() for k, t in tensors.items()}}


@pytest.mark.parametrize("which", ["2heads", "causal-3heads", "no-bias-causal", "one-position"])
@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_values_and_gradients_match_scaled_dot_product_attention(backend, which):
    require(backend)
    layer, shape = LAYERS[which]
    params, x, d_y = one_layer(layer, shape, "float64", seed=1)
    y, grads = RESULTS[backend](layer, params, x, d_y)
    y_ref, grads_ref = sdpa_results(layer, params, x, d_y)
    assert sorted(grads) == sorted(grads_ref)
    assert tensorwise_difference({"y": y, **{k: grads[k] for k in grads_ref}},
                                 {"y": y_ref, **grads_ref}, POLICY["float64"]).ok


def test_the_two_oracles_agree():
    """nn.MultiheadAttention and the written-out SDPA computation, float64."""
    for which in ("2heads", "causal-3heads", "no-bias-causal"):
        layer, shape = LAYERS[which]
        params, x, d_y = one_layer(layer, shape, "float64", seed=2)
        y, grads = torch_results(layer, params, x, d_y)
        y_sdpa, grads_sdpa = sdpa_results(layer, params, x, d_y)
        assert tensorwise_difference({"y": y, **grads}, {"y": y_sdpa, **grads_sdpa},
                                     POLICY["float64"]).ok, which


def test_causal_means_position_t_sees_only_positions_up_to_t():
    """Changing the input at position t changes no output before t, in every backend
    (and changes outputs at t and after)."""
    layer, shape = MultiHeadAttention(2, causal=True), (5, 6)
    params, x, d_y = one_layer(layer, shape, "float64")
    changed = x.copy()
    changed[:, 3] += 1.0
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        before = RESULTS[backend](layer, params, x, d_y)[0]
        after = RESULTS[backend](layer, params, changed, d_y)[0]
        assert np.array_equal(before[:, :3], after[:, :3]), backend
        assert np.all(np.abs(before[:, 3:] - after[:, 3:]).max(axis=-1) > 1e-6), backend


def test_float32_stays_float32_and_large_scores_do_not_overflow():
    """Scores of order 1e3 (exp would overflow without the max subtracted), float32
    and float64: every backend finite and at torch's values."""
    layer, shape = MultiHeadAttention(2, causal=True), (5, 6)
    for dtype in ("float64", "float32"):
        params, x, d_y = one_layer(layer, shape, dtype, scale=30.0)
        y_ref = torch_results(layer, params, x, d_y)[0]
        assert np.abs(y_ref).max() > 10
        for backend in ("numpy", "torch", "jax"):
            require(backend)
            y = RESULTS[backend](layer, params, x, d_y)[0]
            assert y.dtype == np.dtype(dtype) and np.isfinite(y).all(), (backend, dtype)
            assert tensorwise_difference({"y": y}, {"y": y_ref}, POLICY[dtype]).ok, \
                (backend, dtype)


@pytest.mark.slow
def test_parity_in_float32():
    """A causal network trained in float32 in all three backends (the contract's
    cases are float64)."""
    from layer_contract import data_for

    from nnparity.shared import compare
    for backend in ("torch", "jax"):
        require(backend)
    spec = attention_net(MultiHeadAttention(3, causal=True), before=(LayerNorm(),),
                         seed=7).replace(dtype="float32")
    report = compare(spec, data_for(spec))
    assert report.ok, str(report)


# --------------------------------------------------- the key bias's zero gradient

def test_the_key_bias_has_a_zero_gradient():
    """The key bias adds q_t . b_k to every score of row t, the same for every key
    u, and a softmax row does not change when a constant is added to it: so
    dL/d(in_proj_bias[E:2E]) is exactly 0 in exact arithmetic (torch's too). What
    each backend computes there is rounding noise, 6e-16 to 1.2e-15 of the other
    blocks (measured)."""
    layer, shape = LAYERS["causal-3heads"]
    params, x, d_y = one_layer(layer, shape, "float64")
    embed = shape[-1]
    results = {"oracle": torch_results}
    for backend in ("numpy", "torch", "jax"):
        require(backend)
        results[backend] = RESULTS[backend]
    for backend, result in results.items():
        d_bias = result(layer, params, x, d_y)[1]["in_proj_bias"]
        key = d_bias[embed:2 * embed]
        query_and_value = np.concatenate([d_bias[:embed], d_bias[2 * embed:]])
        assert np.abs(key).max() < 1e-14 * np.abs(query_and_value).max(), backend


@pytest.mark.slow
def test_adam_amplifies_the_key_bias_rounding_noise():
    """The trap the contract's cases avoid (Adam only with bias=False): Adam steps
    the key bias by about lr * g / (|g| + eps) whatever g's size, so the noise of
    the previous test moves it differently in each backend, past the absolute
    tolerance, while every teacher-forced step agrees: "amplification", as a bias
    before BatchNorm (tests/test_cnn.py)."""
    from layer_contract import data_for

    from nnparity.shared import compare
    for backend in ("torch", "jax"):
        require(backend)
    spec = attention_net(MultiHeadAttention(3, causal=True), init="xavier_uniform",
                         optimizer=Adam(lr=0.01), seed=1)
    report = compare(spec, data_for(spec))
    assert not report.ok
    for parity in report.parity:
        assert parity.diagnosis.startswith("amplification"), parity.diagnosis
        assert parity.teacher and all(step.ok for step in parity.teacher)


# ------------------------------------------------------------ negative controls

def numpy_forward(layer, params, x):
    from nnparity.backends.numpy.layers import multi_head_attention
    return multi_head_attention.forward(layer, params, {}, x, True)[0]


def fails_against_torch(layer, params, x, y):
    """The relative difference of y to the oracle's output (evaluated with the
    original ``params``), after checking it fails the float64 policy."""
    expected = torch_results(layer, params, x, np.ones_like(x))[0]
    assert not tensorwise_difference({"y": y}, {"y": expected}, POLICY["float64"]).ok
    return float(np.max(np.abs(y - expected)) / np.max(np.abs(expected)))


def test_negative_control_the_unchanged_numpy_forward_passes():
    """The controls below change one thing each; without the change, torch agrees."""
    for which in ("2heads", "causal-3heads"):
        layer, shape = LAYERS[which]
        params, x, _ = one_layer(layer, shape, "float64")
        expected = torch_results(layer, params, x, np.ones_like(x))[0]
        assert tensorwise_difference({"y": numpy_forward(layer, params, x)}, {"y": expected},
                                     POLICY["float64"]).ok


def test_negative_control_an_inverted_causal_mask_fails(monkeypatch):
    """Blocking u < t instead of u > t (the diagonal kept, so no row is fully
    masked): query t sees keys u >= t instead of u <= t; rel 1.2 (measured)."""
    from nnparity.backends.numpy.layers import multi_head_attention
    layer, shape = LAYERS["causal-3heads"]
    params, x, _ = one_layer(layer, shape, "float64")
    monkeypatch.setattr(multi_head_attention, "future",
                        lambda n: np.tril(np.ones((n, n), dtype=bool), k=-1))
    assert fails_against_torch(layer, params, x, numpy_forward(layer, params, x)) > 0.1


def test_negative_control_an_attend_mask_given_where_a_blocked_mask_is_expected_fails():
    """The polarity trap between torch's two APIs: nn.MultiheadAttention's causal
    mask (True = blocked) passed to F.scaled_dot_product_attention (True = attend).
    Query t then sees only keys u > t; the last query sees none, and SDPA returns
    0 for that row (layer-traps.md §8). The correct ~mask agrees."""
    torch = require("torch")
    F = torch.nn.functional
    q, k, v = map(torch.from_numpy, np.random.default_rng(0).standard_normal((3, 2, 1, 5, 4)))
    blocked = causal_blocked(torch, 5)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    right = F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked)
    wrong = F.scaled_dot_product_attention(q, k, v, attn_mask=blocked)
    assert torch.allclose(right, expected, rtol=1e-12, atol=0)
    assert (wrong[..., -1, :] == 0).all()
    assert (wrong - expected).abs().max() > 0.1 * expected.abs().max()


def test_negative_control_a_missing_scale_fails(monkeypatch):
    """Scores not multiplied by 1/sqrt(d) (d = 3 here): a sharper softmax, rel 0.14
    (measured)."""
    from nnparity.backends.numpy.layers import multi_head_attention
    layer, shape = LAYERS["2heads"]
    params, x, _ = one_layer(layer, shape, "float64")
    monkeypatch.setattr(multi_head_attention, "math", types.SimpleNamespace(sqrt=lambda d: 1.0))
    assert fails_against_torch(layer, params, x, numpy_forward(layer, params, x)) > 0.01


def test_negative_control_a_float32_softmax_in_a_float64_run_fails(monkeypatch):
    """The softmax computed in float32 and cast back, as jax.nn.dot_product_attention
    does inside a float64 run: float32 rounding (1.1e-7 relative here, measured)
    where float64 asks for 1e-10, a precision bug parity catches, yet far below any
    float32 tolerance (1e-4)."""
    from nnparity.backends.numpy.layers import multi_head_attention
    softmax = multi_head_attention.softmax
    layer, shape = LAYERS["causal-3heads"]
    params, x, _ = one_layer(layer, shape, "float64")
    monkeypatch.setattr(multi_head_attention, "softmax",
                        lambda s: softmax(s.astype(np.float32)).astype(s.dtype))
    rel = fails_against_torch(layer, params, x, numpy_forward(layer, params, x))
    assert 1e-9 < rel < 1e-6


def test_negative_control_jax_dot_product_attention_is_float32_inside_float64():
    """jax.nn.dot_product_attention (B, T, N, d layout) on float64 inputs: its
    softmax runs in float32 (layer-traps.md X2), so it misses the float64 policy
    (5.4e-8 relative here, measured; layer-traps.md measured 4.5e-8), where our
    backends meet it."""
    jax = require("jax")
    torch = require("torch")
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((3, 4, 6, 2, 4))                # (B, T, N, d)
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(a).transpose(1, 2) for a in (q, k, v)), is_causal=True
    ).transpose(1, 2).numpy()
    with jax.enable_x64(True):
        out = np.asarray(jax.nn.dot_product_attention(q, k, v, is_causal=True))
    assert out.dtype == np.float64
    rel = float(np.max(np.abs(out - expected)) / np.max(np.abs(expected)))
    assert not tensorwise_difference({"y": out}, {"y": expected}, POLICY["float64"]).ok
    assert 1e-9 < rel < 1e-6


def test_negative_control_value_and_key_blocks_swapped_fails():
    """The packed in_proj_weight (and bias) read as [q; v; k] instead of torch's
    [q; k; v]: rel 1.7 (measured)."""
    layer, shape = LAYERS["2heads"]
    params, x, _ = one_layer(layer, shape, "float64")
    embed = shape[-1]
    swapped = dict(params)
    for name in ("in_proj_weight", "in_proj_bias"):
        q, k, v = np.split(params[name], 3)
        swapped[name] = np.concatenate([q, v, k])
        assert swapped[name].shape == params[name].shape == (3 * embed, *params[name].shape[1:])
    assert fails_against_torch(layer, params, x, numpy_forward(layer, swapped, x)) > 0.1


# ------------------------------------------------------------------ the spec

def test_shapes_names_round_trip_and_validation():
    spec = attention_net(MultiHeadAttention(2))
    assert spec.param_shapes[0] == {"in_proj_weight": (18, 6), "in_proj_bias": (18,),
                                    "out_proj.weight": (6, 6), "out_proj.bias": (6,)}
    assert spec.layer_input_shapes[:2] == ((4, 6), (4, 6))
    assert attention_net(MultiHeadAttention(3, bias=False)).param_shapes[0] == \
        {"in_proj_weight": (18, 6), "out_proj.weight": (6, 6)}
    require("torch")
    assert list(torch_module(MultiHeadAttention(3, bias=False), (4, 6)).state_dict()) == \
        ["in_proj_weight", "out_proj.weight"]
    for layer in (MultiHeadAttention(2), MultiHeadAttention(4, causal=True, bias=False)):
        assert layer_from_dict(layer.to_dict()) == layer
    assert NetworkSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match=r"MultiHeadAttention.num_heads=4 .*E=6"):
        attention_net(MultiHeadAttention(4))
    with pytest.raises(ValueError, match="MultiHeadAttention.num_heads"):
        MultiHeadAttention(0)
    with pytest.raises(TypeError, match="MultiHeadAttention.num_heads"):
        MultiHeadAttention(2.0)
    with pytest.raises(TypeError, match="MultiHeadAttention.causal"):
        MultiHeadAttention(2, causal=1)
    with pytest.raises(TypeError, match="MultiHeadAttention.bias"):
        MultiHeadAttention(2, bias="yes")
    with pytest.raises(ValueError, match=r"2 axes \(T, E\)"):
        NetworkSpec(input_shape=(6,), layers=(MultiHeadAttention(2), Dense(1)))
    with pytest.raises(TypeError, match="num_heads"):
        layer_from_dict({"kind": "multi_head_attention"})


def test_init_rules():
    """torch_default: in_proj_weight U(+-sqrt(6/(E + 3E))) (xavier on the packed
    (3E, E) matrix), out_proj.weight U(+-1/sqrt(E)), biases 0; the drawn values fill
    the same intervals as torch's own MultiheadAttention draws. The other rules per
    weight matrix with its fans; biases 0 under every rule."""
    require("torch")
    embed = 64
    spec = attention_net(MultiHeadAttention(4), input_shape=(3, embed))
    ours = init_params(spec)[0]
    theirs = {k: v.numpy() for k, v in torch_module(MultiHeadAttention(4), (3, embed))
              .state_dict().items()}
    bounds = {"in_proj_weight": math.sqrt(6 / (4 * embed)), "out_proj.weight": 1 / math.sqrt(embed)}
    for name, bound in bounds.items():
        for drawn in (ours[name], theirs[name]):
            assert bound * 0.99 < np.abs(drawn).max() <= bound, name
    for name in ("in_proj_bias", "out_proj.bias"):
        assert not ours[name].any() and not theirs[name].any()
    for rule, check in {
        "uniform_fan_in": lambda w, fan_in, fan_out: 0 <= w.min() and w.max() < 1 / fan_in,
        "xavier_uniform": lambda w, fan_in, fan_out:
            np.abs(w).max() <= math.sqrt(6 / (fan_in + fan_out)),
        "he_normal": lambda w, fan_in, fan_out: abs(w.std() / math.sqrt(2 / fan_in) - 1) < 0.05,
        "zeros": lambda w, fan_in, fan_out: not w.any(),
    }.items():
        params = init_params(attention_net(MultiHeadAttention(4), input_shape=(3, embed),
                                           init=rule))[0]
        assert check(params["in_proj_weight"], embed, 3 * embed), rule
        assert check(params["out_proj.weight"], embed, embed), rule
        assert not params["in_proj_bias"].any() and not params["out_proj.bias"].any(), rule
