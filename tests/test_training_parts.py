"""Tests for the optimizer parts, duration conversion, mesh and sharding helpers, and the contrastive head."""

import json
import math
import os
import subprocess
import sys
import textwrap

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from configs.fusion import get_config
from multimae_jax.models.contrastive_head import ContrastiveProjection, LogitScale
from multimae_jax.tasks.model_builder import build_model
from multimae_jax.tasks.registry import get_task
from multimae_jax.models.patch_masking import full_patch_mask
from multimae_jax.training.durations import resolve_steps
from multimae_jax.training.optimizer import (
    count_parameters,
    learning_rate_schedule,
    make_optimizer,
    weight_decay_mask,
)
from multimae_jax.training.sharding import (
    batch_sharding,
    local_batch_size,
    make_mesh,
    parameter_shardings,
    replicated_sharding,
)

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PEAK_LR, MIN_LR, WARMUP_STEPS, TOTAL_STEPS = 1e-3, 1e-5, 10, 100


@pytest.fixture(scope="module")
def schedule_values():
    schedule = learning_rate_schedule(PEAK_LR, MIN_LR, WARMUP_STEPS, TOTAL_STEPS)
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(TOTAL_STEPS + 20)), np.float64)


def test_schedule_starts_at_zero(schedule_values):
    assert schedule_values[0] == 0.0


def test_schedule_linear_warmup(schedule_values):
    assert schedule_values[5] == pytest.approx(PEAK_LR / 2, rel=1e-5)
    assert np.all(np.diff(schedule_values[:WARMUP_STEPS + 1]) > 0)


def test_schedule_peak_at_warmup_end(schedule_values):
    assert schedule_values[WARMUP_STEPS] == pytest.approx(PEAK_LR, rel=1e-6)
    assert schedule_values.max() == pytest.approx(PEAK_LR, rel=1e-6)


def test_schedule_min_at_end(schedule_values):
    assert schedule_values[TOTAL_STEPS] == pytest.approx(MIN_LR, rel=1e-4)
    np.testing.assert_allclose(schedule_values[TOTAL_STEPS:], MIN_LR, rtol=1e-4)


def test_schedule_cosine_decay(schedule_values):
    decay = schedule_values[WARMUP_STEPS:TOTAL_STEPS + 1]
    progress = np.arange(len(decay)) / (TOTAL_STEPS - WARMUP_STEPS)
    expected = MIN_LR + (PEAK_LR - MIN_LR) * 0.5 * (1.0 + np.cos(np.pi * progress))

    assert np.all(np.diff(decay) < 0)
    np.testing.assert_allclose(decay, expected, rtol=1e-4)
    assert schedule_values[55] == pytest.approx((PEAK_LR + MIN_LR) / 2, rel=1e-4)


def test_schedule_without_warmup_starts_at_peak():
    schedule = learning_rate_schedule(PEAK_LR, MIN_LR, 0, 20)

    assert float(schedule(0)) == pytest.approx(PEAK_LR, rel=1e-6)
    assert float(schedule(20)) == pytest.approx(MIN_LR, rel=1e-4)


def _tiny_fusion_config():
    """Return the vit_tiny fusion config with every transformer one block deep."""
    config = get_config("vit_tiny")
    for section in ("image", "text", "fusion", "decoder"):
        config.model[section].depth = 1
    return config


@pytest.fixture(scope="module")
def decay_mask():
    """Return {"/"-joined parameter path: decays} for a real fusion MAE parameter tree (shapes only)."""
    config = _tiny_fusion_config()
    model = build_model(get_task("fusion"), config, vocab_size=50)
    text_ids = jnp.zeros((1, 8), jnp.int32)

    def init(key):
        return model.init(key, jnp.zeros((1, 32, 32, 3)), text_ids, jnp.ones((1, 8), jnp.int32),
                          full_patch_mask(1, 4), text_ids, jnp.zeros((1, 2), jnp.int32))["params"]

    params = jax.eval_shape(init, jax.random.key(0))
    return flax.traverse_util.flatten_dict(weight_decay_mask(params), sep="/")


