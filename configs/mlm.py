r"""Text MLM: a BERT-style encoder trained to predict masked tokens (BERT's 80/10/10 corruption).

Text comes from the built-in scene captions (default), the captions of a COCO Karpathy folder (`data.root`),
or a UTF-8 text file with one example per line (`data.text_file`). With a text file, a share of the lines chosen
by hashing (`data.heldout_fraction`) is held out for evaluation. Images are never decoded. Evaluation reports held-out masked-token accuracy and
perplexity next to a unigram-frequency baseline.

  python launch.py --config configs/mlm.py:vit_tiny --workdir /tmp/mlm_tiny
  python launch.py --config configs/mlm.py:vit_base --workdir /tmp/mlm_text \
      --config.data.text_file=/data/sentences.txt --config.train.num_epochs=10

Variants size the encoder like the ViT of the same name: vit_tiny 192 wide, vit_small 384, vit_base 768 (the
size of BERT-base), each 12 layers deep. Override any field with --config.a.b=value; durations work as
described in configs/fusion.py (one epoch is one pass over the training texts).
"""

from multimae_jax.tasks.config_sections import VIT_SIZES, check_variant, make_config


def get_config(arg: str = "vit_tiny"):
    """Return the text MLM config for the encoder size named by `arg`."""
    return make_config("mlm", check_variant("mlm", arg), text_sizes=VIT_SIZES)
