"""Text-only splits from a UTF-8 text file with one example per line, for masked language modelling."""

from __future__ import annotations

import codecs
import dataclasses
import logging
import os
import re

from multimae_jax.data.heldout_split import split_by_hash

logger = logging.getLogger(__name__)

# Line ends accepted in a text file: Windows, Unix and classic Mac OS, as in Python's universal newlines.
_LINE_BREAK = re.compile(r"\r\n|\n|\r")


@dataclasses.dataclass(frozen=True)
class TextLines:
    """One split of a text-only dataset, used wherever the pipelines expect a split's captions.

    Attributes:
        name: Split name for messages and logs, e.g. "/data/lines.txt (train)".
        captions: The examples, one string each, never empty as a whole.
    """

    name: str
    captions: tuple[str, ...]

    def __post_init__(self) -> None:
        # Accept lists from callers but store a tuple, because pipelines and workers share the split.
        object.__setattr__(self, "captions", tuple(self.captions))

        if not self.captions:
            raise ValueError(f"Text split {self.name!r} has no lines; a split needs at least one line.")
        for index, caption in enumerate(self.captions):
            if not isinstance(caption, str):
                raise ValueError(
                    f"Text split {self.name!r}: line {index} is a {type(caption).__name__}, expected a string."
                )

    @property
    def num_captions(self) -> int:
        """Number of examples (lines) in the split."""
        return len(self.captions)

    def __repr__(self) -> str:
        return f"TextLines(name={self.name!r}, num_captions={self.num_captions})"


def load_text_file(path: str, heldout_fraction: float) -> tuple[TextLines, TextLines]:
    """Read a UTF-8 text file as a training split and a held-out split, one example per line.

    A leading byte order mark is dropped, and "\\r\\n", "\\n" and "\\r" all end a line. Each line is
    stripped of surrounding whitespace, and blank lines are skipped (their count is logged). A
    line's side is decided by hashing its stripped text (see `heldout_split.split_by_hash`), so
    duplicate lines always fall on the same side and cannot leak into the held-out split.

    Args:
        path: Text file (the value of `config.data.text_file`).
        heldout_fraction: Expected share of the lines in the held-out split, in (0, 1).

    Returns:
        (train, held out) TextLines, each keeping the file order of its lines.

    Raises:
        FileNotFoundError: `path` does not exist or is not a regular file.
        ValueError: The file is not valid UTF-8 (the message gives the 1-based line number and the
            0-based byte offset in the file), contains only blank lines, or the split would leave
            a side empty (see `split_by_hash`).
    """
    absolute_path = os.path.abspath(path)
    if not os.path.isfile(absolute_path):
        raise FileNotFoundError(
            f"Text file {absolute_path} not found or not a regular file. Set config.data.text_file to a "
            "UTF-8 text file with one example per line."
        )

    with open(absolute_path, "rb") as file:
        data = file.read()
    text = _decode_utf8(data, absolute_path)

    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        # A line break at the end of the file ends the last line; it does not start a blank one.
        lines.pop()
    stripped = [line.strip() for line in lines]
    examples = [line for line in stripped if line]

    num_blank = len(stripped) - len(examples)
    if not examples:
        raise ValueError(
            f"Text file {absolute_path} contains no text: all {num_blank} lines are blank. Write one "
            "example per line or set config.data.text_file to another file."
        )
    if num_blank:
        logger.info("Skipped %d blank lines of %d in text file %s.", num_blank, len(stripped), absolute_path)

    train_indices, heldout_indices = split_by_hash(examples, heldout_fraction, source=absolute_path)
    train = TextLines(f"{absolute_path} (train)", tuple(examples[i] for i in train_indices))
    heldout = TextLines(f"{absolute_path} (held out)", tuple(examples[i] for i in heldout_indices))
    logger.info(
        "Text file %s: %d training lines, %d held-out lines.", absolute_path, train.num_captions, heldout.num_captions
    )
    return train, heldout


def _decode_utf8(data: bytes, path: str) -> str:
    """Decode a file's bytes as UTF-8 without a leading byte order mark, or raise ValueError naming the spot."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[start:]

    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        # Everything before error.start decoded, so counting line breaks there gives the line number.
        line_number = len(_LINE_BREAK.findall(body[: error.start].decode("utf-8"))) + 1
        byte_offset = start + error.start
        raise ValueError(
            f"Text file {path} is not valid UTF-8: line {line_number}, byte offset {byte_offset} "
            f"(0-based, in the file), {error.reason} (byte 0x{body[error.start]:02x}). Save the file as UTF-8."
        ) from error
