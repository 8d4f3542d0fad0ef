"""The training loop of every task: data, model, sharded steps, checkpoints, logs and evaluation."""

import json
import logging
import math
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from multimae_jax.data import pipeline
from multimae_jax.data.splits import load_splits
from multimae_jax.data.tokenizer import load_tokenizer
from multimae_jax.evaluation.task_evaluator import TaskEvaluator
from multimae_jax.tasks.registry import get_task
from multimae_jax.tasks.model_builder import build_model
from multimae_jax.training import sharding
from multimae_jax.training.checkpointing import Checkpointer
from multimae_jax.training.config_checks import validate_config
from multimae_jax.training.durations import resolve_steps
from multimae_jax.training.metric_logging import MetricLogger, format_duration
from multimae_jax.training.optimizer import count_parameters, learning_rate_schedule, make_optimizer
from multimae_jax.training.model_inputs import TokenIds, example_inputs
from multimae_jax.training.saved_config import check_model_config, check_task, warn_about_data_and_loss_changes
from multimae_jax.training.train_state import TrainState
from multimae_jax.training.train_step import make_train_step


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def init_params(model, key: jax.Array, image_size: Optional[int], max_text_length: int):
    """Initialise the model's parameters from dummy inputs of one example.

    Args:
      image_size: the square side used for the dummy image; None for models without images. The parameters do
        not depend on it, since position embeddings are computed for each input's patch grid.
      max_text_length: the text length; ignored by models without text.
    """
    return model.init(key, **example_inputs(model, image_size, max_text_length))["params"]


def init_train_state(model, optimizer, mesh, image_size: Optional[int], max_text_length: int, seed: int):
    """Initialise the train state directly into its shardings.

    Shapes come from jax.eval_shape, so nothing is allocated before the shardings are known.

    Returns:
      (state, state_shardings).
    """

    def init_fn(key):
        params = init_params(model, key, image_size, max_text_length)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))

    abstract_state = jax.eval_shape(init_fn, jax.random.key(seed))
    state_shardings = jax.tree_util.tree_map(lambda _: sharding.replicated_sharding(mesh), abstract_state)
    state_shardings = state_shardings.replace(params=sharding.parameter_shardings(abstract_state.params, mesh))
    # Optimizer moments share their parameters' layout only when no rule shards anything; until rules exist,
    # every leaf is replicated.
    state = jax.jit(init_fn, out_shardings=state_shardings)(jax.random.key(seed))
    return state, state_shardings


def abstract_with_shardings(shardings, tree):
    """Return jax.ShapeDtypeStructs of `tree` (a state or parameter tree) carrying `shardings`, for restoring."""
    return jax.tree_util.tree_map(
        lambda leaf, leaf_sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf_sharding),
        tree, shardings)


