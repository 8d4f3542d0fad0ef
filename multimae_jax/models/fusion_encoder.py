"""Fusion transformer over the joint sequence of image and text tokens."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from multimae_jax.models.transformer import TransformerStack

IMAGE_MODALITY = 0
TEXT_MODALITY = 1


class FusionEncoder(nn.Module):
    """Project both modalities to one width, add modality embeddings and attend over the concatenation."""

    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image_tokens: jnp.ndarray, text_tokens: jnp.ndarray,
                 text_mask: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Fuse the two token sequences.

        Args:
          image_tokens: [batch, image_tokens, image_width], all real (CLS and visible patches).
          text_tokens: [batch, length, text_width].
          text_mask: int [batch, length], 1 for real text tokens; padding is never attended to.

        Returns:
          (fused image tokens [batch, image_tokens, width], fused text tokens [batch, length, width]).
        """
        num_image_tokens = image_tokens.shape[1]
        modality_embedding = self.param("modality_embedding", nn.initializers.normal(0.02), (2, self.width))

        image_tokens = nn.Dense(self.width, dtype=self.dtype, name="image_projection")(image_tokens)
        text_tokens = nn.Dense(self.width, dtype=self.dtype, name="text_projection")(text_tokens)
        image_tokens = image_tokens + modality_embedding[IMAGE_MODALITY].astype(image_tokens.dtype)
        text_tokens = text_tokens + modality_embedding[TEXT_MODALITY].astype(text_tokens.dtype)

        tokens = jnp.concatenate([image_tokens, text_tokens], axis=1)
        image_padding = jnp.ones(image_tokens.shape[:2], text_mask.dtype)
        padding_mask = jnp.concatenate([image_padding, text_mask], axis=1)
        tokens = TransformerStack(self.depth, self.num_heads, self.mlp_ratio, dtype=self.dtype,
                                  name="transformer")(tokens, padding_mask=padding_mask)
        return tokens[:, :num_image_tokens], tokens[:, num_image_tokens:]
