"""Embedding: integer tokens to learned vectors, as ``torch.nn.Embedding``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nnparity.shared.core.layers.base import Layer, Shape, draw_weight_and_bias
from nnparity.shared.core.validation import check_count, fail

#: the largest vocabulary and vector size a spec may ask for
MAX_EMBEDDINGS = 2**24


@dataclass(frozen=True)
class Embedding(Layer):
    """Integer tokens (batch, *s) -> (batch, *s, embedding_dim): row ``x`` of ``weight``
    (num_embeddings, embedding_dim) for each token x, as ``torch.nn.Embedding``.

    Tokens are the network's input, so an Embedding is the first layer, and the
    data's x is an integer array; every token must lie in [0, num_embeddings),
    which ``train``, ``predict`` and ``compare`` check before any work, in every
    backend (torch raises an IndexError, but ``jnp.take`` returns NaN and
    ``w[x]`` in JAX clamps to the last row).

    ``padding_idx`` (None, or a token in [-num_embeddings, num_embeddings), a
    negative one counted from the end and stored as the row it names): that row
    gets no gradient, so it stays as it started, and it starts at zeros, as in
    torch. Its forward value is the row's (torch does not zero it on lookup).

    The gradient of ``weight`` adds every occurrence of a token in the batch
    (NumPy's ``np.add.at``; ``dW[x] += g`` would keep only one of repeated tokens).

    Init rules: ``torch_default`` draws the weight N(0, 1), as torch; the other
    rules treat it as a (num_embeddings, embedding_dim) matrix whose fans are
    torch's: fan_in = embedding_dim, fan_out = num_embeddings. torch's
    ``max_norm``, ``scale_grad_by_freq`` and ``sparse`` are not offered.
    """

    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None
    kind: ClassVar[str] = "embedding"
    takes_tokens: ClassVar[bool] = True

    def __post_init__(self) -> None:
        n = check_count("Embedding.num_embeddings", self.num_embeddings, 1, MAX_EMBEDDINGS,
                        "2**24")
        object.__setattr__(self, "num_embeddings", n)
        object.__setattr__(self, "embedding_dim",
                           check_count("Embedding.embedding_dim", self.embedding_dim, 1,
                                       MAX_EMBEDDINGS, "2**24"))
        if self.padding_idx is not None:
            index = check_count("Embedding.padding_idx", self.padding_idx, -n, n - 1,
                                "num_embeddings - 1")
            object.__setattr__(self, "padding_idx", index % n)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.embedding_dim)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"weight": (self.num_embeddings, self.embedding_dim)}

    def fans(self, input_shape: Shape) -> tuple[int, int]:
        return self.embedding_dim, self.num_embeddings

    def init_params(self, rule: str, rng: np.random.RandomState,
                    input_shape: Shape) -> dict[str, np.ndarray]:
        shape = (self.num_embeddings, self.embedding_dim)
        if rule == "torch_default":
            weight = rng.randn(*shape)
        else:
            weight = draw_weight_and_bias(rule, rng, shape, self.fans(input_shape),
                                          bias=False)["weight"]
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0.0
        return {"weight": weight}

    def check_tokens(self, name: str, x: Any) -> None:
        """Raise unless x is an integer array of tokens in [0, num_embeddings)."""
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu":
            fail(f"{name}.dtype", x.dtype.name if isinstance(x, np.ndarray) else type(x).__name__,
                 "integer tokens (the network starts with an Embedding)", TypeError)
        if x.size and (x.min() < 0 or x.max() >= self.num_embeddings):
            bad = np.argwhere((x < 0) | (x >= self.num_embeddings))[0]
            fail(f"{name}[{', '.join(str(int(i)) for i in bad)}]", int(x[tuple(bad)]),
                 f"a token in [0, {self.num_embeddings}) (Embedding.num_embeddings="
                 f"{self.num_embeddings})")
