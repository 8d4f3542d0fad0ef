"""Checks of a task config's values, run before any data is read or any code is compiled."""

from multimae_jax.data.splits import resolve_image_size
from multimae_jax.models.patch_masking import num_visible_patches
from multimae_jax.tasks.registry import get_task
from multimae_jax.tasks.task import STACK_COMPONENTS


def validate_config(config) -> None:
    """Raise ValueError listing every invalid field of `config` with its value and the accepted range.

    Sections hold only the fields their task reads (see multimae_jax/tasks/config_sections.py), so each check
    runs when its field exists; the fields a task needs must exist.
    """
    task = get_task(config.get("task"))
    problems = []

    def value_of(field: str):
        value = config
        for part in field.split("."):
            value = value[part]
        return value

    def check(condition: bool, field: str, requirement: str) -> None:
        if not condition:
            problems.append(f"config.{field}={value_of(field)!r}: {requirement}")

    def present(field: str) -> bool:
        section = config
        for part in field.split("."):
            if part not in section:
                return False
            section = section[part]
        return True

    required = ["seed", "train", "eval", "checkpoint", "data.num_workers", "model.mlp_ratio", "model.dtype"]
    required += [f"model.{name}" for name in STACK_COMPONENTS if task.has(name)]
    if task.uses_images:
        required += ["data.image_size", "model.patch_size"]
    if task.uses_text:
        required += ["data.max_text_length", "data.tokenizer", "data.vocab_size"]
    if task.has("decoder"):
        required += ["loss.mask_ratio", "loss.norm_pix_loss", "loss.mae_weight"]
    if task.has("mlm"):
        required += ["loss.mlm_mask_prob", "loss.mlm_weight"]
    if task.has("contrastive"):
        required += ["model.embed_dim", "loss.contrastive_weight"]
    missing = [field for field in required if not present(field)]
    if missing:
        raise ValueError(f"config for task {task.name!r} lacks the fields {', '.join(missing)}; start from "
                         f"configs/{task.name}.py")

    check(0 <= config.seed < 2**32, "seed", "must be in [0, 2**32)")
    _check_data(config, task, check, present)
    _check_model(config, task, check)
    _check_loss(config, task, check)

    train = config.train
    check(train.batch_size >= 1, "train.batch_size", "must be >= 1")
    check(train.lr > 0, "train.lr", "must be positive")
    check(0 <= train.min_lr <= train.lr, "train.min_lr", "must be in [0, train.lr]")
    check(train.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    check(0.0 < train.beta2 < 1.0, "train.beta2", "must be in (0, 1)")
    check(train.grad_clip_norm is None or train.grad_clip_norm > 0, "train.grad_clip_norm",
          "must be positive (or None for no clipping)")
    check(train.log_every_steps >= 1, "train.log_every_steps", "must be >= 1")
    _check_durations(config, check)
    check(config.eval.batch_size >= 1, "eval.batch_size", "must be >= 1")
    check(config.eval.split in ("", "val", "test"), "eval.split", "must be 'val', 'test' or '' (test if present)")
    check(config.checkpoint.max_to_keep >= 1, "checkpoint.max_to_keep", "must be >= 1")

    if problems:
        raise ValueError("invalid config values:\n  " + "\n  ".join(problems))


def _check_durations(config, check) -> None:
    """Check every step and epoch count; a set epoch count replaces the step count of the same duration."""
    durations = (("train", "num", 1), ("train", "warmup", 0), ("eval", "every", 0), ("checkpoint", "every", 0))
    for section, stem, minimum in durations:
        steps, epochs = config[section].get(f"{stem}_steps"), config[section].get(f"{stem}_epochs")
        if epochs is not None:
            check(epochs > 0 if minimum else epochs >= 0, f"{section}.{stem}_epochs",
                  "must be positive" if minimum else "must be >= 0")
        elif steps is None:
            check(False, f"{section}.{stem}_steps", f"must be set when {section}.{stem}_epochs is None")
        else:
            check(steps >= minimum, f"{section}.{stem}_steps", f"must be >= {minimum}")


def _check_data(config, task, check, present) -> None:
    data = config.data
    check(data.num_workers >= 0, "data.num_workers", "must be >= 0")
    for split in ("train", "val", "test"):
        if present(f"data.builtin_{split}_images"):
            check(data[f"builtin_{split}_images"] >= 1, f"data.builtin_{split}_images", "must be >= 1")
    sources = [name for name in ("root", "image_dir", "text_file") if data.get(name)]
    check(len(sources) <= 1, "data.root", f"only one data source may be set, got {', '.join(sources)}")
    if present("data.heldout_fraction"):
        check(0.0 < data.heldout_fraction < 1.0, "data.heldout_fraction", "must be in (0, 1)")
    if task.uses_images:
        patch_size = config.model.patch_size
        check(data.image_size is None or data.image_size > 0, "data.image_size", "must be positive (or None)")
        check(data.image_size is None or patch_size < 1 or data.image_size % patch_size == 0, "data.image_size",
              f"must be divisible by model.patch_size={patch_size}")
        check(0.0 < data.min_crop_scale <= 1.0, "data.min_crop_scale", "must be in (0, 1]")
    if task.uses_text:
        check(data.max_text_length >= 3, "data.max_text_length", "must be >= 3 ([CLS], one token, [SEP])")
        check(data.vocab_size >= 16, "data.vocab_size", "must be >= 16")


def _check_model(config, task, check) -> None:
    model = config.model
    check(model.mlp_ratio > 0, "model.mlp_ratio", "must be positive")
    check(model.dtype in ("float32", "bfloat16"), "model.dtype", "must be 'float32' or 'bfloat16'")
    if task.uses_images:
        check(model.patch_size >= 1, "model.patch_size", "must be >= 1")
    if task.has("contrastive"):
        check(model.embed_dim >= 1, "model.embed_dim", "must be >= 1")
    for part in STACK_COMPONENTS:
        if not task.has(part):
            continue
        section = model[part]
        check(section.depth >= 1, f"model.{part}.depth", "must be >= 1")
        check(section.num_heads >= 1, f"model.{part}.num_heads", "must be >= 1")
        check(section.num_heads >= 1 and section.width % section.num_heads == 0, f"model.{part}.width",
              f"must be divisible by model.{part}.num_heads={section.num_heads}")
    # The image encoder and decoder use 2-D sin-cos position embeddings, which split the width four ways.
    for part in ("image", "decoder"):
        if task.has(part):
            check(model[part].width % 4 == 0, f"model.{part}.width", "must be a multiple of 4")


def _check_loss(config, task, check) -> None:
    loss = config.loss
    weights = [f"{name}_weight" for name in task.losses]
    if task.has("decoder"):
        check(0.0 <= loss.mask_ratio < 1.0, "loss.mask_ratio", "must be in [0, 1)")
        image_size = resolve_image_size(config.data)
        patch_size = config.model.patch_size
        if loss.mae_weight > 0 and 0.0 <= loss.mask_ratio < 1.0 and patch_size >= 1 and image_size >= patch_size:
            # The MAE loss averages over hidden patches, so a mask that hides none leaves nothing to learn.
            num_patches = (image_size // patch_size) ** 2
            check(num_visible_patches(num_patches, loss.mask_ratio) < num_patches, "loss.mask_ratio",
                  f"hides none of the {num_patches} patches at {image_size} px; raise it, or set loss.mae_weight=0")
    if task.has("mlm"):
        check(0.0 < loss.mlm_mask_prob < 1.0, "loss.mlm_mask_prob", "must be in (0, 1)")
    for weight in weights:
        check(loss[weight] >= 0, f"loss.{weight}", "must be >= 0")
    if len(weights) == 1:
        check(loss[weights[0]] > 0, f"loss.{weights[0]}", f"must be positive: it is the only loss of task "
              f"{task.name!r}")
    else:
        check(sum(loss[weight] for weight in weights) > 0, f"loss.{weights[0]}",
              f"at least one of loss.{', '.join(weights)} must be positive")
