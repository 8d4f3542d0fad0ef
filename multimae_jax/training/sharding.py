"""Device mesh, parameter sharding rules and the layout of batches on the mesh."""

import re
from typing import Sequence

import flax
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)

# Pairs of (regex over "/"-joined parameter paths, PartitionSpec). The first match wins, and unmatched
# parameters are replicated. Training is data parallel for now, so the list is empty. A rule such as
# (r"mlp/fc1/kernel$", PartitionSpec(None, "fsdp")) would shard that kernel's output dimension over `fsdp`.
DEFAULT_PARAMETER_RULES: tuple[tuple[str, PartitionSpec], ...] = ()


def make_mesh(fsdp_size: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Arrange all devices of all processes into a (data, fsdp) mesh.

    Args:
      fsdp_size: devices per `fsdp` group; must divide the device count. 1 gives pure data parallelism.
      devices: defaults to jax.devices(), every device of every process.
    """
    devices = list(jax.devices() if devices is None else devices)
    if fsdp_size < 1 or len(devices) % fsdp_size:
        raise ValueError(f"fsdp_size {fsdp_size} must be >= 1 and divide the {len(devices)} devices")
    grid = np.asarray(devices).reshape(len(devices) // fsdp_size, fsdp_size)
    return Mesh(grid, BATCH_AXES)


def parameter_shardings(params, mesh: Mesh, rules=DEFAULT_PARAMETER_RULES):
    """Return a tree of NamedShardings for `params` (arrays or ShapeDtypeStructs) from the regex rules."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
    shardings = {}
    for path, leaf in flat.items():
        spec = PartitionSpec()
        for pattern, rule_spec in rules:
            if re.search(pattern, path):
                if len(rule_spec) > len(leaf.shape):
                    raise ValueError(f"sharding rule {pattern!r} -> {rule_spec} has more axes than parameter {path} "
                                     f"of shape {leaf.shape}")
                spec = rule_spec
                break
        shardings[path] = NamedSharding(mesh, spec)
    return flax.traverse_util.unflatten_dict(shardings, sep="/")


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Shard the leading (batch) dimension over every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch_from_local(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble each process's local batch into global arrays laid out over the mesh.

    Each process passes its own [local_batch, ...] arrays; the result has leading dimension
    local_batch * process_count, sharded over all devices.
    """
    sharding = batch_sharding(mesh)
    return {name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
            for name, value in local_batch.items()}


def local_batch_size(global_batch_size: int, mesh: Mesh, field: str = "train.batch_size") -> int:
    """Return this process's share of the global batch, checking that it divides evenly over devices.

    Args:
      field: the config field the batch size comes from, named in the error.
    """
    num_devices = mesh.devices.size
    if global_batch_size % num_devices:
        raise ValueError(f"{field} {global_batch_size} must be divisible by the number of devices "
                         f"({num_devices}); pick a multiple of {num_devices}")
    return global_batch_size // jax.process_count()
