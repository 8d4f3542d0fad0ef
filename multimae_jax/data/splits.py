"""Choice of the train, val and test splits from `config.data`: COCO Karpathy, an image folder, a text file or built-in."""

import logging
import os
from typing import Any, NamedTuple, Optional

from multimae_jax.data.builtin_scenes import make_builtin_split
from multimae_jax.data.captioned_images import CaptionedImages
from multimae_jax.data.coco_karpathy import load_coco_karpathy

# Image side used when config.data.image_size is None. The generated scenes are simple shapes, so a smaller
# size keeps the built-in demo run short on a CPU.
DEFAULT_IMAGE_SIZE = 224
# The default of config.data.heldout_fraction; another value with data that has a val split is reported.
DEFAULT_HELDOUT_FRACTION = 0.05
DEFAULT_BUILTIN_IMAGE_SIZE = 112


class Splits(NamedTuple):
    """The splits of one run. `test` is None when the data has no test split.

    The splits are `CaptionedImages`, except with `config.data.text_file` (`TextLines`) and
    `config.data.image_dir` (`CaptionedImages` without captions); then val is the held-out share of the files
    or lines. `image_size` is None for data configs without images (the text MLM task).
    """

    train: Any
    val: Any
    test: Optional[Any]
    image_size: Optional[int]
    builtin: bool

    def named(self, split_name: str):
        """Return the split called "val" or "test"; "" means test when there is one, else val."""
        if split_name == "":
            split_name = "test" if self.test is not None else "val"
        split = {"val": self.val, "test": self.test}.get(split_name)
        if split is None:
            raise ValueError(f"the data has no {split_name!r} split; set --config.eval.split=val (or '' for the "
                             f"test split when there is one, else val)")
        return split_name, split


def resolve_image_size(data_config) -> Optional[int]:
    """Return config.data.image_size, or the default for the configured data source when it is None.

    Returns None for data configs without an image_size field (tasks without images).
    """
    if "image_size" not in data_config:
        return None
    if data_config.image_size is not None:
        if data_config.image_size <= 0:
            raise ValueError(f"config.data.image_size must be positive, got {data_config.image_size}")
        return int(data_config.image_size)
    return DEFAULT_IMAGE_SIZE if data_config.root or data_config.get("image_dir") else DEFAULT_BUILTIN_IMAGE_SIZE


def describe_data_source(data_config) -> str:
    """Return one sentence saying which data the run uses, for the first log line."""
    image_size = resolve_image_size(data_config)
    at_size = f" at {image_size} px" if image_size else ""
    if data_config.get("image_dir"):
        return (f"Using the images under {_absolute(data_config.image_dir)}{at_size}, with "
                f"{data_config.heldout_fraction:.0%} of the files held out for evaluation.")
    if data_config.get("text_file"):
        return (f"Using the lines of {_absolute(data_config.text_file)}, with {data_config.heldout_fraction:.0%} "
                f"of the lines held out for evaluation.")
    if not data_config.root:
        what = ("generated scenes of coloured shapes with captions" if image_size else
                "the captions of generated scenes of coloured shapes")
        return (f"Using built-in data: {what} ({data_config.builtin_train_images} train, "
                f"{data_config.builtin_val_images} val, {data_config.builtin_test_images} test images{at_size}), "
                f"because config.data.root is empty. Set --config.data.root=<COCO Karpathy folder> to train on "
                f"real data.")
    return f"Using COCO Karpathy data from {_absolute(data_config.root)}{at_size}."


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def load_splits(data_config, seed: int) -> Splits:
    """Load the splits named by `config.data`."""
    image_size = resolve_image_size(data_config)
    if data_config.get("image_dir"):
        from multimae_jax.data.image_folder import load_image_folder

        train, heldout = load_image_folder(_absolute(data_config.image_dir), data_config.heldout_fraction)
        _log_sizes(train=train, val=heldout)
        return Splits(train=train, val=heldout, test=None, image_size=image_size, builtin=False)
    if data_config.get("text_file"):
        from multimae_jax.data.text_file import load_text_file

        train, heldout = load_text_file(_absolute(data_config.text_file), data_config.heldout_fraction)
        _log_sizes(train=train, val=heldout)
        return Splits(train=train, val=heldout, test=None, image_size=None, builtin=False)
    if data_config.get("heldout_fraction", DEFAULT_HELDOUT_FRACTION) != DEFAULT_HELDOUT_FRACTION:
        logging.warning("config.data.heldout_fraction=%g is ignored: it applies to config.data.image_dir and "
                        "text_file only, and this data has its own val split", data_config.heldout_fraction)
    if not data_config.root:
        # Scenes are rendered when read, so a text-only run never draws them; any positive size will do.
        render_size = image_size or DEFAULT_BUILTIN_IMAGE_SIZE
        return Splits(
            train=make_builtin_split("train", data_config.builtin_train_images, render_size, seed=seed),
            val=make_builtin_split("val", data_config.builtin_val_images, render_size, seed=seed),
            test=make_builtin_split("test", data_config.builtin_test_images, render_size, seed=seed),
            image_size=image_size,
            builtin=True,
        )

    root = _absolute(data_config.root)
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
    _log_sizes(train=train, val=val, test=test)
    return Splits(train=train, val=val, test=test, image_size=image_size, builtin=False)


def _log_sizes(**splits) -> None:
    for name, split in splits.items():
        if split is None:
            continue
        counts = [f"{split.num_images} images"] if hasattr(split, "num_images") else []
        counts += [f"{split.num_captions} captions"] if split.num_captions else []
        logging.info("%s split (%s): %s", name, split.name, ", ".join(counts))
