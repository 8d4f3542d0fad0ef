"""Eval-only runs: the evaluation metrics of a saved checkpoint, with the evaluator that training uses."""

import json
import logging
import os
import re
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from multimae_jax.data.splits import load_splits, resolve_image_size
from multimae_jax.data.tokenizer import CACHED_TOKENIZER_FILE, TextTokenizer, load_tokenizer
from multimae_jax.evaluation.task_evaluator import TaskEvaluator
from multimae_jax.models.multimodal_mae import MultimodalMae
from multimae_jax.tasks.registry import get_task
from multimae_jax.tasks.model_builder import build_model
from multimae_jax.tasks.task import Task
from multimae_jax.training import sharding
from multimae_jax.training.checkpointing import Checkpointer
from multimae_jax.training.config_checks import validate_config
from multimae_jax.training.saved_config import check_model_config, check_task, warn_about_data_and_loss_changes
from multimae_jax.training.trainer import abstract_with_shardings, init_params


def locate_checkpoint(workdir: str, checkpoint: Optional[str]) -> tuple[str, Optional[int]]:
    """Return (checkpoints folder, step or None for the newest) for `--checkpoint` and `--workdir`.

    `checkpoint` may be empty (the newest in <workdir>/checkpoints), a step number, or the path of one
    checkpoint folder such as <workdir>/checkpoints/30.
    """
    if not checkpoint:
        return os.path.join(workdir, "checkpoints"), None
    if re.fullmatch(r"\d+", checkpoint):
        return os.path.join(workdir, "checkpoints"), int(checkpoint)
    path = os.path.abspath(os.path.expanduser(checkpoint.rstrip("/")))
    name = os.path.basename(path)
    if not re.fullmatch(r"\d+", name):
        raise ValueError(f"--checkpoint {checkpoint!r} is not a step number nor a checkpoint folder named by its "
                         f"step (such as <workdir>/checkpoints/30)")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint folder {path} does not exist")
    return os.path.dirname(path), int(name)


class RestoredModel(NamedTuple):
    """A model with the parameters of one checkpoint, ready for inference on the current devices."""

    task: Task
    model: MultimodalMae
    params: Any
    step: int
    checkpoint_path: str
    tokenizer: Optional[TextTokenizer]
    mesh: Mesh


def restore_checkpoint_model(config, workdir: str, checkpoint: Optional[str] = None) -> RestoredModel:
    """Build the model of `config` and restore the parameters of a checkpoint (the newest when `checkpoint` is empty).

    Only the parameters are restored, onto a mesh of the current devices, whatever the device count of the run
    that saved them. The tokenizer is the one the checkpoint was trained with (None for tasks without text).

    Raises:
      FileNotFoundError: no checkpoints folder, no complete checkpoint, or no trained tokenizer in `workdir`.
      ValueError: `checkpoint` is invalid, the checkpoint belongs to another task, the model fields of `config`
        differ from the ones the checkpoint was trained with, or the tokenizer's vocabulary size differs from the
        checkpoint's.
    """
    directory, step = locate_checkpoint(workdir, checkpoint)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints folder at {directory}; train first with the same --workdir, or "
                                f"pass --checkpoint <folder of one checkpoint>")
    checkpointer = Checkpointer(workdir, every_steps=0, max_to_keep=1, directory=directory)
    step = checkpointer.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no complete checkpoint in {directory}")
    metadata = checkpointer.restore_metadata(step)
    task = get_task(config.task)
    checkpoint_path = os.path.join(directory, str(step))
    check_task(task.name, metadata, checkpoint_path)
    check_model_config(config, metadata, checkpoint_path)
    warn_about_data_and_loss_changes(config, metadata, checkpoint_path)

    tokenizer = _load_checkpoint_tokenizer(config, workdir, metadata) if task.uses_text else None
    mesh = sharding.make_mesh()
    model = build_model(task, config, tokenizer.vocab_size if tokenizer else 0)
    image_size = resolve_image_size(config.data)
    max_text_length = config.data.max_text_length if task.uses_text else 0
    abstract = jax.eval_shape(lambda key: init_params(model, key, image_size, max_text_length), jax.random.key(0))
    abstract = abstract_with_shardings(sharding.parameter_shardings(abstract, mesh), abstract)
    params = checkpointer.restore_params(abstract, step)
    checkpointer.close()
    return RestoredModel(task=task, model=model, params=params, step=step, checkpoint_path=checkpoint_path,
                         tokenizer=tokenizer, mesh=mesh)


def evaluate_checkpoint(config, workdir: str, checkpoint: Optional[str] = None) -> dict:
    """Evaluate a checkpoint's parameters on `config.eval.split` and write eval_<split>.json.

    The evaluations are those of training (see `TaskEvaluator`). The result also records the checkpoint folder,
    and the reconstruction grid goes to `<workdir>/reconstructions/eval_<split>_step_<N>.png`, so the files of
    the training run's own evaluations stay. See `restore_checkpoint_model` for what is restored. With
    config.eval.export_embeddings (tasks with contrastive heads), the embeddings are also saved to
    `<workdir>/embeddings_<split>_step<N>.npz`.
    """
    validate_config(config)
    restored = restore_checkpoint_model(config, workdir, checkpoint)
    params, step = restored.params, restored.step
    splits = load_splits(config.data, config.seed)

    split_name, _ = splits.named(config.eval.split)
    evaluator = TaskEvaluator(config, restored.task, splits, split_name, restored.tokenizer, restored.model,
                              restored.mesh, grid_prefix=f"eval_{split_name}_step")
    extra = {"checkpoint": restored.checkpoint_path}
    if not config.eval.get("export_embeddings", False):
        return evaluator.evaluate(params, step, workdir, extra=extra)

    result, image_embeddings, text_embeddings = evaluator.evaluate(params, step, workdir, return_embeddings=True,
                                                                   extra=extra)
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"embeddings_{evaluator.split_name}_step{step}.npz")
        split = evaluator.split
        np.savez(path, image_embeddings=image_embeddings, text_embeddings=text_embeddings,
                 image_ids=np.asarray(split.image_ids), captions=np.asarray(split.captions),
                 caption_to_image=np.asarray(split.caption_to_image))
        logging.info("Saved %d image and %d caption embeddings to %s", len(image_embeddings), len(text_embeddings),
                     path)
    return result


def _load_checkpoint_tokenizer(config, workdir: str, metadata: dict):
    """Load the tokenizer the checkpoint was trained with and check its vocabulary size."""
    if not config.data.tokenizer and not os.path.isfile(os.path.join(workdir, CACHED_TOKENIZER_FILE)):
        raise FileNotFoundError(f"no {CACHED_TOKENIZER_FILE} in {workdir}: the checkpoint was trained with a "
                                f"vocabulary cached there. Evaluate with the training --workdir, or set "
                                f"--config.data.tokenizer to the tokenizer it used")
    tokenizer = load_tokenizer(config.data.tokenizer, training_texts=None, cache_dir=workdir,
                               vocab_size=config.data.vocab_size)
    saved_vocab_size = metadata.get("vocab_size")
    if saved_vocab_size is not None and saved_vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the tokenizer {tokenizer.source} has {tokenizer.vocab_size} tokens but the checkpoint "
                         f"was trained with {saved_vocab_size}; use the tokenizer of the training run "
                         f"({metadata.get('tokenizer')})")
    return tokenizer
