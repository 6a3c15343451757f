"""The transformer's forward/backward pairs (doc 003 Problem 4): linear maps on the last axis,
token + position embeddings, layer norm, causal self-attention (one head and multi-head), the
feed-forward net and the residual connection.

Each is a pair of pure functions side by side, in the library's convention::

    <name>_forward(params, x, ...) -> (y, cache)
    <name>_backward(cache, dy)     -> (dparams, dx)

``dparams`` has exactly the structure of ``params``. Shapes use ``B`` (batch), ``T`` (time),
``d`` (model width), ``H`` (heads), ``hs = d / H`` (head size), ``V`` (vocabulary). Dropout
(:func:`jaxnets.nn.layers.dropout_forward`) takes an explicit PRNG key; ``key=None`` turns it off.
Every broadcast is written out (``b[None, :]``), so the code runs under
``jax_numpy_rank_promotion="raise"`` and strict dtype promotion.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.nn import losses as losses_mod
from jaxnets.nn.layers import dropout_backward, dropout_forward

LN_EPS = 1e-5   # PyTorch's nn.LayerNorm default


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

def causal_attention_forward(q, k, v, key=None, rate: float = 0.0, scale: float | None = None):
    """Scaled dot-product attention with a causal mask, batched over any leading axes.

    q, k, v: (..., T, hs) -> out: (..., T, hs). Position t attends to positions s <= t only:
    ``P = softmax(mask(c · q kᵀ))`` with −∞ above the diagonal (so P is exactly 0 there),
    then dropout on P with ``key``/``rate``, then ``out = P v``. ``scale`` c defaults to
    ``hs ** -0.5``; doc 003's notebook uses ``n_embd ** -0.5`` (see ``TransformerConfig``).
    """
    T, hs = q.shape[-2:]
    scale = float(hs) ** -0.5 if scale is None else float(scale)
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

    dP = dout vᵀ (through dropout), dS = P ⊙ (dP − rowsum(dP ⊙ P)) · c; masked entries have
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

def attention_head_forward(params, x, key=None, rate: float = 0.0, scale: float | None = None):
    """One causal self-attention head (no biases, as in the minimal GPT).

    params: {"Wq": (d, hs), "Wk": (d, hs), "Wv": (d, hs)}; x: (B, T, d) -> out: (B, T, hs).
    """
    q, cq = linear_forward({"W": params["Wq"]}, x)
    k, ck = linear_forward({"W": params["Wk"]}, x)
    v, cv = linear_forward({"W": params["Wv"]}, x)
    out, ca = causal_attention_forward(q, k, v, key, rate, scale)
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


def multi_head_attention_forward(params, x, n_head: int, key=None, rate: float = 0.0,
                                 scale: float | None = None):
    """H causal heads run as one batched computation, concatenated, then projected.

    params: {"Wq", "Wk", "Wv": (d, H*hs), "proj": {"W": (H*hs, d), "b": (d,)}}; head h owns
    columns ``h*hs:(h+1)*hs`` of Wq/Wk/Wv (so this equals ``concat_h attention_head_h(x)``
    followed by ``proj``). x: (B, T, d) -> y: (B, T, d). Dropout (``key``, ``rate``) on the
    attention weights and on the projected output; ``scale`` as :func:`causal_attention_forward`.
    """
    k_att, k_out = jax.random.split(key) if key is not None else (None, None)
    q, cq = linear_forward({"W": params["Wq"]}, x)                           # (B, T, H*hs)
    k, ck = linear_forward({"W": params["Wk"]}, x)
    v, cv = linear_forward({"W": params["Wv"]}, x)
    heads, ca = causal_attention_forward(_split_heads(q, n_head), _split_heads(k, n_head),
                                         _split_heads(v, n_head), k_att, rate, scale)  # (B, H, T, hs)
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
