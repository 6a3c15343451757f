"""The tiny character transformer: every block's hand-written backward vs jax.vjp (float64,
max relative error < 1e-9), the whole model vs jax.grad, the causal mask, generate (one
compilation, valid tokens, the right context window), the text utilities and a training smoke test."""
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import gradcheck
from jaxnets.train import lm
from jaxnets.data import text
from jaxnets.models import transformer as tr
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
    if name == "linear":
        p = {"W": _normal((kp, 0), (D, 3)), "b": _normal((kp, 1), (3,))}
        return tr.linear_forward, tr.linear_backward, p, x
    if name == "layer_norm":
        return tr.layer_norm_forward, tr.layer_norm_backward, _ln_params(kp), x
    if name == "dropout":
        fwd = lambda p, x: tr.dropout_forward(x, dk, 0.3)                      # noqa: E731
        return fwd, lambda c, dy: ({}, tr.dropout_backward(c, dy)), {}, x
    if name == "attention_head":
        p = {"Wq": _normal((kp, 0), (D, 4)), "Wk": _normal((kp, 1), (D, 4)), "Wv": _normal((kp, 2), (D, 4))}
        return tr.attention_head_forward, tr.attention_head_backward, p, x
    if name == "attention_head+dropout":
        p = {"Wq": _normal((kp, 0), (D, 4)), "Wk": _normal((kp, 1), (D, 4)), "Wv": _normal((kp, 2), (D, 4))}
        return (lambda p, x: tr.attention_head_forward(p, x, dk, 0.25),
                tr.attention_head_backward, p, x)
    if name == "multi_head":
        return (lambda p, x: tr.multi_head_attention_forward(p, x, H),
                tr.multi_head_attention_backward, _mha_params(kp), x)
    if name == "multi_head+dropout":
        return (lambda p, x: tr.multi_head_attention_forward(p, x, H, dk, 0.25),
                tr.multi_head_attention_backward, _mha_params(kp), x)
    if name == "feed_forward":
        return tr.feed_forward_forward, tr.feed_forward_backward, _ffn_params(kp), x
    if name == "feed_forward+dropout":
        return (lambda p, x: tr.feed_forward_forward(p, x, dk, 0.25),
                tr.feed_forward_backward, _ffn_params(kp), x)
    if name == "residual":
        fwd = lambda p, x: tr.residual_forward(x, jnp.sin(x) * p["a"])        # noqa: E731

        def bwd(c, dy):
            cx, c_sin = c
            dx, dfx = tr.residual_backward(None, dy)
            return {"a": jnp.sum(dfx * jnp.sin(cx))}, dx + dfx * jnp.cos(cx) * c_sin

        def fwd2(p, x):
            y, _ = fwd(p, x)
            return y, (x, p["a"])
        return fwd2, bwd, {"a": jnp.asarray(0.7, jnp.float64)}, x
    if name in ("block", "block+dropout"):
        p = {"ln1": _ln_params((kp, 0)), "attn": _mha_params((kp, 1)),
             "ln2": _ln_params((kp, 2)), "ffn": _ffn_params((kp, 3))}
        key, rate = (dk, 0.2) if name == "block+dropout" else (None, 0.0)
        return (lambda p, x: tr.block_forward(p, x, H, key, rate), tr.block_backward, p, x)
    if name == "lm_head":
        p = {"ln_f": _ln_params((kp, 0)), "head": {"W": _normal((kp, 1), (D, V)),
                                                    "b": _normal((kp, 2), (V,))}}
        return tr.lm_head_forward, tr.lm_head_backward, p, x
    raise KeyError(name)


