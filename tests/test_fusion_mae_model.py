"""Tests for the fusion MAE model's outputs and for the jitted training step on a 1-device mesh."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.fusion import get_config
from multimae_jax.models.multimodal_mae import MultimodalMae, StackSize
from multimae_jax.models.patch_masking import full_patch_mask, random_patch_mask
from multimae_jax.models.token_masking import max_mlm_predictions, select_mlm_targets
from multimae_jax.training import sharding
from multimae_jax.training.optimizer import learning_rate_schedule, make_optimizer
from multimae_jax.training.model_inputs import TokenIds
from multimae_jax.training.train_step import make_train_step, step_key
from multimae_jax.training.trainer import init_train_state

PATCH_SIZE = 8
IMAGE_SIZE = 32
NUM_PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2
PATCH_DIM = PATCH_SIZE * PATCH_SIZE * 3
TEXT_LENGTH = 12
EMBED_DIM = 16
BATCH = 4
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
TOKEN_IDS = TokenIds(special_ids=(PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID), mask_id=MASK_ID, vocab_size=40)
MAX_PREDICTIONS = max_mlm_predictions(TEXT_LENGTH, 0.15)


def _tiny_model(use_mlm=True):
    return MultimodalMae(patch_size=PATCH_SIZE, vocab_size=TOKEN_IDS.vocab_size, max_text_length=TEXT_LENGTH,
                         image_stack=StackSize(32, 1, 2), text_stack=StackSize(32, 1, 2),
                         fusion_stack=StackSize(32, 1, 2), decoder_stack=StackSize(32, 1, 2), embed_dim=EMBED_DIM,
                         use_mlm=use_mlm)


def _captions(lengths, total_length=TEXT_LENGTH, seed=0):
    """Return [CLS] words [SEP] [PAD]... rows holding the given numbers of words, as int32 (ids, mask)."""
    rng = np.random.default_rng(seed)
    text_ids = np.full((len(lengths), total_length), PAD_ID, np.int32)
    text_mask = np.zeros((len(lengths), total_length), np.int32)
    for row, num_words in enumerate(lengths):
        words = rng.integers(len(TOKEN_IDS.special_ids), TOKEN_IDS.vocab_size, size=num_words)
        text_ids[row, :num_words + 2] = [CLS_ID, *words, SEP_ID]
        text_mask[row, :num_words + 2] = 1
    return text_ids, text_mask


def _batch(seed=0):
    """Return a local batch of BATCH images (float32 [B, 32, 32, 3]) and captions as the pipeline yields it."""
    rng = np.random.default_rng(seed)
    text_ids, text_mask = _captions([3, 10, 6, 1], seed=seed)
    return {"image": rng.normal(size=(BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32),
            "text_ids": text_ids, "text_mask": text_mask,
            "image_index": np.arange(BATCH, dtype=np.int32)}


MODEL = _tiny_model()

# Jitted once per module, so calls with the same shapes reuse one compilation.
apply_model = jax.jit(MODEL.apply)
embed_image = jax.jit(functools.partial(MODEL.apply, method=MultimodalMae.embed_image))
embed_text = jax.jit(functools.partial(MODEL.apply, method=MultimodalMae.embed_text))


@pytest.fixture(scope="module")
def params(training_setup):
    # The train state's parameters come from the initialisation the trainer runs, so the model is built once.
    return {"params": training_setup["state"].params}


@pytest.fixture(scope="module")
def forward(params):
    """Run the training forward pass with a 75% patch mask and MLM corruption on _batch()."""
    batch = _batch()
    mask_key, mlm_key = jax.random.split(jax.random.key(1))
    patch_mask = random_patch_mask(mask_key, BATCH, NUM_PATCHES, 0.75)
    targets = select_mlm_targets(mlm_key, batch["text_ids"], batch["text_mask"], special_ids=TOKEN_IDS.special_ids,
                                 mask_id=MASK_ID, vocab_size=TOKEN_IDS.vocab_size)
    return apply_model(params, batch["image"], batch["text_ids"], batch["text_mask"], patch_mask,
                       targets.input_ids, targets.positions)


def test_forward_output_shapes(forward):
    assert forward["image_embedding"].shape == (BATCH, EMBED_DIM)
    assert forward["text_embedding"].shape == (BATCH, EMBED_DIM)
    assert forward["logit_scale"].shape == ()
    assert forward["pixel_predictions"].shape == (BATCH, NUM_PATCHES, PATCH_DIM)
    assert forward["mlm_logits"].shape == (BATCH, MAX_PREDICTIONS, TOKEN_IDS.vocab_size)


def test_forward_outputs_float32_finite(forward):
    for name, value in forward.items():
        assert value.dtype == jnp.float32, name
        assert bool(jnp.all(jnp.isfinite(value))), name


def test_forward_embeddings_unit_norm(forward):
    np.testing.assert_allclose(np.linalg.norm(forward["image_embedding"], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(forward["text_embedding"], axis=-1), 1.0, rtol=1e-5)


def test_forward_initial_logit_scale(forward):
    assert float(forward["logit_scale"]) == pytest.approx(1.0 / 0.07, rel=1e-5)


def test_forward_requires_mlm_inputs(params):
    batch = _batch()

    with pytest.raises(ValueError, match="needs mlm_input_ids and mlm_positions"):
        apply_model(params, batch["image"], batch["text_ids"], batch["text_mask"],
                    full_patch_mask(BATCH, NUM_PATCHES))


def test_forward_without_mlm(params):
    # Shapes only: jax.eval_shape traces the model without compiling it.
    model = _tiny_model(use_mlm=False)
    batch = _batch()
    params_without_head = {"params": {name: value for name, value in params["params"].items()
                                      if name != "mlm_head"}}

    outputs = jax.eval_shape(model.apply, params_without_head, batch["image"], batch["text_ids"],
                             batch["text_mask"], full_patch_mask(BATCH, NUM_PATCHES))

    assert "mlm_logits" not in outputs
    assert outputs["pixel_predictions"].shape == (BATCH, NUM_PATCHES, PATCH_DIM)


def test_embed_image_shape_and_norm(params):
    embeddings = embed_image(params, _batch()["image"])

    assert embeddings.shape == (BATCH, EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, rtol=1e-5)


def test_embed_text_shape_and_norm(params):
    batch = _batch()

    embeddings = embed_text(params, batch["text_ids"], batch["text_mask"])

    assert embeddings.shape == (BATCH, EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, rtol=1e-5)


def test_text_embedding_matches_forward_pass(params, forward):
    # The forward pass embeds the uncorrupted caption, so the MLM corruption must not reach its text embedding.
    batch = _batch()

    text_embeddings = embed_text(params, batch["text_ids"], batch["text_mask"])

    np.testing.assert_allclose(forward["text_embedding"], text_embeddings, atol=1e-5)


def test_text_embedding_ignores_padding(params):
    short_ids, short_mask = _captions([2, 5, 6, 0], total_length=8, seed=3)
    padded_ids = np.concatenate([short_ids, np.full((BATCH, 4), PAD_ID, np.int32)], axis=1)
    padded_mask = np.concatenate([short_mask, np.zeros((BATCH, 4), np.int32)], axis=1)
    garbage_ids = padded_ids.copy()
    garbage_ids[padded_mask == 0] = np.random.default_rng(4).integers(5, 40, size=int((padded_mask == 0).sum()))

    short = embed_text(params, short_ids, short_mask)
    padded = embed_text(params, padded_ids, padded_mask)
    garbage = embed_text(params, garbage_ids, padded_mask)

    np.testing.assert_allclose(padded, short, atol=1e-5)
    np.testing.assert_allclose(garbage, short, atol=1e-5)


def test_text_embedding_sees_real_tokens(params):
    text_ids, text_mask = _captions([5, 5, 5, 5], seed=5)
    changed_ids = text_ids.copy()
    changed_ids[:, 3] = np.where(text_ids[:, 3] == 7, 8, 7)

    original = embed_text(params, text_ids, text_mask)
    changed = embed_text(params, changed_ids, text_mask)

    assert float(jnp.min(jnp.max(jnp.abs(original - changed), axis=-1))) > 1e-4


def test_embed_image_other_size(params):
    # The parameters come from 32x32 images, and a 32x48 image gets sin-cos position embeddings for its 4x6 grid.
    images = jax.random.normal(jax.random.key(2), (2, 32, 48, 3))

    embeddings = embed_image(params, images)

    assert embeddings.shape == (2, EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, rtol=1e-5)


def test_forward_at_other_image_size(params):
    # Shapes only: a 48x48 image has a 6x6 grid of patches for the encoder and the decoder.
    text_ids, text_mask = _captions([4, 7])

    outputs = jax.eval_shape(MODEL.apply, params, jnp.zeros((2, 48, 48, 3)), text_ids, text_mask,
                             random_patch_mask(jax.random.key(3), 2, 36, 0.75), text_ids,
                             jnp.ones((2, MAX_PREDICTIONS), jnp.int32))

    assert outputs["pixel_predictions"].shape == (2, 36, PATCH_DIM)
    assert outputs["image_embedding"].shape == (2, EMBED_DIM)


def test_image_size_not_divisible(params):
    with pytest.raises(ValueError, match="image size 36x32 is not divisible by patch size 8"):
        embed_image(params, jnp.zeros((1, 36, 32, 3)))


@pytest.fixture(scope="module")
def training_setup():
    """Build the tiny model's optimizer, sharded train state, jitted step and global batch on a 1-device mesh."""
    config = get_config("vit_tiny")
    model = MODEL
    mesh = sharding.make_mesh()
    schedule = learning_rate_schedule(2e-3, 1e-4, 0, 10)
    optimizer = make_optimizer(config.train, schedule)
    state, state_shardings = init_train_state(model, optimizer, mesh, IMAGE_SIZE, TEXT_LENGTH, seed=0)
    train_step = make_train_step(model, optimizer, schedule, config.loss, TOKEN_IDS, 0, state_shardings,
                                 sharding.batch_sharding(mesh))
    batch = sharding.global_batch_from_local(_batch(seed=6), mesh)
    return dict(state=state, train_step=train_step, batch=batch, schedule=schedule)


