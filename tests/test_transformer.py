"""The tiny character transformer: every block's hand-written backward vs jax.vjp (float64,
max relative error < 1e-9), the whole model (a serial composition of Layers) through the Model
contract vs jax.grad and central differences, the notebook's initialisation and attention scale,
the causal mask, generate (one compilation, valid tokens, the right context window, temperature/
top-k, refused arguments), the text utilities, and training through ``train.fit`` with AdamW."""
import os
import zlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import gradcheck, train
from jaxnets.data import text
from jaxnets.models import transformer as tr
from jaxnets.nn import attention as att
from jaxnets.nn import layers
from experiments import e7_transformer as e7

TOL = 1e-9
FAST = {"xla_backend_optimization_level": 0}   # compile ~2.5x faster; the tests are tiny


def _jit(f):
    return jax.jit(f, compiler_options=FAST)
B, T, D, H, V = 2, 5, 8, 2, 7


def _normal(seed, shape, scale=1.0):
    """float64 N(0, scale²) test data from NumPy (eager jax.random would compile per shape)."""
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape))


def _ints(seed, shape, high):
    return jnp.asarray(np.random.default_rng(seed).integers(0, high, shape), jnp.int32)


def _ln_params(seed, d=D):
    return {"g": 1.0 + _normal((seed, 0), (d,), 0.3), "b": _normal((seed, 1), (d,), 0.3)}


def _mha_params(seed, d=D):
    return {"Wq": _normal((seed, 0), (d, d), 0.5), "Wk": _normal((seed, 1), (d, d), 0.5),
            "Wv": _normal((seed, 2), (d, d), 0.5),
            "proj": {"W": _normal((seed, 3), (d, d), 0.5), "b": _normal((seed, 4), (d,), 0.1)}}


def _ffn_params(seed, d=D):
    return {"fc1": {"W": _normal((seed, 0), (d, 4 * d), 0.5), "b": _normal((seed, 1), (4 * d,), 0.1)},
            "fc2": {"W": _normal((seed, 2), (4 * d, d), 0.5), "b": _normal((seed, 3), (d,), 0.1)}}


DROP_KEY = 99   # a fixed dropout key: the same mask in the hand-written and autodiff passes


def _case(name):
    """(forward(params, x) -> y, backward(cache, dy) -> (dparams, dx), params, x) of one block."""
    kp = zlib.crc32(name.encode())
    x = _normal((kp, 99), (B, T, D))
    dk = jax.random.key(DROP_KEY)
    if name == "dense":          # on the last axis, over the (B, T) leading axes
        p = {"W": _normal((kp, 0), (D, 3)), "b": _normal((kp, 1), (3,))}
        return layers.dense_forward, layers.dense_backward, p, x
    if name == "dense_no_bias":
        return layers.dense_forward, layers.dense_backward, {"W": _normal((kp, 0), (D, 3))}, x
    if name == "layer_norm":
        return att.layer_norm_forward, att.layer_norm_backward, _ln_params(kp), x
    if name == "dropout":
        fwd = lambda p, x: layers.dropout_forward(x, dk, 0.3)                      # noqa: E731
        return fwd, lambda c, dy: ({}, layers.dropout_backward(c, dy)), {}, x
    if name == "attention_head":
        p = {"Wq": _normal((kp, 0), (D, 4)), "Wk": _normal((kp, 1), (D, 4)), "Wv": _normal((kp, 2), (D, 4))}
        return att.attention_head_forward, att.attention_head_backward, p, x
    if name == "attention_head+dropout":
        p = {"Wq": _normal((kp, 0), (D, 4)), "Wk": _normal((kp, 1), (D, 4)), "Wv": _normal((kp, 2), (D, 4))}
        return (lambda p, x: att.attention_head_forward(p, x, dk, 0.25, scale=D ** -0.5),
                att.attention_head_backward, p, x)
    if name == "multi_head":
        return (lambda p, x: att.multi_head_attention_forward(p, x, H),
                att.multi_head_attention_backward, _mha_params(kp), x)
    if name == "multi_head+dropout":
        return (lambda p, x: att.multi_head_attention_forward(p, x, H, dk, 0.25, D ** -0.5),
                att.multi_head_attention_backward, _mha_params(kp), x)
    if name == "feed_forward":
        return att.feed_forward_forward, att.feed_forward_backward, _ffn_params(kp), x
    if name == "feed_forward+dropout":
        return (lambda p, x: att.feed_forward_forward(p, x, dk, 0.25),
                att.feed_forward_backward, _ffn_params(kp), x)
    if name == "residual":       # residual(tanh ∘ dense): y = x + tanh(x W + b)
        layer = layers.residual(layers.dense(D, "tanh"))
        p = {"W": _normal((kp, 0), (D, D), 0.5), "b": _normal((kp, 1), (D,))}
        return lambda p, x: layer.forward(p, x), layer.backward, p, x
    if name in ("block", "block+dropout"):
        p = [[_ln_params((kp, 0)), _mha_params((kp, 1))], [_ln_params((kp, 2)), _ffn_params((kp, 3))]]
        drop = name == "block+dropout"         # also the later head_size scale
        cfg = tr.TransformerConfig(V, T, D, H, 1, 0.2 if drop else 0.0, "head" if drop else "n_embd")
        blk = tr.block(cfg)
        return (lambda p, x: blk.forward(p, x, dk if drop else None), blk.backward, p, x)
    if name == "lm_head":
        head = layers.serial(att.layer_norm(), layers.dense(V))
        p = [_ln_params((kp, 0)), {"W": _normal((kp, 1), (D, V)), "b": _normal((kp, 2), (V,))}]
        return lambda p, x: head.forward(p, x), head.backward, p, x
    raise KeyError(name)


BLOCKS = ["dense", "dense_no_bias", "layer_norm", "dropout", "attention_head", "attention_head+dropout",
          "multi_head", "multi_head+dropout", "feed_forward", "feed_forward+dropout", "residual",
          "block", "block+dropout", "lm_head"]


