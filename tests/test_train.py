"""Training engine: trajectories, resume, checkpoints, divergence, ragged batches, early stopping,
compile-once. Float32 unless stated; exact (bitwise) comparisons where the claim is bit-for-bit."""
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import train

from jaxnets.train import checkpoint, engine
from jaxnets import models
from jaxnets.nn import layers as L


def _toy(n=103, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, k))
    Y = np.argmax(X @ W + 0.3 * rng.normal(size=(n, k)), axis=1).astype(np.int32)
    return X, Y


NET = models.mlp([6, 8, 3], "tanh", "softmax_cross_entropy")
X, Y = _toy()


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("order,momentum", [("fixed", 0.0), ("shuffle", 0.9), ("replacement", 0.5)])
def test_hand_and_autodiff_give_the_same_trajectory(order, momentum):
    with jax.enable_x64(True):
        p0 = NET.init(jax.random.key(1), jnp.float64)
        kw = dict(epochs=3, batch_size=10, optimizer=train.sgd(0.2, momentum=momentum or None), l2=1e-3,
                  order=order, key=jax.random.key(2), val=(X, Y), progress=False)
        a = train.fit(NET, p0, (X.astype(np.float64), Y), grad="hand", **kw)
        b = train.fit(NET, p0, (X.astype(np.float64), Y), grad="autodiff", **kw)
    for u, v in zip(jax.tree.leaves(a.final_params), jax.tree.leaves(b.final_params)):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=1e-10)


def _sampler():
    """Batches drawn with replacement from (X, Y)."""
    return train.Sampler(lambda k, b, x, y: tuple(a[jax.random.randint(k, (b,), 0, len(y))] for a in (x, y)),
                         3, (jnp.asarray(X), jnp.asarray(Y)))


def _dropout_net():
    return models.sequential(L.serial(L.dense(16, "relu"), L.dropout(0.3), L.dense(3)), "softmax_cross_entropy",
                             in_shape=(X.shape[1],))


RESUMES = {   # name -> (model, data, fit's settings)
    "SGD momentum, decay, shuffled": (NET, (X, Y), dict(optimizer=train.sgd(0.3, momentum=0.9, lr_decay=0.9),
                                                         order="shuffle", val=(X, Y))),
    "dropout (the key's draws)": (_dropout_net(), (X, Y), dict(optimizer=train.sgd(0.1, momentum=0.9), val=(X, Y))),
    "Sampler, AdamW, fresh scoring": (NET, _sampler(), dict(optimizer=train.adamw(1e-2), val=_sampler(),
                                                            evaluation=train.Evaluation(train=False, sampled_batches=3,
                                                                                        fresh=True))),
    "max_updates mid-epoch": (NET, (X, Y), dict(optimizer=train.sgd(0.1), val=(X, Y), max_updates=25)),
}


@pytest.mark.parametrize("name", list(RESUMES))
def test_resume_equals_uninterrupted_bit_for_bit(tmp_path, name):
    model, data, settings = RESUMES[name]
    p0 = model.init(jax.random.key(1))
    kw = dict(batch_size=7, key=jax.random.key(5), progress=False, **settings)
    full = train.fit(model, p0, data, epochs=6, **kw)
    path = tmp_path / "run.ckpt.npz"
    train.fit(model, p0, data, epochs=4, checkpoint=train.Checkpointing(path), **kw)  # "killed" after epoch 4
    resumed = train.fit(model, p0, data, epochs=6, checkpoint=train.Checkpointing(path, resume=True), **kw)
    assert _leaves_equal(full.final_params, resumed.final_params)
    assert _leaves_equal(full.opt_state, resumed.opt_state)
    assert full.history == resumed.history | {"time": full.history["time"]}


def test_failed_checkpoint_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    tree = {"a": jnp.arange(3.0), "k": jax.random.key(3)}
    checkpoint.save(path, tree, {"epoch": 1})

    def dying_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt("killed mid-write")
    monkeypatch.setattr(np, "savez", dying_savez)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"a": jnp.arange(3.0) + 1, "k": jax.random.key(4)}, {"epoch": 2})
    loaded, meta = checkpoint.load(path, tree)
    assert meta == {"epoch": 1} and np.array_equal(loaded["a"], [0.0, 1.0, 2.0])
    assert os.listdir(tmp_path) == ["c.npz"]


