"""The transformer's layers (doc 003 Problem 4): token + position embeddings, layer norm, causal
self-attention (one head and multi-head) and the feed-forward net, each a
:class:`~jaxnets.nn.layers.Layer` built from a forward/backward pair side by side::

    <name>_forward(params, x, ...) -> (y, cache)
    <name>_backward(cache, dy)     -> (dparams, dx)

``dparams`` has exactly the structure of ``params``. Shapes use ``B`` (batch), ``T`` (time),
``d`` (model width), ``H`` (heads), ``hs = d / H`` (head size), ``V`` (vocabulary). The linear maps
are :func:`jaxnets.nn.layers.dense_forward` on the last axis; the residual connection is
:func:`jaxnets.nn.layers.residual`. Dropout (:func:`jaxnets.nn.layers.dropout_forward`) takes an
explicit PRNG key; ``key=None`` turns it off. The (q, k, v) attention core is a private pair inside
the attention layers. Every broadcast is written out (``b[None, :]``), so the code runs under
``jax_numpy_rank_promotion="raise"`` and strict dtype promotion.

The Layers' own ``init`` follows PyTorch's defaults (``nn.Linear``: weights and biases
U(±1/√fan_in); ``nn.Embedding``: N(0, 1); LayerNorm: gain 1, bias 0); decay marks the weight
matrices ("W", "Wq", "Wk", "Wv"), never biases, gains or embeddings.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.nn import initializers, losses as losses_mod
from jaxnets.nn.layers import (Layer, Static, decay_keys, dense_backward, dense_forward, dropout_backward,
                               dropout_forward)

LN_EPS = 1e-5   # PyTorch's nn.LayerNorm default


# ----------------------------------------------------------------------------- fast weight grads
# The weight gradients contract over the long leading axis: ``dW = xᵀ da`` with x (B·T, d). XLA:CPU
# hands such a transposed-lhs product to Eigen, a row-major one to its faster YNNPACK kernels.
# ``fast_grads=True`` materialises the transposed operand first (an optimization barrier keeps XLA
# from folding the transpose back into the product): a few per cent faster per E7 training step
# on this CPU, but the other kernel sums in another order, so gradients differ by round-off
# (f32: ~1e-8). The layers take it as an argument; TransformerConfig turns it on for a CPU backend.

def _tmatmul(a, b, fast: bool):
    """``aᵀ b`` over the second-to-last axis: a (..., M, m), b (..., M, n) -> (..., m, n)."""
    at = jnp.swapaxes(a, -1, -2)
    return (lax.optimization_barrier(at) if fast else at) @ b


def dense_backward_fast(cache, da):
    """:func:`~jaxnets.nn.layers.dense_backward` with ``dW`` from a materialised ``xᵀ`` (equal up to
    round-off, see ``fast_grads`` above). da: (N, ..., n_out) -> (dparams, dx: (N, ..., n_in))."""
    return dense_backward(cache, da, lambda x2, da2: _tmatmul(x2, da2, True))


def _dense_backward(cache, da, fast: bool):
    return dense_backward_fast(cache, da) if fast else dense_backward(cache, da)


# ----------------------------------------------------------------------------- embeddings

def embedding_forward(params, idx, fast_grads: bool = False):
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
    losses_mod.check_labels(idx, tok.shape[0], "embedding", what="token ids")
    x = tok[idx] + pos[None, :T, :]
    return x, (idx, Static((tok.shape[0], pos.shape[0], fast_grads)))


def embedding_backward(cache, dx):
    """dx: (B, T, d) -> ({"tok": (V, d), "pos": (block_size, d)}, None) (ids have no gradient).

    The token-table gradient is the scatter-add of dx into the rows idx, written as a one-hot
    matmul ``onehot(idx)ᵀ dx`` (fast on CPU, exact: every other term is 0·x).
    """
    idx, (V, block_size, fast) = cache
    B, T, d = dx.shape
    onehot = jax.nn.one_hot(jnp.reshape(idx, (-1,)), V, dtype=dx.dtype)      # (B*T, V)
    dx2 = jnp.reshape(dx, (B * T, d))
    dtok = _tmatmul(onehot, dx2, True) if fast else onehot.T @ dx2          # (V, d)
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

def _causal_attention_forward(q, k, v, key=None, rate: float = 0.0, scale: float | None = None,
                              fast_grads: bool = False):
    """Scaled dot-product attention with a causal mask, batched over any leading axes.

    q, k, v: (..., T, hs) -> out: (..., T, hs). Position t attends to positions s <= t only:
    ``P = softmax(mask(c · q kᵀ))`` with −∞ above the diagonal (so P is exactly 0 there),
    then dropout on P with ``key``/``rate``, then ``out = P v``. ``scale`` c defaults to
    ``hs ** -0.5``; doc 003's notebook uses ``n_embd ** -0.5`` (see ``TransformerConfig``).
    ``fast_grads``: the backward's dk, dv from materialised Pᵀ, dSᵀ (round-off, see above).
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
    return out, (q, k, v, p, pd, drop_cache, Static((scale, fast_grads)))


