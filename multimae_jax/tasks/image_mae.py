"""Image MAE: a ViT encoder over the visible patches and a light decoder that predicts the hidden pixels."""

from multimae_jax.tasks.task import Task

IMAGE_MAE = Task(
    name="mae",
    summary="image MAE (ViT encoder over visible patches, MAE decoder, pixel loss on masked patches)",
    components=("image", "decoder"),
    losses=("mae",),
)
