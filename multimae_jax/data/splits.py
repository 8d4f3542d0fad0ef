"""Choice of the train, val and test splits from `config.data`: a COCO Karpathy folder or built-in scenes."""

import logging
import os
from typing import NamedTuple, Optional

from multimae_jax.data.builtin_scenes import make_builtin_split
from multimae_jax.data.captioned_images import CaptionedImages
from multimae_jax.data.coco_karpathy import load_coco_karpathy

# Image side used when config.data.image_size is None. The generated scenes are simple shapes, so a smaller
# size keeps the built-in demo run short on a CPU.
DEFAULT_IMAGE_SIZE = 224
DEFAULT_BUILTIN_IMAGE_SIZE = 112


class Splits(NamedTuple):
    """The splits of one run. `test` is None when the data has no test split."""

    train: CaptionedImages
    val: CaptionedImages
    test: Optional[CaptionedImages]
    image_size: int
    builtin: bool


def resolve_image_size(data_config) -> int:
    """Return config.data.image_size, or the default for the configured data source when it is None."""
    if data_config.image_size is not None:
        if data_config.image_size <= 0:
            raise ValueError(f"config.data.image_size must be positive, got {data_config.image_size}")
        return int(data_config.image_size)
    return DEFAULT_IMAGE_SIZE if data_config.root else DEFAULT_BUILTIN_IMAGE_SIZE


def describe_data_source(data_config) -> str:
    """Return one sentence saying which data the run uses, for the first log line."""
    image_size = resolve_image_size(data_config)
    if not data_config.root:
        return (f"Using built-in data: generated scenes of coloured shapes with captions "
                f"({data_config.builtin_train_images} train, {data_config.builtin_val_images} val, "
                f"{data_config.builtin_test_images} test images at {image_size} px), because config.data.root is "
                f"empty. Set --config.data.root=<COCO Karpathy folder> to train on real data.")
    return f"Using COCO Karpathy data from {os.path.abspath(os.path.expanduser(data_config.root))} at {image_size} px."


def load_splits(data_config, seed: int) -> Splits:
    """Load the splits named by `config.data`."""
    image_size = resolve_image_size(data_config)
    if not data_config.root:
        return Splits(
            train=make_builtin_split("train", data_config.builtin_train_images, image_size, seed=seed),
            val=make_builtin_split("val", data_config.builtin_val_images, image_size, seed=seed),
            test=make_builtin_split("test", data_config.builtin_test_images, image_size, seed=seed),
            image_size=image_size,
            builtin=True,
        )

    root = os.path.abspath(os.path.expanduser(data_config.root))
    annotations = os.path.join(root, "annotations")
    for field in ("train_annotations", "val_annotations"):
        # The reader lists the files that exist; this names the config field to set.
        if os.path.isdir(annotations) and not os.path.isfile(os.path.join(annotations, data_config[field])):
            available = sorted(name for name in os.listdir(annotations) if name.endswith(".json"))
            raise FileNotFoundError(f"annotation file {data_config[field]} not found in {annotations} (JSON files "
                                    f"there: {', '.join(available) or 'none'}); set --config.data.{field}=<file "
                                    f"name> to one of them")
    train = load_coco_karpathy(root, data_config.train_annotations)
    val = load_coco_karpathy(root, data_config.val_annotations)
    test = None
    if os.path.exists(os.path.join(root, "annotations", data_config.test_annotations)):
        test = load_coco_karpathy(root, data_config.test_annotations)
    else:
        logging.info("No test annotations %s in %s/annotations; the final evaluation uses the val split",
                     data_config.test_annotations, root)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if split is not None:
            logging.info("%s split: %d images, %d captions", name, split.num_images, split.num_captions)
    return Splits(train=train, val=val, test=test, image_size=image_size, builtin=False)
