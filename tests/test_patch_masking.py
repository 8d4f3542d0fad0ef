"""Tests for MAE patch masking, patchify/unpatchify and the 2-D sin-cos position embeddings."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimae_jax.models.patch_masking import full_patch_mask, num_visible_patches, random_patch_mask
from multimae_jax.models.patches import patchify, unpatchify
from multimae_jax.models.position_embeddings import sincos_1d, sincos_2d

BATCH = 8
NUM_PATCHES = 49  # A 7x7 grid: C(49, 12) visible sets, so a repeated mask would point to shared noise.
MASK_RATIO = 0.75
NUM_VISIBLE = 12  # round(49 * 0.25)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _jitted_mask(key, batch_size, num_patches, mask_ratio):
    return random_patch_mask(key, batch_size, num_patches, mask_ratio)


@pytest.fixture(scope="module")
def patch_mask():
    mask = _jitted_mask(jax.random.key(0), BATCH, NUM_PATCHES, MASK_RATIO)
    return jax.tree_util.tree_map(np.asarray, mask)


def test_mask_shapes_dtypes(patch_mask):
    assert patch_mask.ids_keep.shape == (BATCH, NUM_VISIBLE)
    assert patch_mask.ids_restore.shape == (BATCH, NUM_PATCHES)
    assert patch_mask.mask.shape == (BATCH, NUM_PATCHES)
    assert patch_mask.ids_keep.dtype == np.int32
    assert patch_mask.ids_restore.dtype == np.int32
    assert patch_mask.mask.dtype == np.float32


def test_mask_hides_exact_count(patch_mask):
    assert set(np.unique(patch_mask.mask)) == {0.0, 1.0}
    assert np.array_equal(patch_mask.mask.sum(axis=1), np.full(BATCH, NUM_PATCHES - NUM_VISIBLE))


def test_ids_keep_are_visible_positions(patch_mask):
    for row in range(BATCH):
        ids_keep = patch_mask.ids_keep[row]
        assert len(set(ids_keep.tolist())) == NUM_VISIBLE, f"row {row} keeps a patch twice"
        assert np.array_equal(np.sort(ids_keep), np.flatnonzero(patch_mask.mask[row] == 0)), f"row {row}"


def test_examples_get_different_masks(patch_mask):
    distinct_rows = np.unique(patch_mask.mask, axis=0)
    assert len(distinct_rows) == BATCH


def test_step_keys_give_different_masks():
    key = jax.random.key(0)
    first = _jitted_mask(jax.random.fold_in(key, 1), BATCH, NUM_PATCHES, MASK_RATIO)
    second = _jitted_mask(jax.random.fold_in(key, 2), BATCH, NUM_PATCHES, MASK_RATIO)
    again = _jitted_mask(jax.random.fold_in(key, 1), BATCH, NUM_PATCHES, MASK_RATIO)

    assert not np.array_equal(first.mask, second.mask)
    assert np.array_equal(first.mask, again.mask)
    assert np.array_equal(first.ids_keep, again.ids_keep)


def test_ids_restore_is_permutation(patch_mask):
    for row in range(BATCH):
        assert np.array_equal(np.sort(patch_mask.ids_restore[row]), np.arange(NUM_PATCHES)), f"row {row}"


def test_ids_restore_inverts_shuffle(patch_mask):
    # The shuffle that ids_restore inverts must start with the visible patches in ids_keep order.
    ids_shuffle = np.argsort(patch_mask.ids_restore, axis=1)
    assert np.array_equal(ids_shuffle[:, :NUM_VISIBLE], patch_mask.ids_keep)


def test_ids_restore_puts_tokens_in_grid_order(patch_mask):
    # Payload: each visible patch carries its own grid index (as the encoder's gather gives it), and the
    # masked tail carries -1 (as the decoder's mask tokens), in the [visible, masked] order of the decoder.
    payload = jnp.broadcast_to(jnp.arange(NUM_PATCHES, dtype=jnp.int32), (BATCH, NUM_PATCHES))
    visible = jnp.take_along_axis(payload, jnp.asarray(patch_mask.ids_keep), axis=1)
    masked = -jnp.ones((BATCH, NUM_PATCHES - NUM_VISIBLE), jnp.int32)
    shuffled = jnp.concatenate([visible, masked], axis=1)
    restored = np.asarray(jnp.take_along_axis(shuffled, jnp.asarray(patch_mask.ids_restore), axis=1))

    is_visible = patch_mask.mask == 0
    grid_index = np.broadcast_to(np.arange(NUM_PATCHES), (BATCH, NUM_PATCHES))
    assert np.array_equal(restored[is_visible], grid_index[is_visible])
    assert np.all(restored[~is_visible] == -1)


@pytest.mark.parametrize("num_patches, mask_ratio, expected", [
    (196, 0.75, 49),
    (49, 0.75, 12),
    (10, 0.66, 3),  # round(3.4)
    (10, 0.64, 4),  # round(3.6)
    (16, 0.0, 16),
    (4, 0.9, 1),  # round(0.4) is 0, raised to the minimum of 1
])
def test_num_visible_rounding(num_patches, mask_ratio, expected):
    assert num_visible_patches(num_patches, mask_ratio) == expected


@pytest.mark.parametrize("mask_ratio", [1.0, 1.5, -0.1])
def test_mask_ratio_out_of_range(mask_ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\)"):
        num_visible_patches(16, mask_ratio)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_patch_mask(jax.random.key(0), 2, 16, mask_ratio)


def test_zero_ratio_keeps_everything():
    patch_mask = _jitted_mask(jax.random.key(3), 2, 9, 0.0)

    assert patch_mask.ids_keep.shape == (2, 9)
    assert float(patch_mask.mask.sum()) == 0.0


def test_full_patch_mask():
    patch_mask = full_patch_mask(3, 5)
    grid_order = np.broadcast_to(np.arange(5), (3, 5))

    assert np.array_equal(patch_mask.ids_keep, grid_order)
    assert np.array_equal(patch_mask.ids_restore, grid_order)
    assert np.array_equal(patch_mask.mask, np.zeros((3, 5)))
    assert patch_mask.ids_keep.dtype == jnp.int32
    assert patch_mask.mask.dtype == jnp.float32


@pytest.mark.parametrize("height, width, patch_size", [(32, 32, 8), (16, 40, 8), (12, 6, 3)])
def test_patchify_round_trip(height, width, patch_size):
    images = jax.random.normal(jax.random.key(1), (2, height, width, 3))
    grid_height, grid_width = height // patch_size, width // patch_size

    patches = jax.jit(patchify, static_argnums=1)(images, patch_size)
    rebuilt = jax.jit(unpatchify, static_argnums=(1, 2, 3))(patches, patch_size, grid_height, grid_width)

    assert patches.shape == (2, grid_height * grid_width, patch_size * patch_size * 3)
    assert rebuilt.shape == images.shape
    assert np.array_equal(np.asarray(rebuilt), np.asarray(images))


def test_patch_equals_image_crop():
    # A 16x24 image with 4-pixel patches has a 4x6 grid, so patch (row 2, column 5) is number 2 * 6 + 5 = 17.
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 16, 24, 3)).astype(np.float32)
    patches = np.asarray(jax.jit(patchify, static_argnums=1)(images, 4))

    crop = images[1, 8:12, 20:24, :]
    assert np.array_equal(patches[1, 17], crop.reshape(-1))
    assert np.array_equal(patches[1, 17].reshape(4, 4, 3)[1, 2], images[1, 9, 22])
    assert np.array_equal(patches[0, 0], images[0, 0:4, 0:4, :].reshape(-1))


@pytest.mark.parametrize("shape", [(1, 30, 32, 3), (1, 32, 30, 3)])
def test_patchify_not_divisible(shape):
    with pytest.raises(ValueError, match="is not divisible by patch size 8"):
        patchify(jnp.zeros(shape), 8)


def test_unpatchify_wrong_grid():
    patches = jnp.zeros((1, 12, 48))

    with pytest.raises(ValueError, match="12 patches do not fill a 3x5 grid"):
        unpatchify(patches, 4, 3, 5)


def _reference_sincos_2d(width, grid_height, grid_width):
    """Compute the embedding entry by entry: row sines, row cosines, column sines, column cosines."""
    quarter = width // 4
    table = np.zeros((grid_height * grid_width, width))
    for row in range(grid_height):
        for column in range(grid_width):
            index = row * grid_width + column
            for k in range(quarter):
                frequency = 10000.0 ** (-k / quarter)
                table[index, k] = math.sin(row * frequency)
                table[index, quarter + k] = math.cos(row * frequency)
                table[index, 2 * quarter + k] = math.sin(column * frequency)
                table[index, 3 * quarter + k] = math.cos(column * frequency)
    return table


@pytest.mark.parametrize("width, grid_height, grid_width", [(8, 2, 3), (16, 4, 4), (12, 3, 1)])
def test_sincos_2d_values(width, grid_height, grid_width):
    embedding = sincos_2d(width, grid_height, grid_width)

    assert embedding.shape == (grid_height * grid_width, width)
    assert embedding.dtype == np.float32
    np.testing.assert_allclose(embedding, _reference_sincos_2d(width, grid_height, grid_width), atol=1e-6)


def test_sincos_2d_rows_distinct():
    embedding = sincos_2d(16, 5, 7)

    assert len(np.unique(embedding, axis=0)) == 35


@pytest.mark.parametrize("width", [6, 10, 2])
def test_sincos_2d_width_not_multiple_of_four(width):
    with pytest.raises(ValueError, match=f"multiple of 4, got {width}"):
        sincos_2d(width, 2, 2)


def test_sincos_1d_odd_width():
    with pytest.raises(ValueError, match="must be even, got 5"):
        sincos_1d(5, np.arange(3))
