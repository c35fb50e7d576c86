"""The benchmark's peers for the sequence models: the row-by-row GRU
(``recipes.digits_gru_spec``) and the transformer block
(``recipes.zen_transformer_spec``), each written as a ``torch.nn`` module the way a
user of torch would, trained by ``peers.torch_adam_loop`` (``torch.optim.Adam``, the
usual zero_grad / forward / backward / step loop) from the same initial parameters
on the same batches as the backends.

A module's ``state_dict`` names are its own (``gru.weight_ih_l0``,
``block.self_attn.in_proj_weight``); each peer maps the backends' flat names to
them (``GRU_NAMES``, ``TRANSFORMER_NAMES``) and returns its trained parameters by
the backends' names, so that ``tests/test_bench.py`` compares them with the torch
backend's under the tolerance policy.
"""
from __future__ import annotations

from typing import Callable

from nnparity.shared.bench.peers import State, recipe_adam, torch_adam_loop
from nnparity.shared.core.data import Dataset
from nnparity.shared.core.recipes import digits_gru_spec, zen_transformer_spec
from nnparity.shared.core.spec import NetworkSpec

#: the backends' flat names -> the GRU peer's (prefixes: ``peers.renamed``)
GRU_NAMES = {"0.": "gru.", "1.": "head."}


def gru_torch_nn(spec: NetworkSpec, data: Dataset) -> State:
    """``torch.nn.GRU(8, 32, batch_first=True)``, its output's last step
    (``output[:, -1]``) -> ``nn.Linear(32, 10)``, ``nn.CrossEntropyLoss``,
    ``torch.optim.Adam``: ``digits_gru_spec``'s network (any dtype, Adam numbers,
    epochs, batch size, seed, shuffle)."""
    import torch
    from torch import nn

    recipe_adam(spec, digits_gru_spec)           # the architecture is written out below

    class RowGRU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(8, 32, batch_first=True)
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            output, _ = self.gru(x)
            return self.head(output[:, -1])

    model = RowGRU().to(getattr(torch, spec.dtype))
    return torch_adam_loop(model, spec, data, nn.CrossEntropyLoss(), GRU_NAMES)


#: the backends' flat names -> the transformer peer's: Embedding, the two Residuals
#: (LayerNorm, attention; LayerNorm, Dense, GELU, Dense) as one block with
#: ``nn.TransformerEncoderLayer``'s attribute names, the final LayerNorm, the head
TRANSFORMER_NAMES = {"0.": "embedding.", "1.layers.0.": "block.norm1.",
                     "1.layers.1.": "block.self_attn.", "2.layers.0.": "block.norm2.",
                     "2.layers.1.": "block.linear1.", "2.layers.3.": "block.linear2.",
                     "3.": "norm.", "4.": "head."}


def transformer_torch_nn(spec: NetworkSpec, data: Dataset) -> State:
    """``zen_transformer_spec``'s network in ``torch.nn`` modules: ``nn.Embedding(45, 32)``,
    a pre-LN block written as ``nn.TransformerEncoderLayer(32, 4, dim_feedforward=128,
    dropout=0.0, activation="gelu", batch_first=True, norm_first=True)`` computes it
    (same attribute names, same forward: ``x + self_attn(norm1(x))``, then
    ``x + linear2(gelu(linear1(norm2(x))))``) but from ``nn.MultiheadAttention(32, 4,
    bias=False, batch_first=True)``, ``nn.LayerNorm`` and ``nn.Linear``, because the
    built-in layer cannot hold this network: its ``bias`` switch drops the biases of
    the attention, both Linears and both LayerNorms together, and the recipe's
    attention has none while its other layers keep theirs. Then ``nn.LayerNorm(32)``
    and ``nn.Linear(32, 45)``; the causal mask is a boolean upper triangle (True =
    blocked, torch's convention) kept as a buffer; ``F.cross_entropy`` over every
    position (logits flattened to (batch * 32, 45)); ``torch.optim.Adam``."""
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812 (torch's idiom)

    recipe_adam(spec, zen_transformer_spec)      # the architecture is written out below
    steps = spec.input_shape[0]                  # 32 characters a window

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(32)
            self.self_attn = nn.MultiheadAttention(32, 4, bias=False, batch_first=True)
            self.norm2 = nn.LayerNorm(32)
            self.linear1 = nn.Linear(32, 128)
            self.linear2 = nn.Linear(128, 32)

        def forward(self, x, mask):
            h = self.norm1(x)
            x = x + self.self_attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))

    class CharTransformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(45, 32)
            self.block = Block()
            self.norm = nn.LayerNorm(32)
            self.head = nn.Linear(32, 45)
            self.register_buffer("mask", torch.ones(steps, steps, dtype=torch.bool).triu(1),
                                 persistent=False)

        def forward(self, tokens):
            return self.head(self.norm(self.block(self.embedding(tokens), self.mask)))

    def loss_fn(logits, labels):
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())

    model = CharTransformer().to(getattr(torch, spec.dtype))
    return torch_adam_loop(model, spec, data, loss_fn, TRANSFORMER_NAMES)


#: name -> (module that must be installed, trainer): the GRU's and the transformer's peers
GRU_PEERS: dict[str, tuple[str, Callable[[NetworkSpec, Dataset], State]]] = {
    "torch.nn.GRU + torch.optim": ("torch", gru_torch_nn),
}
TRANSFORMER_PEERS: dict[str, tuple[str, Callable[[NetworkSpec, Dataset], State]]] = {
    "torch.nn modules + torch.optim": ("torch", transformer_torch_nn),
}
