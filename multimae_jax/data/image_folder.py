"""Image-only splits from a folder of image files, for image MAE training without captions."""

from __future__ import annotations

import functools
import logging
import os

import numpy as np

from multimae_jax.data.captioned_images import CaptionedImages
from multimae_jax.data.coco_karpathy import decode_image_file
from multimae_jax.data.heldout_split import split_by_hash

logger = logging.getLogger(__name__)

# File name extensions read as images, compared in lower case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Number of other file names listed when a folder contains no image file.
_MAX_LISTED_OTHER_FILES = 5


def find_image_files(directory: str) -> list[str]:
    """List the image files under a folder, recursively.

    Files and folders whose names start with "." are skipped, along with everything inside such
    folders. Symbolic links to files are listed, but links to folders are not followed.

    Args:
        directory: Folder to search (the value of `config.data.image_dir`).

    Returns:
        Sorted paths relative to `directory`, with "/" separators, of the files whose extension
        is in IMAGE_EXTENSIONS (in any case).

    Raises:
        FileNotFoundError: `directory` does not exist or is not a folder.
        ValueError: `directory` contains no image file. The message lists the accepted
            extensions and a few of the other files found.
        OSError: A subfolder cannot be listed, e.g. for lack of permission.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Image folder {directory} not found or not a folder. Set config.data.image_dir to a folder "
            "that contains image files."
        )

    image_files = []
    other_files = []
    for folder, subfolders, file_names in os.walk(directory, onerror=_raise_walk_error):
        # Pruning the list in place stops os.walk from entering hidden folders.
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]

        for name in file_names:
            if name.startswith("."):
                continue
            relative = os.path.relpath(os.path.join(folder, name), directory).replace(os.sep, "/")
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                image_files.append(relative)
            else:
                other_files.append(relative)

    if not image_files:
        raise ValueError(_describe_missing_images(directory, sorted(other_files)))

    return sorted(image_files)


def load_image_folder(directory: str, heldout_fraction: float) -> tuple[CaptionedImages, CaptionedImages]:
    """Read a folder of images as an image-only training split and a held-out split.

    A file's side is decided by hashing its relative path (see `heldout_split.split_by_hash`), so
    adding files to the folder never moves an existing file between the two splits.

    Args:
        directory: Folder searched by `find_image_files`.
        heldout_fraction: Expected share of the files in the held-out split, in (0, 1).

    Returns:
        (train, held out) CaptionedImages without captions. Image ids are paths relative to the
        folder, in sorted order, and `load_image` decodes one file to uint8 [H, W, 3] RGB.

    Raises:
        FileNotFoundError, ValueError: See `find_image_files` and `split_by_hash`.
    """
    absolute_directory = os.path.abspath(directory)
    image_files = find_image_files(absolute_directory)
    train_indices, heldout_indices = split_by_hash(image_files, heldout_fraction, source=absolute_directory)

    train = _image_only_split(f"{absolute_directory} (train)", absolute_directory, image_files, train_indices)
    heldout = _image_only_split(f"{absolute_directory} (held out)", absolute_directory, image_files, heldout_indices)
    logger.info(
        "Image folder %s: %d training images, %d held-out images.",
        absolute_directory,
        train.num_images,
        heldout.num_images,
    )
    return train, heldout


def _image_only_split(name: str, directory: str, image_files: list[str], indices: np.ndarray) -> CaptionedImages:
    """Build a CaptionedImages without captions from the selected files of a folder."""
    image_ids = tuple(image_files[i] for i in indices)
    return CaptionedImages(
        name=name,
        image_ids=image_ids,
        captions=(),
        caption_to_image=np.zeros(0, dtype=np.int32),
        load_image=functools.partial(_load_folder_image, directory, image_ids),
    )


def _load_folder_image(directory: str, image_ids: tuple[str, ...], index: int) -> np.ndarray:
    """Decode image `index` of a folder split; module-level so that Grain workers can unpickle it."""
    path = os.path.join(directory, image_ids[index])
    try:
        return decode_image_file(path)
    except ValueError as error:
        # decode_image_file advises editing an annotation file, which an image folder does not have.
        cause = error.__cause__ if error.__cause__ is not None else error
        raise ValueError(
            f"Could not decode image file {path}: {cause}. Replace the file with a valid image or delete "
            f"it from the image folder {directory}."
        ) from error


def _raise_walk_error(error: OSError) -> None:
    """Make os.walk raise on an unreadable folder instead of skipping it silently."""
    raise error


def _describe_missing_images(directory: str, other_files: list[str]) -> str:
    """Error message for a folder without image files, listing a few of the files it does contain."""
    accepted = ", ".join(IMAGE_EXTENSIONS)
    if other_files:
        listed = ", ".join(other_files[:_MAX_LISTED_OTHER_FILES])
        more = len(other_files) - _MAX_LISTED_OTHER_FILES
        found = f"Other files found there ({len(other_files)}): {listed}" + (f" and {more} more" if more > 0 else "")
    else:
        found = "It contains no visible files"

    return (
        f"Image folder {directory} contains no image file. {found}. Accepted extensions (in any case): "
        f"{accepted}. Hidden files and folders (names starting with '.') are skipped. Add images or set "
        "config.data.image_dir to another folder."
    )
