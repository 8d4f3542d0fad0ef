r"""Image MAE: a ViT encoder over the visible 25% of patches and a light decoder that predicts the hidden pixels.

Images come from the built-in scenes (default), the images of a COCO Karpathy folder (`data.root`), or any
folder of images searched recursively (`data.image_dir`). With a folder, a share of the files chosen by hashing
(`data.heldout_fraction`) is held out for evaluation. Evaluation reports the held-out reconstruction loss and writes reconstruction grids to
<workdir>/reconstructions/.

  python launch.py --config configs/mae.py:vit_tiny --workdir /tmp/mae_tiny
  python launch.py --config configs/mae.py:vit_base --workdir /tmp/mae_photos \
      --config.data.image_dir=/data/photos --config.train.num_epochs=100

One epoch is one pass over the training images. Variants vit_tiny, vit_small and vit_base pick the ViT size.
Override any field with --config.a.b=value; durations work as described in configs/fusion.py.
"""

from multimae_jax.tasks.config_sections import check_variant, make_config


def get_config(arg: str = "vit_tiny"):
    """Return the image MAE config for the ViT size named by `arg`."""
    return make_config("mae", check_variant("mae", arg))
