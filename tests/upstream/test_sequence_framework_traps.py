"""What torch and JAX themselves do in the sequence layer kinds (Embedding, the
recurrent cells, attention, cross-entropy at every position): the conventions
docs/idioms.md's "Layers" section and its traps rely on. No nnparity code runs
here (tests/upstream/conftest.py).

Every case is small (at most a few thousand elements), float64, and asserts
either exact facts (defaults, shapes, exceptions, values that are copies of a
row or exact zeros, bitwise equalities of the same operations) or differences
far larger than rounding, so it does not depend on the last bit of a BLAS result.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import require


def rel(a, b) -> float:
    """max|a - b| / max|b|."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


# -------------------------------------------------------------------- Embedding

def test_trap_out_of_range_tokens_raise_in_torch_give_nan_in_jnp_take_and_clamp_in_indexing():
    """Token 4 of a 4-row table: torch's F.embedding raises IndexError (so does
    -1); jnp.take (mode "fill") returns a row of NaN; w[x] in JAX clamps to the
    last row, and its gradient drops the clamped read (the last row gets 0). A
    negative token counts from the end in w[x] (-1 is the last row) and clamps
    below (-5 reads row 0). Eager and jitted alike."""
    torch, jax = require("torch"), require("jax")
    import jax.numpy as jnp
    w = np.arange(12.0).reshape(4, 3)
    for bad in (4, -1):
        with pytest.raises(IndexError, match="index out of range"):
            torch.nn.functional.embedding(torch.tensor([bad]), torch.from_numpy(w))
    x = np.array([1, 4])
    with jax.enable_x64(True):
        table = jnp.asarray(w)
        taken = np.asarray(jnp.take(table, x, axis=0))
        indexed = np.asarray(table[x])
        jitted = np.asarray(jax.jit(lambda a, i: a[i])(table, x))
        negative = np.asarray(table[np.array([-1, -5])])
        grad = np.asarray(jax.grad(lambda a: a[x].sum())(table))
    assert np.array_equal(taken[0], w[1]) and np.isnan(taken[1]).all()
    assert np.array_equal(indexed, w[[1, 3]]) and np.array_equal(jitted, indexed)
    assert np.array_equal(negative, w[[3, 0]])
    assert grad[1].tolist() == [1.0] * 3 and not np.delete(grad, 1, axis=0).any()


def test_trap_repeated_tokens_add_up_in_jax_grad_and_np_add_at_not_in_a_buffered_add():
    """Token 1 twice: the gradient of w[x] in JAX and np.add.at add both rows of
    dL/dy into row 1; dW[x] += g (a buffered fancy-index add) keeps only the last."""
    jax = require("jax")
    import jax.numpy as jnp
    x = np.array([1, 1, 2])
    d_y = np.arange(9.0).reshape(3, 3)
    added = np.zeros((4, 3))
    np.add.at(added, x, d_y)
    buffered = np.zeros((4, 3))
    buffered[x] += d_y
    with jax.enable_x64(True):
        grad = np.asarray(jax.grad(lambda a: (a[x] * d_y).sum())(jnp.zeros((4, 3))))
    assert added[1].tolist() == [3.0, 5.0, 7.0] and np.array_equal(grad, added)
    assert buffered[1].tolist() == [3.0, 4.0, 5.0]


def test_trap_torch_padding_idx_zeroes_the_gradient_not_the_lookup():
    """F.embedding(padding_idx=0): row 0's gradient is 0 although token 0 is looked
    up twice, and the lookup returns row 0 as it is (not zeros). JAX's w[x] has no
    padding_idx: its gradient for row 0 is the sum."""
    torch, jax = require("torch"), require("jax")
    import jax.numpy as jnp
    w = np.arange(1.0, 13.0).reshape(4, 3)
    x = np.array([0, 2, 0])
    weight = torch.from_numpy(w.copy()).requires_grad_(True)
    y = torch.nn.functional.embedding(torch.from_numpy(x), weight, padding_idx=0)
    y.sum().backward()
    assert np.array_equal(y.detach().numpy()[0], w[0])
    assert weight.grad.numpy()[0].tolist() == [0.0] * 3
    assert weight.grad.numpy()[2].tolist() == [1.0] * 3
    with jax.enable_x64(True):
        grad = np.asarray(jax.grad(lambda a: a[x].sum())(jnp.asarray(w)))
    assert grad[0].tolist() == [2.0] * 3


