"""Pre-norm transformer blocks shared by the image, text, fusion and decoder stacks."""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


class MlpBlock(nn.Module):
    """Two dense layers with a GELU between them."""

    hidden_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        width = x.shape[-1]
        x = nn.Dense(self.hidden_dim, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform(), name="fc1")(x)
        x = nn.gelu(x, approximate=False)
        return nn.Dense(width, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform(), name="fc2")(x)


class TransformerBlock(nn.Module):
    """Self-attention and MLP, each behind a LayerNorm and added to the residual stream."""

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, attention_mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
        """Apply the block.

        Args:
          x: [batch, tokens, width].
          attention_mask: optional bool [batch, 1, tokens, tokens] (True where a query may attend to a key).
        """
        width = x.shape[-1]
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm1")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            name="attention",
        )(y, y, mask=attention_mask)
        x = x + y

        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm2")(x)
        y = MlpBlock(int(width * self.mlp_ratio), dtype=self.dtype, name="mlp")(y)
        return x + y


class TransformerStack(nn.Module):
    """`depth` transformer blocks followed by a final LayerNorm."""

    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, padding_mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
        """Apply the stack.

        Args:
          x: [batch, tokens, width].
          padding_mask: optional [batch, tokens], nonzero for real tokens. Padding tokens are never attended to;
            their own outputs are computed but meaningless.
        """
        attention_mask = None
        if padding_mask is not None:
            attention_mask = nn.make_attention_mask(jnp.ones_like(padding_mask, bool), padding_mask > 0)
        for index in range(self.depth):
            block = TransformerBlock(self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block{index}")
            x = block(x, attention_mask)
        return nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="final_norm")(x)