def _hand_and_vjp(fwd, bwd):
    """One compiled function returning (hand-written (dparams, dx), jax.vjp's (dparams, dx))."""
    def both(params, x, dy):
        _, cache = fwd(params, x)
        _, vjp = jax.vjp(lambda p, x: fwd(p, x)[0], params, x)
        return bwd(cache, dy), vjp(dy)
    return _jit(both)


@pytest.mark.parametrize("name", BLOCKS)
def test_block_backward_matches_vjp(x64, name):
    fwd, bwd, params, x = _case(name)
    y = jax.eval_shape(lambda p, x: fwd(p, x)[0], params, x)
    dy = _normal(7, y.shape)
    (hand_p, hand_x), (auto_p, auto_x) = _hand_and_vjp(fwd, bwd)(params, x, dy)
    assert jax.tree.structure(hand_p) == jax.tree.structure(auto_p)
    assert gradcheck.rel_error(hand_x, auto_x) < TOL
    for h, a in zip(jax.tree.leaves(hand_p), jax.tree.leaves(auto_p)):
        assert h.shape == a.shape and h.dtype == a.dtype
        assert gradcheck.rel_error(h, a) < TOL


def test_embedding_backward_matches_vjp(x64):
    params = {"tok": _normal(1, (V, D)), "pos": _normal(2, (9, D))}   # block_size 9 > T
    idx = _ints(3, (B, T), V)
    dy = _normal(12, (B, T, D))

    @_jit
    def both(params, idx, dy):
        _, cache = att.embedding_forward(params, idx)
        hand, dx = att.embedding_backward(cache, dy)
        assert dx is None
        return hand, jax.vjp(lambda p: att.embedding_forward(p, idx)[0], params)[1](dy)[0]

    hand, auto = both(params, idx, dy)
    for nm in ("tok", "pos"):
        assert gradcheck.rel_error(hand[nm], auto[nm]) < TOL
    assert np.all(np.asarray(hand["pos"][T:]) == 0)


def _concatenated_single_heads(params, x, n_head, scale):
    """Multi-head attention by its definition: head h is one attention head on columns
    h*hs:(h+1)*hs of Wq, Wk, Wv; the heads' outputs concatenated along features, then proj."""
    hs = params["Wq"].shape[1] // n_head
    heads = [att.attention_head_forward({w: params[w][:, h * hs:(h + 1) * hs] for w in ("Wq", "Wk", "Wv")},
                                        x, scale=scale)[0] for h in range(n_head)]
    return jnp.concatenate(heads, axis=-1) @ params["proj"]["W"] + params["proj"]["b"][None, None, :]


MHA_SPLITS = [(1, None), (2, None), (4, None), (2, D ** -0.5)]   # n_head, scale (None: hs ** -0.5)


@pytest.mark.parametrize("n_head,scale", MHA_SPLITS, ids=["1_head", "2_heads", "4_heads", "2_heads_scale_d"])
def test_multi_head_is_concatenated_single_heads(x64, n_head, scale):
    """float64: the batched layer's output equals its definition (abs and rel 1e-12), and its hand
    backward equals jax.vjp of the definition (max relative error < TOL) for params and x."""
    params, x, dy = _mha_params(31), _normal(32, (B, T, D)), _normal(33, (B, T, D))

    @_jit
    def both(params, x, dy):
        y, cache = att.multi_head_attention_forward(params, x, n_head, scale=scale)
        ref, vjp = jax.vjp(lambda p, x: _concatenated_single_heads(p, x, n_head, scale), params, x)
        return (y, att.multi_head_attention_backward(cache, dy)), (ref, vjp(dy))

    (y, (hand_p, hand_x)), (ref, (auto_p, auto_x)) = both(params, x, dy)
    assert y.dtype == ref.dtype == jnp.float64
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert jax.tree.structure(hand_p) == jax.tree.structure(auto_p)
    for h, a in zip(jax.tree.leaves((hand_p, hand_x)), jax.tree.leaves((auto_p, auto_x))):
        assert gradcheck.rel_error(h, a) < TOL