def _killed_checkpoint_writer(path, after_s: float) -> bool:
    """SIGKILL a loop of large checkpoint writes ``after_s`` after its first; whether the kill
    landed mid-write (it left its temporary file behind)."""
    script = textwrap.dedent(f"""
        import numpy as np
        from jaxnets.train import checkpoint
        i = 0
        while True:
            checkpoint.save({str(path)!r}, {{"w": np.full((2_000_000,), float(i))}}, {{"i": i}})
            if i == 0:
                print("first", flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first"
    import time
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return any(p.name.endswith(".part") for p in path.parent.iterdir())


def test_sigkill_during_checkpoint_writes_never_corrupts(tmp_path):
    """A real SIGKILL in the middle of a write (tried at several moments until one lands there,
    as its leftover temporary shows), of a loop of large checkpoint writes."""
    path = tmp_path / "big.npz"
    for after_s in (0.7, 0.43, 0.29, 0.61, 0.17, 0.53):
        mid_write = _killed_checkpoint_writer(path, after_s)
        tree, meta = checkpoint.load(path, {"w": np.zeros((2_000_000,))})
        assert np.all(np.asarray(tree["w"]) == meta["i"])
        if mid_write:
            return
    pytest.fail("no kill landed mid-write (no temporary file left behind)")


def test_diverging_run_stops_cleanly_with_message(capsys):
    net = models.mlp([6, 8, 3], "relu", "mse", init="normal", std=1.0)
    p0 = net.init(jax.random.key(0))
    res = train.fit(net, p0, (X * 50, Y), epochs=20, batch_size=10, optimizer=train.sgd(50.0),
                    order="fixed", progress=False)
    assert res.divergence is not None
    err = capsys.readouterr().err
    assert f"epoch {res.divergence.epoch}" in err and "update" in err and "lr 50" in err
    assert len(res.history["epoch"]) == res.divergence.epoch < 20
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(res.final_params))
    assert res.history["diverged"]["step"] == res.divergence.step


def test_ragged_last_batch_equals_per_example_algorithm():
    """n = 23, batch 10: the last batch has 3 real rows; its update is the mean gradient of those 3."""
    with jax.enable_x64(True):
        Xs, Ys = X[:23].astype(np.float64), Y[:23]
        p0 = NET.init(jax.random.key(1), jnp.float64)
        res = train.fit(NET, p0, (Xs, Ys), epochs=1, batch_size=10, optimizer=train.sgd(0.1),
                        order="fixed", progress=False, evaluation=train.Evaluation(train=False))
        p = p0
        for start in (0, 10, 20):
            xb, yb = Xs[start:start + 10], Ys[start:start + 10]
            grads = [NET.backprop(p, xb[i:i + 1], yb[i:i + 1])[1] for i in range(len(xb))]
            mean = jax.tree.map(lambda *g: sum(g) / len(g), *grads)
            p = jax.tree.map(lambda w, g: w - 0.1 * g, p, mean)
    for u, v in zip(jax.tree.leaves(res.final_params), jax.tree.leaves(p)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
    assert res.history["updates"] == [3]


def test_early_stopping_returns_best_epoch_params():
    p0 = NET.init(jax.random.key(1))
    seen = {}

    def cb(epoch, state, history):
        seen[epoch] = state.params
    res = train.fit(NET, p0, (X[:60], Y[:60]), val=(X[60:], Y[60:]), epochs=200, batch_size=5,
                    optimizer=train.sgd(0.5), order="shuffle", key=jax.random.key(3),
                    early_stopping=train.EarlyStopping(3), callback=cb, progress=False)
    accs = res.history["val_acc"]
    assert res.stopped_early and len(accs) < 200
    assert res.best_epoch == int(np.argmax(accs)) + 1
    assert len(accs) == res.best_epoch + 3
    assert _leaves_equal(res.params, seen[res.best_epoch])


def test_epoch_compiles_once_per_shape():
    opt = train.sgd(0.1, momentum=0.5, lr_decay=0.9)
    epoch = chex.assert_max_traces(train.make_epoch(NET, len(X), 10, "shuffle", optimizer=opt), n=1)
    jitted = jax.jit(epoch)
    state = train.init_state(NET.init(jax.random.key(0)), opt)
    for e in range(4):  # different epochs (the decay), keys and a ragged last batch: no retrace
        state, _ = jitted(state, jnp.float32(0.01), jnp.int32(e), jax.random.fold_in(jax.random.key(0), e), X, Y)


def test_max_updates_stops_mid_epoch():
    res = train.fit(NET, NET.init(jax.random.key(0)), (X, Y), epochs=3, batch_size=10,
                    optimizer=train.sgd(0.1), order="replacement", max_updates=25, progress=False)
    assert res.history["updates"] == [11, 22, 25]
    assert len(res.history["step_loss"][2]) == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"),
    (dict(order="random"), "order must be one of"),
    (dict(grad="numeric"), "grad must be one of"),
    (dict(early_stopping=train.EarlyStopping(2)), "needs val"),
    (dict(early_stopping=2), "early_stopping must be train.EarlyStopping"),
    (dict(checkpoint="run.npz"), "checkpoint must be train.Checkpointing"),
    (dict(evaluation=dict(train=False)), "evaluation must be a train.Evaluation"),
    (dict(optimizer=0.1), "optimizer must be an optax GradientTransformation"),
])
def test_fit_rejects_bad_arguments(kwargs, match):
    base = dict(epochs=1, batch_size=10, optimizer=train.sgd(0.1), progress=False)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train.fit(NET, NET.init(jax.random.key(0)), (X, Y), **base)


def test_fit_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"train labels: labels must lie in \[0, 3\)"):
        train.fit(NET, NET.init(jax.random.key(0)), (X, np.where(Y == 2, 3, Y)), epochs=1,
                  batch_size=10, optimizer=train.sgd(0.1), progress=False)


def test_sweep_equals_separate_runs(x64):
    """float64, so the comparison is about the algorithm and not float32 rounding chaos."""
    lrs, moms = [0.05, 0.1, 0.3], [0.0, 0.5, 0.9]
    Xd = X.astype(np.float64)
    p0 = NET.init(jax.random.key(1), jnp.float64)
    res = train.sweep(NET, p0, (Xd, Y), optimizer=train.sgd(0.1, momentum=0.0, lr_decay=0.8),
                      configs={"lr": lrs, "momentum": moms}, epochs=2, batch_size=5,
                      key=jax.random.key(4), val=(Xd, Y))
    params, hist = res.params, res.history
    assert res.n_configs == 3 and set(hist) == {"epoch", "time", "updates", "lr", "step_loss",
                                                "train_loss", "train_acc", "val_loss", "val_acc"}
    for c, (lr, m) in enumerate(zip(lrs, moms)):
        r = train.fit(NET, p0, (Xd, Y), epochs=2, batch_size=5, optimizer=train.sgd(lr, momentum=m, lr_decay=0.8),
                      key=jax.random.key(4), val=(Xd, Y), progress=False)
        for u, v in zip(jax.tree.leaves(r.final_params), jax.tree.leaves(params)):
            np.testing.assert_allclose(u, v[c], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(r.history["val_acc"], [a[c] for a in hist["val_acc"]], atol=1e-12)
        one = res.config(c)   # configuration c in fit's form: same keys, same kinds of values
        assert set(one.history) == set(r.history) and one.history["updates"] == r.history["updates"]
        np.testing.assert_allclose(one.history["lr"], r.history["lr"], rtol=1e-15)
        np.testing.assert_allclose(one.history["val_loss"], r.history["val_loss"], rtol=1e-10)


@pytest.mark.parametrize("grad", ["hand", "autodiff"])
@pytest.mark.parametrize("momentum", [None, 0.0])
def test_static_l2_switch_and_velocity_free_sgd_are_bit_identical(grad, momentum):
    """fit compiles the epoch without the penalty when l2 is 0, and ``sgd(momentum=None)`` keeps
    no velocity; with l2 = 0 traced (and a zero momentum) the general epoch must give the same bits
    (float32, one ragged epoch)."""
    p0 = NET.init(jax.random.key(3))
    args = (jnp.float32(0.0), jnp.int32(0), jax.random.key(4), X, Y)
    general_opt = train.sgd(0.3, momentum=0.0)
    general = jax.jit(train.make_epoch(NET, len(X), 10, "shuffle", grad, optimizer=general_opt))(
        train.init_state(p0, general_opt), *args)
    opt = train.sgd(0.3, momentum=momentum)
    special = jax.jit(train.make_epoch(NET, len(X), 10, "shuffle", grad, optimizer=opt, use_l2=False))(
        train.init_state(p0, opt), *args)
    assert _leaves_equal(general[0].params, special[0].params)
    assert np.array_equal(np.asarray(general[1]), np.asarray(special[1]))
    assert int(general[0].updates) == int(special[0].updates) == 11


def test_static_switches_change_the_computation():
    """The switches are not no-ops: with momentum/l2 nonzero, dropping the velocity or compiling
    the penalty out (use_l2=False ignores the l2 argument) changes the result."""
    p0 = NET.init(jax.random.key(3))
    args = (jnp.float32(0.05), jnp.int32(0), jax.random.key(4), X, Y)
    outs = []
    for momentum, use_l2 in ((0.9, True), (None, True), (0.9, False)):
        opt = train.sgd(0.3, momentum=momentum)
        outs.append(jax.jit(train.make_epoch(NET, len(X), 10, "shuffle", optimizer=opt, use_l2=use_l2))(
            train.init_state(p0, opt), *args)[0])
    assert not _leaves_equal(outs[0].params, outs[1].params)
    assert not _leaves_equal(outs[0].params, outs[2].params)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 3e38])
def test_divergence_check_flags_any_non_finite_gradient_entry(bad):
    """The per-step check is one sum per gradient leaf: NaN and ±Inf propagate; entries whose sum
    overflows float32 (3e38 twice) are flagged too."""
    g = [{"W": np.ones((4, 3), np.float32), "b": np.zeros(3, np.float32)}]
    assert bool(engine._finite(jnp.float32(1.0), g))
    g[0]["W"][2, 1] = bad
    g[0]["W"][0, 0] = bad if bad == 3e38 else 1.0
    assert not bool(engine._finite(jnp.float32(1.0), g))
    assert not bool(engine._finite(jnp.float32(np.nan), [{"W": np.ones(2, np.float32)}]))


def _poisoned(model, threshold=999.0):
    """``model`` whose hand-written gradient is +Inf (loss still finite) on a batch holding an example
    with x[0] > threshold: the case only the per-step gradient check sees."""
    def backprop(params, x, y, l2=0.0, mask=None):
        loss, g = model.backprop(params, x, y, l2, mask)
        bad = jnp.any(x[:, 0] > threshold)
        return loss, jax.tree.map(lambda v: jnp.where(bad, jnp.inf, v), g)
    return model._replace(backprop=backprop)


def test_finite_loss_with_infinite_gradient_is_caught_by_the_replay(capsys):
    """fit runs the epoch without the per-step gradient check; the Inf gradient reaches the weights,
    so the epoch is replayed with the check: fit must stop at the poisoned update with the weights
    of the update before it, exactly as the always-checking epoch does."""
    net = _poisoned(NET)
    Xp = X.copy()
    Xp[37, 0] = 1000.0   # batch 3 (examples 30-39, fixed order, batch 10): the 4th update
    Xn = Xp[:50]   # 5 updates in the epoch, the poisoned one is update index 3
    p0 = NET.init(jax.random.key(5))
    opt = train.sgd(0.1)
    args = (train.init_state(p0, opt), jnp.float32(0.0), jnp.int32(0), jax.random.fold_in(jax.random.key(0), 0),
            Xn, Y[:50])
    fast, _ = jax.jit(train.make_epoch(net, 50, 10, "fixed", check_grads=False, optimizer=opt,
                                       use_l2=False))(*args)
    assert not np.all(np.isfinite(np.asarray(fast.params[0]["W"])))   # the fast epoch alone is fooled
    exact, _ = jax.jit(train.make_epoch(net, 50, 10, "fixed", optimizer=opt, use_l2=False))(*args)
    assert int(exact.bad_step) == 3 and int(exact.updates) == 3
    res = train.fit(net, p0, (Xn, Y[:50]), epochs=3, batch_size=10, optimizer=opt, order="fixed",
                    key=jax.random.key(0), progress=False)
    assert res.divergence is not None and res.divergence.epoch == 1 and res.divergence.step == 3
    assert _leaves_equal(res.final_params, exact.params)
    assert "update 3" in capsys.readouterr().err


@pytest.mark.parametrize("way,rtol", [(dict(), 1e-6), (dict(vmap=False, workers=2), 0.0)], ids=["vmap", "threads"])
def test_sweep_replays_a_poisoned_epoch_to_the_last_finite_weights(way, rtol):
    """Both configurations meet the poisoned batch (update 3) and must keep the weights of the update
    before it, as separate fit runs do (float32; vmapped and single runs may round differently, so
    rtol 1e-6 there; on threads, each configuration replaying in its own worker, bit for bit)."""
    net = _poisoned(NET)
    Xp = X[:50].copy()
    Xp[37, 0] = 1000.0
    p0 = NET.init(jax.random.key(5))
    sw = train.sweep(net, p0, (Xp, Y[:50]), optimizer=train.sgd(0.1),
                     configs={"lr": np.array([0.1, 0.2], np.float32)}, epochs=2, batch_size=10,
                     order="fixed", key=jax.random.key(0), **way)
    params = sw.params
    assert [(d.epoch, d.step) for d in sw.divergence] == [(1, 3), (1, 3)]
    for c, lr in enumerate((0.1, 0.2)):
        res = train.fit(net, p0, (Xp, Y[:50]), epochs=2, batch_size=10, optimizer=train.sgd(lr),
                        order="fixed", key=jax.random.key(0), progress=False)
        assert res.divergence.step == 3
        chex.assert_trees_all_close(jax.tree.map(lambda v: v[c], params), res.final_params,
                                    rtol=rtol, atol=0)


# ----------------------------------------------------------------------------- optax optimizers

def _hand_optax_loop(net, p0, X_, Y_, opt, epochs, batch):
    """The same steps written out: fixed order, batches of ``batch`` (n divisible by it)."""
    with jax.numpy_dtype_promotion("standard"):
        p, s = p0, opt.init(p0)
        for _ in range(epochs):
            for i in range(0, len(X_), batch):
                _, g = net.backprop(p, X_[i:i + batch], Y_[i:i + batch])
                u, s = opt.update(g, s, p)
                p = optax.apply_updates(p, u)
    return p


@pytest.mark.parametrize("make_opt", [lambda: optax.adamw(1e-2, weight_decay=1e-3),
                                      lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))],
                         ids=["adamw", "clip+adam"])
def test_fit_with_an_optax_optimizer_equals_a_hand_rolled_optax_loop(make_opt):
    """float64, rtol 1e-10: jit and op-by-op execution may round differently, nothing else."""
    with jax.enable_x64(True):
        Xd, Yd = X[:100].astype(np.float64), Y[:100]
        p0 = NET.init(jax.random.key(1), jnp.float64)
        res = train.fit(NET, p0, (Xd, Yd), optimizer=make_opt(), epochs=3, batch_size=10,
                        order="fixed", progress=False, val=(Xd, Yd))
        want = _hand_optax_loop(NET, p0, Xd, Yd, make_opt(), 3, 10)
    chex.assert_trees_all_close(res.final_params, want, rtol=1e-10, atol=1e-12)
    assert res.history["val_loss"][-1] < res.history["val_loss"][0]   # it trains
    assert res.history["lr"] == [None] * 3


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_train_sgd_equals_optax_sgd_bit_for_bit(momentum):
    """train.sgd is doc 003's SGD; optax.sgd is the same rule: same bits (float32, ragged)."""
    p0 = NET.init(jax.random.key(1))
    kw = dict(epochs=2, batch_size=7, key=jax.random.key(2), progress=False, val=(X, Y))
    a = train.fit(NET, p0, (X, Y), optimizer=train.sgd(0.2, momentum=momentum), **kw)
    b = train.fit(NET, p0, (X, Y), optimizer=optax.sgd(0.2, momentum=momentum), **kw)
    assert _leaves_equal(a.final_params, b.final_params)
    assert a.history["val_loss"] == b.history["val_loss"]
    assert a.history["lr"] == [np.float32(0.2)] * 2 and b.history["lr"] == [None] * 2


def _assert_same_epochs(opts, p0, dtype, l2, max_updates, epochs, **kw):
    """Two epochs of fit's compiled epoch (103 rows in batches of 10: the last one ragged) with each
    optimizer of ``opts`` from p0: the same state and step losses, bit for bit."""
    outs = []
    for o in opts:
        ep = jax.jit(train.make_epoch(NET, len(X), 10, "shuffle", optimizer=o, use_l2=l2 != 0,
                                      max_updates=max_updates, **kw))
        st = train.init_state(p0, o)
        for e in epochs:
            st, losses = ep(st, jnp.asarray(l2, dtype), jnp.int32(e), jax.random.key(e), X.astype(dtype), Y)
        outs.append((st, losses))
    assert _leaves_equal(outs[0][0], outs[1][0])
    assert np.array_equal(np.asarray(outs[0][1]), np.asarray(outs[1][1]), equal_nan=True)
    assert int(outs[0][0].updates) == (22 if max_updates is None else 15)


@pytest.mark.parametrize("dtype,l2,max_updates", [(jnp.float32, 0.05, None), (jnp.float32, 0.0, 15),
                                                    (jnp.float64, 0.05, 15)])
def test_kept_momentum_step_is_bit_identical_to_the_generic_update(dtype, l2, max_updates, request):
    """The engine runs train.sgd's momentum update with the weights reading the kept velocity
    (optim.kept_momentum_step); the same optimizer without that marker takes the generic path
    (optax update, apply_updates, keep both). Same bits: L2 traced, decay at epochs 2–3, a
    max_updates limit that freezes the state mid-epoch (float32 and float64, ragged batches)."""
    if dtype == jnp.float64:
        request.getfixturevalue("x64")
    p0 = jax.tree.map(lambda v: v.astype(dtype), NET.init(jax.random.key(5)))
    opt = train.sgd(0.3, momentum=0.9, lr_decay=0.7)
    generic = optax.GradientTransformationExtraArgs(*opt)
    assert train.optim.kept_momentum_step(generic, None, None, None, None, None) is None
    _assert_same_epochs((opt, generic), p0, dtype, l2, max_updates, epochs=(2, 3))


@pytest.mark.parametrize("dtype,l2,max_updates,check", [(jnp.float32, 0.05, None, False), (jnp.float32, 0.0, 15, True),
                                                          (jnp.float64, 0.05, 15, False)])
def test_train_adamw_is_optax_adamw_bit_for_bit(dtype, l2, max_updates, check, request):
    """train.adamw runs through optim.kept_adamw_step (the weights read the kept moments); plain
    optax.adamw with the same arguments takes the generic path. Same bits: L2 traced, a
    max_updates limit that freezes the state mid-epoch, ragged batches, float32 and float64, with
    and without per-step gradient checks, over two epochs (the bias correction's count)."""
    if dtype == jnp.float64:
        request.getfixturevalue("x64")
    p0 = jax.tree.map(lambda v: v.astype(dtype), NET.init(jax.random.key(5)))
    hp = dict(b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.03)
    opts = (train.adamw(0.05, **hp), optax.adamw(0.05, **hp))
    assert train.optim.kept_adamw_step(opts[1], None, None, None, None, None) is None
    _assert_same_epochs(opts, p0, dtype, l2, max_updates, epochs=(0, 1), check_grads=check)


def test_train_adamw_removes_the_moment_copies():
    """What kept_adamw_step is for: in the epoch fit compiles (no per-step gradient checks, whose
    test of every gradient orders the updates after all reads), XLA:CPU no longer copies both
    moments of every parameter (fewer copy instructions than with optax.adamw)."""
    def copies(o):
        ep = jax.jit(train.make_epoch(NET, len(X), 10, "shuffle", optimizer=o, use_l2=False, check_grads=False))
        args = (train.init_state(NET.init(jax.random.key(0)), o), jnp.zeros(()), jnp.int32(0),
                jax.random.key(0), X, Y)
        return ep.lower(*args).compile().as_text().count(" copy(")
    assert copies(train.adamw(1e-2)) < copies(optax.adamw(1e-2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-0.1), "adamw: lr must be finite and >= 0"),
    (dict(lr=0.1, b1=1.0), "b1 must be finite and in"),
    (dict(lr=0.1, b2=np.nan), "b2 must be finite"),
    (dict(lr=0.1, eps=0.0), "eps must be finite and > 0"),
    (dict(lr=0.1, weight_decay=-1e-3), "weight_decay must be finite and >= 0"),
    (dict(lr=np.ones(2)), "lr must be a real scalar"),
])
def test_adamw_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.adamw(**kwargs)


