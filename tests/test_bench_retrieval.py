"""Tests for bench/retrieval.py: a tiny run prints every figure and memory row in a parseable form.

Speed targets belong to the benchmark output, so nothing here asserts a time.
"""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

BENCH_SCRIPT = os.path.join(REPO_ROOT, "bench", "retrieval.py")
PEER_SCRIPT = os.path.join(os.path.dirname(REPO_ROOT), "shared", "peers", "retrieval_numpy.py")

TINY_SPEED_FLAGS = ("--images", "50", "--extra-captions", "2", "--dim", "16", "--tile-size", "16", "--repeats", "1")

FIGURE = re.compile(r"^(?P<name>\S+)\s+(?P<value>\d+(\.\d+)?) (?P<unit>s|x)\b(?P<rest>.*)$")
TARGET = re.compile(r"target (<=|>=) [0-9.]+ (s|x)\s+(PASS|MISS)")
MEMORY_ROW = re.compile(r"^\s*(\d+)\s+(\d+)" + r"\s+(\d+\.\d+)" * 7 + r"\s*$")


def run_bench(*flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("PEERS_PYTHON", None)
    return subprocess.run([sys.executable, BENCH_SCRIPT, *flags], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def require_peer_script() -> None:
    if not os.path.isfile(PEER_SCRIPT):
        pytest.skip(f"peer script not found at {PEER_SCRIPT}: the benchmark needs ../shared/peers beside the checkout")


@pytest.fixture(scope="module")
def tiny_run() -> subprocess.CompletedProcess:
    require_peer_script()
    return run_bench(*TINY_SPEED_FLAGS, "--memory-sizes", "20,40")


def parse_figures(stdout: str) -> dict[str, re.Match]:
    figures = {}
    for line in stdout.splitlines():
        match = FIGURE.match(line)
        if match:
            figures[match["name"]] = match
    return figures


def test_tiny_run_exits_zero(tiny_run):
    assert tiny_run.returncode == 0, tiny_run.stderr


def test_tiny_run_machine_lines(tiny_run):
    lines = tiny_run.stdout.splitlines()
    for key in ("cpu", "cores", "load", "jax", "backend"):
        assert any(line.startswith(key + " ") for line in lines), key
    assert any(line.startswith("backend ") and "cpu" in line for line in lines)


def test_tiny_run_figures(tiny_run):
    figures = parse_figures(tiny_run.stdout)
    expected_units = {"ours": "s", "compile": "s", "matmul": "s", "ours/matmul": "x", "peer": "s", "peer/ours": "x"}
    for name, unit in expected_units.items():
        assert name in figures, name
        assert figures[name]["unit"] == unit, name
        assert float(figures[name]["value"]) >= 0.0, name


def test_tiny_run_targets(tiny_run):
    figures = parse_figures(tiny_run.stdout)
    for name in ("ours", "ours/matmul", "peer/ours"):
        assert TARGET.search(figures[name]["rest"]), name
    for name in ("compile", "matmul", "peer"):
        assert "target" not in figures[name]["rest"], name
    assert re.search(r"^targets met: [0-3] of 3$", tiny_run.stdout, re.MULTILINE)


def test_tiny_run_ratios(tiny_run):
    values = {name: float(match["value"]) for name, match in parse_figures(tiny_run.stdout).items()}
    assert values["ours"] > 0.0
    assert values["matmul"] > 0.0
    assert values["peer"] > 0.0
    assert values["compile"] > 0.0
    # Each value prints with 4 significant digits, so a ratio of printed values is off by at most about 1e-3.
    assert values["peer/ours"] == pytest.approx(values["peer"] / values["ours"], rel=2e-3)
    assert values["ours/matmul"] == pytest.approx(values["ours"] / values["matmul"], rel=2e-3)


def test_tiny_run_shapes(tiny_run):
    assert "50 images x 252 captions x 16 dims" in tiny_run.stdout
    assert "50 images x 250 captions" in tiny_run.stdout


def test_tiny_run_memory_rows(tiny_run):
    rows = [MEMORY_ROW.match(line) for line in tiny_run.stdout.splitlines()]
    rows = [row for row in rows if row]
    assert [int(row[1]) for row in rows] == [20, 40]
    assert [int(row[2]) for row in rows] == [100, 200]
    for row in rows:
        baseline, peak, added = float(row[4]), float(row[5]), float(row[6])
        assert baseline > 0.0
        assert peak >= baseline
        assert added == pytest.approx(peak - baseline, abs=0.2)
    assert re.search(r"^memory growth from 20 to 40 images: ", tiny_run.stdout, re.MULTILINE)


def test_missing_peer_python_fails():
    require_peer_script()
    missing = os.path.join(REPO_ROOT, "no-such-python")
    completed = run_bench(*TINY_SPEED_FLAGS, "--memory-sizes", "", "--peer-python", missing)
    assert completed.returncode != 0
    assert missing in completed.stderr
    assert "--peer-python" in completed.stderr


def test_invalid_memory_sizes_fail():
    completed = run_bench("--memory-sizes", "2000,abc")
    assert completed.returncode != 0
    assert "abc" in completed.stderr
