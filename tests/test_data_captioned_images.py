"""Tests for the CaptionedImages split container."""

import functools
import pickle

import numpy as np
import pytest

from multimae_jax.data.captioned_images import CaptionedImages


def _solid_image(value, index):
    return np.full((4, 5, 3), value + index, dtype=np.uint8)


def _make(**overrides):
    fields = {
        "name": "tiny",
        "image_ids": ["a.jpg", "b.jpg"],
        "captions": ["first", "second", "third"],
        "caption_to_image": [0, 1, 1],
        "load_image": functools.partial(_solid_image, 10),
    } | overrides
    return CaptionedImages(**fields)


def test_fields_normalised():
    split = _make()

    assert split.num_images == 2
    assert split.num_captions == 3
    assert split.image_ids == ("a.jpg", "b.jpg")
    assert split.captions == ("first", "second", "third")
    assert split.caption_to_image.dtype == np.int32
    assert not split.caption_to_image.flags.writeable


def test_picklable():
    restored = pickle.loads(pickle.dumps(_make()))

    assert restored.image_ids == ("a.jpg", "b.jpg")
    assert np.array_equal(restored.load_image(1), np.full((4, 5, 3), 11, dtype=np.uint8))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_ids": []}, "has no images"),
        ({"captions": [], "caption_to_image": [0]}, r"shape \(1,\), expected \(0,\)"),
        ({"captions": [], "caption_to_image": np.zeros((0, 2))}, r"shape \(0, 2\), expected \(0,\)"),
        ({"image_ids": ["a.jpg", "a.jpg"]}, r"duplicate image ids, e.g. \['a.jpg'\]"),
        ({"caption_to_image": [0, 1]}, r"shape \(2,\), expected \(3,\)"),
        ({"caption_to_image": [0.0, 1.0, 1.0]}, "dtype float64, expected integers"),
        ({"caption_to_image": [0, 2, 1]}, r"must lie in \[0, 2\), got the range \[0, 2\]"),
        ({"load_image": "a.jpg"}, "load_image must be callable"),
    ],
    ids=["no_images", "map_without_captions", "empty_2d_map", "duplicates", "length", "dtype", "range", "loader"],
)
def test_invalid_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        _make(**overrides)


@pytest.mark.parametrize(
    "caption_to_image",
    [np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64), []],
    ids=["int32", "int64", "list"],
)
def test_image_only_split(caption_to_image):
    split = _make(captions=(), caption_to_image=caption_to_image)

    assert split.num_images == 2
    assert split.num_captions == 0
    assert split.captions == ()
    assert split.caption_to_image.shape == (0,)
    assert split.caption_to_image.dtype == np.int32
    assert not split.caption_to_image.flags.writeable
    assert "num_captions=0" in repr(split)


def test_image_only_split_picklable():
    restored = pickle.loads(pickle.dumps(_make(captions=(), caption_to_image=[])))

    assert restored.num_captions == 0
    assert np.array_equal(restored.load_image(0), np.full((4, 5, 3), 10, dtype=np.uint8))
