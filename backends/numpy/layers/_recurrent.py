"""What RNN, LSTM and GRU share in NumPy: the stack of layers, and the bookkeeping
around one layer's pass through time and back (backpropagation through time, BPTT).

Each kind's module (``rnn.py``, ``lstm.py``, ``gru.py``) writes its cell twice:

- ``run_layer(layer, x, w) -> (h, cache)``: one stacked layer over all T steps,
  x (batch, T, I) -> h (batch, T, H), keeping what the backward pass needs;
- ``backprop_layer(layer, cache, d_h, w, d_w, need_input) -> d_x``: from dL/dh
  (batch, T, H), the gradient flows backward in time, step T-1 down to 0; it
  writes the weights' gradients into ``d_w`` and returns dL/dx (batch, T, I).

Two ideas carry every BPTT here:

1. h_t is used twice: by the layer's output at step t and by step t+1. So the
   gradient reaching h_t is the sum d_out[:, t] + (what step t+1 sends back), and
   the backward loop carries that second term from one step to the one before.
2. The weights are the same at every step, so their gradient is the sum over the
   steps of each step's contribution. The loop records dL/d(pre-activation) per
   step, and one matrix product over all (batch * T) rows sums them at the end.

The input projections x_t @ weight_ih.T + bias_ih do not depend on h: every
backend computes them for all steps at once, one matrix product before the loop.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Weights(NamedTuple):
    """One stacked layer's tensors (or their gradients): the names are torch's
    ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``."""
    ih: np.ndarray               # (G*H, I): input -> gates
    hh: np.ndarray               # (G*H, H): previous state -> gates
    b_ih: np.ndarray | None      # (G*H,), None with bias=False
    b_hh: np.ndarray | None      # (G*H,)


def weights(tree, k) -> Weights:
    """Stacked layer k's entries of ``tree`` (the parameters, or the gradients)."""
    return Weights(tree[f"weight_ih_l{k}"], tree[f"weight_hh_l{k}"],
                   tree.get(f"bias_ih_l{k}"), tree.get(f"bias_hh_l{k}"))


def forward(layer, params, x, run_layer):
    """x (batch, T, I) -> y: each stacked layer reads the h sequence of the one below.
    y is the top layer's h at every step (batch, T, H), or at the last (batch, H)."""
    seq, caches = x, []
    for k in range(layer.num_layers):
        seq, cache = run_layer(layer, seq, weights(params, k))    # (batch, T, H)
        caches.append(cache)
    y = seq if layer.return_sequence else seq[:, -1]              # (batch, T, H) | (batch, H)
    return y, (seq.shape, caches)


def backward(layer, params, cache, d_y, grads, need_input_grad, backprop_layer):
    """dL/dy -> the stack's gradients (into ``grads``) and dL/dx (batch, T, I), top
    layer first: the dL/dx of layer k is the dL/dh sequence of layer k - 1."""
    shape, caches = cache
    if layer.return_sequence:
        d_seq = d_y                                               # (batch, T, H)
    else:
        d_seq = np.zeros(shape, d_y.dtype)                        # only the last step
        d_seq[:, -1] = d_y                                        # reached the output
    for k in reversed(range(layer.num_layers)):
        d_seq = backprop_layer(layer, caches[k], d_seq, weights(params, k),
                               weights(grads, k), k > 0 or need_input_grad)
    return d_seq


def linear(x, w, b):
    """x @ w.T (+ b): (..., in) -> (..., out)."""
    y = x @ w.T
    return y if b is None else y + b


def previous(seq):
    """The state each step starts from: h_{t-1} for t = 0 .. T-1, i.e. the sequence
    shifted one step later with the zero initial state first. (batch, T, H)."""
    out = np.zeros_like(seq)
    out[:, 1:] = seq[:, :-1]
    return out


def weight_grads(d_w, x, d_ih, h_prev, d_hh):
    """The weights' gradients, each a sum over every step and every batch row:

        dL/dweight_ih = sum_t d_ih_t.T @ x_t        (G*H, I)
        dL/dweight_hh = sum_t d_hh_t.T @ h_{t-1}    (G*H, H)
        dL/dbias_ih = sum_t sum_rows d_ih_t,   dL/dbias_hh = sum_t sum_rows d_hh_t

    d_ih, d_hh (batch, T, G*H): dL/d(x_t @ weight_ih.T + bias_ih) and dL/d(h_{t-1} @
    weight_hh.T + bias_hh) at each step (the same for RNN and LSTM, where the two
    are added; not for GRU's n gate). With the steps as extra rows, each sum over t
    is a single matrix product."""
    def rows(a):
        return a.reshape(-1, a.shape[-1])                         # (batch*T, features)
    np.matmul(rows(d_ih).T, rows(x), out=d_w.ih)                  # (G*H, I)
    np.matmul(rows(d_hh).T, rows(h_prev), out=d_w.hh)             # (G*H, H)
    if d_w.b_ih is not None:
        rows(d_ih).sum(axis=0, out=d_w.b_ih)                      # (G*H,)
        rows(d_hh).sum(axis=0, out=d_w.b_hh)                      # (G*H,)
