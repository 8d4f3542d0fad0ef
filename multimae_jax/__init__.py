"""multimae-jax: multimodal masked autoencoders and contrastive learning in JAX/Flax."""

__version__ = "0.1.0"
