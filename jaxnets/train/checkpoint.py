"""Atomic checkpoints of pytrees (params, optimizer state, RNG key) plus JSON metadata.

A checkpoint is one ``.npz`` file: the pytree's leaves as ``leaf_00000 …``, a JSON string
``__tree__`` describing the tree (its structure and every leaf's shape and dtype) and a JSON string
``__meta__``. It is written through :func:`jaxnets._io.atomic_write`, so a process killed mid-write
leaves the previous checkpoint intact. Loading needs a *template* pytree of the same structure
(e.g. freshly initialised params and optimizer state), which keeps the file free of pickled code;
every array is checked against both the stored description and the template, and the zip
container's CRC-32 catches flipped bits. Any problem raises :class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets._io import atomic_write
from jaxnets.errors import CheckpointError


def jsonable(obj):
    """``obj`` as it reads back from JSON (tuples become lists, …), for comparisons with meta."""
    return json.loads(json.dumps(obj))


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_numpy(leaf):
    return np.asarray(jax.random.key_data(leaf)) if _is_key(leaf) else np.asarray(leaf)


def _describe(tree) -> dict:
    leaves, treedef = jax.tree.flatten(tree)
    return {"treedef": str(treedef),
            "leaves": [{"shape": list(np.shape(_to_numpy(v))), "dtype": str(_to_numpy(v).dtype),
                        "key": _is_key(v)} for v in leaves]}


def save(path: str | os.PathLike, tree, meta: dict | None = None) -> None:
    """Write ``tree`` (any pytree of arrays / typed PRNG keys) and ``meta`` atomically to ``path``."""
    path = os.fspath(path)
    arrays = {f"leaf_{i:05d}": _to_numpy(v) for i, v in enumerate(jax.tree.leaves(tree))}
    arrays["__tree__"] = np.array(json.dumps(_describe(tree)))
    arrays["__meta__"] = np.array(json.dumps(meta or {}))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _read(path: str):
    """(tree description, meta, stored arrays) of the file, or CheckpointError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            desc = json.loads(str(z["__tree__"]))
            meta = json.loads(str(z["__meta__"]))
            stored = [z[f"leaf_{i:05d}"] for i in range(len(desc["leaves"]))]
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint {path}: no such file") from e
    except KeyError as e:
        raise CheckpointError(f"checkpoint {path}: not a jaxnets checkpoint or incomplete "
                              f"(missing {e})") from e
    except Exception as e:  # truncated / bit-flipped zip, bad JSON, …: the file is corrupt
        raise CheckpointError(f"checkpoint {path}: corrupt or truncated "
                              f"({type(e).__name__}: {e})") from e
    return desc, meta, stored


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata of the checkpoint at ``path`` (the whole file is read and checked)."""
    return _read(os.fspath(path))[1]


def load(path: str | os.PathLike, template):
    """Read a checkpoint written by :func:`save` into the structure of ``template``.

    Returns ``(tree, meta)``. Raises :class:`CheckpointError` naming the file when it is
    unreadable or corrupt, when its tree structure differs from the template's (a list where a
    dict was saved, other keys, …), or when a leaf's shape or dtype differs from the stored
    description or the template's.
    """
    path = os.fspath(path)
    desc, meta, stored = _read(path)
    want = _describe(template)
    if desc.get("treedef") != want["treedef"]:
        raise CheckpointError(f"checkpoint {path}: tree structure {desc.get('treedef')} differs "
                              f"from the expected {want['treedef']}")
    t_paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for i, (s, d, w, (where, t)) in enumerate(zip(stored, desc["leaves"], want["leaves"], t_paths)):
        got = {"shape": list(s.shape), "dtype": str(s.dtype), "key": d.get("key")}
        if got != d or got != w:
            raise CheckpointError(f"checkpoint {path}: array {i} {jax.tree_util.keystr(where)} is {s.dtype}{tuple(s.shape)} "
                                  f"(stored as {d['dtype']}{tuple(d['shape'])}), expected "
                                  f"{w['dtype']}{tuple(w['shape'])}")
        out.append(jax.random.wrap_key_data(jnp.asarray(s), impl=jax.random.key_impl(t))
                   if _is_key(t) else jnp.asarray(s))
    return jax.tree.unflatten(treedef, out), meta
