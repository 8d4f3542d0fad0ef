"""One model class for every task: the encoders, heads and decoders a task combines, and how data flows through them.

A task (see `multimae_jax/tasks/`) switches components on by giving their sizes:

- image MAE: image encoder + MAE decoder;
- text MLM: text encoder + MLM head;
- MMAE: both of these side by side, plus contrastive projections of the two encoders' CLS tokens;
- fusion MAE: the MMAE components, with a fusion transformer between the encoders and the decoder and MLM head.
"""

from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax.numpy as jnp

from multimae_jax.models.contrastive_head import ContrastiveProjection, LogitScale
from multimae_jax.models.fusion_encoder import FusionEncoder
from multimae_jax.models.mae_decoder import MaeDecoder
from multimae_jax.models.mlm_head import MlmHead
from multimae_jax.models.patch_masking import PatchMask, full_patch_mask
from multimae_jax.models.text_encoder import TextEncoder
from multimae_jax.models.vit_encoder import VitEncoder


class StackSize(NamedTuple):
    """Width, depth and attention heads of one transformer stack."""

    width: int
    depth: int
    num_heads: int


class MultimodalMae(nn.Module):
    """Image and text encoders with optional fusion transformer, MAE decoder, MLM head and contrastive heads.

    A component exists when its size is given: `image_stack` (ViT encoder over the visible patches), `text_stack`
    (text encoder), `decoder_stack` (MAE decoder, which needs the image encoder), `use_mlm` (MLM head, which needs
    the text encoder), `embed_dim` > 0 (contrastive projections and temperature) and `fusion_stack` (fusion
    transformer). The last two need both encoders. Parameter names do not depend on which other components
    exist, so the encoders of one task's checkpoint have the same paths as in another's.

    Data flow of the training pass:
      - the image encoder reads the visible patches only;
      - the contrastive embeddings come from the CLS tokens of the image encoder (visible patches, as in FLIP)
        and of the text encoder run on the uncorrupted caption;
      - with MLM, the text encoder runs a second time on the corrupted caption;
      - with fusion, the image tokens and the text tokens (corrupted with MLM, else uncorrupted) are fused, and
        the decoder and MLM head read the fused tokens; without fusion they read the encoders' tokens.
    """

    patch_size: int = 16
    vocab_size: int = 0
    max_text_length: int = 0
    image_stack: Optional[StackSize] = None
    text_stack: Optional[StackSize] = None
    fusion_stack: Optional[StackSize] = None
    decoder_stack: Optional[StackSize] = None
    use_mlm: bool = False
    embed_dim: int = 0
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @property
    def has_images(self) -> bool:
        return self.image_stack is not None

    @property
    def has_text(self) -> bool:
        return self.text_stack is not None

    @property
    def has_contrastive(self) -> bool:
        return self.embed_dim > 0

    def setup(self):
        needs_both = [name for name, wanted in (("fusion", self.fusion_stack is not None),
                                                ("contrastive heads", self.has_contrastive)) if wanted]
        if needs_both and not (self.has_images and self.has_text):
            raise ValueError(f"{' and '.join(needs_both)} need both an image and a text encoder")
        if self.decoder_stack is not None and not self.has_images:
            raise ValueError("an MAE decoder needs an image encoder")
        if self.use_mlm and not self.has_text:
            raise ValueError("an MLM head needs a text encoder")
        if self.has_text and (self.vocab_size < 1 or self.max_text_length < 1):
            raise ValueError(f"a text encoder needs vocab_size and max_text_length >= 1, got {self.vocab_size} and "
                             f"{self.max_text_length}")

        if self.has_images:
            self.image_encoder = VitEncoder(self.patch_size, *self.image_stack, self.mlp_ratio, dtype=self.dtype)
        if self.has_text:
            self.text_encoder = TextEncoder(self.vocab_size, self.max_text_length, *self.text_stack, self.mlp_ratio,
                                            dtype=self.dtype)
        if self.fusion_stack is not None:
            self.fusion_encoder = FusionEncoder(*self.fusion_stack, self.mlp_ratio, dtype=self.dtype)
        if self.decoder_stack is not None:
            self.decoder = MaeDecoder(self.patch_size, *self.decoder_stack, self.mlp_ratio, dtype=self.dtype)
        if self.use_mlm:
            self.mlm_head = MlmHead(self.vocab_size, dtype=self.dtype)
        if self.has_contrastive:
            self.image_projection = ContrastiveProjection(self.embed_dim)
            self.text_projection = ContrastiveProjection(self.embed_dim)
            self.logit_scale = LogitScale()

    def embed_image(self, images: jnp.ndarray) -> jnp.ndarray:
        """Return unit-norm float32 [batch, embed_dim] embeddings of whole (unmasked) images."""
        self._require(self.has_contrastive, "embed_image needs contrastive heads")
        num_patches = (images.shape[1] // self.patch_size) * (images.shape[2] // self.patch_size)
        tokens = self.image_encoder(images, full_patch_mask(images.shape[0], num_patches))
        return self.image_projection(tokens[:, 0])

    def embed_text(self, text_ids: jnp.ndarray, text_mask: jnp.ndarray) -> jnp.ndarray:
        """Return unit-norm float32 [batch, embed_dim] embeddings of captions."""
        self._require(self.has_contrastive, "embed_text needs contrastive heads")
        return self.text_projection(self.text_encoder(text_ids, text_mask)[:, 0])

    def predict_pixels(self, images: jnp.ndarray, patch_mask: PatchMask, text_ids: Optional[jnp.ndarray] = None,
                       text_mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
        """Return the decoder's float32 [batch, num_patches, patch_size**2 * 3] predictions for masked images.

        With fusion, the uncorrupted captions `text_ids` and `text_mask` are fused with the image; without it
        they are not needed.
        """
        self._require(self.decoder_stack is not None, "predict_pixels needs an MAE decoder")
        image_tokens = self.image_encoder(images, patch_mask)
        if self.fusion_stack is not None:
            self._require(text_ids is not None and text_mask is not None,
                          "a fusion model's pixel predictions need the captions (text_ids and text_mask)")
            image_tokens, _ = self.fusion_encoder(image_tokens, self.text_encoder(text_ids, text_mask), text_mask)
        return self._decode(image_tokens, images, patch_mask)

    def predict_masked_tokens(self, mlm_input_ids: jnp.ndarray, text_mask: jnp.ndarray,
                              mlm_positions: jnp.ndarray) -> jnp.ndarray:
        """Return float32 [batch, max_predictions, vocab_size] MLM logits from the text encoder alone.

        Only for models without fusion: a fusion model's MLM head reads tokens fused with an image.
        """
        self._require(self.use_mlm and self.fusion_stack is None,
                      "predict_masked_tokens needs an MLM head and no fusion")
        return self.mlm_head(self.text_encoder(mlm_input_ids, text_mask), mlm_positions)

    def __call__(
        self,
        images: Optional[jnp.ndarray] = None,
        text_ids: Optional[jnp.ndarray] = None,
        text_mask: Optional[jnp.ndarray] = None,
        patch_mask: Optional[PatchMask] = None,
        mlm_input_ids: Optional[jnp.ndarray] = None,
        mlm_positions: Optional[jnp.ndarray] = None,
    ) -> dict[str, jnp.ndarray]:
        """Run the training forward pass of the components this model has.

        Args:
          images: float [batch, height, width, 3], normalised; needed with an image encoder.
          text_ids: int32 [batch, length], uncorrupted captions; needed with contrastive heads, or with fusion
            and no MLM.
          text_mask: int [batch, length], 1 for real tokens; needed with a text encoder.
          patch_mask: the MAE mask of each example; needed with an image encoder.
          mlm_input_ids: int32 [batch, length], corrupted captions; needed with an MLM head.
          mlm_positions: int32 [batch, max_predictions], positions to predict; needed with an MLM head.

        Returns:
          dict with the outputs of the components the model has. Contrastive heads give "image_embedding" and
          "text_embedding" (unit norm, [batch, embed_dim]) and "logit_scale" (scalar). A decoder gives
          "pixel_predictions" ([batch, num_patches, patch_size**2 * 3]). An MLM head gives "mlm_logits"
          ([batch, max_predictions, vocab_size]).
        """
        outputs = {}
        image_tokens = text_tokens = None
        if self.has_images:
            self._require(images is not None and patch_mask is not None, "this model needs images and patch_mask")
            image_tokens = self.image_encoder(images, patch_mask)
        if self.has_text:
            self._require(text_mask is not None, "this model needs text_mask")
        if self.has_contrastive or (self.fusion_stack is not None and not self.use_mlm):
            self._require(text_ids is not None, "this model needs the uncorrupted captions, text_ids")
            text_tokens = self.text_encoder(text_ids, text_mask)
        if self.has_contrastive:
            outputs["image_embedding"] = self.image_projection(image_tokens[:, 0])
            outputs["text_embedding"] = self.text_projection(text_tokens[:, 0])
            outputs["logit_scale"] = self.logit_scale()
        if self.use_mlm:
            self._require(mlm_input_ids is not None and mlm_positions is not None,
                          "an MLM head needs mlm_input_ids and mlm_positions")
            text_tokens = self.text_encoder(mlm_input_ids, text_mask)

        if self.fusion_stack is not None:
            image_tokens, text_tokens = self.fusion_encoder(image_tokens, text_tokens, text_mask)
        if self.decoder_stack is not None:
            outputs["pixel_predictions"] = self._decode(image_tokens, images, patch_mask)
        if self.use_mlm:
            outputs["mlm_logits"] = self.mlm_head(text_tokens, mlm_positions)
        return outputs

    def _decode(self, image_tokens: jnp.ndarray, images: jnp.ndarray, patch_mask: PatchMask) -> jnp.ndarray:
        grid_height, grid_width = images.shape[1] // self.patch_size, images.shape[2] // self.patch_size
        return self.decoder(image_tokens, patch_mask, grid_height, grid_width)

    @staticmethod
    def _require(condition: bool, message: str) -> None:
        if not condition:
            raise ValueError(message)
