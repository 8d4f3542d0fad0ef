"""Image-text retrieval metrics (recall at k, ranks, mAP) computed from embeddings.

The [num_images, num_captions] similarity matrix is never held in memory. It is scored
in square blocks of ``tile_size`` images by ``tile_size`` captions, and one matrix
product per block serves both retrieval directions. Ranks are counted by comparing
each block against the relevant scores, so no sort over candidates is needed.
"""

from collections.abc import Sequence
import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DEFAULT_TILE_SIZE = 512

# Any dot product of two rows is at most the product of their norms. Overflow checks
# run only when that bound comes within this factor of the float32 maximum, which
# leaves room for the rounding error of a float32 sum (about dim * 6e-8 relative).
_OVERFLOW_MARGIN = 2.0


def retrieval_metrics(
    image_embeddings,
    text_embeddings,
    text_to_image,
    ks: Sequence[int] = (1, 5, 10),
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    mesh: Optional[Mesh] = None,
) -> dict[str, float]:
    """Compute image-to-text and text-to-image retrieval metrics.

    Args:
        image_embeddings: float array [num_images, dim], NumPy or JAX. It is cast to
            float32.
        text_embeddings: float array [num_captions, dim], NumPy or JAX. It is cast to
            float32.
        text_to_image: integer array [num_captions], the index of the image that each
            caption describes. Every image needs at least one caption, and any number
            per image is allowed.
        ks: distinct positive integers k for the recall@k metrics.
        tile_size: side of the square blocks of the similarity matrix that are
            scored at once. Peak memory grows with tile_size**2 * max captions per
            image, not with num_images * num_captions.
        mesh: optional device mesh. With more than one device, the blocks are spread
            over all of its devices and their counts are summed, so the metrics are the
            same as on one device. Every process must pass the same embeddings.

    Returns:
        Python floats under ``i2t/R@{k}`` for each k, ``i2t/mean_rank``,
        ``i2t/median_rank``, ``i2t/mAP``, the same keys with ``t2i/``, and ``rsum``,
        the sum of all recalls. Recalls and mAP are percentages in [0, 100].
        Ranks are 1-based.

    Definitions. The similarity s is the plain dot product of the given embeddings, so
    callers that want cosine similarity normalise first. A relevant candidate's rank
    is the number of candidates with a score at least as high as its own. Ties
    therefore count against the query: if all embeddings are identical, every rank
    equals the number of candidates.

    - t2i: each caption queries all images. Its rank is that of its one image, and its
      AP is 1 / rank.
    - i2t: each image queries all captions. With r_1 <= ... <= r_R the ranks of its R
      captions, the image's rank is r_1, and its AP is the mean of j / r_j for
      j = 1..R.
    - R@k is the percentage of queries whose rank is at most k. mean_rank and
      median_rank are taken over the queries, and the median of an even count is the
      mean of the two middle values.

    Raises:
        ValueError: on embeddings that are not 2-D, empty, of different widths or
            non-finite, on a text_to_image of the wrong shape, dtype or range, on an
            image without captions, on invalid ks or tile_size, and when a similarity
            overflows float32.
    """
    images = _validate_embeddings(image_embeddings, "image_embeddings")
    texts = _validate_embeddings(text_embeddings, "text_embeddings")
    if images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"image_embeddings have width {images.shape[1]} but text_embeddings have "
            f"width {texts.shape[1]}. Both must use the same embedding dimension."
        )
    caption_images = _validate_text_to_image(text_to_image, images.shape[0], texts.shape[0])
    ks = _validate_ks(ks)
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive integer, got {tile_size!r}.")
    # Blocks larger than the whole matrix would only add padding.
    tile_size = min(int(tile_size), max(images.shape[0], texts.shape[0]))

    plan = _plan_blocks(caption_images, images.shape[0], tile_size)
    bound = _max_row_norm(images) * _max_row_norm(texts)
    check_overflow = bool(bound * _OVERFLOW_MARGIN >= float(np.finfo(np.float32).max))

    inputs = (images, texts[plan.order], plan.sorted_caption_images, plan.caption_starts, plan.caption_counts)
    options = dict(tile_size=tile_size, max_captions=plan.max_captions, check_overflow=check_overflow)
    if mesh is None or mesh.devices.size == 1:
        i2t_ranks, t2i_sorted_ranks, finite_rows = _count_ranks(
            *(jnp.asarray(array) for array in inputs), jnp.asarray(plan.steps), **options
        )
    else:
        i2t_ranks, t2i_sorted_ranks, finite_rows = _count_ranks_on_mesh(inputs, plan.steps, mesh, options)
    overflowed = np.flatnonzero(~np.asarray(finite_rows))
    if overflowed.size:
        raise ValueError(
            f"similarity scores of image {overflowed[0]} overflow float32 ({overflowed.size} "
            "such images). Scale the embeddings down, for example by normalising them."
        )

    # Padding slots contain num_captions + 1 and sort last, so slot j < R contains r_{j+1}.
    i2t_ranks = np.asarray(i2t_ranks)
    slot_is_caption = np.arange(plan.max_captions)[None, :] < plan.caption_counts[:, None]
    precisions = np.where(slot_is_caption, np.arange(1, plan.max_captions + 1) / i2t_ranks, 0.0)
    i2t_average_precision = precisions.sum(axis=1) / plan.caption_counts

    # The t2i ranks stay in sorted caption order because every t2i metric is a
    # mean, median or fraction over all captions, which ignores their order.
    t2i_ranks = np.asarray(t2i_sorted_ranks)

    metrics = {}
    metrics.update(_summarize("i2t", i2t_ranks[:, 0], i2t_average_precision, ks))
    metrics.update(_summarize("t2i", t2i_ranks, 1.0 / t2i_ranks, ks))
    metrics["rsum"] = float(sum(metrics[f"{direction}/R@{k}"] for direction in ("i2t", "t2i") for k in ks))
    return metrics


