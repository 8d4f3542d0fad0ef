"""Masked-language-model cross-entropy and accuracy over the selected positions."""

import jax.numpy as jnp
import optax


def mlm_token_losses(logits: jnp.ndarray, labels: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return (cross-entropy in nats, 1.0 where the top prediction is right), each float32 [batch, max_predictions].

    Args:
      logits: float [batch, max_predictions, vocab_size].
      labels: int32 [batch, max_predictions].
    """
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return losses, correct


def mlm_loss(logits: jnp.ndarray, labels: jnp.ndarray, weights: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return (mean cross-entropy in nats, accuracy in [0, 1]) over the positions with weight 1.

    Args:
      logits: float [batch, max_predictions, vocab_size].
      labels: int32 [batch, max_predictions].
      weights: float [batch, max_predictions], 0 for padding slots.
    """
    losses, correct = mlm_token_losses(logits, labels)
    total_weight = jnp.maximum(weights.sum(), 1.0)
    return jnp.sum(losses * weights) / total_weight, jnp.sum(correct * weights) / total_weight
