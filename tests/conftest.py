"""Shared helpers for the test suite: the repository root, the real-data folder and tiny run settings."""

import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")

# Overrides that shrink a vit_tiny config so that a run compiles and trains in seconds on a CPU, by section.
_COMMON_OVERRIDES = (
    "--config.data.num_workers=0",
    "--config.data.builtin_train_images=40",
    "--config.data.builtin_val_images=6",
    "--config.data.builtin_test_images=7",
    "--config.train.batch_size=8",
    "--config.train.warmup_steps=1",
    "--config.train.log_every_steps=2",
    "--config.eval.batch_size=8",
)
_IMAGE_OVERRIDES = ("--config.data.image_size=32", "--config.model.patch_size=8")
_TEXT_OVERRIDES = ("--config.data.max_text_length=16", "--config.data.vocab_size=200")


def _stack_overrides(*sections: str) -> tuple[str, ...]:
    return tuple(f"--config.model.{section}.{field}={value}" for section in sections
                 for field, value in (("width", 32), ("depth", 1), ("num_heads", 2)))


TINY_OVERRIDES = {
    "mae": _COMMON_OVERRIDES + _IMAGE_OVERRIDES + _stack_overrides("image", "decoder"),
    "mlm": _COMMON_OVERRIDES + _TEXT_OVERRIDES + _stack_overrides("text"),
    "mmae": (_COMMON_OVERRIDES + _IMAGE_OVERRIDES + _TEXT_OVERRIDES + ("--config.model.embed_dim=16",)
             + _stack_overrides("image", "text", "decoder")),
    "fusion": (_COMMON_OVERRIDES + _IMAGE_OVERRIDES + _TEXT_OVERRIDES + ("--config.model.embed_dim=16",)
               + _stack_overrides("image", "text", "fusion", "decoder")),
}
# The fusion task's overrides, used by most end-to-end tests.
TINY_RUN_OVERRIDES = TINY_OVERRIDES["fusion"]


def coco_mini_root() -> str:
    """Return the coco_mini folder beside the checkout, or skip the calling test when it is absent."""
    root = os.path.join(SHARED_DATA, "coco_mini")
    if not os.path.isdir(os.path.join(root, "annotations")):
        pytest.skip(f"real data not found at {root}: these tests need ../shared/data beside the checkout")
    return root


def run_launch(workdir, *overrides: str, devices: int = 1, timeout: int = 600,
               task: str = "fusion") -> subprocess.CompletedProcess:
    """Run `python launch.py --config configs/<task>.py:vit_tiny --workdir W ...` in a fresh process."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, os.path.join(REPO_ROOT, "launch.py"), "--config",
               os.path.join(REPO_ROOT, "configs", f"{task}.py") + ":vit_tiny", "--workdir", str(workdir), *overrides]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
