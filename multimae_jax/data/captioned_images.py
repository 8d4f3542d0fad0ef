"""Container for one split of an image-caption dataset."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class CaptionedImages:
    """One split of an image-caption dataset: images, their captions and the caption-to-image map.

    A split may have zero captions (`captions=()` and `caption_to_image` of shape (0,)), for
    image-only data such as an image folder. Every split has at least one image.

    Images are not stored. `load_image(i)` decodes or renders image `i` on demand and returns a
    uint8 [H, W, 3] RGB array of any height and width. It must be picklable (a module-level
    function, a `functools.partial` of one, or a small class instance) because Grain worker
    processes receive the split by pickling.

    Attributes:
        name: Split name for messages and logs, e.g. "coco_karpathy_train.json" or "builtin/val".
        image_ids: One unique id per image, e.g. its relative path "val2017/0001.jpg".
        captions: Every caption of the split.
        caption_to_image: int32 [num_captions], the index into `image_ids` of each caption's image.
            An empty map may have any dtype, since `np.asarray([])` is float64.
        load_image: Image index -> uint8 [H, W, 3] RGB array.
    """

    name: str
    image_ids: tuple[str, ...]
    captions: tuple[str, ...]
    caption_to_image: np.ndarray
    load_image: Callable[[int], np.ndarray]

    def __post_init__(self) -> None:
        # Accept lists from callers but store immutable tuples and an int32 array, because the
        # split is shared by every pipeline and worker and must not change under them.
        object.__setattr__(self, "image_ids", tuple(self.image_ids))
        object.__setattr__(self, "captions", tuple(self.captions))
        caption_to_image = np.asarray(self.caption_to_image)
        if caption_to_image.size == 0:
            # An empty map contains no value of a wrong type, so accept `[]` although NumPy makes it float64.
            caption_to_image = caption_to_image.astype(np.int32)

        if not self.image_ids:
            raise ValueError(f"Split {self.name!r} has no images; a split needs at least one image.")
        if len(set(self.image_ids)) != len(self.image_ids):
            counts = collections.Counter(self.image_ids)
            duplicates = sorted(image_id for image_id, count in counts.items() if count > 1)[:5]
            raise ValueError(f"Split {self.name!r} has duplicate image ids, e.g. {duplicates}; ids must be unique.")
        if caption_to_image.ndim != 1 or caption_to_image.shape[0] != len(self.captions):
            raise ValueError(
                f"Split {self.name!r}: caption_to_image has shape {caption_to_image.shape}, "
                f"expected ({len(self.captions)},), one image index per caption."
            )
        if not np.issubdtype(caption_to_image.dtype, np.integer):
            raise ValueError(
                f"Split {self.name!r}: caption_to_image has dtype {caption_to_image.dtype}, expected integers."
            )
        if caption_to_image.size and (caption_to_image.min() < 0 or caption_to_image.max() >= len(self.image_ids)):
            raise ValueError(
                f"Split {self.name!r}: caption_to_image values must lie in [0, {len(self.image_ids)}), "
                f"got the range [{caption_to_image.min()}, {caption_to_image.max()}]."
            )
        if not callable(self.load_image):
            raise ValueError(f"Split {self.name!r}: load_image must be callable, got {type(self.load_image)}.")

        caption_to_image = caption_to_image.astype(np.int32)
        caption_to_image.setflags(write=False)
        object.__setattr__(self, "caption_to_image", caption_to_image)

    @property
    def num_images(self) -> int:
        """Number of images in the split."""
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        """Number of captions in the split."""
        return len(self.captions)

    def __repr__(self) -> str:
        return (
            f"CaptionedImages(name={self.name!r}, num_images={self.num_images}, "
            f"num_captions={self.num_captions})"
        )
