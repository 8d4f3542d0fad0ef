"""Tests for multimae_jax.evaluation.retrieval.retrieval_metrics.

Expected values come from hand computation (worked out in comments) or from a plain
NumPy reference below that loops over every (image, caption) pair.
"""

import math
import statistics

import jax.numpy as jnp
import numpy as np
import pytest

from multimae_jax.evaluation.retrieval import retrieval_metrics

METRIC_NAMES = ("mean_rank", "median_rank", "mAP")


def reference_metrics(images, texts, text_to_image, ks=(1, 5, 10)):
    """Compute the metrics with loops over pairs, as the definitions state them.

    Scores are exact sums (math.fsum over float64 products of the float32 inputs), so
    equal embeddings always tie, whatever their position.
    """
    images = np.asarray(images, dtype=np.float32).astype(np.float64)
    texts = np.asarray(texts, dtype=np.float32).astype(np.float64)
    text_to_image = [int(i) for i in text_to_image]
    num_images, num_captions = len(images), len(texts)
    scores = [[math.fsum(images[i] * texts[c]) for c in range(num_captions)] for i in range(num_images)]

    t2i_ranks = []
    for c in range(num_captions):
        relevant = scores[text_to_image[c]][c]
        t2i_ranks.append(sum(1 for i in range(num_images) if scores[i][c] >= relevant))
    t2i_precisions = [1.0 / rank for rank in t2i_ranks]

    i2t_ranks, i2t_precisions = [], []
    for i in range(num_images):
        captions = [c for c in range(num_captions) if text_to_image[c] == i]
        ranks = sorted(sum(1 for other in range(num_captions) if scores[i][other] >= scores[i][c]) for c in captions)
        i2t_ranks.append(ranks[0])
        i2t_precisions.append(sum((j + 1) / rank for j, rank in enumerate(ranks)) / len(ranks))

    expected = {}
    for direction, ranks, precisions in (("i2t", i2t_ranks, i2t_precisions), ("t2i", t2i_ranks, t2i_precisions)):
        for k in ks:
            expected[f"{direction}/R@{k}"] = 100.0 * sum(1 for rank in ranks if rank <= k) / len(ranks)
        expected[f"{direction}/mean_rank"] = sum(ranks) / len(ranks)
        expected[f"{direction}/median_rank"] = float(statistics.median(ranks))
        expected[f"{direction}/mAP"] = 100.0 * sum(precisions) / len(precisions)
    expected["rsum"] = sum(expected[f"{d}/R@{k}"] for d in ("i2t", "t2i") for k in ks)
    return expected


def assert_metrics_equal(actual, expected):
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def expected_keys(ks):
    keys = []
    for direction in ("i2t", "t2i"):
        keys += [f"{direction}/R@{k}" for k in ks]
        keys += [f"{direction}/{name}" for name in METRIC_NAMES]
    return keys + ["rsum"]


# ---------------------------------------------------------------- hand-computed cases


def test_directions_differ():
    # Images I0 = (1, 0), I1 = (0, 1). Captions c0 -> I0, c1 -> I1, c2 -> I1.
    # s(I0, c) = [1, 3, 0] and s(I1, c) = [0, 2, 1].
    # t2i: c0 scores images [1, 0] -> rank 1; c1 [3, 2], its image scores 2 -> rank 2;
    #      c2 [0, 1] -> rank 1. Ranks [1, 2, 1], AP [1, 1/2, 1].
    # i2t: I0 scores [1, 3, 0]; its caption c0 (1) is beaten by c1 -> rank 2, AP 1/2.
    #      I1 scores [0, 2, 1]; c1 -> rank 1, c2 -> rank 2, AP (1/1 + 2/2) / 2 = 1.
    #      Ranks [2, 1].
    images = np.array([[1, 0], [0, 1]], dtype=np.float32)
    texts = np.array([[1, 0], [3, 2], [0, 1]], dtype=np.float32)
    metrics = retrieval_metrics(images, texts, np.array([0, 1, 1]), ks=(1, 2))

    assert metrics["i2t/R@1"] == pytest.approx(50.0)
    assert metrics["i2t/R@2"] == pytest.approx(100.0)
    assert metrics["i2t/mean_rank"] == pytest.approx(1.5)
    assert metrics["i2t/median_rank"] == pytest.approx(1.5)
    assert metrics["i2t/mAP"] == pytest.approx(75.0)
    assert metrics["t2i/R@1"] == pytest.approx(200.0 / 3)
    assert metrics["t2i/R@2"] == pytest.approx(100.0)
    assert metrics["t2i/mean_rank"] == pytest.approx(4.0 / 3)
    assert metrics["t2i/median_rank"] == pytest.approx(1.0)
    assert metrics["t2i/mAP"] == pytest.approx(100.0 * 5.0 / 6)
    assert metrics["rsum"] == pytest.approx(50 + 100 + 200 / 3 + 100)