def test_sgd_decays_the_learning_rate_once_per_epoch():
    """doc 004: η_e = lr·decay^e. Written out with plain SGD per epoch, the same bits (float32)."""
    p0 = NET.init(jax.random.key(1))
    kw = dict(batch_size=10, order="fixed", key=jax.random.key(2), progress=False)
    res = train.fit(NET, p0, (X, Y), epochs=3, optimizer=train.sgd(0.4, lr_decay=0.5), **kw)
    p = p0
    for e in range(3):
        rate = float(jnp.float32(0.4) * jnp.float32(0.5) ** jnp.float32(e))
        p = train.fit(NET, p, (X, Y), epochs=1, optimizer=optax.sgd(rate), **kw).final_params
    assert _leaves_equal(res.final_params, p)
    np.testing.assert_allclose(res.history["lr"], [0.4, 0.2, 0.1], rtol=1e-7)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-0.1), "sgd: lr must be finite and >= 0"),
    (dict(lr=0.1, lr_decay=0.0), "lr_decay must be finite and > 0"),
    (dict(lr=0.1, momentum=np.nan), "momentum must be finite"),
    (dict(lr=np.ones((2, 3))), "lr must be a real scalar"),
    (dict(lr="0.1"), "lr must be a real scalar"),
])
def test_sgd_refuses_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.sgd(**kwargs)


