"""Tests for bench/mlm_accuracy.py: a tiny budget on Flickr8k prints both figures with ours, the baseline and a ratio.

What the encoder learns in the real budget belongs to the benchmark output, so nothing here asserts it.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, SHARED_DATA

BENCH_SCRIPT = os.path.join(REPO_ROOT, "bench", "mlm_accuracy.py")
FLICKR8K = os.path.join(SHARED_DATA, "flickr8k")
TINY_FLAGS = ("--steps", "3", "--depth", "1", "--batch-size", "8", "--max-text-length", "16", "--vocab-size", "300",
              "--extra=--config.model.text.width=32", "--extra=--config.model.text.num_heads=2",
              "--extra=--config.data.num_workers=0", "--extra=--config.eval.batch_size=256")
ROW = re.compile(r"^(masked-token accuracy|perplexity)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)x$")


def run_bench(*flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, BENCH_SCRIPT, *flags], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_tiny_budget_prints_ours_baseline_and_ratio(tmp_path):
    if not os.path.isdir(os.path.join(FLICKR8K, "annotations")):
        pytest.skip(f"real data not found at {FLICKR8K}: the benchmark needs ../shared/data beside the checkout")
    result = run_bench(*TINY_FLAGS, "--workdir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]

    rows = {match.group(1): match for match in map(ROW.match, result.stdout.splitlines()) if match}
    assert set(rows) == {"masked-token accuracy", "perplexity"}
    accuracy = rows["masked-token accuracy"]
    assert float(accuracy.group(4)) == pytest.approx(float(accuracy.group(2)) / float(accuracy.group(3)), abs=0.01)
    perplexity = rows["perplexity"]
    assert float(perplexity.group(4)) == pytest.approx(float(perplexity.group(3)) / float(perplexity.group(2)),
                                                       abs=0.01)
    assert "held-out val split: 5000 captions" in result.stdout
    assert (tmp_path / "run" / "eval_val.json").is_file()


def test_missing_annotations_are_named(tmp_path):
    result = run_bench("--data-root", str(tmp_path))
    assert result.returncode == 2
    assert f"annotation file {tmp_path}/annotations/flickr8k_train.json not found" in result.stderr
