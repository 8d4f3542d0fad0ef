"""Tests for the Grain training and evaluation pipelines, on generated scenes and a trained tokenizer."""

import numpy as np
import PIL.Image
import pytest

from multimae_jax.data.builtin_scenes import make_builtin_split
from multimae_jax.data.captioned_images import CaptionedImages
from multimae_jax.data.image_folder import load_image_folder
from multimae_jax.data.image_transforms import eval_image_transform
from multimae_jax.data.pipeline import (
    compute_local_batch_size,
    iterate_eval_captions,
    iterate_eval_images,
    make_train_dataset,
    make_train_iterator,
)
from multimae_jax.data.text_file import TextLines
from multimae_jax.data.tokenizer import load_tokenizer

IMAGE_SIZE = 16
TEXT_LENGTH = 12
NUM_IMAGES = 7
CAPTIONS_PER_IMAGE = 2
NUM_CAPTIONS = NUM_IMAGES * CAPTIONS_PER_IMAGE


@pytest.fixture(scope="module")
def split():
    return make_builtin_split("train", NUM_IMAGES, image_size=24, seed=0, captions_per_image=CAPTIONS_PER_IMAGE)


@pytest.fixture(scope="module")
def tokenizer(split, tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("tokenizer"))
    return load_tokenizer("", training_texts=split.captions, cache_dir=cache_dir, vocab_size=100)


def _train_dataset(split, tokenizer, batch_size=4, seed=0, shard_index=0, shard_count=1, **options):
    return make_train_dataset(
        split,
        tokenizer,
        local_batch_size=batch_size,
        image_size=IMAGE_SIZE,
        max_text_length=TEXT_LENGTH,
        seed=seed,
        shard_index=shard_index,
        shard_count=shard_count,
        min_crop_scale=0.3,
        random_flip=True,
        **options,
    )


def _assert_batches_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        assert np.array_equal(actual[key], expected[key]), key


