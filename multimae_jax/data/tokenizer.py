"""Text tokenizer for captions: a trained WordPiece vocabulary or a pretrained Hugging Face tokenizer."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

logger = logging.getLogger(__name__)

CACHED_TOKENIZER_FILE = "tokenizer.json"

# Special tokens of the trained vocabulary, in id order, so that [PAD] is 0.
_TRAINED_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Names under which a bare tokenizer.json usually stores each special token (BERT, then RoBERTa style).
_SPECIAL_TOKEN_NAMES = {
    "pad": ("[PAD]", "<pad>"),
    "cls": ("[CLS]", "<s>", "<cls>"),
    "sep": ("[SEP]", "</s>", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
    "unk": ("[UNK]", "<unk>"),
}


class TextTokenizer:
    """Tokenizer that encodes captions as fixed-length [CLS] tokens [SEP] [PAD]... rows.

    Wraps either a `tokenizers.Tokenizer` or a Hugging Face `transformers` tokenizer. Both are
    picklable, so Grain worker processes can receive a TextTokenizer.

    Attributes:
        vocab_size: Number of token ids, including added and special tokens.
        pad_id, cls_id, sep_id, mask_id: Ids of the special tokens.
        unk_id: Id of the unknown token, or -1 when the tokenizer has none (byte-level BPE).
        special_ids: Sorted ids that masked language modelling must never select: pad, cls, sep,
            mask and every other token the tokenizer marks as special (including unk).
        source: Where the tokenizer came from, for logs and messages.
    """

    def __init__(self, backend: Any, *, source: str):
        self._backend = backend
        self.source = source
        self._is_transformers = not isinstance(backend, tokenizers.Tokenizer)

        if self._is_transformers:
            ids = {
                "pad": backend.pad_token_id,
                "cls": backend.cls_token_id,
                "sep": backend.sep_token_id,
                "mask": backend.mask_token_id,
                "unk": backend.unk_token_id,
            }
            other_special = set(backend.all_special_ids)
            self.vocab_size = len(backend)
        else:
            ids = {role: _find_token_id(backend, names) for role, names in _SPECIAL_TOKEN_NAMES.items()}
            other_special = {
                token_id for token_id, token in backend.get_added_tokens_decoder().items() if token.special
            }
            self.vocab_size = backend.get_vocab_size(with_added_tokens=True)

        missing = [role for role in ("pad", "cls", "sep", "mask") if ids[role] is None]
        if missing:
            expected = ", ".join(f"{role} ({' or '.join(_SPECIAL_TOKEN_NAMES[role])})" for role in missing)
            raise ValueError(
                f"Tokenizer {source} has no {expected} token. Caption encoding needs pad, cls and sep, "
                "and masked language modelling needs mask. Use a tokenizer that defines them, "
                "or leave the tokenizer name empty to train a WordPiece vocabulary."
            )

        self.pad_id = int(ids["pad"])
        self.cls_id = int(ids["cls"])
        self.sep_id = int(ids["sep"])
        self.mask_id = int(ids["mask"])
        self.unk_id = -1 if ids["unk"] is None else int(ids["unk"])
        required = {self.pad_id, self.cls_id, self.sep_id, self.mask_id}
        self.special_ids = tuple(sorted(required | {int(i) for i in other_special}))

    def encode(self, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Encode texts as [CLS] tokens [SEP] followed by padding.

        Texts longer than max_length - 2 tokens are truncated, and [SEP] stays the last real token.

        Returns:
            ids: int32 [N, max_length], padded with pad_id.
            mask: int32 [N, max_length], 1 for real tokens (including [CLS] and [SEP]), 0 for padding.
        """
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 to hold [CLS] and [SEP], got {max_length}.")
        if isinstance(texts, str):
            raise TypeError("encode expects a sequence of texts, got a single string; wrap it in a list.")

        token_lists = self._tokenize(list(texts))
        ids = np.full((len(token_lists), max_length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(token_lists), max_length), dtype=np.int32)
        for row, tokens in enumerate(token_lists):
            body = tokens[: max_length - 2]
            length = len(body) + 2
            ids[row, 0] = self.cls_id
            ids[row, 1 : length - 1] = body
            ids[row, length - 1] = self.sep_id
            mask[row, :length] = 1

        return ids, mask

    def decode(self, ids: Sequence[int]) -> str:
        """Turn token ids back into text, skipping special tokens (for logs and debugging)."""
        return self._backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        if not texts:
            return []
        if self._is_transformers:
            return self._backend(texts, add_special_tokens=False)["input_ids"]
        encodings = self._backend.encode_batch(texts, add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def __repr__(self) -> str:
        return f"TextTokenizer(source={self.source!r}, vocab_size={self.vocab_size})"


def load_tokenizer(
    name_or_path: str,
    *,
    training_texts: Sequence[str] | None,
    cache_dir: str,
    vocab_size: int = 8192,
    local_files_only: bool = False,
) -> TextTokenizer:
    """Load a pretrained tokenizer, or train (or reuse) a WordPiece vocabulary on the captions.

    Args:
        name_or_path: A tokenizer.json file, a vocab.txt file, a folder with tokenizer files
            (tokenizer_config.json, tokenizer.json or a BERT-style vocab.txt), or a Hugging Face
            hub name. Empty: use `<cache_dir>/tokenizer.json`, training it first if it is absent.
        training_texts: Captions to train on; needed only when training.
        cache_dir: Folder for the trained vocabulary.
        vocab_size: Target size of a trained vocabulary, including the 5 special tokens.
        local_files_only: Never contact the Hugging Face hub; a hub name must then be cached locally.

    Raises:
        FileNotFoundError: A local path does not exist.
        ValueError: The tokenizer cannot be loaded or trained, or lacks a required special token.
    """
    if name_or_path:
        return _load_named_tokenizer(name_or_path, local_files_only=local_files_only)
    return _load_or_train_wordpiece(training_texts, cache_dir, vocab_size)


def _load_named_tokenizer(name_or_path: str, *, local_files_only: bool) -> TextTokenizer:
    """Load a tokenizer from a local file or folder, or from the Hugging Face hub."""
    path = os.path.expanduser(name_or_path)

    if os.path.isfile(path):
        if os.path.basename(path) == "vocab.txt":
            return TextTokenizer(_auto_tokenizer(os.path.dirname(path) or ".", tokenizer_type="bert"), source=path)
        return TextTokenizer(_read_tokenizer_file(path, "Delete or replace it."), source=path)

    if os.path.isdir(path):
        return TextTokenizer(_load_tokenizer_folder(path), source=path)

    if _looks_like_local_path(name_or_path):
        raise FileNotFoundError(
            f"Tokenizer path {name_or_path} not found. Give an existing tokenizer.json file or folder, "
            "or leave the tokenizer name empty to train a WordPiece vocabulary."
        )

    return TextTokenizer(_load_hub_tokenizer(name_or_path, local_files_only), source=name_or_path)


def _looks_like_local_path(name_or_path: str) -> bool:
    """Return True when a name that does not exist locally was meant as a path, not a hub name.

    Hub names are "name" or "organisation/name", so anything else is reported as a missing path
    instead of being sent to the hub.
    """
    if name_or_path.startswith((".", "/", "~")) or "\\" in name_or_path:
        return True
    if name_or_path.endswith((".json", ".txt")):
        return True
    return name_or_path.count("/") > 1


def _load_tokenizer_folder(folder: str) -> Any:
    """Load the tokenizer saved in a local folder, choosing the loader from the files present."""
    if os.path.isfile(os.path.join(folder, "tokenizer_config.json")):
        return _auto_tokenizer(folder)
    if os.path.isfile(os.path.join(folder, CACHED_TOKENIZER_FILE)):
        # Without tokenizer_config.json, transformers does not know the special tokens, so the
        # file is read directly and special tokens are found by their usual names.
        return _read_tokenizer_file(os.path.join(folder, CACHED_TOKENIZER_FILE), "Delete or replace it.")
    if os.path.isfile(os.path.join(folder, "vocab.txt")):
        return _auto_tokenizer(folder, tokenizer_type="bert")

    raise FileNotFoundError(
        f"Tokenizer folder {folder} contains none of tokenizer_config.json, tokenizer.json or vocab.txt. "
        "Point to a folder saved by a tokenizer, or leave the tokenizer name empty to train one."
    )


def _auto_tokenizer(folder: str, **kwargs: Any) -> Any:
    """Load a local folder with `transformers.AutoTokenizer`, naming the folder on failure."""
    # Imported here because transformers is slow to import and prints a note when PyTorch is absent.
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"Could not load the tokenizer in {folder}: {error}") from error


