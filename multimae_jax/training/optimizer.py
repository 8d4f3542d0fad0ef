"""AdamW with decoupled weight decay, linear warmup and cosine decay, and gradient clipping."""

import re

import flax
import jax
import optax

# Parameters whose paths match these take no weight decay: biases, LayerNorm scales, token, position and
# modality embeddings, learned CLS and mask tokens, and the temperature. Dense and convolution kernels decay,
# the patch embedding's kernel included.
NO_DECAY_PATTERNS = (r"(^|/)bias$", r"(^|/)scale$", r"embedding$", r"_token$", r"(^|/)log_scale$")


def learning_rate_schedule(peak_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to peak_lr over warmup_steps, then cosine decay to min_lr at total_steps."""
    warmup_steps = min(warmup_steps, total_steps)
    decay_steps = max(total_steps - warmup_steps, 1)
    warmup = optax.linear_schedule(0.0, peak_lr, max(warmup_steps, 1))
    decay = optax.cosine_decay_schedule(peak_lr, decay_steps, alpha=min_lr / peak_lr if peak_lr else 0.0)
    return optax.join_schedules([warmup, decay], boundaries=[warmup_steps])


def weight_decay_mask(params):
    """Return a tree of bools, True for the parameters that weight decay applies to."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
    mask = {path: not any(re.search(pattern, path) for pattern in NO_DECAY_PATTERNS) for path in flat}
    return flax.traverse_util.unflatten_dict(mask, sep="/")


def make_optimizer(train_config, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Build clip-by-global-norm followed by AdamW from `config.train`."""
    if train_config.grad_clip_norm is not None and train_config.grad_clip_norm <= 0:
        raise ValueError(f"train.grad_clip_norm must be positive, got {train_config.grad_clip_norm}")
    clip = optax.clip_by_global_norm(train_config.grad_clip_norm) if train_config.grad_clip_norm else optax.identity()
    adamw = optax.adamw(schedule, b1=0.9, b2=train_config.beta2, weight_decay=train_config.weight_decay,
                        mask=weight_decay_mask)
    return optax.chain(clip, adamw)


def count_parameters(params) -> int:
    """Return the number of scalars in a parameter tree."""
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
