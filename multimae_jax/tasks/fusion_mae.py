"""Fusion MAE: both encoders, a fusion transformer over the joint tokens, then MAE, MLM and contrastive losses."""

from multimae_jax.tasks.task import Task

FUSION_MAE = Task(
    name="fusion",
    summary="fusion MAE (image and text encoders fused by a transformer, MAE + MLM from the fused tokens, "
            "contrastive loss between the encoders)",
    components=("image", "decoder", "text", "mlm", "contrastive", "fusion"),
    losses=("mae", "mlm", "contrastive"),
)
