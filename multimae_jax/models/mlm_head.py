"""Masked-language-model head evaluated at the selected positions only."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class MlmHead(nn.Module):
    """Dense, GELU and LayerNorm transform, then the vocabulary projection, at gathered positions."""

    vocab_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jnp.ndarray, positions: jnp.ndarray) -> jnp.ndarray:
        """Predict tokens.

        Args:
          tokens: [batch, length, width], fused text tokens.
          positions: int32 [batch, max_predictions], positions to predict.

        Returns:
          float32 logits [batch, max_predictions, vocab_size]. Gathering first keeps the vocabulary projection at
          batch * max_predictions rows instead of batch * length.
        """
        width = tokens.shape[-1]
        selected = jnp.take_along_axis(tokens, positions[:, :, None], axis=1)
        selected = nn.Dense(width, dtype=self.dtype, name="transform")(selected)
        selected = nn.gelu(selected, approximate=False)
        selected = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="transform_norm")(selected)
        logits = nn.Dense(self.vocab_size, dtype=self.dtype, name="output")(selected)
        return logits.astype(jnp.float32)