def test_train_batch_layout(split, tokenizer):
    batch = _train_dataset(split, tokenizer)[0]

    assert batch["image"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert batch["image"].dtype == np.float32
    assert batch["text_ids"].shape == (4, TEXT_LENGTH)
    assert batch["text_ids"].dtype == np.int32
    assert batch["text_mask"].shape == (4, TEXT_LENGTH)
    assert batch["text_mask"].dtype == np.int32
    assert batch["image_index"].dtype == np.int32
    assert batch["caption_index"].dtype == np.int32
    assert np.array_equal(batch["image_index"], split.caption_to_image[batch["caption_index"]])


def test_train_text_matches_caption(split, tokenizer):
    batch = _train_dataset(split, tokenizer)[2]
    expected_ids, expected_mask = tokenizer.encode(
        [split.captions[i] for i in batch["caption_index"]], TEXT_LENGTH
    )

    assert np.array_equal(batch["text_ids"], expected_ids)
    assert np.array_equal(batch["text_mask"], expected_mask)


def test_train_item_deterministic(split, tokenizer):
    first = _train_dataset(split, tokenizer, seed=3)
    second = _train_dataset(split, tokenizer, seed=3)
    other = _train_dataset(split, tokenizer, seed=4)

    for step in (0, 5, 1000):
        _assert_batches_equal(second[step], first[step])
    assert not np.array_equal(other[0]["caption_index"], first[0]["caption_index"])


def test_epochs_cover_each_caption(split, tokenizer):
    # Batch size 7 divides the 14 captions, so batches 0-1 are epoch 0 and 2-3 epoch 1.
    dataset = _train_dataset(split, tokenizer, batch_size=7)
    epoch_0 = np.concatenate([dataset[0]["caption_index"], dataset[1]["caption_index"]])
    epoch_1 = np.concatenate([dataset[2]["caption_index"], dataset[3]["caption_index"]])

    assert sorted(epoch_0.tolist()) == list(range(NUM_CAPTIONS))
    assert sorted(epoch_1.tolist()) == list(range(NUM_CAPTIONS))
    assert not np.array_equal(epoch_0, epoch_1)


def test_batches_wrap_epochs(split, tokenizer):
    # Batch size 4 does not divide 14 captions, so batch 3 contains the end of epoch 0 and the
    # start of epoch 1, and is still full.
    dataset = _train_dataset(split, tokenizer, batch_size=4)
    positions = np.concatenate([dataset[step]["caption_index"] for step in range(7)])

    assert all(dataset[step]["caption_index"].shape == (4,) for step in range(7))
    assert sorted(positions[:NUM_CAPTIONS].tolist()) == list(range(NUM_CAPTIONS))
    assert sorted(positions[NUM_CAPTIONS:].tolist()) == list(range(NUM_CAPTIONS))


def test_shards_split_global_batch(split, tokenizer):
    single = _train_dataset(split, tokenizer, batch_size=6)
    shards = [_train_dataset(split, tokenizer, batch_size=3, shard_index=s, shard_count=2) for s in range(2)]

    for step in (0, 1, 9):
        global_batch = single[step]
        local_batches = [shard[step] for shard in shards]
        # Shard s contains global positions s, s + 2, s + 4 of each global batch, with the same
        # augmentation, because the randomness depends on the global position only.
        for shard_index, local in enumerate(local_batches):
            for key in ("caption_index", "image", "text_ids"):
                assert np.array_equal(local[key], global_batch[key][shard_index::2]), (step, key)
        union = np.concatenate([local["caption_index"] for local in local_batches])
        assert sorted(union.tolist()) == sorted(global_batch["caption_index"].tolist())


def test_augmentation_varies(split, tokenizer):
    # The same caption seen in two epochs gets different crops.
    dataset = _train_dataset(split, tokenizer, batch_size=NUM_CAPTIONS)
    epoch_0, epoch_1 = dataset[0], dataset[1]
    order_0 = np.argsort(epoch_0["caption_index"])
    order_1 = np.argsort(epoch_1["caption_index"])

    assert not np.allclose(epoch_0["image"][order_0], epoch_1["image"][order_1])


def test_resume_matches_fresh_iterator(split, tokenizer):
    dataset = _train_dataset(split, tokenizer)
    fresh = make_train_iterator(dataset, start_step=0, num_workers=0)
    fresh_batches = [next(fresh) for _ in range(8)]
    resumed = make_train_iterator(dataset, start_step=5, num_workers=0, prefetch_buffer=0)

    for step in range(5, 8):
        batch = next(resumed)
        _assert_batches_equal(batch, fresh_batches[step])
        _assert_batches_equal(batch, dataset[step])


def test_worker_processes_match(split, tokenizer):
    dataset = _train_dataset(split, tokenizer)
    iterator = make_train_iterator(dataset, start_step=3, num_workers=2, prefetch_buffer=1)
    try:
        for step in range(3, 8):
            _assert_batches_equal(next(iterator), dataset[step])
    finally:
        iterator.close()


@pytest.mark.parametrize("shard_count", [1, 3, 9])
def test_eval_images_cover_once(split, shard_count):
    batches_per_shard = []
    seen = []
    for shard_index in range(shard_count):
        batches = list(
            iterate_eval_images(
                split, batch_size=2, image_size=IMAGE_SIZE, shard_index=shard_index, shard_count=shard_count
            )
        )
        batches_per_shard.append(len(batches))
        for batch in batches:
            assert batch["image"].shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3)
            assert batch["image"].dtype == np.float32
            assert batch["image_index"].dtype == np.int32
            assert batch["valid"].dtype == bool
            seen.extend(batch["image_index"][batch["valid"]].tolist())

    assert len(set(batches_per_shard)) == 1
    assert seen == list(range(NUM_IMAGES))


def test_eval_image_padding(split):
    # 7 images in batches of 3: the last batch contains image 6 and two padded copies of it.
    batches = list(iterate_eval_images(split, batch_size=3, image_size=IMAGE_SIZE))
    last = batches[-1]

    assert len(batches) == 3
    assert last["valid"].tolist() == [True, False, False]
    assert last["image_index"].tolist() == [6, 6, 6]
    assert np.array_equal(last["image"][1], last["image"][0])


def test_eval_image_values(split):
    batch = next(iterate_eval_images(split, batch_size=2, image_size=IMAGE_SIZE, num_workers=0))
    expected = eval_image_transform(split.load_image(1), IMAGE_SIZE)

    np.testing.assert_array_equal(batch["image"][1], expected)


