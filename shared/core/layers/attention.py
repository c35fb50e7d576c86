"""MultiHeadAttention: self-attention over the positions of a sequence, as
``torch.nn.MultiheadAttention(E, num_heads, bias=bias, batch_first=True)`` computes
``mha(x, x, x, need_weights=False)[0]`` (with ``attn_mask`` torch's causal mask when
``causal``).

Mask convention. The only mask is ``causal``: position t attends to positions
s <= t. Nothing else is offered (no key padding mask, no user mask), so the
diagonal is always allowed and **no query row is ever fully masked**: every
softmax row has a finite maximum and sums to 1. The frameworks disagree on what
a boolean mask means (``torch.nn.MultiheadAttention``'s ``attn_mask``: True =
blocked; ``F.scaled_dot_product_attention``, ``jax.nn.dot_product_attention``,
flax and Keras: True = attend) and on what a fully masked row gives (NaN, 0 or
the mean of v, layer-traps.md §8); with only ``causal``, none of that can arise.
Every backend writes the blocked scores as -inf before the softmax, so their
weights are exactly 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape, draw_weight_and_bias
from nnparity.shared.core.validation import check_bool, check_count, fail

#: the most heads (keeps every shape a small int)
MAX_HEADS = 2**24


@dataclass(frozen=True)
class MultiHeadAttention(Layer):
    """(batch, T, E) -> (batch, T, E), self-attention with ``num_heads`` heads of
    size d = E / num_heads (E from the input shape (T, E); it must divide by
    ``num_heads``)::

        [q | k | v] = x @ in_proj_weight.T + in_proj_bias          (batch, T, 3E)
        q, k, v -> (batch, heads, T, d)      head h is columns h*d .. (h+1)*d - 1
        s = (q @ k^T) * (1 / sqrt(d))                              (batch, heads, T, T)
        s[..., t, u] = -inf for u > t        (only when ``causal``)
        p = softmax(s) over the last axis, written exp(s - max) / sum  (stable)
        o = p @ v, heads concatenated back                         (batch, T, E)
        y = o @ out_proj.weight.T + out_proj.bias                  (batch, T, E)

    as ``torch.nn.MultiheadAttention(E, num_heads, bias=bias, batch_first=True)``
    called ``mha(x, x, x, need_weights=False)`` (with ``causal``, ``attn_mask`` is
    torch's boolean upper triangle, True = blocked). Every backend computes it in
    the input's dtype throughout: no float32 softmax inside a float64 run (as
    ``jax.nn.dot_product_attention`` has; layer-traps.md X2). See the module
    docstring for the mask convention: no row is ever fully masked.

    Parameters, named and laid out as torch's state dict (its packed layout):
    ``in_proj_weight`` (3E, E), the query, key and value projections stacked in
    that order; ``in_proj_bias`` (3E,); ``out_proj.weight`` (E, E);
    ``out_proj.bias`` (E,). With ``bias=False`` the two biases are absent, as in
    torch. The flat names are torch's ``nn.Sequential`` keys, e.g.
    ``"0.in_proj_weight"`` and ``"0.out_proj.weight"`` (a dot inside the name).

    Init rules, each weight matrix with torch's fans of that matrix (fan_in its
    columns, fan_out its rows: (E, 3E) for ``in_proj_weight``, (E, E) for
    ``out_proj.weight``), ``in_proj_weight`` drawn first; biases 0 under every rule:

    - ``torch_default``: as torch initialises ``MultiheadAttention``:
      ``in_proj_weight`` xavier-uniform, U[-a, a) with a = sqrt(6 / (E + 3E));
      ``out_proj.weight`` as ``nn.Linear``'s default, U[-b, b) with b = 1/sqrt(E);
      ``in_proj_bias`` and ``out_proj.bias`` 0 (torch zeroes both after drawing).
    - ``uniform_fan_in``, ``xavier_uniform``, ``he_normal``, ``zeros``: Dense's
      rules (``draw_weight_and_bias``) on each weight matrix with its fans.

    Fields: ``num_heads`` (int >= 1, dividing E), ``causal`` (bool, default
    False; not a torch constructor argument: torch takes the mask per call),
    ``bias`` (bool, default True, torch's).
    """

    num_heads: int
    causal: bool = False
    bias: bool = True
    kind: ClassVar[str] = "multi_head_attention"

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_heads", check_count(
            "MultiHeadAttention.num_heads", self.num_heads, 1, MAX_HEADS, "2**24"))
        object.__setattr__(self, "causal", check_bool("MultiHeadAttention.causal", self.causal))
        object.__setattr__(self, "bias", check_bool("MultiHeadAttention.bias", self.bias))

    def check_input(self, input_shape: Shape, label: str) -> None:
        if len(input_shape) != 2:
            fail(label, input_shape, "2 axes (T, E) per sample: MultiHeadAttention takes "
                 "(batch, T, E), batch first")
        embed = input_shape[1]
        if embed % self.num_heads:
            fail("MultiHeadAttention.num_heads", self.num_heads,
                 f"a divisor of the embedding size E={embed} (the last axis of the input "
                 f"shape {input_shape}), so that each head has E/num_heads features")

    def head_size(self, input_shape: Shape) -> int:
        """d = E / num_heads, the features per head; the scores are scaled by 1/sqrt(d)."""
        return input_shape[-1] // self.num_heads

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        embed = input_shape[-1]
        if not self.bias:
            return {"in_proj_weight": (3 * embed, embed), "out_proj.weight": (embed, embed)}
        return {"in_proj_weight": (3 * embed, embed), "in_proj_bias": (3 * embed,),
                "out_proj.weight": (embed, embed), "out_proj.bias": (embed,)}

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        """See the class docstring: each weight matrix by ``rule`` with its own fans
        (``torch_default``: xavier-uniform, then nn.Linear's U(+-1/sqrt(E))), biases 0."""
        embed = input_shape[-1]
        in_rule, out_rule = ("xavier_uniform", "torch_default") if rule == "torch_default" \
            else (rule, rule)
        in_proj = draw_weight_and_bias(in_rule, rng, (3 * embed, embed), (embed, 3 * embed),
                                       bias=False)["weight"]
        out_proj = draw_weight_and_bias(out_rule, rng, (embed, embed), (embed, embed),
                                        bias=False)["weight"]
        drawn = {"in_proj_weight": in_proj, "in_proj_bias": np.zeros(3 * embed),
                 "out_proj.weight": out_proj, "out_proj.bias": np.zeros(embed)}
        return {name: drawn[name] for name in self.param_shapes(input_shape)}
