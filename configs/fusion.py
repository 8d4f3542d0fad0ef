r"""Fusion MAE: image MAE and text MLM through a fusion transformer, plus image-text contrastive learning.

Train on the built-in generated scenes (no download; about 9 minutes on a 2-core CPU):

  python launch.py --config configs/fusion.py:vit_tiny --workdir /tmp/fusion_tiny

Train on a COCO Karpathy folder (<root>/images, <root>/annotations/coco_karpathy_*.json):

  python launch.py --config configs/fusion.py:vit_base --workdir /tmp/fusion_base \
      --config.data.root=/data/coco --config.train.num_epochs=20

The text after ':' picks the encoder size: vit_tiny, vit_small or vit_base (ViT-Ti/S/B image encoders with text
and fusion transformers of matching width). Any field can be overridden with --config.a.b=value; unknown fields
and values of the wrong type are rejected before anything is built. The fields, their defaults and their
meaning are in multimae_jax/tasks/config_sections.py and the README's config table.

Durations: `train.num_steps` or `train.num_epochs` (one epoch is one pass over the training captions), and
likewise `train.warmup_steps`/`warmup_epochs`, `eval.every_steps`/`every_epochs` and
`checkpoint.every_steps`/`every_epochs`. A value in epochs, when set, replaces the one in steps. The defaults
are sized for the built-in data; on real data set `train.num_epochs` (or `num_steps`) for your budget.
"""

from multimae_jax.tasks.config_sections import check_variant, make_config


def get_config(arg: str = "vit_tiny"):
    """Return the fusion MAE config for the encoder size named by `arg`."""
    return make_config("fusion", check_variant("fusion", arg))
