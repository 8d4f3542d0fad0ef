"""ViT image encoder that runs over the visible patches only (MAE encoder)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from multimae_jax.models.patch_masking import PatchMask
from multimae_jax.models.patches import patchify
from multimae_jax.models.position_embeddings import sincos_2d
from multimae_jax.models.transformer import TransformerStack


class VitEncoder(nn.Module):
    """Patch embedding, fixed 2-D sin-cos positions, a CLS token and a transformer over visible patches."""

    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, patch_mask: PatchMask) -> jnp.ndarray:
        """Encode the visible patches.

        Args:
          images: float [batch, height, width, 3], normalised; height and width divisible by patch_size. Any size
            works with the same parameters because the position embeddings are computed for the actual grid.
          patch_mask: which patches are visible (`ids_keep` [batch, num_visible]).

        Returns:
          [batch, 1 + num_visible, width]: the CLS token followed by the visible patch tokens.
        """
        batch, height, width, _ = images.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not divisible by patch size {self.patch_size}")
        grid_height, grid_width = height // self.patch_size, width // self.patch_size

        # A dense layer on flattened patches equals a stride-patch_size convolution and is faster on CPU.
        tokens = nn.Dense(self.width, dtype=self.dtype, name="patch_embedding")(patchify(images, self.patch_size))
        tokens = tokens + jnp.asarray(sincos_2d(self.width, grid_height, grid_width), tokens.dtype)[None]
        tokens = jnp.take_along_axis(tokens, patch_mask.ids_keep[:, :, None], axis=1)

        cls_token = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, self.width))
        cls_token = jnp.broadcast_to(cls_token.astype(tokens.dtype), (batch, 1, self.width))
        tokens = jnp.concatenate([cls_token, tokens], axis=1)
        transformer = TransformerStack(self.depth, self.num_heads, self.mlp_ratio, dtype=self.dtype, name="transformer")
        return transformer(tokens)
