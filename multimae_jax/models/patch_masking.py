"""MAE random masking of image patches, with an independent mask per example."""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PatchMask(NamedTuple):
    """The visible and hidden patches of each example.

    Attributes:
      ids_keep: int32 [batch, num_visible], grid indices of the visible patches, in the order of their noise rank.
      ids_restore: int32 [batch, num_patches], the inverse permutation: gathering the shuffled sequence
        (visible patches followed by masked ones) with it restores grid order.
      mask: float32 [batch, num_patches], 1 for masked (hidden) patches and 0 for visible ones, in grid order.
    """

    ids_keep: jnp.ndarray
    ids_restore: jnp.ndarray
    mask: jnp.ndarray


def num_visible_patches(num_patches: int, mask_ratio: float) -> int:
    """Return how many patches stay visible: round(num_patches * (1 - mask_ratio)), at least 1."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return max(1, int(round(num_patches * (1.0 - mask_ratio))))


def random_patch_mask(key: jax.Array, batch_size: int, num_patches: int, mask_ratio: float) -> PatchMask:
    """Draw a uniformly random subset of visible patches for each example.

    Every example hides exactly num_patches - num_visible_patches(...) patches, chosen independently of the other
    examples, by sorting per-example uniform noise.
    """
    num_visible = num_visible_patches(num_patches, mask_ratio)
    noise = jax.random.uniform(key, (batch_size, num_patches))
    ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
    ids_restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
    ids_keep = ids_shuffle[:, :num_visible]

    mask = jnp.ones((batch_size, num_patches), jnp.float32).at[:, :num_visible].set(0.0)
    mask = jnp.take_along_axis(mask, ids_restore, axis=1)
    return PatchMask(ids_keep=ids_keep, ids_restore=ids_restore, mask=mask)


def full_patch_mask(batch_size: int, num_patches: int) -> PatchMask:
    """Return the mask that keeps every patch in grid order, for evaluation."""
    ids = jnp.broadcast_to(jnp.arange(num_patches, dtype=jnp.int32), (batch_size, num_patches))
    return PatchMask(ids_keep=ids, ids_restore=ids, mask=jnp.zeros((batch_size, num_patches), jnp.float32))