def _mha_three_maps(params, x, n_head, scale):
    """The multi-head layer with q, k, v as three separate dense maps (its earlier formulation):
    (y, (dparams, dx)) for dy = cos(y)."""
    cs = [layers.dense_forward({"W": params[nm]}, x) for nm in ("Wq", "Wk", "Wv")]
    heads, ca = att._causal_attention_forward(*(att._split_heads(c[0], n_head) for c in cs), None, 0.0, scale)
    y, cp = layers.dense_forward(params["proj"], att._merge_heads(heads))
    gproj, dcat = layers.dense_backward(cp, jnp.cos(y))
    dqkv = att._causal_attention_backward(ca, att._split_heads(dcat, n_head))
    g = [layers.dense_backward(c[1], att._merge_heads(dd)) for c, dd in zip(cs, dqkv)]
    return y, ({"Wq": g[0][0]["W"], "Wk": g[1][0]["W"], "Wv": g[2][0]["W"], "proj": gproj},
               g[0][1] + g[1][1] + g[2][1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_qkv_is_bit_identical_to_three_maps(dtype):
    """One GEMM for q, k, v (and one for their weight gradients) gives exactly the bits of three
    separate maps: output, weight gradients and dx array_equal at E7's sizes (B 16, T 32, d 64,
    4 heads), each compiled with the default options as training compiles it."""
    with jax.enable_x64(dtype == "float64"):
        d, n_head = 64, 4
        params = jax.tree.map(lambda v: v.astype(dtype), _mha_params(21, d))
        x = _normal(22, (16, 32, d)).astype(dtype)

        def fused(p, x):
            y, cache = att.multi_head_attention_forward(p, x, n_head, scale=d ** -0.5)
            return y, att.multi_head_attention_backward(cache, jnp.cos(y))

        got = jax.jit(fused)(params, x)
        want = jax.jit(lambda p, x: _mha_three_maps(p, x, n_head, d ** -0.5))(params, x)
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert g.dtype == w.dtype == jnp.dtype(dtype)
            assert np.array_equal(np.asarray(g), np.asarray(w))


# vocab, block_size, n_embd, n_head, n_layer, dropout, T, key
FAST_CASES = [(11, 8, 12, 4, 2, 0.0, 5, False), (9, 6, 8, 2, 1, 0.2, 6, True)]


@pytest.mark.parametrize("fast_grads", [True, False])
@pytest.mark.parametrize("vocab,block,d,h,n_layer,drop,t,use_key", FAST_CASES)
def test_fast_grads_match_jax_grad(x64, vocab, block, d, h, n_layer, drop, t, use_key, fast_grads):
    """Both weight-gradient paths (``fast_grads=True``: from materialised transposes; ``False``:
    the plain products), whichever is the default here: float64 hand gradients vs jax.grad of the
    same model within TOL (relative), the loss bit-equal to the default model's (the option touches
    backward products only)."""
    cfg = tr.TransformerConfig(vocab, block, d, h, n_layer, drop)
    fast = tr.transformer(cfg._replace(fast_grads=fast_grads))
    params = _perturbed(fast.init(jax.random.key(1), jnp.float64), 2)
    idx, tgt = _ints(3, (3, t), vocab), _ints(4, (3, t), vocab)
    key = jax.random.key(5) if use_key else None
    both = _jit(lambda p, i, t, k: (fast.backprop(p, i, t, 0.0, None, k), fast.grad_autodiff(p, i, t, 0.0, None, k),
                                    tr.transformer(cfg).loss(p, i, t, 0.0, None, k)))
    (l_hand, g_hand), (l_auto, g_auto), l_default = both(params, idx, tgt, key)
    assert float(l_hand) == float(l_default)
    assert abs(float(l_hand) - float(l_auto)) < 1e-12
    assert jax.tree.structure(g_hand) == jax.tree.structure(params)
    errs = jax.tree.map(gradcheck.rel_error, g_hand, g_auto)
    assert max(jax.tree.leaves(errs)) < TOL, errs


def test_fast_grads_must_be_a_bool():
    with pytest.raises(ValueError, match="fast_grads must be a bool or None"):
        tr.transformer(_cfg()._replace(fast_grads="yes"))


def test_fast_grads_default_follows_the_backend():
    """``fast_grads=None`` (the default) resolves to on for a CPU backend, off elsewhere; the
    default model's gradients are then the resolved path's bit for bit (float32), and the two
    paths differ (other kernels) by round-off only."""
    cfg = _cfg()
    assert cfg.fast_grads is None
    on = jax.default_backend() == "cpu"
    assert cfg.validated().fast_grads is on and isinstance(cfg.validated().fast_grads, bool)
    models = {k: tr.transformer(cfg._replace(fast_grads=k)) for k in (None, True, False)}
    params = models[None].init(jax.random.key(0))
    idx, tgt = _ints(3, (2, cfg.block_size), cfg.vocab), _ints(4, (2, cfg.block_size), cfg.vocab)
    g = {k: jax.jit(m.backprop)(params, idx, tgt)[1] for k, m in models.items()}
    leaves = {k: [np.asarray(v) for v in jax.tree.leaves(t)] for k, t in g.items()}
    assert all(np.array_equal(a, b) for a, b in zip(leaves[None], leaves[on]))
    for a, b in zip(leaves[True], leaves[False]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the option is no no-op: the two paths' programs differ (materialised transposes before the
    # weight-gradient products), whatever their bits at this size
    texts = {k: jax.jit(models[k].backprop).lower(params, idx, tgt).as_text() for k in (True, False)}
    assert texts[True].count("optimization_barrier") > texts[False].count("optimization_barrier") == 0


def _perturbed(params, seed):
    """Perturb every leaf so layer-norm gains/biases and zero biases are generic too."""
    leaves, tdef = jax.tree.flatten(params)
    return jax.tree.unflatten(tdef, [v + _normal((seed, i), v.shape, 0.1) for i, v in enumerate(leaves)])


def _cfg(vocab=V, block=8, d=8, h=2, n_layer=1, drop=0.0, scale="n_embd", init="pytorch"):
    return tr.TransformerConfig(vocab, block, d, h, n_layer, drop, scale, init)


# vocab, block_size, n_embd, n_head, n_layer, dropout, attn_scale, T (< block: partial), key, l2, mask
MODEL_CASES = [
    (11, 8, 12, 4, 2, 0.0, "n_embd", 5, False, 0.0, False),
    (9, 6, 8, 1, 1, 0.2, "head", 6, True, 0.0, False),
    (13, 4, 16, 8, 2, 0.1, "n_embd", 4, True, 0.3, True),
    (7, 5, 8, 2, 1, 0.0, "head", 5, False, 0.1, True),
]


@pytest.mark.parametrize("vocab,block,d,h,n_layer,drop,scale,t,use_key,l2,masked", MODEL_CASES)
def test_model_backprop_matches_jax_grad(x64, vocab, block, d, h, n_layer, drop, scale, t, use_key,
                                         l2, masked):
    model = tr.transformer(_cfg(vocab, block, d, h, n_layer, drop, scale))
    assert model.input_dtype == "int" and model.stochastic == (drop > 0)
    params = _perturbed(model.init(jax.random.key(1), jnp.float64), 2)
    idx, tgt = _ints(3, (3, t), vocab), _ints(4, (3, t), vocab)
    key = jax.random.key(5) if use_key else None
    mask = jnp.asarray([1.0, 0.0, 1.0]) if masked else None
    both = _jit(lambda p, i, t, m, k: (model.backprop(p, i, t, l2, m, k), model.grad_autodiff(p, i, t, l2, m, k)))
    (l_hand, g_hand), (l_auto, g_auto) = both(params, idx, tgt, mask, key)
    assert abs(float(l_hand) - float(l_auto)) < 1e-12
    assert jax.tree.structure(g_hand) == jax.tree.structure(params)
    errs = jax.tree.map(gradcheck.rel_error, g_hand, g_auto)
    assert max(jax.tree.leaves(errs)) < TOL, errs
    if use_key:   # dropout is really on: a different key gives a different loss
        assert float(_jit(model.loss)(params, idx, tgt, l2, mask, jax.random.key(6))) != float(l_hand)
    if masked:    # a masked sequence contributes nothing: the loss equals that of the real ones
        real = _jit(model.loss)(params, idx[::2], tgt[::2], l2, None, None)
        assert abs(float(_jit(model.loss)(params, idx, tgt, l2, mask, None)) - float(real)) < 1e-12


def test_model_gradients_match_central_differences(x64):
    """The library's checker on the whole model (deterministic, 12 sampled entries per leaf)."""
    model = tr.transformer(_cfg(V, 5, 8, 2, 1))
    params = _perturbed(model.init(jax.random.key(0), jnp.float64), 3)
    idx, tgt = _ints(5, (2, 5), V), _ints(6, (2, 5), V)
    errs = gradcheck.check_model(model, params, idx, tgt, l2=0.05, n_samples=12, key=jax.random.key(1))
    assert errs["tolerance"] == {"autodiff": 1e-10, "numeric": 1e-6}
    assert max(errs["numeric"].values()) < 1e-6 and max(errs["autodiff"].values()) < 1e-10


def test_pytorch_and_gpt_initialisation():
    """init="pytorch": nn.Linear U(±1/√fan_in) for weights and biases, nn.Embedding N(0, 1),
    LayerNorm 1/0 (checked on bounds and moments); init="gpt": N(0, 0.02²), zero biases."""
    d, V_ = 64, 65
    p = tr.transformer(_cfg(V_, 32, d, 4, 2)).init(jax.random.key(0))
    (ln1, attn), (_, ffn) = p[2]                           # block 1: [[ln1, attn], [ln2, ffn]]
    for leaf, fan_in in ((attn["Wq"], d), (attn["proj"]["b"], d), (ffn["fc1"]["W"], d),
                         (ffn["fc2"]["W"], 4 * d), (ffn["fc2"]["b"], 4 * d), (p[-1]["W"], d)):
        bound = fan_in ** -0.5
        v = np.asarray(leaf)
        assert np.all(np.abs(v) <= bound) and np.abs(v).max() > 0.9 * bound
        assert abs(v.std() - bound / 3 ** 0.5) < 0.2 * bound        # U(−a, a) has sd a/√3
    for emb in (p[0]["tok"], p[0]["pos"]):
        assert abs(float(jnp.std(emb)) - 1.0) < 0.1
    assert np.all(np.asarray(p[-2]["g"]) == 1) and np.all(np.asarray(ln1["b"]) == 0)
    assert not np.array_equal(attn["Wq"], attn["Wk"])   # every matrix its own draw
    g = tr.transformer(_cfg(V_, 32, d, 4, 2, init="gpt")).init(jax.random.key(0))
    assert abs(float(jnp.std(g[1][1][1]["fc1"]["W"])) - 0.02) < 0.002
    assert np.all(np.asarray(g[-1]["b"]) == 0)


def test_init_keeps_the_named_draw_order():
    """The params of the composition are the values the named layout draws, moved into the list:
    a key gives the initial values it gave before the transformer became a serial composition."""
    cfg = _cfg(V, 8, 8, 2, 2).validated()
    named = tr._draw(jax.random.key(4), cfg, jnp.float32)
    p = tr.init_params(jax.random.key(4), cfg)
    pairs = [(p[0]["tok"], named["tok_emb"]), (p[0]["pos"], named["pos_emb"]), (p[-2], named["ln_f"]),
             (p[-1], named["head"])]
    for i, b in enumerate(named["blocks"]):
        pairs += [(p[1 + i], [[b["ln1"], b["attn"]], [b["ln2"], b["ffn"]]])]
    for a, b in pairs:
        chex.assert_trees_all_equal(a, b)


def test_attention_scale_choices(x64):
    """The notebook scales scores by n_embd^-0.5; "head" is head_size^-0.5; they differ."""
    assert _cfg(d=16, h=4).scale == 16 ** -0.5 and _cfg(d=16, h=4, scale="head").scale == 4 ** -0.5
    q, k, v = (_normal(i, (2, 5, 4)) for i in range(3))
    out, _ = att._causal_attention_forward(q, k, v, scale=0.3)
    s = jnp.einsum("btd,bsd->bts", q, k) * 0.3
    ref = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((5, 5), bool)), s, -jnp.inf), axis=-1) @ v
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    a, b = (tr.transformer(_cfg(d=16, h=4, scale=sc)) for sc in ("n_embd", "head"))
    params = a.init(jax.random.key(0), jnp.float64)
    idx = _ints(2, (1, 8), V)
    assert not np.allclose(a.apply(params, idx), b.apply(params, idx))