@pytest.mark.parametrize("shard_count", [1, 4, 20])
def test_eval_captions_cover_once(split, tokenizer, shard_count):
    batches_per_shard = []
    seen = []
    for shard_index in range(shard_count):
        batches = list(
            iterate_eval_captions(
                split,
                tokenizer,
                batch_size=4,
                max_text_length=TEXT_LENGTH,
                shard_index=shard_index,
                shard_count=shard_count,
            )
        )
        batches_per_shard.append(len(batches))
        for batch in batches:
            assert batch["text_ids"].shape == (4, TEXT_LENGTH)
            assert batch["text_mask"].dtype == np.int32
            assert batch["caption_index"].dtype == np.int32
            assert batch["valid"].dtype == bool
            assert np.array_equal(batch["image_index"], split.caption_to_image[batch["caption_index"]])
            seen.extend(batch["caption_index"][batch["valid"]].tolist())

    assert len(set(batches_per_shard)) == 1
    assert seen == list(range(NUM_CAPTIONS))


def test_eval_caption_padding(split, tokenizer):
    batches = list(iterate_eval_captions(split, tokenizer, batch_size=4, max_text_length=TEXT_LENGTH))
    last = batches[-1]

    assert len(batches) == 4
    assert last["valid"].tolist() == [True, True, False, False]
    assert last["caption_index"].tolist() == [12, 13, 13, 13]
    assert np.array_equal(last["text_ids"][3], last["text_ids"][1])


def test_compute_local_batch_size():
    assert compute_local_batch_size(32, 4) == 8

    with pytest.raises(ValueError, match="32 is not divisible by the process count 3"):
        compute_local_batch_size(32, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"local_batch_size": 0}, "local_batch_size must be at least 1"),
        ({"shard_index": 2, "shard_count": 2}, r"shard_index must lie in \[0, 2\), got 2"),
        ({"shard_count": 0}, "shard_count must be at least 1"),
        ({"max_text_length": 1}, "max_text_length must be at least 2"),
        ({"seed": -1}, r"seed must lie in \[0, 2\*\*32\)"),
        ({"min_crop_scale": 1.5}, r"min_crop_scale must lie in \(0, 1\]"),
    ],
    ids=["batch", "shard_index", "shard_count", "text_length", "seed", "crop_scale"],
)
def test_train_invalid_arguments(split, tokenizer, kwargs, message):
    arguments = {
        "local_batch_size": 2,
        "image_size": IMAGE_SIZE,
        "max_text_length": TEXT_LENGTH,
        "seed": 0,
        "shard_index": 0,
        "shard_count": 1,
    } | kwargs

    with pytest.raises(ValueError, match=message):
        make_train_dataset(split, tokenizer, **arguments)


def test_iterator_invalid_arguments(split, tokenizer):
    dataset = _train_dataset(split, tokenizer)

    with pytest.raises(ValueError, match="start_step must be non-negative"):
        make_train_iterator(dataset, start_step=-1, num_workers=0)
    with pytest.raises(ValueError, match="num_workers must be non-negative"):
        make_train_iterator(dataset, start_step=0, num_workers=-1)


def test_eval_invalid_arguments(split, tokenizer):
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        iterate_eval_images(split, batch_size=0, image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"shard_index must lie in \[0, 2\), got -1"):
        iterate_eval_captions(
            split, tokenizer, batch_size=2, max_text_length=TEXT_LENGTH, shard_index=-1, shard_count=2
        )


# Single-modality training batches and evaluation on image-only and text-only splits.

FOLDER_IMAGES = 12


def _reject_decoding(index):
    raise RuntimeError(f"image {index} was decoded")


@pytest.fixture(scope="module")
def folder_split(tmp_path_factory):
    """Training split of an image folder: real PNG files of random noise, without captions."""
    root = tmp_path_factory.mktemp("image_folder")
    rng = np.random.default_rng(0)
    for i in range(FOLDER_IMAGES):
        folder = root / f"group_{i % 3}"
        folder.mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / f"image_{i:02d}.png")
    train, _ = load_image_folder(str(root), 0.3)
    return train


@pytest.fixture(scope="module")
def undecodable_split(split):
    """The builtin split with a load_image that raises, to prove that text mode decodes no image."""
    return CaptionedImages(
        name="undecodable",
        image_ids=split.image_ids,
        captions=split.captions,
        caption_to_image=split.caption_to_image,
        load_image=_reject_decoding,
    )


@pytest.fixture(scope="module")
def text_lines(split):
    return TextLines("lines", split.captions)


def _mode_dataset(split, tokenizer, modalities, batch_size=4, seed=0, shard_index=0, shard_count=1):
    return _train_dataset(split, tokenizer, batch_size, seed, shard_index, shard_count, modalities=modalities)


