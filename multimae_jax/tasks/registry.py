"""The tasks config.task can name."""

from multimae_jax.tasks.fusion_mae import FUSION_MAE
from multimae_jax.tasks.image_mae import IMAGE_MAE
from multimae_jax.tasks.multitask_mae import MULTITASK_MAE
from multimae_jax.tasks.task import Task
from multimae_jax.tasks.text_mlm import TEXT_MLM

TASKS = {task.name: task for task in (IMAGE_MAE, TEXT_MLM, MULTITASK_MAE, FUSION_MAE)}


def get_task(name: str) -> Task:
    """Return the task named by config.task, or raise ValueError listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"config.task {name!r} is not a known task; choose one of "
                         + ", ".join(f"{task.name!r} ({task.summary})" for task in TASKS.values()))
    return TASKS[name]
