"""Tests for image-folder splits, on real image files written with Pillow."""

import os
import pickle

import numpy as np
import PIL.Image
import pytest

from multimae_jax.data.heldout_split import is_heldout
from multimae_jax.data.image_folder import IMAGE_EXTENSIONS, find_image_files, load_image_folder

SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")

# Relative path -> (format, RGB value) of the visible images written by the `folder` fixture.
VISIBLE_IMAGES = {
    "animals/cats/tabby.JPG": ("JPEG", (200, 40, 40)),
    "animals/dog.png": ("PNG", (10, 200, 30)),
    "beach.jpeg": ("JPEG", (30, 60, 220)),
    "city/night.bmp": ("BMP", (90, 90, 90)),
    "city/street.webp": ("WEBP", (250, 250, 10)),
    "scan.tiff": ("TIFF", (5, 120, 160)),
}


def _write_image(root, relative, image_format, color, size=(20, 16)):
    path = os.path.join(root, *relative.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.new("RGB", size, color).save(path, format=image_format)
    return path


def _write_text(root, relative, text):
    path = os.path.join(root, *relative.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)


@pytest.fixture
def folder(tmp_path):
    """Nested images plus files that must be skipped: hidden ones, hidden folders and non-images."""
    root = str(tmp_path / "photos")
    for relative, (image_format, color) in VISIBLE_IMAGES.items():
        _write_image(root, relative, image_format, color)

    _write_image(root, ".thumbnails/beach.jpg", "JPEG", (0, 0, 0))
    _write_image(root, "animals/.cache/dog.png", "PNG", (0, 0, 0))
    _write_image(root, ".hidden.png", "PNG", (0, 0, 0))
    _write_text(root, "notes.txt", "not an image")
    _write_text(root, "city/labels.csv", "name,label\n")
    return root


def _many_images(root, count):
    """Write `count` tiny PNG files named by index and return their relative paths."""
    names = [f"image_{i:03d}.png" for i in range(count)]
    for i, name in enumerate(names):
        _write_image(root, name, "PNG", (i % 256, 0, 0), size=(4, 4))
    return names


def test_find_skips_hidden_and_other(folder):
    assert find_image_files(folder) == sorted(VISIBLE_IMAGES)


def test_find_extensions_case_insensitive(tmp_path):
    root = str(tmp_path)
    for extension in IMAGE_EXTENSIONS:
        _write_text(root, f"lower{extension}", "")
        _write_text(root, f"upper{extension.upper()}", "")

    found = find_image_files(root)

    assert len(found) == 2 * len(IMAGE_EXTENSIONS)
    assert found == sorted(found)


def test_find_missing_folder(tmp_path):
    missing = str(tmp_path / "no_such_folder")

    with pytest.raises(FileNotFoundError, match="no_such_folder") as raised:
        find_image_files(missing)

    assert "config.data.image_dir" in str(raised.value)


def test_find_file_not_folder(tmp_path):
    _write_text(str(tmp_path), "photo_list.txt", "a.jpg\n")

    with pytest.raises(FileNotFoundError, match="photo_list.txt") as raised:
        find_image_files(str(tmp_path / "photo_list.txt"))

    assert "not a folder" in str(raised.value)
    assert "config.data.image_dir" in str(raised.value)


def test_find_no_images(tmp_path):
    root = str(tmp_path / "documents")
    _write_text(root, "readme.md", "text")
    _write_text(root, "sub/data.json", "{}")
    _write_text(root, ".hidden.jpg", "")

    with pytest.raises(ValueError, match="contains no image file") as raised:
        find_image_files(root)

    message = str(raised.value)
    assert "documents" in message
    assert ".jpg" in message
    assert ".tiff" in message
    assert "readme.md" in message
    assert "sub/data.json" in message
    assert "config.data.image_dir" in message


def test_find_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="contains no visible files"):
        find_image_files(str(tmp_path))


