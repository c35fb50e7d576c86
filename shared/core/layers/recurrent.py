"""RNN, LSTM and GRU: recurrent layers over a batch-first sequence, as ``torch.nn.RNN``,
``torch.nn.LSTM`` and ``torch.nn.GRU`` with ``batch_first=True`` (torch's equations,
gate order, argument names and parameter names).

A layer maps x (batch, T, I) to the hidden state of its last stacked layer at every
step, (batch, T, H), or with ``return_sequence=False`` to the last step's only,
(batch, H) (torch returns the sequence; ``output[:, -1]`` is that last step). The
state starts at zero (torch's default h0, c0).

Parameters, in torch's ``state_dict`` order, for each stacked layer k = 0, 1, ...:
``weight_ih_l{k}`` (G*H, I for k = 0, else H), ``weight_hh_l{k}`` (G*H, H),
``bias_ih_l{k}`` (G*H,), ``bias_hh_l{k}`` (G*H,) (no biases with ``bias=False``).
G, the gates stacked along the rows, is 1 (RNN), 4 (LSTM: i, f, g, o) or 3 (GRU:
r, z, n). Both biases exist although only their sum matters for RNN and LSTM, as in
torch (Keras and equinox keep one).

Equations (x_t the layer's input at step t, h the state from step t - 1, sigma the
logistic sigmoid; each ``W_i.``/``W_h.`` is a block of rows of weight_ih/weight_hh):

    RNN:  h' = act(W_ih x_t + b_ih + W_hh h + b_hh),   act tanh or relu
    LSTM: i, f, g, o = sigma, sigma, tanh, sigma of the four blocks of
              W_ih x_t + b_ih + W_hh h + b_hh
          c' = f * c + i * g,   h' = o * tanh(c')
    GRU:  r = sigma(W_ir x_t + b_ir + W_hr h + b_hr)
          z = sigma(W_iz x_t + b_iz + W_hz h + b_hz)
          n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn))    (reset after the matmul)
          h' = n + z * (h - n)                               (torch's form, exactly)

Init rules: ``torch_default`` draws every weight and bias U(-1/sqrt(H), 1/sqrt(H))
in state-dict order, as torch's ``reset_parameters``; the others apply to each
weight matrix on its own, with fan_in its columns and fan_out its rows (torch's
``_calculate_fan_in_and_fan_out`` of that matrix), and set the biases to 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape, draw_weight_and_bias
from nnparity.shared.core.validation import check_bool, check_choice, check_count, fail

#: the largest hidden_size (as Dense's units; the spec's cap of 2**32 - 1 parameters
#: bounds a recurrent layer far sooner: G*H*(I + H) of them in the first layer)
MAX_HIDDEN_SIZE = 2**24
#: the most stacked layers in one recurrent layer (the spec's cap on layers)
MAX_NUM_LAYERS = 1024
#: RNN's nonlinearities, torch's names
NONLINEARITIES = ("tanh", "relu")


class _Recurrent:
    """The validation, shapes and init of RNN, LSTM and GRU (``gates`` = G). Not a
    dataclass: each kind declares its fields itself, in its own order (RNN's
    ``nonlinearity`` comes second, as in the task's and torch's signatures)."""

    hidden_size: int
    num_layers: int
    bias: bool
    return_sequence: bool
    kind: ClassVar[str]
    gates: ClassVar[int]

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "hidden_size", check_count(
            f"{name}.hidden_size", self.hidden_size, 1, MAX_HIDDEN_SIZE, "2**24"))
        object.__setattr__(self, "num_layers", check_count(
            f"{name}.num_layers", self.num_layers, 1, MAX_NUM_LAYERS, str(MAX_NUM_LAYERS)))
        object.__setattr__(self, "bias", check_bool(f"{name}.bias", self.bias))
        object.__setattr__(self, "return_sequence",
                           check_bool(f"{name}.return_sequence", self.return_sequence))

    def check_input(self, input_shape: Shape, label: str) -> None:
        name = type(self).__name__
        if len(input_shape) != 2:
            fail(label, input_shape, f"2 axes (T, I), time steps then input features: "
                 f"{name} takes batch-first sequences (batch, T, I), as torch's "
                 f"batch_first=True")

    def output_shape(self, input_shape: Shape) -> Shape:
        if self.return_sequence:
            return (input_shape[0], self.hidden_size)
        return (self.hidden_size,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """torch's state_dict: per stacked layer k, weight_ih_l{k}, weight_hh_l{k},
        then (with ``bias``) bias_ih_l{k}, bias_hh_l{k}."""
        rows, hidden = self.gates * self.hidden_size, self.hidden_size
        shapes: dict[str, Shape] = {}
        for k in range(self.num_layers):
            inputs = input_shape[-1] if k == 0 else hidden
            shapes[f"weight_ih_l{k}"] = (rows, inputs)
            shapes[f"weight_hh_l{k}"] = (rows, hidden)
            if self.bias:
                shapes[f"bias_ih_l{k}"] = (rows,)
                shapes[f"bias_hh_l{k}"] = (rows,)
        return shapes

    def fans(self, input_shape: Shape) -> tuple[int, int]:
        """(fan_in, fan_out) of the first input weight ``weight_ih_l0`` (G*H, I): (I, G*H),
        torch's ``_calculate_fan_in_and_fan_out`` of it. A recurrent layer has several
        weight matrices and ``init_params`` gives each its own fans (columns, rows); this
        is the one that sees the layer's input."""
        return input_shape[-1], self.gates * self.hidden_size

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        """``torch_default``: every tensor U[-b, b), b = 1/sqrt(hidden_size), drawn in
        state-dict order (biases too), as torch's ``RNNBase.reset_parameters``. Any
        other rule: each weight matrix (rows, cols) by ``draw_weight_and_bias`` with
        fans (cols, rows), in state-dict order; biases 0 (nothing drawn for them)."""
        out: dict[str, np.ndarray] = {}
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self.param_shapes(input_shape).items():
            if rule == "torch_default":
                out[name] = (2.0 * rng.rand(*shape) - 1.0) * bound
            elif name.startswith("bias"):
                out[name] = np.zeros(shape)
            else:
                out[name] = draw_weight_and_bias(rule, rng, shape, (shape[1], shape[0]),
                                                 bias=False)["weight"]
        return out


