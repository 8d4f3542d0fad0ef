"""The inputs a model needs, built from a batch: patch masks, MLM corruption, and dummy inputs for init."""

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from multimae_jax.models.patch_masking import PatchMask, full_patch_mask, random_patch_mask
from multimae_jax.models.token_masking import MlmTargets, max_mlm_predictions, select_mlm_targets


class TokenIds(NamedTuple):
    """The tokenizer facts the MLM corruption needs."""

    special_ids: tuple[int, ...]
    mask_id: int
    vocab_size: int


class ModelInputs(NamedTuple):
    """Keyword arguments of the model's training pass, with the masks the losses need."""

    kwargs: dict
    patch_mask: Optional[PatchMask]
    mlm_targets: Optional[MlmTargets]


def training_inputs(model, batch: dict, key: jax.Array, mask_ratio: float, mlm_mask_prob: float,
                    token_ids: Optional[TokenIds]) -> ModelInputs:
    """Draw the patch mask and the MLM corruption of one batch and collect the inputs `model` reads.

    Args:
      model: a `MultimodalMae`; its components decide which inputs are built.
      batch: "image" [B, H, W, 3] for models with images; "text_ids" and "text_mask" [B, L] for models with text.
      key: PRNG key of this step; the patch mask and the MLM corruption use independent keys split from it.
      mask_ratio: fraction of patches hidden.
      mlm_mask_prob: fraction of real tokens selected for prediction.
      token_ids: tokenizer facts; required when the model has an MLM head.
    """
    mask_key, mlm_key = jax.random.split(key)
    kwargs = {}
    patch_mask = targets = None
    if model.has_images:
        images = batch["image"]
        num_patches = (images.shape[1] // model.patch_size) * (images.shape[2] // model.patch_size)
        patch_mask = random_patch_mask(mask_key, images.shape[0], num_patches, mask_ratio)
        kwargs.update(images=images, patch_mask=patch_mask)
    if model.has_text:
        kwargs.update(text_ids=batch["text_ids"], text_mask=batch["text_mask"])
    if model.use_mlm:
        if token_ids is None:
            raise ValueError("a model with an MLM head needs the tokenizer's special, mask and vocabulary ids")
        targets = select_mlm_targets(mlm_key, batch["text_ids"], batch["text_mask"], special_ids=token_ids.special_ids,
                                     mask_id=token_ids.mask_id, vocab_size=token_ids.vocab_size,
                                     mask_prob=mlm_mask_prob)
        kwargs.update(mlm_input_ids=targets.input_ids, mlm_positions=targets.positions)
    return ModelInputs(kwargs=kwargs, patch_mask=patch_mask, mlm_targets=targets)


def example_inputs(model, image_size: Optional[int], max_text_length: int) -> dict:
    """Return keyword inputs of one dummy example, enough to initialise every component of `model`."""
    kwargs = {}
    if model.has_images:
        num_patches = (image_size // model.patch_size) ** 2
        kwargs.update(images=jnp.zeros((1, image_size, image_size, 3), jnp.float32),
                      patch_mask=full_patch_mask(1, num_patches))
    if model.has_text:
        text_ids = jnp.zeros((1, max_text_length), jnp.int32)
        kwargs.update(text_ids=text_ids, text_mask=jnp.ones((1, max_text_length), jnp.int32))
        if model.use_mlm:
            positions = jnp.zeros((1, max_mlm_predictions(max_text_length, 0.15)), jnp.int32)
            kwargs.update(mlm_input_ids=text_ids, mlm_positions=positions)
    return kwargs