def _copy_state(state, step=None):
    """Copy a train state, optionally with another step counter, keeping every leaf's sharding.

    The train step donates its state argument, so each call gets its own copy. The new counter gets the old one's
    sharding because an array without the mesh sharding would make the jitted step compile again.
    """
    state = jax.tree_util.tree_map(jnp.copy, state)
    if step is not None:
        state = state.replace(step=jax.device_put(np.int32(step), state.step.sharding))
    return state


@pytest.fixture(scope="module")
def trajectory(training_setup):
    """Run the jitted step from the initial state in the ways the tests below compare, with one compilation.

    Returns a dict of (new state, metrics as floats) pairs:
      first, repeat: step 0 twice from the same state and batch.
      later_step: the initial parameters with the step counter at 7.
      fifth: five steps from the initial state.
      replay: the parameters after five steps with the counter set back to 0, so the same masks as `first`.
    """
    train_step, batch, state = training_setup["train_step"], training_setup["batch"], training_setup["state"]

    def run(train_state):
        new_state, metrics = train_step(train_state, batch)
        return new_state, {name: float(value) for name, value in metrics.items()}

    runs = {"first": run(_copy_state(state)), "repeat": run(_copy_state(state)),
            "later_step": run(_copy_state(state, step=7))}
    current = _copy_state(runs["first"][0])
    for _ in range(4):
        current, metrics = run(current)
    runs["fifth"] = (current, metrics)
    runs["replay"] = run(_copy_state(current, step=0))
    return runs


