"""Checkpoints and the atomic writer under attack: corrupt, truncated, bit-flipped and foreign files
are refused with a CheckpointError naming the file (also through fit(resume=True)); a resume of a
different run is refused; killed and terminated writers leave nothing behind. Kills run in
subprocesses with bounded timeouts. float32."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import _io, models, train
from jaxnets.train import checkpoint
from jaxnets.train.checkpoint import CheckpointError

NET = models.mlp([6, 8, 3], "tanh", "softmax_cross_entropy")
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 6)).astype(np.float32)
Y = rng.integers(0, 3, 60).astype(np.int32)
TREE = {"w": jnp.arange(1000.0, dtype=jnp.float32), "k": jax.random.key(3), "n": [jnp.ones((2, 3))]}
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _flip(offset_frac):
    def f(b):
        b = bytearray(b)
        b[int(len(b) * offset_frac)] ^= 0x10
        return bytes(b)
    return f


CORRUPTIONS = {
    "empty file": lambda b: b"",
    "truncated to half": lambda b: b[: len(b) // 2],
    "truncated by 10 bytes": lambda b: b[:-10],
    "bit flip in the array data": _flip(0.5),
    "bit flip in the zip directory": _flip(0.97),
    "random bytes": lambda b: np.random.default_rng(1).bytes(len(b)),
    "a text file": lambda b: b"hello, not a checkpoint\n",
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path, name):
    path = tmp_path / "c.npz"
    checkpoint.save(path, TREE, {"epoch": 1})
    path.write_bytes(CORRUPTIONS[name](path.read_bytes()))
    with pytest.raises(CheckpointError, match=str(path)):
        checkpoint.load(path, TREE)


def test_no_single_bit_flip_loads_wrong_values(tmp_path):
    """A flip anywhere (every 97th byte, incl. the zip headers): either CheckpointError, or the
    loaded tree equals the saved one exactly (a flip in a field nothing reads, e.g. a timestamp)."""
    path = tmp_path / "c.npz"
    checkpoint.save(path, TREE, {"epoch": 1})
    good = path.read_bytes()
    refused = 0
    for off in range(0, len(good), 97):
        b = bytearray(good)
        b[off] ^= 0x04
        path.write_bytes(bytes(b))
        try:
            tree, meta = checkpoint.load(path, TREE)
        except CheckpointError as e:
            assert str(path) in str(e)
            refused += 1
            continue
        assert meta == {"epoch": 1} and np.array_equal(tree["w"], TREE["w"])
        assert np.array_equal(tree["n"][0], TREE["n"][0])
        assert np.array_equal(jax.random.key_data(tree["k"]), jax.random.key_data(TREE["k"]))
    assert refused > 0.8 * (len(good) // 97)


def test_a_foreign_npz_without_the_tree_record_is_refused(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, leaf_00000=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a jaxnets checkpoint"):
        checkpoint.load(path, {"a": jnp.zeros(3)})


@pytest.mark.parametrize("template,match", [
    ([jnp.zeros(1000), jax.random.key(0), [jnp.ones((2, 3))]], "tree structure"),      # list for dict
    ({"w": jnp.zeros(1000), "k": jax.random.key(0), "m": [jnp.ones((2, 3))]}, "tree structure"),
    ({"w": jnp.zeros(999), "k": jax.random.key(0), "n": [jnp.ones((2, 3))]}, r"\['w'\] is float32\(1000,\).*expected float32\(999,\)"),
    ({"w": jnp.zeros(1000, jnp.int32), "k": jax.random.key(0), "n": [jnp.ones((2, 3))]}, "int32"),
    ({"w": jnp.zeros(1000), "k": jax.random.key(0), "n": [jnp.ones((3, 2))]}, r"\(3, 2\)"),
])
def test_tree_structure_shapes_and_dtypes_are_checked(tmp_path, template, match):
    path = tmp_path / "c.npz"
    checkpoint.save(path, TREE)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load(path, template)


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, TREE, {"epoch": 3})
    tree, meta = checkpoint.load(path, TREE)
    assert meta == {"epoch": 3}
    assert np.array_equal(tree["w"], TREE["w"]) and np.array_equal(tree["n"][0], TREE["n"][0])
    assert np.array_equal(jax.random.key_data(tree["k"]), jax.random.key_data(TREE["k"]))


KW = dict(epochs=2, batch_size=6, optimizer=train.sgd(0.1), key=jax.random.key(1), progress=False)


def _cp(path, resume=False):
    return train.Checkpointing(path, resume=resume)


def test_fit_resume_from_a_corrupt_checkpoint_raises_checkpoint_error(tmp_path):
    path = tmp_path / "run.npz"
    train.fit(NET, NET.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path), **KW)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=str(path)):
        train.fit(NET, NET.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path, True),
                  **dict(KW, epochs=3))


X2 = X.copy()
X2[17, 3] += 1.0
RELU = models.mlp([6, 5, 3], "relu", "softmax_cross_entropy")


@pytest.mark.parametrize("change,label", [
    (dict(optimizer=train.sgd(0.2)), "optimizer"),
    (dict(optimizer=train.sgd(0.1, momentum=0.5)), "optimizer"),
    (dict(optimizer=train.sgd(0.1, lr_decay=0.9)), "optimizer"),
    (dict(l2=1e-3), "l2"),
    (dict(batch_size=5), "batch_size"),
    (dict(order="fixed"), "order"),
    (dict(data=(X2, Y)), "training data"),
    (dict(data=(X[:54], Y[:54])), "training data"),
    (dict(optimizer=optax.adam(1e-3)), "optimizer"),
    (dict(val=(X[:20], Y[:20])), "validation/test sets"),
    (dict(evaluation=train.Evaluation(test=(X[:20], Y[:20]))), "validation/test sets"),
    # the model: same shapes, other activation or loss head (doc 003's heads)
    (dict(model=models.mlp([6, 5, 3], "tanh", "softmax_cross_entropy")), "model"),
    (dict(model=models.mlp([6, 5, 3], "relu", "mse")), "model"),
    (dict(grad="autodiff"), "grad"),
    (dict(max_updates=25), "max_updates"),
    (dict(key=jax.random.key(2)), "key"),
    # how each epoch is scored: a resumed history must hold the same entries, scored alike
    (dict(evaluation=train.Evaluation(train=False)), "evaluation settings"),
    (dict(evaluation=train.Evaluation(batch_size=7)), "evaluation settings"),
    (dict(evaluation=train.Evaluation(initial=True)), "evaluation settings"),
    (dict(early_stopping=train.EarlyStopping(1)), "early_stopping"),
])
def test_resume_of_a_different_run_is_refused(tmp_path, change, label):
    path = tmp_path / "run.npz"
    train.fit(RELU, RELU.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path), val=(X[:30], Y[:30]), **KW)
    kw = dict(KW, epochs=3, val=(X[:30], Y[:30]))
    data, model = change.pop("data", (X, Y)), change.pop("model", RELU)
    kw.update(change)
    with pytest.raises(CheckpointError, match=f"different {label}"):
        train.fit(model, RELU.init(jax.random.key(0)), data, checkpoint=_cp(path, True), **kw)
    # the same run resumes
    r = train.fit(RELU, RELU.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path, True),
                  **dict(KW, epochs=3, val=(X[:30], Y[:30])))
    assert r.history["epoch"] == [1, 2, 3]


def test_resume_with_a_changed_optax_hyperparameter_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    kw = dict(KW)
    del kw["optimizer"]
    train.fit(NET, NET.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path),
              optimizer=optax.adamw(1e-3), **kw)
    r = train.fit(NET, NET.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path, True),
                  optimizer=optax.adamw(1e-3), **dict(kw, epochs=3))   # same: resumes
    assert r.history["epoch"] == [1, 2, 3]
    with pytest.raises(CheckpointError, match="different optimizer"):
        train.fit(NET, NET.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path, True),
                  optimizer=optax.adamw(2e-3), **dict(kw, epochs=4))


def test_missing_checkpoint_refused_unless_if_exists(tmp_path):
    path = tmp_path / "nothing.npz"
    with pytest.raises(CheckpointError, match="does not exist"):
        train.fit(NET, NET.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path, True), **KW)
    fresh = train.fit(NET, NET.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path, "if_exists"), **KW)
    plain = train.fit(NET, NET.init(jax.random.key(0)), (X, Y), **KW)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fresh.final_params),
                                                    jax.tree.leaves(plain.final_params)))
    assert path.exists()


# ----------------------------------------------------------------------------- killed writers

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from jaxnets.train import checkpoint
    path = sys.argv[1]
    i = 0
    while True:
        checkpoint.save(path, {"w": np.full((3_000_000,), float(i))}, {"i": i})
        print(i, flush=True)
        i += 1
""")


