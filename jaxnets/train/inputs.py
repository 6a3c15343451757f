"""Checks of everything :func:`jaxnets.train.fit` and :func:`~jaxnets.train.sweep` are given,
done once before anything is compiled (the jitted steps then trust their inputs), and the run's
fingerprint that a resumed run must match.

Every refusal is a ``ValueError`` naming the argument (a :class:`~jaxnets.errors.DataError`
naming the array when the data themselves are bad).
"""
from __future__ import annotations

import inspect
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import DataError
from jaxnets.nn import losses as losses_mod

ORDERS = ("fixed", "shuffle", "replacement")
GRADS = ("hand", "autodiff")


def stochastic(model) -> bool:
    """True when the model draws randomness (dropout): the engine then passes it a per-step key."""
    return bool(getattr(model, "stochastic", False))


def input_dtype(model) -> str:
    """"float" (x is cast to the params' dtype) or "int" (token ids, kept integer)."""
    return getattr(model, "input_dtype", "float")


def label_kind(model) -> str:
    """"sign" for a head trained on ±1 labels (doc 003's logistic loss), else "class"."""
    head = getattr(model, "head", None)
    kind = getattr(head, "labels", None)
    if kind is None:  # heads that do not say it yet: only the logistic one takes ±1
        kind = "sign" if head is losses_mod.LOSSES["logistic"] else "class"
    return kind


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_int(where: str, name: str, value, lo: int = 1, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi]; a float such as 2.5 (or a bool) is refused, not rounded."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < lo or (hi is not None and value > hi):
        span = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{where}: {name} must be an integer {span}, got {value!r}")
    return int(value)


def check_hyper(where: str, nonnegative: bool = True, **values) -> None:
    """Each hyperparameter (a scalar, or one value per sweep configuration) finite, and >= 0
    unless ``nonnegative`` is False."""
    for name, v in values.items():
        a = np.asarray(v, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(a) | ((a < 0) & nonnegative))
        if bad.size:
            first = float(a.reshape(-1)[bad[0]])
            what = "finite" if not np.isfinite(first) else ">= 0"
            at = f"[{int(bad[0])}]" if a.ndim else ""
            raise ValueError(f"{where}: {name}{at} must be {what}, got {first!r}")


#: optimizer hyperparameters with a bound beyond ``>= 0``: (test, the words of the bound)
_BOUNDS = {"lr_decay": (lambda a: a > 0, "> 0 (a decay of 0 stops training after the first epoch)"),
           "momentum": (lambda a: a < 1, "< 1 (the velocity would never decay)"),
           "b1": (lambda a: a < 1, "< 1"), "b2": (lambda a: a < 1, "< 1")}


#: injected hyperparameters that are never negative (others, such as ``optax.scale``'s negative
#: ``step_size`` or ``polyak_sgd``'s ``f_min``, need only be finite)
_NONNEGATIVE = frozenset({"learning_rate", "lr", "lr_decay", "momentum", "b1", "b2", "eps", "eps_root",
                          "weight_decay", "decay", "l2"})


def check_injected(where: str, values: dict, label=lambda name: name) -> None:
    """The optimizer's injected hyperparameters (``optax.inject_hyperparams``: ``train.sgd``, or a
    sweep's configs), each a scalar or one value per configuration: finite; >= 0 for the names of
    :data:`_NONNEGATIVE`, with the bounds of :data:`_BOUNDS` (``label``: the name to print)."""
    for name, v in values.items():
        if name == "epoch":
            continue
        a = np.asarray(v, dtype=np.float64)
        check_hyper(where, name in _NONNEGATIVE, **{label(name): a})
        test, words = _BOUNDS.get(name, (None, None))
        bad = np.flatnonzero(~test(a.reshape(-1))) if test else ()
        if len(bad):
            at = f"[{int(bad[0])}]" if a.ndim else ""
            raise ValueError(f"{where}: {label(name)}{at} must be {words}, got {float(a.reshape(-1)[bad[0]])!r}")


def _check_finite(where: str, a: np.ndarray) -> None:
    if np.issubdtype(a.dtype, np.inexact):
        bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        if bad.any():
            raise DataError(f"{where} holds NaN/Inf in {int(bad.sum())} example(s), first at index "
                            f"{int(np.flatnonzero(bad)[0])}")


def _check_x(model, where: str, x: np.ndarray) -> None:
    if x.shape[1:] != tuple(model.in_shape):
        raise ValueError(f"{where} must have shape (N, {', '.join(map(str, model.in_shape))}), got {x.shape}")
    if input_dtype(model) == "int":
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"{where} must hold integer token ids for {model.name}, got {x.dtype}")
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where} must be floating point, got {x.dtype}")
    _check_finite(where, x)


