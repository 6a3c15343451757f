"""Micro-batched training steps (``models.microbatched``, ``train.fit(microbatch=...)``): the
chunked loss and gradient equal the whole batch's (float64, to round-off) for every head, mask,
penalty and padding; the "auto" policy chunks only where it was measured to help; bad values are
refused naming the argument."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxnets import models, train
from jaxnets.models import base, cnn, minicnn
from jaxnets.models import transformer as tr
from jaxnets.train import engine

TOL = 1e-12   # float64: a sum of ≤ 8 chunk means differs from the whole mean by round-off only


def _rng(seed=0):
    return np.random.default_rng(seed)


def _mlp_case(n):
    m = models.mlp([6, 9, 4], "tanh", "softmax_cross_entropy")
    return m, jnp.asarray(_rng().normal(size=(n, 6))), jnp.asarray(_rng(1).integers(0, 4, n))


def _sse_case(n):
    m = models.mlp([5, 7, 3], "sigmoid", "half_sse", "sigmoid")
    return m, jnp.asarray(_rng().normal(size=(n, 5))), jnp.asarray(_rng(1).random((n, 3)))


def _mse_case(n):
    m = models.mlp([5, 7, 3], "relu", "mse")
    return m, jnp.asarray(_rng().normal(size=(n, 5))), jnp.asarray(_rng(1).integers(0, 3, n))


def _cnn_case(n):
    return cnn.cnn2(), jnp.asarray(_rng().random((n, 28, 28, 1))), jnp.asarray(_rng(1).integers(0, 10, n))


def _minicnn_case(n):
    m = minicnn.model()
    x = jnp.asarray(_rng().normal(size=(n, *m.in_shape)))
    return m, x, jnp.asarray(_rng(1).choice([-1, 1], n))


def _token_case(n):
    m = tr.transformer(tr.TransformerConfig(7, 5, 8, 2, 1, 0.0))
    return m, jnp.asarray(_rng().integers(0, 7, (n, 5))), jnp.asarray(_rng(1).integers(0, 7, (n, 5)))


CASES = {"mlp softmax CE": _mlp_case, "mlp half SSE (float targets)": _sse_case, "mlp MSE (int labels)": _mse_case,
         "2-layer CNN": _cnn_case, "mini CNN (logistic)": _minicnn_case,
         "transformer (token CE, int input)": _token_case}


def _max_diff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("case", CASES)
# 13 examples: 13 chunks of 1; 5 of 3, 4 of 4 and 3 of 5 (the last padded); 13: the whole batch (pass-through)
@pytest.mark.parametrize("size", [1, 3, 4, 6, 13])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("l2", [0.0, 1e-2])
def test_chunked_loss_and_gradients_equal_the_whole_batch(case, size, masked, l2):
    """float64; |chunked − whole| ≤ 1e-12 for the loss and every gradient entry, hand rules and
    jax.grad alike (a mask whose last four rows are 0 makes whole chunks all-padding)."""
    with jax.enable_x64(True):
        m, x, y = CASES[case](13)
        if l2 and not any(jax.tree.leaves(m.decay(m.init(jax.random.key(0))))):
            pytest.skip(f"{case}: no parameter decays, so l2 does not apply (refused by the model)")
        p = m.init(jax.random.key(0), jnp.float64)
        mask = jnp.asarray([1.0] * 9 + [0.0] * 4) if masked else None
        mm = models.microbatched(m, size)
        whole = m.backprop(p, x, y, l2, mask)
        for fn in (mm.backprop, mm.grad_autodiff):
            got = fn(p, x, y, l2, mask)
            assert jax.tree.structure(got) == jax.tree.structure(whole)
            assert _max_diff(got, whole) <= TOL, (case, size, _max_diff(got, whole))


def test_a_stochastic_model_draws_each_chunks_dropout_from_its_own_key():
    """Chunks of a dropout transformer draw from split(key, k): deterministic for a key, another
    key gives other gradients (the dropout-free case equals the whole batch: the table above)."""
    with jax.enable_x64(True):
        m = tr.transformer(tr.TransformerConfig(7, 5, 8, 2, 1, 0.5))
        p = m.init(jax.random.key(0), jnp.float64)
        x, y = (jnp.asarray(_rng(s).integers(0, 7, (8, 5))) for s in (0, 1))
        mm = models.microbatched(m, 4)
        a, b = (mm.backprop(p, x, y, key=jax.random.key(k)) for k in (1, 1))
        c = mm.backprop(p, x, y, key=jax.random.key(2))
        assert _max_diff(a, b) == 0.0 and _max_diff(a, c) > 1e-6


@pytest.mark.parametrize("n, size, want", [(128, 59, (4, 32)), (128, 39, (4, 32)), (128, 29, (8, 16)),
                                           (13, 5, (3, 5)), (127, 32, (4, 32)), (5, 8, (1, 5)),
                                           (100, 30, (4, 25)), (7, 1, (7, 1)), (10, 3, (5, 2))])
def test_chunking_table(n, size, want):
    assert base.chunking(n, size) == want


@settings(deadline=None, max_examples=200)
@given(st.integers(1, 600), st.integers(1, 200))
def test_chunking_covers_the_batch_with_chunks_of_at_most_size(n, size):
    k, c = base.chunking(n, size)
    assert 1 <= c <= max(size, 1) or (k == 1 and c == n <= size)
    assert k * c >= n and k * c - n < c          # only the last chunk is padded, and not wholly
    assert (k == 1) == (n <= size)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "fast", "AUTO", np.float32(4)])
def test_bad_microbatch_values_are_refused_naming_the_argument(bad):
    m, x, y = _mlp_case(20)
    p = m.init(jax.random.key(0))
    with pytest.raises(ValueError, match="microbatch"):
        train.fit(m, p, (np.asarray(x, np.float32), np.asarray(y)), epochs=1, batch_size=10,
                  optimizer=train.sgd(0.1), microbatch=bad, progress=False)
    if not isinstance(bad, bool) and isinstance(bad, (int, np.integer)) or bad in ("fast", "AUTO"):
        with pytest.raises(ValueError, match="microbatch"):
            engine.make_epoch(m, 20, 10, optimizer=train.sgd(0.1), microbatch=bad)
    with pytest.raises(ValueError, match="size must be a positive int"):
        models.microbatched(m, bad)


def test_auto_chunks_the_cnns_at_batch_128_on_a_cpu_and_nothing_else(monkeypatch):
    """The measured cases: doc 003's CNNs at batch 128 in chunks of 32 (2-layer: 280,720 bytes of
    caches per example) and 16 (3-layer: 428,944), whole at batch 32 and 5; the MLP at batch 500
    and E7's transformer at batch 16 whole; a stochastic model, a mesh and a non-CPU backend never."""
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")     # the policy as a CPU sees it
    size = train.microbatch_size
    c2, c3 = cnn.cnn2(), cnn.cnn3()
    p2, p3 = c2.init(jax.random.key(0)), c3.init(jax.random.key(0))
    assert engine.cache_bytes_per_example(c2, p2) == 280_720
    assert engine.cache_bytes_per_example(c3, p3) == 428_944
    assert base.chunking(128, size(c2, p2, 128)) == (4, 32)
    assert base.chunking(128, size(c3, p3, 128)) == (8, 16)
    assert (train.chunk_size(c2, p2, 128), train.chunk_size(c3, p3, 128), train.chunk_size(c3, p3, 32)) == (32, 16, 16)
    assert [size(c2, p2, b) for b in (5, 32)] == [None, None]
    mlp = models.mlp([784, 256, 10], "sigmoid")
    assert size(mlp, mlp.init(jax.random.key(0)), 500) is None
    drop = tr.transformer(tr.TransformerConfig(65, 32, 64, 4, 4, 0.2))
    assert drop.stochastic and size(drop, drop.init(jax.random.key(0)), 4096) is None
    e7_64 = tr.transformer(tr.TransformerConfig(65, 64, 64, 4, 4, 0.0))    # E7's block 64: 1.6 MB per example
    p64 = e7_64.init(jax.random.key(0))
    assert engine.cache_bytes_per_example(e7_64, p64) > engine.MICROBATCH_BYTES // 16
    # chunks under MICROBATCH_MIN (measured slower) keep the batch whole, whatever the cap's divisor
    assert [size(e7_64, p64, b) for b in (16, 17, 20, 24, 30)] == [None] * 5
    assert base.chunking(32, size(e7_64, p64, 32)) == (2, 16)
    assert size(c3, p3, 128, mesh=jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))) is None
    assert size(c3, p3, 128, 16) == 16 and size(c3, p3, 128, 128) is None and size(c3, p3, 128, None) is None
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert size(c3, p3, 128) is None


