"""Image-text retrieval evaluation of a model with contrastive heads on one split."""

import logging
import math
import time

import jax
import numpy as np

from multimae_jax.data import pipeline
from multimae_jax.evaluation.embeddings import collect_embeddings
from multimae_jax.evaluation.retrieval import retrieval_metrics
from multimae_jax.training import sharding


def chance_recall(num_candidates: int, num_relevant: float, k: int) -> float:
    """Return the recall@k in percent of a random ranking with `num_relevant` relevant candidates.

    It is the probability that at least one relevant candidate lands in the top k: 1 - C(n - r, k) / C(n, k).
    For i2t, `num_relevant` is the mean number of captions per image, so the value is an approximation when
    images have different caption counts.
    """
    if k >= num_candidates:
        return 100.0
    log_miss = 0.0
    for i in range(k):
        log_miss += math.log(max(num_candidates - num_relevant - i, 0.0) + 1e-300) - math.log(num_candidates - i)
    return 100.0 * (1.0 - math.exp(log_miss))


class RetrievalEvaluator:
    """Embeds every image and caption of a split with unmasked images and uncorrupted captions and ranks them."""

    def __init__(self, split, split_name: str, tokenizer, model, mesh, *, batch_size: int, image_size: int,
                 max_text_length: int, num_workers: int = 0, ks=(1, 5, 10)):
        self.local_batch_size = sharding.local_batch_size(batch_size, mesh, field="eval.batch_size")
        self.split = split
        self.split_name = split_name
        self.tokenizer = tokenizer
        self.mesh = mesh
        self.image_size = image_size
        self.max_text_length = max_text_length
        self.num_workers = num_workers
        self.ks = tuple(ks)

        replicated = sharding.replicated_sharding(mesh)
        self._embed_images = jax.jit(
            lambda params, batch: model.apply({"params": params}, batch["image"], method=model.embed_image),
            out_shardings=replicated)
        self._embed_texts = jax.jit(
            lambda params, batch: model.apply({"params": params}, batch["text_ids"], batch["text_mask"],
                                              method=model.embed_text),
            out_shardings=replicated)

    def compute_embeddings(self, params) -> tuple[np.ndarray, np.ndarray]:
        """Return (image embeddings [num_images, dim], caption embeddings [num_captions, dim])."""
        shard = dict(shard_index=jax.process_index(), shard_count=jax.process_count())
        images = pipeline.iterate_eval_images(self.split, batch_size=self.local_batch_size, image_size=self.image_size,
                                              num_workers=self.num_workers, **shard)
        image_embeddings = collect_embeddings(images, lambda batch: self._embed_images(params, batch), "image_index",
                                              self.split.num_images, self.mesh)
        captions = pipeline.iterate_eval_captions(self.split, self.tokenizer, batch_size=self.local_batch_size,
                                                  max_text_length=self.max_text_length, **shard)
        text_embeddings = collect_embeddings(captions, lambda batch: self._embed_texts(params, batch), "caption_index",
                                             self.split.num_captions, self.mesh)
        return image_embeddings, text_embeddings

    def evaluate(self, params, step: int, return_embeddings: bool = False):
        """Compute the retrieval metrics and log them next to chance.

        Returns:
          The metrics dict, or (metrics, image embeddings, text embeddings) when return_embeddings is set.
        """
        start = time.time()
        image_embeddings, text_embeddings = self.compute_embeddings(params)
        metrics = retrieval_metrics(image_embeddings, text_embeddings, self.split.caption_to_image, ks=self.ks,
                                    mesh=self.mesh)
        result = {"num_images": self.split.num_images, "num_captions": self.split.num_captions, **metrics}

        captions_per_image = self.split.num_captions / self.split.num_images
        recalls = " ".join(f"{direction}/R@{k}={metrics[f'{direction}/R@{k}']:.2f}"
                           for direction in ("t2i", "i2t") for k in self.ks)
        chance = " ".join(
            [f"t2i/R@{k}={chance_recall(self.split.num_images, 1, k):.2f}" for k in self.ks]
            + [f"i2t/R@{k}={chance_recall(self.split.num_captions, captions_per_image, k):.2f}" for k in self.ks])
        logging.info("eval %s step %d (%d images, %d captions, %.1fs): %s rsum=%.2f t2i/mAP=%.2f i2t/mAP=%.2f "
                     "t2i/median_rank=%g i2t/median_rank=%g", self.split_name, step, self.split.num_images,
                     self.split.num_captions, time.time() - start, recalls, metrics["rsum"], metrics["t2i/mAP"],
                     metrics["i2t/mAP"], metrics["t2i/median_rank"], metrics["i2t/median_rank"])
        logging.info("eval %s chance level: %s", self.split_name, chance)

        if return_embeddings:
            return result, image_embeddings, text_embeddings
        return result
