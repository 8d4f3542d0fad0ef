"""Grain input pipelines: random-access training batches and sharded, padded evaluation batches.

Training batches contain images and captions, images only (image MAE) or captions only (masked
language modelling). Splits are CaptionedImages, including image-only ones without captions,
or TextLines for text without images. All batches are dicts of NumPy arrays with one process's
share of the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import grain
import numpy as np
from absl import flags

from multimae_jax.data.captioned_images import CaptionedImages
from multimae_jax.data.image_transforms import eval_image_transform, train_image_transform
from multimae_jax.data.text_file import TextLines
from multimae_jax.data.tokenizer import TextTokenizer

# Mixed into the user's seed before deriving the shuffle and augmentation seeds.
_SEED_SALT = 0x5F1E

# Values of make_train_dataset's `modalities`: image-caption pairs, images only, captions only.
TRAIN_MODALITIES = (("image", "text"), ("image",), ("text",))


def compute_local_batch_size(global_batch_size: int, process_count: int) -> int:
    """Split a global batch evenly over processes, or raise ValueError if it does not divide."""
    if global_batch_size < 1:
        raise ValueError(f"The global batch size must be at least 1, got {global_batch_size}.")
    if process_count < 1:
        raise ValueError(f"The process count must be at least 1, got {process_count}.")
    if global_batch_size % process_count:
        raise ValueError(
            f"The global batch size {global_batch_size} is not divisible by the process count "
            f"{process_count}. Choose a multiple of {process_count}."
        )
    return global_batch_size // process_count


def make_train_dataset(
    split: CaptionedImages | TextLines,
    tokenizer: TextTokenizer | None,
    *,
    local_batch_size: int,
    image_size: int,
    max_text_length: int,
    seed: int,
    shard_index: int,
    shard_count: int,
    min_crop_scale: float = 0.5,
    random_flip: bool = False,
    modalities: tuple[str, ...] = ("image", "text"),
) -> grain.MapDataset:
    """Build the training batches of one process as a random-access Grain dataset.

    Item k is this process's part of global batch k, so a trainer resumes at step s by reading
    items s, s+1, ... An example depends on `modalities`:

    - ("image", "text"): one caption with its image.
    - ("image",): one image. Captions are never read, so the split may have none.
    - ("text",): one caption. Images are never decoded, and the split may be a TextLines.

    Epochs repeat without end, each with a new shuffle of the examples seeded from
    (seed, epoch), and batches run across epoch boundaries, so every batch is full and no
    example is dropped. Augmentation randomness comes from (seed, global example position) only,
    so the same (seed, step) always gives the same batch, whatever the number of workers.

    Global batch k contains the examples at positions [k * G, (k + 1) * G) of the repeated shuffle,
    where G = local_batch_size * shard_count. Process `shard_index` takes positions
    shard_index, shard_index + shard_count, ... of that range, so the shards are disjoint and
    together cover the global batch.

    Args:
        split: Training split. Text modes need captions, and image modes need a CaptionedImages.
        tokenizer: Caption tokenizer, pickled into worker processes. May be None for ("image",).
        local_batch_size: Examples per batch in this process (global batch / process count).
        image_size: Side S of the square images in pixels.
        max_text_length: Token positions L per caption, including [CLS] and [SEP].
        seed: Seed of the shuffles and augmentations, in [0, 2**32).
        shard_index: This process's index in [0, shard_count).
        shard_count: Number of processes that share each global batch.
        min_crop_scale: Smallest random crop area as a fraction of the image area.
        random_flip: Whether to mirror images horizontally with probability 1/2.
        modalities: One of TRAIN_MODALITIES, the parts of each example.

    Returns:
        A grain.MapDataset of length sys.maxsize // local_batch_size (effectively infinite). Items
        are dicts with the keys of their modalities:
        ("image", "text"): "image" float32 [B, S, S, 3] (ImageNet-normalised), "text_ids" int32
            [B, L], "text_mask" int32 [B, L], "image_index" int32 [B], "caption_index" int32 [B].
        ("image",): "image" float32 [B, S, S, 3], "image_index" int32 [B].
        ("text",): "text_ids" int32 [B, L], "text_mask" int32 [B, L], "caption_index" int32 [B],
            and "image_index" int32 [B] when the split has `caption_to_image`.
    """
    modalities = _validate_modalities(modalities, split, tokenizer)
    _validate_sharding(local_batch_size, shard_index, shard_count, "local_batch_size")
    _validate_sizes(image_size, max_text_length)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must lie in [0, 2**32), got {seed}.")
    if not 0.0 < min_crop_scale <= 1.0:
        raise ValueError(f"min_crop_scale must lie in (0, 1], got {min_crop_scale}.")

    # Hashing the seed keeps the shuffle and augmentation streams unrelated to each other and
    # keeps runs with neighbouring seeds apart, since Grain reseeds each epoch with seed + epoch.
    shuffle_seed, augment_seed = np.random.SeedSequence([seed, _SEED_SALT]).generate_state(2)

    # Image-only training visits every image once per epoch. The other modes visit every caption
    # once per epoch, so images with more captions are seen more often.
    num_examples = split.num_images if modalities == ("image",) else split.num_captions

    # Grain's shuffle of an index range, repeated without end, reseeds every epoch (with the
    # shuffle seed plus the epoch number), so position p contains example perm_{p // N}[p % N].
    indices = grain.MapDataset.source(range(num_examples)).shuffle(seed=int(shuffle_seed)).repeat()

    # random_map seeds each element's generator from (augment_seed, position in its input),
    # which is the global example position because it runs before sharding. Text examples need
    # no randomness, so a plain map skips creating a generator per example.
    if modalities == ("text",):
        examples = indices.map(_TrainCaptionLoader(split))
    else:
        loader_class = _TrainImageLoader if modalities == ("image",) else _TrainExampleLoader
        examples = indices.random_map(
            loader_class(split, image_size, min_crop_scale, random_flip), seed=int(augment_seed)
        )

    shard = examples.slice(slice(shard_index, None, shard_count))
    return shard.batch(local_batch_size, drop_remainder=True, batch_fn=_TrainBatcher(tokenizer, max_text_length))


def make_train_iterator(
    dataset: grain.MapDataset, start_step: int, num_workers: int, prefetch_buffer: int = 2
) -> Iterator[dict]:
    """Iterate over training batches start_step, start_step + 1, ... of `make_train_dataset`.

    With num_workers > 0, Grain worker processes compute the batches (worker w takes every
    num_workers-th batch) and the iterator returns them in step order. With num_workers == 0 the
    batches are computed in this process, with one background thread keeping up to
    prefetch_buffer batches ready (none when prefetch_buffer is 0). The output does not depend
    on num_workers or prefetch_buffer.

    Returns:
        A Grain iterator; call its close() when done to stop worker processes early.
    """
    if start_step < 0:
        raise ValueError(f"start_step must be non-negative, got {start_step}.")
    if start_step >= len(dataset):
        raise ValueError(f"start_step {start_step} is past the end of the dataset ({len(dataset)} batches).")
    if num_workers < 0:
        raise ValueError(f"num_workers must be non-negative, got {num_workers}.")
    if prefetch_buffer < 0:
        raise ValueError(f"prefetch_buffer must be non-negative, got {prefetch_buffer}.")

    remaining = dataset.slice(slice(start_step, None))
    return _iterate(remaining, num_workers, prefetch_buffer)


def iterate_eval_images(
    split: CaptionedImages,
    *,
    batch_size: int,
    image_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
    prefetch_buffer: int = 2,
) -> Iterator[dict]:
    """Iterate once over this shard's images in index order, resized without cropping.

    The split may be image-only (no captions). Shards are contiguous ranges of image indices.
    Every shard yields the same number of batches; the last batches are padded with copies of a
    real image marked valid=False.

    Yields:
        {"image": float32 [B, S, S, 3], "image_index": int32 [B], "valid": bool [B]}.
    """
    _validate_sharding(batch_size, shard_index, shard_count, "batch_size")
    _validate_sizes(image_size, max_text_length=2)
    if num_workers < 0:
        raise ValueError(f"num_workers must be non-negative, got {num_workers}.")

    indices, valid = _padded_shard(split.num_images, batch_size, shard_index, shard_count)
    entries = grain.MapDataset.source(list(zip(indices.tolist(), valid.tolist())))
    batches = entries.map(_EvalImageLoader(split, image_size)).batch(
        batch_size, drop_remainder=True, batch_fn=_stack_eval_images
    )
    return _close_when_done(_iterate(batches, num_workers, prefetch_buffer))


def _close_when_done(iterator: Iterator[dict]) -> Iterator[dict]:
    """Yield from a Grain iterator and close it at the end, or when the caller stops early.

    Closing stops any worker processes right away instead of at garbage collection.
    """
    try:
        yield from iterator
    finally:
        iterator.close()


def iterate_eval_captions(
    split: CaptionedImages | TextLines,
    tokenizer: TextTokenizer,
    *,
    batch_size: int,
    max_text_length: int,
    shard_index: int = 0,
    shard_count: int = 1,
) -> Iterator[dict]:
    """Iterate once over this shard's captions in index order, tokenised.

    Sharding and padding follow `iterate_eval_images`. The split may be a TextLines.

    Yields:
        {"text_ids": int32 [B, L], "text_mask": int32 [B, L], "caption_index": int32 [B],
         "image_index": int32 [B], "valid": bool [B]}, without "image_index" when the split has
        no `caption_to_image` (a TextLines).

    Raises:
        ValueError: The split has no captions (an image-only split), or an argument is invalid.
    """
    _validate_sharding(batch_size, shard_index, shard_count, "batch_size")
    _validate_sizes(image_size=1, max_text_length=max_text_length)
    if split.num_captions == 0:
        raise ValueError(
            f"Split {split.name!r} has no captions to evaluate. Caption evaluation needs a split with "
            "captions; evaluate an image-only split with iterate_eval_images."
        )

    # Validate eagerly, and return a generator only for the iteration itself.
    indices, valid = _padded_shard(split.num_captions, batch_size, shard_index, shard_count)
    return _caption_batches(split, tokenizer, indices, valid, batch_size, max_text_length)


def _caption_batches(
    split: CaptionedImages | TextLines,
    tokenizer: TextTokenizer,
    indices: np.ndarray,
    valid: np.ndarray,
    batch_size: int,
    max_text_length: int,
) -> Iterator[dict]:
    """Tokenise consecutive batches of the given caption indices."""
    caption_to_image = getattr(split, "caption_to_image", None)
    for start in range(0, len(indices), batch_size):
        caption_indices = indices[start : start + batch_size]
        text_ids, text_mask = tokenizer.encode([split.captions[i] for i in caption_indices], max_text_length)

        batch = {"text_ids": text_ids, "text_mask": text_mask, "caption_index": caption_indices.astype(np.int32)}
        if caption_to_image is not None:
            batch["image_index"] = caption_to_image[caption_indices].astype(np.int32)
        batch["valid"] = valid[start : start + batch_size].copy()
        yield batch


def _padded_shard(
    num_items: int, batch_size: int, shard_index: int, shard_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Item indices of a contiguous shard, padded so that every shard has the same batch count.

    Shard s contains items [s * per_shard, min(num_items, (s + 1) * per_shard)) with
    per_shard = ceil(num_items / shard_count). Padding repeats the shard's last item, or item 0
    for an empty shard, so that padded batches still hold real data.

    Returns:
        indices: int64 [num_batches * batch_size]; valid: bool [num_batches * batch_size].
    """
    per_shard = math.ceil(num_items / shard_count)
    num_batches = math.ceil(per_shard / batch_size)
    start = min(num_items, shard_index * per_shard)
    stop = min(num_items, start + per_shard)

    indices = np.arange(start, stop, dtype=np.int64)
    filler = stop - 1 if stop > start else 0
    num_padding = num_batches * batch_size - len(indices)
    padded = np.concatenate([indices, np.full(num_padding, filler, dtype=np.int64)])
    valid = np.arange(len(padded)) < len(indices)
    return padded, valid