def _causal_attention_backward(cache, dout):
    """dout: (..., T, hs) -> (dq, dk, dv), each (..., T, hs).

    dP = dout vᵀ (through dropout), dS = P ⊙ (dP − rowsum(dP ⊙ P)) · c; masked entries have
    P = 0, hence dS = 0: no gradient reaches a position from the positions after it.
    """
    q, k, v, p, pd, drop_cache, (scale, fast) = cache
    dv = _tmatmul(pd, dout, True) if fast else jnp.einsum("...ts,...td->...sd", pd, dout)
    dpd = jnp.einsum("...td,...sd->...ts", dout, v)
    dp = dropout_backward(drop_cache, dpd)
    ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True)) * scale
    dq = jnp.einsum("...ts,...sd->...td", ds, k)
    dk = _tmatmul(ds, q, True) if fast else jnp.einsum("...ts,...td->...sd", ds, q)
    return dq, dk, dv


# ----------------------------------------------------------------------------- one head

def attention_head_forward(params, x, key=None, rate: float = 0.0, scale: float | None = None):
    """One causal self-attention head (no biases, as in the minimal GPT).

    params: {"Wq": (d, hs), "Wk": (d, hs), "Wv": (d, hs)}; x: (B, T, d) -> out: (B, T, hs).
    """
    q, cq = dense_forward({"W": params["Wq"]}, x)
    k, ck = dense_forward({"W": params["Wk"]}, x)
    v, cv = dense_forward({"W": params["Wv"]}, x)
    out, ca = _causal_attention_forward(q, k, v, key, rate, scale)
    return out, (cq, ck, cv, ca)


def attention_head_backward(cache, dout):
    """dout: (B, T, hs) -> ({"Wq", "Wk", "Wv": (d, hs)}, dx: (B, T, d))."""
    cq, ck, cv, ca = cache
    dq, dk, dv = _causal_attention_backward(ca, dout)
    gq, dxq = dense_backward(cq, dq)
    gk, dxk = dense_backward(ck, dk)
    gv, dxv = dense_backward(cv, dv)
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


