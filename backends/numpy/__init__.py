"""The NumPy backend: the reference implementation, written like the notebook.

Every layer kind has a forward pass and, beside it, a hand-written backward
pass (``layers/``); ``network.py`` chains them, ``train.py`` is the training
loop, ``optimizers.py`` the update rules in place.
"""
from .activations import activation_with_grad
from .losses import loss_with_grad
from .network import predict
from .train import step, steps, train

__all__ = ["activation_with_grad", "loss_with_grad", "predict", "step", "steps", "train"]