# ----------------------------------------------------------------------------- causal mask

CAUSAL_CASES = [("attention_head", 0), ("multi_head", 2), ("block", 2), ("block", T - 2)]


@pytest.mark.parametrize("name,t", CAUSAL_CASES)
def test_no_gradient_from_future_positions(x64, name, t):
    fwd, bwd, params, x = _case(name)

    @_jit
    def grads(params, x, dy_t):
        y, cache = fwd(params, x)
        # Hand-written: a cotangent only at position t.
        dx = bwd(cache, jnp.zeros_like(y).at[:, t].set(dy_t))[1]
        # Autodiff: the Jacobian of the output at t w.r.t. every input position.
        jac = jax.jacrev(lambda x: fwd(params, x)[0][:, t])(x)        # (B, out, B, T, D)
        return dx, jac

    out_dim = jax.eval_shape(lambda p, x: fwd(p, x)[0], params, x).shape[-1]
    dx, jac = grads(params, x, _normal(8, (B, out_dim)))
    assert np.all(np.asarray(dx[:, t + 1:]) == 0.0)        # exactly zero, not just small
    assert np.any(np.asarray(dx[:, :t + 1]) != 0.0)
    assert np.all(np.asarray(jac[:, :, :, t + 1:]) == 0.0)
    assert np.any(np.asarray(jac[:, :, :, :t + 1]) != 0.0)


