r"""Fusion MAE: image MAE and text MLM through a fusion transformer, plus image-text contrastive learning.

Train on the built-in generated scenes (no download; about 9 minutes on a 2-core CPU):

  python launch.py --config configs/fusion.py:vit_tiny --workdir /tmp/fusion_tiny

Train on a COCO Karpathy folder (<root>/images, <root>/annotations/coco_karpathy_*.json):

  python launch.py --config configs/fusion.py:vit_base --workdir /tmp/fusion_base \
      --config.data.root=/data/coco --config.train.num_epochs=20

The text after ':' picks the encoder size: vit_tiny, vit_small or vit_base (ViT-Ti/S/B image encoders with text
and fusion transformers of matching width). Any field below can be overridden with --config.a.b=value; unknown
fields and values of the wrong type are rejected before anything is built.

Durations: `train.num_steps` or `train.num_epochs` (one epoch is one pass over the training captions), and
likewise `train.warmup_steps`/`warmup_epochs`, `eval.every_steps`/`every_epochs` and
`checkpoint.every_steps`/`every_epochs`. A value in epochs, when set, replaces the one in steps. The defaults
are sized for the built-in data; on real data set `train.num_epochs` (or `num_steps`) for your budget.
"""

import ml_collections

VARIANTS = {
    # name: (image width, depth, heads), (text width, depth, heads), (fusion depth), (decoder width, depth, heads)
    "vit_tiny": dict(image=(192, 12, 3), text=(192, 4, 3), fusion_depth=2, decoder=(128, 2, 4), embed_dim=128),
    "vit_small": dict(image=(384, 12, 6), text=(384, 6, 6), fusion_depth=4, decoder=(256, 4, 8), embed_dim=256),
    "vit_base": dict(image=(768, 12, 12), text=(768, 12, 12), fusion_depth=6, decoder=(512, 8, 16), embed_dim=256),
}


def get_config(arg: str = "vit_tiny") -> ml_collections.ConfigDict:
    """Return the fusion MAE config for the encoder size named by `arg`."""
    variant = (arg or "vit_tiny").strip()
    if variant not in VARIANTS:
        raise ValueError(f"unknown fusion config variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    sizes = VARIANTS[variant]

    config = ml_collections.ConfigDict()
    config.task = "fusion"
    config.variant = variant
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.root = ""  # Empty: built-in generated scenes.
    config.data.train_annotations = "coco_karpathy_train.json"
    config.data.val_annotations = "coco_karpathy_val.json"
    config.data.test_annotations = "coco_karpathy_test.json"
    # Image side in pixels. None picks 224 for a data root and 112 for the built-in scenes.
    config.data.image_size = ml_collections.FieldReference(None, field_type=int)
    config.data.max_text_length = 32
    config.data.min_crop_scale = 0.5  # Random resized crop keeps between this fraction and all of the image area.
    config.data.random_flip = False  # Off by default: flipping contradicts captions that mention "left" or "right".
    config.data.num_workers = 2  # Grain worker processes that decode and augment; 0 reads in the main process.
    config.data.tokenizer = ""  # Hugging Face tokenizer name or local path; empty trains WordPiece on the captions.
    config.data.vocab_size = 8192  # Size of the trained WordPiece vocabulary (ignored with a given tokenizer).
    config.data.builtin_train_images = 2000
    config.data.builtin_val_images = 100
    config.data.builtin_test_images = 100

    config.model = ml_collections.ConfigDict()
    config.model.patch_size = 16
    config.model.mlp_ratio = 4.0
    config.model.embed_dim = sizes["embed_dim"]
    config.model.dtype = "float32"  # Compute dtype: float32 or bfloat16 (parameters stay float32).
    for name in ("image", "text"):
        width, depth, heads = sizes[name]
        config.model[name] = ml_collections.ConfigDict(dict(width=width, depth=depth, num_heads=heads))
    image_width, _, image_heads = sizes["image"]
    config.model.fusion = ml_collections.ConfigDict(
        dict(width=image_width, depth=sizes["fusion_depth"], num_heads=image_heads))
    width, depth, heads = sizes["decoder"]
    config.model.decoder = ml_collections.ConfigDict(dict(width=width, depth=depth, num_heads=heads))

    config.loss = ml_collections.ConfigDict()
    config.loss.mask_ratio = 0.75
    config.loss.norm_pix_loss = True
    config.loss.mlm_mask_prob = 0.15
    config.loss.mae_weight = 1.0
    config.loss.mlm_weight = 1.0  # 0 disables masked-language modelling (and its second text pass).
    config.loss.contrastive_weight = 1.0

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 64  # Global, over all devices and processes.
    config.train.num_steps = ml_collections.FieldReference(400, field_type=int)
    config.train.num_epochs = ml_collections.FieldReference(None, field_type=float)
    config.train.lr = 1e-3  # Peak learning rate.
    config.train.min_lr = 1e-5  # Cosine schedule floor.
    config.train.warmup_steps = ml_collections.FieldReference(40, field_type=int)
    config.train.warmup_epochs = ml_collections.FieldReference(None, field_type=float)
    config.train.weight_decay = 0.05
    config.train.beta2 = 0.95
    config.train.grad_clip_norm = 1.0
    config.train.log_every_steps = 20

    config.eval = ml_collections.ConfigDict()
    config.eval.every_steps = ml_collections.FieldReference(200, field_type=int)
    config.eval.every_epochs = ml_collections.FieldReference(None, field_type=float)
    config.eval.batch_size = 128
    config.eval.split = "test"  # Split of --mode eval: "val" or "test". Training ends on test (val if absent).
    config.eval.export_embeddings = False  # --mode eval also saves embeddings_<split>_step<N>.npz.

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = ml_collections.FieldReference(200, field_type=int)
    config.checkpoint.every_epochs = ml_collections.FieldReference(None, field_type=float)
    config.checkpoint.max_to_keep = 3

    config.lock()
    return config
