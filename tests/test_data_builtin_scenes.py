"""Tests for the generated shape scenes and their captions."""

import pickle

import numpy as np
import pytest

from multimae_jax.data.builtin_scenes import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    make_builtin_split,
    sample_scene,
)

IMAGE_SIZE = 48

CELL_PHRASES = {
    (0, 0): ("top left",),
    (0, 1): ("top center", "top middle"),
    (0, 2): ("top right",),
    (1, 0): ("left side", "center left"),
    (1, 1): ("in the center", "in the middle"),
    (1, 2): ("right side", "center right"),
    (2, 0): ("bottom left",),
    (2, 1): ("bottom center", "bottom middle"),
    (2, 2): ("bottom right",),
}


def _cell(image, row, column):
    side = image.shape[0] // 3
    return image[row * side : (row + 1) * side, column * side : (column + 1) * side]


def test_split_layout():
    split = make_builtin_split("val", num_images=6, image_size=IMAGE_SIZE, seed=3, captions_per_image=4)

    assert split.name == "builtin/val"
    assert split.image_ids[5] == "builtin/val/000005"
    assert split.num_images == 6
    assert split.num_captions == 24
    assert np.bincount(split.caption_to_image).tolist() == [4] * 6


def test_captions_of_image_distinct():
    split = make_builtin_split("train", num_images=10, image_size=IMAGE_SIZE, captions_per_image=5)

    for index in range(split.num_images):
        captions = [c for c, i in zip(split.captions, split.caption_to_image) if i == index]
        assert len(set(captions)) == 5, captions


def test_image_shape_dtype():
    image = make_builtin_split("test", num_images=2, image_size=IMAGE_SIZE).load_image(1)

    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert image.dtype == np.uint8


def test_deterministic_regeneration():
    first = make_builtin_split("train", num_images=5, image_size=IMAGE_SIZE, seed=7)
    second = make_builtin_split("train", num_images=5, image_size=IMAGE_SIZE, seed=7)
    restored_loader = pickle.loads(pickle.dumps(first.load_image))

    assert first.captions == second.captions
    for index in range(5):
        assert np.array_equal(first.load_image(index), second.load_image(index))
        assert np.array_equal(first.load_image(index), restored_loader(index))


def test_seed_changes_scenes():
    first = make_builtin_split("train", num_images=5, image_size=IMAGE_SIZE, seed=0)
    second = make_builtin_split("train", num_images=5, image_size=IMAGE_SIZE, seed=1)

    assert first.captions != second.captions


def test_splits_differ():
    train = make_builtin_split("train", num_images=8, image_size=IMAGE_SIZE)
    val = make_builtin_split("val", num_images=8, image_size=IMAGE_SIZE)

    identical = [np.array_equal(train.load_image(i), val.load_image(i)) for i in range(8)]
    assert not any(identical)
    assert train.captions != val.captions


def test_one_shape_drawn_where_captioned():
    split = make_builtin_split("train", num_images=40, image_size=IMAGE_SIZE, seed=0)
    one_shape = [i for i in range(40) if len(sample_scene(0, "train", i).shapes) == 1]
    assert len(one_shape) >= 5

    for index in one_shape[:5]:
        scene = sample_scene(0, "train", index)
        placed = scene.shapes[0]
        image = split.load_image(index)
        background = np.asarray(BACKGROUNDS[scene.background], dtype=np.uint8)
        color = np.asarray(COLORS[placed.color], dtype=np.uint8)

        # The shape colour covers the centre of the captioned cell.
        center = _cell(image, placed.row, placed.column)[IMAGE_SIZE // 6, IMAGE_SIZE // 6]
        assert np.array_equal(center, color), index

        # Every other cell is plain background.
        for row in range(3):
            for column in range(3):
                if (row, column) != (placed.row, placed.column):
                    assert np.all(_cell(image, row, column) == background), (index, row, column)

        # Each caption names this colour, shape, background and cell.
        captions = [c for c, i in zip(split.captions, split.caption_to_image) if i == index]
        for caption in captions:
            assert f"{placed.color} {placed.shape}" in caption
            assert scene.background in caption
            assert any(phrase in caption for phrase in CELL_PHRASES[(placed.row, placed.column)]), caption


def test_size_visible_in_pixels():
    split = make_builtin_split("train", num_images=60, image_size=IMAGE_SIZE, seed=0)
    areas = {"small": [], "large": []}
    for index in range(60):
        scene = sample_scene(0, "train", index)
        if len(scene.shapes) != 1:
            continue
        placed = scene.shapes[0]
        image = split.load_image(index)
        area = int(np.all(image == np.asarray(COLORS[placed.color], dtype=np.uint8), axis=-1).sum())
        areas[placed.size].append(area)

    assert areas["small"]
    assert areas["large"]
    assert max(areas["small"]) < min(areas["large"])


def test_two_shape_captions_name_both():
    split = make_builtin_split("val", num_images=30, image_size=IMAGE_SIZE, seed=2)
    two_shapes = [i for i in range(30) if len(sample_scene(2, "val", i).shapes) == 2]
    assert two_shapes

    for index in two_shapes:
        first, second = sample_scene(2, "val", index).shapes
        assert (first.row, first.column) != (second.row, second.column)
        captions = [c for c, i in zip(split.captions, split.caption_to_image) if i == index]
        for caption in captions:
            assert f"{first.color} {first.shape}" in caption
            assert f"{second.color} {second.shape}" in caption


def test_relation_matches_rows():
    split = make_builtin_split("val", num_images=60, image_size=IMAGE_SIZE, seed=2, captions_per_image=7)
    checked = 0
    for caption, index in zip(split.captions, split.caption_to_image):
        if " is above " not in caption and " is below " not in caption:
            continue
        shapes = {f"{s.color} {s.shape}": s for s in sample_scene(2, "val", int(index)).shapes}
        first_name, second_name = sorted(shapes, key=caption.index)
        above = shapes[first_name].row < shapes[second_name].row
        assert (" is above " in caption) == above, caption
        checked += 1

    assert checked > 0


def test_vocabulary_small():
    split = make_builtin_split("train", num_images=200, image_size=IMAGE_SIZE, seed=0)
    words = {word.strip(",") for caption in split.captions for word in caption.split()}

    assert len(words) < 80
    assert set(SHAPES) <= words


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "dev"}, "Unknown built-in split 'dev'"),
        ({"num_images": 0}, "num_images must be at least 1"),
        ({"image_size": 8}, "image_size must be at least 16"),
        ({"captions_per_image": 0}, "captions_per_image must be at least 1"),
        ({"seed": -1}, "seed must be non-negative"),
    ],
    ids=["split", "num_images", "image_size", "captions", "seed"],
)
def test_invalid_arguments(kwargs, message):
    arguments = {"split": "train", "num_images": 2, "image_size": IMAGE_SIZE} | kwargs

    with pytest.raises(ValueError, match=message):
        make_builtin_split(**arguments)