def test_ties_count_against_query():
    # I0 = I1 = (1, 0) are duplicates, I2 = (0, 1).
    # Captions: c0 = (2, 0) -> I0, c1 = (0, 3) -> I2, c2 = (1, 1) -> I1, c3 = (0, 3) -> I2.
    # s(I0, c) = s(I1, c) = [2, 0, 1, 0] and s(I2, c) = [0, 3, 1, 3].
    # t2i: c0 images [2, 2, 0], I0 ties with I1 -> rank 2. c1 [0, 0, 3] -> rank 1.
    #      c2 [1, 1, 1], all tie -> rank 3. c3 -> rank 1.
    #      Ranks [2, 1, 3, 1]: R@1 50, mean 7/4, median 1.5, mAP (1/2 + 1 + 1/3 + 1) / 4 = 17/24.
    # i2t: I0 [2, 0, 1, 0], c0 -> rank 1, AP 1. I1 same scores, c2 (1) -> rank 2, AP 1/2.
    #      I2 [0, 3, 1, 3], c1 and c3 tie at 3 -> both rank 2, AP (1/2 + 2/2) / 2 = 3/4.
    #      Ranks [1, 2, 2]: R@1 100/3, mean 5/3, median 2, mAP (1 + 1/2 + 3/4) / 3 = 3/4.
    images = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    texts = np.array([[2, 0], [0, 3], [1, 1], [0, 3]], dtype=np.float32)
    metrics = retrieval_metrics(images, texts, np.array([0, 2, 1, 2]))

    assert metrics["t2i/R@1"] == pytest.approx(50.0)
    assert metrics["t2i/R@5"] == pytest.approx(100.0)
    assert metrics["t2i/mean_rank"] == pytest.approx(1.75)
    assert metrics["t2i/median_rank"] == pytest.approx(1.5)
    assert metrics["t2i/mAP"] == pytest.approx(100.0 * 17 / 24)
    assert metrics["i2t/R@1"] == pytest.approx(100.0 / 3)
    assert metrics["i2t/R@5"] == pytest.approx(100.0)
    assert metrics["i2t/mean_rank"] == pytest.approx(5.0 / 3)
    assert metrics["i2t/median_rank"] == pytest.approx(2.0)
    assert metrics["i2t/mAP"] == pytest.approx(75.0)


@pytest.mark.parametrize("tile_size", [2, 3, 512])
def test_image_with_six_captions(tile_size):
    # I0 = (1, 0) has captions c0..c5, I1 = (0, 1) has c6.
    # c0 = (10, 0), c1 = (8, 9), c2 = (6, 6), c3 = (4, 5), c4 = (2, 0), c5 = (0, 3), c6 = (7, 1).
    # i2t: I0 scores [10, 8, 6, 4, 2, 0, 7]. Its captions rank 1, 2, 4, 5, 6, 7 (c6 at 7
    #      beats c2..c5). AP = (1/1 + 2/2 + 3/4 + 4/5 + 5/6 + 6/7) / 6 = 2201/2520.
    #      I1 scores [0, 9, 6, 5, 0, 3, 1]; c6 (1) is beaten by c1, c2, c3, c5 -> rank 5, AP 1/5.
    #      Ranks [1, 5]: R@1 50, R@5 100, mean 3, median 3, mAP (2201/2520 + 1/5) / 2.
    # t2i: c0 [10, 0] -> 1; c1 [8, 9] -> 2; c2 [6, 6] tie -> 2; c3 [4, 5] -> 2; c4 [2, 0] -> 1;
    #      c5 [0, 3] -> 2; c6 belongs to I1, [7, 1] -> 2.
    #      Ranks [1, 2, 2, 2, 1, 2, 2]: R@1 200/7, mean 12/7, median 2, mAP (2 + 5/2) / 7 = 9/14.
    images = np.array([[1, 0], [0, 1]], dtype=np.float32)
    texts = np.array([[10, 0], [8, 9], [6, 6], [4, 5], [2, 0], [0, 3], [7, 1]], dtype=np.float32)
    metrics = retrieval_metrics(images, texts, np.array([0, 0, 0, 0, 0, 0, 1]), tile_size=tile_size)

    assert metrics["i2t/R@1"] == pytest.approx(50.0)
    assert metrics["i2t/R@5"] == pytest.approx(100.0)
    assert metrics["i2t/mean_rank"] == pytest.approx(3.0)
    assert metrics["i2t/median_rank"] == pytest.approx(3.0)
    assert metrics["i2t/mAP"] == pytest.approx(100.0 * (2201 / 2520 + 1 / 5) / 2)
    assert metrics["t2i/R@1"] == pytest.approx(200.0 / 7)
    assert metrics["t2i/R@5"] == pytest.approx(100.0)
    assert metrics["t2i/mean_rank"] == pytest.approx(12.0 / 7)
    assert metrics["t2i/median_rank"] == pytest.approx(2.0)
    assert metrics["t2i/mAP"] == pytest.approx(100.0 * 9 / 14)