def train_and_evaluate(config, workdir: str) -> dict:
    """Train the task of `config`, resuming from the newest checkpoint in `workdir`.

    Returns:
      The final evaluation metrics (test split, or val when there is no test split).
    """
    validate_config(config)
    task = get_task(config.task)
    os.makedirs(workdir, exist_ok=True)
    run_start = time.time()
    logging.info("Task %s: %s", task.name, task.summary)
    _check_checkpoints_fit(config, task, workdir)

    # ---------------------------------------------------------------- Data and tokenizer.
    splits = load_splits(config.data, config.seed)
    tokenizer = None
    if task.uses_text:
        tokenizer = load_tokenizer(config.data.tokenizer, training_texts=splits.train.captions, cache_dir=workdir,
                                   vocab_size=config.data.vocab_size)
        logging.info("Tokenizer: %s", tokenizer)
    image_size = splits.image_size
    if task.uses_images and image_size % config.model.patch_size:
        raise ValueError(f"config.data.image_size {image_size} is not divisible by config.model.patch_size "
                         f"{config.model.patch_size}")
    max_text_length = config.data.max_text_length if task.uses_text else 0

    # ---------------------------------------------------------------- Durations.
    # An example is an image for tasks without text and a caption (with its image, if any) otherwise.
    unit = "images" if task.modalities == ("image",) else "captions"
    num_examples = splits.train.num_images if unit == "images" else splits.train.num_captions
    steps_per_epoch = num_examples / config.train.batch_size
    if task.has("contrastive") and config.train.batch_size > num_examples:
        logging.warning("train.batch_size %d exceeds the %d training captions, so each batch repeats captions and "
                        "the contrastive loss compares copies of the same pairs", config.train.batch_size,
                        num_examples)
    total_steps = resolve_steps(config.train, "num", steps_per_epoch)
    warmup_steps = resolve_steps(config.train, "warmup", steps_per_epoch)
    eval_every = resolve_steps(config.eval, "every", steps_per_epoch)
    checkpoint_every = resolve_steps(config.checkpoint, "every", steps_per_epoch)

    # ---------------------------------------------------------------- Mesh, model and optimizer.
    mesh = sharding.make_mesh()
    local_batch_size = sharding.local_batch_size(config.train.batch_size, mesh)
    logging.info("Mesh %s over %d devices (%s) in %d processes; global batch %d, %d per process",
                 dict(mesh.shape), mesh.devices.size, jax.devices()[0].platform, jax.process_count(),
                 config.train.batch_size, local_batch_size)
    model = build_model(task, config, tokenizer.vocab_size if tokenizer else 0)
    schedule = learning_rate_schedule(config.train.lr, config.train.min_lr, warmup_steps, total_steps)
    optimizer = make_optimizer(config.train, schedule)
    state, state_shardings = init_train_state(model, optimizer, mesh, image_size, max_text_length, config.seed)
    logging.info("Model: %s parameters", f"{count_parameters(state.params):,}")

    # ---------------------------------------------------------------- Checkpoint and resume.
    checkpointer = Checkpointer(workdir, checkpoint_every, config.checkpoint.max_to_keep)
    if checkpointer.latest_step() is not None:
        state = checkpointer.restore(abstract_with_shardings(state_shardings, state))
        logging.info("Resumed from the checkpoint of step %d", int(state.step))
    start_step = int(jax.device_get(state.step))
    metadata = {"config": json.loads(config.to_json_best_effort()), "task": task.name, "image_size": image_size,
                "vocab_size": tokenizer.vocab_size if tokenizer else None,
                "tokenizer": tokenizer.source if tokenizer else None}

    # ---------------------------------------------------------------- Evaluators.
    val_evaluator = TaskEvaluator(config, task, splits, "val", tokenizer, model, mesh)
    final_evaluator = TaskEvaluator(config, task, splits, "", tokenizer, model, mesh,
                                    unigram_log_probs_of_train=val_evaluator.unigram_log_probs_of_train)

    # ---------------------------------------------------------------- Update step.
    token_ids = None
    if tokenizer is not None:
        token_ids = TokenIds(tuple(tokenizer.special_ids), tokenizer.mask_id, tokenizer.vocab_size)
    train_step = make_train_step(model, optimizer, schedule, config.loss, token_ids, config.seed, state_shardings,
                                 sharding.batch_sharding(mesh))
    metric_logger = MetricLogger(workdir, total_steps, config.train.batch_size,
                                 unit="images" if task.uses_images else "texts")

    # ---------------------------------------------------------------- Training loop.
    if start_step >= total_steps:
        logging.info("The checkpoint of step %d already reaches train.num_steps=%d; nothing to train", start_step,
                     total_steps)
    else:
        logging.info("Training from step %d to %d (%.2f epochs of %d %s)", start_step, total_steps,
                     total_steps / steps_per_epoch, num_examples, unit)
        state = _train_loop(config, task, workdir, state, train_step, splits, tokenizer, image_size, max_text_length,
                            local_batch_size, start_step, total_steps, eval_every, mesh, checkpointer, metadata,
                            metric_logger, val_evaluator)

    checkpointer.save(state, metadata)
    checkpointer.wait()
    final_step = int(jax.device_get(state.step))
    result = final_evaluator.evaluate(state.params, final_step, workdir)
    metric_logger.write_eval(final_step, final_evaluator.split_name, result)
    checkpointer.close()
    logging.info("Finished at step %d in %s; results in %s", final_step, format_duration(time.time() - run_start),
                 workdir)
    return result


