r"""Train and evaluate multimae-jax models: image MAE, text MLM, MMAE and fusion MAE, one config file each.

  python launch.py --config configs/fusion.py:vit_tiny --workdir /tmp/fusion_tiny
  python launch.py --config configs/mae.py:vit_tiny --workdir /tmp/mae_tiny
  python launch.py --config configs/fusion.py:vit_tiny --workdir /tmp/coco \
      --config.data.root=../shared/data/coco_mini --config.train.num_steps=30

Running the same command again on the same workdir resumes from the newest checkpoint there. Evaluate a
checkpoint without training (the newest, or the one given by --checkpoint):

  python launch.py --config configs/fusion.py:vit_tiny --workdir /tmp/fusion_tiny --mode eval \
      --config.eval.split=val

Write the MAE reconstructions of image files with the newest checkpoint to <workdir>/reconstructions/:

  python launch.py --config configs/fusion.py:vit_tiny --workdir /tmp/fusion_tiny --mode reconstruct \
      --image photo1.jpg --image photo2.jpg
"""

import logging
import os
import sys
import traceback

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally followed by ':variant' (e.g. configs/fusion.py:vit_tiny). Override "
    "fields with --config.a.b=value.", lock_config=True)
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "reconstruct"], "train: train (resuming from the "
                          "newest checkpoint in --workdir) and evaluate. eval: evaluate a checkpoint on "
                          "config.eval.split only. reconstruct: write a checkpoint's MAE reconstructions of the "
                          "--image files to <workdir>/reconstructions/reconstruct_step_<N>.png.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "With --mode eval or reconstruct: a step number or the folder "
                                  "of one checkpoint (<workdir>/checkpoints/<step>). Empty: the newest in --workdir.")
_IMAGE = flags.DEFINE_multi_string("image", [], "With --mode reconstruct: an image file to reconstruct, one grid "
                                   "row each")
_CAPTION = flags.DEFINE_string("caption", "", "With --mode reconstruct: the caption given to every image. Empty: "
                               "no caption words.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs, metrics.jsonl, eval_<split>.json "
                               "and the trained tokenizer. A rerun on the same folder resumes.")


def _log_to_file(workdir: str) -> None:
    """Copy the log to <workdir>/train.log as well as stderr."""
    handler = logging.FileHandler(os.path.join(workdir, "train.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/fusion.py:vit_tiny")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required: the folder for checkpoints, logs and results")
    if _MODE.value == "reconstruct" and not _IMAGE.value:
        raise app.UsageError("--mode reconstruct needs at least one --image PATH (repeat the flag for more images)")
    if _MODE.value != "reconstruct" and (_IMAGE.value or _CAPTION.value):
        raise app.UsageError("--image and --caption are for --mode reconstruct")
    # Imported here so that `--help` and config errors are reported before JAX starts.
    from multimae_jax.training.config_checks import validate_config

    try:
        validate_config(config)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
    os.makedirs(workdir, exist_ok=True)
    _log_to_file(workdir)
    # Orbax and Grain log every checkpoint and worker step at INFO through absl, and JAX logs its backend
    # search. Keep their warnings only.
    logging.getLogger("absl").setLevel(logging.WARNING)
    logging.getLogger("jax").setLevel(logging.WARNING)

    from multimae_jax.data.splits import describe_data_source

    logging.info("%s", describe_data_source(config.data))
    logging.info("Config %s:%s, workdir %s", config.task, config.get("variant", ""), workdir)
    try:
        _run_mode(config, workdir)
    except (ValueError, FileNotFoundError) as error:
        # These carry a message about the input (a file, a field, a checkpoint) and the fix, so stderr gets the
        # message alone and train.log the traceback as well, for a bug report.
        logging.error("The run failed: %s: %s", type(error).__name__, error)
        with open(os.path.join(workdir, "train.log"), "a", encoding="utf-8") as log_file:
            log_file.write(traceback.format_exc())
        sys.exit(1)
    except Exception as error:
        # The traceback goes to stderr; train.log gets the cause too, so a failed run is visible in its log.
        logging.error("The run failed: %s: %s", type(error).__name__, error)
        raise


def _run_mode(config, workdir: str) -> None:
    """Run the mode given by --mode on a validated config."""
    if _MODE.value == "eval":
        from multimae_jax.evaluation.eval_only import evaluate_checkpoint

        evaluate_checkpoint(config, workdir, _CHECKPOINT.value)
        return
    if _MODE.value == "reconstruct":
        from multimae_jax.evaluation.reconstruct_only import reconstruct_image_files

        reconstruct_image_files(config, workdir, _IMAGE.value, _CAPTION.value, _CHECKPOINT.value)
        return
    if _CHECKPOINT.value:
        raise app.UsageError("--checkpoint is for --mode eval or reconstruct; training resumes from the newest "
                             "checkpoint")
    from multimae_jax.training.trainer import train_and_evaluate

    train_and_evaluate(config, workdir)


def _parse_flags(argv):
    """Parse the flags, turning an override of a field the config lacks into a one-line error."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as error:
        # ml_collections raises these, with a long traceback, for --config.a.b naming no field.
        from multimae_jax.tasks.config_overrides import explain_unknown_field

        print(f"FATAL Flags parsing error: {explain_unknown_field(argv, error)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    app.run(main, flags_parser=_parse_flags)
