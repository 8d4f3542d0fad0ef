"""Image preprocessing for training and evaluation, in NumPy and Pillow so it runs in Grain workers."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image

# Per-channel RGB statistics of ImageNet, on the [0, 1] scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Random boxes drawn before falling back to a centre crop.
_MAX_CROP_ATTEMPTS = 10
_MIN_ASPECT_RATIO = 3.0 / 4.0
_MAX_ASPECT_RATIO = 4.0 / 3.0


def train_image_transform(
    image: np.ndarray,
    rng: np.random.Generator,
    image_size: int,
    min_crop_scale: float = 0.5,
    random_flip: bool = False,
) -> np.ndarray:
    """Randomly crop, resize, optionally flip and normalise an image for training.

    The crop covers a fraction in [min_crop_scale, 1] of the image area and has a width/height
    ratio in [3/4, 4/3], drawn log-uniformly. When no such box fits after 10 draws, the
    transform takes the largest centred box with a ratio in that range. The crop is resized
    to image_size x image_size with bicubic interpolation.

    Args:
        image: uint8 [H, W, 3] RGB.
        rng: Source of all randomness, so the same generator state gives the same output.
        image_size: Output side S in pixels.
        min_crop_scale: Smallest crop area as a fraction of the image area, in (0, 1].
        random_flip: Whether to mirror the crop horizontally with probability 1/2.

    Returns:
        float32 [S, S, 3], normalised with IMAGENET_MEAN and IMAGENET_STD.
    """
    _validate_image(image)
    if not 0.0 < min_crop_scale <= 1.0:
        raise ValueError(f"min_crop_scale must lie in (0, 1], got {min_crop_scale}.")

    height, width = image.shape[:2]
    left, top, crop_width, crop_height = _sample_crop_box(height, width, rng, min_crop_scale)
    box = (left, top, left + crop_width, top + crop_height)
    resized = _resize(image, image_size, box)

    # Draw the flip decision only when flips are on, so that turning them on does not change
    # the crops of a run.
    if random_flip and rng.random() < 0.5:
        resized = resized[:, ::-1]

    return normalize(resized)


def eval_image_transform(image: np.ndarray, image_size: int) -> np.ndarray:
    """Resize a whole uint8 [H, W, 3] RGB image to float32 [S, S, 3] (bicubic, no crop) and normalise it."""
    _validate_image(image)
    height, width = image.shape[:2]
    resized = _resize(image, image_size, (0, 0, width, height))
    return normalize(resized)


def normalize(image: np.ndarray) -> np.ndarray:
    """Map uint8 RGB [..., 3] to float32 with ImageNet mean 0 and standard deviation 1 per channel."""
    scaled = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    return (scaled - mean) / std


def denormalize(images) -> np.ndarray:
    """Invert `normalize` on float images [..., 3] (NumPy or JAX), returning float32 in [0, 1] (clipped)."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    restored = np.asarray(images, dtype=np.float32) * std + mean
    return np.clip(restored, 0.0, 1.0)


def _sample_crop_box(
    height: int, width: int, rng: np.random.Generator, min_crop_scale: float
) -> tuple[int, int, int, int]:
    """Return a random crop box (left, top, width, height) in pixels."""
    area = height * width
    log_ratio_range = (math.log(_MIN_ASPECT_RATIO), math.log(_MAX_ASPECT_RATIO))

    for _ in range(_MAX_CROP_ATTEMPTS):
        target_area = area * rng.uniform(min_crop_scale, 1.0)
        aspect_ratio = math.exp(rng.uniform(*log_ratio_range))
        crop_width = int(round(math.sqrt(target_area * aspect_ratio)))
        crop_height = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return left, top, crop_width, crop_height

    return _centre_crop_box(height, width)


def _centre_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """Return the largest centred box (left, top, width, height) with an aspect ratio in [3/4, 4/3]."""
    image_ratio = width / height
    if image_ratio > _MAX_ASPECT_RATIO:
        crop_height = height
        crop_width = max(1, int(round(height * _MAX_ASPECT_RATIO)))
    elif image_ratio < _MIN_ASPECT_RATIO:
        crop_width = width
        crop_height = max(1, int(round(width / _MIN_ASPECT_RATIO)))
    else:
        crop_width, crop_height = width, height

    left = (width - crop_width) // 2
    top = (height - crop_height) // 2
    return left, top, crop_width, crop_height


def _resize(image: np.ndarray, image_size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Bicubically resize the (left, top, right, bottom) box of an image to uint8 [S, S, 3]."""
    if image_size < 1:
        raise ValueError(f"image_size must be at least 1 pixel, got {image_size}.")
    resized = PIL.Image.fromarray(image).resize(
        (image_size, image_size), resample=PIL.Image.Resampling.BICUBIC, box=box
    )
    return np.asarray(resized, dtype=np.uint8)


def _validate_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is uint8 [H, W, 3] with H, W >= 1."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 NumPy image, got {type(image).__name__} {getattr(image, 'dtype', '')}.")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"Expected an RGB image of shape [H, W, 3], got shape {image.shape}.")
