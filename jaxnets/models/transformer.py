"""A tiny decoder-only character transformer (doc 003 Problem 4): a composition of the Layers of
:mod:`jaxnets.nn.attention` behind the library's :class:`Model` contract.

The architecture is the minimal GPT of the course's notebook (Karpathy's "Let's build GPT")::

    x  = tok_emb[idx] + pos_emb[:T]                           (B, T, d)
    for each of n_layer blocks:
        x = x + dropout(proj(concat_h attention_h(ln1(x))))    causal, softmax(c · q kᵀ), dropout
        x = x + dropout(W2 relu(W1 ln2(x) + b1) + b2)          d -> 4d -> d
    logits = ln_f(x) W_head + b_head                           (B, T, V)
    loss   = mean softmax cross-entropy(logits, targets)       (nats per character)

that is, ``serial(embedding, n_layer × block, layer_norm, dense)`` with ``block =
serial(residual(serial(layer_norm, multi_head_attention)), residual(serial(layer_norm,
feed_forward)))`` (:func:`stack`, :func:`block`). The notebook scales attention scores by ``c =
n_embd ** -0.5`` (a quirk later versions of the same code fixed to ``head_size ** -0.5``);
:class:`TransformerConfig` selects either. Its initialisation is PyTorch's default (``nn.Linear``:
weights and biases U(±1/√fan_in); ``nn.Embedding``: N(0, 1); LayerNorm: gain 1, bias 0), drawn
as one sample per distribution (:func:`init_params`); ``init="gpt"`` is the later N(0, 0.02²).

``transformer(cfg)`` returns a :class:`~jaxnets.models.Model` (``input_dtype="int"``: x holds token
ids (N, T) with T <= block_size, y the next ids (N, T)); :func:`generate` samples text.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnets.models.base import Model, sequential
from jaxnets.nn import attention as A
from jaxnets.nn import initializers
from jaxnets.nn import layers as L

ATTN_SCALES = ("n_embd", "head")
INITS = ("pytorch", "gpt")


class TransformerConfig(NamedTuple):
    """Hyperparameters of :func:`transformer` (hashable: it is a static argument under jit).

    ``attn_scale``: "n_embd" (scores · n_embd^-0.5, doc 003's notebook) or "head" (head_size^-0.5).
    ``init``: "pytorch" (PyTorch's defaults, the notebook's) or "gpt" (N(0, 0.02²), zero biases).
    ``fast_grads``: the weight gradients from materialised transposes, which XLA:CPU sends to its
    faster GEMM kernels (:func:`jaxnets.nn.attention.dense_backward_fast`; equal to the plain
    products up to round-off, not bit for bit). ``None`` (the default): on where the default
    backend is a CPU, where it was measured faster (the README's Performance section), off
    elsewhere (a GPU's GEMMs read a transposed operand directly; not measured there).
    :meth:`validated` resolves it to a bool.
    """
    vocab: int
    block_size: int
    n_embd: int
    n_head: int
    n_layer: int
    dropout: float = 0.0
    attn_scale: str = "n_embd"
    init: str = "pytorch"
    fast_grads: bool | None = None

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def scale(self) -> float:
        return float(self.n_embd if self.attn_scale == "n_embd" else self.head_size) ** -0.5

    @property
    def name(self) -> str:
        return (f"transformer-V{self.vocab}-T{self.block_size}-d{self.n_embd}-h{self.n_head}"
                f"-L{self.n_layer}")

    def validated(self) -> "TransformerConfig":
        """The same config with ints and floats normalised and ``fast_grads`` resolved to a bool
        (None: on for a CPU backend); ValueError naming a bad field."""
        for nm in ("vocab", "block_size", "n_embd", "n_head", "n_layer"):
            v = getattr(self, nm)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"transformer: {nm} must be a positive integer, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"transformer: n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"transformer: dropout must lie in [0, 1), got {self.dropout}")
        if self.attn_scale not in ATTN_SCALES:
            raise ValueError(f"transformer: attn_scale must be one of {ATTN_SCALES}, got {self.attn_scale!r}")
        if self.init not in INITS:
            raise ValueError(f"transformer: init must be one of {INITS}, got {self.init!r}")
        if self.fast_grads is not None and not isinstance(self.fast_grads, (bool, np.bool_)):
            raise ValueError(f"transformer: fast_grads must be a bool or None, got {self.fast_grads!r}")
        fast = jax.default_backend() == "cpu" if self.fast_grads is None else bool(self.fast_grads)
        return self._replace(**{nm: int(getattr(self, nm)) for nm in
                                ("vocab", "block_size", "n_embd", "n_head", "n_layer")},
                             dropout=float(self.dropout), fast_grads=fast)


# ----------------------------------------------------------------------------- composition

def _validated(cfg, where: str) -> TransformerConfig:
    """``cfg.validated()``; anything but a TransformerConfig refused naming ``where``."""
    if not isinstance(cfg, TransformerConfig):
        raise ValueError(f"{where}: cfg must be a transformer.TransformerConfig(vocab, block_size, n_embd, "
                        f"n_head, n_layer, ...), got {type(cfg).__name__}")
    return cfg.validated()


def block(cfg: TransformerConfig) -> L.Layer:
    """One pre-norm transformer block as a Layer: x (B, T, d) -> (B, T, d)::

        x1 = x + mha(ln1(x));  y = x1 + ffn(ln2(x1))

    params ``[[ln1, attn], [ln2, ffn]]`` (see :func:`init_params`)."""
    fast = _validated(cfg, "transformer.block").fast_grads
    return L.serial(L.residual(L.serial(A.layer_norm(), A.multi_head_attention(
                        cfg.n_head, cfg.dropout, cfg.scale, fast))),
                    L.residual(L.serial(A.layer_norm(), A.feed_forward(cfg.dropout, fast))))


def stack(cfg: TransformerConfig) -> L.Layer:
    """The whole network as one Layer: token ids (B, T) int -> logits (B, T, V)::

        serial(embedding, block × n_layer, layer_norm, dense(V))

    with the init of :func:`init_params` (PyTorch's defaults, one draw per distribution)."""
    cfg = _validated(cfg, "transformer.stack")
    head = L.dense(cfg.vocab)
    if cfg.fast_grads:      # identity activation: the cache is (dense cache, None)
        head = head._replace(backward=lambda cache, dy: A.dense_backward_fast(cache[0], dy))
    layer = L.serial(A.embedding(cfg.vocab, cfg.block_size, cfg.n_embd, cfg.fast_grads),
                     *[block(cfg) for _ in range(cfg.n_layer)],
                     A.layer_norm(), head)
    return layer._replace(init=_stack_init(cfg))


# ----------------------------------------------------------------------------- init

class _Draw(NamedTuple):
    """One parameter's initial distribution: ``scale · N(0, 1)``, ``scale · U(−1, 1)`` or a constant."""
    shape: tuple
    kind: str       # "normal" | "uniform" | "const"
    scale: float


def _draw_layout(cfg: TransformerConfig):
    """A :class:`_Draw` for every parameter, in the notebook's named layout {"tok_emb", "pos_emb",
    "blocks": [{"ln1", "attn", "ln2", "ffn"}], "ln_f", "head"}. Its flatten order is the order the
    values are cut from one draw per distribution, kept so that a key gives the initial values it
    always gave (and every E7 number stays what the records say)."""
    d, V = cfg.n_embd, cfg.vocab
    pt = cfg.init == "pytorch"

    def linear(n_in, n_out, bias=True):     # nn.Linear: U(±1/√fan_in) for W and b
        w = _Draw((n_in, n_out), "uniform", n_in ** -0.5) if pt else _Draw((n_in, n_out), "normal", 0.02)
        if not bias:
            return w
        return {"W": w, "b": _Draw((n_out,), "uniform", n_in ** -0.5) if pt else _Draw((n_out,), "const", 0.0)}

    def ln():
        return {"g": _Draw((d,), "const", 1.0), "b": _Draw((d,), "const", 0.0)}

    emb = 1.0 if pt else 0.02                # nn.Embedding: N(0, 1)
    blk = {"ln1": ln(), "attn": {"Wq": linear(d, d, False), "Wk": linear(d, d, False),
                                 "Wv": linear(d, d, False), "proj": linear(d, d)},
           "ln2": ln(), "ffn": {"fc1": linear(d, 4 * d), "fc2": linear(4 * d, d)}}
    return {"tok_emb": _Draw((V, d), "normal", emb), "pos_emb": _Draw((cfg.block_size, d), "normal", emb),
            "blocks": [blk] * cfg.n_layer, "ln_f": ln(), "head": linear(d, V)}


def _draw(key, cfg: TransformerConfig, dtype):
    """The named layout of :func:`_draw_layout` filled: one draw per distribution, cut into pieces
    (a single random-bits kernel compiles much faster than one per matrix)."""
    leaves, tdef = jax.tree.flatten(_draw_layout(cfg), is_leaf=lambda v: isinstance(v, _Draw))
    draws = {"normal": lambda k, n: initializers.normal_draw(k, (n,), dtype),
             "uniform": lambda k, n: initializers.uniform_draw(k, (n,), dtype, -1.0, 1.0)}
    flat = {}
    for k, (kind, draw) in zip(jax.random.split(key, len(draws)), draws.items()):
        sizes = [math.prod(v.shape) for v in leaves if v.kind == kind]
        flat[kind] = (draw(k, sum(sizes)), itertools.accumulate(sizes, initial=0))
    out = []
    for v in leaves:
        if v.kind == "const":
            out.append(jnp.full(v.shape, v.scale, dtype))
            continue
        values, offsets = flat[v.kind]
        o = next(offsets)
        out.append(v.scale * jnp.reshape(values[o:o + math.prod(v.shape)], v.shape))
    return jax.tree.unflatten(tdef, out)


def init_params(key, cfg: TransformerConfig, dtype=jnp.float32):
    """Parameters of :func:`stack`, drawn as :func:`_draw_layout` says::

        [{"tok": (V, d), "pos": (block_size, d)},                                  embedding
         [[{"g", "b": (d,)}, {"Wq", "Wk", "Wv": (d, d), "proj": {"W": (d, d), "b": (d,)}}],
          [{"g", "b": (d,)}, {"fc1": {"W": (d, 4d), "b": (4d,)}, "fc2": {"W": (4d, d), "b": (d,)}}]]
                                                                     × n_layer    blocks
         {"g", "b": (d,)},                                                         ln_f
         {"W": (d, V), "b": (V,)}]                                                 head

    Head h's q/k/v maps are columns ``h·hs:(h+1)·hs`` of Wq/Wk/Wv (fan_in d, as the notebook's
    per-head ``nn.Linear(n_embd, head_size)``).
    """
    p = _draw(key, _validated(cfg, "transformer.init_params"), dtype)
    blocks = [[[b["ln1"], b["attn"]], [b["ln2"], b["ffn"]]] for b in p["blocks"]]
    return [{"tok": p["tok_emb"], "pos": p["pos_emb"]}, *blocks, p["ln_f"], p["head"]]


def _stack_init(cfg: TransformerConfig):
    """The Layer init of :func:`stack`: in_shape (T,), T <= block_size -> ((T, V), params)."""
    # One compilation instead of ~50 eager ops; init runs once, so XLA's optimisations are skipped.
    jitted = jax.jit(init_params, static_argnums=(1, 2),
                     compiler_options={"xla_backend_optimization_level": 0})

    def init(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != 1 or not 1 <= int(in_shape[0]) <= cfg.block_size:
            raise ValueError(f"{cfg.name}: expected an input shape (T,) with T <= block_size="
                             f"{cfg.block_size}, got {tuple(in_shape)}")
        if isinstance(key, jax.core.Tracer):   # under vmap/jit/eval_shape: a nested jit takes no options
            return (int(in_shape[0]), cfg.vocab), init_params(key, cfg, jnp.dtype(dtype))
        return (int(in_shape[0]), cfg.vocab), jitted(key, cfg, jnp.dtype(dtype))

    return init


# ----------------------------------------------------------------------------- model

def transformer(cfg: TransformerConfig) -> Model:
    """The character transformer as a :class:`~jaxnets.models.Model`: :func:`stack` with the
    token cross-entropy head.

    x: (N, T) int token ids, T <= block_size -> scores (N, T, V) logits; y: (N, T) next ids;
    ``mask`` (N,) weights whole sequences; ``l2`` reaches the weight matrices (Wq, Wk, Wv, proj,
    fc1, fc2, head), never biases, gains or embeddings (AdamW's decoupled weight decay is the
    optimizer's, not the loss's). ``key`` turns dropout on.
    ``in_shape = (block_size,)``, ``out_shape = (block_size, V)`` describe a full window.
    """
    cfg = _validated(cfg, "transformer.transformer")
    return sequential(stack(cfg), "token_cross_entropy", (cfg.block_size,), "int", cfg.name)


# ----------------------------------------------------------------------------- generation

# The compiled sampler holds a (P + n,) int32 buffer and n PRNG keys (about 12 bytes per token):
# 2**24 tokens is ~200 MB. Longer text: call generate again with the last block_size ids.
MAX_NEW_TOKENS = 2 ** 24
# |logits / temperature| above which the sampler shifts by the maximum first (:func:`_scaled`):
# float32's spacing there is 2**-12, so noise of order 1 is still resolved to 2**-12 below it.
SHIFT_ABOVE = 2.0 ** 11


def _scaled(row, temperature):
    """``row / temperature`` (V,) as the sampler uses it, ``argmax(row / T + Gumbel noise)``.

    When ``|row / T|`` is large the noise (O(1)) is lost in the quotient's rounding: tied or
    near-tied maxima go to the first of them, and past the dtype's range the quotient overflows to
    ±inf (argmax then takes the first +inf, not a draw). Then the same distribution is sampled as
    ``softmax((row - max row) / T)``: the competitive entries are near 0, where the noise is
    resolved, and entries far below the maximum become -inf (probability exp(-huge) = 0).
    Below :data:`SHIFT_ABOVE` the quotient is the plain ``row / T`` it always was."""
    q = row / temperature
    plain = jnp.all(jnp.isfinite(q)) & (jnp.max(jnp.abs(q)) <= SHIFT_ABOVE)
    return jnp.where(plain, q, (row - jnp.max(row)) / temperature)


def _generate(params, key, prompt, temperature, cfg: TransformerConfig, n: int, top_k):
    P = prompt.shape[0]
    forward = stack(cfg).forward
    buf = jnp.zeros((max(P + n, cfg.block_size),), jnp.int32).at[:P].set(prompt)

    def step(carry, k):
        buf, length = carry                 # tokens buf[:length] are valid
        start = jnp.maximum(length - cfg.block_size, 0)
        window = lax.dynamic_slice(buf, (start,), (cfg.block_size,))           # (block_size,)
        logits = forward(params, window[None, :])[0][0]                         # (block_size, V)
        # Causality: positions after length-1 (zeros) never influence this row.
        row = lax.dynamic_index_in_dim(logits, length - 1 - start, keepdims=False)  # (V,)
        row = _scaled(row, temperature.astype(row.dtype))
        if top_k is not None:               # keep the k largest logits (ties at the k-th kept)
            kth = lax.top_k(row, top_k)[0][-1]
            row = jnp.where(row < kth, -jnp.inf, row)
        tok = jax.random.categorical(k, row).astype(jnp.int32)
        buf = lax.dynamic_update_slice(buf, tok[None], (length,))
        return (buf, length + 1), None

    (buf, _), _ = lax.scan(step, (buf, jnp.int32(P)), jax.random.split(key, n))
    return buf[:P + n]


_generate_jit = jax.jit(_generate, static_argnames=("cfg", "n", "top_k"))


@functools.lru_cache(maxsize=32)
def _param_shapes(cfg: TransformerConfig, dtype):
    """The shapes and tree of ``stack(cfg)``'s params (no values computed)."""
    return jax.eval_shape(lambda k: stack(cfg).init(k, (cfg.block_size,), dtype)[1], jax.random.key(0))


def _check_params(cfg: TransformerConfig, params):
    """The params' dtype; ValueError when their tree or a shape is not what ``cfg`` builds (a
    vocab-20 model's params under a vocab-10 config would sample ids up to 19)."""
    leaves = jax.tree.leaves(params)
    dtype = jnp.result_type(leaves[0]) if leaves else None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"generate: params must be a tree of floating-point arrays, got leaf dtype {dtype}")
    want = _param_shapes(cfg, jnp.dtype(dtype))
    if jax.tree.structure(params) != jax.tree.structure(want):
        raise ValueError(f"generate: params do not fit cfg ({cfg.name}): their tree is not the one "
                         f"init_params(cfg) gives (n_layer={cfg.n_layer})")
    for (path, got), w in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(want)):
        if tuple(np.shape(got)) != w.shape:
            raise ValueError(f"generate: params do not fit cfg ({cfg.name}): params"
                             f"{jax.tree_util.keystr(path)} has shape {tuple(np.shape(got))}, "
                             f"the config gives {w.shape}")
    return jnp.dtype(dtype)


def _check_temperature(temperature, dtype):
    """ValueError unless the temperature is a positive normal number of ``dtype``, the params'
    dtype in which ``logits / temperature`` is computed: below that range it rounds to 0 (or loses
    its precision), above it to inf, and the sampling would no longer be softmax(logits / T)
    (float32: [1.18e-38, 3.40e38])."""
    fi = jnp.finfo(dtype)
    if isinstance(temperature, (bool, np.bool_)):
        raise ValueError(f"generate: temperature must be a number, got {temperature!r}")
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"generate: temperature must be a number, got {temperature!r}") from None
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        cast = float(np.asarray(t, np.float64).astype(dtype))
    if not (np.isfinite(t) and np.isfinite(cast) and cast >= float(fi.tiny)):
        raise ValueError(f"generate: temperature must lie in [{float(fi.tiny):.3g}, {float(fi.max):.3g}],"
                         f" the positive normal numbers of the params' dtype {dtype} in which logits /"
                         f" temperature is computed, got {temperature!r}")


def _check_prompt(cfg: TransformerConfig, prompt):
    """The prompt as int32 (P,); ValueError naming it when it is empty, not integer ids, of a bad
    shape or holds ids outside [0, vocab)."""
    arr = np.asarray(prompt)
    if arr.size == 0:    # before the dtype: np.asarray([]) is float64
        raise ValueError(f"generate: prompt is empty; it must hold 1 <= P <= block_size={cfg.block_size}"
                         f" token ids (shape (P,)), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"generate: prompt must hold integer token ids, got dtype {arr.dtype}")
    if arr.ndim != 1 or not 1 <= arr.shape[0] <= cfg.block_size:
        raise ValueError(f"generate: prompt must have shape (P,) with 1 <= P <= block_size="
                         f"{cfg.block_size}, got shape {arr.shape} (pass its last {cfg.block_size} ids)")
    if arr.min() < 0 or arr.max() >= cfg.vocab:
        bad = arr[(arr < 0) | (arr >= cfg.vocab)]
        raise ValueError(f"generate: prompt ids must lie in [0, {cfg.vocab}), found {bad[:5].tolist()}")
    return jnp.asarray(arr, jnp.int32)


def _check_generate_args(cfg, params, prompt, max_new_tokens, temperature, top_k):
    """(prompt as int32, the params' dtype); ValueError naming the argument for anything
    :func:`generate` cannot use as given."""
    dtype = _check_params(cfg, params)
    prompt = _check_prompt(cfg, prompt)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
            or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"generate: max_new_tokens must be an integer in [1, {MAX_NEW_TOKENS}] (2**24:"
                         f" the sampler holds ~12 bytes per token; for more, call generate again with"
                         f" the last block_size ids as the prompt), got {max_new_tokens!r}")
    _check_temperature(temperature, dtype)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer))
                              or not 1 <= top_k <= cfg.vocab):
        raise ValueError(f"generate: top_k must be None or an integer in [1, {cfg.vocab}], got {top_k!r}")
    return prompt, dtype