def _check_y(model, where: str, y: np.ndarray) -> None:
    n, out = len(y), tuple(model.out_shape)
    labels, tgt = (n,) + out[:-1], (n,) + out
    if y.dtype == np.bool_:
        raise ValueError(f"{where}: got bool labels; give integer class labels {labels} in "
                         f"[0, {out[-1]}) (±1 for a logistic head) or float targets {tgt}")
    kind = label_kind(model)
    if np.issubdtype(y.dtype, np.integer) or kind == "sign":
        if y.shape != labels:
            raise ValueError(f"{where}: integer labels must have shape {labels}, got {y.shape}")
        _check_finite(where, y)
        if kind == "sign":
            if not np.all(np.isin(y, (-1, 1))):
                raise ValueError(f"{where}: labels must be -1 or +1 for a logistic head")
        else:
            losses_mod.check_labels(y, out[-1], where)
        return
    if not np.issubdtype(y.dtype, np.floating):
        raise ValueError(f"{where} must be integer labels or float targets, got {y.dtype}")
    if y.shape != tgt:
        raise ValueError(f"{where}: float targets must have shape {tgt}, got {y.shape}"
                         + ("; class labels must be an integer array" if y.shape == labels else ""))
    _check_finite(where, y)
    if target_kind(model) == "probabilities":
        _check_probabilities(model, where, y, labels)


def target_kind(model) -> str:
    """"probabilities" (float targets must be rows of a distribution: a cross-entropy head) or
    "real" (any finite float target: a regression head); see :func:`losses.target_kind`."""
    head = getattr(model, "head", None)
    return "real" if head is None else losses_mod.target_kind(head)


def probability_tolerance(dtype) -> float:
    """How far a row of float targets of ``dtype`` may sum from 1: 1e-5 for float32/float64 (a
    float32 softmax or label-smoothed row is a few ulps, ~1e-7, off), 8 ulps of 1 for a coarser
    dtype (float16: 7.8e-3). The sums are taken in float64."""
    return max(1e-5, 8 * float(np.finfo(dtype).eps))


def _check_probabilities(model, where: str, y: np.ndarray, labels) -> None:
    """Float targets of a cross-entropy head: every row a probability distribution (entries >= 0,
    the row's sum within :func:`probability_tolerance` of 1). ``-onehot`` or ``2·onehot`` would
    train on a loss with no minimum (the hand backward ``softmax(s) - t`` also assumes rows that
    sum to 1) and score accuracy against the arg-max of nonsense. One host pass over y, once per
    data set and fit/sweep/evaluate call."""
    K = y.shape[-1]
    rows = y.reshape(-1, K)
    tol = probability_tolerance(y.dtype)
    neg = (rows < 0).any(axis=1)
    sums = rows.sum(axis=1, dtype=np.float64)
    bad = neg | ~(np.abs(sums - 1.0) <= tol)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    at = np.unravel_index(i, y.shape[:-1])
    row = f"row {int(at[0])}" if len(at) == 1 else f"row {tuple(int(j) for j in at)}"
    shown = ", ".join(f"{float(v):.6g}" for v in rows[i, :8]) + (", …" if K > 8 else "")
    if neg[i]:
        k = int(np.flatnonzero(rows[i] < 0)[0])
        what = f"has a negative entry ({float(rows[i, k]):.6g} in column {k})"
    else:
        what = f"sums to {float(sums[i]):.9g}, not 1"
    n_bad = int(bad.sum())
    raise DataError(f"{where}: float targets for {model.name}'s cross-entropy head must be probability "
                    f"rows (every entry >= 0, each row summing to 1 within {tol:g}); {row} {what}: "
                    f"[{shown}] ({n_bad} of {len(rows)} rows are not distributions). Give integer class "
                    f"labels of shape {labels} in [0, {K}), or targets normalised per row")


