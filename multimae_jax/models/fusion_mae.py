"""The fusion MAE: unimodal encoders, a fusion transformer, an MAE decoder, an MLM head and contrastive heads."""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from multimae_jax.models.contrastive_head import ContrastiveProjection, LogitScale
from multimae_jax.models.fusion_encoder import FusionEncoder
from multimae_jax.models.mae_decoder import MaeDecoder
from multimae_jax.models.mlm_head import MlmHead
from multimae_jax.models.patch_masking import PatchMask, full_patch_mask
from multimae_jax.models.text_encoder import TextEncoder
from multimae_jax.models.vit_encoder import VitEncoder


class FusionMae(nn.Module):
    """Image and text encoders whose outputs are fused to reconstruct masked patches and masked tokens.

    The contrastive embeddings come from the unimodal encoders' CLS tokens: the image one from the visible
    patches during training (as in FLIP) and from all patches in evaluation, the text one from the uncorrupted
    caption. When MLM is on, a second text pass over the corrupted caption feeds the fusion transformer.
    """

    patch_size: int
    vocab_size: int
    max_text_length: int
    image_width: int
    image_depth: int
    image_heads: int
    text_width: int
    text_depth: int
    text_heads: int
    fusion_width: int
    fusion_depth: int
    fusion_heads: int
    decoder_width: int
    decoder_depth: int
    decoder_heads: int
    embed_dim: int
    mlp_ratio: float = 4.0
    use_mlm: bool = True
    dtype: Any = jnp.float32

    def setup(self):
        self.image_encoder = VitEncoder(self.patch_size, self.image_width, self.image_depth, self.image_heads,
                                        self.mlp_ratio, dtype=self.dtype)
        self.text_encoder = TextEncoder(self.vocab_size, self.max_text_length, self.text_width, self.text_depth,
                                        self.text_heads, self.mlp_ratio, dtype=self.dtype)
        self.fusion_encoder = FusionEncoder(self.fusion_width, self.fusion_depth, self.fusion_heads, self.mlp_ratio,
                                            dtype=self.dtype)
        self.decoder = MaeDecoder(self.patch_size, self.decoder_width, self.decoder_depth, self.decoder_heads,
                                  self.mlp_ratio, dtype=self.dtype)
        if self.use_mlm:
            self.mlm_head = MlmHead(self.vocab_size, dtype=self.dtype)
        self.image_projection = ContrastiveProjection(self.embed_dim)
        self.text_projection = ContrastiveProjection(self.embed_dim)
        self.logit_scale = LogitScale()

    def embed_image(self, images: jnp.ndarray) -> jnp.ndarray:
        """Return unit-norm float32 [batch, embed_dim] embeddings of whole (unmasked) images."""
        num_patches = (images.shape[1] // self.patch_size) * (images.shape[2] // self.patch_size)
        tokens = self.image_encoder(images, full_patch_mask(images.shape[0], num_patches))
        return self.image_projection(tokens[:, 0])

    def embed_text(self, text_ids: jnp.ndarray, text_mask: jnp.ndarray) -> jnp.ndarray:
        """Return unit-norm float32 [batch, embed_dim] embeddings of captions."""
        return self.text_projection(self.text_encoder(text_ids, text_mask)[:, 0])

    def __call__(
        self,
        images: jnp.ndarray,
        text_ids: jnp.ndarray,
        text_mask: jnp.ndarray,
        patch_mask: PatchMask,
        mlm_input_ids: Optional[jnp.ndarray] = None,
        mlm_positions: Optional[jnp.ndarray] = None,
    ) -> dict[str, jnp.ndarray]:
        """Run the training forward pass.

        Args:
          images: float [batch, height, width, 3], normalised.
          text_ids: int32 [batch, length], uncorrupted captions.
          text_mask: int [batch, length], 1 for real tokens.
          patch_mask: the MAE mask of each example.
          mlm_input_ids: int32 [batch, length], corrupted captions; required when use_mlm.
          mlm_positions: int32 [batch, max_predictions], positions to predict; required when use_mlm.

        Returns:
          dict with "image_embedding" and "text_embedding" (unit norm, [batch, embed_dim]), "logit_scale" (scalar),
          "pixel_predictions" ([batch, num_patches, patch_size**2 * 3]) and, when use_mlm, "mlm_logits"
          ([batch, max_predictions, vocab_size]).
        """
        grid_height, grid_width = images.shape[1] // self.patch_size, images.shape[2] // self.patch_size
        image_tokens = self.image_encoder(images, patch_mask)
        text_tokens = self.text_encoder(text_ids, text_mask)
        outputs = {
            "image_embedding": self.image_projection(image_tokens[:, 0]),
            "text_embedding": self.text_projection(text_tokens[:, 0]),
            "logit_scale": self.logit_scale(),
        }

        if self.use_mlm:
            if mlm_input_ids is None or mlm_positions is None:
                raise ValueError("use_mlm is set, so mlm_input_ids and mlm_positions are required")
            text_tokens = self.text_encoder(mlm_input_ids, text_mask)

        fused_image, fused_text = self.fusion_encoder(image_tokens, text_tokens, text_mask)
        outputs["pixel_predictions"] = self.decoder(fused_image, patch_mask, grid_height, grid_width)
        if self.use_mlm:
            outputs["mlm_logits"] = self.mlm_head(fused_text, mlm_positions)
        return outputs


def build_fusion_mae(model_config, vocab_size: int, max_text_length: int, use_mlm: bool) -> FusionMae:
    """Build the model from the `config.model` section of a fusion config."""
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if model_config.dtype not in dtypes:
        raise ValueError(f"config.model.dtype must be one of {sorted(dtypes)}, got {model_config.dtype!r}")
    return FusionMae(
        patch_size=model_config.patch_size,
        vocab_size=vocab_size,
        max_text_length=max_text_length,
        image_width=model_config.image.width,
        image_depth=model_config.image.depth,
        image_heads=model_config.image.num_heads,
        text_width=model_config.text.width,
        text_depth=model_config.text.depth,
        text_heads=model_config.text.num_heads,
        fusion_width=model_config.fusion.width,
        fusion_depth=model_config.fusion.depth,
        fusion_heads=model_config.fusion.num_heads,
        decoder_width=model_config.decoder.width,
        decoder_depth=model_config.decoder.depth,
        decoder_heads=model_config.decoder.num_heads,
        embed_dim=model_config.embed_dim,
        mlp_ratio=model_config.mlp_ratio,
        use_mlm=use_mlm,
        dtype=dtypes[model_config.dtype],
    )
