"""What fit/sweep/evaluate refuse and what they get right that they once got silently wrong: misuse
messages that name the argument, params of another model, token ids outside the vocabulary, low
precision (metrics summed in float32; training refused), a Sampler's data and signature, and
sweep's configuration count. Float32 unless stated."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import models, train
from jaxnets.errors import DataError
from jaxnets.models import transformer as tr
from jaxnets.train import engine

NET = models.mlp([6, 8, 3], "tanh", "softmax_cross_entropy")
rng = np.random.default_rng(0)
X = rng.normal(size=(50, 6)).astype(np.float32)
Y = rng.integers(0, 3, 50).astype(np.int32)
KW = dict(epochs=1, batch_size=10, optimizer=train.sgd(0.1), progress=False)
P0 = NET.init(jax.random.key(0))
WIDE = models.mlp([6, 16, 3], "tanh", "softmax_cross_entropy").init(jax.random.key(0))


def _sweep(params=P0, data=(X, Y), **kw):
    return train.sweep(NET, params, data, **dict(KW, **kw))


# ----------------------------------------------------------------------------- misuse messages

@pytest.mark.parametrize("call,match", [
    (lambda: train.fit(NET, P0, (X, Y), key=42, **KW), r"key must be one PRNG key such as jax.random.key\(42\), got int 42"),
    (lambda: _sweep(key=42), r"sweep\(.*\): key must be one PRNG key"),
    (lambda: _sweep(vmap=False, workers=0), r"sweep: workers must be an integer >= 1, got 0"),
    (lambda: _sweep(vmap=False, workers=2.0), r"sweep: workers must be an integer >= 1, got 2.0"),
    (lambda: _sweep(workers=2), r"sweep: workers=2 needs vmap=False"),
    (lambda: train.fit(NET, P0, (X, Y), key=jax.random.split(jax.random.key(0), 2), **KW),
     r"key must be one PRNG key .* got array of shape \(2,\)"),
    # 3 stacked seeds and 5 learning rates
    (lambda: _sweep(jax.vmap(NET.init)(jax.random.split(jax.random.key(0), 3)), configs={"lr": [0.1] * 5}),
     r"number of configurations disagrees: configs\['lr'\] has 5, params \(stacked\) has 3"),
    (lambda: _sweep(configs={"lr": [0.1, 0.2], "lr_decay": [0.9, 0.8, 0.7]}),
     r"configs\['lr'\] has 2, configs\['lr_decay'\] has 3"),
    (lambda: _sweep(configs={"lr": [[0.1, 0.2], [0.3, 0.4]]}), r"configs\['lr'\] must be a scalar or 1-D .* shape \(2, 2\)"),
    (lambda: _sweep(configs={"lr": []}), r"configs\['lr'\] is empty"),
    (lambda: _sweep(configs={"momentum": [0.0, 0.9]}), r"configs\['momentum'\]: the optimizer has no hyperparameter 'momentum'"),
    (lambda: _sweep(optimizer=optax.adam(1e-3), configs={"lr": [0.1, 0.2]}), r"no hyperparameter 'lr'"),
    (lambda: _sweep(configs={"l2": [0.1, 0.2]}, l2=0.1), r"l2 either as l2= or as configs\['l2'\]"),
    (lambda: train.sgd(np.ones((2, 2))), r"sgd: lr must be a real scalar"),
    # params of a width-16 model on a width-8 one, and of another structure
    (lambda: train.fit(NET, WIDE, (X, Y), **KW), r"params\[0\]\['W'\] has shape \(6, 16\) but mlp6-8-3 expects \(6, 8\)"),
    (lambda: _sweep(WIDE), r"params\[0\]\['W'\] has shape \(6, 16\) but mlp6-8-3 expects \(6, 8\)"),
    (lambda: train.evaluate(NET, WIDE, (X, Y)), r"evaluate: params\[0\]\['W'\] has shape \(6, 16\)"),
    (lambda: train.fit(NET, P0[:1], (X, Y), **KW), r"params do not have mlp6-8-3's structure"),
    (lambda: _sweep(jax.tree.map(lambda v: jnp.stack([v] * 3), WIDE)), r"has shape \(3, 6, 16\) but mlp6-8-3 expects \(6, 8\)"),
])
def test_misuse_is_refused_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_legacy_raw_key_is_the_same_key():
    """``jax.random.PRNGKey(3)`` (raw uint32 (2,)) trains exactly like ``jax.random.key(3)``."""
    a = train.fit(NET, P0, (X, Y), key=jax.random.key(3), **KW)
    b = train.fit(NET, P0, (X, Y), key=jax.random.PRNGKey(3), **KW)
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a.final_params), jax.tree.leaves(b.final_params)))


def test_config_of_a_fit_result_is_refused():
    with pytest.raises(ValueError, match="one fit run, not a sweep"):
        train.fit(NET, P0, (X, Y), **KW).config(0)


# ----------------------------------------------------------------------------- sweep shares fit's loop

@pytest.mark.parametrize("workers", [1, 2, 5])
def test_sequential_sweep_equals_separate_fits_bit_for_bit_and_the_vmapped_one_closely(workers):
    """vmap=False runs each configuration through fit's own (un-vmapped) compiled epoch, ``workers``
    at a time on threads: the same bits as separate fit runs. The vmapped sweep may round
    differently (float32, rtol 1e-5)."""
    lrs, l2s = [0.05, 0.2, 0.5], [0.0, 0.01, 0.001]
    kw = dict(epochs=3, batch_size=7, order="replacement", key=jax.random.key(4), val=(X, Y), progress=False,
              max_updates=17)
    seq = train.sweep(NET, P0, (X, Y), optimizer=train.sgd(0.1, lr_decay=0.9), configs={"lr": lrs, "l2": l2s},
                      vmap=False, workers=workers, **kw)
    vec = train.sweep(NET, P0, (X, Y), optimizer=train.sgd(0.1, lr_decay=0.9), configs={"lr": lrs, "l2": l2s}, **kw)
    assert set(seq.history) == set(vec.history)
    for c, (lr, l2) in enumerate(zip(lrs, l2s)):
        r = train.fit(NET, P0, (X, Y), optimizer=train.sgd(lr, lr_decay=0.9), l2=l2, **kw)
        one = seq.config(c)
        assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(r.final_params), jax.tree.leaves(one.params)))
        assert one.history["val_loss"] == r.history["val_loss"] and one.history["step_loss"] == r.history["step_loss"]
        assert one.history["lr"] == r.history["lr"] and one.history["updates"] == r.history["updates"] == [8, 16, 17]
        for u, v in zip(jax.tree.leaves(one.params), jax.tree.leaves(vec.config(c).params)):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_threaded_sweep_keeps_the_callers_x64_and_falls_back_to_one_thread(monkeypatch):
    """Worker threads run under the caller's ``jax.enable_x64()`` (a per-thread setting): float64
    params out, the bits of workers=1. Under a thread guard (which forbids other threads), and
    where JAX keeps its per-thread settings out of reach (here: its registry removed), the workers
    are not used, and the result is the same."""
    from jax._src import config as jc
    kw = dict(optimizer=train.sgd(0.1), configs={"lr": [0.05, 0.2, 0.5]}, epochs=2, batch_size=7,
              key=jax.random.key(4), val=(X, Y), progress=False, vmap=False)
    with jax.enable_x64():
        data, p64 = (X.astype(np.float64), Y), jax.tree.map(lambda v: v.astype(np.float64), P0)
        one = train.sweep(NET, p64, data, workers=1, **kw)
        runs = [train.sweep(NET, p64, data, workers=3, **kw)]
        with jax.thread_guard(True):
            runs.append(train.sweep(NET, p64, data, workers=3, **kw))
        monkeypatch.delattr(jc.config, "_value_holders")
        assert engine._thread_settings() is None
        runs.append(train.sweep(NET, p64, data, workers=3, **kw))
    for res in runs:
        for u, v in zip(jax.tree.leaves(one.params), jax.tree.leaves(res.params)):
            assert u.dtype == v.dtype == np.float64 and np.array_equal(u, v)
        assert np.array_equal(np.stack(one.history["val_loss"]), np.stack(res.history["val_loss"]))


# ----------------------------------------------------------------------------- low precision

def test_evaluate_sums_low_precision_metrics_in_float32():
    """70,000 examples: a float16 count would overflow (65504) and a bfloat16 one stall at 256.
    float16/bfloat16 params give the float32 loss and accuracy to their rounding (loss rtol 2e-2,
    accuracy within 0.01)."""
    n = 70_000
    x = np.random.default_rng(1).normal(size=(n, 6)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 3, n).astype(np.int32)
    want = train.evaluate(NET, P0, (x, y))
    for dt in (jnp.float16, jnp.bfloat16):
        got = train.evaluate(NET, jax.tree.map(lambda v: v.astype(dt), P0), (x, y))
        assert np.isfinite(got[0]) and abs(got[0] - want[0]) < 2e-2 * want[0], (dt, got, want)
        assert abs(got[1] - want[1]) < 0.01, (dt, got, want)


@pytest.mark.parametrize("dt", [jnp.float16, jnp.bfloat16])
def test_training_in_low_precision_is_refused_before_compiling(dt):
    low = jax.tree.map(lambda v: v.astype(dt), P0)
    for call in (lambda: train.fit(NET, low, (X, Y), **KW), lambda: _sweep(low)):
        with pytest.raises(ValueError, match=rf"params\[0\]\['W'\] is {jnp.dtype(dt).name}; training in float16/bfloat16 is not supported"):
            call()


# ----------------------------------------------------------------------------- token ids

def _token_net():
    cfg = tr.TransformerConfig(10, 4, 8, 2, 1, 0.0)
    return tr.transformer(cfg)


@pytest.mark.parametrize("bad,match", [(500, r"token ids must lie in \[0, 10\); found \[500\]"), (-7, r"token ids must be >= 0; found -7")])
def test_token_ids_outside_the_vocabulary_are_refused_by_every_entry_point(bad, match):
    net = _token_net()
    p = net.init(jax.random.key(0))
    ids = np.random.default_rng(0).integers(0, 10, (20, 4)).astype(np.int32)
    ids[3, 2] = bad
    with pytest.raises(ValueError):   # model.apply refuses them ...
        net.apply(p, ids)
    kw = dict(epochs=1, batch_size=5, optimizer=optax.adam(1e-3), progress=False)
    ok = np.abs(ids) % 10
    calls = [("fit(transformer-V10-T4-d8-h2-L1): train x", lambda: train.fit(net, p, (ids, ok), **kw)),
             ("fit(transformer-V10-T4-d8-h2-L1): val x", lambda: train.fit(net, p, (ok, ok), val=(ids, ok), **kw)),
             ("evaluate: data x", lambda: train.evaluate(net, p, (ids, ok))),
             ("sweep(transformer-V10-T4-d8-h2-L1): train x",
              lambda: train.sweep(net, p, (ids, ok), keys=jax.random.split(jax.random.key(0), 2), **kw))]
    for where, call in calls:   # ... and so does every engine entry point, naming the array
        with pytest.raises(DataError, match=match) as e:
            call()
        assert str(e.value).startswith(where), str(e.value)


# ----------------------------------------------------------------------------- Sampler

def _sample(key, batch_size, xs, ys):
    i = jax.random.randint(key, (batch_size,), 0, len(xs))
    return xs[i], ys[i]


@pytest.mark.parametrize("sampler,match", [
    (train.Sampler(_sample, 3, jnp.asarray(X)), r"Sampler.data must be a tuple of the arrays sample reads, e.g. data=\(corpus,\), got ArrayImpl of shape \(50, 6\)"),
    (train.Sampler(_sample, 3, [jnp.asarray(X), jnp.asarray(Y)]), r"Sampler.data must be a tuple .* got list"),
    (train.Sampler(lambda key, batch_size: (X[:batch_size], Y[:batch_size]), 3, (jnp.asarray(X),)),
     r"Sampler.sample is called as sample\(key, batch_size, \*data\) with 1 data array\(s\), i.e. 3 positional arguments"),
    (train.Sampler("not a function", 3, ()), r"Sampler.sample must be a function sample\(key, batch_size, \*data\)"),
    (train.Sampler(_sample, 0, (jnp.asarray(X), jnp.asarray(Y))), r"steps_per_epoch must be an integer"),
    # a NaN in a float corpus is refused like one in (X, Y) data (it once trained, then "diverged")
    (train.Sampler(_sample, 3, (jnp.asarray(X).at[7, 2].set(jnp.nan), jnp.asarray(Y))),
     r"Sampler.data\[0\] \(shape \(50, 6\)\) holds NaN/Inf in 1 entry, the first at flat index 44"),
    (train.Sampler(_sample, 3, (np.where(np.arange(300).reshape(50, 6) % 100 == 1, np.inf, X), jnp.asarray(Y))),
     r"Sampler.data\[0\] .* holds NaN/Inf in 3 entries, the first at flat index 1"),
])
def test_a_malformed_sampler_is_refused_naming_what_is_wrong(sampler, match):
    for call in (lambda: train.fit(NET, P0, sampler, **KW), lambda: train.fit(NET, P0, (X, Y), val=sampler, **KW)):
        with pytest.raises(ValueError, match=match):
            call()


def test_int_parameters_are_refused_naming_the_leaf():
    """An int leaf in params (a learner's constant put there) would be updated and cast back into
    the integers: refused, naming the leaf, by fit and evaluate alike."""
    p = jax.tree.map(lambda v: v, P0)
    p[0]["b"] = jnp.zeros(p[0]["b"].shape, jnp.int32)
    for call in (lambda: train.fit(NET, p, (X, Y), **KW), lambda: train.evaluate(NET, p, (X, Y))):
        with pytest.raises(ValueError, match=r"params\[0\]\['b'\] has dtype int32: every parameter must be a float array"):
            call()
