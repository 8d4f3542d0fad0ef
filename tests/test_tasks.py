"""Tasks: their components and losses, their config files, their models and their gradients."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT
from multimae_jax.data.builtin_scenes import make_builtin_split
from multimae_jax.data.image_transforms import eval_image_transform
from multimae_jax.data.tokenizer import load_tokenizer
from multimae_jax.evaluation.reconstructions import reconstruct_jit
from multimae_jax.models.patch_masking import num_visible_patches
from multimae_jax.tasks.model_builder import build_model
from multimae_jax.tasks.registry import TASKS, get_task
from multimae_jax.tasks.task import Task
from multimae_jax.training.config_checks import validate_config
from multimae_jax.training.model_inputs import TokenIds
from multimae_jax.training.train_step import compute_losses
from multimae_jax.training.trainer import init_params

IMAGE_SIZE = 32
TEXT_LENGTH = 16
TOP_LEVEL_PARAMS = {
    "mae": {"image_encoder", "decoder"},
    "mlm": {"text_encoder", "mlm_head"},
    "mmae": {"image_encoder", "decoder", "text_encoder", "mlm_head", "image_projection", "text_projection",
             "logit_scale"},
    "fusion": {"image_encoder", "decoder", "text_encoder", "mlm_head", "image_projection", "text_projection",
               "logit_scale", "fusion_encoder"},
}


def load_config(task_name, variant="vit_tiny"):
    path = os.path.join(REPO_ROOT, "configs", f"{task_name}.py")
    spec = importlib.util.spec_from_file_location(f"{task_name}_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def tiny_config(task_name):
    """Return the task's vit_tiny config with one-block, 32-wide stacks, 8-pixel patches and 16 tokens."""
    config = load_config(task_name)
    for section in ("image", "text", "fusion", "decoder"):
        if section in config.model:
            config.model[section].width = 32
            config.model[section].depth = 1
            config.model[section].num_heads = 2
    if "patch_size" in config.model:
        config.model.patch_size = 8
    if "max_text_length" in config.data:
        config.data.max_text_length = TEXT_LENGTH
    if "embed_dim" in config.model:
        config.model.embed_dim = 16
    return config


@pytest.fixture(scope="module")
def scenes_and_tokenizer(tmp_path_factory):
    split = make_builtin_split("train", 8, IMAGE_SIZE, seed=0)
    tokenizer = load_tokenizer("", training_texts=split.captions, cache_dir=str(tmp_path_factory.mktemp("tok")),
                               vocab_size=120)
    return split, tokenizer


def scene_batch(split, tokenizer):
    """Return a batch of 8 rendered scenes with their first captions, as the training pipeline yields it."""
    images = np.stack([eval_image_transform(split.load_image(index), IMAGE_SIZE) for index in range(8)])
    first_captions = [split.captions[int(np.flatnonzero(split.caption_to_image == index)[0])] for index in range(8)]
    text_ids, text_mask = tokenizer.encode(first_captions, TEXT_LENGTH)
    return {"image": jnp.asarray(images), "text_ids": jnp.asarray(text_ids), "text_mask": jnp.asarray(text_mask),
            "image_index": jnp.arange(8, dtype=jnp.int32)}


def test_registry_lists_four_tasks():
    assert set(TASKS) == {"mae", "mlm", "mmae", "fusion"}
    with pytest.raises(ValueError, match="config.task 'vae' is not a known task; choose one of 'mae'"):
        get_task("vae")


def test_task_losses_must_match_heads():
    with pytest.raises(ValueError, match="do not match the losses of its heads"):
        Task(name="odd", summary="", components=("image", "decoder"), losses=("mae", "mlm"))
    with pytest.raises(ValueError, match="unknown components"):
        Task(name="odd", summary="", components=("image", "audio"), losses=())


def test_task_evaluations_follow_components():
    assert get_task("mae").evaluates_reconstruction_loss
    assert not get_task("mae").evaluates_retrieval
    assert get_task("mlm").evaluates_masked_tokens
    assert not get_task("mlm").writes_reconstructions
    assert get_task("mmae").evaluates_retrieval
    assert get_task("mmae").evaluates_masked_tokens
    assert not get_task("fusion").evaluates_reconstruction_loss
    assert get_task("fusion").writes_reconstructions


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("variant", ["vit_tiny", "vit_small", "vit_base"])
def test_config_variants_are_valid(task_name, variant):
    config = load_config(task_name, variant)
    validate_config(config)
    assert config.task == task_name
    assert config.variant == variant


def test_configs_hold_only_their_task_fields():
    mae, mlm = load_config("mae"), load_config("mlm")
    assert "text" not in mae.model
    assert "max_text_length" not in mae.data
    assert "mlm_weight" not in mae.loss
    assert "image_dir" in mae.data
    assert "image" not in mlm.model
    assert "image_size" not in mlm.data
    assert "mask_ratio" not in mlm.loss
    assert "text_file" in mlm.data
    assert "image_dir" not in load_config("mmae").data


