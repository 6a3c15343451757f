"""A tiny decoder-only character transformer (doc 003 Problem 4) with a hand-written backward rule
for every block.

Each block is a pair of pure functions sitting next to each other, in the library's convention::

    <block>_forward(params, x, ...) -> (y, cache)
    <block>_backward(cache, dy)     -> (dparams, dx)

``dparams`` has exactly the structure of ``params`` (``{}`` for parameter-free blocks), so the
hand-written gradient of every block and of the whole model can be compared with ``jax.grad`` by
one ``jax.tree.map``. Shapes use ``B`` (batch), ``T`` (time, ``T <= block_size``), ``d``
(``n_embd``), ``H`` (heads), ``hs = d / H`` (head size), ``V`` (vocabulary).

The architecture is the one of a minimal GPT (Karpathy's ``gpt.py``, which doc 003 follows)::

    x  = tok_emb[idx] + pos_emb[:T]                           (B, T, d)
    for each of n_layer blocks:
        x = x + dropout(proj(concat_h attention_h(ln1(x))))    causal, softmax(q kᵀ/√hs), dropout
        x = x + dropout(W2 relu(W1 ln2(x) + b1) + b2)          d -> 4d -> d
    logits = ln_f(x) W_head + b_head                           (B, T, V)
    loss   = mean softmax cross-entropy(logits, targets)

Dropout takes an explicit PRNG key; ``key=None`` (or ``dropout=0``) turns it off, as in evaluation
and in the gradient tests. Every broadcast is written out (``b[None, :]``), so the code runs under
``jax_numpy_rank_promotion="raise"`` and strict dtype promotion.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.nn import losses as losses_mod

LN_EPS = 1e-5


# ----------------------------------------------------------------------------- linear

def linear_forward(params, x):
    """Affine map on the last axis: ``y = x W (+ b)``.

    params: {"W": (n_in, n_out)} or {"W": (n_in, n_out), "b": (n_out,)};
    x: (..., n_in) -> y: (..., n_out).
    """
    W = params["W"]
    if x.shape[-1] != W.shape[0]:
        raise ValueError(f"linear: expected x of shape (..., {W.shape[0]}), got {x.shape}")
    lead = x.shape[:-1]
    x2 = jnp.reshape(x, (-1, W.shape[0]))                        # (M, n_in)
    y2 = x2 @ W                                                    # (M, n_out)
    if "b" in params:
        y2 = y2 + params["b"][None, :]
    return jnp.reshape(y2, lead + (W.shape[1],)), (x2, W, "b" in params, lead)


def linear_backward(cache, dy):
    """dy: (..., n_out) -> ({"W": (n_in, n_out)[, "b": (n_out,)]}, dx: (..., n_in))."""
    x2, W, has_b, lead = cache
    dy2 = jnp.reshape(dy, (-1, W.shape[1]))                        # (M, n_out)
    dparams = {"W": x2.T @ dy2}
    if has_b:
        dparams["b"] = jnp.sum(dy2, axis=0)
    dx = jnp.reshape(dy2 @ W.T, lead + (W.shape[0],))
    return dparams, dx


# ----------------------------------------------------------------------------- dropout

def dropout_forward(x, key, rate: float):
    """Inverted dropout: keep each entry with probability ``1 - rate`` and scale by ``1/(1-rate)``.

    x: any shape -> y: same shape. ``key=None`` or ``rate == 0`` is the identity (cache None).
    """
    if key is None or rate == 0.0:
        return x, None
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    scale = 1.0 / (1.0 - rate)
    return jnp.where(keep, x * scale, jnp.zeros_like(x)), (keep, scale)


def dropout_backward(cache, dy):
    """dy: shape of x -> dx: same shape (the same mask and scale as the forward pass)."""
    if cache is None:
        return dy
    keep, scale = cache
    return jnp.where(keep, dy * scale, jnp.zeros_like(dy))


# ----------------------------------------------------------------------------- embeddings

def embedding_forward(params, idx):
    """Token + position embedding.

    params: {"tok": (V, d), "pos": (block_size, d)}; idx: (B, T) int, T <= block_size
    -> x: (B, T, d).
    """
    tok, pos = params["tok"], params["pos"]
    if idx.ndim != 2:
        raise ValueError(f"embedding: expected token ids of shape (B, T), got {idx.shape}")
    B, T = idx.shape
    if T > pos.shape[0]:
        raise ValueError(f"embedding: sequence length T={T} exceeds block_size={pos.shape[0]}")
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise ValueError(f"embedding: expected integer token ids, got dtype {idx.dtype}")
    losses_mod.check_labels(idx, tok.shape[0], "embedding token ids")
    x = tok[idx] + pos[None, :T, :]
    return x, (idx, tok.shape[0], pos.shape[0])


def embedding_backward(cache, dx):
    """dx: (B, T, d) -> ({"tok": (V, d), "pos": (block_size, d)}, None) (ids have no gradient).

    The token-table gradient is the scatter-add of dx into the rows idx, written as a one-hot
    matmul ``onehot(idx)ᵀ dx`` (fast on CPU, exact: every other term is 0·x).
    """
    idx, V, block_size = cache
    B, T, d = dx.shape
    onehot = jax.nn.one_hot(jnp.reshape(idx, (-1,)), V, dtype=dx.dtype)      # (B*T, V)
    dtok = onehot.T @ jnp.reshape(dx, (B * T, d))                            # (V, d)
    dpos = jnp.zeros((block_size, d), dx.dtype).at[:T].set(jnp.sum(dx, axis=0))
    return {"tok": dtok, "pos": dpos}, None


# ----------------------------------------------------------------------------- layer norm

def layer_norm_forward(params, x):
    """Layer norm over the last axis: ``y = (x − μ)/√(σ² + ε) · g + b``.

    params: {"g": (d,), "b": (d,)}; x: (..., d) -> y: (..., d).
    """
    g, b = params["g"], params["b"]
    d = x.shape[-1]
    bshape = (1,) * (x.ndim - 1) + (d,)
    mu = jnp.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    var = jnp.mean(xc * xc, axis=-1, keepdims=True)
    rstd = lax.rsqrt(var + LN_EPS)
    xhat = xc * rstd
    y = xhat * jnp.reshape(g, bshape) + jnp.reshape(b, bshape)
    return y, (xhat, rstd, g)


def layer_norm_backward(cache, dy):
    """dy: (..., d) -> ({"g": (d,), "b": (d,)}, dx: (..., d)).

    With x̂ = (x − μ)·r and dx̂ = dy·g:  dx = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)).
    """
    xhat, rstd, g = cache
    d = xhat.shape[-1]
    red = tuple(range(xhat.ndim - 1))
    dg = jnp.sum(dy * xhat, axis=red)
    db = jnp.sum(dy, axis=red)
    dxhat = dy * jnp.reshape(g, (1,) * (xhat.ndim - 1) + (d,))
    dx = rstd * (dxhat - jnp.mean(dxhat, axis=-1, keepdims=True)
                 - xhat * jnp.mean(dxhat * xhat, axis=-1, keepdims=True))
    return {"g": dg, "b": db}, dx


# ----------------------------------------------------------------------------- attention core

def causal_attention_forward(q, k, v, key=None, rate: float = 0.0):
    """Scaled dot-product attention with a causal mask, batched over any leading axes.

    q, k, v: (..., T, hs) -> out: (..., T, hs). Position t attends to positions s <= t only:
    ``P = softmax(mask(q kᵀ / √hs))`` with −∞ above the diagonal (so P is exactly 0 there),
    then dropout on P with ``key``/``rate``, then ``out = P v``.
    """
    T, hs = q.shape[-2:]
    scale = float(hs) ** -0.5
    s = jnp.einsum("...td,...sd->...ts", q, k) * scale                      # (..., T, T)
    causal = jnp.tril(jnp.ones((T, T), dtype=bool))
    s = jnp.where(causal, s, -jnp.inf)
    z = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
    p = z / jnp.sum(z, axis=-1, keepdims=True)                               # (..., T, T)
    pd, drop_cache = dropout_forward(p, key, rate)
    out = jnp.einsum("...ts,...sd->...td", pd, v)                           # (..., T, hs)
    return out, (q, k, v, p, pd, drop_cache, scale)


def causal_attention_backward(cache, dout):
    """dout: (..., T, hs) -> (dq, dk, dv), each (..., T, hs).

    dP = dout vᵀ (through dropout), dS = P ⊙ (dP − rowsum(dP ⊙ P)) · 1/√hs; masked entries have
    P = 0, hence dS = 0: no gradient reaches a position from the positions after it.
    """
    q, k, v, p, pd, drop_cache, scale = cache
    dv = jnp.einsum("...ts,...td->...sd", pd, dout)
    dpd = jnp.einsum("...td,...sd->...ts", dout, v)
    dp = dropout_backward(drop_cache, dpd)
    ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True)) * scale
    dq = jnp.einsum("...ts,...sd->...td", ds, k)
    dk = jnp.einsum("...ts,...td->...sd", ds, q)
    return dq, dk, dv


# ----------------------------------------------------------------------------- one head

def attention_head_forward(params, x, key=None, rate: float = 0.0):
    """One causal self-attention head (no biases, as in the minimal GPT).

    params: {"Wq": (d, hs), "Wk": (d, hs), "Wv": (d, hs)}; x: (B, T, d) -> out: (B, T, hs).
    """
    q, cq = linear_forward({"W": params["Wq"]}, x)
    k, ck = linear_forward({"W": params["Wk"]}, x)
    v, cv = linear_forward({"W": params["Wv"]}, x)
    out, ca = causal_attention_forward(q, k, v, key, rate)
    return out, (cq, ck, cv, ca)


def attention_head_backward(cache, dout):
    """dout: (B, T, hs) -> ({"Wq", "Wk", "Wv": (d, hs)}, dx: (B, T, d))."""
    cq, ck, cv, ca = cache
    dq, dk, dv = causal_attention_backward(ca, dout)
    gq, dxq = linear_backward(cq, dq)
    gk, dxk = linear_backward(ck, dk)
    gv, dxv = linear_backward(cv, dv)
    return {"Wq": gq["W"], "Wk": gk["W"], "Wv": gv["W"]}, dxq + dxk + dxv


# ----------------------------------------------------------------------------- multi-head

def _split_heads(a, n_head):
    """(B, T, H*hs) -> (B, H, T, hs)."""
    B, T, D = a.shape
    return jnp.transpose(jnp.reshape(a, (B, T, n_head, D // n_head)), (0, 2, 1, 3))


def _merge_heads(a):
    """(B, H, T, hs) -> (B, T, H*hs) (heads concatenated along features)."""
    B, H, T, hs = a.shape
    return jnp.reshape(jnp.transpose(a, (0, 2, 1, 3)), (B, T, H * hs))


def multi_head_attention_forward(params, x, n_head: int, key=None, rate: float = 0.0):
    """H causal heads run as one batched computation, concatenated, then projected.

    params: {"Wq", "Wk", "Wv": (d, H*hs), "proj": {"W": (H*hs, d), "b": (d,)}}; head h owns
    columns ``h*hs:(h+1)*hs`` of Wq/Wk/Wv (so this equals ``concat_h attention_head_h(x)``
    followed by ``proj``). x: (B, T, d) -> y: (B, T, d). Dropout (``key``, ``rate``) on the
    attention weights and on the projected output.
    """
    k_att, k_out = jax.random.split(key) if key is not None else (None, None)
    q, cq = linear_forward({"W": params["Wq"]}, x)                           # (B, T, H*hs)
    k, ck = linear_forward({"W": params["Wk"]}, x)
    v, cv = linear_forward({"W": params["Wv"]}, x)
    heads, ca = causal_attention_forward(_split_heads(q, n_head), _split_heads(k, n_head),
                                         _split_heads(v, n_head), k_att, rate)  # (B, H, T, hs)
    cat = _merge_heads(heads)                                                # (B, T, H*hs)
    y, cp = linear_forward(params["proj"], cat)                              # (B, T, d)
    y, cd = dropout_forward(y, k_out, rate)
    return y, (cq, ck, cv, ca, cp, cd, n_head)


def multi_head_attention_backward(cache, dy):
    """dy: (B, T, d) -> ({"Wq", "Wk", "Wv": (d, H*hs), "proj": {...}}, dx: (B, T, d))."""
    cq, ck, cv, ca, cp, cd, n_head = cache
    dy = dropout_backward(cd, dy)
    gproj, dcat = linear_backward(cp, dy)
    dq, dk, dv = causal_attention_backward(ca, _split_heads(dcat, n_head))
    gq, dxq = linear_backward(cq, _merge_heads(dq))
    gk, dxk = linear_backward(ck, _merge_heads(dk))
    gv, dxv = linear_backward(cv, _merge_heads(dv))
    return {"Wq": gq["W"], "Wk": gk["W"], "Wv": gv["W"], "proj": gproj}, dxq + dxk + dxv


# ----------------------------------------------------------------------------- feed-forward

def feed_forward_forward(params, x, key=None, rate: float = 0.0):
    """d -> 4d -> d with ReLU, then dropout.

    params: {"fc1": {"W": (d, 4d), "b": (4d,)}, "fc2": {"W": (4d, d), "b": (d,)}};
    x: (B, T, d) -> y: (B, T, d).
    """
    a, c1 = linear_forward(params["fc1"], x)                                 # (B, T, 4d)
    h = jnp.maximum(a, 0)
    y, c2 = linear_forward(params["fc2"], h)                                 # (B, T, d)
    y, cd = dropout_forward(y, key, rate)
    return y, (c1, a, c2, cd)


def feed_forward_backward(cache, dy):
    """dy: (B, T, d) -> ({"fc1": ..., "fc2": ...}, dx: (B, T, d))."""
    c1, a, c2, cd = cache
    dy = dropout_backward(cd, dy)
    g2, dh = linear_backward(c2, dy)
    da = jnp.where(a > 0, dh, jnp.zeros_like(dh))      # ReLU' (0 at the kink, as in layers.py)
    g1, dx = linear_backward(c1, da)
    return {"fc1": g1, "fc2": g2}, dx


# ----------------------------------------------------------------------------- residual

def residual_forward(x, fx):
    """y = x + f(x); x, fx: (B, T, d) -> y: (B, T, d) (cache None)."""
    return x + fx, None


def residual_backward(cache, dy):
    """dy: (B, T, d) -> (dx, dfx): the gradient flows unchanged into both branches."""
    return dy, dy


# ----------------------------------------------------------------------------- block

def block_forward(params, x, n_head: int, key=None, rate: float = 0.0):
    """One pre-norm transformer block.

    params: {"ln1": LN, "attn": MHA, "ln2": LN, "ffn": FFN}; x: (B, T, d) -> y: (B, T, d)::

        x1 = x + mha(ln1(x));  y = x1 + ffn(ln2(x1))
    """
    k_att, k_ffn = jax.random.split(key) if key is not None else (None, None)
    h1, c_ln1 = layer_norm_forward(params["ln1"], x)
    a, c_att = multi_head_attention_forward(params["attn"], h1, n_head, k_att, rate)
    x1, _ = residual_forward(x, a)
    h2, c_ln2 = layer_norm_forward(params["ln2"], x1)
    f, c_ffn = feed_forward_forward(params["ffn"], h2, k_ffn, rate)
    y, _ = residual_forward(x1, f)
    return y, (c_ln1, c_att, c_ln2, c_ffn)


def block_backward(cache, dy):
    """dy: (B, T, d) -> (dparams like params, dx: (B, T, d))."""
    c_ln1, c_att, c_ln2, c_ffn = cache
    dx1, df = residual_backward(None, dy)
    g_ffn, dh2 = feed_forward_backward(c_ffn, df)
    g_ln2, dx1_ln = layer_norm_backward(c_ln2, dh2)
    dx1 = dx1 + dx1_ln
    dx, da = residual_backward(None, dx1)
    g_att, dh1 = multi_head_attention_backward(c_att, da)
    g_ln1, dx_ln = layer_norm_backward(c_ln1, dh1)
    return {"ln1": g_ln1, "attn": g_att, "ln2": g_ln2, "ffn": g_ffn}, dx + dx_ln


# ----------------------------------------------------------------------------- LM head + loss

def lm_head_forward(params, x):
    """Final layer norm and the vocabulary projection.

    params: {"ln_f": LN, "head": {"W": (d, V), "b": (V,)}}; x: (B, T, d) -> logits (B, T, V).
    """
    h, c_ln = layer_norm_forward(params["ln_f"], x)
    logits, c_head = linear_forward(params["head"], h)
    return logits, (c_ln, c_head)


def lm_head_backward(cache, dlogits):
    """dlogits: (B, T, V) -> ({"ln_f", "head"}, dx: (B, T, d))."""
    c_ln, c_head = cache
    g_head, dh = linear_backward(c_head, dlogits)
    g_ln, dx = layer_norm_backward(c_ln, dh)
    return {"ln_f": g_ln, "head": g_head}, dx


def lm_loss_forward(params, x, targets):
    """LM head + mean softmax cross-entropy over all B·T positions (the library's loss pair).

    params as :func:`lm_head_forward`; x: (B, T, d); targets: (B, T) int -> scalar loss (nats).
    """
    logits, c_head = lm_head_forward(params, x)
    B, T, V = logits.shape
    if targets.shape != (B, T):
        raise ValueError(f"lm_loss: expected targets of shape ({B}, {T}), got {targets.shape}")
    value, c_loss = losses_mod.softmax_cross_entropy_forward(
        jnp.reshape(logits, (B * T, V)), jnp.reshape(targets, (B * T,)))
    return value, (c_head, c_loss, (B, T, V))


def lm_loss_backward(cache, dvalue=1.0):
    """dvalue: scalar -> ({"ln_f", "head"}, dx: (B, T, d))."""
    c_head, c_loss, shape = cache
    dlogits = losses_mod.softmax_cross_entropy_backward(c_loss, dvalue)      # (B*T, V)
    return lm_head_backward(c_head, jnp.reshape(dlogits, shape))


# ----------------------------------------------------------------------------- whole model

def _split_params(params):
    emb = {"tok": params["tok_emb"], "pos": params["pos_emb"]}
    head = {"ln_f": params["ln_f"], "head": params["head"]}
    return emb, params["blocks"], head


def _join_grads(g_emb, g_blocks, g_head):
    return {"tok_emb": g_emb["tok"], "pos_emb": g_emb["pos"], "blocks": g_blocks,
            "ln_f": g_head["ln_f"], "head": g_head["head"]}


def trunk_forward(params, idx, n_head: int, key=None, rate: float = 0.0):
    """Embeddings and all blocks. idx: (B, T) int -> x: (B, T, d) (before ln_f)."""
    emb, blocks, _ = _split_params(params)
    keys = (jax.random.split(key, len(blocks)) if key is not None and rate > 0
            else [None] * len(blocks))
    x, c_emb = embedding_forward(emb, idx)
    c_blocks = []
    for p, k in zip(blocks, keys):
        x, c = block_forward(p, x, n_head, k, rate)
        c_blocks.append(c)
    return x, (c_emb, c_blocks)


def trunk_backward(cache, dx):
    """dx: (B, T, d) -> (({"tok", "pos"}, [block grads]), dx at the embedding output)."""
    c_emb, c_blocks = cache
    g_blocks = [None] * len(c_blocks)
    for i in reversed(range(len(c_blocks))):
        g_blocks[i], dx = block_backward(c_blocks[i], dx)
    g_emb, _ = embedding_backward(c_emb, dx)
    return (g_emb, g_blocks), dx


def init_params(key, vocab: int, block_size: int, n_embd: int, n_head: int, n_layer: int,
                dtype=jnp.float32, std: float = 0.02):
    """Parameters of the whole model (minimal-GPT init: N(0, 0.02²) weights and embeddings,
    zero biases, layer-norm gain 1 / bias 0).

    Returns {"tok_emb": (V, d), "pos_emb": (block_size, d),
             "blocks": [{"ln1": {"g", "b": (d,)}, "attn": {"Wq", "Wk", "Wv": (d, d),
                         "proj": {"W": (d, d), "b": (d,)}}, "ln2": {...},
                         "ffn": {"fc1": {"W": (d, 4d), "b": (4d,)}, "fc2": {"W": (4d, d), "b": (d,)}}}
                        × n_layer],
             "ln_f": {"g", "b": (d,)}, "head": {"W": (d, V), "b": (V,)}}.
    """
    d = n_embd
    shapes = {"tok": (vocab, d), "pos": (block_size, d), "head": (d, vocab)}
    for i in range(n_layer):
        shapes.update({(i, "Wq"): (d, d), (i, "Wk"): (d, d), (i, "Wv"): (d, d), (i, "proj"): (d, d),
                       (i, "fc1"): (d, 4 * d), (i, "fc2"): (4 * d, d)})
    # One draw for all weights, cut into pieces: a single random-bits kernel compiles much faster
    # than one per matrix.
    sizes = [math.prod(s) for s in shapes.values()]
    flat = std * jax.random.normal(key, (sum(sizes),), dtype)
    offsets = itertools.accumulate(sizes, initial=0)
    w = {k: jnp.reshape(flat[o:o + n], shp)
         for (k, shp), o, n in zip(shapes.items(), offsets, sizes)}

    def ln():
        return {"g": jnp.ones((d,), dtype), "b": jnp.zeros((d,), dtype)}

    def zeros(n):
        return jnp.zeros((n,), dtype)

    blocks = [{"ln1": ln(),
               "attn": {"Wq": w[i, "Wq"], "Wk": w[i, "Wk"], "Wv": w[i, "Wv"],
                        "proj": {"W": w[i, "proj"], "b": zeros(d)}},
               "ln2": ln(),
               "ffn": {"fc1": {"W": w[i, "fc1"], "b": zeros(4 * d)},
                       "fc2": {"W": w[i, "fc2"], "b": zeros(d)}}}
              for i in range(n_layer)]
    return {"tok_emb": w["tok"], "pos_emb": w["pos"], "blocks": blocks,
            "ln_f": ln(), "head": {"W": w["head"], "b": zeros(vocab)}}


class TransformerModel(NamedTuple):
    """A decoder-only character transformer with the library's model contract.

    init(key, dtype=float32) -> params
    apply(params, idx, key=None) -> logits (B, T, V)                 idx: (B, T) int, T <= block_size
    loss(params, idx, targets, key=None) -> scalar mean cross-entropy (nats/char)
    backprop(params, idx, targets, key=None) -> (loss, grads)          hand-written rules
    grad_autodiff(params, idx, targets, key=None) -> (loss, grads)     jax.value_and_grad(loss)
    generate(params, key, prompt, n) -> (P + n,) int32                 prompt: (P,) int, jitted
    ``key`` turns dropout on (training); ``None`` is evaluation mode.
    ``trace_counts["generate"]`` counts how often generate's body was traced (compilations).
    """
    init: Callable[..., Any]
    apply: Callable[..., Any]
    loss: Callable[..., Any]
    backprop: Callable[..., Any]
    grad_autodiff: Callable[..., Any]
    generate: Callable[..., Any]
    trace_counts: dict
    vocab: int
    block_size: int
    n_embd: int
    n_head: int
    n_layer: int
    dropout: float
    name: str


def transformer(vocab: int, block_size: int, n_embd: int, n_head: int, n_layer: int,
                dropout: float = 0.0) -> TransformerModel:
    """Build a :class:`TransformerModel` (pure functions over a params pytree; see module doc)."""
    for nm, val in (("vocab", vocab), ("block_size", block_size), ("n_embd", n_embd),
                    ("n_head", n_head), ("n_layer", n_layer)):
        if int(val) != val or val < 1:
            raise ValueError(f"transformer: {nm} must be a positive integer, got {val!r}")
    if n_embd % n_head:
        raise ValueError(f"transformer: n_embd={n_embd} must be divisible by n_head={n_head}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"transformer: dropout must lie in [0, 1), got {dropout}")
    vocab, block_size, n_embd, n_head, n_layer = map(int, (vocab, block_size, n_embd, n_head, n_layer))
    dropout = float(dropout)
    name = f"transformer-V{vocab}-T{block_size}-d{n_embd}-h{n_head}-L{n_layer}"

    # One compilation instead of ~50 eager ops; init runs once, so XLA's optimisations are skipped.
    _init = jax.jit(init_params, static_argnums=(1, 2, 3, 4, 5, 6),
                    compiler_options={"xla_backend_optimization_level": 0})

    def init(key, dtype=jnp.float32):
        return _init(key, vocab, block_size, n_embd, n_head, n_layer, jnp.dtype(dtype))

    def apply(params, idx, key=None):
        idx = jnp.asarray(idx)
        x, _ = trunk_forward(params, idx, n_head, key, dropout)
        _, _, head = _split_params(params)
        return lm_head_forward(head, x)[0]

    def loss(params, idx, targets, key=None):
        idx, targets = jnp.asarray(idx), jnp.asarray(targets)
        x, _ = trunk_forward(params, idx, n_head, key, dropout)
        _, _, head = _split_params(params)
        return lm_loss_forward(head, x, targets)[0]

    def backprop(params, idx, targets, key=None):
        idx, targets = jnp.asarray(idx), jnp.asarray(targets)
        x, c_trunk = trunk_forward(params, idx, n_head, key, dropout)
        _, _, head = _split_params(params)
        value, c_loss = lm_loss_forward(head, x, targets)
        g_head, dx = lm_loss_backward(c_loss)
        (g_emb, g_blocks), _ = trunk_backward(c_trunk, dx)
        return value, _join_grads(g_emb, g_blocks, g_head)

    def grad_autodiff(params, idx, targets, key=None):
        return jax.value_and_grad(loss)(params, idx, targets, key)

    trace_counts = {"generate": 0}

    def _generate(params, key, prompt, n):
        trace_counts["generate"] += 1          # runs only while tracing
        P = prompt.shape[0]
        L = max(P + n, block_size)
        buf = jnp.zeros((L,), jnp.int32).at[:P].set(prompt.astype(jnp.int32))

        def step(carry, k):
            buf, length = carry                 # tokens buf[:length] are valid
            start = jnp.maximum(length - block_size, 0)
            window = lax.dynamic_slice(buf, (start,), (block_size,))           # (block_size,)
            logits = apply(params, window[None, :])[0]                          # (block_size, V)
            # Causality: positions after length-1 (zeros) never influence this row.
            row = lax.dynamic_index_in_dim(logits, length - 1 - start, keepdims=False)  # (V,)
            tok = jax.random.categorical(k, row).astype(jnp.int32)
            buf = lax.dynamic_update_slice(buf, tok[None], (length,))
            return (buf, length + 1), None

        (buf, _), _ = lax.scan(step, (buf, jnp.int32(P)), jax.random.split(key, n))
        return buf[:P + n]

    _generate_jit = jax.jit(_generate, static_argnames=("n",))

    def generate(params, key, prompt, n: int):
        """Sample n characters after ``prompt`` (P,) int (P >= 1) -> (P + n,) int32.

        One compiled program per (prompt length, n): the loop over characters is a ``lax.scan``
        and each step runs the model on a fixed window of block_size tokens.
        """
        prompt = jnp.asarray(prompt)
        if prompt.ndim != 1 or prompt.shape[0] < 1:
            raise ValueError(f"generate: expected a prompt of shape (P,) with P >= 1, got {prompt.shape}")
        if int(n) != n or n < 0:
            raise ValueError(f"generate: n must be a non-negative integer, got {n!r}")
        losses_mod.check_labels(prompt, vocab, "generate prompt")
        return _generate_jit(params, key, prompt, n=int(n))

    return TransformerModel(init, apply, loss, backprop, grad_autodiff, generate, trace_counts,
                            vocab, block_size, n_embd, n_head, n_layer, dropout, name)
