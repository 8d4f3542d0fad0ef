"""BERT-style selection and corruption of text tokens for masked language modelling."""

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp


class MlmTargets(NamedTuple):
    """Corrupted input and prediction targets of one MLM batch.

    Attributes:
      input_ids: int32 [batch, length], the text with selected tokens replaced.
      positions: int32 [batch, max_predictions], the selected positions (arbitrary where weights is 0).
      labels: int32 [batch, max_predictions], the original token at each selected position.
      weights: float32 [batch, max_predictions], 1 for a real prediction and 0 for padding.
    """

    input_ids: jnp.ndarray
    positions: jnp.ndarray
    labels: jnp.ndarray
    weights: jnp.ndarray


def max_mlm_predictions(max_length: int, mask_prob: float) -> int:
    """Return the static number of prediction slots per example: ceil(max_length * mask_prob), at least 1."""
    return max(1, math.ceil(max_length * mask_prob))


def select_mlm_targets(
    key: jax.Array,
    text_ids: jnp.ndarray,
    text_mask: jnp.ndarray,
    *,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    replace_with_mask_prob: float = 0.8,
    replace_with_random_prob: float = 0.1,
) -> MlmTargets:
    """Select round(mask_prob * n) of each example's n real, non-special tokens and corrupt them.

    Padding (text_mask 0) and special tokens ([CLS], [SEP], [PAD], [MASK], ...) are never selected. Of the
    selected tokens, replace_with_mask_prob become [MASK], replace_with_random_prob become a random non-special
    token and the rest stay unchanged (80/10/10 by default). An example with at least one candidate gets at least
    one prediction.

    Args:
      key: PRNG key.
      text_ids: int32 [batch, length].
      text_mask: int [batch, length], 1 for real tokens.
      special_ids: token ids that are never selected nor drawn as random replacements.
      mask_id: id of the [MASK] token.
      vocab_size: number of token ids.
    """
    batch_size, length = text_ids.shape
    max_predictions = max_mlm_predictions(length, mask_prob)
    select_key, action_key, random_key = jax.random.split(key, 3)

    special = jnp.isin(text_ids, jnp.asarray(list(special_ids), jnp.int32))
    candidates = (text_mask > 0) & ~special
    num_candidates = candidates.sum(axis=1)
    num_selected = jnp.where(num_candidates > 0, jnp.maximum(1, jnp.round(num_candidates * mask_prob)), 0)
    num_selected = jnp.minimum(num_selected, max_predictions).astype(jnp.int32)

    # Candidates get uniform noise in [0, 1) and the rest 2, so sorting puts a random order of candidates first.
    noise = jnp.where(candidates, jax.random.uniform(select_key, (batch_size, length)), 2.0)
    positions = jnp.argsort(noise, axis=1)[:, :max_predictions].astype(jnp.int32)
    weights = (jnp.arange(max_predictions)[None, :] < num_selected[:, None]).astype(jnp.float32)
    labels = jnp.take_along_axis(text_ids, positions, axis=1)

    action = jax.random.uniform(action_key, (batch_size, max_predictions))
    random_tokens = _draw_non_special_tokens(random_key, (batch_size, max_predictions), special_ids, vocab_size)
    replacement = jnp.where(action < replace_with_mask_prob, mask_id, labels)
    use_random = (action >= replace_with_mask_prob) & (action < replace_with_mask_prob + replace_with_random_prob)
    replacement = jnp.where(use_random, random_tokens, replacement)

    # Padding slots write the token back unchanged, so they never corrupt the input.
    replacement = jnp.where(weights > 0, replacement, labels)
    rows = jnp.arange(batch_size)[:, None]
    input_ids = jnp.asarray(text_ids).at[rows, positions].set(replacement.astype(text_ids.dtype))
    return MlmTargets(input_ids=input_ids, positions=positions, labels=labels, weights=weights)


def _draw_non_special_tokens(key, shape, special_ids, vocab_size):
    """Draw token ids uniformly from the vocabulary without its special tokens."""
    special = set(int(i) for i in special_ids)
    allowed = jnp.asarray([i for i in range(vocab_size) if i not in special], jnp.int32)
    if allowed.size == 0:
        raise ValueError(f"the vocabulary of {vocab_size} tokens contains only special tokens")
    return allowed[jax.random.randint(key, shape, 0, allowed.size)]