@pytest.mark.parametrize("tile_size", [3, 512])
def test_collapsed_model(tile_size):
    # All 4 images and 12 captions share one embedding, so every score ties and every
    # rank equals the number of candidates: 4 for t2i, 12 for i2t.
    # t2i: R@1 = 0 (chance would be 100/4 = 25), R@5 = R@10 = 100, mAP = 100/4.
    # i2t: R@1 = R@5 = R@10 = 0. An image with R captions has ranks [12] * R and
    #      AP (1 + ... + R) / (12 R) = (R + 1) / 24. Captions per image are 1, 2, 3, 6,
    #      so mAP = 100 * (2 + 3 + 4 + 7) / (4 * 24) = 100/6.
    # With this tie rule R@1 equals chance only when there is a single candidate.
    vector = np.array([0.3, -1.7, 2.2], dtype=np.float32)
    images = np.tile(vector, (4, 1))
    texts = np.tile(vector, (12, 1))
    text_to_image = np.repeat(np.arange(4), [1, 2, 3, 6])
    metrics = retrieval_metrics(images, texts, text_to_image, tile_size=tile_size)

    assert metrics["t2i/R@1"] == 0.0
    assert metrics["t2i/R@5"] == 100.0
    assert metrics["t2i/mean_rank"] == 4.0
    assert metrics["t2i/median_rank"] == 4.0
    assert metrics["t2i/mAP"] == pytest.approx(25.0)
    assert metrics["i2t/R@1"] == 0.0
    assert metrics["i2t/R@10"] == 0.0
    assert metrics["i2t/mean_rank"] == 12.0
    assert metrics["i2t/median_rank"] == 12.0
    assert metrics["i2t/mAP"] == pytest.approx(100.0 / 6)


def test_collapsed_single_image():
    # One image and one caption: the only candidate is the relevant one, so R@1 = 100,
    # which here equals chance.
    metrics = retrieval_metrics(np.ones((1, 2)), np.ones((1, 2)), np.array([0]))

    assert metrics["t2i/R@1"] == 100.0
    assert metrics["i2t/R@1"] == 100.0
    assert metrics["rsum"] == 600.0


def test_output_keys_and_types():
    metrics = retrieval_metrics(np.eye(3), np.eye(3), np.arange(3), ks=(2, 1, 7))

    assert list(metrics) == expected_keys((2, 1, 7))
    assert all(type(value) is float for value in metrics.values())


def test_jax_inputs_match_numpy():
    rng = np.random.default_rng(7)
    images = rng.standard_normal((5, 4)).astype(np.float32)
    texts = rng.standard_normal((9, 4)).astype(np.float32)
    text_to_image = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3])

    from_numpy = retrieval_metrics(images, texts, text_to_image, tile_size=2)
    from_jax = retrieval_metrics(jnp.asarray(images), jnp.asarray(texts), jnp.asarray(text_to_image), tile_size=2)

    assert from_jax == from_numpy


# ---------------------------------------------------------------- reference comparison