def generate(cfg: TransformerConfig, params, key, prompt, max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None):
    """Sample ``max_new_tokens`` ids after ``prompt`` (P,) int, 1 <= P <= block_size -> (P + n,) int32.

    Each new id is drawn from ``softmax(logits / temperature)`` of the last position, restricted
    to the ``top_k`` largest logits when given; the model sees the last block_size ids. One
    compiled program per (config, P, n, top_k): the loop over characters is a ``lax.scan``.
    A small temperature still samples that softmax (tied maxima uniformly; where ``logits /
    temperature`` would exceed 2**11 or overflow, the logits are shifted by their maximum first,
    see :func:`_scaled`). Refused with a ValueError naming the argument:
    params whose tree or shapes are not the ones ``cfg`` builds; an empty or float prompt, ids
    outside [0, vocab), a bad length; n outside [1, MAX_NEW_TOKENS = 2**24]; a temperature that is
    not a positive normal number of the params' dtype (float32: [1.18e-38, 3.40e38], where
    ``logits / temperature`` is computed: outside it the temperature rounds to 0 or inf); a top_k
    outside [1, vocab].
    """
    cfg = _validated(cfg, "transformer.generate")
    prompt, dtype = _check_generate_args(cfg, params, prompt, max_new_tokens, temperature, top_k)
    return _generate_jit(params, key, prompt, jnp.asarray(temperature, dtype), cfg=cfg,
                         n=int(max_new_tokens), top_k=None if top_k is None else int(top_k))
