"""Held-out MAE reconstruction loss: the pixel loss on masked patches of every image of an evaluation split."""

import logging
import time

import jax
import jax.numpy as jnp

from multimae_jax.data import pipeline
from multimae_jax.losses.mae_loss import masked_patch_errors
from multimae_jax.models.patch_masking import random_patch_mask
from multimae_jax.training import sharding


class ReconstructionLossEvaluator:
    """Mean pixel loss over the hidden patches of a split's images, with the same masks at every evaluation.

    Images are resized whole as in retrieval evaluation. Image i hides the patches drawn from
    fold_in(key(seed), i), so two evaluations of one split differ only by the parameters, whatever the batch
    size and device count. The loss uses the
    training target (per-patch normalised pixels with norm_pix_loss), so it is comparable with the logged
    training mae_loss.
    """

    def __init__(self, split, split_name: str, model, mesh, *, batch_size: int, image_size: int, mask_ratio: float,
                 norm_pix_loss: bool, seed: int, num_workers: int = 0):
        self.local_batch_size = sharding.local_batch_size(batch_size, mesh, field="eval.batch_size")
        self.split = split
        self.split_name = split_name
        self.mesh = mesh
        self.image_size = image_size
        self.seed = seed
        self.num_workers = num_workers

        def error_sums(params, batch):
            images = batch["image"]
            num_patches = (images.shape[1] // model.patch_size) * (images.shape[2] // model.patch_size)
            keys = jax.vmap(lambda index: jax.random.fold_in(jax.random.key(seed), index))(batch["image_index"])
            masks = jax.vmap(lambda key: random_patch_mask(key, 1, num_patches, mask_ratio))(keys)
            patch_mask = jax.tree_util.tree_map(lambda leaf: leaf[:, 0], masks)
            predictions = model.apply({"params": params}, images, patch_mask, method=model.predict_pixels)
            errors = masked_patch_errors(predictions, images, model.patch_size, norm_pix_loss)
            weights = patch_mask.mask * batch["valid"][:, None].astype(jnp.float32)
            return jnp.sum(errors * weights), jnp.sum(weights)

        self._error_sums = jax.jit(error_sums, out_shardings=sharding.replicated_sharding(mesh))

    def evaluate(self, params, step: int) -> dict:
        """Return {"mae_loss": mean over the hidden patches of the split, "num_images": images} and log it."""
        start = time.time()
        batches = pipeline.iterate_eval_images(self.split, batch_size=self.local_batch_size,
                                               image_size=self.image_size, shard_index=jax.process_index(),
                                               shard_count=jax.process_count(), num_workers=self.num_workers)
        total_error, total_weight = 0.0, 0.0
        for local_batch in batches:
            batch = sharding.global_batch_from_local(local_batch, self.mesh)
            error, weight = jax.device_get(self._error_sums(params, batch))
            total_error += float(error)
            total_weight += float(weight)
        if total_weight == 0:
            raise ValueError(f"no hidden patches in the {self.split_name} split {self.split.name}: loss.mask_ratio "
                             f"hides no patch at {self.image_size} px")
        loss = total_error / total_weight
        logging.info("eval %s step %d (%d images, %.1fs): reconstruction mae_loss=%.4f", self.split_name, step,
                     self.split.num_images, time.time() - start, loss)
        return {"mae_loss": loss, "num_images": self.split.num_images}
