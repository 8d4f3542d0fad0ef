"""MMAE: image MAE, text MLM and image-text contrastive learning side by side, without a fusion transformer."""

from multimae_jax.tasks.task import Task

MULTITASK_MAE = Task(
    name="mmae",
    summary="multitask MAE (image MAE + text MLM + contrastive loss between the two encoders)",
    components=("image", "decoder", "text", "mlm", "contrastive"),
    losses=("mae", "mlm", "contrastive"),
)
