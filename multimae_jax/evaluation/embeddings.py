"""Sharded computation of image and caption embeddings over a whole evaluation split."""

from typing import Callable, Iterable

import jax
import numpy as np

from multimae_jax.training.sharding import global_batch_from_local


def collect_embeddings(batches: Iterable[dict], embed_fn: Callable, index_key: str, total: int,
                       mesh) -> np.ndarray:
    """Embed every item of a split once and return the embeddings in index order.

    Args:
      batches: this process's local batches, each with the model inputs, `index_key` (int32 [B], the item's
        global index) and "valid" (bool [B], False for the padding of the last batch). Every process must yield
        the same number of batches.
      embed_fn: jitted function (global batch dict) -> float32 [global B, dim], with replicated output.
      index_key: "image_index" or "caption_index".
      total: number of items in the split; each must appear exactly once among the valid rows.
      mesh: the device mesh that batches are laid out on.

    Returns:
      float32 [total, dim]; row i is the embedding of item i.
    """
    embeddings, indices = [], []
    for local_batch in batches:
        global_batch = global_batch_from_local(local_batch, mesh)
        batch_embeddings = np.asarray(jax.device_get(embed_fn(global_batch)))
        valid = np.asarray(jax.device_get(global_batch["valid"]))
        batch_indices = np.asarray(jax.device_get(global_batch[index_key]))
        embeddings.append(batch_embeddings[valid])
        indices.append(batch_indices[valid])

    if not embeddings:
        raise ValueError(f"the evaluation split yielded no batches for {index_key}")
    embeddings = np.concatenate(embeddings)
    indices = np.concatenate(indices)
    counts = np.bincount(indices, minlength=total)
    if len(counts) != total or not np.all(counts == 1):
        missing = np.flatnonzero(counts[:total] == 0)[:5].tolist()
        repeated = np.flatnonzero(counts > 1)[:5].tolist()
        raise RuntimeError(f"evaluation saw {len(indices)} valid {index_key} rows for {total} items "
                           f"(first missing: {missing}, first repeated: {repeated}); the eval iterator must "
                           f"visit each item exactly once")
    ordered = np.empty_like(embeddings)
    ordered[indices] = embeddings
    return ordered
