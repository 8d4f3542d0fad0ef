"""Checks of a fusion config's values, run before any data is read or any code is compiled."""


def validate_config(config) -> None:
    """Raise ValueError listing every invalid field of `config` with its value and the accepted range."""
    problems = []

    def check(condition: bool, field: str, requirement: str) -> None:
        if not condition:
            value = config
            for part in field.split("."):
                value = value[part]
            problems.append(f"config.{field}={value!r}: {requirement}")

    check(0 <= config.seed < 2**32, "seed", "must be in [0, 2**32)")

    data = config.data
    check(data.image_size is None or data.image_size > 0, "data.image_size", "must be positive (or None)")
    check(data.image_size is None or data.image_size % config.model.patch_size == 0, "data.image_size",
          f"must be divisible by model.patch_size={config.model.patch_size}")
    check(data.max_text_length >= 3, "data.max_text_length", "must be >= 3 ([CLS], one token, [SEP])")
    check(data.num_workers >= 0, "data.num_workers", "must be >= 0")
    check(0.0 < data.min_crop_scale <= 1.0, "data.min_crop_scale", "must be in (0, 1]")
    check(data.vocab_size >= 16, "data.vocab_size", "must be >= 16")
    for split in ("train", "val", "test"):
        check(data[f"builtin_{split}_images"] >= 1, f"data.builtin_{split}_images", "must be >= 1")

    model = config.model
    check(model.patch_size >= 1, "model.patch_size", "must be >= 1")
    check(model.embed_dim >= 1, "model.embed_dim", "must be >= 1")
    check(model.mlp_ratio > 0, "model.mlp_ratio", "must be positive")
    check(model.dtype in ("float32", "bfloat16"), "model.dtype", "must be 'float32' or 'bfloat16'")
    for part in ("image", "text", "fusion", "decoder"):
        section = model[part]
        check(section.depth >= 1, f"model.{part}.depth", "must be >= 1")
        check(section.num_heads >= 1, f"model.{part}.num_heads", "must be >= 1")
        check(section.num_heads >= 1 and section.width % section.num_heads == 0, f"model.{part}.width",
              f"must be divisible by model.{part}.num_heads={section.num_heads}")
    # The image encoder and decoder use 2-D sin-cos position embeddings, which split the width four ways.
    check(model.image.width % 4 == 0, "model.image.width", "must be a multiple of 4")
    check(model.decoder.width % 4 == 0, "model.decoder.width", "must be a multiple of 4")

    loss = config.loss
    check(0.0 <= loss.mask_ratio < 1.0, "loss.mask_ratio", "must be in [0, 1)")
    check(0.0 < loss.mlm_mask_prob < 1.0, "loss.mlm_mask_prob", "must be in (0, 1)")
    for weight in ("mae_weight", "mlm_weight", "contrastive_weight"):
        check(loss[weight] >= 0, f"loss.{weight}", "must be >= 0")
    check(loss.mae_weight + loss.mlm_weight + loss.contrastive_weight > 0, "loss.mae_weight",
          "at least one of loss.mae_weight, mlm_weight and contrastive_weight must be positive")

    train = config.train
    check(train.batch_size >= 1, "train.batch_size", "must be >= 1")
    check(train.lr > 0, "train.lr", "must be positive")
    check(0 <= train.min_lr <= train.lr, "train.min_lr", "must be in [0, train.lr]")
    check(train.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    check(0.0 < train.beta2 < 1.0, "train.beta2", "must be in (0, 1)")
    check(train.grad_clip_norm is None or train.grad_clip_norm > 0, "train.grad_clip_norm",
          "must be positive (or None for no clipping)")
    check(train.log_every_steps >= 1, "train.log_every_steps", "must be >= 1")
    check(config.eval.batch_size >= 1, "eval.batch_size", "must be >= 1")
    check(config.eval.split in ("val", "test"), "eval.split", "must be 'val' or 'test'")
    check(config.checkpoint.max_to_keep >= 1, "checkpoint.max_to_keep", "must be >= 1")

    if problems:
        raise ValueError("invalid config values:\n  " + "\n  ".join(problems))
