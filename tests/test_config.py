"""The fusion config file: variants, locking, value checks and the image-size default."""

import importlib.util
import os

import ml_collections
import pytest

from conftest import REPO_ROOT
from multimae_jax.data.splits import describe_data_source, resolve_image_size
from multimae_jax.training.config_checks import validate_config
from multimae_jax.training.trainer import NonFiniteLossError, _check_finite


def load_fusion_config_module():
    spec = importlib.util.spec_from_file_location("fusion_config", os.path.join(REPO_ROOT, "configs", "fusion.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant, image_width, text_width", [("vit_tiny", 192, 192), ("vit_small", 384, 384),
                                                              ("vit_base", 768, 768)])
def test_variants_are_valid(variant, image_width, text_width):
    config = load_fusion_config_module().get_config(variant)
    validate_config(config)
    assert config.model.image.width == image_width
    assert config.model.text.width == text_width
    assert config.model.fusion.width == image_width
    assert config.model.image.depth == 12


def test_unknown_variant_lists_choices():
    with pytest.raises(ValueError, match="vit_tiny, vit_small, vit_base"):
        load_fusion_config_module().get_config("vit_huge")


def test_config_is_locked():
    config = load_fusion_config_module().get_config("vit_tiny")
    with pytest.raises(AttributeError):
        config.train.nmu_steps = 3
    with pytest.raises(TypeError):
        config.train.num_steps = "ten"
    config.train.num_epochs = 2.5
    assert config.train.num_epochs == 2.5


def test_validate_config_lists_every_problem():
    config = load_fusion_config_module().get_config("vit_tiny")
    config.loss.mask_ratio = 1.0
    config.train.lr = 0.0
    config.model.text.num_heads = 5
    with pytest.raises(ValueError) as raised:
        validate_config(config)
    message = str(raised.value)
    assert "config.loss.mask_ratio=1.0: must be in [0, 1)" in message
    assert "config.train.lr=0.0: must be positive" in message
    assert "config.model.text.width=192: must be divisible by model.text.num_heads=5" in message


def test_validate_config_rejects_all_zero_weights():
    config = load_fusion_config_module().get_config("vit_tiny")
    config.loss.mae_weight = 0.0
    config.loss.mlm_weight = 0.0
    config.loss.contrastive_weight = 0.0
    with pytest.raises(ValueError, match="at least one of"):
        validate_config(config)


def test_image_size_default_depends_on_data_source():
    data = ml_collections.ConfigDict({"root": "", "image_size": None})
    assert resolve_image_size(data) == 112
    data.root = "/data/coco"
    assert resolve_image_size(data) == 224
    data.image_size = 64
    assert resolve_image_size(data) == 64


def test_data_source_sentence():
    config = load_fusion_config_module().get_config("vit_tiny")
    assert describe_data_source(config.data).startswith("Using built-in data")
    config.data.root = "/data/coco"
    assert describe_data_source(config.data).startswith("Using COCO Karpathy data from /data/coco")


def test_non_finite_loss_names_step():
    assert _check_finite(7, {"loss": 1.5})["loss"] == 1.5
    with pytest.raises(NonFiniteLossError, match="at step 12"):
        _check_finite(12, {"loss": float("nan"), "mae_loss": 1.0})


def test_missing_val_annotations_names_config_field(tmp_path):
    from multimae_jax.data.splits import load_splits

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "coco_karpathy_train.json").write_text("[]")
    data = load_fusion_config_module().get_config("vit_tiny").data
    data.root = str(tmp_path)
    with pytest.raises(FileNotFoundError) as raised:
        load_splits(data, seed=0)
    message = str(raised.value)
    assert "coco_karpathy_val.json not found" in message
    assert "coco_karpathy_train.json" in message
    assert "--config.data.val_annotations=" in message


def test_heldout_fraction_without_folder_is_reported(caplog):
    from multimae_jax.data.splits import load_splits

    data = ml_collections.ConfigDict({"root": "", "image_dir": "", "heldout_fraction": 0.2, "image_size": 16,
                                      "builtin_train_images": 2, "builtin_val_images": 1, "builtin_test_images": 1})
    with caplog.at_level("WARNING"):
        splits = load_splits(data, seed=0)
    assert splits.val.num_images == 1
    assert "config.data.heldout_fraction=0.2 is ignored" in caplog.text