@pytest.mark.parametrize("path", [
    "image_encoder/patch_embedding/kernel",
    "image_encoder/transformer/block0/attention/query/kernel",
    "image_encoder/transformer/block0/mlp/fc1/kernel",
    "text_encoder/transformer/block0/attention/out/kernel",
    "fusion_encoder/image_projection/kernel",
    "decoder/embedding/kernel",
    "decoder/prediction/kernel",
    "mlm_head/output/kernel",
    "image_projection/projection/kernel",
    "text_projection/projection/kernel",
])
def test_kernels_decay(decay_mask, path):
    assert decay_mask[path] is True


@pytest.mark.parametrize("path", [
    "image_encoder/patch_embedding/bias",
    "decoder/embedding/bias",
    "image_encoder/transformer/block0/norm1/scale",
    "text_encoder/embedding_norm/scale",
    "mlm_head/transform_norm/scale",
    "text_encoder/token_embedding/embedding",
    "text_encoder/position_embedding",
    "fusion_encoder/modality_embedding",
    "image_encoder/cls_token",
    "decoder/mask_token",
    "logit_scale/log_scale",
])
def test_no_decay_parameters(decay_mask, path):
    assert decay_mask[path] is False


def test_only_kernels_decay(decay_mask):
    # Every weight matrix of this model is named "kernel", so the mask must equal that rule over all leaves.
    wrong = {path: decays for path, decays in decay_mask.items() if decays != path.endswith("/kernel")}

    assert len(decay_mask) > 50
    assert wrong == {}


def test_optimizer_decays_masked_leaves():
    params = {"dense": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0)},
              "norm": {"scale": jnp.full((3,), 2.0)}, "cls_token": jnp.full((1, 3), 2.0),
              "log_scale": jnp.asarray(2.0)}
    train_config = get_config("vit_tiny").train
    optimizer = make_optimizer(train_config, optax.constant_schedule(0.1))
    zero_grads = jax.tree_util.tree_map(jnp.zeros_like, params)

    updates, _ = jax.jit(optimizer.update)(zero_grads, optimizer.init(params), params)
    new_params = optax.apply_updates(params, updates)

    # With zero gradients AdamW's moment term is 0, so only decoupled decay moves a leaf: p * (1 - lr * wd).
    decayed = 2.0 * (1.0 - 0.1 * train_config.weight_decay)
    np.testing.assert_allclose(new_params["dense"]["kernel"], decayed, rtol=1e-6)
    assert np.array_equal(new_params["dense"]["bias"], params["dense"]["bias"])
    assert np.array_equal(new_params["norm"]["scale"], params["norm"]["scale"])
    assert np.array_equal(new_params["cls_token"], params["cls_token"])
    assert float(new_params["log_scale"]) == 2.0


def test_optimizer_clips_gradient_norm():
    params = {"dense": {"kernel": jnp.zeros((4,))}}
    train_config = get_config("vit_tiny").train
    optimizer = make_optimizer(train_config, optax.constant_schedule(1.0))
    gradients = {"dense": {"kernel": jnp.full((4,), 10.0)}}  # Global norm 20.

    _, opt_state = optimizer.update(gradients, optimizer.init(params), params)

    # Adam's first moment after one step is (1 - b1) times the gradient it received, here the clipped one.
    first_moment = optax.tree.get(opt_state, "mu")
    clipped_norm = float(optax.tree.norm(first_moment)) / (1.0 - 0.9)
    assert clipped_norm == pytest.approx(train_config.grad_clip_norm, rel=1e-5)


@pytest.mark.parametrize("grad_clip_norm", [0.0, -1.0])
def test_optimizer_invalid_clip_norm(grad_clip_norm):
    train_config = get_config("vit_tiny").train
    train_config.grad_clip_norm = grad_clip_norm

    with pytest.raises(ValueError, match=f"train.grad_clip_norm must be positive, got {grad_clip_norm}"):
        make_optimizer(train_config, optax.constant_schedule(1e-3))


def test_count_parameters():
    params = {"a": {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros((4,))}, "scale": jnp.zeros(())}

    assert count_parameters(params) == 17


def _duration_section(steps, epochs):
    return ml_collections.ConfigDict({"num_steps": steps, "num_epochs": epochs})


