"""The evaluation of a task on one split: the metrics its heads support, eval_<split>.json and reconstruction grids."""

import json
import os
from typing import Optional

import jax
import numpy as np

from multimae_jax.evaluation.masked_token_accuracy import MaskedTokenEvaluator, unigram_log_probs
from multimae_jax.evaluation.reconstruction_loss import ReconstructionLossEvaluator
from multimae_jax.evaluation.reconstructions import write_split_reconstructions
from multimae_jax.evaluation.retrieval_evaluator import RetrievalEvaluator


def write_eval_json(workdir: str, split_name: str, result: dict) -> str:
    """Write `<workdir>/eval_<split_name>.json` atomically from process 0 and return its path."""
    path = os.path.join(workdir, f"eval_{split_name}.json")
    if jax.process_index() == 0:
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=2, sort_keys=True)
        os.replace(temporary, path)
    return path


class TaskEvaluator:
    """Runs every evaluation a task supports on one split, the same way during training and in eval-only runs.

    - contrastive heads: image-text retrieval (`RetrievalEvaluator`);
    - an MAE decoder without fusion: the held-out reconstruction loss (`ReconstructionLossEvaluator`);
    - an MLM head without fusion: held-out masked-token accuracy and perplexity (`MaskedTokenEvaluator`);
    - an MAE decoder: a reconstruction grid, `<workdir>/reconstructions/step_<N>.png`.
    """

    def __init__(self, config, task, splits, split_name: str, tokenizer, model, mesh, grid_prefix: str = "step",
                 unigram_log_probs_of_train: Optional[np.ndarray] = None):
        """Build the evaluators of `split_name` ("val", "test", or "" for test when present, else val).

        Reconstruction grids are written to `<workdir>/reconstructions/<grid_prefix>_<step>.png`. For masked
        tokens, `unigram_log_probs_of_train` reuses the baseline of another evaluator of the same run (its
        attribute of that name), because counting the training tokens reads every training text.
        """
        self.split_name, self.split = splits.named(split_name)
        self.grid_prefix = grid_prefix
        self.image_size = splits.image_size
        self.config = config
        self.task = task
        self.model = model
        self.tokenizer = tokenizer
        common = dict(batch_size=config.eval.batch_size)
        self.retrieval = None
        self.parts = []
        if task.evaluates_retrieval:
            self.retrieval = RetrievalEvaluator(self.split, self.split_name, tokenizer, model, mesh,
                                                image_size=splits.image_size,
                                                max_text_length=config.data.max_text_length,
                                                num_workers=config.data.num_workers, **common)
            self.parts.append(self.retrieval)
        if task.evaluates_reconstruction_loss:
            self.parts.append(ReconstructionLossEvaluator(
                self.split, self.split_name, model, mesh, image_size=splits.image_size,
                mask_ratio=config.loss.mask_ratio, norm_pix_loss=config.loss.norm_pix_loss, seed=config.seed,
                num_workers=config.data.num_workers, **common))
        self.unigram_log_probs_of_train = unigram_log_probs_of_train
        if task.evaluates_masked_tokens and model.use_mlm:
            if self.unigram_log_probs_of_train is None:
                self.unigram_log_probs_of_train = unigram_log_probs(splits.train.captions, tokenizer,
                                                                    config.data.max_text_length)
            self.parts.append(MaskedTokenEvaluator(
                self.split, self.split_name, tokenizer, model, mesh,
                train_log_probs=self.unigram_log_probs_of_train,
                max_text_length=config.data.max_text_length, mask_prob=config.loss.mlm_mask_prob, seed=config.seed,
                **common))

    def evaluate(self, params, step: int, workdir: str, return_embeddings: bool = False, extra: dict = None):
        """Evaluate, write `<workdir>/eval_<split>.json` and, for tasks with a decoder, the reconstruction grid.

        Args:
          extra: further entries for the result, such as the evaluated checkpoint.

        Returns:
          The result dict ("step", "split", "image_size" for tasks with images, `extra` and every evaluator's
          metrics), or (result, image embeddings, text embeddings) when return_embeddings is set, which needs
          contrastive heads.
        """
        if return_embeddings and self.retrieval is None:
            raise ValueError(f"task {self.task.name!r} has no contrastive heads, so it has no embeddings to export")
        result = {"step": int(step), "split": self.split_name, **(extra or {})}
        if self.image_size:
            result["image_size"] = self.image_size
        embeddings = ()
        for part in self.parts:
            if part is self.retrieval and return_embeddings:
                metrics, *embeddings = part.evaluate(params, step, return_embeddings=True)
            else:
                metrics = part.evaluate(params, step)
            result.update(metrics)
        write_eval_json(workdir, self.split_name, result)
        if self.task.writes_reconstructions:
            write_split_reconstructions(self.config, self.model, params, self.split, self.tokenizer, step, workdir,
                                        prefix=self.grid_prefix)
        if return_embeddings:
            return (result, *embeddings)
        return result