def test_model_logits_ignore_future_tokens(x64):
    cfg = _cfg(V, 8, 8, 2, 2)
    model = tr.transformer(cfg)
    params = model.init(jax.random.key(0), jnp.float64)
    idx = _ints(1, (2, 8), V)
    idx2 = idx.at[:, 5:].set((idx[:, 5:] + 1) % V)
    apply = _jit(model.apply)
    a, b = apply(params, idx), apply(params, idx2)
    np.testing.assert_array_equal(a[:, :5], b[:, :5])
    assert not np.allclose(a[:, 5:], b[:, 5:])
    # the whole trunk (embedding and blocks): a cotangent at position 3 only reaches embeddings
    # at positions <= 3
    trunk = layers.serial(att.embedding(V, 8, 8), *[tr.block(cfg)] * 2)

    @_jit
    def trunk_grads(params, idx):
        x, cache = trunk.forward(params, idx)
        g, dx = trunk.backward(cache, jnp.zeros_like(x).at[:, 3].set(1.0))
        return g[0], dx
    g_emb, dx = trunk_grads(params[:3], idx)
    assert dx is None and np.all(np.asarray(g_emb["pos"][4:]) == 0.0)
    assert np.any(np.asarray(g_emb["pos"][:4]) != 0.0)


# ----------------------------------------------------------------------------- generate

def _reference_generate(model, params, key, prompt, n, block_size, temperature=1.0, greedy=False):
    """Step-by-step sampler in plain Python: the last block_size tokens, the last row's logits."""
    toks = [int(t) for t in prompt]
    last_row = _jit(lambda p, ctx: model.apply(p, ctx)[0, -1])
    for k in jax.random.split(key, n):
        ctx = jnp.asarray(toks[-block_size:], jnp.int32)[None, :]
        row = last_row(params, ctx)
        toks.append(int(jnp.argmax(row)) if greedy else int(jax.random.categorical(k, row / temperature)))
    return toks


def test_generate_matches_reference_and_compiles_once(monkeypatch):
    cfg = _cfg(V, 4, 8, 2, 1)
    model = tr.transformer(cfg)
    params = model.init(jax.random.key(0))
    # the library's compiled sampler, wrapped so a second trace would fail the test
    traced = jax.jit(chex.assert_max_traces(tr._generate, n=1), static_argnames=("cfg", "n", "top_k"))
    monkeypatch.setattr(tr, "_generate_jit", traced)
    prompt, n = _ints(1, (3,), V), 6                         # partial, then sliding windows of 4
    out = tr.generate(cfg, params, jax.random.key(2), prompt, n)
    assert out.shape == (3 + n,) and out.dtype == jnp.int32
    np.testing.assert_array_equal(out[:3], prompt)
    assert out.tolist() == _reference_generate(model, params, jax.random.key(2), prompt, n, 4)
    # new key, new prompt values, new params, new temperature: no retrace
    params2 = jax.tree.map(lambda v: v * 1.5, params)
    out2 = tr.generate(cfg, params2, jax.random.key(3), (prompt + 1) % V, n, temperature=0.5)
    assert out2.tolist() == _reference_generate(model, params2, jax.random.key(3), (prompt + 1) % V,
                                                n, 4, temperature=0.5)


def test_generate_top_k():
    cfg = _cfg(V, 4, 8, 2, 1)
    model = tr.transformer(cfg)
    params = jax.tree.map(lambda v: 3 * v, model.init(jax.random.key(0)))
    prompt = _ints(2, (2,), V)
    greedy = tr.generate(cfg, params, jax.random.key(1), prompt, 8, top_k=1)
    assert greedy.tolist() == _reference_generate(model, params, jax.random.key(1), prompt, 8, 4, greedy=True)
    # top-k 2: every drawn id is one of the two largest logits of its step
    out = np.asarray(tr.generate(cfg, params, jax.random.key(4), prompt, 12, top_k=2))
    last_row = _jit(lambda p, ctx: model.apply(p, ctx)[0, -1])
    for i in range(2, len(out)):
        row = np.asarray(last_row(params, jnp.asarray(out[max(0, i - 4):i])[None, :]))
        assert out[i] in np.argsort(row)[-2:]


GENERATE_ERRORS = [   # argument overrides, message fragment
    (dict(prompt=np.array([1.0, 2.0])), "prompt must hold integer"),
    (dict(prompt=np.array([V])), r"prompt ids must lie in \[0, 7\)"),
    (dict(prompt=np.array([-1, 0])), "prompt ids"),
    (dict(prompt=np.zeros((9,), np.int32)), "block_size=8"),
    (dict(prompt=np.zeros((0,), np.int32)), "1 <= P"),
    (dict(prompt=np.zeros((1, 2), np.int32)), "shape"),
    (dict(n=0), "max_new_tokens"),
    (dict(n=-3), "max_new_tokens"),
    (dict(n=2.0), "max_new_tokens"),
    (dict(prompt=[]), "prompt is empty"),                   # a list: np.asarray([]) is float64
    (dict(n=2**31), r"max_new_tokens must be an integer in \[1, 16777216\]"),
    (dict(n=2**63), "max_new_tokens"),
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    # float32 params: 1e-50 would round to 0 (greedy by accident), 1e300 to inf (uniform)
    (dict(temperature=1e-50), r"temperature must lie in \[1.18e-38, 3.4e\+38\].*float32"),
    (dict(temperature=1e300), r"temperature must lie in \[1.18e-38"),
    (dict(temperature=1e-39), r"temperature must lie in"),   # subnormal in float32
    (dict(temperature=float("inf")), "temperature"),
    (dict(temperature="hot"), "temperature must be a number"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=V + 1), "top_k"),
]


@pytest.mark.parametrize("override,match", GENERATE_ERRORS)
def test_generate_refuses_bad_arguments(override, match):
    cfg = _cfg()
    params = tr.transformer(cfg).init(jax.random.key(0))
    kw = {"prompt": np.array([1, 2], np.int32), "n": 3, "temperature": 1.0, "top_k": None} | override
    with pytest.raises(ValueError, match=match):
        tr.generate(cfg, params, jax.random.key(0), kw["prompt"], kw["n"], kw["temperature"], kw["top_k"])