def test_fit_needs_an_optimizer():
    with pytest.raises(TypeError, match="optimizer"):
        train.fit(NET, NET.init(jax.random.key(0)), (X, Y), epochs=1, batch_size=10, progress=False)


@pytest.mark.parametrize("way,tol", [(dict(), 1e-10), (dict(vmap=False, workers=3), 0.0),
                                     (dict(vmap=False, workers=2), 0.0)], ids=["vmap", "threads", "2-threads"])
@pytest.mark.parametrize("source", ["arrays", "sampler"])
def test_sweep_with_per_config_keys_equals_separate_fits_with_those_keys(x64, source, way, tol):
    """``keys``: every configuration its own batch order (arrays) or sampled batches (Sampler) —
    independent seeds in one vmapped program (float64, rtol 1e-10), or in fit's own epoch on
    three threads (bit for bit), equal to separate fits keyed keys[c]; the callback sees the config
    axis either way."""
    Xd = X.astype(np.float64)
    keys = jax.random.split(jax.random.key(7), 3)
    inits = jax.vmap(lambda k: NET.init(k, jnp.float64))(keys)
    data = (Xd, Y) if source == "arrays" else train.Sampler(
        lambda k, b, x, y: tuple(a[jax.random.randint(k, (b,), 0, len(y))] for a in (x, y)), 4, (Xd, Y))
    calls = []
    res = train.sweep(NET, inits, data, optimizer=optax.adam(1e-2), epochs=2, batch_size=10,
                      key=jax.random.key(4), keys=keys, val=data,
                      evaluation=train.Evaluation(train=False, sampled_batches=3, initial=True),
                      callback=lambda e, st, h: calls.append((e, jax.tree.leaves(st.params)[0].shape)), **way)
    params, hist = res.params, res.history
    assert [e for e, _ in calls] == [1, 2] and calls[0][1][0] == 3   # params keep the config axis
    finals = []
    for c in range(3):
        r = train.fit(NET, jax.tree.map(lambda v: v[c], inits), data, optimizer=optax.adam(1e-2),
                      epochs=2, batch_size=10, key=keys[c], val=data,
                      evaluation=train.Evaluation(train=False, sampled_batches=3), progress=False)
        chex.assert_trees_all_close(r.final_params, jax.tree.map(lambda v: v[c], params),
                                    rtol=tol, atol=tol / 100)
        # the evaluation too: a sampled val set is scored on config c's own batches, as fit scores it
        np.testing.assert_allclose(r.history["val_loss"], [v[c] for v in hist["val_loss"]], rtol=tol, atol=0)
        # eval_initial: the starting params, on the same evaluator
        p0 = jax.tree.map(lambda v: v[c], inits)
        ev = {"val": data} if source == "arrays" else None
        want = (train.evaluate(NET, p0, ev["val"])[0] if ev else
                float(engine._make_sampled_evaluate(NET, data, 10, 3)(
                    p0, jax.random.fold_in(jax.random.split(keys[c])[1], 0), *map(jnp.asarray, data.data))[0]))
        np.testing.assert_allclose(hist["initial_val_loss"][c], want, rtol=max(tol, 1e-15))
        finals.append(np.asarray(jax.tree.leaves(r.final_params)[0]))
    # the keys matter: the same init under another key ends elsewhere
    other = train.fit(NET, jax.tree.map(lambda v: v[0], inits), data, optimizer=optax.adam(1e-2), epochs=2,
                      batch_size=10, key=keys[1], evaluation=train.Evaluation(train=False), progress=False)
    assert not np.allclose(np.asarray(jax.tree.leaves(other.final_params)[0]), finals[0])