def _validate_embeddings(embeddings, name: str) -> np.ndarray:
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [count, dim], got shape {array.shape}.")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}). Pass at least one row of width >= 1.")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must have a real numeric dtype, got {array.dtype}.")

    bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"{name} row {bad_rows[0]} contains NaN or inf ({bad_rows.size} such rows). "
            "Fix the model outputs before evaluating."
        )

    # Values beyond the float32 range would turn into inf when cast.
    bad_rows = np.flatnonzero((np.abs(array) > np.finfo(np.float32).max).any(axis=1))
    if bad_rows.size:
        raise ValueError(
            f"{name} row {bad_rows[0]} has values outside the float32 range "
            f"(max abs {np.abs(array[bad_rows[0]]).max():.3e}). Scale the embeddings down."
        )
    return array.astype(np.float32)


def _validate_text_to_image(text_to_image, num_images: int, num_captions: int) -> np.ndarray:
    array = np.asarray(text_to_image)
    if array.ndim != 1:
        raise ValueError(f"text_to_image must be 1-D [num_captions], got shape {array.shape}.")
    if array.shape[0] != num_captions:
        raise ValueError(
            f"text_to_image has {array.shape[0]} entries but text_embeddings has "
            f"{num_captions} rows. Pass one image index per caption."
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"text_to_image must have an integer dtype, got {array.dtype}.")

    out_of_range = np.flatnonzero((array < 0) | (array >= num_images))
    if out_of_range.size:
        caption = out_of_range[0]
        raise ValueError(
            f"text_to_image[{caption}] = {array[caption]} is out of range [0, {num_images}). "
            "Each entry must index a row of image_embeddings."
        )

    captions_per_image = np.bincount(array, minlength=num_images)
    uncaptioned = np.flatnonzero(captions_per_image == 0)
    if uncaptioned.size:
        raise ValueError(
            f"image {uncaptioned[0]} has no caption in text_to_image ({uncaptioned.size} "
            "such images). Drop uncaptioned images before evaluating."
        )
    return array.astype(np.int32)


def _validate_ks(ks) -> tuple[int, ...]:
    if isinstance(ks, (int, np.integer)) or not isinstance(ks, Sequence):
        raise ValueError(f"ks must be a sequence of positive integers such as (1, 5, 10), got {ks!r}.")
    if len(ks) == 0:
        raise ValueError("ks is empty. Pass at least one positive integer such as (1, 5, 10).")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks must contain only positive integers, got {k!r} in {ks!r}.")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks contains duplicates: {ks!r}. Each k names one metric key, so pass each k once.")
    return tuple(int(k) for k in ks)


