"""Loss computation and the jitted, sharded training step of the fusion MAE."""

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from multimae_jax.losses.contrastive_loss import contrastive_loss
from multimae_jax.losses.mae_loss import mae_loss
from multimae_jax.losses.mlm_loss import mlm_loss
from multimae_jax.models.patch_masking import random_patch_mask
from multimae_jax.models.token_masking import select_mlm_targets
from multimae_jax.training.train_state import TrainState


class TokenIds(NamedTuple):
    """The tokenizer facts the MLM corruption needs."""

    special_ids: tuple[int, ...]
    mask_id: int
    vocab_size: int


def step_key(seed: int, step: jnp.ndarray) -> jax.Array:
    """Return the PRNG key of a training step: fold_in(key(seed), step), the same after a resume."""
    return jax.random.fold_in(jax.random.key(seed), step)


def compute_losses(params, model, batch: dict, key: jax.Array, loss_config,
                   token_ids: TokenIds) -> tuple[jnp.ndarray, dict]:
    """Run the model on one global batch and return (weighted total loss, metrics).

    Args:
      batch: "image" [B, H, W, 3], "text_ids" [B, L], "text_mask" [B, L], "image_index" [B].
      key: PRNG key for the patch mask and the MLM corruption.
      loss_config: `config.loss`.
    """
    images = batch["image"]
    mask_key, mlm_key = jax.random.split(key)
    num_patches = (images.shape[1] // model.patch_size) * (images.shape[2] // model.patch_size)
    patch_mask = random_patch_mask(mask_key, images.shape[0], num_patches, loss_config.mask_ratio)

    mlm_inputs = {}
    if model.use_mlm:
        targets = select_mlm_targets(mlm_key, batch["text_ids"], batch["text_mask"], special_ids=token_ids.special_ids,
                                     mask_id=token_ids.mask_id, vocab_size=token_ids.vocab_size,
                                     mask_prob=loss_config.mlm_mask_prob)
        mlm_inputs = dict(mlm_input_ids=targets.input_ids, mlm_positions=targets.positions)

    outputs = model.apply({"params": params}, images, batch["text_ids"], batch["text_mask"], patch_mask, **mlm_inputs)

    metrics = {}
    metrics["mae_loss"] = mae_loss(outputs["pixel_predictions"], images, patch_mask.mask, model.patch_size,
                                   loss_config.norm_pix_loss)
    metrics["contrastive_loss"] = contrastive_loss(outputs["image_embedding"], outputs["text_embedding"],
                                                   outputs["logit_scale"], batch["image_index"])
    metrics["logit_scale"] = outputs["logit_scale"]
    total = loss_config.mae_weight * metrics["mae_loss"] + loss_config.contrastive_weight * metrics["contrastive_loss"]
    if model.use_mlm:
        metrics["mlm_loss"], metrics["mlm_accuracy"] = mlm_loss(outputs["mlm_logits"], targets.labels, targets.weights)
        total = total + loss_config.mlm_weight * metrics["mlm_loss"]
    metrics["loss"] = total
    return total, metrics


def make_train_step(model, optimizer: optax.GradientTransformation, schedule: optax.Schedule, loss_config,
                    token_ids: TokenIds, seed: int, state_shardings, batch_sharding) -> Callable:
    """Build the jitted step (state, batch) -> (new state, metrics).

    The state is donated, so its buffers are reused for the new state. The batch is global and sharded over the
    mesh. The compiler inserts the cross-device reductions, so the contrastive loss uses the whole global batch.
    """

    def train_step(state: TrainState, batch: dict):
        key = step_key(seed, state.step)
        loss_fn = functools.partial(compute_losses, model=model, batch=batch, key=key, loss_config=loss_config,
                                    token_ids=token_ids)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["learning_rate"] = schedule(state.step)
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, None), donate_argnums=(0,))