def _instrumented_sweep(monkeypatch, on_epoch, on_eval, epochs=2, callback=None,
                        evaluation=train.Evaluation(train=False), **kw):
    """A threaded sweep of 3 seeds on 2 workers whose every compiled epoch call runs
    ``on_epoch(n, e)`` first (n: the call's index, 1-based; e: the epoch it trains, 0-based) and
    every evaluation ``on_eval()``."""
    import threading
    if engine._thread_settings() is None:
        pytest.skip("this JAX keeps its thread-local config options out of reach: sweep runs no threads")
    compile_epoch, evaluators, calls, lock = engine._compile_epoch, engine._evaluators, [], threading.Lock()

    def compile_(*a, **k):
        fn, t = compile_epoch(*a, **k)

        def epoch(*args):
            with lock:
                calls.append(None)
                n = len(calls)
            on_epoch(n, int(args[2]))
            return fn(*args)
        return epoch, t

    def evaluators_(*a, **k):
        return {name: (lambda ev: lambda *args: (on_eval(), ev(*args))[1])(ev)
                for name, ev in evaluators(*a, **k).items()}
    monkeypatch.setattr(engine, "_compile_epoch", compile_)
    monkeypatch.setattr(engine, "_evaluators", evaluators_)
    keys = jax.random.split(jax.random.key(3), 3)
    return train.sweep(NET, NET.init(jax.random.key(0)), (X, Y), optimizer=train.sgd(0.1), epochs=epochs,
                       batch_size=10, keys=keys, val=(X, Y), evaluation=evaluation,
                       vmap=False, workers=2, callback=callback, **kw)


@pytest.mark.parametrize("overlap", [True, False])
def test_threaded_sweep_scores_a_config_while_the_others_still_train(monkeypatch, overlap):
    """3 seeds on 2 workers: the third seed's epoch (queued behind the first two) waits for an
    evaluation to start (up to 20 s; 2 s where none may). With ``overlap`` the first seed's
    evaluation is queued when its epoch ends, so a worker is free to start it while the third seed
    trains; with ``overlap=False`` (as before it existed) every evaluation waits for every epoch,
    so the wait times out; the scores are the same bits either way."""
    import threading
    evaluating, waited = threading.Event(), []

    def on_epoch(n, e):
        if n == 3:
            waited.append(evaluating.wait(timeout=20 if overlap else 2))
    res = _instrumented_sweep(monkeypatch, on_epoch, evaluating.set, epochs=1, overlap=overlap)
    assert waited == [overlap]
    monkeypatch.undo()
    other = _instrumented_sweep(monkeypatch, lambda n, e: None, lambda: None, epochs=1, overlap=not overlap)
    for k in ("val_loss", "val_acc"):
        assert np.array_equal(res.history[k][0], other.history[k][0]) and np.shape(res.history[k][0]) == (3,)


def test_sweep_refuses_a_non_bool_overlap():
    with pytest.raises(TypeError, match="sweep: overlap must be True or False, got 'no'"):
        train.sweep(NET, NET.init(jax.random.key(0)), (X, Y), optimizer=train.sgd(0.1), epochs=1,
                    batch_size=10, keys=jax.random.split(jax.random.key(0), 2), vmap=False, workers=2,
                    overlap="no")


def test_threaded_sweep_scores_each_epoch_once_per_config(monkeypatch):
    """The evaluations queued as the epochs end (and the initial ones, all sets queued at once) are
    the ones recorded: one evaluation per config, set and epoch (none computed twice), and the
    scores equal separate fits' (bit for bit)."""
    import threading
    lock, count = threading.Lock(), []

    def on_eval():
        with lock:
            count.append(None)
    ev = train.Evaluation(train=True, initial=True)
    res = _instrumented_sweep(monkeypatch, lambda n, e: None, on_eval, epochs=2, evaluation=ev)
    assert len(count) == (2 + 1) * 3 * 2    # (initial + 2 epochs) × 3 configs × 2 sets (train, val)
    monkeypatch.undo()
    keys = jax.random.split(jax.random.key(3), 3)
    for c in range(3):
        r = train.fit(NET, NET.init(jax.random.key(0)), (X, Y), optimizer=train.sgd(0.1), epochs=2,
                      batch_size=10, key=keys[c], val=(X, Y), evaluation=ev, progress=False)
        for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert r.history[k] == [float(v[c]) for v in res.history[k]], k
        for k in ("initial_train_loss", "initial_val_acc"):
            assert r.history[k] == float(res.history[k][c]), k