def _iterate(dataset: grain.MapDataset, num_workers: int, prefetch_buffer: int) -> Iterator[dict]:
    """Iterate a batch-level dataset in order, in worker processes when num_workers > 0."""
    if num_workers == 0:
        threads = 1 if prefetch_buffer > 0 else 0
        read_options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch_buffer)
        return iter(dataset.to_iter_dataset(read_options))

    # Grain 0.2.18 reads absl flags (--grain_*) when it starts worker processes, which fails
    # outside an absl app unless the flags count as parsed, so use their defaults then.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()

    # Each worker computes whole batches one at a time, so the read options inside a worker
    # use no threads and the buffering happens per worker in mp_prefetch.
    read_options = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    worker_options = grain.MultiprocessingOptions(
        num_workers=num_workers, per_worker_buffer_size=max(1, prefetch_buffer)
    )
    return iter(dataset.to_iter_dataset(read_options).mp_prefetch(worker_options))


class _TrainImageLoader:
    """Grain random map: image index -> augmented image and its index, without reading captions."""

    def __init__(self, split: CaptionedImages, image_size: int, min_crop_scale: float, random_flip: bool):
        self._split = split
        self._image_size = image_size
        self._min_crop_scale = min_crop_scale
        self._random_flip = random_flip

    def __call__(self, image_index: int, rng: np.random.Generator) -> dict:
        image = self._split.load_image(int(image_index))
        transformed = train_image_transform(
            image, rng, self._image_size, min_crop_scale=self._min_crop_scale, random_flip=self._random_flip
        )
        return {"image": transformed, "image_index": int(image_index)}