def test_load_partition(folder):
    # With 6 files, a fraction of 0.5 puts at least one file on each side for these names.
    train, heldout = load_image_folder(folder, 0.5)

    assert sorted(train.image_ids + heldout.image_ids) == sorted(VISIBLE_IMAGES)
    assert list(train.image_ids) == sorted(train.image_ids)
    assert all(is_heldout(image_id, 0.5) for image_id in heldout.image_ids)
    assert not any(is_heldout(image_id, 0.5) for image_id in train.image_ids)
    assert train.num_captions == 0
    assert heldout.num_captions == 0
    assert train.caption_to_image.shape == (0,)
    assert os.path.abspath(folder) in train.name
    assert "train" in train.name
    assert "held out" in heldout.name


def test_load_image_pixels(folder):
    train, heldout = load_image_folder(folder, 0.5)

    for split in (train, heldout):
        for index, image_id in enumerate(split.image_ids):
            image = split.load_image(index)
            image_format, color = VISIBLE_IMAGES[image_id]
            assert image.shape == (16, 20, 3), image_id
            assert image.dtype == np.uint8, image_id
            # JPEG and lossy WebP shift a flat color by a few levels, the other formats keep it.
            tolerance = 12 if image_format in ("JPEG", "WEBP") else 0
            assert np.abs(image.astype(int) - color).max() <= tolerance, image_id


def test_load_picklable(folder):
    train, _ = load_image_folder(folder, 0.5)
    restored = pickle.loads(pickle.dumps(train))

    assert restored.image_ids == train.image_ids
    assert np.array_equal(restored.load_image(0), train.load_image(0))


def test_load_stable_when_files_added(tmp_path):
    root = str(tmp_path / "growing")
    names = _many_images(root, 40)
    before_train, before_heldout = load_image_folder(root, 0.25)

    for i in range(25):
        _write_image(root, f"added/new_{i}.png", "PNG", (0, i, 0), size=(4, 4))
    after_train, after_heldout = load_image_folder(root, 0.25)

    assert set(before_heldout.image_ids) == set(after_heldout.image_ids) & set(names)
    assert set(before_train.image_ids) == set(after_train.image_ids) & set(names)
    assert after_train.num_images + after_heldout.num_images == 65


def test_load_deterministic(tmp_path):
    root = str(tmp_path / "images")
    _many_images(root, 30)

    first = load_image_folder(root, 0.3)
    second = load_image_folder(root, 0.3)

    assert first[0].image_ids == second[0].image_ids
    assert first[1].image_ids == second[1].image_ids


def test_load_corrupt_image(tmp_path):
    root = str(tmp_path / "images")
    _many_images(root, 20)
    with open(os.path.join(root, "broken.jpg"), "wb") as file:
        file.write(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    train, heldout = load_image_folder(root, 0.5)
    split = train if "broken.jpg" in train.image_ids else heldout

    with pytest.raises(ValueError, match="broken.jpg") as raised:
        split.load_image(split.image_ids.index("broken.jpg"))

    message = str(raised.value)
    assert "Could not decode image file" in message
    assert "delete it from the image folder" in message
    assert "annotation" not in message


def test_load_zero_fraction(folder):
    with pytest.raises(ValueError, match="heldout_fraction") as raised:
        load_image_folder(folder, 0.0)

    assert os.path.abspath(folder) in str(raised.value)


def test_load_too_few_files(tmp_path):
    root = str(tmp_path / "single")
    _write_image(root, "only.png", "PNG", (1, 2, 3))
    fraction = 0.5 if not is_heldout("only.png", 0.5) else 0.01

    with pytest.raises(ValueError, match="has 1 example, and") as raised:
        load_image_folder(root, fraction)

    assert root in str(raised.value)


def test_load_real_photos():
    images = os.path.join(SHARED_DATA, "coco_mini", "images")
    if not os.path.isdir(images):
        pytest.skip(f"real data not found at {images}: this test needs ../shared/data beside the checkout")

    train, heldout = load_image_folder(images, 0.2)
    files = [
        os.path.relpath(os.path.join(folder, name), images).replace(os.sep, "/")
        for folder, _, names in os.walk(images)
        for name in names
        if name.lower().endswith((".jpg", ".jpeg", ".png"))
    ]

    assert train.num_images + heldout.num_images == len(files)
    assert 0 < heldout.num_images < train.num_images
    image = heldout.load_image(0)
    assert image.ndim == 3
    assert image.shape[2] == 3
    assert image.dtype == np.uint8
