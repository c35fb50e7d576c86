"""nnparity.shared: the network specification, data, initialisation, tolerance
policy and parity harness that every backend shares. Imports NumPy only."""
from .activations import ACTIVATIONS
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import Dataset, notebook_data
from .datasets import load_dataset
from .divergence import DivergenceError
from .harness import BackendParity, ParityReport, StepDifference, compare
from .init import init_params
from .optimizers import SGD, Adam, AdamW, RMSprop
from .spec import NetworkSpec, notebook_spec
from .tolerance import POLICY, Tolerance
from .validation import InputTypeError, InputValueError, MissingFrameworkError

__all__ = [
    "ACTIVATIONS", "Adam", "AdamW", "BackendParity", "Checkpoint", "Dataset", "DivergenceError",
    "InputTypeError",
    "InputValueError", "MissingFrameworkError", "NetworkSpec", "POLICY", "ParityReport",
    "RMSprop", "SGD", "StepDifference", "Tolerance", "compare", "init_params", "load_checkpoint", "load_dataset", "notebook_data",
    "notebook_spec", "save_checkpoint",
]