class _TrainExampleLoader(_TrainImageLoader):
    """Grain random map: caption index -> augmented image, caption text and indices."""

    def __call__(self, caption_index: int, rng: np.random.Generator) -> dict:
        example = super().__call__(int(self._split.caption_to_image[caption_index]), rng)
        example["caption"] = self._split.captions[caption_index]
        example["caption_index"] = int(caption_index)
        return example


class _TrainCaptionLoader:
    """Grain map: caption index -> caption text and indices, without decoding any image."""

    def __init__(self, split: CaptionedImages | TextLines):
        self._split = split
        self._caption_to_image = getattr(split, "caption_to_image", None)

    def __call__(self, caption_index: int) -> dict:
        example = {"caption": self._split.captions[caption_index], "caption_index": int(caption_index)}
        if self._caption_to_image is not None:
            example["image_index"] = int(self._caption_to_image[caption_index])
        return example


class _TrainBatcher:
    """Grain batch_fn: stacks images and indices and tokenises the captions of one batch.

    Each part is present in the batch when the examples have it, so one batcher serves every
    value of `modalities`.
    """

    def __init__(self, tokenizer: TextTokenizer | None, max_text_length: int):
        self._tokenizer = tokenizer
        self._max_text_length = max_text_length

    def __call__(self, examples: Sequence[dict]) -> dict:
        batch = {}
        if "image" in examples[0]:
            batch["image"] = np.stack([e["image"] for e in examples]).astype(np.float32)

        if "caption" in examples[0]:
            text_ids, text_mask = self._tokenizer.encode([e["caption"] for e in examples], self._max_text_length)
            batch["text_ids"] = text_ids
            batch["text_mask"] = text_mask

        for key in ("image_index", "caption_index"):
            if key in examples[0]:
                batch[key] = np.asarray([e[key] for e in examples], dtype=np.int32)
        return batch


