"""Tokenizers for a mixture: a byte-level BPE trained on the run's own data, or an HF / local file one.

Token counting is batched (``encode_batch``, parallel in Rust). A mixture's tokenizer is saved as a complete
Hugging Face folder (``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``) that
``transformers.AutoTokenizer.from_pretrained`` and llm-foundry's ``build_tokenizer`` load; the trained BPE reserves
id 0 for ``<|padding|>`` (pad, and unk, which a byte-level BPE never emits) and puts EOS at id 1, since
llm-foundry's text loader refuses ``eos_token_id: 0``. Each token also gets the number of UTF-8
bytes of the text it covers, so evaluation can report bits per byte: bytes come from the token's character
offsets, and text no token covers (or a character split over several tokens) is counted once, on the first
token that reaches it, so a document's token bytes sum to its UTF-8 length. Byte-level BPE vocabularies
(GPT-2, GPT-NeoX, the default ``bpe``) give each token's bytes directly, which is exact and faster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

log = logging.getLogger(__name__)

BATCH_DOCS = 512
PAD = "<|padding|>"  # id 0 of a trained BPE: pad (and unk); EOS follows at id 1
PAD_NAMES = (PAD, "<pad>", "[PAD]", "<|pad|>")  # a loaded tokenizer's pad token, if it has one of these


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded or lacks the EOS token."""


def train_bpe(texts: Iterable[str], vocab_size: int, eos: str) -> Tokenizer:
    """A byte-level BPE (GPT-2 style; ``<|padding|>`` id 0, EOS id 1) trained on ``texts``; deterministic for the
    same texts."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, eos] if eos != PAD else [eos]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(name: str) -> Tokenizer:
    """A ``tokenizer.json`` path, or a Hugging Face id resolved through the local hub cache (or the hub)."""
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    if path.suffix == ".json" or name.startswith((".", "/")):
        raise TokenizerError(f"tokenizer file {path} does not exist")
    from huggingface_hub import hf_hub_download

    try:
        return Tokenizer.from_file(hf_hub_download(name, "tokenizer.json"))
    except Exception as err:
        raise TokenizerError(f"cannot load HF tokenizer {name!r} (offline, not cached?): {err}") from err


def eos_id(tok: Tokenizer, eos: str) -> int:
    """The id of the EOS token; an error naming the token if the vocabulary lacks it."""
    found = tok.token_to_id(eos)
    if found is None:
        raise TokenizerError(f"EOS token {eos!r} is not in the tokenizer's vocabulary; "
                             "set mixture.tokenizer.eos_token")
    return found


def save_folder(tok: Tokenizer, folder: Path, eos: str) -> Path:
    """Save ``tok`` as a Hugging Face tokenizer folder with its EOS, pad and unk tokens registered; returns it.

    ``AutoTokenizer.from_pretrained(folder)`` gives a ``PreTrainedTokenizerFast`` whose ``eos_token_id`` is the
    mixture's EOS id; it adds no BOS/EOS of its own and decodes without clean-up, so text round-trips.
    """
    from transformers import PreTrainedTokenizerFast

    vocab = tok.get_vocab(with_added_tokens=True)
    pad = next((name for name in PAD_NAMES if name in vocab and name != eos), None)
    unk = getattr(tok.model, "unk_token", None) or pad
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad, unk_token=unk,
                                 clean_up_tokenization_spaces=False)
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(folder))
    return folder


def prepare(tok: Tokenizer) -> Tokenizer:
    """Settings for corpus text: special-token strings in documents are plain text; no added BOS/EOS."""
    tok.encode_special_tokens = True
    tok.no_padding()
    tok.no_truncation()
    return tok


@dataclass
class Tokenized:
    """Token ids of many documents, flat: document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    n_bytes: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per document."""
        return np.diff(self.offsets)

    def doc(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and per-token bytes of document ``i``."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.ids[lo:hi], self.n_bytes[lo:hi]


def token_bytes(text: str, char_offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """UTF-8 bytes per token; each byte of ``text`` is counted on exactly one token (module docstring)."""
    if not char_offsets:
        return np.zeros(0, dtype=np.int32)
    ends = np.fromiter((end for _, end in char_offsets), dtype=np.int64, count=len(char_offsets))
    if text.isascii():
        byte_end, total = ends, len(text)
    else:
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        width = 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)
        cum = np.concatenate([[0], np.cumsum(width)])
        byte_end, total = cum[ends], int(cum[-1])
    reach = np.maximum.accumulate(byte_end)
    counts = np.diff(reach, prepend=0)
    counts[-1] += total - reach[-1]
    return counts.astype(np.int32)


def byte_table(tok: Tokenizer) -> np.ndarray | None:
    """UTF-8 bytes of every vocabulary entry for a byte-level tokenizer (specials 0); None for other kinds."""
    if not isinstance(tok.decoder, decoders.ByteLevel):
        return None
    unbyte = {ch: 1 for ch in pre_tokenizers.ByteLevel.alphabet()}
    added = tok.get_added_tokens_decoder()
    table = np.zeros(tok.get_vocab_size(with_added_tokens=True), dtype=np.int32)
    for piece, i in tok.get_vocab(with_added_tokens=True).items():
        if i in added:
            table[i] = 0 if added[i].special else len(piece.encode())
        elif all(ch in unbyte for ch in piece):
            table[i] = len(piece)  # one alphabet character per byte
        else:
            return None
    return table


def tokenize(tok: Tokenizer, texts: Sequence[str]) -> Tokenized:
    """Token ids and per-token bytes of every text, in batches (bytes from the vocabulary when byte-level)."""
    ids: list[np.ndarray] = []
    nbytes: list[np.ndarray] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    table = byte_table(tok)
    encode = tok.encode_batch if table is None else tok.encode_batch_fast  # offsets only when needed
    for start in range(0, len(texts), BATCH_DOCS):
        batch = texts[start:start + BATCH_DOCS]
        for j, (text, enc) in enumerate(zip(batch, encode(list(batch)), strict=True)):
            ids.append(np.asarray(enc.ids, dtype=np.int32))
            nbytes.append(table[ids[-1]] if table is not None else token_bytes(text, enc.offsets))
            lengths[start + j] = len(ids[-1])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    empty = np.zeros(0, dtype=np.int32)
    return Tokenized(np.concatenate(ids) if ids else empty, np.concatenate(nbytes) if nbytes else empty,
                     offsets)


def count_tokens(tok: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Tokens per text only (no offsets kept), in batches."""
    out = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), BATCH_DOCS):
        encs = tok.encode_batch_fast(list(texts[start:start + BATCH_DOCS]))
        out[start:start + len(encs)] = [len(e.ids) for e in encs]
    return out
