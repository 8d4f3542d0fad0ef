"""MAE pixel reconstruction loss on the masked patches."""

import jax.numpy as jnp

from multimae_jax.models.patches import patchify

NORM_PIX_EPSILON = 1e-6


def normalized_patch_targets(patches: jnp.ndarray) -> jnp.ndarray:
    """Normalise each patch to zero mean and unit variance over its own pixels (MAE's norm_pix_loss)."""
    mean = patches.mean(axis=-1, keepdims=True)
    variance = patches.var(axis=-1, keepdims=True)
    return (patches - mean) / jnp.sqrt(variance + NORM_PIX_EPSILON)


def masked_patch_errors(pixel_predictions: jnp.ndarray, images: jnp.ndarray, patch_size: int,
                        norm_pix_loss: bool = True) -> jnp.ndarray:
    """Return the float32 [batch, num_patches] mean squared error of every patch's pixels.

    Args:
      pixel_predictions: float [batch, num_patches, patch_size**2 * 3], in grid order.
      images: float [batch, height, width, 3], the normalised input images.
      patch_size: patch side in pixels.
      norm_pix_loss: compare against per-patch normalised targets.
    """
    targets = patchify(images.astype(jnp.float32), patch_size)
    if norm_pix_loss:
        targets = normalized_patch_targets(targets)
    return jnp.mean((pixel_predictions.astype(jnp.float32) - targets) ** 2, axis=-1)


def mae_loss(pixel_predictions: jnp.ndarray, images: jnp.ndarray, mask: jnp.ndarray, patch_size: int,
             norm_pix_loss: bool = True) -> jnp.ndarray:
    """Mean squared error over the pixels of the masked patches only.

    Args:
      pixel_predictions, images, patch_size, norm_pix_loss: as for `masked_patch_errors`.
      mask: float [batch, num_patches], 1 for masked patches.

    Returns:
      float32 scalar: the per-patch mean squared error averaged over all masked patches of the batch.
    """
    per_patch = masked_patch_errors(pixel_predictions, images, patch_size, norm_pix_loss)
    return jnp.sum(per_patch * mask) / jnp.maximum(jnp.sum(mask), 1.0)
