"""Reader for image-caption data in the COCO Karpathy layout used by BLIP and ALBEF.

Layout:
    <root>/images/<entry["image"]>          image files, any format Pillow decodes
    <root>/annotations/<annotation_file>    a JSON list of entries

Train files have one entry per caption, {"image": str, "caption": str, ...}. Val and test files
have one entry per image, {"image": str, "caption": [str, ...], ...}. Either form is accepted in
any file, and captions are grouped by image in the order images first appear.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import PIL.Image
import PIL.ImageOps

from multimae_jax.data.captioned_images import CaptionedImages

# Number of missing image paths listed in the error message.
_MAX_LISTED_MISSING = 5

# Modes that may carry an alpha channel or a transparent palette entry.
_MODES_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def load_coco_karpathy(root: str, annotation_file: str) -> CaptionedImages:
    """Read one annotation file of a COCO Karpathy style dataset.

    Args:
        root: Dataset folder that contains `images/` and `annotations/`.
        annotation_file: File name inside `<root>/annotations`, e.g. "coco_karpathy_train.json".

    Returns:
        The split, named after `annotation_file`. Image ids are the "image" paths relative to
        `<root>/images`, and `load_image` decodes one file to uint8 [H, W, 3] RGB.

    Raises:
        FileNotFoundError: A folder, the annotation file or an image file is missing.
        ValueError: The annotation file is not valid JSON or an entry is malformed. The message
            names the file and the entry index.
    """
    annotation_path = _find_annotation_file(root, annotation_file)
    entries = _read_json_list(annotation_path)
    image_ids, captions, caption_to_image = _group_captions(entries, annotation_path)

    image_dir = os.path.join(root, "images")
    _check_image_files(image_dir, image_ids, annotation_path)

    return CaptionedImages(
        name=annotation_file,
        image_ids=tuple(image_ids),
        captions=tuple(captions),
        caption_to_image=np.asarray(caption_to_image, dtype=np.int32),
        load_image=functools.partial(_load_indexed_image, image_dir, tuple(image_ids)),
    )


def decode_image_file(path: str) -> np.ndarray:
    """Decode an image file to uint8 [H, W, 3] RGB.

    The EXIF orientation tag is applied, so the array is the image as a viewer shows it.
    Transparent pixels are composited onto white. 16-bit grayscale is scaled to 8 bits.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: Pillow cannot decode the file. The message names the path.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file {path} not found.")

    try:
        with PIL.Image.open(path) as image:
            image.load()
            image = PIL.ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        # Pillow reports corrupt or unknown files as OSError (UnidentifiedImageError is a
        # subclass), and its PNG and JPEG readers raise SyntaxError or ValueError for some
        # malformed chunks and markers.
        raise ValueError(
            f"Could not decode image file {path}: {error}. Replace the file with a valid image "
            "or remove its entries from the annotation file."
        ) from error

    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Convert an image of any Pillow mode to mode RGB."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's own conversion clips 16-bit values at 255 and turns most pixels white, so
        # scale the full 16-bit range down to 8 bits instead.
        # NOTE: mode "I" is treated as 16-bit data, as 16-bit PNG and TIFF files decode to it;
        # 32-bit integer images with values above 65535 saturate.
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        return PIL.Image.fromarray(gray, mode="L").convert("RGB")

    if image.mode == "F":
        gray = np.clip(np.round(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return PIL.Image.fromarray(gray, mode="L").convert("RGB")

    if image.mode in _MODES_WITH_ALPHA or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")

    return image.convert("RGB")


def _load_indexed_image(image_dir: str, image_ids: tuple[str, ...], index: int) -> np.ndarray:
    """Decode image `index` of a split; module-level so that Grain workers can unpickle it."""
    return decode_image_file(os.path.join(image_dir, image_ids[index]))


def _find_annotation_file(root: str, annotation_file: str) -> str:
    """Return the annotation file path, or raise FileNotFoundError saying which part is missing."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Dataset root {root} not found. Set the data root to a folder with images/ and annotations/."
        )

    annotation_dir = os.path.join(root, "annotations")
    if not os.path.isdir(annotation_dir):
        raise FileNotFoundError(
            f"Annotation folder {annotation_dir} not found. A COCO Karpathy style root contains "
            "images/ and annotations/."
        )

    image_dir = os.path.join(root, "images")
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(
            f"Image folder {image_dir} not found. A COCO Karpathy style root contains images/ and annotations/."
        )

    annotation_path = os.path.join(annotation_dir, annotation_file)
    if not os.path.isfile(annotation_path):
        available = sorted(name for name in os.listdir(annotation_dir) if name.endswith(".json"))
        listing = ", ".join(available) if available else "none"
        raise FileNotFoundError(
            f"Annotation file {annotation_path} not found. JSON files in {annotation_dir}: {listing}. "
            "Set the annotation file name to one of them."
        )

    return annotation_path


def _read_json_list(annotation_path: str) -> list:
    """Parse the annotation file, which must contain a JSON list."""
    try:
        with open(annotation_path, encoding="utf-8") as file:
            entries = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Annotation file {annotation_path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}. Fix or regenerate the file."
        ) from error
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Annotation file {annotation_path} is not UTF-8 text: {error}. Save it as UTF-8 JSON."
        ) from error

    if not isinstance(entries, list):
        raise ValueError(
            f"Annotation file {annotation_path} contains a JSON {type(entries).__name__}, expected a list "
            'of entries like {"image": "path.jpg", "caption": "text"}.'
        )
    if not entries:
        raise ValueError(f"Annotation file {annotation_path} contains an empty list; add at least one entry.")

    return entries


def _group_captions(entries: list, annotation_path: str) -> tuple[list[str], list[str], list[int]]:
    """Validate the entries and group their captions by image.

    Returns:
        image_ids in first-seen order, all captions, and the image index of each caption.
    """
    image_index_by_id: dict[str, int] = {}
    image_ids: list[str] = []
    captions: list[str] = []
    caption_to_image: list[int] = []

    for entry_index, entry in enumerate(entries):
        where = f"Annotation file {annotation_path}, entry {entry_index}"
        image_id = _validate_image_field(entry, where)
        entry_captions = _validate_caption_field(entry, where)

        if image_id not in image_index_by_id:
            image_index_by_id[image_id] = len(image_ids)
            image_ids.append(image_id)
        image_index = image_index_by_id[image_id]

        for caption in entry_captions:
            captions.append(caption)
            caption_to_image.append(image_index)

    return image_ids, captions, caption_to_image


def _validate_image_field(entry: object, where: str) -> str:
    """Return the entry's relative image path, or raise ValueError naming the entry."""
    if not isinstance(entry, dict):
        raise ValueError(
            f'{where}: is a JSON {type(entry).__name__}, expected an object with "image" and "caption" keys.'
        )
    if "image" not in entry:
        raise ValueError(f'{where}: key "image" is missing. Add the image path relative to <root>/images.')

    image_id = entry["image"]
    if not isinstance(image_id, str) or not image_id.strip():
        raise ValueError(f'{where}: key "image" must be a non-empty path string, got {image_id!r}.')
    if os.path.isabs(image_id) or ".." in image_id.replace("\\", "/").split("/"):
        raise ValueError(
            f'{where}: key "image" is {image_id!r}, but it must be a path inside <root>/images '
            '(relative, without "..").'
        )

    return image_id


def _validate_caption_field(entry: dict, where: str) -> list[str]:
    """Return the entry's captions (stripped of surrounding whitespace), or raise ValueError."""
    if "caption" not in entry:
        raise ValueError(f'{where}: key "caption" is missing. Add a caption string or a list of them.')

    raw = entry["caption"]
    if isinstance(raw, str):
        raw_captions = [raw]
    elif isinstance(raw, list):
        raw_captions = raw
        if not raw_captions:
            raise ValueError(f'{where}: key "caption" is an empty list. Add at least one caption or remove the entry.')
    else:
        raise ValueError(
            f'{where}: key "caption" is a JSON {type(raw).__name__}, expected a string or a list of strings.'
        )

    captions = []
    for caption_index, caption in enumerate(raw_captions):
        if not isinstance(caption, str):
            raise ValueError(
                f'{where}: caption {caption_index} is a JSON {type(caption).__name__}, expected a string.'
            )
        if not caption.strip():
            raise ValueError(
                f'{where}: caption {caption_index} is empty or whitespace. Write the caption text or remove it.'
            )
        captions.append(caption.strip())

    return captions


def _check_image_files(image_dir: str, image_ids: list[str], annotation_path: str) -> None:
    """Raise FileNotFoundError when image files listed in the annotations do not exist."""
    missing = [image_id for image_id in image_ids if not os.path.isfile(os.path.join(image_dir, image_id))]
    if not missing:
        return

    listed = ", ".join(missing[:_MAX_LISTED_MISSING])
    more = f" and {len(missing) - _MAX_LISTED_MISSING} more" if len(missing) > _MAX_LISTED_MISSING else ""
    raise FileNotFoundError(
        f"{len(missing)} of {len(image_ids)} images listed in {annotation_path} are missing from {image_dir}: "
        f"{listed}{more}. Copy the images there or remove their entries."
    )