def test_mlm_variants_match_vit_sizes():
    assert (load_config("mlm", "vit_base").model.text.width, load_config("mlm", "vit_base").model.text.depth) == \
        (768, 12)
    assert load_config("mlm", "vit_small").model.text.width == load_config("mae", "vit_small").model.image.width


def test_single_loss_must_be_positive():
    config = load_config("mae")
    config.loss.mae_weight = 0.0
    with pytest.raises(ValueError, match="loss.mae_weight=0.0: must be positive: it is the only loss of task 'mae'"):
        validate_config(config)


def test_config_without_task_fields_is_rejected():
    config = load_config("mae")
    config.unlock()
    config.task = "mmae"
    with pytest.raises(ValueError, match="lacks the fields model.text"):
        validate_config(config)


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_every_parameter_gets_gradient(task_name, scenes_and_tokenizer):
    split, tokenizer = scenes_and_tokenizer
    config = tiny_config(task_name)
    model = build_model(get_task(task_name), config, tokenizer.vocab_size)
    params = jax.jit(lambda key: init_params(model, key, IMAGE_SIZE, TEXT_LENGTH))(jax.random.key(0))
    assert set(params) == TOP_LEVEL_PARAMS[task_name]

    token_ids = TokenIds(tuple(tokenizer.special_ids), tokenizer.mask_id, tokenizer.vocab_size)
    loss_gradients = jax.jit(lambda params, batch: jax.grad(compute_losses, has_aux=True)(
        params, model, batch, jax.random.key(1), config.loss, token_ids))
    grads, metrics = loss_gradients(params, scene_batch(split, tokenizer))

    norms = {jax.tree_util.keystr(path): float(jnp.linalg.norm(leaf))
             for path, leaf in jax.tree_util.tree_leaves_with_path(grads)}
    zero = sorted(path for path, norm in norms.items() if norm == 0.0)
    assert not zero, f"parameters without gradient: {zero}"
    assert all(np.isfinite(norm) for norm in norms.values())
    assert {f"{loss}_loss" for loss in get_task(task_name).losses} <= set(metrics)


def test_mmae_without_mlm_weight_drops_the_head(scenes_and_tokenizer):
    _, tokenizer = scenes_and_tokenizer
    config = tiny_config("mmae")
    config.loss.mlm_weight = 0.0
    model = build_model(get_task("mmae"), config, tokenizer.vocab_size)
    params = jax.eval_shape(lambda key: init_params(model, key, IMAGE_SIZE, TEXT_LENGTH), jax.random.key(0))
    assert "mlm_head" not in params
    assert "text_encoder" in params


@pytest.mark.parametrize("task_name", ["mae", "mmae"])
def test_reconstruction_at_non_square_size(task_name, scenes_and_tokenizer):
    _, tokenizer = scenes_and_tokenizer
    model = build_model(get_task(task_name), tiny_config(task_name), tokenizer.vocab_size)
    params = jax.jit(lambda key: init_params(model, key, IMAGE_SIZE, TEXT_LENGTH))(jax.random.key(0))
    images = jax.random.normal(jax.random.key(2), (2, 48, 24, 3))

    outputs = reconstruct_jit(model, params, images, jax.random.key(3), 0.75, None, None, True)

    assert outputs["reconstruction"].shape == (2, 48, 24, 3)
    assert outputs["mask"].shape == (2, 6 * 3)
    assert float(outputs["mask"].sum()) == 2 * (18 - num_visible_patches(18, 0.75))
    assert bool(jnp.all(jnp.isfinite(outputs["reconstruction"])))


def test_fusion_pixel_predictions_need_captions(scenes_and_tokenizer):
    _, tokenizer = scenes_and_tokenizer
    model = build_model(get_task("fusion"), tiny_config("fusion"), tokenizer.vocab_size)
    params = jax.jit(lambda key: init_params(model, key, IMAGE_SIZE, TEXT_LENGTH))(jax.random.key(0))
    with pytest.raises(ValueError, match="need the captions"):
        reconstruct_jit(model, params, jnp.zeros((1, 32, 32, 3)), jax.random.key(3), 0.75, None, None, True)


def test_mask_that_hides_nothing_is_rejected():
    config = load_config("mae")
    config.loss.mask_ratio = 0.0
    with pytest.raises(ValueError, match=r"config.loss.mask_ratio=0.0: hides none of the 49 patches at 112 px"):
        validate_config(config)
    config.loss.mask_ratio = 0.01
    with pytest.raises(ValueError, match="hides none of the 49 patches"):
        validate_config(config)


def test_durations_are_checked():
    config = load_config("mlm")
    config.train.num_steps = -5
    config.checkpoint.every_epochs = -1.0
    with pytest.raises(ValueError) as raised:
        validate_config(config)
    assert "config.train.num_steps=-5: must be >= 1" in str(raised.value)
    assert "config.checkpoint.every_epochs=-1.0: must be >= 0" in str(raised.value)
