"""Held-out split by hashing each example's key, stable when examples are added or removed.

Each key decides its own side from an MD5 digest of its UTF-8 bytes, so adding files to a folder
or lines to a file never moves an existing example between the training and held-out sets.
Python's built-in hash() is not used because it is salted per process for strings.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Sequence

import numpy as np

# Bits of the digest turned into the uniform number. 53 bits is the float64 mantissa, so the
# division by 2**53 is exact and the result is always strictly below 1.
_UNIFORM_BITS = 53


def is_heldout(key: str, fraction: float) -> bool:
    """Decide whether the example with this key belongs to the held-out set.

    The key's MD5 digest gives a number u that is uniform in [0, 1) over keys, and the key is
    held out when u < fraction. So a key held out at one fraction stays held out at every larger
    fraction, and about `fraction` of many distinct keys are held out.

    Args:
        key: Stable identifier of the example, e.g. a relative file path or a line of text.
        fraction: Expected share of held-out keys, in [0, 1).

    Raises:
        ValueError: `fraction` lies outside [0, 1).
    """
    _check_fraction(fraction)
    return _uniform_from_key(key) < fraction


def split_by_hash(keys: Sequence[str], fraction: float, *, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Split example keys into a training set and a held-out set with `is_heldout`.

    Args:
        keys: One key per example. Equal keys always land on the same side, so duplicate
            examples cannot leak from the training set into the held-out set.
        fraction: Expected share of held-out examples, in (0, 1). The value 0 is rejected
            because evaluation needs a held-out set.
        source: Where the keys come from (a folder or a file), named in error messages.

    Returns:
        (train indices, held-out indices) into `keys`, each int64 and ascending. Together they
        cover every index exactly once.

    Raises:
        ValueError: `fraction` lies outside [0, 1), is 0, or either set would be empty. The
            message names `source`, the counts and the fix.
    """
    _check_fraction(fraction)
    if fraction == 0.0:
        raise ValueError(
            f"The held-out fraction for {source} is 0, but evaluation needs a held-out set. "
            "Set --config.data.heldout_fraction to a value in (0, 1), e.g. 0.1."
        )

    heldout = np.fromiter((_uniform_from_key(key) < fraction for key in keys), dtype=bool, count=len(keys))
    train_indices = np.flatnonzero(~heldout).astype(np.int64)
    heldout_indices = np.flatnonzero(heldout).astype(np.int64)

    if heldout_indices.size == 0:
        raise ValueError(
            f"{source} has {_count_examples(len(keys))}, and none falls in the held-out set at "
            f"heldout_fraction={fraction}, so there is nothing to evaluate on. Set "
            "--config.data.heldout_fraction to a larger value or add more files or lines."
        )
    if train_indices.size == 0:
        raise ValueError(
            f"{source} has {_count_examples(len(keys))}, and all fall in the held-out set at "
            f"heldout_fraction={fraction}, so there is nothing to train on. Set "
            "--config.data.heldout_fraction to a smaller value or add more files or lines."
        )

    return train_indices, heldout_indices


def _uniform_from_key(key: str) -> float:
    """Map a key to a number in [0, 1) through the leading bits of its MD5 digest."""
    # MD5 serves only as a fixed, well-mixed function here, not for security.
    digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    leading = int.from_bytes(digest[:8], "big") >> (64 - _UNIFORM_BITS)
    return leading / 2**_UNIFORM_BITS


def _count_examples(count: int) -> str:
    """Format a count with the noun "example" in the right number, e.g. "1 example" or "3 examples"."""
    return f"{count} example" if count == 1 else f"{count} examples"


def _check_fraction(fraction: float) -> None:
    """Raise ValueError unless fraction is a number in [0, 1)."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or math.isnan(fraction):
        raise ValueError(f"The held-out fraction must be a number in [0, 1), got {fraction!r}.")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"The held-out fraction must lie in [0, 1), got {fraction}. "
            "Set --config.data.heldout_fraction to a value such as 0.1."
        )
