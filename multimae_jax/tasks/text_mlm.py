"""Text MLM: a BERT-style text encoder that predicts masked tokens."""

from multimae_jax.tasks.task import Task

TEXT_MLM = Task(
    name="mlm",
    summary="text MLM (BERT-style encoder, masked-token prediction)",
    components=("text", "mlm"),
    losses=("mlm",),
)
