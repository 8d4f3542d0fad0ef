"""Reconstruction runs: a checkpoint's MAE reconstructions of image files given on the command line."""

import logging
import os
from collections.abc import Sequence
from typing import Optional

import jax
import numpy as np

from multimae_jax.data.coco_karpathy import decode_image_file
from multimae_jax.data.image_transforms import eval_image_transform
from multimae_jax.data.splits import resolve_image_size
from multimae_jax.evaluation.eval_only import restore_checkpoint_model
from multimae_jax.evaluation.reconstructions import write_reconstruction_grid
from multimae_jax.tasks.registry import TASKS, get_task
from multimae_jax.training.config_checks import validate_config


def reconstruct_image_files(config, workdir: str, image_paths: Sequence[str], caption: str = "",
                            checkpoint: Optional[str] = None) -> str:
    """Write `<workdir>/reconstructions/reconstruct_step_<N>.png` for image files, with checkpoint step N.

    The images are decoded and resized whole to the config's image size, as in evaluation, and all get the same
    caption. The patch mask comes from jax.random.key(config.seed).

    Args:
      image_paths: image files in any format Pillow reads; one grid row each, in this order.
      caption: the caption given to every image, read by fusion models only; empty gives the text encoder
        [CLS] [SEP] only.
      checkpoint: as `--checkpoint` (see `locate_checkpoint`); empty for the newest in <workdir>/checkpoints.

    Returns:
      The path of the PNG file.

    Raises:
      ValueError: a task without MAE decoder, no image paths, or an image file that Pillow cannot decode (the
        message names it).
      FileNotFoundError: a missing image file, or no checkpoint (see `restore_checkpoint_model`).
    """
    validate_config(config)
    task = get_task(config.task)
    if not task.writes_reconstructions:
        with_decoder = [name for name, other in TASKS.items() if other.has("decoder")]
        raise ValueError(f"task {task.name!r} has no MAE decoder, so it cannot reconstruct images; --mode "
                         f"reconstruct works with the tasks {', '.join(with_decoder)}")
    if not image_paths:
        raise ValueError("no image files to reconstruct; pass one or more --image PATH")

    # Decode every image before restoring the checkpoint, so that a bad path fails fast.
    image_size = resolve_image_size(config.data)
    images = np.stack([eval_image_transform(_decode_image_argument(path), image_size) for path in image_paths])

    restored = restore_checkpoint_model(config, workdir, checkpoint)
    text_ids = text_mask = None
    if restored.model.fusion_stack is not None:
        text_ids, text_mask = restored.tokenizer.encode([caption] * len(image_paths), config.data.max_text_length)
    elif caption:
        logging.warning("--caption is ignored: task %s reconstructs images without reading text", restored.task.name)
    path = os.path.join(workdir, "reconstructions", f"reconstruct_step_{restored.step}.png")
    write_reconstruction_grid(restored.model, restored.params, images, path, key=jax.random.key(config.seed),
                              mask_ratio=config.loss.mask_ratio, text_ids=text_ids, text_mask=text_mask,
                              norm_pix_loss=config.loss.norm_pix_loss)
    logging.info("Wrote the reconstructions of %d images with the checkpoint of step %d to %s", len(image_paths),
                 restored.step, path)
    return path


def _decode_image_argument(path: str) -> np.ndarray:
    """Decode one --image file to uint8 [H, W, 3] RGB, with an error message about the flag."""
    try:
        return decode_image_file(path)
    except ValueError as error:
        reason = error.__cause__ if error.__cause__ is not None else error
        raise ValueError(f"--image {path} cannot be decoded by Pillow ({reason}); pass a JPEG, PNG or other image "
                         f"file") from error
