"""Tests for the contrastive, MAE and MLM losses against NumPy references, and the contrastive loss on 8 devices."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimae_jax.losses.contrastive_loss import contrastive_loss
from multimae_jax.losses.mae_loss import NORM_PIX_EPSILON, mae_loss, normalized_patch_targets
from multimae_jax.losses.mlm_loss import mlm_loss
from multimae_jax.models.patch_masking import random_patch_mask

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCH_SIZE = 4


def _log_softmax(logits):
    """Row-wise log-softmax in float64, shifted by the row maximum for stability."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _reference_contrastive(images, texts, scale, image_ids=None):
    images, texts = np.asarray(images, np.float64), np.asarray(texts, np.float64)
    logits = scale * images @ texts.T
    batch = len(images)
    if image_ids is None:
        targets = np.eye(batch)
    else:
        image_ids = np.asarray(image_ids)
        targets = (image_ids[:, None] == image_ids[None, :]).astype(np.float64)
    targets = targets / targets.sum(axis=1, keepdims=True)

    image_to_text = -(targets * _log_softmax(logits)).sum(axis=1).mean()
    text_to_image = -(targets.T * _log_softmax(logits.T)).sum(axis=1).mean()
    return 0.5 * (image_to_text + text_to_image)


def _unit_rows(rng, batch, dim):
    vectors = rng.normal(size=(batch, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


jitted_contrastive = jax.jit(contrastive_loss)


def test_contrastive_matches_reference():
    rng = np.random.default_rng(0)
    images, texts = _unit_rows(rng, 8, 16), _unit_rows(rng, 8, 16)

    for scale in (1.0, 14.3, 50.0):
        loss = float(jitted_contrastive(images, texts, jnp.float32(scale)))
        assert loss == pytest.approx(_reference_contrastive(images, texts, scale), rel=1e-5), f"scale {scale}"


def test_contrastive_shared_image_ids():
    rng = np.random.default_rng(1)
    images, texts = _unit_rows(rng, 8, 16), _unit_rows(rng, 8, 16)
    image_ids = np.array([0, 0, 1, 2, 2, 2, 3, 4], np.int32)

    loss = float(jitted_contrastive(images, texts, jnp.float32(10.0), image_ids))
    diagonal_loss = float(jitted_contrastive(images, texts, jnp.float32(10.0)))

    assert loss == pytest.approx(_reference_contrastive(images, texts, 10.0, image_ids), rel=1e-5)
    assert abs(loss - diagonal_loss) > 1e-3


def test_contrastive_distinct_ids_equal_diagonal():
    rng = np.random.default_rng(2)
    images, texts = _unit_rows(rng, 6, 8), _unit_rows(rng, 6, 8)
    image_ids = np.array([5, 3, 9, 0, 1, 7], np.int32)

    with_ids = float(jitted_contrastive(images, texts, jnp.float32(7.0), image_ids))
    without_ids = float(jitted_contrastive(images, texts, jnp.float32(7.0)))

    assert with_ids == pytest.approx(without_ids, rel=1e-6)


def test_contrastive_duplicate_pair_targets_spread():
    # Rows 0 and 1 share an image id and their captions are the same vector, so each of the two targets gets half
    # the probability. With a large scale those rows then cost log 2 each way and the other rows cost 0.
    basis = np.eye(4, dtype=np.float32)
    images = basis[[0, 0, 1, 2]]
    texts = basis[[0, 0, 1, 2]]
    image_ids = np.array([0, 0, 1, 2], np.int32)

    loss = float(jitted_contrastive(images, texts, jnp.float32(100.0), image_ids))

    assert loss == pytest.approx(0.5 * np.log(2.0), rel=1e-4)
    assert loss == pytest.approx(_reference_contrastive(images, texts, 100.0, image_ids), rel=1e-5)


def test_contrastive_symmetric():
    rng = np.random.default_rng(3)
    images, texts = _unit_rows(rng, 8, 16), _unit_rows(rng, 8, 16)
    image_ids = np.array([0, 1, 1, 2, 3, 3, 4, 5], np.int32)

    for ids in (None, image_ids):
        forward = float(jitted_contrastive(images, texts, jnp.float32(12.0), ids))
        swapped = float(jitted_contrastive(texts, images, jnp.float32(12.0), ids))
        assert forward == pytest.approx(swapped, rel=1e-6)


def test_contrastive_perfect_alignment():
    rng = np.random.default_rng(4)
    images = _unit_rows(rng, 8, 64)

    aligned = float(jitted_contrastive(images, images, jnp.float32(100.0)))
    shuffled = float(jitted_contrastive(images, images[::-1], jnp.float32(100.0)))

    assert abs(aligned) < 1e-3  # float32 rounding can leave it a few ulps below 0
    assert shuffled > 10.0


def test_contrastive_dtype_is_float32():
    rng = np.random.default_rng(5)
    images = jnp.asarray(_unit_rows(rng, 4, 8), jnp.bfloat16)
    texts = jnp.asarray(_unit_rows(rng, 4, 8), jnp.bfloat16)

    assert jitted_contrastive(images, texts, jnp.float32(5.0)).dtype == jnp.float32


# The 8-device run needs a fresh interpreter: XLA reads the forced host device count only before JAX starts,
# and this pytest process already runs JAX on 1 device.
SHARDED_SCRIPT = textwrap.dedent("""
    import json
    import os
    import sys

    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import jax.numpy as jnp
    import numpy as np

    from multimae_jax.losses.contrastive_loss import contrastive_loss
    from multimae_jax.training.sharding import batch_sharding, make_mesh

    arrays = np.load(sys.argv[1])
    images, texts, image_ids = arrays["images"], arrays["texts"], arrays["image_ids"]
    scale = jnp.float32(arrays["scale"])
    batch = len(images)
    loss_fn = jax.jit(contrastive_loss)

    single_device = jax.devices()[0]
    single = loss_fn(*(jax.device_put(x, single_device) for x in (images, texts)), scale,
                     jax.device_put(image_ids, single_device))

    results = {"device_count": jax.device_count(), "single": float(single), "sharded": {}}
    for fsdp_size in (1, 2):
        mesh = make_mesh(fsdp_size)
        sharding = batch_sharding(mesh)
        sharded_images, sharded_texts, sharded_ids = (jax.device_put(x, sharding) for x in (images, texts, image_ids))
        loss = loss_fn(sharded_images, sharded_texts, scale, sharded_ids)
        results["sharded"][str(fsdp_size)] = {
            "loss": float(loss),
            "mesh_shape": [int(size) for size in mesh.devices.shape],
            "shard_rows": sorted(shard.data.shape[0] for shard in sharded_images.addressable_shards),
            "shard_devices": len({shard.device for shard in sharded_images.addressable_shards}),
        }

    # Each device's loss over only its own rows, as a per-device (local negatives) loss would compute it.
    rows = batch // jax.device_count()
    local = [float(loss_fn(images[i:i + rows], texts[i:i + rows], scale, image_ids[i:i + rows]))
             for i in range(0, batch, rows)]
    results["mean_local"] = float(np.mean(local))
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def sharded_results(tmp_path_factory):
    """Run the contrastive loss on an 8-device CPU mesh in a subprocess and return its JSON results."""
    folder = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(6)
    image_ids = np.array([0, 1, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 9, 10, 11, 12], np.int32)
    arrays = dict(images=_unit_rows(rng, 16, 32), texts=_unit_rows(rng, 16, 32), image_ids=image_ids,
                  scale=np.float32(14.0))
    np.savez(folder / "batch.npz", **arrays)
    script = folder / "sharded_contrastive.py"
    script.write_text(SHARDED_SCRIPT)

    environment = dict(os.environ, PYTHONPATH=REPOSITORY_ROOT)
    completed = subprocess.run([sys.executable, str(script), str(folder / "batch.npz")], env=environment,
                               cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    results["reference"] = _reference_contrastive(arrays["images"], arrays["texts"], 14.0, image_ids)
    return results


def test_sharded_runs_on_eight_devices(sharded_results):
    assert sharded_results["device_count"] == 8
    for fsdp_size, expected_shape in (("1", [8, 1]), ("2", [4, 2])):
        run = sharded_results["sharded"][fsdp_size]
        assert run["mesh_shape"] == expected_shape
        assert run["shard_rows"] == [2] * 8
        assert run["shard_devices"] == 8


def test_sharded_equals_single_device(sharded_results):
    single = sharded_results["single"]

    assert single == pytest.approx(sharded_results["reference"], rel=1e-5)
    for fsdp_size, run in sharded_results["sharded"].items():
        assert run["loss"] == pytest.approx(single, rel=1e-5), f"fsdp_size {fsdp_size}"


def test_sharded_uses_global_negatives(sharded_results):
    # Over the global batch each random caption competes with about 14 negatives, but over one device's 2 rows
    # with at most 1, so a per-device loss comes out far lower (about 5.7 against 2.2 nats here).
    global_loss = sharded_results["sharded"]["1"]["loss"]

    assert global_loss - sharded_results["mean_local"] > 0.5


def _images_and_mask(seed, batch=3, size=16):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
    num_patches = (size // PATCH_SIZE) ** 2
    mask = np.asarray(random_patch_mask(jax.random.key(seed), batch, num_patches, 0.75).mask)
    predictions = rng.normal(size=(batch, num_patches, PATCH_SIZE * PATCH_SIZE * 3)).astype(np.float32)
    return images, mask, predictions


def _reference_patches(images):
    """Cut patches with explicit loops, each flattened as (row, column, channel)."""
    batch, height, width, _ = images.shape
    patches = []
    for b in range(batch):
        row_patches = []
        for top in range(0, height, PATCH_SIZE):
            for left in range(0, width, PATCH_SIZE):
                row_patches.append(images[b, top:top + PATCH_SIZE, left:left + PATCH_SIZE].reshape(-1))
        patches.append(row_patches)
    return np.asarray(patches, np.float64)


def _reference_mae(predictions, images, mask, norm_pix_loss):
    targets = _reference_patches(images)
    if norm_pix_loss:
        mean = targets.mean(axis=-1, keepdims=True)
        variance = targets.var(axis=-1, keepdims=True)
        targets = (targets - mean) / np.sqrt(variance + NORM_PIX_EPSILON)
    per_patch = ((predictions.astype(np.float64) - targets) ** 2).mean(axis=-1)
    return (per_patch * mask).sum() / mask.sum()


jitted_mae = jax.jit(mae_loss, static_argnums=(3, 4))


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_mae_matches_reference(norm_pix_loss):
    images, mask, predictions = _images_and_mask(7)

    loss = float(jitted_mae(predictions, images, mask, PATCH_SIZE, norm_pix_loss))

    assert loss == pytest.approx(_reference_mae(predictions, images, mask, norm_pix_loss), rel=1e-5)


def test_mae_ignores_visible_patches():
    images, mask, predictions = _images_and_mask(8)
    visible = mask == 0
    changed = predictions.copy()
    changed[visible] += 5.0

    original = float(jitted_mae(predictions, images, mask, PATCH_SIZE, True))
    after_visible_change = float(jitted_mae(changed, images, mask, PATCH_SIZE, True))
    changed[~visible] += 5.0
    after_masked_change = float(jitted_mae(changed, images, mask, PATCH_SIZE, True))

    assert after_visible_change == original
    assert after_masked_change > original + 1.0


def test_mae_empty_mask_is_zero():
    images, _, predictions = _images_and_mask(9)

    assert float(jitted_mae(predictions, images, np.zeros(predictions.shape[:2], np.float32), PATCH_SIZE,
                            True)) == 0.0


def test_norm_pix_targets():
    rng = np.random.default_rng(10)
    patches = (3.0 + 2.0 * rng.normal(size=(2, 5, 48))).astype(np.float32)

    normalized = np.asarray(jax.jit(normalized_patch_targets)(patches))
    mean = patches.astype(np.float64).mean(axis=-1, keepdims=True)
    std = np.sqrt(patches.astype(np.float64).var(axis=-1, keepdims=True) + NORM_PIX_EPSILON)

    np.testing.assert_allclose(normalized, (patches - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(normalized.mean(axis=-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized.var(axis=-1), 1.0, atol=1e-4)


def test_norm_pix_constant_patch_finite():
    patches = np.full((1, 2, 12), 0.7, np.float32)

    normalized = np.asarray(normalized_patch_targets(patches))

    assert np.all(np.isfinite(normalized))
    np.testing.assert_allclose(normalized, 0.0, atol=1e-6)


def _reference_mlm(logits, labels, weights):
    log_probs = _log_softmax(logits.reshape(-1, logits.shape[-1]).astype(np.float64))
    flat_labels, flat_weights = labels.reshape(-1), weights.reshape(-1)
    cross_entropy = -log_probs[np.arange(len(flat_labels)), flat_labels]
    correct = logits.reshape(-1, logits.shape[-1]).argmax(axis=-1) == flat_labels
    total = flat_weights.sum()
    return (cross_entropy * flat_weights).sum() / total, (correct * flat_weights).sum() / total


@pytest.fixture
def mlm_batch():
    """Logits [3, 5, 11] where slots 0 and 2 of every row predict their label, and weights with padding."""
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32)
    labels = rng.integers(0, 11, size=(3, 5)).astype(np.int32)
    for slot in (0, 2):
        logits[np.arange(3), slot, labels[:, slot]] += 10.0
    weights = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.float32)
    return logits, labels, weights


jitted_mlm = jax.jit(mlm_loss)


def test_mlm_matches_reference(mlm_batch):
    logits, labels, weights = mlm_batch
    expected_loss, expected_accuracy = _reference_mlm(logits, labels, weights)

    loss, accuracy = jitted_mlm(logits, labels, weights)

    assert float(loss) == pytest.approx(expected_loss, rel=1e-5)
    assert float(accuracy) == pytest.approx(expected_accuracy, rel=1e-6)
    assert 0.0 < float(accuracy) < 1.0


def test_mlm_ignores_zero_weight_slots(mlm_batch):
    logits, labels, weights = mlm_batch
    padding = weights == 0
    changed_logits, changed_labels = logits.copy(), labels.copy()
    changed_logits[padding] = 100.0 * np.random.default_rng(12).normal(size=(padding.sum(), 11))
    changed_labels[padding] = 0

    loss, accuracy = jitted_mlm(logits, labels, weights)
    changed_loss, changed_accuracy = jitted_mlm(changed_logits, changed_labels, weights)

    assert float(changed_loss) == pytest.approx(float(loss), rel=1e-6)
    assert float(changed_accuracy) == float(accuracy)


def test_mlm_all_padding_is_zero(mlm_batch):
    logits, labels, _ = mlm_batch

    loss, accuracy = jitted_mlm(logits, labels, np.zeros(labels.shape, np.float32))

    assert float(loss) == 0.0
    assert float(accuracy) == 0.0