# params built for another config (which model, float32), message fragment
PARAM_MISMATCHES = [
    (dict(vocab=20), r"params\[0\]\['tok'\] has shape \(20, 8\), the config gives \(7, 8\)"),
    (dict(d=16), r"params\[0\]\['pos'\] has shape \(8, 16\)"),
    (dict(block=16), r"params\[0\]\['pos'\] has shape \(16, 8\)"),
    (dict(n_layer=2), "their tree is not the one init_params"),
]


@pytest.mark.parametrize("other,match", PARAM_MISMATCHES)
def test_generate_refuses_params_of_another_config(other, match):
    """A vocab-20 model's params under a vocab-7 config would sample ids up to 19."""
    params = tr.transformer(_cfg(**other)).init(jax.random.key(0))
    with pytest.raises(ValueError, match="generate: params do not fit cfg .*" + match):
        tr.generate(_cfg(), params, jax.random.key(0), np.array([1, 2], np.int32), 3)


# dtype, temperature, head bias b (logits = b: W_head = 0), the ids softmax(b / T) can draw: the
# arg-max, uniform over tied maxima. float32 at 2e-38: b / T overflows (20 / 2e-38 = 1e39). The
# other temperatures keep b / T finite but above 2**11, README's other range where the sampler shifts
# by the maximum first (1e-3: its example; there the noise is still resolved). Unshifted, float32's
# 2e7 (spacing 2) and float64's 2e16 (spacing 4) swallow the O(1) Gumbel noise: with this key a tie
# goes to the first maximum in 72% and 87% of the draws, at 2e301 in all of them.
TIED = [0.0, 20.0, 9.0, 20.0, 7.0, 1.0, 2.0]
TINY_TEMPERATURES = [
    ("float32", 2e-38, [0.0, 8.0, 9.0, 20.0, 7.0, 1.0, 2.0], {3}),
    ("float32", 2e-38, TIED, {1, 3}),
    ("float32", 2e-38, [-30.0, -20.0, -25.0, -21.0, -40.0, -22.0, -23.0], {1}),
    ("float32", 1e-3, TIED, {1, 3}),
    ("float32", 1e-6, TIED, {1, 3}),
    ("float64", 1e-50, [0.0, 8.0, 9.0, 20.0, 7.0, 1.0, 2.0], {3}),
    ("float64", 1e-300, TIED, {1, 3}),
    ("float64", 1e-15, TIED, {1, 3}),
]
DRAWS = 2048   # one compiled scan per dtype: ~20 ms of sampling


def _tiny_temperature_draws(dtype, temperature, bias):
    """DRAWS ids from generate with logits = bias at every step (the head's W is 0)."""
    cfg = _cfg(V, 4, 8, 2, 1)
    params = tr.transformer(cfg).init(jax.random.key(0), jnp.dtype(dtype))
    params[-1] = {"W": jnp.zeros_like(params[-1]["W"]), "b": jnp.asarray(bias, dtype)}
    out = tr.generate(cfg, params, jax.random.key(5), np.array([1, 2], np.int32), DRAWS, temperature)
    return np.asarray(out[2:])


@pytest.mark.parametrize("dtype,temperature,bias,ids", TINY_TEMPERATURES)
def test_generate_tiny_temperature_samples_the_softmax(dtype, temperature, bias, ids):
    """Every draw is a maximum, and two tied maxima split the draws 50/50: the first one's count
    within 4.5 binomial standard deviations (4.5 * sqrt(DRAWS) / 2 = 101.8) of DRAWS / 2. For a
    fair sampler that fails with probability 6.8e-6 per fresh key (normal approximation); a 60/40
    split is 9 standard deviations off."""
    with jax.enable_x64(dtype == "float64"):
        draws = _tiny_temperature_draws(dtype, temperature, bias)
    assert set(draws.tolist()) == ids
    if len(ids) == 2:
        first = int(np.sum(draws == min(ids)))
        assert abs(first - DRAWS / 2) <= 4.5 * np.sqrt(DRAWS) / 2, (first, DRAWS)


# ----------------------------------------------------------------------------- errors

CONFIG_ERRORS = [
    (dict(d=10, h=4), "divisible"), (dict(drop=1.0), "dropout"), (dict(block=0), "block_size"),
    (dict(scale="sqrt"), "attn_scale"), (dict(init="xavier"), "init"), (dict(vocab=2.5), "vocab"),
]


@pytest.mark.parametrize("override,match", CONFIG_ERRORS)
def test_config_errors(override, match):
    with pytest.raises(ValueError, match=match):
        tr.transformer(_cfg(**override))


def test_shape_errors():
    model = tr.transformer(_cfg(V, 4, 8, 2, 1))
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="block_size"):
        model.apply(params, jnp.zeros((1, 5), jnp.int32))
    with pytest.raises(ValueError, match="targets"):
        model.loss(params, jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 3), jnp.int32))
    with pytest.raises(ValueError, match="integer token ids"):
        model.apply(params, jnp.zeros((1, 4), jnp.float32))


# ----------------------------------------------------------------------------- text

def test_tokenizer_split_and_batches():
    s = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 5
    tok = text.CharTokenizer.from_text(s)
    ids = tok.encode(s)
    assert tok.decode(ids) == s and ids.dtype == np.int32 and tok.vocab_size == len(set(s))
    tr_ids, va_ids = text.train_val_split(ids)
    assert len(tr_ids) == int(0.9 * len(ids)) and len(tr_ids) + len(va_ids) == len(ids)
    x, y = text.get_batch(jax.random.key(0), jnp.asarray(ids), 4, 8)
    assert x.shape == y.shape == (4, 8)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("Z")


def test_missing_corpus_error_names_paths(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        text.load_shakespeare(missing)
    (tmp_path / "tinyshakespeare.txt").write_text("To be:\nor not\n", encoding="utf-8")
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path))
    assert text.load_shakespeare(verify=False) == "To be:\nor not\n"  # not the corpus: no checksum
    assert text.load_shakespeare(tmp_path, verify=False) == "To be:\nor not\n"     # a directory works too