@pytest.mark.parametrize("steps, epochs, steps_per_epoch, expected", [
    (100, None, 7.5, 100),
    (0, None, 7.5, 0),
    (100, 2.0, 7.5, 15),
    (100, 1.1, 7.5, 9),  # 8.25 steps, rounded up
    (None, 3.0, 7.5, 23),  # 22.5 steps, rounded up
    (None, 0.0, 7.5, 0),
    (None, 0.07, 100.0, 7),  # 0.07 * 100 is 7.000000000000001 in floating point
    (None, 0.7, 10.0, 7),
])
def test_resolve_steps(steps, epochs, steps_per_epoch, expected):
    assert resolve_steps(_duration_section(steps, epochs), "num", steps_per_epoch) == expected


def test_resolve_steps_other_stem():
    section = ml_collections.ConfigDict({"every_steps": 50, "every_epochs": 0.5})

    assert resolve_steps(section, "every", 10.0) == 5


def test_resolve_steps_missing_both():
    with pytest.raises(ValueError, match="set either num_steps or num_epochs"):
        resolve_steps(_duration_section(None, None), "num", 10.0)


def test_resolve_steps_negative_steps():
    with pytest.raises(ValueError, match="num_steps must be >= 0, got -5"):
        resolve_steps(_duration_section(-5, None), "num", 10.0)


def test_resolve_steps_negative_epochs():
    with pytest.raises(ValueError, match="num_epochs must be >= 0, got -0.5"):
        resolve_steps(_duration_section(10, -0.5), "num", 10.0)


def test_resolve_steps_on_fusion_config():
    config = get_config("vit_tiny")
    config.train.num_epochs = 2.0

    assert resolve_steps(config.train, "num", 31.25) == 63
    assert resolve_steps(config.train, "warmup", 31.25) == config.train.warmup_steps


def test_mesh_single_device():
    mesh = make_mesh()

    assert mesh.axis_names == ("data", "fsdp")
    assert mesh.devices.shape == (1, 1)
    assert mesh.devices.size == jax.device_count()


def test_mesh_explicit_devices():
    mesh = make_mesh(1, devices=jax.devices()[:1])

    assert mesh.devices.reshape(-1).tolist() == jax.devices()[:1]


@pytest.mark.parametrize("fsdp_size", [0, -1, 2])
def test_mesh_invalid_fsdp_size(fsdp_size):
    with pytest.raises(ValueError, match=f"fsdp_size {fsdp_size} must be >= 1 and divide the 1 devices"):
        make_mesh(fsdp_size)


def test_batch_and_replicated_specs():
    mesh = make_mesh()

    assert batch_sharding(mesh).spec == PartitionSpec(("data", "fsdp"))
    assert replicated_sharding(mesh).spec == PartitionSpec()


SHARDING_RULES = (
    (r"mlp/fc1/kernel$", PartitionSpec(None, "fsdp")),
    (r"kernel$", PartitionSpec("fsdp")),
)


def _small_params():
    return {"block": {"mlp": {"fc1": {"kernel": jnp.zeros((4, 6)), "bias": jnp.zeros((6,))}},
                      "attention": {"kernel": jnp.zeros((4, 4))}},
            "norm": {"scale": jnp.zeros((4,))}}


def test_parameter_shardings_rules():
    mesh = make_mesh()

    shardings = parameter_shardings(_small_params(), mesh, SHARDING_RULES)

    assert shardings["block"]["mlp"]["fc1"]["kernel"].spec == PartitionSpec(None, "fsdp")
    assert shardings["block"]["attention"]["kernel"].spec == PartitionSpec("fsdp")
    assert shardings["block"]["mlp"]["fc1"]["bias"].spec == PartitionSpec()
    assert shardings["norm"]["scale"].spec == PartitionSpec()
    assert shardings["norm"]["scale"].mesh == mesh


def test_parameter_shardings_default_replicated():
    params = jax.eval_shape(_small_params)

    shardings = parameter_shardings(params, make_mesh())

    specs = [sharding.spec for sharding in jax.tree_util.tree_leaves(shardings)]
    assert len(specs) == 4
    assert all(spec == PartitionSpec() for spec in specs)


def test_parameter_shardings_rule_too_long():
    rules = ((r"bias$", PartitionSpec(None, "fsdp")),)

    with pytest.raises(ValueError, match=r"more axes than parameter block/mlp/fc1/bias of shape \(6,\)"):
        parameter_shardings(_small_params(), make_mesh(), rules)


def test_local_batch_size_single_device():
    assert local_batch_size(12, make_mesh()) == 12