def test_an_explicit_chunk_of_a_model_without_a_layer_is_refused():
    class Duck:   # a duck-typed model (the engine accepts these), nothing to chunk it by
        name, stochastic = "duck", False
    assert train.microbatch_size(Duck(), {}, 64) is None
    with pytest.raises(ValueError, match="microbatch=8 needs a models.Model"):
        train.microbatch_size(Duck(), {}, 64, 8)


def _fit(m, p, data, **kw):
    return train.fit(m, p, data, epochs=2, batch_size=13, optimizer=train.sgd(0.05, momentum=0.9),
                     l2=1e-3, key=jax.random.key(4), progress=False, **kw)


@pytest.fixture
def chunk_calls(monkeypatch):
    """The sizes the engine chunks its steps by (a spy on models.microbatched), so a test fails if
    the engine ignores ``microbatch`` (chunked and whole agree to round-off)."""
    calls = []
    real = engine.model_base.microbatched
    monkeypatch.setattr(engine.model_base, "microbatched", lambda m, size: calls.append(size) or real(m, size))
    return calls


@pytest.mark.parametrize("grad", ["hand", "autodiff"])
def test_fit_in_chunks_follows_the_whole_batch_trajectory(grad, chunk_calls):
    """float64, 2 epochs of 40 examples at batch 13 (a ragged, masked last batch of 1), momentum and
    L2: chunks of 5 (3 chunks, padded) and 8 (2 chunks of 7, padded) give the whole-batch params to
    1e-12; the engine did chunk (the spy saw 5 and 8, and nothing for microbatch=None)."""
    with jax.enable_x64(True):
        m, x, y = _mlp_case(40)
        p = m.init(jax.random.key(0), jnp.float64)
        whole = _fit(m, p, (x, y), grad=grad, microbatch=None)
        assert chunk_calls == []
        for chunk in (5, 8):
            assert base.chunking(13, chunk) == {5: (3, 5), 8: (2, 7)}[chunk]
            got = _fit(m, p, (x, y), grad=grad, microbatch=chunk)
            assert chunk_calls and set(chunk_calls) == {chunk}
            chunk_calls.clear()
            assert _max_diff(got.params, whole.params) <= TOL
            np.testing.assert_allclose(got.history["step_loss"], whole.history["step_loss"], rtol=0, atol=TOL)


