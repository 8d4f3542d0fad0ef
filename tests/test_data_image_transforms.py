"""Tests for the training and evaluation image transforms."""

import numpy as np
import PIL.Image
import pytest

from multimae_jax.data.image_transforms import (
    _sample_crop_box,
    IMAGENET_MEAN,
    IMAGENET_STD,
    denormalize,
    eval_image_transform,
    normalize,
    train_image_transform,
)


def _random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_train_shape_dtype():
    output = train_image_transform(_random_image(30, 50), np.random.default_rng(0), image_size=16)

    assert output.shape == (16, 16, 3)
    assert output.dtype == np.float32


def test_eval_shape_dtype():
    output = eval_image_transform(_random_image(50, 30), image_size=12)

    assert output.shape == (12, 12, 3)
    assert output.dtype == np.float32


def test_eval_inverts_to_resized_image():
    image = _random_image(40, 25)
    resized = PIL.Image.fromarray(image).resize((20, 20), resample=PIL.Image.Resampling.BICUBIC)
    expected = np.asarray(resized, dtype=np.float32) / 255.0

    restored = denormalize(eval_image_transform(image, image_size=20))

    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, expected, atol=1e-6)


def test_normalize_constants():
    gray = np.full((1, 1, 3), 255, dtype=np.uint8)
    expected = (1.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)

    np.testing.assert_allclose(normalize(gray)[0, 0], expected, rtol=1e-6)


def test_denormalize_clips():
    restored = denormalize(np.full((2, 2, 3), 100.0, dtype=np.float32))

    assert restored.max() == 1.0
    assert denormalize(np.full((2, 2, 3), -100.0)).min() == 0.0


def test_crop_deterministic_per_rng():
    image = _random_image(40, 60)
    first = train_image_transform(image, np.random.default_rng(5), image_size=16, min_crop_scale=0.2)
    second = train_image_transform(image, np.random.default_rng(5), image_size=16, min_crop_scale=0.2)
    other = train_image_transform(image, np.random.default_rng(6), image_size=16, min_crop_scale=0.2)

    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_full_scale_square_falls_back_to_centre():
    # With min_crop_scale 1 on a square image, a drawn box fits only when it rounds to the whole
    # image, and the fallback also takes the whole image, as the eval transform does.
    image = _random_image(32, 32)
    expected = eval_image_transform(image, image_size=16)

    for seed in range(5):
        output = train_image_transform(image, np.random.default_rng(seed), image_size=16, min_crop_scale=1.0)
        np.testing.assert_allclose(output, expected, atol=1e-6)


def test_crop_box_bounds():
    height, width = 40, 60
    boxes = set()
    for seed in range(200):
        left, top, crop_width, crop_height = _sample_crop_box(height, width, np.random.default_rng(seed), 0.3)
        boxes.add((left, top, crop_width, crop_height))
        assert 0 <= left
        assert left + crop_width <= width
        assert 0 <= top
        assert top + crop_height <= height
        # Rounding the sides to whole pixels moves the area and the ratio slightly.
        assert crop_width * crop_height >= 0.3 * height * width * 0.95
        assert 0.75 * 0.95 <= crop_width / crop_height <= 4 / 3 * 1.05

    assert len(boxes) > 150


def test_fallback_box_clamps_ratio():
    # A 4:1 image admits no box of half its area with a ratio in [3/4, 4/3], so the
    # fallback takes the largest centred 4:3 box.
    box = _sample_crop_box(20, 80, np.random.default_rng(0), 0.5)

    assert box == ((80 - 27) // 2, 0, 27, 20)


def test_flip_mirrors_crop():
    image = _random_image(24, 36)
    flipped_count = 0
    for seed in range(20):
        plain = train_image_transform(image, np.random.default_rng(seed), image_size=12, random_flip=False)
        maybe = train_image_transform(image, np.random.default_rng(seed), image_size=12, random_flip=True)
        if np.array_equal(maybe, plain[:, ::-1]):
            flipped_count += 1
        else:
            assert np.array_equal(maybe, plain), seed

    assert 0 < flipped_count < 20


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 3), dtype=np.float32), "Expected a uint8 NumPy image"),
        (np.zeros((4, 4), dtype=np.uint8), r"shape \[H, W, 3\]"),
        (np.zeros((4, 4, 4), dtype=np.uint8), r"got shape \(4, 4, 4\)"),
    ],
    ids=["float", "gray", "rgba"],
)
def test_invalid_image(image, message):
    with pytest.raises(ValueError, match=message):
        eval_image_transform(image, image_size=8)


def test_invalid_crop_scale():
    with pytest.raises(ValueError, match="min_crop_scale must lie in"):
        train_image_transform(_random_image(8, 8), np.random.default_rng(0), image_size=8, min_crop_scale=0.0)
