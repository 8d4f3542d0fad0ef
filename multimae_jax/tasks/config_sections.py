"""The config sections shared by the task config files in configs/: data, model sizes, losses and schedules.

A config file picks its task and model sizes and builds every section from here, so that a field has the same
name, default and meaning in every task. Sections hold only the fields their task reads: the MLM config has no
image fields, and the image MAE config has no text fields.
"""

import ml_collections

from multimae_jax.data.splits import DEFAULT_HELDOUT_FRACTION
from multimae_jax.tasks.registry import get_task

# ViT sizes of the variant names: (width, depth, heads).
VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12)}
# Text encoders that sit beside a ViT in the multimodal tasks are shallower than the ViT.
PAIRED_TEXT_SIZES = {"vit_tiny": (192, 4, 3), "vit_small": (384, 6, 6), "vit_base": (768, 12, 12)}
FUSION_DEPTHS = {"vit_tiny": 2, "vit_small": 4, "vit_base": 6}
DECODER_SIZES = {"vit_tiny": (128, 2, 4), "vit_small": (256, 4, 8), "vit_base": (512, 8, 16)}
EMBED_DIMS = {"vit_tiny": 128, "vit_small": 256, "vit_base": 256}


def check_variant(task_name: str, arg: str) -> str:
    """Return the variant named by the config argument (default vit_tiny), or raise ValueError listing choices."""
    variant = (arg or "vit_tiny").strip()
    if variant not in VIT_SIZES:
        raise ValueError(f"unknown {task_name} config variant {variant!r}; choose one of {', '.join(VIT_SIZES)}")
    return variant


def _stack(width: int, depth: int, num_heads: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(width=width, depth=depth, num_heads=num_heads))


def make_config(task_name: str, variant: str, text_sizes: dict = PAIRED_TEXT_SIZES) -> ml_collections.ConfigDict:
    """Return the locked config of a task at one size variant.

    Args:
      task_name: "mae", "mlm", "mmae" or "fusion".
      variant: "vit_tiny", "vit_small" or "vit_base".
      text_sizes: the text encoder size of each variant.
    """
    task = get_task(task_name)
    config = ml_collections.ConfigDict()
    config.task = task.name
    config.variant = variant
    config.seed = 0
    config.data = data_section(task)
    config.model = model_section(task, variant, text_sizes)
    config.loss = loss_section(task)
    config.train = train_section()
    config.eval = eval_section(task)
    config.checkpoint = checkpoint_section()
    config.lock()
    return config


def data_section(task) -> ml_collections.ConfigDict:
    data = ml_collections.ConfigDict()
    data.root = ""  # COCO Karpathy folder; empty (with no other source below): built-in generated scenes.
    data.train_annotations = "coco_karpathy_train.json"
    data.val_annotations = "coco_karpathy_val.json"
    data.test_annotations = "coco_karpathy_test.json"
    if task.modalities == ("image",):
        data.image_dir = ""  # A folder of images, searched recursively; replaces root.
    if task.modalities == ("text",):
        data.text_file = ""  # A UTF-8 text file with one example per line; replaces root.
    if task.modalities in (("image",), ("text",)):
        # Share of image_dir files or text_file lines held out for evaluation, chosen by hashing each one.
        data.heldout_fraction = DEFAULT_HELDOUT_FRACTION
    if task.uses_images:
        # Image side in pixels. None picks 224 for real data and 112 for the built-in scenes.
        data.image_size = ml_collections.FieldReference(None, field_type=int)
        data.min_crop_scale = 0.5  # Random resized crop keeps between this fraction and all of the image area.
        data.random_flip = False  # Off by default: flipping contradicts captions that mention "left" or "right".
    if task.uses_text:
        data.max_text_length = 32
        data.tokenizer = ""  # Hugging Face tokenizer name or local path; empty trains WordPiece on the train text.
        data.vocab_size = 8192  # Size of the trained WordPiece vocabulary (ignored with a given tokenizer).
    data.num_workers = 2  # Grain worker processes that decode and augment; 0 reads in the main process.
    data.builtin_train_images = 2000
    data.builtin_val_images = 100
    data.builtin_test_images = 100
    return data


def model_section(task, variant: str, text_sizes: dict) -> ml_collections.ConfigDict:
    model = ml_collections.ConfigDict()
    if task.uses_images:
        model.patch_size = 16
    model.mlp_ratio = 4.0
    model.dtype = "float32"  # Compute dtype: float32 or bfloat16 (parameters stay float32).
    if task.has("contrastive"):
        model.embed_dim = EMBED_DIMS[variant]
    if task.has("image"):
        model.image = _stack(*VIT_SIZES[variant])
    if task.has("text"):
        model.text = _stack(*text_sizes[variant])
    if task.has("fusion"):
        width, _, heads = VIT_SIZES[variant]
        model.fusion = _stack(width, FUSION_DEPTHS[variant], heads)
    if task.has("decoder"):
        model.decoder = _stack(*DECODER_SIZES[variant])
    return model


def loss_section(task) -> ml_collections.ConfigDict:
    loss = ml_collections.ConfigDict()
    if task.has("decoder"):
        loss.mask_ratio = 0.75
        loss.norm_pix_loss = True
        loss.mae_weight = 1.0
    if task.has("mlm"):
        loss.mlm_mask_prob = 0.15
        loss.mlm_weight = 1.0  # 0 disables masked-language modelling (and its second text pass).
    if task.has("contrastive"):
        loss.contrastive_weight = 1.0
    return loss


def train_section() -> ml_collections.ConfigDict:
    train = ml_collections.ConfigDict()
    train.batch_size = 64  # Global, over all devices and processes.
    train.num_steps = ml_collections.FieldReference(400, field_type=int)
    train.num_epochs = ml_collections.FieldReference(None, field_type=float)
    train.lr = 1e-3  # Peak learning rate.
    train.min_lr = 1e-5  # Cosine schedule floor.
    train.warmup_steps = ml_collections.FieldReference(40, field_type=int)
    train.warmup_epochs = ml_collections.FieldReference(None, field_type=float)
    train.weight_decay = 0.05
    train.beta2 = 0.95
    train.grad_clip_norm = 1.0
    train.log_every_steps = 20
    return train


def eval_section(task) -> ml_collections.ConfigDict:
    evaluation = ml_collections.ConfigDict()
    evaluation.every_steps = ml_collections.FieldReference(200, field_type=int)
    evaluation.every_epochs = ml_collections.FieldReference(None, field_type=float)
    evaluation.batch_size = 128
    # Split of --mode eval: "val", "test", or "" for test when the data has one and val otherwise. Training
    # evaluates val along the way and ends on the same choice as "".
    evaluation.split = ""
    if task.has("contrastive"):
        evaluation.export_embeddings = False  # --mode eval also saves embeddings_<split>_step<N>.npz.
    return evaluation


def checkpoint_section() -> ml_collections.ConfigDict:
    checkpoint = ml_collections.ConfigDict()
    checkpoint.every_steps = ml_collections.FieldReference(200, field_type=int)
    checkpoint.every_epochs = ml_collections.FieldReference(None, field_type=float)
    checkpoint.max_to_keep = 3
    return checkpoint