class _EvalImageLoader:
    """Grain map: (image index, valid) -> resized, normalised image."""

    def __init__(self, split: CaptionedImages, image_size: int):
        self._split = split
        self._image_size = image_size

    def __call__(self, entry: tuple[int, bool]) -> dict:
        image_index, valid = entry
        image = eval_image_transform(self._split.load_image(image_index), self._image_size)
        return {"image": image, "image_index": image_index, "valid": valid}


def _stack_eval_images(examples: Sequence[dict]) -> dict:
    """Grain batch_fn for evaluation images."""
    return {
        "image": np.stack([e["image"] for e in examples]).astype(np.float32),
        "image_index": np.asarray([e["image_index"] for e in examples], dtype=np.int32),
        "valid": np.asarray([e["valid"] for e in examples], dtype=bool),
    }


def _validate_modalities(
    modalities: Sequence[str], split: CaptionedImages | TextLines, tokenizer: TextTokenizer | None
) -> tuple[str, ...]:
    """Return `modalities` as a tuple, or raise ValueError when it or the split and tokenizer do not fit."""
    # A bare string such as "image" is rejected below instead of being split into characters.
    modalities = modalities if isinstance(modalities, str) else tuple(modalities)
    if modalities not in TRAIN_MODALITIES:
        accepted = ", ".join(repr(value) for value in TRAIN_MODALITIES)
        raise ValueError(f"modalities must be one of {accepted}, got {modalities!r}.")

    if "text" in modalities:
        if tokenizer is None:
            raise ValueError(f"modalities {modalities!r} include text, so a tokenizer is required, got None.")
        if split.num_captions == 0:
            raise ValueError(
                f"Split {split.name!r} has no captions, but modalities {modalities!r} include text. "
                "Train on an image-only split with modalities=('image',), or use a split with captions."
            )

    if "image" in modalities and not hasattr(split, "load_image"):
        raise ValueError(
            f"Split {split.name!r} has no images ({type(split).__name__}), but modalities {modalities!r} "
            "include images. Train on a text-only split with modalities=('text',)."
        )

    return modalities


def _validate_sharding(batch_size: int, shard_index: int, shard_count: int, batch_name: str) -> None:
    """Raise ValueError for a batch size below 1 or a shard index outside [0, shard_count)."""
    if batch_size < 1:
        raise ValueError(f"{batch_name} must be at least 1, got {batch_size}.")
    if shard_count < 1:
        raise ValueError(f"shard_count must be at least 1, got {shard_count}.")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must lie in [0, {shard_count}), got {shard_index}.")


def _validate_sizes(image_size: int, max_text_length: int) -> None:
    """Raise ValueError for an image side below 1 pixel or a text length below 2 tokens."""
    if image_size < 1:
        raise ValueError(f"image_size must be at least 1 pixel, got {image_size}.")
    if max_text_length < 2:
        raise ValueError(f"max_text_length must be at least 2 to hold [CLS] and [SEP], got {max_text_length}.")