@dataclasses.dataclass(frozen=True)
class _BlockPlan:
    """Caption order and block schedule that _count_ranks consumes.

    Attributes:
        order: int [num_captions], caption indices sorted by image (stable).
        sorted_caption_images: int32 [num_captions], text_to_image[order].
        caption_starts: int32 [num_images], position of each image's first caption
            in the sorted order.
        caption_counts: int32 [num_images], captions per image.
        max_captions: largest entry of caption_counts.
        steps: int32 [num_steps, 3] rows (image tile, caption block, count flag).
            Rows with flag 0 only read relevant scores and come first. Then every
            block appears once with flag 1.
    """

    order: np.ndarray
    sorted_caption_images: np.ndarray
    caption_starts: np.ndarray
    caption_counts: np.ndarray
    max_captions: int
    steps: np.ndarray


def _plan_blocks(caption_images: np.ndarray, num_images: int, tile_size: int) -> _BlockPlan:
    num_captions = caption_images.shape[0]
    order = np.argsort(caption_images, kind="stable")
    sorted_caption_images = caption_images[order]
    caption_counts = np.bincount(caption_images, minlength=num_images).astype(np.int32)
    caption_starts = (np.cumsum(caption_counts) - caption_counts).astype(np.int32)

    # Blocks that contain a (caption, its image) pair. Sorted captions step to the next
    # image by at most one, so these blocks form a monotone staircase of at most
    # num_tiles + num_blocks - 1 blocks. Repeating one of them pads the list to that
    # length, which fixes the scan length for given shapes (no retracing) and is
    # harmless because reading relevant scores again writes the same values.
    num_tiles = -(-num_images // tile_size)
    num_blocks = -(-num_captions // tile_size)
    pair_blocks = np.stack([sorted_caption_images // tile_size, np.arange(num_captions) // tile_size], axis=1)
    pair_blocks = np.unique(pair_blocks, axis=0)
    staircase_length = num_tiles + num_blocks - 1
    assert len(pair_blocks) <= staircase_length, (len(pair_blocks), staircase_length)
    padding = np.repeat(pair_blocks[:1], staircase_length - len(pair_blocks), axis=0)
    read_steps = np.concatenate([pair_blocks, padding])
    read_steps = np.concatenate([read_steps, np.zeros((staircase_length, 1), np.int64)], axis=1)

    tiles, blocks = np.meshgrid(np.arange(num_tiles), np.arange(num_blocks), indexing="ij")
    count_steps = np.stack([tiles.ravel(), blocks.ravel(), np.ones(tiles.size, np.int64)], axis=1)

    return _BlockPlan(
        order=order,
        sorted_caption_images=sorted_caption_images,
        caption_starts=caption_starts,
        caption_counts=caption_counts,
        max_captions=int(caption_counts.max()),
        steps=np.concatenate([read_steps, count_steps]).astype(np.int32),
    )


def _pad_rows(array: jax.Array, num_rows: int, value=0) -> jax.Array:
    padding = [(0, num_rows - array.shape[0])] + [(0, 0)] * (array.ndim - 1)
    return jnp.pad(array, padding, constant_values=value)


@functools.partial(jax.jit, static_argnames=("tile_size", "max_captions", "check_overflow", "axis_names"))
def _count_ranks(
    images,
    sorted_texts,
    sorted_caption_images,
    caption_starts,
    caption_counts,
    steps,
    *,
    tile_size: int,
    max_captions: int,
    check_overflow: bool,
    axis_names: Optional[tuple[str, ...]] = None,
):
    """Count the ranks of all relevant (image, caption) pairs in one scan over blocks.

    Args:
        images: float32 [num_images, dim].
        sorted_texts: float32 [num_captions, dim], captions sorted by image.
        sorted_caption_images, caption_starts, caption_counts, steps: as in _BlockPlan.
        axis_names: inside shard_map, the mesh axes over which each device scanned a
            share of the counting steps; the counts are summed over them.

    Returns:
        A tuple of three arrays:
        - int32 [num_images, max_captions], each image's caption ranks in ascending
          order, with num_captions + 1 in unused slots.
        - int32 [num_captions], text-to-image ranks in sorted caption order.
        - bool [num_images], False where an image's scores overflowed. All True
          unless check_overflow.

    The first steps read each caption's relevant score s(its image, caption) into
    ``relevant``. The remaining steps score every block again and count, for each
    relevant score, the candidates in the block that score at least as high. All
    steps run the same matmul instruction of one scan body, so a relevant score read
    early is bit-identical to its value when the block is scored again. That keeps the
    tie rule exact: the relevant candidate always counts itself.

    NOTE: Equal embeddings at different positions tie only if the matmul rounds equal
    dot products equally wherever they sit in a block. The tests check this on
    XLA:CPU (jax 0.10.2), not on GPU or TPU.
    """
    num_images, num_captions = images.shape[0], sorted_texts.shape[0]
    num_tiles = -(-num_images // tile_size)
    num_blocks = -(-num_captions // tile_size)
    padded_images = _pad_rows(images, num_tiles * tile_size)
    padded_texts = _pad_rows(sorted_texts, num_blocks * tile_size)
    # -1 matches no image row, so padded captions never provide a relevant score.
    padded_caption_images = _pad_rows(sorted_caption_images, num_blocks * tile_size, -1)

    slots = jnp.arange(max_captions)
    slot_is_caption = _pad_rows(slots[None, :] < caption_counts[:, None], num_tiles * tile_size, False)
    caption_table = _pad_rows(caption_starts[:, None] + slots[None, :], num_tiles * tile_size)
    caption_table = jnp.where(slot_is_caption, caption_table, 0)

    offsets = jnp.arange(tile_size)

    def score_block(carry, step):
        relevant, i2t_counts, t2i_counts, finite_rows = carry
        row_start = step[0] * tile_size
        column_start = step[1] * tile_size
        image_tile = jax.lax.dynamic_slice_in_dim(padded_images, row_start, tile_size)
        text_block = jax.lax.dynamic_slice_in_dim(padded_texts, column_start, tile_size)
        # JAX's default matmul precision may round to bf16 on TPU and TF32 on recent GPUs
        # (JAX docs, "Matmul precision"). HIGHEST keeps float32.
        scores = jnp.matmul(image_tile, text_block.T, precision=jax.lax.Precision.HIGHEST)

        # Read s(image, caption) for the captions whose image lies in this tile.
        local_rows = jax.lax.dynamic_slice_in_dim(padded_caption_images, column_start, tile_size) - row_start
        contains_pair = (local_rows >= 0) & (local_rows < tile_size)
        pair_scores = scores[jnp.clip(local_rows, 0, tile_size - 1), offsets]
        block_relevant = jax.lax.dynamic_slice_in_dim(relevant, column_start, tile_size)
        block_relevant = jnp.where(contains_pair, pair_scores, block_relevant)
        relevant = jax.lax.dynamic_update_slice_in_dim(relevant, block_relevant, column_start, axis=0)

        def count(counters):
            i2t_counts, t2i_counts, finite_rows = counters
            if check_overflow:
                tile_finite = jnp.all(jnp.isfinite(scores), axis=1)
                finite_rows = _add_to_rows(finite_rows, row_start, tile_finite, jnp.logical_and)

            # Padded rows and columns score -inf so that they never reach a relevant score.
            is_real = ((row_start + offsets) < num_images)[:, None] & ((column_start + offsets) < num_captions)[None, :]
            real_scores = jnp.where(is_real, scores, -jnp.inf)

            t2i_part = jnp.sum(real_scores >= block_relevant[None, :], axis=0, dtype=jnp.int32)
            t2i_counts = _add_to_rows(t2i_counts, column_start, t2i_part, jnp.add)

            image_relevant = relevant[jax.lax.dynamic_slice_in_dim(caption_table, row_start, tile_size)]
            i2t_part = jnp.sum(real_scores[:, None, :] >= image_relevant[:, :, None], axis=2, dtype=jnp.int32)
            i2t_counts = _add_to_rows(i2t_counts, row_start, i2t_part, jnp.add)
            return i2t_counts, t2i_counts, finite_rows

        counters = jax.lax.cond(step[2] > 0, count, lambda counters: counters, (i2t_counts, t2i_counts, finite_rows))
        return (relevant, *counters), None

    init = (
        jnp.zeros(num_blocks * tile_size, jnp.float32),
        jnp.zeros((num_tiles * tile_size, max_captions), jnp.int32),
        jnp.zeros(num_blocks * tile_size, jnp.int32),
        jnp.ones(num_tiles * tile_size, jnp.bool_),
    )
    (_, i2t_counts, t2i_counts, finite_rows), _ = jax.lax.scan(score_block, init, steps)
    if axis_names:
        i2t_counts = jax.lax.psum(i2t_counts, axis_names)
        t2i_counts = jax.lax.psum(t2i_counts, axis_names)
        finite_rows = jax.lax.psum((~finite_rows).astype(jnp.int32), axis_names) == 0

    i2t_ranks = jnp.sort(jnp.where(slot_is_caption, i2t_counts, num_captions + 1), axis=1)
    return i2t_ranks[:num_images], t2i_counts[:num_captions], finite_rows[:num_images]


def _count_ranks_on_mesh(inputs: tuple, steps: np.ndarray, mesh: Mesh, options: dict):
    """Run _count_ranks with the counting steps spread over every device of `mesh`.

    Every device first runs all reading steps (about a tenth of the work), so each one
    has the same relevant scores, then its share of the counting steps. Counts are
    additive over blocks, so summing them over devices gives the single-device result.

    Returns:
        The three arrays of _count_ranks as NumPy arrays.
    """
    num_devices = mesh.devices.size
    read_steps = steps[steps[:, 2] == 0]
    count_steps = steps[steps[:, 2] == 1]
    per_device = -(-len(count_steps) // num_devices)
    # Extra reading steps pad the last device's share: they rewrite the same scores and count nothing.
    padding = np.repeat(read_steps[:1], per_device * num_devices - len(count_steps), axis=0)
    shares = np.concatenate([count_steps, padding]).reshape(num_devices, per_device, 3)
    device_steps = np.concatenate([np.broadcast_to(read_steps, (num_devices, *read_steps.shape)), shares], axis=1)

    axis_names = tuple(mesh.axis_names)
    replicated = NamedSharding(mesh, PartitionSpec())
    placed_inputs = [jax.device_put(np.asarray(array), replicated) for array in inputs]
    placed_steps = jax.device_put(device_steps, NamedSharding(mesh, PartitionSpec(axis_names)))

    def count_share(*arrays):
        *local_inputs, local_steps = arrays
        return _count_ranks(*local_inputs, local_steps[0], **options, axis_names=axis_names)

    counted = jax.jit(
        jax.shard_map(
            count_share,
            mesh=mesh,
            in_specs=(PartitionSpec(),) * len(inputs) + (PartitionSpec(axis_names),),
            out_specs=PartitionSpec(),
            # The scan carries mix per-device values (the step shares) with replicated ones,
            # which the varying-type check cannot follow through lax.cond. The psum at the
            # end makes every output replicated.
            check_vma=False,
        )
    )(*placed_inputs, placed_steps)
    # The outputs are replicated; every process reads its own copy.
    return tuple(np.asarray(array.addressable_data(0)) for array in counted)


def _max_row_norm(array: np.ndarray) -> float:
    """Return the largest L2 norm of the rows, accumulated in float64 without a float64 copy of `array`."""
    squared_norms = np.einsum("ij,ij->i", array, array, dtype=np.float64)
    return float(np.sqrt(squared_norms.max()))


def _add_to_rows(array: jax.Array, start, update: jax.Array, combine) -> jax.Array:
    """Combine ``update`` into ``array[start:start + len(update)]``."""
    current = jax.lax.dynamic_slice_in_dim(array, start, update.shape[0])
    return jax.lax.dynamic_update_slice_in_dim(array, combine(current, update), start, axis=0)


def _summarize(direction: str, ranks: np.ndarray, average_precision: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    metrics = {f"{direction}/R@{k}": float(100.0 * np.mean(ranks <= k)) for k in ks}
    metrics[f"{direction}/mean_rank"] = float(np.mean(ranks))
    metrics[f"{direction}/median_rank"] = float(np.median(ranks))
    metrics[f"{direction}/mAP"] = float(100.0 * np.mean(average_precision))
    return metrics
