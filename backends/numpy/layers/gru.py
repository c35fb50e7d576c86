"""GRU in NumPy: the forward pass through time, keeping the gates, and its
backpropagation through time (BPTT) beside it. The stack and the weight sums are
shared with RNN and LSTM (``_recurrent.py``, whose docstring explains the two ideas
of BPTT).

One step (torch's equations and gate order r, z, n; h = h_{t-1}):

    gi = x_t @ weight_ih.T + bias_ih      (batch, 3H) = [gi_r, gi_z, gi_n]
    gh = h @ weight_hh.T + bias_hh        (batch, 3H) = [gh_r, gh_z, gh_n]
    r = sigmoid(gi_r + gh_r)              reset gate
    z = sigmoid(gi_z + gh_z)              update gate
    n = tanh(gi_n + r * gh_n)             candidate; r scales gh_n, bias included
    h_t = n + z * (h - n)                 = (1 - z) * n + z * h in exact arithmetic

The last line is written as torch computes it; the other form rounds differently
(in about half of the elements, by an ulp).
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
    """One GRU layer over all T steps: x (batch, T, I) -> h (batch, T, H). The cache
    holds x, the outputs and, per step, r, z, n and gh_n (r multiplies it)."""
    batch, steps, _ = x.shape
    gi = linear(x, w.ih, w.b_ih)                     # (batch, T, 3H): every step's x part
    h = np.zeros((batch, layer.hidden_size), x.dtype)  # h_0 = 0          (batch, H)
    out = np.empty(gi.shape[:2] + h.shape[1:], x.dtype)  # h_t for t = 0 .. T-1 (batch, T, H)
    r, z, n, gh_n = (np.empty_like(out) for _ in range(4))
    for t in range(steps):
        gi_r, gi_z, gi_n = np.split(gi[:, t], 3, axis=-1)                 # 3 x (batch, H)
        gh_r, gh_z, gh_n_t = np.split(linear(h, w.hh, w.b_hh), 3, axis=-1)  # 3 x (batch, H)
        r_t = sigmoid(gi_r + gh_r)                   # (batch, H)
        z_t = sigmoid(gi_z + gh_z)                   # (batch, H)
        n_t = np.tanh(gi_n + r_t * gh_n_t)           # (batch, H)
        h = n_t + z_t * (h - n_t)                    # (batch, H)
        out[:, t], r[:, t], z[:, t], n[:, t], gh_n[:, t] = h, r_t, z_t, n_t, gh_n_t
    return out, (x, out, r, z, n, gh_n)


def backprop_layer(layer, cache, d_out, w, d_w, need_input):
    """BPTT through one GRU layer. d_out (batch, T, H) is dL/dh_t from above (the next
    layer, or the output). Going back from the last step, with d_h = dL/dh_t in full
    (from above, plus what step t+1 sent back):

        h_t = n + z * (h - n):   dn = d_h * (1 - z),   dz = d_h * (h - n),
                                 and d_h * z flows straight to h = h_{t-1}
        n = tanh(a_n):           da_n = dn * (1 - n**2)
        a_n = gi_n + r * gh_n:   dgi_n = da_n,  dgh_n = da_n * r,  dr = da_n * gh_n
        r, z = sigmoid(a_r), sigmoid(a_z):
                                 da_r = dr * r * (1 - r),  da_z = dz * z * (1 - z)
                                 (gi and gh both get da_r and da_z: they are added)
        gh = h @ weight_hh.T + bias_hh:   dL/dh_{t-1} = d_h * z + dgh @ weight_hh

    Then every step's dgi and dgh give the weights' gradients (``weight_grads``) and
    dL/dx = dgi @ weight_ih."""
    x, out, r, z, n, gh_n = cache
    h_prev = previous(out)                           # h_{t-1} at each step (batch, T, H)
    d_gi = np.empty(out.shape[:2] + (3 * out.shape[2],), out.dtype)  # dL/dgi (batch, T, 3H)
    d_gh = np.empty_like(d_gi)                       # dL/dgh per step    (batch, T, 3H)
    d_h = np.zeros_like(out[:, 0])                   # from step T: none  (batch, H)
    for t in reversed(range(out.shape[1])):
        d_h = d_h + d_out[:, t]                      # dL/dh_t in full   (batch, H)
        d_n = d_h * (1 - z[:, t])                    # (batch, H)
        d_z = d_h * (h_prev[:, t] - n[:, t])         # (batch, H)
        d_a_n = d_n * (1 - n[:, t] * n[:, t])        # (batch, H)
        d_r = d_a_n * gh_n[:, t]                     # (batch, H)
        d_a_r = d_r * r[:, t] * (1 - r[:, t])        # (batch, H)
        d_a_z = d_z * z[:, t] * (1 - z[:, t])        # (batch, H)
        d_gi[:, t] = np.concatenate([d_a_r, d_a_z, d_a_n], axis=-1)            # (batch, 3H)
        d_gh[:, t] = np.concatenate([d_a_r, d_a_z, d_a_n * r[:, t]], axis=-1)  # (batch, 3H)
        d_h = d_h * z[:, t] + d_gh[:, t] @ w.hh      # dL/dh_{t-1}, from step t (batch, H)
    weight_grads(d_w, x, d_gi, h_prev, d_gh)
    return d_gi @ w.ih if need_input else None       # (batch, T, I)
