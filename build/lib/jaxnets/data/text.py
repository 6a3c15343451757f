"""Character-level text data for the tiny transformer (doc 003 Problem 4): the tiny Shakespeare
corpus, a character tokenizer, the 90/10 train/validation split and random-window batches.

The corpus (1,115,394 characters, Karpathy's char-rnn data set; the text is public domain) is
looked up, in order: an explicit ``path`` (then nothing else) → ``$JAXNETS_DATA/tinyshakespeare.txt``
→ the per-user cache ``$XDG_CACHE_HOME/jaxnets/tinyshakespeare.txt`` (``~/.cache/...``) →
``$JAXNETS_SHARED_DATA/tinyshakespeare.txt`` → the development/CI copy
``<repo>/../shared/data/tinyshakespeare.txt`` → a download into the cache, only when
``download=True`` (SHA-256 checked, written atomically). It is never shipped with the package.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets._io import atomic_write

SHAKESPEARE_FILE = "tinyshakespeare.txt"
SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                   "tinyshakespeare/input.txt")
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_CHARS = 1_115_394

_REPO_ROOT = Path(__file__).resolve().parents[1]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxnets"


def shakespeare_candidates(path: str | os.PathLike | None = None) -> list[Path]:
    """The locations :func:`load_shakespeare` tries, in order (an explicit path alone if given)."""
    if path is not None:
        p = Path(path)
        return [p / SHAKESPEARE_FILE if p.is_dir() else p]
    out = []
    if os.environ.get("JAXNETS_DATA"):
        out.append(Path(os.environ["JAXNETS_DATA"]) / SHAKESPEARE_FILE)
    out.append(_cache_dir() / SHAKESPEARE_FILE)
    if os.environ.get("JAXNETS_SHARED_DATA"):
        out.append(Path(os.environ["JAXNETS_SHARED_DATA"]) / SHAKESPEARE_FILE)
    out.append(_REPO_ROOT.parent / "shared" / "data" / SHAKESPEARE_FILE)
    return out


def _download(dest: Path) -> Path:
    """Fetch the corpus, verify its SHA-256 and move it into place atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(SHAKESPEARE_URL, timeout=60) as r:
        payload = r.read()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise RuntimeError(f"downloaded {SHAKESPEARE_URL}: SHA-256 {digest} does not match the "
                           f"expected {SHAKESPEARE_SHA256}; not saved")
    with atomic_write(dest) as f:
        f.write(payload)
    return dest


def load_shakespeare(path: str | os.PathLike | None = None, download: bool = False) -> str:
    """The tiny Shakespeare corpus as one string.

    ``path`` is the file (or a directory holding ``tinyshakespeare.txt``); without it the
    locations of :func:`shakespeare_candidates` are tried. Raises ``jaxnets.data.DataNotFoundError``
    (a FileNotFoundError) naming every path tried, and how to provide the file, when none exists;
    ValueError for an empty or non-UTF-8 file.
    """
    tried = shakespeare_candidates(path)
    found = next((p for p in tried if p.is_file()), None)
    if found is None and download and path is None:
        found = _download(_cache_dir() / SHAKESPEARE_FILE)
    if found is None:
        try:
            from jaxnets.data import DataNotFoundError as missing
        except ImportError:  # pragma: no cover
            missing = FileNotFoundError
        listing = "\n  ".join(str(p) for p in tried)
        raise missing(
            f"tiny Shakespeare corpus not found; looked for:\n  {listing}\n"
            f"Pass its path explicitly (--data PATH), set JAXNETS_DATA to a directory holding "
            f"{SHAKESPEARE_FILE}, or download it from {SHAKESPEARE_URL} "
            f"(load_shakespeare(download=True) does so, SHA-256 checked).")
    try:
        text = found.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{found}: not UTF-8 text ({e})") from None
    if not text:
        raise ValueError(f"{found}: the file is empty")
    return text


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
    """Tokenizer plus the encoded train (90 %) and validation (10 %) splits, (n,) int32 each."""
    tokenizer: CharTokenizer
    train: np.ndarray
    val: np.ndarray
    source: str


def shakespeare(path=None, download: bool = False, train_frac: float = 0.9) -> CharData:
    """Load, tokenize and split tiny Shakespeare (vocabulary of 65 characters)."""
    text = load_shakespeare(path, download)
    tok = CharTokenizer.from_text(text)
    train, val = train_val_split(tok.encode(text), train_frac)
    src = next((str(p) for p in shakespeare_candidates(path) if p.is_file()), "download")
    return CharData(tok, train, val, src)