# ------------------------------------------------------------- recurrent cells

def test_trap_torch_recurrent_layers_and_attention_are_time_major_by_default():
    """nn.RNN, nn.LSTM, nn.GRU, nn.MultiheadAttention and nn.TransformerEncoderLayer
    default to batch_first=False: (T, B, I). A (B, T, I) batch given to a default
    LSTM raises nothing and returns the same shape, other numbers (rel 0.61 here,
    measured)."""
    torch = require("torch")
    torch.manual_seed(0)
    for module in (torch.nn.RNN(3, 4), torch.nn.LSTM(3, 4), torch.nn.GRU(3, 4),
                   torch.nn.MultiheadAttention(4, 2)):
        assert module.batch_first is False, type(module).__name__
    assert inspect.signature(torch.nn.TransformerEncoderLayer).parameters[
        "batch_first"].default is False
    lstm = torch.nn.LSTM(3, 4).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)            # (B, T, I)
    with torch.no_grad():
        time_major, _ = lstm(x)                              # read as T = 2, B = 5
        lstm.batch_first = True
        batch_major, _ = lstm(x)
    assert time_major.shape == batch_major.shape == (2, 5, 4)
    assert rel(time_major.numpy(), batch_major.numpy()) > 0.1          # measured 0.61


def test_trap_torch_gru_cell_gates_are_r_z_n_and_its_update_is_n_plus_z_times_h_minus_n():
    """torch.nn.GRUCell in float64 equals, bit for bit, the cell written with the
    stacked rows read as r, z, n, the reset applied to W_hn h + b_hn (after the
    matmul), and h' = n + z * (h - n). flax's (1 - z) * n + z * h differs from it
    in about half of the elements, by at most 2.2e-16 (measured: 49% of 512, by
    1.7e-16)."""
    torch = require("torch")
    F = torch.nn.functional
    torch.manual_seed(1)
    cell = torch.nn.GRUCell(4, 16).double()
    x = torch.randn(32, 4, dtype=torch.float64)
    h = torch.randn(32, 16, dtype=torch.float64).tanh()
    with torch.no_grad():
        expected = cell(x, h)
        gi_r, gi_z, gi_n = F.linear(x, cell.weight_ih, cell.bias_ih).chunk(3, 1)
        gh_r, gh_z, gh_n = F.linear(h, cell.weight_hh, cell.bias_hh).chunk(3, 1)
        r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
        flax_form = (1 - z) * n + z * h
        n_swapped = torch.tanh(gi_n + z * gh_n)              # the first two blocks read
        swapped = n_swapped + r * (h - n_swapped)            # as z, r (Keras's order)
    assert torch.equal(n + z * (h - n), expected)
    assert 0.25 < (flax_form != expected).double().mean().item() < 0.65
    assert (flax_form - expected).abs().max().item() <= 2.3e-16
    assert rel(swapped.numpy(), expected.numpy()) > 0.05


def test_trap_torch_lstm_cell_gates_are_i_f_g_o():
    """torch.nn.LSTMCell's stacked rows are i, f, g, o (g the tanh candidate) and it
    adds both biases; read as i, f, o, g, or with bias_hh left out, the cell is far
    from torch's."""
    torch = require("torch")
    F = torch.nn.functional
    torch.manual_seed(2)
    cell = torch.nn.LSTMCell(4, 8).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    h, c = torch.randn(2, 16, 8, dtype=torch.float64)

    def written(order="ifgo", bias_hh=True):
        a = F.linear(x, cell.weight_ih, cell.bias_ih) + F.linear(
            h, cell.weight_hh, cell.bias_hh if bias_hh else None)
        gates = dict(zip(order, a.chunk(4, 1), strict=True))
        i, f, o = (torch.sigmoid(gates[name]) for name in "ifo")
        c_t = f * c + i * torch.tanh(gates["g"])
        return (o * torch.tanh(c_t)).numpy()

    with torch.no_grad():
        expected = cell(x, (h, c))[0].numpy()
        assert rel(written(), expected) < 1e-14
        assert rel(written("ifog"), expected) > 0.1
        assert rel(written(bias_hh=False), expected) > 0.1


