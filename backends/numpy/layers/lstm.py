"""LSTM in NumPy: the forward pass through time, keeping the gates and cell states,
and its backpropagation through time (BPTT) beside it. The stack and the weight
sums are shared with RNN and GRU (``_recurrent.py``, whose docstring explains the
two ideas of BPTT).

One step (torch's equations and gate order i, f, g, o; h = h_{t-1}, c = c_{t-1}):

    a = x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh   (batch, 4H)
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
    c_t = f * c + i * g                   the cell state: a sum, not a squashing
    h_t = o * tanh(c_t)

The LSTM carries two states; c_t goes to the next step only, h_t also to the output.
"""
from __future__ import annotations

import numpy as np

from ..activations import sigmoid
from . import _recurrent
from ._recurrent import linear, previous, weight_grads


def forward(layer, params, buffers, x, train):
    """x (batch, T, I) -> y (batch, T, H), or (batch, H) with return_sequence=False."""
    return _recurrent.forward(layer, params, x, run_layer)


def backward(layer, params, cache, d_y, grads, need_input_grad):
    """dL/dy -> dL/dx (batch, T, I); every weight's gradient written into ``grads``."""
    return _recurrent.backward(layer, params, cache, d_y, grads, need_input_grad,
                               backprop_layer)


def run_layer(layer, x, w):
    """One LSTM layer over all T steps: x (batch, T, I) -> h (batch, T, H). The cache
    holds x, the outputs h, the cell states c, tanh(c) and the activated gates."""
    batch, steps, _ = x.shape
    gi = linear(x, w.ih, w.b_ih)                     # (batch, T, 4H): every step's x part
    h = np.zeros((batch, layer.hidden_size), x.dtype)  # h_0 = 0             (batch, H)
    c = np.zeros_like(h)                             # c_0 = 0             (batch, H)
    out = np.empty(gi.shape[:2] + h.shape[1:], x.dtype)  # h_t per step   (batch, T, H)
    cells, tanh_cells = np.empty_like(out), np.empty_like(out)   # c_t, tanh(c_t)
    gates = np.empty_like(gi)                        # i, f, g, o per step (batch, T, 4H)
    for t in range(steps):
        a = gi[:, t] + linear(h, w.hh, w.b_hh)       # (batch, 4H)
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=-1)   # 4 x (batch, H)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c = f * c + i * g                            # (batch, H)
        tanh_c = np.tanh(c)                          # (batch, H)
        h = o * tanh_c                               # (batch, H)
        gates[:, t] = np.concatenate([i, f, g, o], axis=-1)
        out[:, t], cells[:, t], tanh_cells[:, t] = h, c, tanh_c
    return out, (x, out, cells, tanh_cells, gates)


def backprop_layer(layer, cache, d_out, w, d_w, need_input):
    """BPTT through one LSTM layer. d_out (batch, T, H) is dL/dh_t from above. Going
    back from the last step, with d_h = dL/dh_t in full (from above plus from step
    t+1) and d_c = dL/dc_t from step t+1 (c_t feeds only the next step):

        h_t = o * tanh(c_t):       do = d_h * tanh(c_t)
                                   d_c += d_h * o * (1 - tanh(c_t)**2)
        c_t = f * c + i * g:       di = d_c * g,  df = d_c * c,  dg = d_c * i
                                   dL/dc_{t-1} = d_c * f
        gates:                     da = [di * i(1-i), df * f(1-f), dg * (1-g**2), do * o(1-o)]
        a = ... + h @ weight_hh.T: dL/dh_{t-1} = da @ weight_hh

    x's and h's projections are added, so both get the same da at every step; the
    weights' gradients sum over the steps (``weight_grads``), dL/dx = da @ weight_ih.
    The d_c path crosses each step with a multiplication by f only: the
    "constant error carousel" that lets an LSTM's gradient travel further than an
    RNN's, which crosses a tanh' and a weight_hh at every step."""
    x, out, cells, tanh_cells, gates = cache
    h_prev, c_prev = previous(out), previous(cells)  # h_{t-1}, c_{t-1}   (batch, T, H)
    d_a = np.empty_like(gates)                       # dL/da per step     (batch, T, 4H)
    d_h = np.zeros_like(out[:, 0])                   # from step T: none  (batch, H)
    d_c = np.zeros_like(d_h)                         # (batch, H)
    for t in reversed(range(out.shape[1])):
        i, f, g, o = np.split(gates[:, t], 4, axis=-1)   # 4 x (batch, H)
        tanh_c = tanh_cells[:, t]                    # (batch, H)
        d_h = d_h + d_out[:, t]                      # dL/dh_t in full   (batch, H)
        d_o = d_h * tanh_c                           # (batch, H)
        d_c = d_c + d_h * o * (1 - tanh_c * tanh_c)  # dL/dc_t in full   (batch, H)
        d_i, d_f, d_g = d_c * g, d_c * c_prev[:, t], d_c * i          # (batch, H)
        d_a[:, t] = np.concatenate([d_i * i * (1 - i), d_f * f * (1 - f),
                                    d_g * (1 - g * g), d_o * o * (1 - o)], axis=-1)
        d_c = d_c * f                                # dL/dc_{t-1}        (batch, H)
        d_h = d_a[:, t] @ w.hh                       # dL/dh_{t-1}        (batch, H)
    weight_grads(d_w, x, d_a, h_prev, d_a)
    return d_a @ w.ih if need_input else None       # (batch, T, I)
