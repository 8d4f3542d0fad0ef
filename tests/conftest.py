"""Shared helpers for the test suite: the repository root, the real-data folder and tiny run settings."""

import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")

# Overrides that shrink configs/fusion.py:vit_tiny so that a run compiles and trains in seconds on a CPU.
TINY_RUN_OVERRIDES = (
    "--config.data.image_size=32",
    "--config.data.max_text_length=16",
    "--config.data.num_workers=0",
    "--config.data.builtin_train_images=40",
    "--config.data.builtin_val_images=6",
    "--config.data.builtin_test_images=7",
    "--config.data.vocab_size=200",
    "--config.model.patch_size=8",
    "--config.model.embed_dim=16",
    "--config.model.image.width=32",
    "--config.model.image.depth=1",
    "--config.model.image.num_heads=2",
    "--config.model.text.width=32",
    "--config.model.text.depth=1",
    "--config.model.text.num_heads=2",
    "--config.model.fusion.width=32",
    "--config.model.fusion.depth=1",
    "--config.model.fusion.num_heads=2",
    "--config.model.decoder.width=32",
    "--config.model.decoder.depth=1",
    "--config.model.decoder.num_heads=2",
    "--config.train.batch_size=8",
    "--config.train.warmup_steps=1",
    "--config.train.log_every_steps=2",
    "--config.eval.batch_size=8",
)


def coco_mini_root() -> str:
    """Return the coco_mini folder beside the checkout, or skip the calling test when it is absent."""
    root = os.path.join(SHARED_DATA, "coco_mini")
    if not os.path.isdir(os.path.join(root, "annotations")):
        pytest.skip(f"real data not found at {root}: these tests need ../shared/data beside the checkout")
    return root


def run_launch(workdir, *overrides: str, devices: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python launch.py --config configs/fusion.py:vit_tiny --workdir W ...` in a fresh process."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, os.path.join(REPO_ROOT, "launch.py"), "--config",
               os.path.join(REPO_ROOT, "configs", "fusion.py") + ":vit_tiny", "--workdir", str(workdir), *overrides]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
