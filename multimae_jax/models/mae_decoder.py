"""MAE decoder: mask tokens in place of hidden patches, patch order restored, pixels predicted."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from multimae_jax.models.patch_masking import PatchMask
from multimae_jax.models.position_embeddings import sincos_2d
from multimae_jax.models.transformer import TransformerStack


class MaeDecoder(nn.Module):
    """A light transformer that predicts the pixels of every patch from the encoded visible ones."""

    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jnp.ndarray, patch_mask: PatchMask, grid_height: int,
                 grid_width: int) -> jnp.ndarray:
        """Predict patches.

        Args:
          tokens: [batch, 1 + num_visible, encoder_width], a CLS token then the visible patches in the order of
            patch_mask.ids_keep.
          patch_mask: the mask the encoder used.
          grid_height, grid_width: the patch grid of the image.

        Returns:
          float32 [batch, grid_height * grid_width, patch_size * patch_size * 3], in grid order.
        """
        batch = tokens.shape[0]
        num_patches = grid_height * grid_width
        num_visible = tokens.shape[1] - 1

        tokens = nn.Dense(self.width, dtype=self.dtype, name="embedding")(tokens)
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.width))
        mask_tokens = jnp.broadcast_to(mask_token.astype(tokens.dtype), (batch, num_patches - num_visible, self.width))

        # Visible tokens followed by mask tokens are in shuffled order; ids_restore brings them back to grid order.
        patch_tokens = jnp.concatenate([tokens[:, 1:], mask_tokens], axis=1)
        patch_tokens = jnp.take_along_axis(patch_tokens, patch_mask.ids_restore[:, :, None], axis=1)
        patch_tokens = patch_tokens + jnp.asarray(sincos_2d(self.width, grid_height, grid_width), tokens.dtype)[None]
        tokens = jnp.concatenate([tokens[:, :1], patch_tokens], axis=1)

        transformer = TransformerStack(self.depth, self.num_heads, self.mlp_ratio, dtype=self.dtype, name="transformer")
        tokens = transformer(tokens)
        pixels = nn.Dense(self.patch_size * self.patch_size * 3, dtype=self.dtype, name="prediction")(tokens[:, 1:])
        return pixels.astype(jnp.float32)
