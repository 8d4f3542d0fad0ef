"""Tests for the BERT-style selection and corruption of text tokens (MLM targets)."""

import functools

import jax
import numpy as np
import pytest

from multimae_jax.data.tokenizer import load_tokenizer
from multimae_jax.models.token_masking import max_mlm_predictions, select_mlm_targets

# The ids of a trained WordPiece vocabulary: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4.
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 1, 2, 3, 4
SPECIAL_IDS = (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID)
VOCAB_SIZE = 40
LENGTH = 24

CAPTIONS = [
    "A large red circle in the top left corner.",
    "Two small blue squares on a white background.",
    "A dog runs across the green grass.",
    "A man rides a bicycle down the street while a woman walks her dog next to the old stone church.",
    "Cat.",
    "The cat sleeps on a red sofa near the window.",
]


def _jitted_select(special_ids=SPECIAL_IDS, mask_id=MASK_ID, vocab_size=VOCAB_SIZE):
    return jax.jit(functools.partial(select_mlm_targets, special_ids=special_ids, mask_id=mask_id,
                                     vocab_size=vocab_size))


def _ragged_batch(rng, batch_size, length=LENGTH):
    """Build [CLS] words [SEP] [PAD]... rows of random lengths, some words [UNK], plus two rows without candidates.

    Returns:
      (text_ids int32 [batch, length], text_mask int32 [batch, length]).
    """
    text_ids = np.full((batch_size, length), PAD_ID, np.int32)
    text_mask = np.zeros((batch_size, length), np.int32)
    for row in range(batch_size):
        num_words = int(rng.integers(0, length - 1))
        words = rng.integers(len(SPECIAL_IDS), VOCAB_SIZE, size=num_words)
        words[rng.random(num_words) < 0.1] = UNK_ID
        text_ids[row, :num_words + 2] = [CLS_ID, *words, SEP_ID]
        text_mask[row, :num_words + 2] = 1

    # Row 0 is [CLS] [SEP] only and row 1 is all padding: neither has a token that may be selected.
    text_ids[0], text_mask[0] = PAD_ID, 0
    text_ids[0, :2], text_mask[0, :2] = [CLS_ID, SEP_ID], 1
    text_ids[1], text_mask[1] = PAD_ID, 0
    return text_ids, text_mask


def _num_candidates(text_ids, text_mask):
    return ((text_mask > 0) & ~np.isin(text_ids, SPECIAL_IDS)).sum(axis=1)


def _expected_count(num_candidates):
    return max(1, round(0.15 * num_candidates)) if num_candidates > 0 else 0


@pytest.fixture(scope="module")
def select():
    return _jitted_select()


@pytest.fixture(scope="module")
def draws(select):
    """Run the selection for 20 keys, each on its own ragged batch of 16 captions."""
    rng = np.random.default_rng(0)
    results = []
    for seed in range(20):
        text_ids, text_mask = _ragged_batch(rng, 16)
        targets = select(jax.random.fold_in(jax.random.key(0), seed), text_ids, text_mask)
        results.append((text_ids, text_mask, jax.tree_util.tree_map(np.asarray, targets)))
    return results


def test_output_shapes(draws):
    text_ids, _, targets = draws[0]
    slots = max_mlm_predictions(LENGTH, 0.15)

    assert slots == 4  # ceil(24 * 0.15)
    assert targets.input_ids.shape == text_ids.shape
    assert targets.positions.shape == (16, slots)
    assert targets.labels.shape == (16, slots)
    assert targets.weights.shape == (16, slots)
    assert targets.weights.dtype == np.float32


def test_never_selects_padding_or_special(draws):
    for text_ids, text_mask, targets in draws:
        selected = targets.weights > 0
        rows = np.nonzero(selected)[0]
        positions = targets.positions[selected]
        assert np.all(text_mask[rows, positions] == 1)
        assert not np.any(np.isin(targets.labels[selected], SPECIAL_IDS))
        assert not np.any(np.isin(text_ids[rows, positions], SPECIAL_IDS))


def test_count_is_rounded_fraction(draws):
    for text_ids, text_mask, targets in draws:
        counts = targets.weights.sum(axis=1)
        expected = [_expected_count(n) for n in _num_candidates(text_ids, text_mask)]
        assert counts.tolist() == expected


def test_rows_without_candidates_get_nothing(draws):
    for text_ids, _, targets in draws:
        assert targets.weights[0].sum() == 0
        assert targets.weights[1].sum() == 0
        assert np.array_equal(targets.input_ids[:2], text_ids[:2])


def test_single_candidate_selected():
    # One real word: round(0.15) is 0, but an example with a candidate always gets one prediction.
    text_ids = np.array([[CLS_ID, 17, SEP_ID, PAD_ID, PAD_ID]], np.int32)
    text_mask = np.array([[1, 1, 1, 0, 0]], np.int32)
    targets = _jitted_select()(jax.random.key(5), text_ids, text_mask)

    assert float(targets.weights.sum()) == 1.0
    assert int(targets.positions[0, 0]) == 1
    assert int(targets.labels[0, 0]) == 17


def test_selected_positions_distinct(draws):
    for _, _, targets in draws:
        for row in range(len(targets.weights)):
            chosen = targets.positions[row][targets.weights[row] > 0]
            assert len(set(chosen.tolist())) == len(chosen), f"row {row} selects a position twice"


def test_labels_are_original_tokens(draws):
    for text_ids, _, targets in draws:
        selected = targets.weights > 0
        rows = np.nonzero(selected)[0]
        assert np.array_equal(targets.labels[selected], text_ids[rows, targets.positions[selected]])