def test_an_interrupted_threaded_sweep_stops_its_workers(monkeypatch):
    """Ctrl-C inside a worker as epoch 2 starts (the other configurations' epochs queued or
    running): the KeyboardInterrupt reaches the caller, the queued work is cancelled and no
    worker thread outlives the call."""
    import threading
    before, started = set(threading.enumerate()), []

    def on_epoch(n, e):
        started.append((n, e))
        if e == 1:
            raise KeyboardInterrupt("Ctrl-C")
    with pytest.raises(KeyboardInterrupt):
        _instrumented_sweep(monkeypatch, on_epoch, lambda: None, epochs=3)
    assert set(threading.enumerate()) <= before
    assert max(n for n, _ in started) <= 6 and max(e for _, e in started) == 1   # epoch 3 never started


def test_a_threaded_sweep_runs_a_configuration_at_most_one_epoch_ahead_of_the_loop(monkeypatch):
    """A slow callback (0.3 s per epoch) and fast epochs: a configuration's epoch e + 1 starts
    while the loop still works on epoch e (it ran ahead), but never before the loop has finished
    epoch e - 1 (its callback called): no more than one epoch ahead, whatever the loop's pace."""
    import threading
    import time as _time
    lock, events = threading.Lock(), []

    def log(*ev):
        with lock:
            events.append(ev)

    def callback(epoch, state, history):
        log("done", epoch)          # epoch: 1-based, the loop's epoch epoch - 1 ended
        _time.sleep(0.3)
    _instrumented_sweep(monkeypatch, lambda n, e: log("start", e), lambda: None, epochs=4, callback=callback)
    seen = [ev for ev in events if ev[0] == "done" or ev[1] >= 1]
    for i, (what, e) in enumerate(seen):
        if what == "start" and e >= 2:
            assert ("done", e - 1) in seen[:i], seen      # the loop had ended epoch e - 2 (0-based)
    assert any(what == "start" and ("done", e) not in seen[:i] for i, (what, e) in enumerate(seen)), seen


@pytest.mark.parametrize("overlap", [True, False])
def test_a_threaded_sweep_starts_a_configs_next_epoch_when_its_own_ends(monkeypatch, overlap):
    """3 seeds on 2 workers: the third seed's first epoch (queued behind the first two) waits (up
    to 20 s; 2 s where none may) for an epoch 2 to start. With ``overlap`` a seed's next epoch is
    queued as soon as its own epoch ends (a worker starts it beside the third seed's epoch 1);
    with ``overlap=False`` epoch 2 waits for every epoch 1, so the wait times out. The params and
    scores are the same bits either way (and those of separate fits, tested above)."""
    import threading
    second, waited = threading.Event(), []

    def on_epoch(n, e):
        if e == 1:
            second.set()
        if n == 3:
            waited.append(second.wait(timeout=20 if overlap else 2))
    res = _instrumented_sweep(monkeypatch, on_epoch, lambda: None, epochs=2, overlap=overlap)
    assert waited == [overlap]
    monkeypatch.undo()
    other = _instrumented_sweep(monkeypatch, lambda n, e: None, lambda: None, epochs=2, overlap=not overlap)
    assert _leaves_equal(res.params, other.params)
    for k in ("val_loss", "val_acc"):
        assert all(np.array_equal(a, b) for a, b in zip(res.history[k], other.history[k]))


@pytest.mark.parametrize("overlap", [True, False])
def test_a_threaded_sweeps_epoch_time_holds_its_evaluations_when_they_share_the_workers(monkeypatch, overlap):
    """Every evaluation sleeps 0.5 s (3 configs × 2 epochs, one set, on 2 workers: ≥ 1.5 s of wall
    time in all). With ``overlap`` the recorded epoch times hold the evaluations (and the epochs
    run beside them), so they add up to at least that; with ``overlap=False`` they are the epochs'
    alone (a few ms here; the bound, half the evaluations' wall time, leaves room for a loaded
    machine)."""
    import time as _time
    res = _instrumented_sweep(monkeypatch, lambda n, e: None, lambda: _time.sleep(0.5), epochs=2, overlap=overlap)
    total = sum(res.history["time"])
    assert (total >= 1.5) if overlap else (total < 0.75), res.history["time"]


def test_a_threaded_sweep_drops_the_epochs_it_ran_ahead_for_a_state_it_did_not_return():
    """The engine's threaded run_epoch, given a state other than the one it last returned (the
    epoch it queued ahead was computed from that one), trains the state given: the same bits as
    a fresh run_epoch from that state."""
    from concurrent.futures import ThreadPoolExecutor
    if engine._thread_settings() is None:
        pytest.skip("this JAX keeps its thread-local config options out of reach: sweep runs no threads")
    keys = jax.random.split(jax.random.key(3), 3)

    def setup(pool):
        run, C = engine._sweep_setup(NET, NET.init(jax.random.key(0)), (X, Y), epochs=3, batch_size=10,
                                     optimizer=train.sgd(0.1), configs=None, keys=keys, l2=0.0,
                                     order="shuffle", grad="hand", key=None, val=None,
                                     evaluation=train.Evaluation(train=False), max_updates=None)
        settings = dict(order="shuffle", grad="hand", max_updates=None, mesh=None,
                        optimizer=train.sgd(0.1), use_l2=False)
        return run, engine._in_step(run, C, train.Evaluation(train=False), settings, pool, True, 3)
    with ThreadPoolExecutor(2) as pool:
        run, (run_epoch, _, _, stop) = setup(pool)
        first, _ = run_epoch(run.state, run.l2, 0, run.epoch_key(0))        # queues epoch 1 from `first`
        again, _ = run_epoch(run.state, run.l2, 1, run.epoch_key(1))        # epoch 1 from the start instead
        stop()
    with ThreadPoolExecutor(2) as pool:
        run2, (fresh_epoch, _, _, stop2) = setup(pool)
        want, _ = fresh_epoch(run2.state, run2.l2, 1, run2.epoch_key(1))
        stop2()
    assert _leaves_equal(again.params, want.params)
    assert not _leaves_equal(again.params, first.params)


def test_sweep_takes_the_number_of_configurations_from_keys():
    """Shared start, one optimizer, C keys: C runs (not a refusal for want of configs)."""
    keys = jax.random.split(jax.random.key(2), 3)
    params = train.sweep(NET, NET.init(jax.random.key(0)), (X, Y), optimizer=optax.sgd(0.1), epochs=1,
                         batch_size=10, keys=keys, evaluation=train.Evaluation(train=False)).params
    W = np.asarray(jax.tree.leaves(params)[0])
    assert W.shape[0] == 3 and not np.allclose(W[0], W[1])   # other batch orders, other weights


