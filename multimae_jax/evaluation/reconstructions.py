"""MAE reconstruction grids: a model's pixel predictions for masked images, saved as PNG files.

Each example becomes one row of four panels: the original image, the masked input (hidden patches grey), the
reconstruction, and the reconstruction with the visible patches pasted back from the original.
"""

import logging
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image

from multimae_jax.data.image_transforms import denormalize, eval_image_transform
from multimae_jax.data.splits import resolve_image_size
from multimae_jax.losses.mae_loss import NORM_PIX_EPSILON
from multimae_jax.models.patch_masking import random_patch_mask
from multimae_jax.models.patches import patchify, unpatchify

# uint8 value of the hidden patches in the masked-input panel.
GREY = 128
# Examples of the evaluated split shown in the grids written during training.
NUM_TRAINING_EXAMPLES = 8


def visible_patch_statistics(patches: jnp.ndarray, mask: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Estimate per-image patch statistics from the visible patches only.

    Every patch's own mean and standard deviation are taken over its patch_size**2 * 3 values, as the
    norm_pix_loss targets are (`normalized_patch_targets`, with the same epsilon). The image's statistics are the
    averages of these over its visible patches. Hidden patches are excluded with a select rather than a zero
    weight, so that not even a NaN or infinite pixel in them can reach the result.

    Args:
      patches: float32 [batch, num_patches, patch_dim], normalised image space.
      mask: float32 [batch, num_patches], 1 for hidden patches and 0 for visible ones.

    Returns:
      (mean, std), each float32 [batch, 1, 1].
    """
    visible = mask < 0.5
    patch_mean = jnp.where(visible, patches.mean(axis=-1), 0.0)
    patch_std = jnp.where(visible, jnp.sqrt(patches.var(axis=-1) + NORM_PIX_EPSILON), 0.0)
    count = jnp.maximum(visible.sum(axis=1), 1)
    mean = patch_mean.sum(axis=1) / count
    std = patch_std.sum(axis=1) / count
    return mean[:, None, None], std[:, None, None]


def reconstruct(model, params, images: jnp.ndarray, key: jax.Array, mask_ratio: float,
                text_ids: Optional[jnp.ndarray], text_mask: Optional[jnp.ndarray],
                norm_pix_loss: bool) -> dict[str, jnp.ndarray]:
    """Mask random patches, run the model's decoder and map its pixel predictions to image space.

    With norm_pix_loss the model predicts every patch normalised by that patch's own mean and standard
    deviation, which are unknown for hidden patches. Every prediction is therefore de-normalised with one mean
    and one standard deviation per image: the averages of the visible patches' own statistics
    (`visible_patch_statistics`). These are the same kind of statistic that the training targets divide out, so
    the prediction's units match, and they use no pixel of a hidden patch. The hidden patches come out with the
    typical brightness and contrast of the visible ones, and their colour and structure come from the model.
    Without norm_pix_loss the predictions are already in normalised image space and are only reassembled.

    Jit it with `model`, `mask_ratio` and `norm_pix_loss` static (`reconstruct_jit` does).

    Args:
      model: a `MultimodalMae` with an MAE decoder.
      params: its parameters.
      images: float [batch, height, width, 3], ImageNet-normalised; height and width may differ from the
        training size and from each other (multiples of the patch size).
      key: PRNG key of the patch mask.
      mask_ratio: fraction of patches hidden, in [0, 1).
      text_ids: int32 [batch, length], uncorrupted captions, read only by a fusion model; None otherwise.
      text_mask: int [batch, length], 1 for real tokens; None when text_ids is None.
      norm_pix_loss: whether the model was trained on per-patch normalised targets.

    Returns:
      dict with "reconstruction" (float32 [batch, height, width, 3], ImageNet-normalised) and "mask" (float32
      [batch, num_patches], 1 for hidden patches, in row-major grid order).
    """
    images = images.astype(jnp.float32)
    batch, height, width, _ = images.shape
    grid_height, grid_width = height // model.patch_size, width // model.patch_size
    patch_mask = random_patch_mask(key, batch, grid_height * grid_width, mask_ratio)
    predictions = model.apply({"params": params}, images, patch_mask, text_ids, text_mask,
                              method=model.predict_pixels).astype(jnp.float32)

    if norm_pix_loss:
        mean, std = visible_patch_statistics(patchify(images, model.patch_size), patch_mask.mask)
        predictions = predictions * std + mean
    reconstruction = unpatchify(predictions, model.patch_size, grid_height, grid_width)
    return {"reconstruction": reconstruction, "mask": patch_mask.mask}


reconstruct_jit = jax.jit(reconstruct, static_argnames=("model", "mask_ratio", "norm_pix_loss"))


def hidden_pixel_mask(mask: np.ndarray, patch_size: int, height: int, width: int) -> np.ndarray:
    """Expand a patch mask float [batch, num_patches] (1 = hidden, row-major grid) to bool [batch, height, width]."""
    grid_height, grid_width = height // patch_size, width // patch_size
    grid = np.asarray(mask).reshape(-1, grid_height, grid_width) > 0.5
    return grid.repeat(patch_size, axis=1).repeat(patch_size, axis=2)


def to_uint8(images) -> np.ndarray:
    """Convert ImageNet-normalised float images [..., 3] to uint8 RGB, clipping to [0, 1] first."""
    return np.round(denormalize(images) * 255.0).astype(np.uint8)


def reconstruction_panels(images, reconstructions, mask, patch_size: int) -> np.ndarray:
    """Build the four panels of each example.

    Args:
      images: float [batch, height, width, 3], ImageNet-normalised originals.
      reconstructions: float [batch, height, width, 3], ImageNet-normalised model output.
      mask: float [batch, num_patches], 1 for hidden patches.
      patch_size: patch side in pixels.

    Returns:
      uint8 [batch, 4, height, width, 3]: original, masked input (hidden patches GREY), reconstruction, and
      reconstruction with the visible patches copied from the original.
    """
    original = to_uint8(images)
    reconstruction = to_uint8(reconstructions)
    hidden = hidden_pixel_mask(mask, patch_size, original.shape[1], original.shape[2])[..., None]

    masked = np.where(hidden, np.uint8(GREY), original)
    pasted = np.where(hidden, reconstruction, original)
    return np.stack([original, masked, reconstruction, pasted], axis=1)


def tile_panels(panels: np.ndarray) -> np.ndarray:
    """Lay out uint8 [batch, panels, height, width, 3] as one uint8 image [batch * height, panels * width, 3]."""
    batch, num_panels, height, width, channels = panels.shape
    return panels.transpose(0, 2, 1, 3, 4).reshape(batch * height, num_panels * width, channels)


def save_png(image: np.ndarray, path: str) -> None:
    """Write uint8 [height, width, 3] to `path` as PNG, creating folders and replacing the file atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".tmp"
    PIL.Image.fromarray(image).save(temporary, format="PNG")
    os.replace(temporary, path)


def write_reconstruction_grid(model, params, images, path: str, *, key: jax.Array, mask_ratio: float,
                              norm_pix_loss: bool, text_ids=None, text_mask=None) -> np.ndarray:
    """Reconstruct masked images and save the grid of panels as a PNG file.

    Every process must call this, because the forward pass may span the devices of every process. Only process 0
    writes the file.

    Args:
      model, params, key, mask_ratio, text_ids, text_mask, norm_pix_loss: as for `reconstruct`.
      images: float32 [batch, height, width, 3], ImageNet-normalised.
      path: the PNG file to write.

    Returns:
      The grid, uint8 [batch * height, 4 * width, 3]: one row of panels per example (see
      `reconstruction_panels`).
    """
    if text_ids is not None:
        text_ids, text_mask = jnp.asarray(text_ids), jnp.asarray(text_mask)
    outputs = reconstruct_jit(model, params, jnp.asarray(images), key, mask_ratio, text_ids, text_mask,
                              norm_pix_loss)
    # NOTE: device_get needs the outputs to be addressable from this process, which holds for replicated
    # parameters. Runs over several processes have not been tried.
    outputs = jax.device_get(outputs)
    grid = tile_panels(reconstruction_panels(images, outputs["reconstruction"], outputs["mask"], model.patch_size))
    if jax.process_index() == 0:
        save_png(grid, path)
    return grid


def first_captions(split, count: int) -> list[str]:
    """Return the first caption of each of the split's first `count` images ("" for an image without one)."""
    captions = []
    for image_index in range(count):
        caption_indices = np.flatnonzero(split.caption_to_image == image_index)
        captions.append(split.captions[caption_indices[0]] if len(caption_indices) else "")
    return captions


def write_split_reconstructions(config, model, params, split, tokenizer, step: int, workdir: str,
                                prefix: str = "step") -> str:
    """Write `<workdir>/reconstructions/<prefix>_<step>.png` for the split's first images.

    Training evaluations use the prefix "step"; eval-only runs use their own, so they never replace those.

    The grid shows the first NUM_TRAINING_EXAMPLES images (fewer if the split is smaller), resized whole as in
    evaluation; a fusion model also reads their first captions. The patch mask comes from
    jax.random.key(config.seed), so every step and every rerun hides the same patches.

    Returns:
      The path of the PNG file.
    """
    image_size = resolve_image_size(config.data)
    count = min(NUM_TRAINING_EXAMPLES, split.num_images)
    images = np.stack([eval_image_transform(split.load_image(index), image_size) for index in range(count)])
    text_ids = text_mask = None
    if model.fusion_stack is not None:
        text_ids, text_mask = tokenizer.encode(first_captions(split, count), config.data.max_text_length)

    path = os.path.join(workdir, "reconstructions", f"{prefix}_{step}.png")
    write_reconstruction_grid(model, params, images, path, key=jax.random.key(config.seed),
                              mask_ratio=config.loss.mask_ratio, text_ids=text_ids, text_mask=text_mask,
                              norm_pix_loss=config.loss.norm_pix_loss)
    logging.info("Wrote reconstructions of %s at step %d to %s (%d images)", split.name, step, path, count)
    return path