@dataclass(frozen=True)
class RNN(_Recurrent, Layer):
    """(batch, T, I) -> (batch, T, H), or (batch, H) with ``return_sequence=False``, as
    ``torch.nn.RNN(I, hidden_size, num_layers, nonlinearity, bias, batch_first=True)``:

        h_t = act(x_t @ weight_ih.T + bias_ih + h_{t-1} @ weight_hh.T + bias_hh)

    with act ``tanh`` (default) or ``relu`` (its derivative 0 at 0), h_0 = 0, each
    stacked layer reading the previous one's h sequence. Parameters and init: see the
    module docstring (G = 1)."""

    hidden_size: int
    nonlinearity: str = "tanh"
    num_layers: int = 1
    bias: bool = True
    return_sequence: bool = True
    kind: ClassVar[str] = "rnn"
    gates: ClassVar[int] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("RNN.nonlinearity", self.nonlinearity, NONLINEARITIES)


@dataclass(frozen=True)
class LSTM(_Recurrent, Layer):
    """(batch, T, I) -> (batch, T, H), or (batch, H) with ``return_sequence=False``, as
    ``torch.nn.LSTM(I, hidden_size, num_layers, bias, batch_first=True)``: gates
    i, f, g, o stacked in that order along the rows of weight_ih/weight_hh (G = 4),

        a = x_t @ weight_ih.T + bias_ih + h_{t-1} @ weight_hh.T + bias_hh   (batch, 4H)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
        c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

    h_0 = c_0 = 0; the output is h (not c). No forget-gate bias of 1 at init (Keras's
    ``unit_forget_bias``); no projection (torch's ``proj_size``)."""

    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    return_sequence: bool = True
    kind: ClassVar[str] = "lstm"
    gates: ClassVar[int] = 4


@dataclass(frozen=True)
class GRU(_Recurrent, Layer):
    """(batch, T, I) -> (batch, T, H), or (batch, H) with ``return_sequence=False``, as
    ``torch.nn.GRU(I, hidden_size, num_layers, bias, batch_first=True)``: gates
    r, z, n stacked in that order (G = 3; Keras stacks z, r, h),

        r = sigmoid(x_t W_ir.T + b_ir + h W_hr.T + b_hr)
        z = sigmoid(x_t W_iz.T + b_iz + h W_hz.T + b_hz)
        n = tanh(x_t W_in.T + b_in + r * (h W_hn.T + b_hn))   (reset after the matmul,
                                                              Keras's reset_after=True)
        h_t = n + z * (h - n)                                 (torch's form; flax's
                                                              (1 - z) n + z h rounds
                                                              differently)

    h = h_{t-1}, h_0 = 0."""

    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    return_sequence: bool = True
    kind: ClassVar[str] = "gru"
    gates: ClassVar[int] = 3