def test_auto_fit_of_the_3_layer_cnn_at_batch_128_matches_the_whole_batch_in_float32(chunk_calls):
    """The real case, float32, on a CPU: 256 images, one epoch at batch 128 in chunks of 16 (the
    spy saw the engine chunk); params within 1e-5 of the whole batch's, the epoch traced once."""
    if jax.default_backend() != "cpu":
        pytest.skip(f"microbatch='auto' chunks on a CPU only; this backend is {jax.default_backend()}")
    m = cnn.cnn3()
    p = m.init(jax.random.key(0))
    x = _rng().random((256, 28, 28, 1)).astype(np.float32)
    y = _rng(1).integers(0, 10, 256)
    st = train.init_state(p, train.sgd(0.05))
    args = (st, jnp.float32(0), jnp.int32(0), jax.random.key(0), jnp.asarray(x), jnp.asarray(y))
    outs = {}
    for mb in ("auto", None):
        chex.clear_trace_counter()                       # the two epochs share their code object
        ep = chex.assert_max_traces(engine.make_epoch(m, 256, 128, optimizer=train.sgd(0.05), use_l2=False,
                                                      microbatch=mb), n=1)
        f = jax.jit(ep)
        outs[mb] = f(*args)
        f(*args)                                         # a second call: no retrace
    assert base.chunking(128, chunk_calls[0]) == (8, 16)
    assert _max_diff(outs["auto"][0].params, outs[None][0].params) <= 1e-5
    np.testing.assert_allclose(outs["auto"][1], outs[None][1], rtol=1e-5)


