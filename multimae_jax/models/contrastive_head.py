"""Projection of pooled embeddings into the joint image-text space, with a learnable temperature."""

import math

import flax.linen as nn
import jax.numpy as jnp

INITIAL_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


class ContrastiveProjection(nn.Module):
    """Linear projection to `embed_dim` followed by L2 normalisation."""

    embed_dim: int

    @nn.compact
    def __call__(self, pooled: jnp.ndarray) -> jnp.ndarray:
        """Map [batch, width] pooled features to float32 unit vectors [batch, embed_dim]."""
        projected = nn.Dense(self.embed_dim, use_bias=False, name="projection")(pooled.astype(jnp.float32))
        return projected / jnp.maximum(jnp.linalg.norm(projected, axis=-1, keepdims=True), 1e-6)


class LogitScale(nn.Module):
    """The learnable inverse temperature, stored as its logarithm.

    It starts at 1 / 0.07 and is capped at 100 when read, as in CLIP.
    """

    @nn.compact
    def __call__(self) -> jnp.ndarray:
        log_scale = self.param("log_scale", nn.initializers.constant(math.log(1.0 / INITIAL_TEMPERATURE)), ())
        return jnp.minimum(jnp.exp(log_scale), MAX_LOGIT_SCALE)
