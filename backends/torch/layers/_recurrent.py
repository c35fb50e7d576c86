"""What RNN, LSTM and GRU share in torch: the stack of layers and the loop over time.
Each kind's module gives ``step(layer, gi_t, state, weight_hh, bias_hh) -> state``,
one cell written out from tensor operations (``F.linear``, ``sigmoid``, ``tanh``);
autograd differentiates the loop (backpropagation through time) by itself.

``torch.nn.RNN``/``LSTM``/``GRU`` (the tests' oracles) are not used here: their
kernels would make the comparison against them circular.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def forward(layer, params, x, step, n_states=1):
    """x (batch, T, I) -> (batch, T, H), or (batch, H) with return_sequence=False.
    The state is a tuple of ``n_states`` tensors (h,) or (h, c), all zero at first;
    its first entry h is the step's output. The input projections of every step
    are one product before the loop: they do not depend on h."""
    seq = x
    for k in range(layer.num_layers):
        gi = F.linear(seq, params[f"weight_ih_l{k}"], params.get(f"bias_ih_l{k}"))  # (B, T, G*H)
        zeros = seq.new_zeros(seq.shape[0], layer.hidden_size)                   # (B, H)
        state = (zeros,) * n_states
        outputs = []
        for t in range(seq.shape[1]):
            state = step(layer, gi[:, t], state, params[f"weight_hh_l{k}"],
                         params.get(f"bias_hh_l{k}"))
            outputs.append(state[0])                                              # h_t (B, H)
        seq = torch.stack(outputs, dim=1)                                         # (B, T, H)
    return seq if layer.return_sequence else seq[:, -1]