def test_image_mode_layout(split):
    batch = _mode_dataset(split, None, ("image",))[0]

    assert batch.keys() == {"image", "image_index"}
    assert batch["image"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert batch["image"].dtype == np.float32
    assert batch["image_index"].shape == (4,)
    assert batch["image_index"].dtype == np.int32


def test_image_mode_epochs(split):
    # Batch size 7 equals the image count, so each batch is one epoch over the images.
    dataset = _mode_dataset(split, None, ("image",), batch_size=NUM_IMAGES)
    epoch_0, epoch_1 = dataset[0], dataset[1]

    assert sorted(epoch_0["image_index"].tolist()) == list(range(NUM_IMAGES))
    assert sorted(epoch_1["image_index"].tolist()) == list(range(NUM_IMAGES))
    assert not np.array_equal(epoch_0["image_index"], epoch_1["image_index"])
    assert not np.allclose(
        epoch_0["image"][np.argsort(epoch_0["image_index"])], epoch_1["image"][np.argsort(epoch_1["image_index"])]
    )


def test_image_mode_deterministic(split):
    first = _mode_dataset(split, None, ("image",), seed=5)
    second = _mode_dataset(split, None, ("image",), seed=5)
    other = _mode_dataset(split, None, ("image",), seed=6)

    for step in (0, 3, 500):
        _assert_batches_equal(second[step], first[step])
    assert not np.allclose(other[0]["image"], first[0]["image"])


def test_image_mode_shards(split):
    single = _mode_dataset(split, None, ("image",), batch_size=4)
    shards = [_mode_dataset(split, None, ("image",), batch_size=2, shard_index=s, shard_count=2) for s in range(2)]

    for step in (0, 4):
        for shard_index, shard in enumerate(shards):
            local = shard[step]
            assert np.array_equal(local["image_index"], single[step]["image_index"][shard_index::2])
            assert np.array_equal(local["image"], single[step]["image"][shard_index::2])


def test_image_mode_folder(folder_split):
    dataset = _mode_dataset(folder_split, None, ("image",), batch_size=folder_split.num_images)
    batch = dataset[0]

    assert folder_split.num_captions == 0
    assert batch["image"].shape == (folder_split.num_images, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert sorted(batch["image_index"].tolist()) == list(range(folder_split.num_images))


def test_text_mode_skips_images(undecodable_split, tokenizer):
    dataset = _mode_dataset(undecodable_split, tokenizer, ("text",))
    batch = dataset[1]
    expected_ids, expected_mask = tokenizer.encode(
        [undecodable_split.captions[i] for i in batch["caption_index"]], TEXT_LENGTH
    )

    assert batch.keys() == {"text_ids", "text_mask", "caption_index", "image_index"}
    assert np.array_equal(batch["text_ids"], expected_ids)
    assert np.array_equal(batch["text_mask"], expected_mask)
    assert batch["caption_index"].dtype == np.int32
    assert batch["image_index"].dtype == np.int32
    assert np.array_equal(batch["image_index"], undecodable_split.caption_to_image[batch["caption_index"]])


def test_image_mode_decodes(undecodable_split):
    # The counterpart of test_text_mode_skips_images: this split does fail when an image is read.
    with pytest.raises(RuntimeError, match="was decoded"):
        _mode_dataset(undecodable_split, None, ("image",))[0]


def test_text_mode_text_lines(text_lines, tokenizer):
    # Batch size 7 divides the 14 lines, so batches 0-1 are epoch 0 and 2-3 epoch 1.
    dataset = _mode_dataset(text_lines, tokenizer, ("text",), batch_size=7)
    batches = [dataset[step] for step in range(4)]
    epoch_0 = np.concatenate([batches[0]["caption_index"], batches[1]["caption_index"]])
    epoch_1 = np.concatenate([batches[2]["caption_index"], batches[3]["caption_index"]])

    assert batches[0].keys() == {"text_ids", "text_mask", "caption_index"}
    assert batches[0]["text_ids"].shape == (7, TEXT_LENGTH)
    assert batches[0]["text_ids"].dtype == np.int32
    assert batches[0]["text_mask"].dtype == np.int32
    assert sorted(epoch_0.tolist()) == list(range(NUM_CAPTIONS))
    assert sorted(epoch_1.tolist()) == list(range(NUM_CAPTIONS))
    assert not np.array_equal(epoch_0, epoch_1)


def test_text_mode_deterministic(text_lines, tokenizer):
    first = _mode_dataset(text_lines, tokenizer, ("text",), seed=9)
    second = _mode_dataset(text_lines, tokenizer, ("text",), seed=9)

    for step in (0, 7, 300):
        _assert_batches_equal(second[step], first[step])


def test_text_mode_shards(text_lines, tokenizer):
    single = _mode_dataset(text_lines, tokenizer, ("text",), batch_size=6)
    shards = [
        _mode_dataset(text_lines, tokenizer, ("text",), batch_size=2, shard_index=s, shard_count=3) for s in range(3)
    ]

    for step in (0, 5):
        union = []
        for shard_index, shard in enumerate(shards):
            local = shard[step]
            assert np.array_equal(local["caption_index"], single[step]["caption_index"][shard_index::3])
            union.extend(local["caption_index"].tolist())
        assert sorted(union) == sorted(single[step]["caption_index"].tolist())


@pytest.mark.parametrize("mode", ["image", "text"])
def test_worker_processes_new_modes(mode, folder_split, text_lines, tokenizer):
    if mode == "image":
        dataset = _mode_dataset(folder_split, None, ("image",))
    else:
        dataset = _mode_dataset(text_lines, tokenizer, ("text",))
    iterator = make_train_iterator(dataset, start_step=2, num_workers=1, prefetch_buffer=1)
    try:
        for step in range(2, 5):
            _assert_batches_equal(next(iterator), dataset[step])
    finally:
        iterator.close()


@pytest.mark.parametrize(
    "modalities", [("audio",), ("text", "image"), (), "image", ("image", "image")], ids=str
)
def test_invalid_modalities(split, tokenizer, modalities):
    with pytest.raises(ValueError, match="modalities must be one of") as raised:
        _mode_dataset(split, tokenizer, modalities)

    assert "('image', 'text'), ('image',), ('text',)" in str(raised.value)


def test_text_mode_needs_tokenizer(text_lines):
    with pytest.raises(ValueError, match="a tokenizer is required"):
        _mode_dataset(text_lines, None, ("text",))
    with pytest.raises(ValueError, match="a tokenizer is required"):
        _mode_dataset(text_lines, None, ("image", "text"))


def test_text_mode_needs_captions(folder_split, tokenizer):
    for modalities in (("text",), ("image", "text")):
        with pytest.raises(ValueError, match="has no captions") as raised:
            _mode_dataset(folder_split, tokenizer, modalities)
        assert "modalities=('image',)" in str(raised.value)


def test_image_mode_needs_images(text_lines, tokenizer):
    with pytest.raises(ValueError, match="'lines' has no images") as raised:
        _mode_dataset(text_lines, tokenizer, ("image",))

    assert "modalities=('text',)" in str(raised.value)


def test_eval_captions_text_lines(text_lines, tokenizer):
    batches = list(iterate_eval_captions(text_lines, tokenizer, batch_size=4, max_text_length=TEXT_LENGTH))
    seen = np.concatenate([batch["caption_index"][batch["valid"]] for batch in batches])
    expected_ids, _ = tokenizer.encode(list(text_lines.captions[:4]), TEXT_LENGTH)

    assert all(batch.keys() == {"text_ids", "text_mask", "caption_index", "valid"} for batch in batches)
    assert seen.tolist() == list(range(NUM_CAPTIONS))
    assert np.array_equal(batches[0]["text_ids"], expected_ids)


def test_eval_images_image_only(folder_split):
    batches = list(iterate_eval_images(folder_split, batch_size=3, image_size=IMAGE_SIZE, shard_index=1, shard_count=2))
    seen = np.concatenate([batch["image_index"][batch["valid"]] for batch in batches])
    first_index = int(batches[0]["image_index"][0])

    assert seen.tolist() == list(range(first_index, folder_split.num_images))
    assert first_index == -(-folder_split.num_images // 2)
    np.testing.assert_array_equal(
        batches[0]["image"][0], eval_image_transform(folder_split.load_image(first_index), IMAGE_SIZE)
    )


def test_eval_captions_image_only(folder_split, tokenizer):
    with pytest.raises(ValueError, match="has no captions to evaluate"):
        iterate_eval_captions(folder_split, tokenizer, batch_size=2, max_text_length=TEXT_LENGTH)
