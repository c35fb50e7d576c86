"""What the recurrent kinds' test modules (``test_layer_{rnn,lstm,gru}.py``) share:
the ``torch.nn`` oracle, small networks for the contract, random parameters for
one layer alone, and a float32 parity run."""
from __future__ import annotations

import numpy as np
from conftest import require
from layer_contract import BACKENDS, data_for
from layer_vjp import backend_against_torch

from nnparity.shared import SGD, NetworkSpec, compare


def torch_recurrent(name: str, layer, input_shape, **options):
    """``torch.nn.<name>`` (RNN, LSTM or GRU; batch_first, zero initial state)
    returning its output sequence (the h's), or its last step with
    return_sequence=False. A subclass, not a wrapper, so that the state_dict keys
    are ``weight_ih_l0``... as ours (a wrapper would prefix them)."""
    import torch

    class Oracle(getattr(torch.nn, name)):
        def forward(self, x):
            out, _ = super().forward(x)                  # zero h0 (and c0)
            return out if layer.return_sequence else out[:, -1]

    return Oracle(input_shape[-1], layer.hidden_size, num_layers=layer.num_layers,
                  bias=layer.bias, batch_first=True, **options)


def network(*layers, init="torch_default", optimizer=None, seed=0, input_shape=(5, 3)):
    """A small network for the contract: (T, I) = (5, 3) by default, batch 4, 2 epochs."""
    return NetworkSpec(input_shape=input_shape, layers=layers, init=init,
                       optimizer=optimizer or SGD(lr=0.05), batch_size=4, epochs=2, seed=seed)


def random_layer(layer, input_shape, dtype, seed=0, batch=4):
    """(params, x, d_y): parameters U(-1, 1) (pre-activations of order 1, no gate
    saturated), x ~ N(0, 1), d_y ~ N(0, 1) shaped like the output, all in ``dtype``."""
    rng = np.random.default_rng(seed)
    params = {name: rng.uniform(-1, 1, shape).astype(dtype)
              for name, shape in layer.param_shapes(input_shape).items()}
    x = rng.standard_normal((batch, *input_shape)).astype(dtype)
    d_y = rng.standard_normal((batch, *layer.output_shape(input_shape))).astype(dtype)
    return params, x, d_y


def assert_matches_torch(backend, layer, input_shape, dtype):
    """One layer with ``random_layer``'s parameters in ``backend``: y and every
    gradient against the torch.nn oracle, under the policy of ``dtype``."""
    params, x, d_y = random_layer(layer, input_shape, dtype)
    difference = backend_against_torch(backend, layer, params, x, d_y)
    assert difference.ok, difference


def assert_float32_parity(spec: NetworkSpec) -> None:
    """``compare`` of the three backends on ``spec`` in float32 for 8 epochs (24
    steps), judged by the float32 policy (rtol 1e-4; measured ~3e-7)."""
    for backend in BACKENDS:
        require(backend)
    spec = spec.replace(dtype="float32", epochs=8)
    report = compare(spec, data_for(spec))
    assert report.ok, str(report)