def _load_hub_tokenizer(name: str, local_files_only: bool) -> Any:
    """Load a tokenizer by Hugging Face hub name, from the local cache or the network."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
    except OSError as error:
        raise ValueError(
            f"Could not load tokenizer {name!r}: it is not a local path, and the Hugging Face hub "
            "did not provide it (no network access offline, no cached copy, or no such name). "
            "Give a local tokenizer folder or tokenizer.json path instead, or leave the tokenizer "
            f"name empty to train a WordPiece vocabulary on the training captions. Cause: {error}"
        ) from error


def _read_tokenizer_file(path: str, remedy: str) -> tokenizers.Tokenizer:
    """Read a tokenizer.json file, or raise ValueError naming it and saying what to do."""
    try:
        return tokenizers.Tokenizer.from_file(path)
    except Exception as error:  # noqa: BLE001 - the Rust binding raises a bare Exception.
        raise ValueError(f"Tokenizer file {path} could not be read: {error}. {remedy}") from error


def _load_or_train_wordpiece(training_texts: Sequence[str] | None, cache_dir: str, vocab_size: int) -> TextTokenizer:
    """Reuse `<cache_dir>/tokenizer.json` if it exists, otherwise train it on `training_texts`."""
    path = os.path.join(cache_dir, CACHED_TOKENIZER_FILE)

    if os.path.isfile(path):
        backend = _read_tokenizer_file(
            path, "Delete the file so that the vocabulary is trained again on the next run."
        )
        tokenizer = TextTokenizer(backend, source=path)
        logger.info("Reusing the WordPiece vocabulary of %d tokens in %s", tokenizer.vocab_size, path)
        return tokenizer

    if training_texts is None or len(training_texts) == 0:
        raise ValueError(
            f"No tokenizer at {path} and no training captions to train one. Pass the training "
            "captions, or set a tokenizer name or path."
        )
    if vocab_size <= len(_TRAINED_SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(_TRAINED_SPECIAL_TOKENS)} special tokens, got {vocab_size}.")

    backend = _train_wordpiece(training_texts, vocab_size)
    os.makedirs(cache_dir, exist_ok=True)

    # Write to a temporary name and rename, so that a concurrent reader or a crash never leaves
    # a partial file that the next run would reuse.
    temporary_path = f"{path}.tmp.{os.getpid()}"
    backend.save(temporary_path)
    os.replace(temporary_path, path)

    tokenizer = TextTokenizer(backend, source=path)
    logger.info(
        "Trained a WordPiece vocabulary of %d tokens on %d captions, saved to %s",
        tokenizer.vocab_size,
        len(training_texts),
        path,
    )
    return tokenizer


def _train_wordpiece(training_texts: Sequence[str], vocab_size: int) -> tokenizers.Tokenizer:
    """Train a lower-casing BERT-style WordPiece tokenizer with [PAD] = 0."""
    backend = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(_TRAINED_SPECIAL_TOKENS), show_progress=False
    )
    backend.train_from_iterator(training_texts, trainer=trainer, length=len(training_texts))

    # TextTokenizer.encode adds [CLS] and [SEP] itself, but the saved file should also encode
    # correctly in other tools.
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", backend.token_to_id("[CLS]")), ("[SEP]", backend.token_to_id("[SEP]"))],
    )
    return backend


def _find_token_id(backend: tokenizers.Tokenizer, names: tuple[str, ...]) -> int | None:
    """Id of the first of `names` in the vocabulary, or None."""
    for name in names:
        token_id = backend.token_to_id(name)
        if token_id is not None:
            return token_id
    return None
