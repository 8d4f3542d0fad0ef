"""The model of a task, sized by config.model: the components the task names, built into one `MultimodalMae`."""

import jax.numpy as jnp

from multimae_jax.models.multimodal_mae import MultimodalMae, StackSize
from multimae_jax.tasks.task import STACK_COMPONENTS, Task

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def uses_mlm(task: Task, config) -> bool:
    """Return whether the MLM head is built: the task has one and config.loss.mlm_weight is positive."""
    return task.has("mlm") and config.loss.mlm_weight > 0


def build_model(task: Task, config, vocab_size: int) -> MultimodalMae:
    """Build the model of `task` with the sizes of `config.model`.

    Args:
      vocab_size: the tokenizer's vocabulary size; ignored by tasks without text.
    """
    model_config = config.model
    if model_config.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"config.model.dtype must be one of {sorted(COMPUTE_DTYPES)}, got {model_config.dtype!r}")
    stacks = {}
    for name in STACK_COMPONENTS:
        if task.has(name):
            section = model_config[name]
            stacks[f"{name}_stack"] = StackSize(section.width, section.depth, section.num_heads)
    return MultimodalMae(
        patch_size=model_config.patch_size if task.uses_images else 0,
        vocab_size=vocab_size if task.uses_text else 0,
        max_text_length=config.data.max_text_length if task.uses_text else 0,
        use_mlm=uses_mlm(task, config),
        embed_dim=model_config.embed_dim if task.has("contrastive") else 0,
        mlp_ratio=model_config.mlp_ratio,
        dtype=COMPUTE_DTYPES[model_config.dtype],
        **stacks,
    )