@pytest.mark.e2e(cpu=8)
def test_killed_writers_leave_no_pile_of_temporary_files(tmp_path):
    """Five writers SIGKILLed mid-loop: each new write removes the dead writers' temporaries, so
    at most the last one's remains, and the next write leaves none."""
    path = tmp_path / "big.npz"
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                                text=True, env=ENV)
        try:
            assert proc.stdout.readline().strip().isdigit()
            time.sleep(0.3)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert len([p for p in os.listdir(tmp_path) if p.endswith(".part")]) <= 1
    checkpoint.save(path, {"w": np.zeros(3)})
    assert os.listdir(tmp_path) == ["big.npz"]


def test_temporary_files_of_live_writers_are_kept(tmp_path):
    path = tmp_path / "f.bin"
    live = tmp_path / f".f.bin.{os.getppid()}.abc.part"   # our parent is alive
    live.write_bytes(b"x")
    with _io.atomic_write(path) as f:
        f.write(b"new")
    assert live.exists() and path.read_bytes() == b"new"


TERM_WRITER = textwrap.dedent("""
    import sys, time
    from jaxnets._io import atomic_write
    with atomic_write(sys.argv[1]) as f:
        f.write(b"x" * 1000)
        print("writing", flush=True)
        time.sleep(60)
""")