def arrays(model, where: str, data, dtype):
    """Validate ``data = (X, Y)``; returns them as device arrays, x cast to ``dtype`` for a
    float-input model (token ids are kept integer)."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(f"{where} must be a pair (X, Y) or a Sampler, got {type(data).__name__}")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{where} is empty (x has shape {x.shape})")
    if y.ndim == 0 or len(x) != len(y):
        raise ValueError(f"{where} has {len(x)} inputs but {y.shape[0] if y.ndim else 0} labels")
    _check_x(model, f"{where} x", x)
    _check_y(model, f"{where} labels", y)
    return jnp.asarray(x, dtype if input_dtype(model) == "float" else None), jnp.asarray(y)


def sampler(model, where: str, s, batch_size: int, key):
    """Check a Sampler: its step count, and the shapes of one batch (traced, nothing computed)."""
    check_int(where, "steps_per_epoch", s.steps_per_epoch)
    if not callable(s.sample):
        raise ValueError(f"{where}: Sampler.sample must be a function sample(key, batch_size, *data) "
                         f"-> (xb, yb), got {type(s.sample).__name__}")
    if not isinstance(s.data, tuple):
        raise ValueError(f"{where}: Sampler.data must be a tuple of the arrays sample reads, e.g. "
                         f"data=(corpus,), got {type(s.data).__name__}"
                         + (f" of shape {np.shape(s.data)}" if hasattr(s.data, "shape") else ""))
    try:
        inspect.signature(s.sample).bind(key, batch_size, *s.data)
    except TypeError as e:
        raise ValueError(f"{where}: Sampler.sample is called as sample(key, batch_size, *data) with "
                         f"{len(s.data)} data array(s), i.e. {2 + len(s.data)} positional arguments; "
                         f"its signature {_signature(s.sample)} does not accept them ({e})") from None
    except ValueError:  # a builtin without a signature: checked by the trace below
        pass
    for i, a in enumerate(s.data):   # the arrays' own NaN/Inf, as (X, Y) data are checked
        if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact):
            bad = ~np.isfinite(np.asarray(a)).reshape(-1)
            if bad.any():
                raise DataError(f"{where}: Sampler.data[{i}] (shape {tuple(np.shape(a))}) holds NaN/Inf in "
                                f"{int(bad.sum())} entr{'y' if bad.sum() == 1 else 'ies'}, the first at flat "
                                f"index {int(np.flatnonzero(bad)[0])}")
    xb, yb = jax.eval_shape(lambda k, *d: s.sample(k, batch_size, *d), key, *s.data)
    if tuple(xb.shape) != (batch_size, *model.in_shape):
        raise ValueError(f"{where}: sample(key, {batch_size}) gave x of shape {tuple(xb.shape)}, "
                         f"expected {(batch_size, *model.in_shape)}")
    if (input_dtype(model) == "int") != bool(jnp.issubdtype(xb.dtype, jnp.integer)):
        raise ValueError(f"{where}: sample gave x of dtype {xb.dtype} for a model with "
                         f"{input_dtype(model)} inputs")
    if yb.shape[:1] != (batch_size,):
        raise ValueError(f"{where}: sample(key, {batch_size}) gave y of shape {tuple(yb.shape)}")
    return s


def fingerprint(obj, depth: int = 0):
    """A JSON-able description of ``obj`` that changes when its values do: numbers and strings as
    themselves, arrays as shape, dtype and a CRC-32 of their bytes, functions (an optax
    transformation's ``update``, a sampler's ``sample``) by name and the values they close over."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.ndarray, jax.Array, np.generic)):
        if isinstance(obj, jax.Array) and jnp.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        a = np.ascontiguousarray(np.asarray(obj))
        return {"shape": list(a.shape), "dtype": str(a.dtype), "crc32": zlib.crc32(a.view(np.uint8).reshape(-1))}
    if depth > 8:
        return type(obj).__name__
    if isinstance(obj, dict):
        return {str(k): fingerprint(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [fingerprint(v, depth + 1) for v in obj]
    if callable(obj):
        cells = [c.cell_contents for c in (getattr(obj, "__closure__", None) or ()) if _filled(c)]
        return {"fn": getattr(obj, "__qualname__", type(obj).__name__),
                "closure": [fingerprint(v, depth + 1) for v in cells if not isinstance(v, type)]}
    return type(obj).__name__


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a closure cell not yet assigned
        return False
    return True


def check_key(where: str, name: str, key):
    """``key`` as a typed PRNG key (None → ``jax.random.key(0)``; a raw uint32 (2,) key, as
    ``jax.random.PRNGKey`` gives, is wrapped); anything else is refused naming the argument."""
    if key is None:
        return jax.random.key(0)
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    what = f"{type(key).__name__} {key!r}" if np.ndim(key) == 0 else f"array of shape {np.shape(key)}"
    raise ValueError(f"{where}: {name} must be one PRNG key such as jax.random.key(42), got {what}")


def key_fingerprint(key) -> dict:
    """What a resumed run's ``key`` must match: the PRNG implementation's name and a SHA-256 (first
    16 hex digits) of the key data's little-endian bytes (nothing of the key itself is stored in
    the metadata)."""
    import hashlib
    data = np.asarray(jax.random.key_data(key))
    raw = np.ascontiguousarray(data, data.dtype.newbyteorder("<")).tobytes()
    return {"impl": str(jax.random.key_impl(key)), "sha256": hashlib.sha256(raw).hexdigest()[:16]}


def check_precision(where: str, params) -> None:
    """Refuse params below float32: the hand-written backward rules compute in the params' dtype
    and the engine has no float32 master copy, so float16/bfloat16 training would lose the
    updates (bfloat16 keeps 8 bits of mantissa) or overflow (float16 stops at 65504)."""
    for path, v in jax.tree_util.tree_leaves_with_path(params):
        dt = jnp.result_type(v)
        if jnp.issubdtype(dt, jnp.floating) and jnp.finfo(dt).bits < 32:
            raise ValueError(f"{where}: params{jax.tree_util.keystr(path)} is {dt}; training in "
                             f"float16/bfloat16 is not supported (no float32 master weights). Train "
                             f"in float32 (jax.tree.map(lambda v: v.astype(jnp.float32), params)); "
                             f"evaluate() accepts low-precision params")


def check_params(model, where: str, params, stacked: bool = False) -> int | None:
    """``params`` against the model's own tree (``jax.eval_shape(model.init, key)``): same tree
    structure and leaf shapes, or (``stacked``, a sweep) the same shapes behind one common
    leading axis. Returns that axis' size (None for unstacked params)."""
    ref = jax.eval_shape(model.init, jax.random.key(0))
    ref_paths, ref_def = jax.tree_util.tree_flatten_with_path(ref)
    leaves, tdef = jax.tree.flatten(params)
    if tdef != ref_def:
        raise ValueError(f"{where}: params do not have {model.name}'s structure: got {tdef}, "
                         f"expected {ref_def} (as model.init gives)")
    for v, (path, _) in zip(leaves, ref_paths):
        if not jnp.issubdtype(jnp.result_type(v), jnp.floating):
            # an update would be cast back into the integers (or the gradient refused): a constant
            # belongs in the layer's closure or its cache, not in its params
            raise ValueError(f"{where}: params{jax.tree_util.keystr(path)} has dtype {jnp.result_type(v)}: every "
                             "parameter must be a float array")
    shapes = [tuple(np.shape(v)) for v in leaves]
    if all(s == r.shape for s, (_, r) in zip(shapes, ref_paths)):
        return None
    lead = {s[:1] for s, (_, r) in zip(shapes, ref_paths) if s[1:] == r.shape and len(s) == len(r.shape) + 1}
    if stacked and len(lead) == 1 and all(s[1:] == r.shape for s, (_, r) in zip(shapes, ref_paths)):
        return lead.pop()[0]
    for s, (path, r) in zip(shapes, ref_paths):
        if s != r.shape and not (stacked and s[1:] == r.shape):
            raise ValueError(f"{where}: params{jax.tree_util.keystr(path)} has shape {s} but "
                             f"{model.name} expects {tuple(r.shape)}"
                             + (" (or that with a leading config axis)" if stacked else "")
                             + "; were the params made for another model?")
    raise ValueError(f"{where}: stacked params disagree on the config axis: {sorted(lead)}")


def token_ids(model, where: str, x, params) -> None:
    """Token ids must lie in the model's vocabulary: checked by ``model.apply`` itself (the check
    every token model runs on concrete input) on a two-row probe holding the smallest and the
    largest id of ``x`` (zeros elsewhere), so fit/evaluate/sweep refuse what ``model.apply``
    refuses; negative ids are refused for every token model."""
    if input_dtype(model) != "int" or np.size(x) == 0:
        return
    lo, hi = int(np.min(x)), int(np.max(x))
    if lo < 0:
        raise DataError(f"{where}: token ids must be >= 0; found {lo}")
    probe = np.zeros((2,) + x.shape[1:], x.dtype)
    probe.flat[0], probe.flat[-1] = lo, hi
    try:
        model.apply(params, jnp.asarray(probe))
    except ValueError as e:
        raise DataError(f"{where} holds ids from {lo} to {hi}, which {model.name}.apply refuses: {e}") from None


def model_digest(model, params, x_spec, y_spec) -> dict:
    """What a checkpoint's model must match: its name and a digest of the jaxpr of its loss on
    abstract inputs (architecture, activations, loss head; object addresses left out)."""
    import hashlib
    import re
    p_spec = jax.tree.map(lambda v: jax.ShapeDtypeStruct(np.shape(v), jnp.result_type(v)), params)
    text = str(jax.make_jaxpr(lambda p, x, y: model.loss(p, x, y))(p_spec, x_spec, y_spec))
    text = re.sub(r"0x[0-9a-fA-F]+", "", text)
    return {"name": model.name, "loss_jaxpr_sha256": hashlib.sha256(text.encode()).hexdigest()[:32]}


def _signature(fn) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(?)"
