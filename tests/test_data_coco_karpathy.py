"""Tests for the COCO Karpathy reader, on real image files written with Pillow."""

import json
import os
import pickle

import numpy as np
import PIL.Image
import pytest

from multimae_jax.data.coco_karpathy import decode_image_file, load_coco_karpathy

SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")

RED = (230, 20, 20)
BLUE = (20, 20, 230)


def _write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file)


def _save(image, root, relative, **kwargs):
    path = os.path.join(root, "images", relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **kwargs)
    return path


def _two_halves(width, height):
    """RGB image whose left half is red and right half is blue."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = RED
    array[:, width // 2 :] = BLUE
    return PIL.Image.fromarray(array)


@pytest.fixture
def dataset_root(tmp_path):
    """A small dataset with one image of each tricky kind and annotations in both forms."""
    root = str(tmp_path / "coco")

    _save(_two_halves(32, 24), root, "train/plain.jpg", quality=95)

    # Stored 40 wide and 20 high, with EXIF orientation 6 ("rotate 90 degrees clockwise to
    # display"), so the displayed image is 20 wide and 40 high with the red half on top.
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    _save(_two_halves(40, 20), root, "train/rotated.jpg", exif=exif, quality=95)

    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    _save(PIL.Image.fromarray(gray, mode="L"), root, "train/gray.png")

    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, :4] = (*RED, 255)
    rgba[:, 4:] = (0, 0, 0, 0)
    _save(PIL.Image.fromarray(rgba, mode="RGBA"), root, "val/alpha.png")

    palette_image = PIL.Image.new("P", (8, 8))
    palette_image.putpalette([*RED, *BLUE] + [0] * (254 * 3))
    palette_image.paste(1, (0, 4, 8, 8))
    _save(palette_image, root, "val/palette.png")

    wide = np.full((6, 6), 65535, dtype=np.uint16)
    wide[:3] = 257 * 100
    _save(PIL.Image.fromarray(wide), root, "val/sixteen_bit.png")

    _save(PIL.Image.new("CMYK", (8, 8), (0, 255, 255, 0)), root, "val/cmyk.jpg")

    train_entries = [
        {"image": "train/plain.jpg", "caption": "A red and blue picture.", "image_id": 1},
        {"image": "train/rotated.jpg", "caption": "A rotated photo.", "image_id": 2},
        {"image": "train/plain.jpg", "caption": "  Two colours side by side.  ", "image_id": 1},
        {"image": "train/gray.png", "caption": "A gray ramp.", "image_id": 3},
    ]
    _write_json(os.path.join(root, "annotations", "train.json"), train_entries)

    six = [f"caption number {i}" for i in range(6)]
    val_entries = [
        {"image": "val/alpha.png", "caption": six},
        {"image": "val/palette.png", "caption": ["A palette image."]},
        {"image": "val/sixteen_bit.png", "caption": "A 16-bit image."},
        {"image": "val/cmyk.jpg", "caption": ["A CMYK image.", "Red in CMYK."]},
        {"image": "val/alpha.png", "caption": ["A seventh caption."]},
    ]
    _write_json(os.path.join(root, "annotations", "val.json"), val_entries)
    return root


def _write_annotations(root, entries):
    _write_json(os.path.join(root, "annotations", "bad.json"), entries)
    return "bad.json"


def test_train_form_groups_captions(dataset_root):
    split = load_coco_karpathy(dataset_root, "train.json")

    assert split.name == "train.json"
    assert split.image_ids == ("train/plain.jpg", "train/rotated.jpg", "train/gray.png")
    assert split.num_captions == 4
    assert split.caption_to_image.dtype == np.int32
    assert split.caption_to_image.tolist() == [0, 1, 0, 2]
    assert split.captions[2] == "Two colours side by side."


def test_list_form_any_caption_count(dataset_root):
    split = load_coco_karpathy(dataset_root, "val.json")

    assert split.num_images == 4
    assert split.num_captions == 11
    alpha_captions = [c for c, i in zip(split.captions, split.caption_to_image) if i == 0]
    assert len(alpha_captions) == 7
    assert alpha_captions[-1] == "A seventh caption."
    assert split.caption_to_image.tolist().count(3) == 2


def test_exif_orientation_applied(dataset_root):
    split = load_coco_karpathy(dataset_root, "train.json")
    image = split.load_image(1)

    assert image.shape == (40, 20, 3)
    assert image.dtype == np.uint8
    np.testing.assert_allclose(image[5, 10], RED, atol=40)
    np.testing.assert_allclose(image[34, 10], BLUE, atol=40)


def test_plain_jpeg_decoded(dataset_root):
    image = load_coco_karpathy(dataset_root, "train.json").load_image(0)

    assert image.shape == (24, 32, 3)
    np.testing.assert_allclose(image[12, 4], RED, atol=40)
    np.testing.assert_allclose(image[12, 28], BLUE, atol=40)


def test_grayscale_becomes_rgb(dataset_root):
    image = load_coco_karpathy(dataset_root, "train.json").load_image(2)

    assert image.shape == (16, 16, 3)
    assert np.array_equal(image[..., 0], image[..., 1])
    assert np.array_equal(image[..., 0], image[..., 2])
    assert image[0, 15, 0] == 240


def test_rgba_composited_on_white(dataset_root):
    image = load_coco_karpathy(dataset_root, "val.json").load_image(0)

    assert image.shape == (8, 8, 3)
    assert tuple(image[0, 0]) == RED
    assert tuple(image[0, 7]) == (255, 255, 255)


def test_palette_becomes_rgb(dataset_root):
    image = load_coco_karpathy(dataset_root, "val.json").load_image(1)

    assert tuple(image[0, 0]) == RED
    assert tuple(image[7, 0]) == BLUE


def test_sixteen_bit_scaled(dataset_root):
    image = load_coco_karpathy(dataset_root, "val.json").load_image(2)

    assert tuple(image[0, 0]) == (100, 100, 100)
    assert tuple(image[5, 0]) == (255, 255, 255)


def test_cmyk_becomes_rgb(dataset_root):
    image = load_coco_karpathy(dataset_root, "val.json").load_image(3)

    assert image.shape == (8, 8, 3)
    assert image[4, 4, 0] > 200
    assert image[4, 4, 1] < 60
    assert image[4, 4, 2] < 60


def test_load_image_picklable(dataset_root):
    split = load_coco_karpathy(dataset_root, "train.json")
    restored = pickle.loads(pickle.dumps(split.load_image))

    assert np.array_equal(restored(1), split.load_image(1))


def test_undecodable_image_names_path(dataset_root):
    path = os.path.join(dataset_root, "images", "train", "broken.jpg")
    with open(path, "wb") as file:
        file.write(b"this is not a JPEG file")
    name = _write_annotations(dataset_root, [{"image": "train/broken.jpg", "caption": "x"}])
    split = load_coco_karpathy(dataset_root, name)

    with pytest.raises(ValueError, match="broken.jpg"):
        split.load_image(0)


def test_decode_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        decode_image_file(str(tmp_path / "nothing.png"))


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="Dataset root .*absent"):
        load_coco_karpathy(str(tmp_path / "absent"), "train.json")


def test_missing_annotation_folder(tmp_path):
    os.makedirs(tmp_path / "images")
    with pytest.raises(FileNotFoundError, match="Annotation folder .*annotations"):
        load_coco_karpathy(str(tmp_path), "train.json")


def test_missing_image_folder(tmp_path):
    _write_json(str(tmp_path / "annotations" / "train.json"), [])
    with pytest.raises(FileNotFoundError, match="Image folder .*images"):
        load_coco_karpathy(str(tmp_path), "train.json")


def test_missing_annotation_file_lists_files(dataset_root):
    with pytest.raises(FileNotFoundError, match=r"test\.json not found.*train\.json, val\.json"):
        load_coco_karpathy(dataset_root, "test.json")


def test_invalid_json(dataset_root):
    with open(os.path.join(dataset_root, "annotations", "bad.json"), "w", encoding="utf-8") as file:
        file.write('[{"image": "train/plain.jpg",')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON.*line 1"):
        load_coco_karpathy(dataset_root, "bad.json")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"image": "train/plain.jpg"}, r"bad\.json contains a JSON dict, expected a list"),
        ([], r"bad\.json contains an empty list"),
        ([{"image": "train/plain.jpg", "caption": "x"}, ["train/plain.jpg"]], r"bad\.json, entry 1: is a JSON list"),
        ([{"caption": "x"}], r"entry 0: key \"image\" is missing"),
        ([{"image": 7, "caption": "x"}], r"entry 0: key \"image\" must be a non-empty path"),
        ([{"image": "../escape.jpg", "caption": "x"}], r"entry 0: key \"image\" is '\.\./escape\.jpg'"),
        ([{"image": "train/plain.jpg"}], r"entry 0: key \"caption\" is missing"),
        ([{"image": "train/plain.jpg", "caption": []}], r"entry 0: key \"caption\" is an empty list"),
        ([{"image": "train/plain.jpg", "caption": 3}], r"entry 0: key \"caption\" is a JSON int"),
        ([{"image": "train/plain.jpg", "caption": ["ok", None]}], r"entry 0: caption 1 is a JSON NoneType"),
        ([{"image": "train/plain.jpg", "caption": ["ok", "x"]}, {"image": "a.jpg", "caption": " \t"}],
         r"entry 1: caption 0 is empty or whitespace"),
    ],
    ids=[
        "not_list", "empty_list", "entry_not_dict", "image_missing", "image_not_string", "image_escapes",
        "caption_missing", "caption_list_empty", "caption_wrong_type", "caption_not_string", "caption_blank",
    ],
)
def test_malformed_entry(dataset_root, entries, message):
    name = _write_annotations(dataset_root, entries)

    with pytest.raises(ValueError, match=message):
        load_coco_karpathy(dataset_root, name)


def test_missing_images_counted(dataset_root):
    entries = [{"image": "train/plain.jpg", "caption": "ok"}]
    entries += [{"image": f"gone/{i}.jpg", "caption": "lost"} for i in range(7)]
    name = _write_annotations(dataset_root, entries)

    with pytest.raises(FileNotFoundError, match=r"7 of 8 images .* gone/0\.jpg, gone/1\.jpg.* and 2 more"):
        load_coco_karpathy(dataset_root, name)


def test_coco_mini_counts():
    root = os.path.join(SHARED_DATA, "coco_mini")
    if not os.path.isdir(root):
        pytest.skip(f"real data folder {root} is absent")

    for file_name, num_images in [
        ("coco_karpathy_train.json", 130),
        ("coco_karpathy_val.json", 20),
        ("coco_karpathy_test.json", 20),
    ]:
        split = load_coco_karpathy(root, file_name)
        assert split.num_images == num_images, file_name
        assert split.num_captions == 5 * num_images, file_name
        assert np.bincount(split.caption_to_image).tolist() == [5] * num_images, file_name

    image = split.load_image(0)
    assert image.dtype == np.uint8
    assert image.ndim == 3
    assert image.shape[2] == 3
    assert max(image.shape[:2]) <= 640