@pytest.mark.parametrize("handler", ["default", "python"])
def test_sigterm_during_an_atomic_write_leaves_nothing(tmp_path, handler):
    """Default SIGTERM disposition: the process still dies by SIGTERM; a Python handler (here one
    that exits with 143) still runs. Either way, no temporary file and no destination."""
    path = tmp_path / "out.bin"
    prelude = ("import signal, sys\nsignal.signal(signal.SIGTERM, lambda s, f: sys.exit(143))\n"
               if handler == "python" else "")
    proc = subprocess.Popen([sys.executable, "-c", prelude + TERM_WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert rc == (-signal.SIGTERM if handler == "default" else 143)
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # this process untouched


def test_the_previous_sigterm_handler_is_restored(tmp_path):
    seen = []
    prev = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with _io.atomic_write(tmp_path / "a.txt", "w") as f:
            f.write("ok")
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, prev)


def test_a_checkpoint_resumes_in_another_process(tmp_path):
    """The fingerprint (the model's loss-jaxpr digest, the optimizer's hyperparameters, the data's
    CRC-32) is the same in a fresh interpreter: a checkpoint written by one process resumes in
    another, equal bit for bit to an uninterrupted run."""
    path = tmp_path / "run.npz"
    script = textwrap.dedent(f"""
        import jax, numpy as np
        from jaxnets import models, train
        rng = np.random.default_rng(0)
        X = rng.normal(size=(60, 6)).astype(np.float32); Y = rng.integers(0, 3, 60).astype(np.int32)
        net = models.mlp([6, 5, 3], "relu", "softmax_cross_entropy")
        train.fit(net, net.init(jax.random.key(0)), (X, Y), epochs=2, batch_size=6, val=(X[:30], Y[:30]),
                  optimizer=train.sgd(0.1, momentum=0.9, lr_decay=0.9), key=jax.random.key(1), progress=False,
                  checkpoint=train.Checkpointing({str(path)!r}))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    kw = dict(KW, epochs=3, val=(X[:30], Y[:30]), optimizer=train.sgd(0.1, momentum=0.9, lr_decay=0.9))
    resumed = train.fit(RELU, RELU.init(jax.random.key(0)), (X, Y), checkpoint=_cp(path, True), **kw)
    full = train.fit(RELU, RELU.init(jax.random.key(0)), (X, Y), **kw)
    assert resumed.history["val_loss"] == full.history["val_loss"]
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed.final_params),
                                                    jax.tree.leaves(full.final_params)))


def _rows_sample(key, batch_size, xs, ys):
    i = jax.random.randint(key, (batch_size,), 0, len(xs))
    return xs[i], ys[i]


def _rows_sample_shifted(key, batch_size, xs, ys):   # another sampling rule over the same arrays
    i = jax.random.randint(key, (batch_size,), 0, len(xs) - 1) + 1
    return xs[i], ys[i]


@pytest.mark.parametrize("other,why", [
    (train.Sampler(_rows_sample, 4, (jnp.asarray(X).at[17, 2].add(1.0), jnp.asarray(Y))), "one value of the corpus"),
    (train.Sampler(_rows_sample, 4, (jnp.asarray(X), jnp.asarray(Y).at[5].set((Y[5] + 1) % 3))), "one target"),
    (train.Sampler(_rows_sample_shifted, 4, (jnp.asarray(X), jnp.asarray(Y))), "another sample function"),
    (train.Sampler(_rows_sample, 5, (jnp.asarray(X), jnp.asarray(Y))), "steps_per_epoch"),
])
def test_resume_of_a_sampler_run_on_other_data_is_refused(tmp_path, other, why):
    """A Sampler's corpus, sampling rule and steps are part of the run: a resume that differs in
    any of them (``why``) is refused; the same Sampler resumes."""
    path = tmp_path / "run.npz"
    same = train.Sampler(_rows_sample, 4, (jnp.asarray(X), jnp.asarray(Y)))
    train.fit(NET, NET.init(jax.random.key(0)), same, checkpoint=_cp(path), **KW)
    with pytest.raises(CheckpointError, match="different training data"):
        train.fit(NET, NET.init(jax.random.key(0)), other, checkpoint=_cp(path, True), **dict(KW, epochs=3))
    r = train.fit(NET, NET.init(jax.random.key(0)), same, checkpoint=_cp(path, True), **dict(KW, epochs=3))
    assert r.history["epoch"] == [1, 2, 3]
