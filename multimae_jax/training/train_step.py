"""Loss computation and the jitted, sharded training step of every task."""

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax

from multimae_jax.losses.contrastive_loss import contrastive_loss
from multimae_jax.losses.mae_loss import mae_loss
from multimae_jax.losses.mlm_loss import mlm_loss
from multimae_jax.training.model_inputs import TokenIds, training_inputs
from multimae_jax.training.train_state import TrainState


def step_key(seed: int, step: jnp.ndarray) -> jax.Array:
    """Return the PRNG key of a training step: fold_in(key(seed), step), the same after a resume."""
    return jax.random.fold_in(jax.random.key(seed), step)


def compute_losses(params, model, batch: dict, key: jax.Array, loss_config,
                   token_ids: Optional[TokenIds]) -> tuple[jnp.ndarray, dict]:
    """Run the model on one global batch and return (weighted total loss, metrics).

    Each loss of the model's heads is computed, logged and added with its config.loss weight: "mae_loss" for a
    decoder, "mlm_loss" and "mlm_accuracy" for an MLM head, "contrastive_loss" and "logit_scale" for contrastive
    heads.

    Args:
      batch: the inputs of the model's modalities ("image" [B, H, W, 3]; "text_ids", "text_mask" [B, L]), plus
        "image_index" [B] for contrastive heads (captions of the same image are positives).
      key: PRNG key for the patch mask and the MLM corruption.
      loss_config: `config.loss`.
      token_ids: tokenizer facts for the MLM corruption; None for models without text.
    """
    inputs = training_inputs(model, batch, key, loss_config.get("mask_ratio", 0.0),
                             loss_config.get("mlm_mask_prob", 0.0), token_ids)
    outputs = model.apply({"params": params}, **inputs.kwargs)

    metrics = {}
    total = jnp.zeros((), jnp.float32)
    if "pixel_predictions" in outputs:
        metrics["mae_loss"] = mae_loss(outputs["pixel_predictions"], batch["image"], inputs.patch_mask.mask,
                                       model.patch_size, loss_config.norm_pix_loss)
        total = total + loss_config.mae_weight * metrics["mae_loss"]
    if "image_embedding" in outputs:
        metrics["contrastive_loss"] = contrastive_loss(outputs["image_embedding"], outputs["text_embedding"],
                                                       outputs["logit_scale"], batch["image_index"])
        metrics["logit_scale"] = outputs["logit_scale"]
        total = total + loss_config.contrastive_weight * metrics["contrastive_loss"]
    if "mlm_logits" in outputs:
        targets = inputs.mlm_targets
        metrics["mlm_loss"], metrics["mlm_accuracy"] = mlm_loss(outputs["mlm_logits"], targets.labels, targets.weights)
        total = total + loss_config.mlm_weight * metrics["mlm_loss"]
    metrics["loss"] = total
    return total, metrics


def make_train_step(model, optimizer: optax.GradientTransformation, schedule: optax.Schedule, loss_config,
                    token_ids: Optional[TokenIds], seed: int, state_shardings, batch_sharding) -> Callable:
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
