"""Conversion between images and sequences of flattened patches."""

import jax.numpy as jnp


def patchify(images: jnp.ndarray, patch_size: int) -> jnp.ndarray:
    """Cut images into non-overlapping square patches.

    Args:
      images: [batch, height, width, channels]; height and width divisible by patch_size.
      patch_size: patch side in pixels.

    Returns:
      [batch, num_patches, patch_size * patch_size * channels], patches in row-major grid order, each patch
      flattened as (row within patch, column within patch, channel).
    """
    batch, height, width, channels = images.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {height}x{width} is not divisible by patch size {patch_size}")
    grid_height, grid_width = height // patch_size, width // patch_size
    patches = images.reshape(batch, grid_height, patch_size, grid_width, patch_size, channels)
    patches = patches.transpose(0, 1, 3, 2, 4, 5)
    return patches.reshape(batch, grid_height * grid_width, patch_size * patch_size * channels)


def unpatchify(patches: jnp.ndarray, patch_size: int, grid_height: int, grid_width: int) -> jnp.ndarray:
    """Reassemble images from patches laid out as `patchify` returns them.

    Returns:
      [batch, grid_height * patch_size, grid_width * patch_size, channels].
    """
    batch, num_patches, patch_dim = patches.shape
    if num_patches != grid_height * grid_width:
        raise ValueError(f"{num_patches} patches do not fill a {grid_height}x{grid_width} grid")
    channels = patch_dim // (patch_size * patch_size)
    images = patches.reshape(batch, grid_height, grid_width, patch_size, patch_size, channels)
    images = images.transpose(0, 1, 3, 2, 4, 5)
    return images.reshape(batch, grid_height * patch_size, grid_width * patch_size, channels)