def make_case(seed, captions_per_image, dim, kind):
    """Build (images, texts, text_to_image) with captions in shuffled order."""
    rng = np.random.default_rng(seed)
    num_images = len(captions_per_image)
    text_to_image = rng.permutation(np.repeat(np.arange(num_images), captions_per_image))
    num_captions = len(text_to_image)

    if kind == "gaussian":
        images = rng.standard_normal((num_images, dim))
        texts = rng.standard_normal((num_captions, dim)) + images[text_to_image]
    elif kind == "integer":
        # Small integers make exact ties between different pairs common.
        images = rng.integers(-2, 3, size=(num_images, dim))
        texts = rng.integers(-2, 3, size=(num_captions, dim))
    elif kind == "duplicates":
        images = rng.standard_normal((num_images, dim))
        texts = rng.standard_normal((num_captions, dim)) + images[text_to_image]
        images[1::3] = images[0]
        texts[::4] = texts[1]
    elif kind == "huge_exact":
        # Integers times 2**50: every product and sum stays exact in float32 and
        # scores reach about 1e32.
        images = rng.integers(-3, 4, size=(num_images, dim)) * 2.0**50
        texts = rng.integers(-3, 4, size=(num_captions, dim)) * 2.0**50
    elif kind == "huge":
        images = rng.standard_normal((num_images, dim)) * 1e17
        texts = (rng.standard_normal((num_captions, dim)) + images[text_to_image] / 1e17) * 1e17
    elif kind == "tiny":
        images = rng.standard_normal((num_images, dim)) * 1e-15
        texts = (rng.standard_normal((num_captions, dim)) + images[text_to_image] / 1e-15) * 1e-15
    else:
        raise AssertionError(kind)
    return images.astype(np.float32), texts.astype(np.float32), text_to_image


REFERENCE_CASES = {
    "one_image": (0, [6], 2, "integer", 4),
    "one_image_one_caption": (1, [1], 3, "gaussian", 2),
    "mixed_1_5_6_7": (2, [1, 5, 6, 7] * 3, 8, "gaussian", 4),
    "tile_divides_counts": (3, [5] * 8, 6, "gaussian", 8),
    "tile_size_one": (4, [1, 2, 1, 3, 1], 4, "gaussian", 1),
    "tile_larger_than_all": (5, [1, 7, 6, 5, 2, 3], 6, "gaussian", 512),
    "integer_ties": (6, [1, 5, 6, 7, 2, 5, 1, 3, 4, 2], 3, "integer", 3),
    "duplicate_rows": (7, [5, 1, 6, 7, 5, 2, 5, 3, 1], 6, "duplicates", 4),
    "huge_exact": (8, [2, 5, 6, 7, 1, 5], 4, "huge_exact", 5),
    "huge": (9, [1, 5, 6, 7, 5], 8, "huge", 4),
    "tiny": (10, [3, 5, 6, 1, 7], 8, "tiny", 4),
    "more_captions_than_tile": (11, [5] * 5 + [6, 7], 16, "gaussian", 2),
}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_matches_reference(case):
    seed, captions_per_image, dim, kind, tile_size = REFERENCE_CASES[case]
    images, texts, text_to_image = make_case(seed, captions_per_image, dim, kind)

    actual = retrieval_metrics(images, texts, text_to_image, ks=(1, 2, 5), tile_size=tile_size)

    assert_metrics_equal(actual, reference_metrics(images, texts, text_to_image, ks=(1, 2, 5)))


def test_reference_cases_are_not_trivial():
    # Guards against a case generator that makes every metric perfect, which would
    # let a broken rank count pass the comparison above.
    imperfect = 0
    for seed, captions_per_image, dim, kind, _ in REFERENCE_CASES.values():
        expected = reference_metrics(*make_case(seed, captions_per_image, dim, kind), ks=(1,))
        imperfect += expected["i2t/mAP"] < 100.0 and expected["t2i/mAP"] < 100.0
    assert imperfect >= 8