def test_input_unchanged_outside_selection(draws):
    for text_ids, _, targets in draws:
        outside = np.ones(text_ids.shape, bool)
        selected = targets.weights > 0
        outside[np.nonzero(selected)[0], targets.positions[selected]] = False
        assert np.array_equal(targets.input_ids[outside], text_ids[outside])


def test_keys_change_selection(select):
    text_ids, text_mask = _ragged_batch(np.random.default_rng(1), 16)
    first = select(jax.random.key(1), text_ids, text_mask)
    second = select(jax.random.key(2), text_ids, text_mask)

    assert not np.array_equal(first.positions, second.positions)


def test_replacement_statistics():
    # 2048 captions of 62 words give 9 selections each (round(0.15 * 62)), about 18,000 in all, so each
    # fraction's standard deviation is below 0.003 and the bounds below sit several deviations away.
    rng = np.random.default_rng(2)
    length = 64
    text_ids = np.full((2048, length), PAD_ID, np.int32)
    text_ids[:, 0], text_ids[:, -1] = CLS_ID, SEP_ID
    text_ids[:, 1:-1] = rng.integers(len(SPECIAL_IDS), VOCAB_SIZE, size=(2048, length - 2))
    text_mask = np.ones_like(text_ids)
    targets = jax.tree_util.tree_map(np.asarray, _jitted_select()(jax.random.key(3), text_ids, text_mask))

    selected = targets.weights > 0
    rows = np.nonzero(selected)[0]
    new_tokens = targets.input_ids[rows, targets.positions[selected]]
    labels = targets.labels[selected]
    masked = new_tokens == MASK_ID
    unchanged = new_tokens == labels
    randomised = ~masked & ~unchanged

    assert selected.sum() == 2048 * 9
    assert 0.77 < masked.mean() < 0.83
    # A random draw equals the original token 1 time in 35, so "unchanged" is slightly above 10%.
    assert 0.08 < unchanged.mean() < 0.125
    assert 0.08 < randomised.mean() < 0.12
    assert not np.any(np.isin(new_tokens[randomised], SPECIAL_IDS))
    assert len(np.unique(new_tokens[randomised])) > 20


def test_random_replacements_never_special():
    # A vocabulary of 8 ids with 5 special ones leaves 3 allowed random replacements.
    rng = np.random.default_rng(4)
    text_ids = np.full((512, 32), PAD_ID, np.int32)
    text_ids[:, 0], text_ids[:, -1] = CLS_ID, SEP_ID
    text_ids[:, 1:-1] = rng.integers(5, 8, size=(512, 30))
    text_mask = np.ones_like(text_ids)
    select = _jitted_select(vocab_size=8)
    targets = jax.tree_util.tree_map(np.asarray, select(jax.random.key(6), text_ids, text_mask))

    selected = targets.weights > 0
    new_tokens = targets.input_ids[np.nonzero(selected)[0], targets.positions[selected]]
    not_masked = new_tokens[new_tokens != MASK_ID]
    assert len(not_masked) > 0
    assert set(np.unique(not_masked).tolist()) <= {5, 6, 7}


def test_only_special_vocabulary_rejected():
    text_ids = np.array([[CLS_ID, SEP_ID]], np.int32)

    with pytest.raises(ValueError, match="the vocabulary of 5 tokens contains only special tokens"):
        select_mlm_targets(jax.random.key(0), text_ids, np.ones_like(text_ids), special_ids=SPECIAL_IDS,
                           mask_id=MASK_ID, vocab_size=5)


def test_trained_tokenizer_captions(tmp_path):
    tokenizer = load_tokenizer("", training_texts=CAPTIONS * 3, cache_dir=str(tmp_path), vocab_size=120)
    text_ids, text_mask = tokenizer.encode(CAPTIONS + ["zzz qqq unseen words"], max_length=20)
    select = _jitted_select(tuple(tokenizer.special_ids), tokenizer.mask_id, tokenizer.vocab_size)
    num_candidates = ((text_mask > 0) & ~np.isin(text_ids, tokenizer.special_ids)).sum(axis=1)

    for seed in range(5):
        targets = jax.tree_util.tree_map(np.asarray, select(jax.random.key(seed), text_ids, text_mask))
        selected = targets.weights > 0
        assert not np.any(np.isin(targets.labels[selected], tokenizer.special_ids))
        assert targets.weights.sum(axis=1).tolist() == [_expected_count(n) for n in num_candidates]
        assert np.array_equal(targets.input_ids[:, 0], np.full(len(CAPTIONS) + 1, tokenizer.cls_id))
        assert np.array_equal(targets.input_ids[text_mask == 0], text_ids[text_mask == 0])


@pytest.mark.parametrize("max_length, mask_prob, expected", [(32, 0.15, 5), (20, 0.15, 3), (2, 0.15, 1),
                                                              (10, 0.5, 5)])
def test_max_predictions(max_length, mask_prob, expected):
    assert max_mlm_predictions(max_length, mask_prob) == expected


def test_numpy_inputs_without_jit():
    text_ids, text_mask = _ragged_batch(np.random.default_rng(7), 4)
    key = jax.random.key(8)

    eager = select_mlm_targets(key, text_ids, text_mask, special_ids=SPECIAL_IDS, mask_id=MASK_ID,
                               vocab_size=VOCAB_SIZE)
    jitted = _jitted_select()(key, text_ids, text_mask)

    assert np.array_equal(eager.input_ids, jitted.input_ids)
    assert np.array_equal(eager.positions, jitted.positions)
    assert np.array_equal(eager.weights, jitted.weights)
