"""Tests for the caption tokenizer: trained WordPiece vocabularies and local pretrained ones."""

import logging
import os
import pickle

import numpy as np
import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, trainers

from multimae_jax.data.tokenizer import load_tokenizer

CAPTIONS = [
    "A large red circle in the top left corner.",
    "Two small blue squares on a white background.",
    "A dog runs across the green grass.",
    "A man rides a bicycle down the street.",
    "The cat sleeps on a red sofa near the window.",
] * 4

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "dog", "run", "##s", "the"]


@pytest.fixture
def trained(tmp_path):
    return load_tokenizer("", training_texts=CAPTIONS, cache_dir=str(tmp_path / "cache"), vocab_size=120)


def test_training_logs_and_saves(tmp_path, caplog):
    cache_dir = str(tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="multimae_jax.data.tokenizer"):
        tokenizer = load_tokenizer("", training_texts=CAPTIONS, cache_dir=cache_dir, vocab_size=120)

    assert os.path.isfile(os.path.join(cache_dir, "tokenizer.json"))
    assert f"on {len(CAPTIONS)} captions, saved to" in caplog.text
    assert f"Trained a WordPiece vocabulary of {tokenizer.vocab_size} tokens" in caplog.text
    assert not [name for name in os.listdir(cache_dir) if ".tmp" in name]


def test_cache_reused(tmp_path, caplog):
    cache_dir = str(tmp_path / "cache")
    first = load_tokenizer("", training_texts=CAPTIONS, cache_dir=cache_dir, vocab_size=120)
    path = os.path.join(cache_dir, "tokenizer.json")
    mtime = os.stat(path).st_mtime_ns

    with caplog.at_level(logging.INFO, logger="multimae_jax.data.tokenizer"):
        second = load_tokenizer("", training_texts=["different text entirely"], cache_dir=cache_dir)

    assert "Reusing the WordPiece vocabulary" in caplog.text
    assert "Trained" not in caplog.text
    assert os.stat(path).st_mtime_ns == mtime
    assert second.vocab_size == first.vocab_size
    assert np.array_equal(second.encode(CAPTIONS[:3], 16)[0], first.encode(CAPTIONS[:3], 16)[0])


def test_trained_special_ids(trained):
    assert trained.pad_id == 0
    assert trained.unk_id == 1
    assert trained.cls_id == 2
    assert trained.sep_id == 3
    assert trained.mask_id == 4
    assert set(trained.special_ids) == {0, 1, 2, 3, 4}


def test_encode_layout(trained):
    ids, mask = trained.encode(["a red circle", "a dog runs across the green grass"], max_length=12)

    assert ids.shape == (2, 12)
    assert ids.dtype == np.int32
    assert mask.dtype == np.int32
    for row in range(2):
        length = int(mask[row].sum())
        assert ids[row, 0] == trained.cls_id
        assert ids[row, length - 1] == trained.sep_id
        assert np.all(mask[row, :length] == 1)
        assert np.all(mask[row, length:] == 0)
        assert np.all(ids[row, length:] == trained.pad_id)
        assert not np.isin(ids[row, 1 : length - 1], trained.special_ids).any()
    assert mask[0].sum() < mask[1].sum()


def test_truncation_keeps_sep(trained):
    ids, mask = trained.encode([CAPTIONS[2] * 3], max_length=6)
    full_ids, _ = trained.encode([CAPTIONS[2] * 3], max_length=64)

    assert mask.sum() == 6
    assert ids[0, 0] == trained.cls_id
    assert ids[0, -1] == trained.sep_id
    assert np.array_equal(ids[0, 1:5], full_ids[0, 1:5])


def test_lowercases(trained):
    upper, _ = trained.encode(["A RED Circle"], max_length=8)
    lower, _ = trained.encode(["a red circle"], max_length=8)

    assert np.array_equal(upper, lower)


def test_decode_round_trip(trained):
    ids, _ = trained.encode(["A red circle on a white background"], max_length=16)

    assert trained.decode(ids[0]) == "a red circle on a white background"


def test_picklable(trained):
    restored = pickle.loads(pickle.dumps(trained))

    assert restored.special_ids == trained.special_ids
    assert np.array_equal(restored.encode(CAPTIONS, 10)[0], trained.encode(CAPTIONS, 10)[0])


def test_bert_vocab_folder(tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")

    tokenizer = load_tokenizer(str(folder), training_texts=None, cache_dir=str(tmp_path / "unused"))
    ids, mask = tokenizer.encode(["The dog runs", "a zebra"], max_length=7)

    assert tokenizer.vocab_size == len(BERT_VOCAB)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (
        0, 1, 2, 3, 4,
    )
    expected_words = ["[CLS]", "the", "dog", "run", "##s", "[SEP]", "[PAD]"]
    assert ids[0].tolist() == [BERT_VOCAB.index(word) for word in expected_words]
    assert ids[1].tolist()[:4] == [2, BERT_VOCAB.index("a"), tokenizer.unk_id, 3]
    assert mask[1].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert not os.path.exists(tmp_path / "unused")
    restored = pickle.loads(pickle.dumps(tokenizer))
    assert np.array_equal(restored.encode(["The dog runs"], max_length=7)[0], ids[:1])


def test_tokenizer_json_path(tmp_path, trained):
    path = str(tmp_path / "cache" / "tokenizer.json")

    loaded = load_tokenizer(path, training_texts=None, cache_dir=str(tmp_path / "other"))

    assert loaded.special_ids == trained.special_ids
    assert np.array_equal(loaded.encode(CAPTIONS, 12)[0], trained.encode(CAPTIONS, 12)[0])


def test_corrupt_cache_error(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "tokenizer.json").write_text('{"version": "1.0", "model": ', encoding="utf-8")

    with pytest.raises(ValueError, match=r"tokenizer\.json could not be read.*Delete the file"):
        load_tokenizer("", training_texts=CAPTIONS, cache_dir=str(cache_dir))


def test_missing_mask_token(tmp_path):
    backend = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=80, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False
    )
    backend.train_from_iterator(CAPTIONS, trainer=trainer)
    path = str(tmp_path / "no_mask.json")
    backend.save(path)

    with pytest.raises(ValueError, match=r"no_mask\.json has no mask \(\[MASK\] or <mask>\) token"):
        load_tokenizer(path, training_texts=None, cache_dir=str(tmp_path))


def test_missing_local_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="Tokenizer path .*absent not found"):
        load_tokenizer(str(tmp_path / "absent"), training_texts=None, cache_dir=str(tmp_path))


def test_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="contains none of tokenizer_config.json"):
        load_tokenizer(str(tmp_path), training_texts=None, cache_dir=str(tmp_path))


def test_hub_name_offline(tmp_path, monkeypatch):
    # local_files_only keeps the lookup on this machine, so the name fails as it would offline.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ValueError, match="Could not load tokenizer 'no-such-org/no-such-tokenizer'.*local"):
        load_tokenizer(
            "no-such-org/no-such-tokenizer", training_texts=None, cache_dir=str(tmp_path), local_files_only=True
        )


def test_training_needs_texts(tmp_path):
    with pytest.raises(ValueError, match="no training captions"):
        load_tokenizer("", training_texts=None, cache_dir=str(tmp_path))


def test_encode_rejects_short_length(trained):
    with pytest.raises(ValueError, match="max_length must be at least 2"):
        trained.encode(["a"], max_length=1)


def test_encode_rejects_string(trained):
    with pytest.raises(TypeError, match="single string"):
        trained.encode("a red circle", max_length=8)

