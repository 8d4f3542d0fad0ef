"""Held-out evaluators: the reconstruction loss of an image split and masked-token accuracy of a text split."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimae_jax.data.builtin_scenes import make_builtin_split
from multimae_jax.data.image_transforms import eval_image_transform
from multimae_jax.data.text_file import TextLines
from multimae_jax.data.tokenizer import load_tokenizer
from multimae_jax.evaluation.masked_token_accuracy import MaskedTokenEvaluator, unigram_log_probs
from multimae_jax.evaluation.reconstruction_loss import ReconstructionLossEvaluator
from multimae_jax.losses.mae_loss import masked_patch_errors
from multimae_jax.models.multimodal_mae import MultimodalMae, StackSize
from multimae_jax.models.patch_masking import random_patch_mask
from multimae_jax.training.sharding import make_mesh
from multimae_jax.training.trainer import init_params

IMAGE_SIZE = 16
TEXT_LENGTH = 12
TEXTS = ["a red circle above a blue square", "two green stars", "the yellow triangle is left of a circle",
         "a blue square", "three red circles in a row", "a small green star below a square"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer("", training_texts=TEXTS * 3, cache_dir=str(tmp_path_factory.mktemp("tok")), vocab_size=60)


def test_unigram_log_probs_are_a_distribution(tokenizer):
    log_probs = unigram_log_probs(TEXTS, tokenizer, TEXT_LENGTH)

    special = list(tokenizer.special_ids)
    assert np.all(np.isneginf(log_probs[special]))
    assert np.exp(np.delete(log_probs, special)).sum() == pytest.approx(1.0, abs=1e-5)
    ids, mask = tokenizer.encode(TEXTS, TEXT_LENGTH)
    counts = np.bincount(ids[mask.astype(bool)], minlength=tokenizer.vocab_size)
    counts[special] = -1
    assert int(np.argmax(log_probs)) == int(np.argmax(counts))


def test_masked_token_evaluator_ignores_batching(tokenizer):
    model = MultimodalMae(vocab_size=tokenizer.vocab_size, max_text_length=TEXT_LENGTH,
                          text_stack=StackSize(16, 1, 2), use_mlm=True)
    params = init_params(model, jax.random.key(0), None, TEXT_LENGTH)
    split = TextLines(name="held out", captions=tuple(TEXTS[:5]))
    log_probs = unigram_log_probs(TEXTS, tokenizer, TEXT_LENGTH)
    evaluator = MaskedTokenEvaluator(split, "val", tokenizer, model, make_mesh(), train_log_probs=log_probs,
                                     batch_size=4, max_text_length=TEXT_LENGTH, mask_prob=0.15, seed=0)

    first = evaluator.evaluate(params, step=1)
    second = evaluator.evaluate(params, step=2)
    other_batch_size = MaskedTokenEvaluator(split, "val", tokenizer, model, make_mesh(), train_log_probs=log_probs,
                                            batch_size=3, max_text_length=TEXT_LENGTH, mask_prob=0.15,
                                            seed=0).evaluate(params, step=1)

    assert first == second
    assert other_batch_size["num_masked_tokens"] == first["num_masked_tokens"]
    assert other_batch_size["mlm_loss"] == pytest.approx(first["mlm_loss"], rel=1e-5)
    assert first["num_texts"] == 5
    assert 5 <= first["num_masked_tokens"] <= 5 * (TEXT_LENGTH - 2)
    assert 0.0 <= first["mlm_accuracy"] <= 1.0
    assert first["mlm_perplexity"] == pytest.approx(np.exp(first["mlm_loss"]))
    # Untrained logits have a spread of about one unit, so the perplexity is of the order of the vocabulary size.
    assert tokenizer.vocab_size / 4 < first["mlm_perplexity"] < tokenizer.vocab_size * 4


def test_reconstruction_loss_ignores_padding_and_batching():
    split = make_builtin_split("val", 3, IMAGE_SIZE, seed=0)
    model = MultimodalMae(patch_size=4, image_stack=StackSize(16, 1, 2), decoder_stack=StackSize(16, 1, 2))
    params = init_params(model, jax.random.key(0), IMAGE_SIZE, 0)
    evaluator = ReconstructionLossEvaluator(split, "val", model, make_mesh(), batch_size=4, image_size=IMAGE_SIZE,
                                            mask_ratio=0.75, norm_pix_loss=True, seed=5)

    result = evaluator.evaluate(params, step=0)

    # The one batch contains the 3 images and a padding copy of the last; image i's mask comes from
    # fold_in(key(5), i).
    images = jnp.asarray(np.stack([eval_image_transform(split.load_image(i), IMAGE_SIZE) for i in range(3)]))
    masks = [random_patch_mask(jax.random.fold_in(jax.random.key(5), i), 1, 16, 0.75) for i in range(3)]
    patch_mask = jax.tree_util.tree_map(lambda *leaves: jnp.concatenate(leaves), *masks)
    predictions = model.apply({"params": params}, images, patch_mask, method=model.predict_pixels)
    errors = np.asarray(masked_patch_errors(predictions, images, 4, True))
    hidden = np.asarray(patch_mask.mask)
    expected = (errors * hidden).sum() / hidden.sum()
    assert result["mae_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert result["num_images"] == 3

    other_batch_size = ReconstructionLossEvaluator(split, "val", model, make_mesh(), batch_size=2,
                                                   image_size=IMAGE_SIZE, mask_ratio=0.75, norm_pix_loss=True, seed=5)
    assert other_batch_size.evaluate(params, step=0)["mae_loss"] == pytest.approx(result["mae_loss"], rel=1e-5)


def test_masked_token_evaluator_checks_baseline_shape(tokenizer):
    model = MultimodalMae(vocab_size=tokenizer.vocab_size, max_text_length=TEXT_LENGTH,
                          text_stack=StackSize(16, 1, 2), use_mlm=True)
    split = TextLines(name="held out", captions=tuple(TEXTS[:2]))
    with pytest.raises(ValueError, match=r"train_log_probs has shape \(7,\), expected"):
        MaskedTokenEvaluator(split, "val", tokenizer, model, make_mesh(), train_log_probs=np.zeros(7), batch_size=2,
                             max_text_length=TEXT_LENGTH, mask_prob=0.15, seed=0)
