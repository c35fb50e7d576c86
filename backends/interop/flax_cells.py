"""torch's recurrent weights in Flax NNX's cells, and back: ``nnx.SimpleCell`` (RNN),
``nnx.LSTMCell`` and ``nnx.GRUCell``, one cell per stacked layer under ``nnx.RNN``.

torch keeps two biases per gate, ``bias_ih`` and ``bias_hh``; Flax's cells keep one
side only (SimpleCell and GRUCell: the input side; LSTMCell: the hidden side). For
RNN and LSTM only the sum matters in the forward pass, but folding the two into one
changes training: both torch biases get the same gradient, so under SGD their sum
moves twice as far as one Flax bias would. GRU's ``b_hn`` sits inside r * (W_hn h +
b_hn) and cannot be folded at all. So every cell here gets the Linear layers of
both sides with a bias (the stock cell's unbiased Linear replaced by a biased one of
the same shape): the weights are torch's, one for one, and train as torch's do.

Gate order: torch stacks LSTM gates (i, f, g, o) and GRU gates (r, z, n) along the
rows; Flax's LSTMCell has one Linear per gate (``ii, if_, ig, io`` / ``hi, hf, hg,
ho``), its GRUCell one Linear of 3H columns in the order (r, z, n), torch's.

GRU's update: Flax computes (1 - z) * n + z * h, torch n + z * (h - n): equal in
exact arithmetic, apart by up to 2.2e-16 in about 45% of elements (one cell,
random gates, measured), which the float64 policy absorbs.

Imports flax at the top: ``flax_nnx`` imports this module only inside its functions.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnparity.backends.interop.flax_modules import PLACEHOLDER, linear, linear_arrays
from nnparity.shared.core.validation import fail

#: torch's LSTM gates in order, with the names of Flax's (input, hidden) Linear for each
LSTM_GATES = (("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho"))
#: the functions Flax's cells default to, under every name they go by
SIGMOIDS = {jax.nn.sigmoid, nnx.sigmoid}
TANHS = {jnp.tanh, nnx.tanh, jax.nn.tanh} if hasattr(jax.nn, "tanh") else {jnp.tanh, nnx.tanh}
RELUS = {jax.nn.relu, nnx.relu}


def _names(k: int) -> tuple[str, str, str, str]:
    return f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}"


def _rows(bias: np.ndarray | None, rows: slice) -> np.ndarray | None:
    return None if bias is None else bias[rows]


def build_cell(layer: Any, params: dict[str, np.ndarray], k: int, dtype: Any) -> Any:
    """The Flax cell of stacked layer ``k`` of an RNN, LSTM or GRU spec layer."""
    name_w_ih, name_w_hh, name_b_ih, name_b_hh = _names(k)
    w_ih, w_hh = params[name_w_ih], params[name_w_hh]
    b_ih, b_hh = params.get(name_b_ih), params.get(name_b_hh)
    inputs, hidden = w_ih.shape[1], layer.hidden_size
    common = dict(kernel_init=PLACEHOLDER, recurrent_kernel_init=PLACEHOLDER, dtype=dtype,
                  param_dtype=dtype, rngs=nnx.Rngs(0))   # every Linear replaced below
    if layer.kind == "lstm":
        cell: Any = nnx.LSTMCell(inputs, hidden, **common)
        for g, (name_i, name_h) in enumerate(LSTM_GATES):
            rows = slice(g * hidden, (g + 1) * hidden)
            setattr(cell, name_i, linear(w_ih[rows].T, _rows(b_ih, rows), dtype))
            setattr(cell, name_h, linear(w_hh[rows].T, _rows(b_hh, rows), dtype))
        return cell
    if layer.kind == "gru":
        cell = nnx.GRUCell(inputs, hidden, **common)
    else:
        act = jnp.tanh if layer.nonlinearity == "tanh" else jax.nn.relu
        cell = nnx.SimpleCell(inputs, hidden, activation_fn=act, **common)
    cell.dense_i = linear(w_ih.T, b_ih, dtype)                  # (I, G*H)
    cell.dense_h = linear(w_hh.T, b_hh, dtype)                  # (H, G*H)
    return cell


def _both_sides(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None,
                b_hh: np.ndarray | None, k: int) -> dict[str, np.ndarray]:
    """torch's four tensors of stacked layer k (torch layout); a bias Flax's cell does
    not have on one side is zeros, when the other side has one."""
    out = {f"weight_ih_l{k}": w_ih, f"weight_hh_l{k}": w_hh}
    if b_ih is not None or b_hh is not None:
        rows = w_ih.shape[0]
        out[f"bias_ih_l{k}"] = np.zeros(rows, w_ih.dtype) if b_ih is None else b_ih
        out[f"bias_hh_l{k}"] = np.zeros(rows, w_ih.dtype) if b_hh is None else b_hh
    return out


def _check_fn(label: str, name: str, fn: Any, allowed: set, what: str) -> None:
    if fn not in allowed:
        fail(f"{label}.{name}", getattr(fn, "__name__", fn), what)


def read_cell(cell: Any, k: int, label: str) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """A Flax cell -> (kind, the spec fields it fixes, torch's tensors of layer k)."""
    if type(cell) is nnx.LSTMCell:
        _check_fn(label, "gate_fn", cell.gate_fn, SIGMOIDS, "jax.nn.sigmoid (torch's LSTM)")
        _check_fn(label, "activation_fn", cell.activation_fn, TANHS, "jnp.tanh (torch's LSTM)")
        parts = [(linear_arrays(getattr(cell, i)), linear_arrays(getattr(cell, h)))
                 for i, h in LSTM_GATES]
        w_ih = np.concatenate([kernel.T for (kernel, _), _ in parts])      # (4H, I)
        w_hh = np.concatenate([kernel.T for _, (kernel, _) in parts])      # (4H, H)
        b_ih = [bias for (_, bias), _ in parts]
        b_hh = [bias for _, (_, bias) in parts]
        sides = [None if all(b is None for b in side) else
                 np.concatenate([np.zeros(w_hh.shape[1], w_hh.dtype) if b is None else b
                                 for b in side]) for side in (b_ih, b_hh)]
        return "lstm", {}, _both_sides(w_ih, w_hh, sides[0], sides[1], k)
    if type(cell) is nnx.GRUCell:
        _check_fn(label, "gate_fn", cell.gate_fn, SIGMOIDS, "jax.nn.sigmoid (torch's GRU)")
        _check_fn(label, "activation_fn", cell.activation_fn, TANHS, "jnp.tanh (torch's GRU)")
        fields: dict[str, Any] = {}
        kind = "gru"
    elif type(cell) is nnx.SimpleCell:
        if cell.residual:
            fail(f"{label}.residual", True, "False: torch's RNN has no residual connection")
        _check_fn(label, "activation_fn", cell.activation_fn, TANHS | RELUS,
                  "jnp.tanh or jax.nn.relu (torch's RNN nonlinearities)")
        fields = {"nonlinearity": "relu" if cell.activation_fn in RELUS else "tanh"}
        kind = "rnn"
    else:
        fail(label, type(cell).__name__, "an nnx.SimpleCell, nnx.LSTMCell or nnx.GRUCell "
             "(torch's RNN, LSTM, GRU)")
    (k_i, b_i), (k_h, b_h) = linear_arrays(cell.dense_i), linear_arrays(cell.dense_h)
    return kind, fields, _both_sides(k_i.T, k_h.T, b_i, b_h, k)