def test_shakespeare_corpus():  # always available: the package embeds a copy
    data = text.shakespeare()
    assert data.tokenizer.vocab_size == 65
    assert len(data.train) + len(data.val) == text.SHAKESPEARE_CHARS
    assert len(data.train) == int(0.9 * text.SHAKESPEARE_CHARS)


# ----------------------------------------------------------------------------- training

def _corpus():
    s = "ab\ncab\nabc\n" * 200
    tok = text.CharTokenizer.from_text(s)
    return tok, tok.encode(s)


def test_fit_with_adamw_lowers_the_loss():
    """The transformer trains through train.fit with optax's AdamW on a token Sampler."""
    tok, ids = _corpus()
    tr_ids, va_ids = text.train_val_split(ids)
    model = tr.transformer(_cfg(tok.vocab_size, 8, 16, 2, 1, drop=0.1))
    params = model.init(jax.random.key(0))
    tr_s, va_s = e7.token_sampler(tr_ids, 8, 40), e7.token_sampler(va_ids, 8, 40)
    res = train.fit(model, params, tr_s, epochs=2, batch_size=8, optimizer=optax.adamw(1e-2),
                    key=jax.random.key(1), val=va_s, evaluation=train.Evaluation(sampled_batches=2),
                    progress=False)
    first = np.mean(res.history["step_loss"][0][:5])
    assert len(res.history["step_loss"][0]) == 40 and res.history["val_loss"][-1] < 0.6 * first


def test_fit_equals_a_hand_rolled_optax_loop():
    """fit's steps are optax's AdamW on model.backprop, bit for bit: a sampler that returns the
    same batch whatever its key makes the batches independent of how fit derives its keys."""
    tok, ids = _corpus()
    model = tr.transformer(_cfg(tok.vocab_size, 8, 16, 2, 1))
    params = model.init(jax.random.key(0))
    x, y = text.get_batch(jax.random.key(7), jnp.asarray(ids), 4, 8)
    fixed = train.Sampler(lambda k, b, x, y: (x, y), 5, (x, y))
    opt = optax.adamw(3e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)
    res = train.fit(model, params, fixed, epochs=2, batch_size=4, optimizer=opt, key=jax.random.key(1),
                    evaluation=train.Evaluation(train=False), progress=False)

    @jax.jit
    def step(p, s):
        loss, g = model.backprop(p, x, y)
        with jax.numpy_dtype_promotion("standard"):       # optax is not written for strict promotion
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s, loss

    with jax.numpy_dtype_promotion("standard"):
        p, s = params, opt.init(params)
    losses = []
    for _ in range(10):
        p, s, loss = step(p, s)
        losses.append(float(loss))
    np.testing.assert_array_equal(np.concatenate(res.history["step_loss"]), losses)
    for a, b in zip(jax.tree.leaves(res.final_params), jax.tree.leaves(p)):
        np.testing.assert_array_equal(a, b)
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- E7 record

def _fake_run(T, H, val, seeds=(0, 1, 2)):
    sample = "\nROMEO:\nGood morrow.\n\nJULIET:\nGood night.\n"
    per = [{"final_train": val - 0.1 + 0.01 * i, "final_val": val + 0.01 * (i - 1), "sample_before": "xq\nzz",
            "sample_after": sample, "sample_after_topk": sample} for i, _ in enumerate(seeds)]
    hist = {"step": [0, 10], "train_loss": [4.2, val - 0.1], "val_loss": [4.2, val]}
    return {"block_size": T, "n_head": H, "model": f"m{T}{H}", "n_seeds": len(seeds), "steps": 10,
            "final_train": float(np.mean([p["final_train"] for p in per])),
            "final_val": float(np.mean([p["final_val"] for p in per])),
            "final_train_sd": 0.01, "final_val_sd": 0.01, "per_seed": per, "best_val": val, "history": hist,
            "compile_s": 1.0, "train_s": 2.0, "tokens_per_s": 1000.0, "wall_s": 3.0,
            "sample_before": "xq\nzz", "sample_after": sample, "sample_after_topk": sample,
            "format_before": e7.play_format("xq"), "format_after": e7.play_format(sample)}


def test_e7_record_from_measured_numbers(tmp_path):
    vals = {(32, 4): 1.8, (2, 4): 2.4, (16, 4): 1.95, (64, 4): 1.7, (32, 2): 1.82, (32, 8): 1.79}
    assert sorted(vals) == sorted(e7.SETTINGS)
    runs = {e7.run_key(T, H): _fake_run(T, H, v) for (T, H), v in vals.items()}
    assert e7.play_format(runs["T32_H4"]["sample_after"])["speaker_lines"] == 2
    rows = {r["id"]: r for r in e7.rows(runs, "document", (0, 1, 2))}
    assert rows["E7.base.val"]["value"] == 1.8 and rows["E7.base.train"]["value"] == pytest.approx(1.71)
    assert "mean of 3 seeds" in rows["E7.base.val"]["quantity"]
    assert rows["E7.base.val"]["note"] == "± 0.0100 sd; per seed 1.7900 / 1.8000 / 1.8100"
    assert rows["E7.context.T2"]["value"] == 2.4 and rows["E7.heads.H8"]["value"] == 1.79
    assert rows["E7.context_order"]["value"] == "yes" and rows["E7.base.val"]["seeds"] == [0, 1, 2]
    runs["T64_H4"]["final_val"] = 1.99                       # now block 64 is worse than 32
    assert {r["id"]: r for r in e7.rows(runs, "document", (0, 1, 2))}["E7.context_order"]["value"] == "no"
    text_ = e7.comparison(runs)
    assert "T=2: 2.400" in text_ and "best 8 heads" in text_ and "mean of 3 seeds" in text_
    table = e7.sample_table(runs, (0, 1, 2))
    assert len(table) == 18 and table[0]["after"] == "ROMEO:\nGood morrow.\nJULIET:\nGood night."
    assert table[1]["label"] == "block 32, 4 heads, seed 1"
    figs = e7.plot(runs, str(tmp_path / "f"), "tiny")   # a run mode: full, quick or tiny
    assert len(figs) == 3 and all(os.path.exists(f) for f in figs)


