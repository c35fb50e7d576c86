"""The JAX backend: a pure loss, ``jax.value_and_grad``, a functional optimizer
update, and the whole run compiled.

Every layer kind has a pure forward pass (``layers/``); ``network.py`` chains
them into ``loss_fn`` and ``train_step``; ``train.py`` is the compiled run.
Every call runs under ``jax.enable_x64(True)`` scoped to the call; the user's
global JAX configuration is never changed.
"""
from .activations import activation_with_grad
from .losses import loss_with_grad
from .network import predict
from .train import step, steps, train

__all__ = ["activation_with_grad", "loss_with_grad", "predict", "step", "steps", "train"]