# A mesh of several devices needs a fresh interpreter: XLA reads the forced host device count only before JAX
# starts, and this pytest process already runs JAX on 1 device.
MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import json
    import os

    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec

    from multimae_jax.training.sharding import local_batch_size, make_mesh, parameter_shardings

    def error_of(function, *args):
        try:
            function(*args)
        except ValueError as error:
            return str(error)
        return None

    def shard_shapes(array):
        return sorted({tuple(shard.data.shape) for shard in array.addressable_shards})

    mesh = make_mesh(fsdp_size=2)
    params = {"fc1": {"kernel": jnp.zeros((4, 6)), "bias": jnp.zeros((6,))}}
    shardings = parameter_shardings(params, mesh, ((r"fc1/kernel$", PartitionSpec(None, "fsdp")),))
    placed = jax.device_put(params, shardings)
    results = {
        "mesh_shape": [int(size) for size in mesh.devices.shape],
        "kernel_shard_shapes": shard_shapes(placed["fc1"]["kernel"]),
        "bias_shard_shapes": shard_shapes(placed["fc1"]["bias"]),
        "local_batch_16": local_batch_size(16, mesh),
        "local_batch_12_error": error_of(local_batch_size, 12, mesh),
        "fsdp_3_error": error_of(make_mesh, 3),
    }
    print(json.dumps(results))
""")


@pytest.fixture(scope="module")
def multi_device_results(tmp_path_factory):
    """Run the mesh and sharding helpers on 8 CPU devices in a subprocess and return its JSON results."""
    script = tmp_path_factory.mktemp("multi_device") / "multi_device_mesh.py"
    script.write_text(MULTI_DEVICE_SCRIPT)
    environment = dict(os.environ, PYTHONPATH=REPOSITORY_ROOT)

    completed = subprocess.run([sys.executable, str(script)], env=environment, cwd=REPOSITORY_ROOT,
                               capture_output=True, text=True, timeout=300)

    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_mesh_with_fsdp_groups(multi_device_results):
    assert multi_device_results["mesh_shape"] == [4, 2]


def test_rule_shards_kernel_over_fsdp(multi_device_results):
    assert multi_device_results["kernel_shard_shapes"] == [[4, 3]]
    assert multi_device_results["bias_shard_shapes"] == [[6]]


def test_local_batch_size_divisible(multi_device_results):
    assert multi_device_results["local_batch_16"] == 16


def test_local_batch_size_not_divisible(multi_device_results):
    message = multi_device_results["local_batch_12_error"]

    assert message is not None
    assert "train.batch_size 12 must be divisible by the number of devices (8)" in message
    assert "pick a multiple of 8" in message


def test_mesh_fsdp_not_dividing_devices(multi_device_results):
    assert multi_device_results["fsdp_3_error"] == "fsdp_size 3 must be >= 1 and divide the 8 devices"


def test_logit_scale_initial_value():
    logit_scale = LogitScale()

    variables = logit_scale.init(jax.random.key(0))

    assert float(variables["params"]["log_scale"]) == pytest.approx(math.log(1.0 / 0.07), rel=1e-6)
    assert float(logit_scale.apply(variables)) == pytest.approx(1.0 / 0.07, rel=1e-5)


def test_logit_scale_capped_at_100():
    logit_scale = LogitScale()

    capped = logit_scale.apply({"params": {"log_scale": jnp.log(1000.0)}})
    below_cap = logit_scale.apply({"params": {"log_scale": jnp.log(50.0)}})

    assert float(capped) == 100.0
    assert float(below_cap) == pytest.approx(50.0, rel=1e-5)


def test_logit_scale_gradient_stops_at_cap():
    logit_scale = LogitScale()

    def scale_of(log_scale):
        return logit_scale.apply({"params": {"log_scale": log_scale}})

    assert float(jax.grad(scale_of)(jnp.log(1000.0))) == 0.0
    assert float(jax.grad(scale_of)(jnp.log(50.0))) == pytest.approx(50.0, rel=1e-5)


def test_projection_unit_norm():
    projection = ContrastiveProjection(embed_dim=6)
    pooled = jax.random.normal(jax.random.key(1), (3, 10))
    variables = projection.init(jax.random.key(2), pooled)

    embeddings = jax.jit(projection.apply)(variables, pooled)
    zero_embeddings = projection.apply(variables, jnp.zeros((2, 10)))

    assert embeddings.shape == (3, 6)
    assert embeddings.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(zero_embeddings))