def test_init_under_vmap_equals_one_init_per_key():
    """init is one option-carrying jit called directly, and traced plainly under vmap: the same
    draws (float32; rtol 1e-6: the direct call compiles without XLA's optimisations, the vmapped
    one with them, so a normal draw's inverse-erf may round differently in the last bit)."""
    model = tr.transformer(_cfg(11, 8, 16, 2, 1))
    keys = jax.random.split(jax.random.key(3), 2)
    stacked = jax.vmap(model.init)(keys)
    for c in range(2):
        chex.assert_trees_all_close(jax.tree.map(lambda v: v[c], stacked), model.init(keys[c]), rtol=1e-6, atol=0)
    assert not np.allclose(stacked[0]["pos"][0], stacked[0]["pos"][1])


@pytest.mark.e2e(cpu=14)
def test_e7_train_one_trains_the_seeds_together_and_keeps_each():
    """Two seeds trained together: each its own initial weights, batches, curve and samples."""
    corpus = "the quick brown fox\njumps over the lazy dog\n" * 60   # more characters than E7's top-k 10
    tok = text.CharTokenizer.from_text(corpus)
    tr_ids, va_ids = text.train_val_split(tok.encode(corpus))
    data = text.CharData(tok, tr_ids, va_ids, "test corpus", "full", None)
    cfg = dict(e7.TINY, steps=20, eval_every=10, eval_batches=2, sample_chars=20)
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    r = e7.train_one(data, 8, 2, cfg, keys, progress=False)
    assert r["n_seeds"] == 2 and len(r["per_seed"]) == 2 and r["history"]["step"] == [0, 10, 20]
    a, b = r["per_seed"]
    assert len(a["val_loss"]) == 3 and a["val_loss"] != b["val_loss"] and a["sample_before"] != b["sample_before"]
    assert r["final_val"] == pytest.approx((a["final_val"] + b["final_val"]) / 2)
    assert a["val_loss"][-1] < a["val_loss"][0] and len(a["sample_after"]) == 21   # prompt + 20 characters
    assert r["diverged"] == [False, False]
    assert r["config"]["fast_grads"] is (jax.default_backend() == "cpu")   # the record names the path that ran


@pytest.mark.e2e(cpu=16)
def test_bench_paths_compute_the_same_steps():
    """bench_transformer's timed programs (hand-written vs jax.grad vs fast_grads=False gradients in the
    engine's epoch, and the bare minimal scan) run the same AdamW steps: equal step losses to
    float32 round-off, the minimal scan's hand losses bit-equal to the engine's."""
    from experiments import bench_transformer as bench
    tok, ids = _corpus()
    cfg = dict(e7.TINY, chunk=4, block_size=8, n_head=2)
    mcfg = e7.model_config(tok.vocab_size, 8, 2, cfg)
    model, plain = tr.transformer(mcfg), tr.transformer(mcfg._replace(fast_grads=False))
    params = model.init(jax.random.key(0))
    sampler = e7.token_sampler(ids, 8, 4)
    compiled, compile_s, args = bench.compiled_chunks(model, params, sampler, cfg, plain)
    assert set(compiled) == {*bench.GRADS, bench.PLAIN} and min(compile_s.values()) > 0
    hand, auto, quick = (compiled[g](*args)[1] for g in (*bench.GRADS, bench.PLAIN))
    np.testing.assert_allclose(hand, auto, rtol=1e-5)
    np.testing.assert_allclose(hand, quick, rtol=1e-5)
    assert hand.shape == (4,)
    opt_state = e7.adamw(cfg).init(params)
    minimal = bench.minimal_chunk(model, sampler, cfg)(params, opt_state, args[3], *args[4:])[2]
    assert np.array_equal(np.asarray(minimal), np.asarray(hand))


@pytest.mark.parametrize("name", ["multi_head+dropout", "feed_forward+dropout", "block+dropout"])
def test_dropout_blocks_agree_with_central_differences(x64, name):
    """The blocks with dropout against central differences too (not only jax.vjp): ``fkey`` fixes
    the one dropout mask every reference reuses. float64; the checker's float64 tolerances."""
    kp = 11
    if name == "multi_head+dropout":
        layer, params = att.multi_head_attention(H, 0.2), _mha_params((kp, 1))
    elif name == "feed_forward+dropout":
        layer, params = att.feed_forward(0.25), _ffn_params((kp, 3))
    else:
        cfg = tr.TransformerConfig(V, T, D, H, 1, 0.2, "head")
        layer = tr.block(cfg)
        params = [[_ln_params((kp, 0)), _mha_params((kp, 1))], [_ln_params((kp, 2)), _ffn_params((kp, 3))]]
    x = _normal(kp, (B, T, D))
    y1, y2 = (layer.forward(params, x, jax.random.key(k))[0] for k in (DROP_KEY, DROP_KEY + 1))
    assert not np.allclose(y1, y2)                 # the key draws a mask: dropout is on
    report = gradcheck.check_layer(layer, x, params, fkey=jax.random.key(DROP_KEY))
    assert report.numeric and max(report.numeric.values()) < 1e-6, report.numeric


@pytest.mark.parametrize("build", ["transformer", "stack", "block", "init_params", "generate"])
@pytest.mark.parametrize("cfg", [None, {"vocab": 65}, (65, 8, 16, 2, 1)])
def test_a_config_that_is_not_a_transformer_config_is_refused_naming_the_function(build, cfg):
    call = {"init_params": lambda: tr.init_params(jax.random.key(0), cfg),
            "generate": lambda: tr.generate(cfg, {}, jax.random.key(0), [0], 3)}.get(build, lambda: getattr(tr, build)(cfg))
    with pytest.raises(ValueError, match=rf"transformer\.{build}: cfg must be a transformer\.TransformerConfig"):
        call()
