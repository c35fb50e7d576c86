"""RNN (Elman) in NumPy: the forward pass through time and its backpropagation
through time (BPTT) beside it, the simplest of the three recurrent kinds: read it
first. The stack and the weight sums are shared with LSTM and GRU
(``_recurrent.py``, whose docstring explains the two ideas of BPTT).

One step (torch's equation; h = h_{t-1}, act tanh or relu):

    h_t = act(x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
"""
from __future__ import annotations

import numpy as np

from ..activations import ACTIVATIONS
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
    """One RNN layer over all T steps: x (batch, T, I) -> h (batch, T, H). The cache
    holds x and the outputs: both act's derivatives can be read off h_t (tanh' is
    1 - h_t**2, relu' is h_t > 0)."""
    act, _ = ACTIVATIONS[layer.nonlinearity]
    batch, steps, _ = x.shape
    gi = linear(x, w.ih, w.b_ih)                     # (batch, T, H): every step's x part
    h = np.zeros((batch, layer.hidden_size), x.dtype)  # h_0 = 0          (batch, H)
    out = np.empty_like(gi)                          # h_t per step       (batch, T, H)
    for t in range(steps):
        h = act(gi[:, t] + linear(h, w.hh, w.b_hh))  # (batch, H)
        out[:, t] = h
    return out, (x, out)


def backprop_layer(layer, cache, d_out, w, d_w, need_input):
    """BPTT through one RNN layer. d_out (batch, T, H) is dL/dh_t from above. Going back
    from the last step, with d_h = dL/dh_t in full (from above plus from step t+1):

        h_t = act(a):                da = d_h * act'(a)    (1 - h_t**2, or h_t > 0)
        a = ... + h @ weight_hh.T:   dL/dh_{t-1} = da @ weight_hh

    Every step multiplies the gradient by act' and weight_hh: over many steps it
    shrinks or grows geometrically (the vanishing and exploding gradients LSTM and
    GRU were designed against). The weights' gradients sum da over the steps
    (``weight_grads``); dL/dx = da @ weight_ih."""
    x, out = cache
    d_a = np.empty_like(out)                         # dL/da per step     (batch, T, H)
    d_h = np.zeros_like(out[:, 0])                   # from step T: none  (batch, H)
    for t in reversed(range(out.shape[1])):
        d_h = d_h + d_out[:, t]                      # dL/dh_t in full   (batch, H)
        if layer.nonlinearity == "tanh":
            d_a[:, t] = d_h * (1 - out[:, t] * out[:, t])   # (batch, H)
        else:
            d_a[:, t] = d_h * (out[:, t] > 0)        # relu'(0) = 0       (batch, H)
        d_h = d_a[:, t] @ w.hh                       # dL/dh_{t-1}        (batch, H)
    weight_grads(d_w, x, d_a, previous(out), d_a)
    return d_a @ w.ih if need_input else None       # (batch, T, I)
