"""Symmetric image-text InfoNCE loss (CLIP)."""

from typing import Optional

import jax
import jax.numpy as jnp


def contrastive_loss(image_embeddings: jnp.ndarray, text_embeddings: jnp.ndarray, logit_scale: jnp.ndarray,
                     image_ids: Optional[jnp.ndarray] = None) -> jnp.ndarray:
    """Average of the image-to-text and text-to-image cross-entropies over a batch.

    Under `jax.jit` with the batch sharded over a mesh, the arrays here are the global batch, so every example's
    negatives are all other examples on all devices.

    Args:
      image_embeddings: float [batch, dim], unit norm.
      text_embeddings: float [batch, dim], unit norm; row i describes image row i.
      logit_scale: scalar inverse temperature.
      image_ids: optional int [batch]. Rows that share an image id (one photo sampled with two captions) are all
        positives of each other, with the target probability spread evenly over them. Without it, only the
        diagonal is positive.

    Returns:
      float32 scalar loss in nats.
    """
    logits = logit_scale * jnp.matmul(image_embeddings.astype(jnp.float32), text_embeddings.astype(jnp.float32).T)
    if image_ids is None:
        targets = jnp.eye(logits.shape[0], dtype=jnp.float32)
    else:
        targets = (image_ids[:, None] == image_ids[None, :]).astype(jnp.float32)
    targets = targets / targets.sum(axis=1, keepdims=True)

    image_to_text = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=1), axis=1)
    text_to_image = -jnp.sum(targets.T * jax.nn.log_softmax(logits.T, axis=1), axis=1)
    return 0.5 * (image_to_text.mean() + text_to_image.mean())