def _qkv_forward(params, x, n_head, fast_grads: bool = False):
    """q, k, v of every head from one GEMM: x [Wq | Wk | Wv].

    params: {"Wq", "Wk", "Wv": (d, D)}; x: (B, T, d) -> ((q, k, v), each (B, H, T, D/H), cache).
    Each output element is the same length-d dot product the three separate maps compute (the
    GEMM's column blocking does not reorder a dot product's sum: bit-identical, tested), with one
    kernel call and one head-split copy instead of three: at doc 003's sizes (d = 64, B·T = 512)
    a step is bound by per-operation costs, not by FLOPs.
    """
    Ws = (params["Wq"], params["Wk"], params["Wv"])
    qkv, (x2, _, st) = dense_forward({"W": jnp.concatenate(Ws, axis=1)}, x)    # (B, T, 3D)
    B, T, D3 = qkv.shape
    qkv = jnp.reshape(qkv, (B, T, 3, n_head, D3 // (3 * n_head)))
    q, k, v = jnp.transpose(qkv, (2, 0, 3, 1, 4))                          # each (B, H, T, hs)
    return (q, k, v), (x2, Ws, Static((st.lead, fast_grads)))


def _qkv_backward(cache, dq, dk, dv):
    """dq, dk, dv: (B, H, T, hs) -> ({"Wq", "Wk", "Wv": (d, D)}, dx: (B, T, d)).

    ``[dWq | dWk | dWv] = xᵀ [dq | dk | dv]`` is one GEMM (bit-identical to three, as the
    forward's); ``dx = dq Wqᵀ + dk Wkᵀ + dv Wvᵀ`` stays three products summed in that order: one
    GEMM over the 3D-long rows would round its sum differently.
    """
    x2, (Wq, Wk, Wv), (lead, fast) = cache
    B, H, T, hs = dq.shape
    dqkv = jnp.reshape(jnp.transpose(jnp.stack((dq, dk, dv)), (1, 3, 0, 2, 4)),
                       (B * T, 3 * H * hs))                                 # (B*T, 3D)
    gW = _tmatmul(x2, dqkv, True) if fast else x2.T @ dqkv                 # (d, 3D)
    D = H * hs
    d2 = [dqkv[:, i * D:(i + 1) * D] for i in range(3)]
    dx = d2[0] @ Wq.T + d2[1] @ Wk.T + d2[2] @ Wv.T                          # (B*T, d)
    return ({"Wq": gW[:, :D], "Wk": gW[:, D:2 * D], "Wv": gW[:, 2 * D:]},
            jnp.reshape(dx, lead + (Wq.shape[0],)))


def multi_head_attention_forward(params, x, n_head: int, key=None, rate: float = 0.0,
                                 scale: float | None = None, fast_grads: bool = False):
    """H causal heads run as one batched computation, concatenated, then projected.

    params: {"Wq", "Wk", "Wv": (d, H*hs), "proj": {"W": (H*hs, d), "b": (d,)}}; head h owns
    columns ``h*hs:(h+1)*hs`` of Wq/Wk/Wv (so this equals ``concat_h attention_head_h(x)``
    followed by ``proj``). x: (B, T, d) -> y: (B, T, d). Dropout (``key``, ``rate``) on the
    attention weights and on the projected output; ``scale`` as :func:`_causal_attention_forward`;
    ``fast_grads``: the weight gradients of the faster kernels (round-off, see above).
    """
    k_att, k_out = jax.random.split(key) if key is not None else (None, None)
    (q, k, v), cqkv = _qkv_forward(params, x, n_head, fast_grads)          # (B, H, T, hs)
    heads, ca = _causal_attention_forward(q, k, v, k_att, rate, scale, fast_grads)  # (B, H, T, hs)
    cat = _merge_heads(heads)                                                # (B, T, H*hs)
    y, cp = dense_forward(params["proj"], cat)                              # (B, T, d)
    y, cd = dropout_forward(y, k_out, rate)
    return y, (cqkv, ca, cp, cd, Static((n_head, fast_grads)))


def multi_head_attention_backward(cache, dy):
    """dy: (B, T, d) -> ({"Wq", "Wk", "Wv": (d, H*hs), "proj": {...}}, dx: (B, T, d))."""
    cqkv, ca, cp, cd, (n_head, fast) = cache
    dy = dropout_backward(cd, dy)
    gproj, dcat = _dense_backward(cp, dy, fast)
    dq, dk, dv = _causal_attention_backward(ca, _split_heads(dcat, n_head))
    gqkv, dx = _qkv_backward(cqkv, dq, dk, dv)
    return {**gqkv, "proj": gproj}, dx


# ----------------------------------------------------------------------------- feed-forward

def feed_forward_forward(params, x, key=None, rate: float = 0.0, fast_grads: bool = False):
    """d -> 4d -> d with ReLU, then dropout.

    params: {"fc1": {"W": (d, 4d), "b": (4d,)}, "fc2": {"W": (4d, d), "b": (d,)}};
    x: (B, T, d) -> y: (B, T, d).
    """
    a, c1 = dense_forward(params["fc1"], x)                                 # (B, T, 4d)
    h = jax.nn.relu(a)        # jnp.maximum's values; derivative 0 at 0, as the backward's
    y, c2 = dense_forward(params["fc2"], h)                                 # (B, T, d)
    y, cd = dropout_forward(y, key, rate)
    return y, (c1, a, c2, cd, Static((fast_grads,)))


def feed_forward_backward(cache, dy):
    """dy: (B, T, d) -> ({"fc1": ..., "fc2": ...}, dx: (B, T, d))."""
    c1, a, c2, cd, (fast,) = cache
    dy = dropout_backward(cd, dy)
    g2, dh = _dense_backward(c2, dy, fast)
    da = jnp.where(a > 0, dh, jnp.zeros_like(dh))      # ReLU' (0 at the kink, doc 001)
    g1, dx = _dense_backward(c1, da, fast)
    return {"fc1": g1, "fc2": g2}, dx


# ----------------------------------------------------------------------------- the Layers

def _uniform(key, shape, fan_in, dtype):
    """PyTorch's nn.Linear default: U(±1/√fan_in)."""
    bound = fan_in ** -0.5
    return initializers.uniform_draw(key, shape, dtype, -bound, bound)


def _linear_params(key, n_in, n_out, dtype, bias=True):
    kW, kb = jax.random.split(key)
    W = _uniform(kW, (n_in, n_out), n_in, dtype)
    return {"W": W, "b": _uniform(kb, (n_out,), n_in, dtype)} if bias else W


def _check_seq_shape(in_shape, where, n_head=1):
    """(T, d) per example, d divisible by n_head; -> d."""
    if len(in_shape) != 2:
        raise ValueError(f"{where}: expected an input shape (T, d), got {tuple(in_shape)}")
    d = int(in_shape[1])
    if d % n_head:
        raise ValueError(f"{where}: the width d={d} must be divisible by n_head={n_head}")
    return d


def embedding(vocab: int, block_size: int, n_embd: int, fast_grads: bool = False) -> Layer:
    """Token + position embedding Layer: in_shape (T,) int ids, T <= block_size -> (T, n_embd).
    params {"tok": (vocab, n_embd), "pos": (block_size, n_embd)}, N(0, 1) (nn.Embedding); no decay;
    dx is None (ids have no gradient). ``fast_grads``: see :func:`dense_backward_fast`."""

    def init(key, in_shape, dtype=jnp.float32):
        if len(in_shape) != 1 or not 1 <= int(in_shape[0]) <= block_size:
            raise ValueError(f"embedding: expected an input shape (T,) with T <= block_size={block_size},"
                             f" got {tuple(in_shape)}")
        kt, kp = jax.random.split(key)
        return (int(in_shape[0]), n_embd), {"tok": initializers.normal_draw(kt, (vocab, n_embd), dtype),
                                            "pos": initializers.normal_draw(kp, (block_size, n_embd), dtype)}

    def forward(params, idx, key=None):
        return embedding_forward(params, jnp.asarray(idx), fast_grads)

    return Layer(init, forward, embedding_backward)


def layer_norm() -> Layer:
    """Layer norm over the last axis: in_shape (..., d) -> same; params {"g": ones (d,),
    "b": zeros (d,)}; no decay."""

    def init(key, in_shape, dtype=jnp.float32):
        d = int(in_shape[-1])
        return tuple(in_shape), {"g": jnp.ones((d,), dtype), "b": jnp.zeros((d,), dtype)}

    def forward(params, x, key=None):
        return layer_norm_forward(params, x)

    return Layer(init, forward, layer_norm_backward)


def attention_head(head_size: int, dropout: float = 0.0, scale: float | None = None) -> Layer:
    """One causal self-attention head (doc 003's notebook ``Head``): in_shape (T, d) ->
    (T, head_size); params {"Wq", "Wk", "Wv": (d, head_size)}, decayed. Dropout on the attention
    weights with the forward's ``key``; ``scale`` defaults to head_size^-0.5."""
    dropout = float(dropout)

    def init(key, in_shape, dtype=jnp.float32):
        d = _check_seq_shape(in_shape, "attention_head")
        ks = jax.random.split(key, 3)
        return (int(in_shape[0]), head_size), {nm: _linear_params(k, d, head_size, dtype, False)
                                               for nm, k in zip(("Wq", "Wk", "Wv"), ks)}

    def forward(params, x, key=None):
        return attention_head_forward(params, x, key, dropout, scale)

    return Layer(init, forward, attention_head_backward, dropout > 0, decay_keys("Wq", "Wk", "Wv"))


def _mha_decay(params):
    return {"Wq": True, "Wk": True, "Wv": True, "proj": {"W": True, "b": False}}


def multi_head_attention(n_head: int, dropout: float = 0.0, scale: float | None = None,
                         fast_grads: bool = False) -> Layer:
    """H causal heads, concatenated, then projected: in_shape (T, d) -> (T, d).

    params {"Wq", "Wk", "Wv": (d, d), "proj": {"W": (d, d), "b": (d,)}} (see
    :func:`multi_head_attention_forward`); decay: the four matrices. Dropout (``key``) on the
    attention weights and on the output; ``scale`` defaults to head_size^-0.5; ``fast_grads``: the
    weight gradients of the faster kernels (equal up to round-off, :func:`dense_backward_fast`).
    """
    dropout = float(dropout)

    def init(key, in_shape, dtype=jnp.float32):
        d = _check_seq_shape(in_shape, "multi_head_attention", n_head)
        ks = jax.random.split(key, 4)
        p = {nm: _linear_params(k, d, d, dtype, False) for nm, k in zip(("Wq", "Wk", "Wv"), ks)}
        return tuple(in_shape), {**p, "proj": _linear_params(ks[3], d, d, dtype)}

    def forward(params, x, key=None):
        return multi_head_attention_forward(params, x, n_head, key, dropout, scale, fast_grads)

    return Layer(init, forward, multi_head_attention_backward, dropout > 0, _mha_decay)


def _ffn_decay(params):
    return {"fc1": {"W": True, "b": False}, "fc2": {"W": True, "b": False}}


def feed_forward(dropout: float = 0.0, fast_grads: bool = False) -> Layer:
    """The feed-forward net d -> 4d -> d with ReLU, then dropout: in_shape (..., d) -> same.
    params {"fc1": {"W": (d, 4d), "b": (4d,)}, "fc2": {"W": (4d, d), "b": (d,)}}; decay: both "W";
    ``fast_grads``: see :func:`dense_backward_fast`."""
    dropout = float(dropout)

    def init(key, in_shape, dtype=jnp.float32):
        d = int(in_shape[-1])
        k1, k2 = jax.random.split(key)
        return tuple(in_shape), {"fc1": _linear_params(k1, d, 4 * d, dtype),
                                 "fc2": _linear_params(k2, 4 * d, d, dtype)}

    def forward(params, x, key=None):
        return feed_forward_forward(params, x, key, dropout, fast_grads)

    return Layer(init, forward, feed_forward_backward, dropout > 0, _ffn_decay)