BLOCKS = ["linear", "layer_norm", "dropout", "attention_head", "attention_head+dropout",
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
        _, cache = tr.embedding_forward(params, idx)
        hand, dx = tr.embedding_backward(cache, dy)
        assert dx is None
        return hand, jax.vjp(lambda p: tr.embedding_forward(p, idx)[0], params)[1](dy)[0]

    hand, auto = both(params, idx, dy)
    for nm in ("tok", "pos"):
        assert gradcheck.rel_error(hand[nm], auto[nm]) < TOL
    assert np.all(np.asarray(hand["pos"][T:]) == 0)


def test_lm_loss_backward_matches_grad(x64):
    _, _, params, x = _case("lm_head")
    tgt = _ints(13, (B, T), V)

    @_jit
    def both(params, x, tgt):
        value, cache = tr.lm_loss_forward(params, x, tgt)
        return value, tr.lm_loss_backward(cache), jax.value_and_grad(
            lambda p, x: tr.lm_loss_forward(p, x, tgt)[0], argnums=(0, 1))(params, x)

    value, (hand_p, hand_x), (val2, (auto_p, auto_x)) = both(params, x, tgt)
    assert abs(float(value) - float(val2)) < 1e-12
    assert gradcheck.rel_error(hand_x, auto_x) < TOL
    for h, a in zip(jax.tree.leaves(hand_p), jax.tree.leaves(auto_p)):
        assert gradcheck.rel_error(h, a) < TOL


def test_multi_head_is_concatenated_single_heads(x64):
    _, _, p, x = _case("multi_head")
    y, _ = tr.multi_head_attention_forward(p, x, H)
    hs = D // H
    heads = [tr.attention_head_forward({w: p[w][:, h * hs:(h + 1) * hs] for w in ("Wq", "Wk", "Wv")},
                                       x)[0] for h in range(H)]
    ref = jnp.concatenate(heads, axis=-1) @ p["proj"]["W"] + p["proj"]["b"][None, None, :]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def _perturbed(params, seed):
    """Perturb every leaf so layer-norm gains/biases and zero biases are generic too."""
    leaves, tdef = jax.tree.flatten(params)
    return jax.tree.unflatten(tdef, [v + _normal((seed, i), v.shape, 0.1) for i, v in enumerate(leaves)])


MODEL_CASES = [  # vocab, block_size, n_embd, n_head, n_layer, dropout, T (< block_size: partial), key
    (11, 8, 12, 4, 2, 0.0, 5, False),
    (9, 6, 8, 1, 1, 0.2, 6, True),
    (13, 4, 16, 8, 2, 0.1, 4, True),
]


@pytest.mark.parametrize("vocab,block,d,h,n_layer,drop,t,use_key", MODEL_CASES)
def test_model_backprop_matches_jax_grad(x64, vocab, block, d, h, n_layer, drop, t, use_key):
    model = tr.transformer(vocab, block, d, h, n_layer, drop)
    params = _perturbed(model.init(jax.random.key(1), jnp.float64), 2)
    idx, tgt = _ints(3, (3, t), vocab), _ints(4, (3, t), vocab)
    key = jax.random.key(5) if use_key else None
    both = _jit(lambda p, i, t, k: (model.backprop(p, i, t, k), model.grad_autodiff(p, i, t, k)))
    (l_hand, g_hand), (l_auto, g_auto) = both(params, idx, tgt, key)
    assert abs(float(l_hand) - float(l_auto)) < 1e-12
    assert jax.tree.structure(g_hand) == jax.tree.structure(params)
    errs = jax.tree.map(gradcheck.rel_error, g_hand, g_auto)
    assert max(jax.tree.leaves(errs)) < TOL, errs
    if use_key:   # dropout is really on: a different key gives a different loss
        assert float(_jit(model.loss)(params, idx, tgt, jax.random.key(6))) != float(l_hand)


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
    model = tr.transformer(V, 8, 8, 2, 2)
    params = model.init(jax.random.key(0), jnp.float64)
    idx = _ints(1, (2, 8), V)
    idx2 = idx.at[:, 5:].set((idx[:, 5:] + 1) % V)
    apply = _jit(model.apply)
    a, b = apply(params, idx), apply(params, idx2)
    np.testing.assert_array_equal(a[:, :5], b[:, :5])
    assert not np.allclose(a[:, 5:], b[:, 5:])
    # the whole trunk: a cotangent at position 3 only reaches embeddings at positions <= 3
    @_jit
    def trunk_grads(params, idx):
        x, cache = tr.trunk_forward(params, idx, 2)
        (g_emb, _), dx = tr.trunk_backward(cache, jnp.zeros_like(x).at[:, 3].set(1.0))
        return g_emb, dx
    g_emb, dx = trunk_grads(params, idx)
    assert np.all(np.asarray(dx[:, 4:]) == 0.0) and np.all(np.asarray(g_emb["pos"][4:]) == 0.0)


# ----------------------------------------------------------------------------- generate

def _reference_generate(model, params, key, prompt, n):
    """Step-by-step sampler in plain Python: the last block_size tokens, the last row's logits."""
    toks = [int(t) for t in prompt]
    last_row = _jit(lambda p, ctx: model.apply(p, ctx)[0, -1])
    for k in jax.random.split(key, n):
        ctx = jnp.asarray(toks[-model.block_size:], jnp.int32)[None, :]
        row = last_row(params, ctx)
        toks.append(int(jax.random.categorical(k, row)))
    return toks


@pytest.mark.parametrize("prompt_len,n", [(3, 6)])   # partial, then sliding windows of 4
def test_generate_matches_reference_and_compiles_once(prompt_len, n):
    model = tr.transformer(V, 4, 8, 2, 1)
    params = model.init(jax.random.key(0))
    prompt = _ints(1, (prompt_len,), V)
    out = model.generate(params, jax.random.key(2), prompt, n)
    assert out.shape == (prompt_len + n,) and out.dtype == jnp.int32
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) < V))
    np.testing.assert_array_equal(out[:prompt_len], prompt)
    assert out.tolist() == _reference_generate(model, params, jax.random.key(2), prompt, n)
    # new key, new prompt values, new params: no retrace
    params2 = jax.tree.map(lambda v: v * 1.5, params)
    out2 = model.generate(params2, jax.random.key(3), (prompt + 1) % V, n)
    out3 = model.generate(params, jax.random.key(4), prompt, n)
    assert model.trace_counts["generate"] == 1
    assert out2.shape == out3.shape == out.shape


