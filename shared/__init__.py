"""nnparity.shared: what every backend shares, and the tools above the backends.

Importing this package loads NumPy and ``nnparity.shared.core`` only: the
network specification and its layers, data, initialisation, activations,
losses, optimizers, validation and the tolerance policy. The parts that run
backends (``parity``: the harness; ``io``: checkpoints and files; ``report``;
``cli``) are separate subpackages; their public names are importable from here
too and load on first use (``from nnparity.shared import compare``).
"""
from __future__ import annotations

import importlib
from typing import Any

from nnparity.shared.core.activations import ACTIVATIONS
from nnparity.shared.core.checkpoint import Checkpoint
from nnparity.shared.core.data import Dataset, notebook_data
from nnparity.shared.core.datasets import load_dataset
from nnparity.shared.core.divergence import DivergenceError
from nnparity.shared.core.init import init_model_state, init_params
from nnparity.shared.core.layers import Activation, Dense, Layer
from nnparity.shared.core.layers.attention import MultiHeadAttention
from nnparity.shared.core.layers.batch_norm import BatchNorm
from nnparity.shared.core.layers.conv import Conv1d, Conv2d
from nnparity.shared.core.layers.dropout import Dropout
from nnparity.shared.core.layers.embedding import Embedding
from nnparity.shared.core.layers.flatten import Flatten
from nnparity.shared.core.layers.norm import LayerNorm, RMSNorm
from nnparity.shared.core.layers.pool import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from nnparity.shared.core.layers.recurrent import GRU, LSTM, RNN
from nnparity.shared.core.layers.residual import Residual
from nnparity.shared.core.recipes import RECIPES, digits_cnn_spec
from nnparity.shared.core.optimizers import SGD, Adam, AdamW, OptimizerState, RMSprop
from nnparity.shared.core.spec import NetworkSpec, notebook_spec
from nnparity.shared.core.tolerance import POLICY, Tolerance
from nnparity.shared.core.tree import flat_names, from_flat, to_flat
from nnparity.shared.core.validation import InputTypeError, InputValueError, MissingFrameworkError

#: names of the upper subpackages, loaded on first access (they import the backends)
_LAZY = {
    "compare": "nnparity.shared.parity.harness",
    "BackendParity": "nnparity.shared.parity.harness",
    "ParityReport": "nnparity.shared.parity.harness",
    "StepDifference": "nnparity.shared.parity.harness",
    "load_checkpoint": "nnparity.shared.io.checkpoint",
    "save_checkpoint": "nnparity.shared.io.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnparity.shared' has no attribute {name!r}")


__all__ = [
    "Activation", "ACTIVATIONS", "Adam", "AdamW", "AvgPool1d", "AvgPool2d", "BackendParity",
    "BatchNorm", "Checkpoint", "compare", "Conv1d", "Conv2d", "Dataset", "Dense",
    "digits_cnn_spec", "DivergenceError", "Dropout", "Embedding", "flat_names", "Flatten",
    "from_flat", "GRU", "init_model_state", "init_params", "InputTypeError", "InputValueError",
    "Layer", "LayerNorm", "load_checkpoint", "load_dataset", "LSTM", "MaxPool1d", "MaxPool2d",
    "MissingFrameworkError", "MultiHeadAttention", "NetworkSpec", "notebook_data",
    "notebook_spec", "OptimizerState", "ParityReport", "POLICY", "RECIPES", "RMSNorm",
    "RMSprop", "RNN", "Residual", "save_checkpoint", "SGD", "StepDifference", "to_flat",
    "Tolerance",
]
