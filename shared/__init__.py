"""nnparity.shared: the network specification, data, initialisation, tolerance
policy and parity harness that every backend shares. Imports NumPy only."""
from .activations import ACTIVATIONS
from .data import Dataset, notebook_data
from .harness import BackendParity, ParityReport, compare
from .init import init_params
from .optimizers import SGD
from .spec import NetworkSpec, notebook_spec
from .tolerance import POLICY, Tolerance

__all__ = [
    "ACTIVATIONS", "BackendParity", "Dataset", "NetworkSpec", "POLICY", "ParityReport", "SGD",
    "Tolerance", "compare", "init_params", "notebook_data", "notebook_spec",
]