def test_generate_traces_once_with_chex():
    import chex
    model = tr.transformer(V, 6, 8, 2, 1)
    params = model.init(jax.random.key(0))
    fn = _jit(chex.assert_max_traces(lambda p, k, pr: model.apply(p, pr[None, :])[0, -1], n=1))
    for i in range(3):   # the per-step model call compiles once for a fixed window
        fn(params, jax.random.key(i), jnp.full((6,), i % V, jnp.int32))
    with pytest.raises(ValueError):
        model.generate(params, jax.random.key(0), jnp.array([V]), 3)     # token out of range


# ----------------------------------------------------------------------------- errors

def test_constructor_and_shape_errors():
    with pytest.raises(ValueError, match="divisible"):
        tr.transformer(V, 8, 10, 4, 1)
    with pytest.raises(ValueError, match="dropout"):
        tr.transformer(V, 8, 8, 2, 1, dropout=1.0)
    model = tr.transformer(V, 4, 8, 2, 1)
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="block_size"):
        model.apply(params, jnp.zeros((1, 5), jnp.int32))
    with pytest.raises(ValueError, match="targets"):
        model.loss(params, jnp.zeros((1, 4), jnp.int32), jnp.zeros((1, 3), jnp.int32))


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

def test_training_lowers_loss():
    s = "ab\ncab\nabc\n" * 200
    tok = text.CharTokenizer.from_text(s)
    tr_ids, va_ids = text.train_val_split(tok.encode(s))
    model = tr.transformer(tok.vocab_size, 8, 16, 2, 1, dropout=0.1)
    params = model.init(jax.random.key(0))
    cfg = lm.LMConfig(steps=80, batch_size=8, lr=1e-2, warmup=5, eval_every=40, eval_batches=2)
    _, hist = lm.train_lm(model, params, tr_ids, va_ids, jax.random.key(1), cfg,
                                compiler_options=FAST)
    assert hist["step"] == [0, 40, 80] and len(hist["step_loss"]) == 80
    assert hist["val_loss"][-1] < 0.6 * hist["val_loss"][0]


def test_adamw_matches_optax():
    optax = pytest.importorskip("optax")
    cfg = lm.LMConfig(steps=20, lr=1e-2, warmup=3, weight_decay=0.1, grad_clip=0.0)
    ours = lm.make_optimizer(cfg)
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup, cfg.steps, cfg.lr * cfg.min_lr_frac)
    ref = optax.adamw(sched, b1=0.9, b2=0.99, eps=1e-8, weight_decay=cfg.weight_decay,
                      mask=lambda p: jax.tree.map(lambda v: v.ndim >= 2, p))
    params = {"W": jnp.ones((3, 2)), "b": jnp.ones((2,))}
    s_ours, s_ref, p_ours, p_ref = ours.init(params), ref.init(params), params, params
    with jax.numpy_dtype_promotion("standard"):     # optax itself needs standard promotion
        for i in range(6):
            g = jax.tree.map(lambda v: jnp.sin(v * (i + 1)), p_ours)
            u, s_ours = ours.update(g, s_ours, p_ours)
            p_ours = jax.tree.map(jnp.add, p_ours, u)
            u, s_ref = ref.update(g, s_ref, p_ref)
            p_ref = optax.apply_updates(p_ref, u)
    for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- E7 record

def _fake_run(T, H, val):
    hist = {"step": [0, 10], "train_loss": [4.2, val - 0.1], "val_loss": [4.2, val], "time_s": [0, 1]}
    sample = "\nROMEO:\nGood morrow.\n\nJULIET:\nGood night.\n"
    return {"block_size": T, "n_head": H, "model": f"m{T}{H}", "final_train": val - 0.1,
            "final_val": val, "best_val": val, "history": hist, "step_loss": [4.0] * 10,
            "eval_tokens": 100, "compile_s": 1.0, "train_s": 2.0, "tokens_per_s": 1000.0, "wall_s": 3.0,
            "sample_before": "xq", "sample_after": sample,
            "format_before": e7.play_format("xq"), "format_after": e7.play_format(sample)}


def test_e7_record_from_measured_numbers(tmp_path):
    vals = {(2, 4): 2.4, (16, 4): 1.95, (64, 4): 1.7, (64, 2): 1.72, (64, 8): 1.69}
    runs = {f"T{T}_H{H}": _fake_run(T, H, v) for (T, H), v in vals.items()}
    assert e7.play_format(runs["T64_H4"]["sample_after"])["speaker_lines"] == 2
    rec = e7.build_record(runs, {}, "test", 0, {}, str(tmp_path / "r"), str(tmp_path / "f"), 1.0)
    rows = {r["id"]: r for r in rec["rows"]}
    assert rows["E7.val_T64"]["value"] == 1.7 and "met" in rows["E7.val_T64"]["note"]
    assert rows["E7.context_order"]["value"] == "yes" and rec["targets"]["met"]
    assert "T=2: 2.400" in rec["comparison"] and "best 8 heads" in rec["comparison"]
    assert os.path.exists(rec["json"]) and len(rec["figures"]) == 3
