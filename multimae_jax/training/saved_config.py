"""Comparison of a config with the one a checkpoint was trained with, as saved in its metadata."""

import json
import logging

import flax

# Fields that may change between runs without changing what is trained or evaluated.
NEUTRAL_FIELDS = ("model.dtype", "data.num_workers")


def section_differences(config, metadata: dict, section: str) -> list[str]:
    """Return "config.<section>.<field>: checkpoint X, config Y" for each field of `section` that differs.

    Fields in NEUTRAL_FIELDS are not compared. A checkpoint without a saved config yields no differences.
    """
    saved_section = metadata.get("config", {}).get(section)
    if saved_section is None:
        return []
    current = flax.traverse_util.flatten_dict(json.loads(config[section].to_json_best_effort()), sep=".")
    saved = flax.traverse_util.flatten_dict(saved_section, sep=".")
    differences = []
    for key in sorted(set(current) | set(saved)):
        if f"{section}.{key}" not in NEUTRAL_FIELDS and current.get(key) != saved.get(key):
            differences.append(f"config.{section}.{key}: checkpoint {saved.get(key)!r}, config {current.get(key)!r}")
    return differences


def check_task(task_name: str, metadata: dict, checkpoint_path: str) -> None:
    """Raise ValueError when the checkpoint was trained by another task than `task_name`.

    Checkpoints without a saved task predate the other tasks and belong to the fusion task.
    """
    saved_task = metadata.get("task", "fusion")
    if saved_task != task_name:
        raise ValueError(f"the checkpoint {checkpoint_path} was trained by task {saved_task!r}, but the config is for "
                         f"task {task_name!r}; use configs/{saved_task}.py, or another --workdir")


def check_model_config(config, metadata: dict, checkpoint_path: str) -> None:
    """Raise ValueError naming every config.model field that differs from the checkpoint's training config.

    The compute dtype does not change the parameters, so it may differ.
    """
    differences = section_differences(config, metadata, "model")
    if differences:
        raise ValueError(f"the checkpoint {checkpoint_path} was trained with other model settings than this config. "
                         f"Use the config variant and --config.model overrides of the training run:\n  "
                         + "\n  ".join(differences))


def warn_about_data_and_loss_changes(config, metadata: dict, checkpoint_path: str) -> None:
    """Log one warning listing the config.data and config.loss fields that differ from the checkpoint's run.

    Such changes are allowed (another image size, another held-out share), but they change what the figures
    measure, so they are stated next to them.
    """
    differences = section_differences(config, metadata, "data") + section_differences(config, metadata, "loss")
    if differences:
        logging.warning("The config differs from the one that trained %s in data or loss fields; the results are "
                        "not comparable with that run's:\n  %s", checkpoint_path, "\n  ".join(differences))