def _check_checkpoints_fit(config, task, workdir: str) -> None:
    """Before anything is built, check that the newest checkpoint in `workdir`, if any, fits this config.

    Raises:
      ValueError: the checkpoint belongs to another task or has other model settings.
    """
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return
    checkpointer = Checkpointer(workdir, every_steps=0, max_to_keep=1)
    step = checkpointer.latest_step()
    if step is not None:
        metadata = checkpointer.restore_metadata(step)
        path = os.path.join(directory, str(step))
        check_task(task.name, metadata, path)
        check_model_config(config, metadata, path)
        warn_about_data_and_loss_changes(config, metadata, path)
    checkpointer.close()


def _train_loop(config, task, workdir, state, train_step, splits, tokenizer, image_size, max_text_length,
                local_batch_size, start_step, total_steps, eval_every, mesh, checkpointer, metadata, metric_logger,
                val_evaluator) -> TrainState:
    """Run the steps [start_step, total_steps) with logging, evaluation and checkpointing."""
    dataset = pipeline.make_train_dataset(
        splits.train, tokenizer, local_batch_size=local_batch_size, image_size=image_size or 1,
        max_text_length=max_text_length or 2, seed=config.seed, shard_index=jax.process_index(),
        shard_count=jax.process_count(), min_crop_scale=config.data.get("min_crop_scale", 1.0),
        random_flip=config.data.get("random_flip", False), modalities=task.modalities)
    batches = pipeline.make_train_iterator(dataset, start_step, config.data.num_workers)

    pending: Optional[tuple[int, dict]] = None
    interval_metrics: list[dict] = []
    loop_start = time.time()
    try:
        for step in range(start_step + 1, total_steps + 1):
            local_batch = next(batches)
            local_batch.pop("caption_index", None)
            state, metrics = train_step(state, sharding.global_batch_from_local(local_batch, mesh))

            # Read the previous step's metrics after dispatching this one, so the device already has the next step
            # queued while the host waits. A non-finite loss is still reported with its own step.
            if pending is not None:
                interval_metrics.append(_check_finite(*pending))
            pending = (step, metrics)
            if step == start_step + 1:
                # The first step includes compilation; measure throughput from its end.
                interval_metrics.append(_check_finite(*pending))
                pending = None
                logging.info("Compiled and ran the first step in %.1fs", time.time() - loop_start)
                metric_logger.start_interval(step)

            if step % config.train.log_every_steps == 0 or step == total_steps:
                if pending is not None:
                    interval_metrics.append(_check_finite(*pending))
                    pending = None
                metric_logger.write_train(step, _mean(interval_metrics))
                interval_metrics = []
            if eval_every and step % eval_every == 0 and step != total_steps:
                result = val_evaluator.evaluate(state.params, step, workdir)
                metric_logger.write_eval(step, "val", result)
                metric_logger.start_interval(step)
            if checkpointer.should_save(step):
                checkpointer.save(state, metadata)
    finally:
        if hasattr(batches, "close"):
            batches.close()
    return state


def _check_finite(step: int, metrics: dict) -> dict:
    values = {name: float(value) for name, value in jax.device_get(metrics).items()}
    if not math.isfinite(values["loss"]):
        raise NonFiniteLossError(f"the training loss is {values['loss']} at step {step} (losses: {values}); lower "
                                 f"train.lr or check the data, then resume from the last checkpoint")
    return values


def _mean(records: list[dict]) -> dict:
    return {name: float(np.mean([record[name] for record in records])) for name in records[0]}
