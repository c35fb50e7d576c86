"""The PyTorch backend: autograd for the gradients, the update rules by hand
under ``torch.no_grad()``; no ``torch.optim``, no ``nn.Module``.

Every layer kind has a forward pass (``layers/``); ``network.py`` chains them,
``train.py`` is the training loop, ``optimizers.py`` the update rules in place.
"""
from .activations import activation_with_grad
from .losses import loss_with_grad
from .network import predict
from .train import step, steps, train

__all__ = ["activation_with_grad", "loss_with_grad", "predict", "step", "steps", "train"]