# -------------------------------------------------------------------- attention

def test_trap_attention_mask_polarity_differs_between_apis():
    """A boolean mask means "blocked" where True in nn.MultiheadAttention's
    attn_mask, and "attend" where True in F.scaled_dot_product_attention and
    jax.nn.dot_product_attention. The causal upper triangle (True above the
    diagonal) gives nn.MultiheadAttention causal weights (exactly 0 above the
    diagonal); its complement gives SDPA and JAX the is_causal result. The upper
    triangle given to SDPA or JAX leaves the last query no key: SDPA returns 0
    there, JAX the mean of v over every key."""
    torch, jax = require("torch"), require("jax")
    F = torch.nn.functional
    generator = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(3, 2, 1, 5, 4, dtype=torch.float64, generator=generator)
    blocked = torch.ones(5, 5, dtype=torch.bool).triu(1)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert rel(F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked).numpy(),
               causal.numpy()) < 1e-14
    wrong = F.scaled_dot_product_attention(q, k, v, attn_mask=blocked)
    assert (wrong[..., -1, :] == 0).all()
    assert rel(wrong.numpy(), causal.numpy()) > 0.1                    # measured 1.5
    mha = torch.nn.MultiheadAttention(4, 1, batch_first=True).double()
    with torch.no_grad():
        _, weights = mha(q[:, 0], q[:, 0], q[:, 0], attn_mask=blocked)
    assert not weights[:, blocked].any() and (weights[:, ~blocked] > 0).all()
    with jax.enable_x64(True):
        layout = [a.transpose(1, 2).numpy() for a in (q, k, v)]      # (B, T, N, d)
        attend = np.asarray(jax.nn.dot_product_attention(*layout, mask=~blocked.numpy()))
        inverted = np.asarray(jax.nn.dot_product_attention(*layout, mask=blocked.numpy()))
    assert rel(attend, causal.transpose(1, 2).numpy()) < 1e-6         # float32 inside: 6e-8
    assert rel(inverted[:, -1], layout[2].mean(axis=1)) < 1e-6


# ----------------------------------------------------------------- cross-entropy

def test_trap_torch_cross_entropy_ignores_minus_100_and_averages_over_the_counted():
    """F.cross_entropy's default ignore_index is -100: those positions are left out
    of the mean, which divides by the counted positions only; when none is counted
    the mean is NaN."""
    torch = require("torch")
    F = torch.nn.functional
    assert inspect.signature(F.cross_entropy).parameters["ignore_index"].default == -100
    z = torch.from_numpy(np.random.default_rng(4).standard_normal((6, 3)))
    labels = torch.tensor([0, -100, 2, 1, -100, 1])
    counted = labels != -100
    per_position = F.cross_entropy(z[counted], labels[counted], reduction="none")
    loss = F.cross_entropy(z, labels)
    assert rel(loss.numpy(), per_position.mean().numpy()) < 1e-15
    assert rel(loss.numpy(), per_position.sum().numpy() / 6) > 0.3    # 4 of 6 counted: 0.5
    assert F.cross_entropy(z, torch.full((6,), -100)).isnan()


def test_trap_boolean_indexing_does_not_compile_in_jax():
    """Under jit, a[mask] has no static shape: JAX raises
    NonConcreteBooleanIndexError; a masked sum divided by the count compiles and
    gives the mean over the selected elements."""
    jax = require("jax")
    import jax.numpy as jnp
    a = np.array([1.0, 2.0, 4.0, 8.0])
    mask = np.array([True, False, True, False])
    with pytest.raises(jax.errors.NonConcreteBooleanIndexError):
        jax.jit(lambda a, m: a[m].mean())(a, mask)
    masked = jax.jit(lambda a, m: jnp.sum(jnp.where(m, a, 0)) / jnp.sum(m))(a, mask)
    assert float(masked) == 2.5
