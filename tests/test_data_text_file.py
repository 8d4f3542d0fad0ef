"""Tests for text-file splits, on real UTF-8 files written to a temporary folder."""

import json
import logging
import os
import pickle

import pytest

from multimae_jax.data.heldout_split import is_heldout
from multimae_jax.data.text_file import TextLines, load_text_file

SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")

LINES = [f"sentence number {i} about a red {['cube', 'ball', 'cone'][i % 3]}" for i in range(60)]


def _write_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _all_lines(splits):
    train, heldout = splits
    return sorted(train.captions + heldout.captions)


def test_lines_stripped_and_blank_skipped(tmp_path, caplog):
    # The 60 plain lines make both sides of the split non-empty.
    text = "  first line \n\n\tsecond line\t\n   \nthird line\n" + "\n".join(LINES) + "\n"
    path = _write_bytes(tmp_path, "lines.txt", text.encode("utf-8"))

    with caplog.at_level(logging.INFO, logger="multimae_jax.data.text_file"):
        splits = load_text_file(path, 0.3)

    assert _all_lines(splits) == sorted(["first line", "second line", "third line", *LINES])
    assert "Skipped 2 blank lines of 65" in caplog.text


def test_split_matches_hash(tmp_path):
    path = _write_bytes(tmp_path, "lines.txt", "\n".join(LINES).encode("utf-8"))
    train, heldout = load_text_file(path, 0.3)

    assert sorted(train.captions + heldout.captions) == sorted(LINES)
    assert all(is_heldout(line, 0.3) for line in heldout.captions)
    assert not any(is_heldout(line, 0.3) for line in train.captions)
    assert list(train.captions) == [line for line in LINES if line in set(train.captions)]
    assert os.path.abspath(path) in train.name
    assert "train" in train.name
    assert "held out" in heldout.name


def test_line_ends_and_bom(tmp_path):
    unix = load_text_file(_write_bytes(tmp_path, "unix.txt", "\n".join(LINES).encode("utf-8")), 0.3)
    windows = load_text_file(
        _write_bytes(tmp_path, "windows.txt", b"\xef\xbb\xbf" + "\r\n".join(LINES).encode("utf-8") + b"\r\n"), 0.3
    )
    classic_mac = load_text_file(_write_bytes(tmp_path, "mac.txt", "\r".join(LINES).encode("utf-8")), 0.3)

    for loaded in (windows, classic_mac):
        assert loaded[0].captions == unix[0].captions
        assert loaded[1].captions == unix[1].captions
    assert not any("\ufeff" in line or "\r" in line for line in windows[0].captions + windows[1].captions)


def test_non_ascii_text(tmp_path):
    lines = ["Ein Hund l\u00e4uft \u00fcber die Wiese", "\u732b\u304c\u5bdd\u3066\u3044\u308b", "caf\u00e9 au lait"]
    path = _write_bytes(tmp_path, "multilingual.txt", "\n".join(lines + LINES).encode("utf-8"))

    assert _all_lines(load_text_file(path, 0.3)) == sorted(lines + LINES)


def test_duplicates_same_side(tmp_path):
    lines = ["a dog runs", "a cat sleeps", "two birds sing", "a dog runs  ", "a cat sleeps"] * 20
    path = _write_bytes(tmp_path, "duplicates.txt", "\n".join(lines).encode("utf-8"))
    train, heldout = load_text_file(path, 0.5)

    assert not set(train.captions) & set(heldout.captions)
    assert train.num_captions + heldout.num_captions == 100


def test_invalid_utf8(tmp_path):
    data = "good line\nsecond good line\n".encode("utf-8") + b"bad \xff byte\nlast\n"
    path = _write_bytes(tmp_path, "latin.txt", data)

    with pytest.raises(ValueError, match="latin.txt is not valid UTF-8") as raised:
        load_text_file(path, 0.5)

    message = str(raised.value)
    invalid_offset = data.index(b"\xff")
    assert "line 3" in message
    assert f"byte offset {invalid_offset}" in message


def test_invalid_utf8_after_bom(tmp_path):
    data = b"\xef\xbb\xbf" + "caf\u00e9\r\n".encode("utf-8") + b"\xc3"
    path = _write_bytes(tmp_path, "truncated.txt", data)

    with pytest.raises(ValueError, match="line 2") as raised:
        load_text_file(path, 0.5)

    assert f"byte offset {len(data) - 1}" in str(raised.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions.txt") as raised:
        load_text_file(str(tmp_path / "captions.txt"), 0.5)

    assert "config.data.text_file" in str(raised.value)


def test_folder_not_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a regular file") as raised:
        load_text_file(str(tmp_path), 0.5)

    assert "config.data.text_file" in str(raised.value)


@pytest.mark.parametrize("data", [b"", b"\n\n  \n\t\n", b"\xef\xbb\xbf\r\n"], ids=["empty", "blank", "bom"])
def test_no_text(tmp_path, data):
    path = _write_bytes(tmp_path, "blank.txt", data)

    with pytest.raises(ValueError, match="blank.txt contains no text"):
        load_text_file(path, 0.5)


def test_zero_fraction(tmp_path):
    path = _write_bytes(tmp_path, "lines.txt", "\n".join(LINES).encode("utf-8"))

    with pytest.raises(ValueError, match="heldout_fraction") as raised:
        load_text_file(path, 0.0)

    assert "lines.txt" in str(raised.value)


def test_text_lines_fields():
    lines = TextLines("tiny", ["one", "two"])

    assert lines.captions == ("one", "two")
    assert lines.num_captions == 2
    assert repr(lines) == "TextLines(name='tiny', num_captions=2)"
    assert pickle.loads(pickle.dumps(lines)) == lines


def test_text_lines_invalid():
    with pytest.raises(ValueError, match="'tiny' has no lines"):
        TextLines("tiny", [])
    with pytest.raises(ValueError, match="line 1 is a bytes, expected a string"):
        TextLines("tiny", ["one", b"two"])


def test_real_captions(tmp_path):
    annotation = os.path.join(SHARED_DATA, "coco_mini", "annotations", "coco_karpathy_train.json")
    if not os.path.isfile(annotation):
        pytest.skip(f"real data not found at {annotation}: this test needs ../shared/data beside the checkout")

    # Some COCO captions contain line breaks, so join each caption's words with single spaces.
    with open(annotation, encoding="utf-8") as file:
        captions = [" ".join(entry["caption"].split()) for entry in json.load(file)]
    path = _write_bytes(tmp_path, "coco_captions.txt", "\n".join(captions).encode("utf-8"))
    train, heldout = load_text_file(path, 0.1)

    assert sorted(train.captions + heldout.captions) == sorted(captions)
    assert 0 < heldout.num_captions < train.num_captions