def test_a_resume_with_another_chunk_size_is_refused(tmp_path):
    """The checkpoint holds the chunk the steps ran in: another is refused, naming it, and a
    request that gives the same chunks (6 and 4 at batch 16: four chunks of 4) resumes."""
    m, x, y = _mlp_case(40)
    data = (np.asarray(x, np.float32), np.asarray(y))
    p = m.init(jax.random.key(0))
    path = str(tmp_path / "run.ckpt")
    cp = lambda resume: train.Checkpointing(path, every=1, resume=resume)  # noqa: E731
    train.fit(m, p, data, epochs=1, batch_size=16, optimizer=train.sgd(0.1), microbatch=8,
              checkpoint=cp(False), progress=False)
    with pytest.raises(train.CheckpointError, match="different microbatch"):
        train.fit(m, p, data, epochs=2, batch_size=16, optimizer=train.sgd(0.1), microbatch=None,
                  checkpoint=cp(True), progress=False)
    res = train.fit(m, p, data, epochs=2, batch_size=16, optimizer=train.sgd(0.1), microbatch=8,
                    checkpoint=cp(True), progress=False)
    assert len(res.history["epoch"]) == 2
    path2 = str(tmp_path / "same.ckpt")
    train.fit(m, p, data, epochs=1, batch_size=16, optimizer=train.sgd(0.1), microbatch=6,
              checkpoint=train.Checkpointing(path2, every=1), progress=False)
    res = train.fit(m, p, data, epochs=2, batch_size=16, optimizer=train.sgd(0.1), microbatch=4,
                    checkpoint=train.Checkpointing(path2, every=1, resume=True), progress=False)
    assert len(res.history["epoch"]) == 2


def test_a_sweep_in_chunks_equals_its_runs_in_chunks(chunk_calls):
    """vmapped and threaded sweeps with microbatch=4 give each configuration the params of its own
    fit with microbatch=4 (float64, 1e-12), and both do chunk (the spy)."""
    with jax.enable_x64(True):
        m, x, y = _mlp_case(40)
        p = m.init(jax.random.key(0), jnp.float64)
        keys = jax.random.split(jax.random.key(9), 2)
        kw = dict(epochs=2, batch_size=16, optimizer=train.sgd(0.1), microbatch=4, progress=False)
        runs = [train.fit(m, p, (x, y), key=k, **kw).params for k in keys]
        for vmap in (True, False):
            chunk_calls.clear()
            sw = train.sweep(m, p, (x, y), keys=keys, vmap=vmap, **kw)
            assert chunk_calls and set(chunk_calls) == {4}
            for c in range(2):
                assert _max_diff(sw.config(c).params, runs[c]) <= TOL


@pytest.mark.parametrize("param_dtype, x_dtype, tol", [(jnp.bfloat16, jnp.float32, 2e-2),
                                                       (jnp.float16, jnp.float32, 2e-2),
                                                       (jnp.float32, jnp.float64, 1e-6)])
def test_mixed_precision_inputs_sum_in_the_dtypes_a_chunk_returns(param_dtype, x_dtype, tol):
    """Low-precision params with float32 data (and float32 params with float64 data): the chunked
    loss and gradients come out in the whole batch's dtypes and agree with it to the lower
    precision's round-off (relative to the largest entry)."""
    # mixed dtypes need standard promotion (the tests run strict): the whole batch's backprop
    # promotes, and the chunks' sums must take the dtypes it promotes to
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        m, x, y = _mlp_case(12)
        p = jax.tree.map(lambda a: a.astype(param_dtype), m.init(jax.random.key(0)))
        x = x.astype(x_dtype)
        whole, got = m.backprop(p, x, y), models.microbatched(m, 4).backprop(p, x, y)
        for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(got)):
            assert a.dtype == b.dtype
            scale = float(jnp.max(jnp.abs(a.astype(jnp.float64)))) or 1.0
            assert float(jnp.max(jnp.abs(a.astype(jnp.float64) - b.astype(jnp.float64)))) <= tol * scale


@pytest.mark.parametrize("what", ["y", "mask"])
@pytest.mark.parametrize("rows", [12, 14])
def test_y_or_a_mask_of_another_length_is_refused_not_padded(what, rows):
    m, x, y = _mlp_case(13)
    p = m.init(jax.random.key(0))
    args = {"y": (x, jnp.zeros((rows,), jnp.int32), None), "mask": (x, y, jnp.ones((rows,)))}[what]
    with pytest.raises(ValueError, match=f"{what} has shape .* but x has 13 rows"):
        models.microbatched(m, 4).backprop(p, *args[:2], 0.0, args[2])


def test_padding_repeats_a_real_example():
    """The padded rows are copies of the last example (a valid input for any layer and head), and
    weigh 0."""
    a = jnp.arange(5.0)[:, None] * jnp.ones((1, 2))
    got = base._in_chunks(a, 2, 3)
    assert got.shape == (2, 3, 2) and jnp.array_equal(got[1, 2], a[4])
    w = base._in_chunks(jnp.ones(5), 2, 3, zero_fill=True)
    assert float(w[1, 2]) == 0.0 and float(jnp.sum(w)) == 5.0
