"""Atomic checkpoints of pytrees (params, optimizer state, RNG key) plus JSON metadata.

A checkpoint is one ``.npz`` file: the pytree's leaves as ``leaf_00000 …`` and a JSON string
``__meta__``. It is written to a temporary file in the same directory and ``os.replace``-d into
place, so a process killed mid-write leaves the previous checkpoint intact and loadable.
Loading needs a *template* pytree of the same structure (e.g. freshly initialised params and
optimizer state), which keeps the file free of pickled code.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets._io import atomic_write


def _to_numpy(leaf):
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def save(path: str | os.PathLike, tree, meta: dict | None = None) -> None:
    """Write ``tree`` (any pytree of arrays / typed PRNG keys) and ``meta`` atomically to ``path``."""
    path = os.fspath(path)
    leaves = jax.tree.leaves(tree)
    arrays = {f"leaf_{i:05d}": _to_numpy(v) for i, v in enumerate(leaves)}
    arrays["__meta__"] = np.array(json.dumps(meta or {}))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load(path: str | os.PathLike, template):
    """Read a checkpoint written by :func:`save` into the structure of ``template``.

    Returns ``(tree, meta)``. Raises ValueError naming the file when it is unreadable or its
    leaves do not match the template (count, shape or dtype).
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            stored = [z[f"leaf_{i:05d}"] for i in range(len(z.files) - 1)]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"checkpoint {path}: unreadable ({e})") from e
    t_leaves, treedef = jax.tree.flatten(template)
    if len(stored) != len(t_leaves):
        raise ValueError(f"checkpoint {path}: {len(stored)} arrays, expected {len(t_leaves)}")
    out = []
    for i, (s, t) in enumerate(zip(stored, t_leaves)):
        if isinstance(t, jax.Array) and jnp.issubdtype(t.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(jnp.asarray(s)))
            continue
        t = np.asarray(t)
        if s.shape != t.shape or s.dtype != t.dtype:
            raise ValueError(f"checkpoint {path}: array {i} is {s.dtype}{s.shape},"
                             f" expected {t.dtype}{t.shape}")
        out.append(jnp.asarray(s))
    return jax.tree.unflatten(treedef, out), meta
