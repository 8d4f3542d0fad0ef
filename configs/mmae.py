r"""MMAE: image MAE, text MLM and image-text contrastive learning side by side, without a fusion transformer.

The image encoder learns from the pixel loss on masked patches and the text encoder from masked-token
prediction. The contrastive loss aligns the two encoders' CLS embeddings. Evaluation reports image-text
retrieval, the held-out reconstruction loss and masked-token accuracy, and writes reconstruction grids.

  python launch.py --config configs/mmae.py:vit_tiny --workdir /tmp/mmae_tiny
  python launch.py --config configs/mmae.py:vit_small --workdir /tmp/mmae_coco \
      --config.data.root=/data/coco --config.train.num_epochs=20

Variants vit_tiny, vit_small and vit_base size the ViT, its decoder and the text encoder as in the fusion
config. Override any field with --config.a.b=value; durations work as described in configs/fusion.py.
"""

from multimae_jax.tasks.config_sections import check_variant, make_config


def get_config(arg: str = "vit_tiny"):
    """Return the MMAE config for the encoder size named by `arg`."""
    return make_config("mmae", check_variant("mmae", arg))