def test_sweep_refuses_keys_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"configs\['lr'\] has 2, keys has 3"):
        train.sweep(NET, NET.init(jax.random.key(0)), (X, Y), optimizer=train.sgd(0.1),
                    configs={"lr": [0.1, 0.2]}, epochs=1, batch_size=10,
                    keys=jax.random.split(jax.random.key(0), 3))
    with pytest.raises(ValueError, match="keys must be a 1-D array of typed PRNG keys"):
        train.sweep(NET, NET.init(jax.random.key(0)), (X, Y), optimizer=train.sgd(0.1), epochs=1,
                    batch_size=10, keys=jnp.zeros((3, 2), jnp.uint32))


def test_sweep_with_an_optimizer_over_seeds_equals_separate_fits(x64):
    Xd = X.astype(np.float64)
    inits = jax.vmap(lambda k: NET.init(k, jnp.float64))(jax.random.split(jax.random.key(0), 3))
    params = train.sweep(NET, inits, (Xd, Y), optimizer=optax.adam(1e-2), epochs=2,
                         batch_size=10, key=jax.random.key(4), val=(Xd, Y)).params
    for c in range(3):
        r = train.fit(NET, jax.tree.map(lambda v: v[c], inits), (Xd, Y), optimizer=optax.adam(1e-2),
                      epochs=2, batch_size=10, key=jax.random.key(4), progress=False)
        chex.assert_trees_all_close(r.final_params, jax.tree.map(lambda v: v[c], params),
                                    rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- samplers

def _window_sampler(steps):
    """Batches of random rows of (X, Y), drawn inside the compiled epoch."""
    def sample(key, batch_size, Xs, Ys):
        i = jax.random.randint(key, (batch_size,), 0, len(Xs))
        return Xs[i], Ys[i]
    return train.Sampler(sample, steps, (jnp.asarray(X), jnp.asarray(Y)))


def test_sampler_epochs_draw_from_the_documented_keys():
    """Epoch e's step s samples with ``split(fold_in(key, e), steps)[s]``: fit equals the loop
    written out with those keys (float32; same ops, rtol 1e-6 for jit vs op-by-op)."""
    src, p0, key = _window_sampler(6), NET.init(jax.random.key(1)), jax.random.key(7)
    res = train.fit(NET, p0, src, epochs=2, batch_size=8, optimizer=train.sgd(0.3), key=key, progress=False,
                    val=_window_sampler(1), evaluation=train.Evaluation(sampled_batches=5))
    p = p0
    for e in range(2):
        for k in jax.random.split(jax.random.fold_in(key, e), 6):
            _, g = NET.backprop(p, *src.sample(k, 8, *src.data))
            p = jax.tree.map(lambda w, d: w - 0.3 * d, p, g)
    chex.assert_trees_all_close(res.final_params, p, rtol=1e-6, atol=1e-7)
    assert res.history["updates"] == [6, 12] and len(res.history["step_loss"][1]) == 6
    assert res.history["val_acc"] == [None, None] and np.isfinite(res.history["val_loss"]).all()


def test_sampled_validation_loss_is_the_mean_over_eval_batches():
    src = _window_sampler(1)
    p = NET.init(jax.random.key(1))
    ev = jax.jit(engine._make_sampled_evaluate(NET, src, 8, 4))
    keys = jax.random.split(jax.random.key(3), 4)
    want = np.mean([float(NET.loss(p, *src.sample(k, 8, *src.data))) for k in keys])
    np.testing.assert_allclose(float(ev(p, jax.random.key(3), *src.data)[0]), want, rtol=1e-6)


class _TokenModel(NamedTuple):
    """A stand-in token model: int tokens (N, 2) -> one-hot sum -> the MLP; optionally stochastic
    (a key-driven input dropout), to check that the engine passes integer x and per-step keys."""
    init: Any
    apply: Any
    loss: Any
    backprop: Any
    grad_autodiff: Any
    predict: Any
    head: Any
    in_shape: tuple
    out_shape: tuple
    name: str
    input_dtype: str
    stochastic: bool


def _token_model(stochastic):
    def embed(x, key):
        assert jnp.issubdtype(x.dtype, jnp.integer), x.dtype   # the engine kept x integer
        h = jax.nn.one_hot(x, 6, dtype=jnp.float32).sum(axis=1)
        if key is not None:
            h = h * jax.random.bernoulli(key, 0.7, h.shape).astype(h.dtype)
        return h

    def loss(p, x, y, l2=0.0, mask=None, key=None):
        return NET.loss(p, embed(x, key), y, l2, mask)

    def backprop(p, x, y, l2=0.0, mask=None, key=None):
        return NET.backprop(p, embed(x, key), y, l2, mask)
    return _TokenModel(NET.init, lambda p, x, key=None: NET.apply(p, embed(x, key)), loss, backprop,
                       backprop, lambda p, x: NET.predict(p, embed(x, None)), NET.head, (2,), (3,),
                       "tokens", "int", stochastic)


@pytest.mark.parametrize("stochastic", [False, True])
def test_int_inputs_and_per_step_keys_for_stochastic_models(stochastic):
    rng = np.random.default_rng(0)
    T = rng.integers(0, 6, (60, 2)).astype(np.int32)
    L = (T.sum(axis=1) % 3).astype(np.int32)
    net = _token_model(stochastic)
    kw = dict(epochs=2, batch_size=10, optimizer=train.sgd(0.3), progress=False, val=(T, L))
    runs = [train.fit(net, net.init(jax.random.key(0)), (T, L), key=jax.random.key(k), **kw)
            for k in (1, 1, 2)]
    assert _leaves_equal(runs[0].final_params, runs[1].final_params)       # keys are explicit
    assert runs[0].history["val_acc"][-1] is not None
    if stochastic:   # the dropout draws come from fit's key: another key, another trajectory
        p_other = train.fit(net, net.init(jax.random.key(0)), (T, L), key=jax.random.key(1),
                            order="fixed", **kw).final_params
        p_det = train.fit(_token_model(False), net.init(jax.random.key(0)), (T, L),
                          key=jax.random.key(1), order="fixed", **kw).final_params
        assert not _leaves_equal(p_other, p_det)


def test_early_stopping_on_a_sampled_validation_set_uses_its_loss():
    res = train.fit(NET, NET.init(jax.random.key(1)), _window_sampler(4), epochs=60, batch_size=8,
                    optimizer=optax.sgd(2.0), key=jax.random.key(3), val=_window_sampler(1),
                    evaluation=train.Evaluation(train=False, sampled_batches=3),
                    early_stopping=train.EarlyStopping(2), progress=False)
    losses = res.history["val_loss"]
    assert res.stopped_early and len(losses) < 60
    assert res.best_epoch == int(np.argmin(losses)) + 1 and len(losses) == res.best_epoch + 2


@pytest.mark.parametrize("every", [1, 2])
def test_resume_of_a_run_that_stopped_early_trains_no_more(tmp_path, every):
    """A checkpoint written at the epoch whose patience ran out (saved before the check) resumes
    to the same stopped run: the same history, params, best epoch and stopped_early, no epoch
    more (every=2: the stopping epoch may not be a checkpoint epoch; then the resumed run trains
    the missing epochs and stops where the uninterrupted one did)."""
    p0 = NET.init(jax.random.key(1))
    kw = dict(batch_size=7, optimizer=train.sgd(0.3, momentum=0.9), order="shuffle",
              key=jax.random.key(5), val=(X, Y), early_stopping=train.EarlyStopping(1), progress=False)
    full = train.fit(NET, p0, (X, Y), epochs=40, **kw)
    assert full.stopped_early and len(full.history["epoch"]) < 40   # the case under test
    path = tmp_path / "run.ckpt.npz"
    train.fit(NET, p0, (X, Y), epochs=40, checkpoint=train.Checkpointing(path, every=every), **kw)
    resumed = train.fit(NET, p0, (X, Y), epochs=40, checkpoint=train.Checkpointing(path, every=every, resume=True),
                        **kw)
    assert resumed.stopped_early
    assert resumed.history["epoch"] == full.history["epoch"]
    assert resumed.history["val_acc"] == full.history["val_acc"]
    assert resumed.best_epoch == full.best_epoch
    assert _leaves_equal(full.final_params, resumed.final_params)
    assert _leaves_equal(full.params, resumed.params)


def test_an_optimizer_that_reads_the_loss_gets_the_minibatch_loss():
    """optax.polyak_sgd's step is (loss − f_min)/‖g‖²: fit passes each minibatch's loss as value=,
    so it trains like the plain loop that passes it by hand (order "fixed", one batch per epoch)."""
    with jax.enable_x64(True):
        p0 = NET.init(jax.random.key(1), jnp.float64)
        X64 = X.astype(np.float64)
        opt = optax.polyak_sgd(max_learning_rate=0.5)
        res = train.fit(NET, p0, (X64, Y), epochs=3, batch_size=len(X), optimizer=opt, order="fixed",
                        grad="autodiff", progress=False)
        p, s = p0, opt.init(p0)
        for _ in range(3):
            loss, g = jax.value_and_grad(lambda q: NET.loss(q, jnp.asarray(X64), jnp.asarray(Y)))(p)
            u, s = opt.update(g, s, p, value=loss)
            p = optax.apply_updates(p, u)
        chex.assert_trees_all_close(res.final_params, p, rtol=1e-12, atol=1e-12)   # float64
        assert not _leaves_equal(res.final_params, p0)


def test_an_optimizer_needing_more_than_the_step_has_is_refused_before_training():
    with pytest.raises(ValueError, match=r"fit\(mlp6-8-3\): the optimizer's update cannot run on .*value_fn"):
        train.fit(NET, NET.init(jax.random.key(1)), (X, Y), epochs=1, batch_size=7,
                  optimizer=optax.lbfgs(), progress=False)
    with pytest.raises(ValueError, match=r"sweep\(mlp6-8-3\): the optimizer's update cannot run on .*value_fn"):
        train.sweep(NET, NET.init(jax.random.key(1)), (X, Y), epochs=1, batch_size=7, optimizer=optax.lbfgs(),
                    keys=jax.random.split(jax.random.key(2), 2), progress=False)


@pytest.mark.parametrize("grads,finite", [
    ({"w": jnp.ones(100, jnp.float32)}, True),
    ({"w": jnp.ones(100, jnp.float32).at[3].set(jnp.nan)}, False),
    ({"w": jnp.ones(100, jnp.float32).at[3].set(-jnp.inf)}, False),
    # every entry finite, their float32 sum past 3.4e38: flagged, as the message says
    ({"w": jnp.full(100, 1e37, jnp.float32)}, False),
])
def test_the_step_check_is_one_sum_per_leaf(grads, finite):
    assert bool(engine._finite(jnp.float32(1.0), grads)) is finite
    assert "add up past the float range" in engine._divergence(
        engine._Run(NET, "fit", None, {}, None, None, None, 1, None), {"lr": [0.1]}, 0, 3, 0.1).message


def test_an_extra_args_optimizer_without_extra_args_still_trains():
    """optax asks an extra-args transformation's update to take ``**extra_args``; one written
    without them (it trained before fit passed value=) gets the plain call."""
    inner = optax.sgd(0.1)
    opt = optax.GradientTransformationExtraArgs(inner.init, lambda g, s, p=None: inner.update(g, s, p))
    res = train.fit(NET, NET.init(jax.random.key(1)), (X, Y), epochs=1, batch_size=7, optimizer=opt, progress=False)
    ref = train.fit(NET, NET.init(jax.random.key(1)), (X, Y), epochs=1, batch_size=7, optimizer=inner, progress=False)
    assert _leaves_equal(res.final_params, ref.final_params)


@pytest.mark.parametrize("way,tol", [(None, 0.0), (dict(), 1e-10), (dict(vmap=False, workers=2), 0.0)],
                         ids=["fit", "sweep-vmap", "sweep-threads"])
def test_fresh_sampled_evaluation_draws_new_batches_each_epoch(x64, way, tol):
    """``Evaluation(fresh=True)`` (doc 003's estimate_loss): a sampled set is scored on batches
    drawn anew at each evaluation, epoch e's from ``fold_in(key, e)`` (0: the starting params);
    without it the same batches every epoch. lr 0 keeps the params still, so any change is the
    batches'. fit, the vmapped and the threaded sweep agree (float64; vmap rtol 1e-10)."""
    Xd = X.astype(np.float64)
    data = train.Sampler(lambda k, b, x, y: tuple(a[jax.random.randint(k, (b,), 0, len(y))] for a in (x, y)),
                         2, (Xd, Y))
    key, p0 = jax.random.key(3), NET.init(jax.random.key(1), jnp.float64)

    def run(fresh):
        ev = train.Evaluation(train=False, sampled_batches=3, initial=True, fresh=fresh)
        kw = dict(optimizer=train.sgd(0.0), epochs=3, batch_size=10, val=data, evaluation=ev)
        if way is None:
            h = train.fit(NET, p0, data, key=key, progress=False, **kw).history
            return [h["initial_val_loss"]] + h["val_loss"]
        keys = jnp.concatenate([key[None], jax.random.key(9)[None]])   # a second config beside (overlapped jobs)
        h = train.sweep(NET, jax.tree.map(lambda v: jnp.stack([v, v]), p0), data, key=key, keys=keys, **kw,
                        **way).history
        return [float(h["initial_val_loss"][0])] + [float(v[0]) for v in h["val_loss"]]
    fixed, fresh = run(False), run(True)
    assert len(set(fixed)) == 1                        # the same batches every time
    assert len(set(fresh)) == 4                        # new ones at each evaluation
    ev = engine._make_sampled_evaluate(NET, data, 10, 3)
    want = [float(ev(p0, jax.random.fold_in(jax.random.split(jax.random.fold_in(key, e))[1], 0),
                     *map(jnp.asarray, data.data))[0]) for e in range(4)]
    np.testing.assert_allclose(fresh, want, rtol=max(tol, 1e-15), atol=0)