def test_train_step_lowers_loss(trajectory):
    # The step draws new masks from its counter, so the loss is compared under step 0's masks before and after.
    loss_before = trajectory["first"][1]["loss"]
    loss_after = trajectory["replay"][1]["loss"]

    assert int(trajectory["fifth"][0].step) == 5
    assert np.isfinite(loss_before)
    assert loss_after < 0.9 * loss_before
    assert trajectory["replay"][1]["contrastive_loss"] < trajectory["first"][1]["contrastive_loss"]


def test_train_step_metrics(training_setup, trajectory):
    state, metrics = trajectory["first"]

    assert int(state.step) == 1
    assert set(metrics) == {"loss", "mae_loss", "contrastive_loss", "mlm_loss", "mlm_accuracy", "logit_scale",
                            "grad_norm", "learning_rate"}
    assert metrics["learning_rate"] == pytest.approx(float(training_setup["schedule"](0)), rel=1e-6)
    assert metrics["grad_norm"] > 0.0
    assert metrics["loss"] == pytest.approx(metrics["mae_loss"] + metrics["contrastive_loss"] + metrics["mlm_loss"],
                                            rel=1e-5)


def test_train_step_updates_params(training_setup, trajectory):
    initial = jax.tree_util.tree_leaves(training_setup["state"].params)
    updated = jax.tree_util.tree_leaves(trajectory["first"][0].params)

    assert any(not np.array_equal(before, after) for before, after in zip(initial, updated))


def test_train_step_deterministic(trajectory):
    (first_state, first_metrics), (repeat_state, repeat_metrics) = trajectory["first"], trajectory["repeat"]

    assert first_metrics == repeat_metrics
    first_leaves = jax.tree_util.tree_leaves(first_state.params)
    repeat_leaves = jax.tree_util.tree_leaves(repeat_state.params)
    assert all(np.array_equal(first, repeat) for first, repeat in zip(first_leaves, repeat_leaves))


def test_train_step_key_follows_step(trajectory):
    # Same parameters and batch, different step counter: only the masks drawn from the step key change.
    metrics, later_metrics = trajectory["first"][1], trajectory["later_step"][1]

    assert metrics["mae_loss"] != later_metrics["mae_loss"]
    assert metrics["mlm_loss"] != later_metrics["mlm_loss"]
    assert int(trajectory["later_step"][0].step) == 8


def test_step_key_fold_in():
    first, second = step_key(0, jnp.int32(1)), step_key(0, jnp.int32(2))

    assert not np.array_equal(jax.random.key_data(first), jax.random.key_data(second))
    assert np.array_equal(jax.random.key_data(first), jax.random.key_data(step_key(0, jnp.int32(1))))
    assert np.array_equal(jax.random.key_data(first),
                          jax.random.key_data(jax.random.fold_in(jax.random.key(0), 1)))
    assert not np.array_equal(jax.random.key_data(first), jax.random.key_data(step_key(1, jnp.int32(1))))
