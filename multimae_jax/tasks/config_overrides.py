"""One-line explanations of `--config.a.b=value` overrides that name no field of the config file."""

import re
from collections.abc import Sequence

from multimae_jax.tasks.config_sections import make_config
from multimae_jax.tasks.registry import TASKS


def override_paths(argv: Sequence[str]) -> list[str]:
    """Return the field paths ("train.num_steps") of the --config.<path>[=value] arguments in `argv`."""
    paths = []
    for argument in argv:
        match = re.fullmatch(r"--config\.([^=]+)(=.*)?", argument)
        if match:
            paths.append(match.group(1))
    return paths


def has_field(config, path: str) -> bool:
    """Return whether the ConfigDict `config` has the field `path` ("data.image_dir")."""
    section = config
    for part in path.split("."):
        if not hasattr(section, "keys") or part not in section:
            return False
        section = section[part]
    return True


def explain_unknown_field(argv: Sequence[str], error: Exception) -> str:
    """Return one line naming the override that ml_collections rejected and the task configs that have the field.

    Args:
      argv: the command line.
      error: the AttributeError or KeyError that ml_collections raised; its text names the missing key and may
        hold a "Did you mean" suggestion.
    """
    text = str(error).strip("\"'").replace("\\n", "\n").replace("\\'", "'")
    key_match = re.match(r"'?([^'\n]+)'?", text)
    key = key_match.group(1) if key_match else ""
    suggestion = re.search(r"Did you mean \"([^\"]+)\"", text)

    path = next((path for path in override_paths(argv) if key in path.split(".")), key)
    message = f"--config.{path}: config.{path} is not a field of this config file"
    message += f"; did you mean {suggestion.group(1)!r}?" if suggestion else "."
    owners = [name for name in TASKS if has_field(make_config(name, "vit_tiny"), path)]
    if owners:
        message += (f" It is a field of the {', '.join(owners)} task config{'s' if len(owners) > 1 else ''} "
                    f"({', '.join(f'configs/{name}.py' for name in owners)}).")
    return message