def test_large_norms_without_overflow():
    # Norms near 1e30 exceed the overflow bound, so the overflow check runs, but the
    # vectors are orthogonal or small enough that every score stays finite.
    images = np.array([[1e30, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    texts = np.array([[0.0, 1e30], [0.0, 2.0], [3.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    text_to_image = np.array([1, 1, 0, 2])

    actual = retrieval_metrics(images, texts, text_to_image, tile_size=2)

    assert_metrics_equal(actual, reference_metrics(images, texts, text_to_image))


# ---------------------------------------------------------------- input checks


def valid_inputs():
    return np.eye(3, 4, dtype=np.float32), np.eye(5, 4, dtype=np.float32), np.array([0, 1, 2, 0, 1])


@pytest.mark.parametrize(
    "images, texts, match",
    [
        (np.ones(4), np.ones((5, 4)), r"image_embeddings must be 2-D \[count, dim\], got shape \(4,\)"),
        (np.ones((3, 4)), np.ones((5, 4, 1)), r"text_embeddings must be 2-D \[count, dim\], got shape \(5, 4, 1\)"),
        (np.ones((3, 4)), np.ones((5, 3)), r"image_embeddings have width 4 but text_embeddings have width 3"),
        (np.ones((3, 0)), np.ones((5, 0)), r"image_embeddings is empty \(shape \(3, 0\)\)"),
        (np.ones((3, 4)), np.ones((5, 4), dtype=bool), r"text_embeddings must have a real numeric dtype, got bool"),
    ],
)
def test_rejects_bad_embedding_shapes(images, texts, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(images, texts, np.array([0, 1, 2, 0, 1]))


def test_rejects_empty_inputs():
    with pytest.raises(ValueError, match=r"image_embeddings is empty \(shape \(0, 4\)\)"):
        retrieval_metrics(np.zeros((0, 4)), np.ones((2, 4)), np.array([0, 0]))
    with pytest.raises(ValueError, match=r"text_embeddings is empty \(shape \(0, 4\)\)"):
        retrieval_metrics(np.ones((2, 4)), np.zeros((0, 4)), np.array([], dtype=int))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_embeddings(bad_value):
    images, texts, text_to_image = valid_inputs()
    images[2, 1] = bad_value
    with pytest.raises(ValueError, match=r"image_embeddings row 2 contains NaN or inf \(1 such rows\)"):
        retrieval_metrics(images, texts, text_to_image)

    images, texts, text_to_image = valid_inputs()
    texts[4, 0] = bad_value
    with pytest.raises(ValueError, match=r"text_embeddings row 4 contains NaN or inf"):
        retrieval_metrics(images, texts, text_to_image)


def test_rejects_values_beyond_float32():
    images, texts, text_to_image = valid_inputs()
    texts = texts.astype(np.float64)
    texts[3, 2] = 1e300
    with pytest.raises(ValueError, match=r"text_embeddings row 3 has values outside the float32 range"):
        retrieval_metrics(images, texts, text_to_image)


def test_rejects_score_overflow():
    # Each value fits float32, but 2e20 * 3e20 = 6e40 does not.
    images = np.array([[1.0, 0.0], [0.0, 2e20]], dtype=np.float32)
    texts = np.array([[1.0, 0.0], [0.0, 3e20]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"similarity scores of image 1 overflow float32 \(1 such images\)"):
        retrieval_metrics(images, texts, np.array([0, 1]))


@pytest.mark.parametrize(
    "text_to_image, match",
    [
        (np.array([0, 1, 2, 0]), r"text_to_image has 4 entries but text_embeddings has 5 rows"),
        (np.array([[0, 1, 2, 0, 1]]), r"text_to_image must be 1-D \[num_captions\], got shape \(1, 5\)"),
        (np.array([0.0, 1.0, 2.0, 0.0, 1.0]), r"text_to_image must have an integer dtype, got float64"),
        (np.array([0, 1, 3, 0, 1]), r"text_to_image\[2\] = 3 is out of range \[0, 3\)"),
        (np.array([0, 1, 2, -1, 1]), r"text_to_image\[3\] = -1 is out of range \[0, 3\)"),
        (np.array([0, 2, 2, 0, 0]), r"image 1 has no caption in text_to_image \(1 such images\)"),
    ],
)
def test_rejects_bad_text_to_image(text_to_image, match):
    images, texts, _ = valid_inputs()
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(images, texts, text_to_image)


@pytest.mark.parametrize(
    "ks, match",
    [
        ((0,), r"ks must contain only positive integers, got 0 in \(0,\)"),
        ((1, -5), r"ks must contain only positive integers, got -5"),
        ((1, 2.5), r"ks must contain only positive integers, got 2.5"),
        ((True,), r"ks must contain only positive integers, got True"),
        (5, r"ks must be a sequence of positive integers such as \(1, 5, 10\), got 5"),
        ((), r"ks is empty"),
        ((1, 5, 1), r"ks contains duplicates: \(1, 5, 1\)"),
    ],
)
def test_rejects_bad_ks(ks, match):
    images, texts, text_to_image = valid_inputs()
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(images, texts, text_to_image, ks=ks)


@pytest.mark.parametrize("tile_size", [0, -3, 2.0, True])
def test_rejects_bad_tile_size(tile_size):
    images, texts, text_to_image = valid_inputs()
    with pytest.raises(ValueError, match=r"tile_size must be a positive integer"):
        retrieval_metrics(images, texts, text_to_image, tile_size=tile_size)
