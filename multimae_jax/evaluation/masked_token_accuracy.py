"""Held-out masked-token accuracy and perplexity of an MLM head, next to a unigram-frequency baseline."""

import logging
import math
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from multimae_jax.data import pipeline
from multimae_jax.losses.mlm_loss import mlm_token_losses
from multimae_jax.models.token_masking import select_mlm_targets
from multimae_jax.training import sharding
from multimae_jax.training.model_inputs import TokenIds

# Captions tokenised at a time while counting training tokens, to bound memory on large corpora.
_COUNT_CHUNK = 8192


def unigram_log_probs(texts: Sequence[str], tokenizer, max_text_length: int) -> np.ndarray:
    """Return float32 [vocab_size] log-probabilities of a unigram model of the texts' tokens.

    Counts cover the non-special tokens of every text, truncated as in training, with add-one smoothing over the
    non-special vocabulary. Special tokens get -inf, because MLM never selects them as targets.
    """
    counts = np.zeros(tokenizer.vocab_size, np.int64)
    for start in range(0, len(texts), _COUNT_CHUNK):
        ids, mask = tokenizer.encode(list(texts[start:start + _COUNT_CHUNK]), max_text_length)
        counts += np.bincount(ids[mask.astype(bool)], minlength=tokenizer.vocab_size)
    smoothed = counts.astype(np.float64) + 1.0
    smoothed[list(tokenizer.special_ids)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(smoothed / smoothed.sum()).astype(np.float32)


class MaskedTokenEvaluator:
    """Masked-token accuracy and perplexity over every text of a split, with the same corruption each time.

    Texts are corrupted as in training, with BERT's 80/10/10 rule at loss.mlm_mask_prob. Text i draws its
    corruption from fold_in(key(seed), i), so two evaluations differ only by the parameters, whatever the batch
    size and device count. The unigram
    baseline predicts every masked token from the training texts' token frequencies (`unigram_log_probs`). Its
    accuracy is that of always predicting the most frequent token, and its perplexity is that of the smoothed
    frequency distribution.
    """

    def __init__(self, split, split_name: str, tokenizer, model, mesh, *, train_log_probs: np.ndarray,
                 batch_size: int, max_text_length: int, mask_prob: float, seed: int):
        """Build the evaluator; `train_log_probs` is `unigram_log_probs` of the training texts."""
        self.local_batch_size = sharding.local_batch_size(batch_size, mesh, field="eval.batch_size")
        self.split = split
        self.split_name = split_name
        self.tokenizer = tokenizer
        self.mesh = mesh
        self.max_text_length = max_text_length
        self.seed = seed
        token_ids = TokenIds(tuple(tokenizer.special_ids), tokenizer.mask_id, tokenizer.vocab_size)
        log_probs = np.asarray(train_log_probs, np.float32)
        if log_probs.shape != (tokenizer.vocab_size,):
            raise ValueError(f"train_log_probs has shape {log_probs.shape}, expected ({tokenizer.vocab_size},): one "
                             f"log-probability per token of the tokenizer")
        most_frequent = int(np.argmax(log_probs))

        def corrupt_one(index, text_ids, text_mask):
            key = jax.random.fold_in(jax.random.key(seed), index)
            return select_mlm_targets(key, text_ids[None], text_mask[None], special_ids=token_ids.special_ids,
                                      mask_id=token_ids.mask_id, vocab_size=token_ids.vocab_size, mask_prob=mask_prob)

        def prediction_sums(params, batch):
            targets = jax.vmap(corrupt_one)(batch["caption_index"], batch["text_ids"], batch["text_mask"])
            targets = jax.tree_util.tree_map(lambda leaf: leaf[:, 0], targets)
            logits = model.apply({"params": params}, targets.input_ids, batch["text_mask"], targets.positions,
                                 method=model.predict_masked_tokens)
            losses, correct = mlm_token_losses(logits, targets.labels)
            weights = targets.weights * batch["valid"][:, None].astype(jnp.float32)
            # Padding slots have weight 0 and may hold special-token labels with log-probability -inf.
            unigram_losses = jnp.where(weights > 0, -jnp.asarray(log_probs)[targets.labels], 0.0)
            unigram_correct = (targets.labels == most_frequent).astype(jnp.float32)
            return {"loss": jnp.sum(losses * weights), "correct": jnp.sum(correct * weights),
                    "count": jnp.sum(weights), "unigram_loss": jnp.sum(unigram_losses * weights),
                    "unigram_correct": jnp.sum(unigram_correct * weights)}

        self._prediction_sums = jax.jit(prediction_sums, out_shardings=sharding.replicated_sharding(mesh))

    def evaluate(self, params, step: int) -> dict:
        """Return the masked-token metrics of the split and log them next to the unigram baseline.

        Returns:
          {"mlm_loss" (mean cross-entropy, nats), "mlm_accuracy" (in [0, 1]), "mlm_perplexity",
           "unigram_accuracy", "unigram_perplexity", "num_masked_tokens", "num_texts"}.
        """
        start = time.time()
        batches = pipeline.iterate_eval_captions(self.split, self.tokenizer, batch_size=self.local_batch_size,
                                                 max_text_length=self.max_text_length,
                                                 shard_index=jax.process_index(), shard_count=jax.process_count())
        totals = {}
        for local_batch in batches:
            batch = sharding.global_batch_from_local(local_batch, self.mesh)
            for name, value in jax.device_get(self._prediction_sums(params, batch)).items():
                totals[name] = totals.get(name, 0.0) + float(value)
        count = totals.get("count", 0.0)
        if count == 0:
            raise ValueError(f"no token of the {self.split_name} split {self.split.name} was selected for "
                             f"prediction; its texts may be empty after tokenisation")
        result = {
            "mlm_loss": totals["loss"] / count,
            "mlm_accuracy": totals["correct"] / count,
            "mlm_perplexity": math.exp(totals["loss"] / count),
            "unigram_accuracy": totals["unigram_correct"] / count,
            "unigram_perplexity": math.exp(totals["unigram_loss"] / count),
            "num_masked_tokens": int(count),
            "num_texts": self.split.num_captions,
        }
        logging.info("eval %s step %d (%d texts, %d masked tokens, %.1fs): mlm_accuracy=%.4f mlm_perplexity=%.2f; "
                     "unigram baseline: accuracy=%.4f perplexity=%.2f", self.split_name, step, result["num_texts"],
                     result["num_masked_tokens"], time.time() - start, result["mlm_accuracy"],
                     result["mlm_perplexity"], result["unigram_accuracy"], result["unigram_perplexity"])
        return result
