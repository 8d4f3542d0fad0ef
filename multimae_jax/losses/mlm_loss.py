"""Masked-language-model cross-entropy and accuracy over the selected positions."""

import jax.numpy as jnp
import optax


def mlm_loss(logits: jnp.ndarray, labels: jnp.ndarray, weights: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return (mean cross-entropy in nats, accuracy in [0, 1]) over the positions with weight 1.

    Args:
      logits: float [batch, max_predictions, vocab_size].
      labels: int32 [batch, max_predictions].
      weights: float [batch, max_predictions], 0 for padding slots.
    """
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    total_weight = jnp.maximum(weights.sum(), 1.0)
    loss = jnp.sum(losses * weights) / total_weight
    accuracy = jnp.sum((jnp.argmax(logits, axis=-1) == labels) * weights) / total_weight
    return loss, accuracy
