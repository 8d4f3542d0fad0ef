"""BERT-style text encoder with learned token and position embeddings and a padding mask."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from multimae_jax.models.transformer import TransformerStack


class TextEncoder(nn.Module):
    """Token embedding, learned position embedding, LayerNorm and a pre-norm transformer."""

    vocab_size: int
    max_length: int
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    def setup(self):
        self.token_embedding = nn.Embed(
            self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02), name="token_embedding")
        self.position_embedding = self.param(
            "position_embedding", nn.initializers.normal(0.02), (1, self.max_length, self.width))
        self.embedding_norm = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="embedding_norm")
        self.transformer = TransformerStack(self.depth, self.num_heads, self.mlp_ratio, dtype=self.dtype,
                                            name="transformer")

    def __call__(self, text_ids: jnp.ndarray, text_mask: jnp.ndarray) -> jnp.ndarray:
        """Encode token ids.

        Args:
          text_ids: int32 [batch, length], length <= max_length, starting with [CLS].
          text_mask: int [batch, length], 1 for real tokens and 0 for padding.

        Returns:
          [batch, length, width]; position 0 is the [CLS] summary.
        """
        length = text_ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"text length {length} exceeds the encoder's max_length {self.max_length}")
        tokens = self.token_embedding(text_ids) + self.position_embedding[:, :length]
        tokens = self.embedding_norm(tokens.astype(self.dtype))
        return self.transformer(tokens, padding_mask=text_mask)
