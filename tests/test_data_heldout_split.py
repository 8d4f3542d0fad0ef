"""Tests for the hash-based held-out split."""

import os
import subprocess
import sys

import numpy as np
import pytest

from multimae_jax.data.heldout_split import is_heldout, split_by_hash

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KEYS = [f"folder_{i % 7}/image_{i:05d}.jpg" for i in range(2000)]


def test_is_heldout_deterministic():
    first = [is_heldout(key, 0.3) for key in KEYS]
    second = [is_heldout(key, 0.3) for key in KEYS]

    assert first == second


def test_is_heldout_across_processes():
    # Python's hash() of a str changes with PYTHONHASHSEED, so a fresh process with another
    # seed must still put every key on the same side.
    script = (
        "import sys\n"
        "from multimae_jax.data.heldout_split import is_heldout\n"
        "keys = sys.stdin.read().split('\\n')\n"
        "print(''.join('1' if is_heldout(key, 0.3) else '0' for key in keys))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run(
        [sys.executable, "-c", script],
        input="\n".join(KEYS[:300]),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    expected = "".join("1" if is_heldout(key, 0.3) else "0" for key in KEYS[:300])

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.7])
def test_is_heldout_share(fraction):
    share = np.mean([is_heldout(key, fraction) for key in KEYS])

    # The binomial standard deviation at 2000 keys is at most about 0.011.
    assert abs(share - fraction) < 0.04


def test_is_heldout_monotonic():
    small = np.array([is_heldout(key, 0.1) for key in KEYS])
    large = np.array([is_heldout(key, 0.4) for key in KEYS])

    assert np.all(large[small])
    assert large.sum() > small.sum()


def test_is_heldout_edge_fractions():
    assert not any(is_heldout(key, 0.0) for key in KEYS)
    assert all(is_heldout(key, 0.9999999) for key in KEYS)


def test_is_heldout_unicode_keys():
    keys = [f"caf\u00e9_{i}/\u732b.png" for i in range(1000)]
    decisions = [is_heldout(key, 0.5) for key in keys]

    assert all(isinstance(decision, bool) for decision in decisions)
    assert 0.4 < np.mean(decisions) < 0.6


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan"), True, "0.1"])
def test_is_heldout_invalid_fraction(fraction):
    with pytest.raises(ValueError, match="held-out fraction must"):
        is_heldout("a.jpg", fraction)


def test_split_partition():
    train, heldout = split_by_hash(KEYS, 0.25, source="/data/images")

    assert train.dtype == np.int64
    assert heldout.dtype == np.int64
    assert np.all(np.diff(train) > 0)
    assert np.all(np.diff(heldout) > 0)
    assert np.array_equal(np.sort(np.concatenate([train, heldout])), np.arange(len(KEYS)))
    assert all(is_heldout(KEYS[i], 0.25) for i in heldout)
    assert not any(is_heldout(KEYS[i], 0.25) for i in train)


def test_split_stable_when_keys_added():
    before_train, before_heldout = split_by_hash(KEYS[:500], 0.2, source="folder")
    grown = KEYS[:250] + [f"new/extra_{i}.png" for i in range(300)] + KEYS[250:500]
    after_train, after_heldout = split_by_hash(grown, 0.2, source="folder")

    before = {KEYS[i] for i in before_heldout}
    after = {grown[i] for i in after_heldout}
    assert before == after & set(KEYS[:500])
    assert {KEYS[i] for i in before_train} == {grown[i] for i in after_train} & set(KEYS[:500])


def test_split_duplicates_same_side():
    keys = ["a dog runs", "a cat sleeps", "a dog runs", "two birds", "a cat sleeps"] * 40
    train, heldout = split_by_hash(keys, 0.5, source="lines.txt")

    train_keys = {keys[i] for i in train}
    heldout_keys = {keys[i] for i in heldout}
    assert not train_keys & heldout_keys
    assert train_keys | heldout_keys == set(keys)


def test_split_zero_fraction():
    with pytest.raises(ValueError, match="held-out fraction for /data/images is 0") as raised:
        split_by_hash(KEYS, 0.0, source="/data/images")

    assert "--config.data.heldout_fraction" in str(raised.value)


def test_split_empty_heldout():
    # A single key lands in the training set at a fraction below its hash value.
    key = next(key for key in KEYS if not is_heldout(key, 0.5))

    with pytest.raises(ValueError, match="/data/one has 1 example, and none falls in the held-out set") as raised:
        split_by_hash([key], 0.5, source="/data/one")

    message = str(raised.value)
    assert "--config.data.heldout_fraction to a larger value" in message
    assert "add more files or lines" in message


def test_split_empty_train():
    keys = [key for key in KEYS[:50] if is_heldout(key, 0.5)]

    with pytest.raises(ValueError, match=f"lines.txt has {len(keys)} examples, and all fall in the held-out set") as raised:
        split_by_hash(keys, 0.5, source="lines.txt")

    assert "--config.data.heldout_fraction to a smaller value" in str(raised.value)
