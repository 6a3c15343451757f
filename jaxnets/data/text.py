"""Character-level text data for the tiny transformer (doc 003 Problem 4): the tiny Shakespeare
corpus, a character tokenizer, the 90/10 train/validation split and random-window batches.

The corpus (1,115,394 characters, Karpathy's char-rnn data set; the text is public domain) is the
registered data set ``"tiny_shakespeare"``: it is found, downloaded and verified (SHA-256) by
:func:`jaxnets.data.load` like every other data set, and a copy is embedded in the package as
the last fallback.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data.registry import DATASETS, load

#: Length of the corpus in characters (= bytes, it is ASCII).
SHAKESPEARE_CHARS = DATASETS["tiny_shakespeare"].train_count


def load_shakespeare(path: str | os.PathLike | None = None, download: bool = False, *,
                     fallback: bool = True, verify: bool = True) -> str:
    """The tiny Shakespeare corpus as one string (see :func:`jaxnets.data.load`; ``path`` is the
    file or a directory holding ``tinyshakespeare.txt``; ``verify=False`` admits another text,
    and :func:`shakespeare` then labels it ``variant="unverified"``).

    Raises ``jaxnets.data.DataNotFoundError`` (a FileNotFoundError) listing every location tried
    and how to provide the file, and ``DataError`` (a ValueError) for a wrong checksum, an empty
    or non-UTF-8 file.
    """
    return load("tiny_shakespeare", path, download, fallback=fallback, verify=verify).text


class CharTokenizer(NamedTuple):
    """Character vocabulary: ``chars`` sorted, id = position in ``chars``."""
    chars: str

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> np.ndarray:
        """str of length n -> (n,) int32 ids; ValueError naming characters outside the vocabulary."""
        table = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(s) - table.keys())
        if unknown:
            raise ValueError(f"encode: characters not in the vocabulary: {unknown[:10]!r}")
        return np.fromiter((table[c] for c in s), dtype=np.int32, count=len(s))

    def decode(self, ids) -> str:
        """(n,) ints -> str."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"decode: ids must lie in [0, {len(self.chars)})")
        return "".join(self.chars[i] for i in ids)


def train_val_split(ids, train_frac: float = 0.9):
    """First ``train_frac`` of the sequence for training, the rest for validation (contiguous,
    deterministic, as the minimal GPT does). ids: (n,) -> ((n_train,), (n - n_train,))."""
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"train_val_split: train_frac must lie in (0, 1), got {train_frac}")
    n = int(train_frac * len(ids))
    return ids[:n], ids[n:]


def get_batch(key, data, batch_size: int, block_size: int):
    """B random windows of the token sequence and the same windows shifted by one.

    key: PRNG key; data: (n,) int with n > block_size -> (x, y), each (B, T) int32,
    ``y[b, t] = x[b, t + 1]`` in the corpus. Works under jit (B and T static).
    """
    n = data.shape[0]
    if n <= block_size:
        raise ValueError(f"get_batch: need more than block_size={block_size} tokens, got {n}")
    starts = jax.random.randint(key, (batch_size,), 0, n - block_size)            # (B,)
    pos = starts[:, None] + jnp.arange(block_size)[None, :]                       # (B, T)
    return data[pos].astype(jnp.int32), data[pos + 1].astype(jnp.int32)


class CharData(NamedTuple):
    """Tokenizer plus the encoded train (90 %) and validation (10 %) splits, (n,) int32 each;
    ``source`` (label), ``variant`` (``"full"``: the verified corpus, the embedded copy included;
    ``"unverified"``: a file loaded with ``verify=False``, which may be any text) and ``location``
    say which copy was read."""
    tokenizer: CharTokenizer
    train: np.ndarray
    val: np.ndarray
    source: str
    variant: str = "full"
    location: str = ""


def shakespeare(path=None, download: bool = False, fallback: bool = True, train_frac: float = 0.9, *,
                verify: bool = True) -> CharData:
    """Load, tokenize and split tiny Shakespeare (vocabulary of 65 characters)."""
    raw = load("tiny_shakespeare", path, download, fallback=fallback, verify=verify)
    tok = CharTokenizer.from_text(raw.text)
    train, val = train_val_split(tok.encode(raw.text), train_frac)
    return CharData(tok, train, val, raw.source, raw.variant, raw.location)
