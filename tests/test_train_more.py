"""Three holes a tester found in the engine, closed, and one contract sentence:

1. float targets of a cross-entropy head must be probability rows (entries >= 0, rows summing to 1
   within ``inputs.probability_tolerance``), refused for train/val/test/evaluate data naming the
   argument, the first bad row and what is wrong; a regression head keeps any finite target; the
   check runs once per data set and call, on the host;
2. a resume with another ``key`` is refused like any other mismatch (old checkpoints without the
   key's fingerprint are judged by the key they store);
3. a Layer whose parts cannot be called as the contract calls them (``forward(params, x)``
   without ``key``) is refused by ``serial``/``residual``/``sequential`` in the contract's words,
   naming the layer;
4. the Layer docstring says a layer with weights must declare ``decay`` (else no L2 penalty).
float32 unless said."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import models, train
from jaxnets.errors import CheckpointError, DataError
from jaxnets.nn import layers as L
from jaxnets.nn import losses
from jaxnets.train import inputs

K = 3
NET = models.mlp([6, 8, K], "tanh", "softmax_cross_entropy")
MSE = models.mlp([6, 8, K], "tanh", "mse")
HALF = models.mlp([6, 8, K], "tanh", "half_sse")
rng = np.random.default_rng(0)
X = rng.normal(size=(40, 6)).astype(np.float32)
Y = (np.arange(40) % K).astype(np.int32)
OH = np.eye(K, dtype=np.float32)[Y]
BASE = dict(epochs=1, batch_size=10, optimizer=train.sgd(0.1), progress=False)


def _fit(net, data, **kw):
    return train.fit(net, net.init(jax.random.key(0)), data, **dict(BASE, **kw))


def _with_row(t, i, row):
    t = np.array(t)
    t[i] = row
    return t


# ----------------------------------------------------------------------------- 1. float targets

#: (targets, the first bad row, what the message says about it)
BAD_TARGETS = {
    "minus one-hot": (-OH, 0, r"has a negative entry \(-1 in column 0\)"),
    "two times one-hot": (2 * OH, 0, r"sums to 2, not 1"),
    "raw scores": (rng.normal(size=(40, K)).astype(np.float32), None, r"(has a negative entry|sums to)"),
    "one row off by 1%": (_with_row(OH, 7, [1.01, 0, 0]), 7, r"sums to 1.0\d*, not 1"),
    "a negative entry in a row summing to 1": (_with_row(OH, 12, [1.5, -0.5, 0]), 12,
                                               r"has a negative entry \(-0.5 in column 1\)"),
    "a zero row": (_with_row(OH, 39, [0, 0, 0]), 39, r"sums to 0, not 1"),
    "float32 row 2e-5 above 1": (_with_row(OH, 3, [1 + 2e-5, 0, 0]), 3, r"sums to 1.00002"),
    "float16 row 1% above 1": (_with_row(OH, 5, [0.5, 0.51, 0]).astype(np.float16), 5, r"sums to 1.0"),
}

#: float targets that are probability rows (tolerance: 1e-5 for float32/64, 8 ulps for float16)
GOOD_TARGETS = {
    "one-hot float32": OH,
    "one-hot float64": OH.astype(np.float64),
    "label smoothing": (0.9 * OH + 0.1 / K).astype(np.float32),
    "dirichlet rows in float32": rng.dirichlet(np.ones(K), 40).astype(np.float32),
    "float32 row 5e-6 above 1": _with_row(OH, 3, [1 + 5e-6, 0, 0]),
    "float16 thirds (sum 0.99976)": np.full((40, K), 1 / 3, np.float16),
}


def _where(argument):
    """How each data argument is named in the message, and how to pass bad targets there."""
    return {
        "train": (r"fit\(mlp6-8-3\): train labels", lambda t: _fit(NET, (X, t))),
        "val": (r"fit\(mlp6-8-3\): val labels", lambda t: _fit(NET, (X, Y), val=(X, t))),
        "test": (r"fit\(mlp6-8-3\): test labels",
                 lambda t: _fit(NET, (X, Y), evaluation=train.Evaluation(test=(X, t)))),
        "evaluate": (r"evaluate: data labels",
                     lambda t: train.evaluate(NET, NET.init(jax.random.key(0)), (X, t))),
        "sweep": (r"sweep\(mlp6-8-3\): train labels",
                  lambda t: train.sweep(NET, NET.init(jax.random.key(0)), (X, t), epochs=1, batch_size=10,
                                        optimizer=train.sgd(0.1, momentum=0.0), configs={"lr": [0.1, 0.2]})),
    }[argument]


@pytest.mark.parametrize("argument", ["train", "val", "test", "evaluate", "sweep"])
@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_cross_entropy_refuses_float_targets_that_are_not_distributions(argument, case):
    targets, row, what = BAD_TARGETS[case]
    name, call = _where(argument)
    row_re = r"row \d+" if row is None else rf"row {row}\b"
    with pytest.raises(DataError, match=rf"{name}: float targets for mlp6-8-3's cross-entropy head must be "
                                        rf"probability rows \(every entry >= 0, each row summing to 1 within "
                                        rf"[0-9.e-]+\); {row_re} {what}"):
        call(targets)


def test_the_message_counts_the_bad_rows_and_says_what_to_give():
    t = _with_row(_with_row(OH, 4, [0.2, 0.2, 0.2]), 9, [0.5, 0.6, 0.0])
    with pytest.raises(DataError) as e:
        _fit(NET, (X, t))
    msg = str(e.value)
    assert "row 4 sums to 0.6" in msg and "[0.2, 0.2, 0.2]" in msg
    assert "(2 of 40 rows are not distributions)" in msg
    assert "integer class labels of shape (40,) in [0, 3)" in msg and "within 1e-05" in msg


@pytest.mark.parametrize("case", list(GOOD_TARGETS))
def test_cross_entropy_accepts_probability_rows(case):
    t = GOOD_TARGETS[case]
    r = _fit(NET, (X, t), val=(X, t), evaluation=train.Evaluation(test=(X, t)))
    assert np.isfinite(r.history["train_loss"][-1]) and r.history["train_loss"][-1] > 0
    loss, acc = train.evaluate(NET, r.params, (X, t))
    assert loss > 0 and 0 <= acc <= 1


def test_one_hot_float_targets_train_exactly_as_integer_labels():
    a, b = _fit(NET, (X, Y), epochs=2), _fit(NET, (X, OH), epochs=2)
    assert a.history["train_loss"] == b.history["train_loss"]
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))


@pytest.mark.parametrize("net", [MSE, HALF], ids=["mse", "half_sse"])
@pytest.mark.parametrize("case", ["minus one-hot", "two times one-hot", "raw scores", "a zero row"])
def test_a_regression_head_keeps_any_finite_float_target(net, case):
    t = BAD_TARGETS[case][0]
    r = _fit(net, (X, t), val=(X, t))
    assert np.isfinite(r.history["train_loss"][-1])
    assert np.isfinite(train.evaluate(net, r.params, (X, t))[0])


@pytest.mark.parametrize("head,kind", [
    (losses.LOSSES["softmax_cross_entropy"], "probabilities"),
    (losses.LOSSES["token_cross_entropy"], "probabilities"),
    (losses.LOSSES["mse"], "real"),
    (losses.LOSSES["half_sse"], "real"),
    (losses.LOSSES["logistic"], "real"),
    # a head built without saying it: inferred from its forward
    (losses.Loss(losses.softmax_cross_entropy_forward, losses.softmax_cross_entropy_backward,
                 losses.argmax_predict), "probabilities"),
    (losses.Loss(losses.mse_forward, losses.mse_backward, losses.argmax_predict), "real"),
    # ... or said explicitly, which wins
    (losses.Loss(losses.softmax_cross_entropy_forward, losses.softmax_cross_entropy_backward,
                 losses.argmax_predict, targets="real"), "real"),
])
def test_target_kind_of_each_head(head, kind):
    assert losses.target_kind(head) == kind


def test_an_unknown_target_kind_is_refused():
    with pytest.raises(ValueError, match=r"targets must be one of \('probabilities', 'real'\)"):
        losses.target_kind(losses.LOSSES["mse"]._replace(targets="logits"))


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-5), (np.float32, 1e-5), (np.float16, 8 * 2.0 ** -10)])
def test_the_tolerance_is_the_stated_one(dtype, tol):
    assert inputs.probability_tolerance(dtype) == tol


def test_the_probability_check_runs_once_per_data_set_and_call_not_per_step(monkeypatch):
    calls = []
    real = inputs._check_probabilities
    monkeypatch.setattr(inputs, "_check_probabilities", lambda *a: calls.append(a[1]) or real(*a))
    _fit(NET, (X, OH), val=(X, OH), epochs=3, batch_size=4)   # 30 steps, 3 evaluations of each set
    assert calls == ["fit(mlp6-8-3): train labels", "fit(mlp6-8-3): val labels"]


# ----------------------------------------------------------------------------- 2. resume with another key

def _cp(path, resume=False):
    return train.Checkpointing(path, resume=resume)


KW = dict(epochs=2, batch_size=6, optimizer=train.sgd(0.1), order="shuffle", progress=False)


def _drop_key_fingerprint(path):
    """Rewrite the checkpoint as one written before the key's fingerprint was recorded."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["__meta__"]))
    del meta["fingerprint"]["key"]
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("old_format", [False, True], ids=["with key fingerprint", "older checkpoint"])
@pytest.mark.parametrize("other_key,refused", [
    (jax.random.key(99), True),
    (jax.random.key(2), True),
    (None, True),                              # the default key(0)
    (jax.random.PRNGKey(99), True),            # a raw key, wrapped
    (jax.random.key(1), False),                # the same key resumes
    (jax.random.PRNGKey(1), False),            # ... also given raw
])
def test_a_resume_with_another_key_is_refused(tmp_path, other_key, refused, old_format):
    path = tmp_path / "run.npz"
    p0 = NET.init(jax.random.key(0))
    train.fit(NET, p0, (X, Y), key=jax.random.key(1), checkpoint=_cp(path), **dict(KW, epochs=1))
    if old_format:
        _drop_key_fingerprint(path)
    resume = lambda: train.fit(NET, p0, (X, Y), key=other_key, checkpoint=_cp(path, True), **KW)  # noqa: E731
    if refused:
        with pytest.raises(CheckpointError, match=rf"checkpoint {path}: written by a run with a different key "
                                                  r"\(PRNG implementation and a hash of its key data\); "
                                                  r"refusing to resume"):
            resume()
        return
    resumed = resume()
    full = train.fit(NET, p0, (X, Y), key=jax.random.key(1), **KW)
    assert resumed.history["train_loss"] == full.history["train_loss"]
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed.final_params),
                                                    jax.tree.leaves(full.final_params)))


def _drop_fingerprint_entries(path, names):
    """Rewrite the checkpoint as one written before those fingerprint entries were recorded."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["__meta__"]))
    for name in names:
        del meta["fingerprint"][name]
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("old_format", [False, True], ids=["recorded", "older checkpoint"])
def test_a_resume_with_the_same_scoring_and_early_stopping_is_the_uninterrupted_run(tmp_path, old_format):
    path = tmp_path / "run.npz"
    p0 = NET.init(jax.random.key(0))
    kw = dict(KW, key=jax.random.key(1), val=(X[:30], Y[:30]), early_stopping=train.EarlyStopping(2),
              evaluation=train.Evaluation(batch_size=7, initial=True))
    train.fit(NET, p0, (X, Y), checkpoint=_cp(path), **dict(kw, epochs=1))
    if old_format:
        _drop_fingerprint_entries(path, ["scoring", "early_stopping"])
    resumed = train.fit(NET, p0, (X, Y), checkpoint=_cp(path, True), **dict(kw, epochs=3))
    full = train.fit(NET, p0, (X, Y), **dict(kw, epochs=3))
    assert resumed.history == full.history | {"time": resumed.history["time"]}
    assert resumed.best_epoch == full.best_epoch
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves((resumed.params, resumed.final_params)),
                                                    jax.tree.leaves((full.params, full.final_params))))


def test_the_key_fingerprint_is_a_hash_not_the_key():
    fp = inputs.key_fingerprint(jax.random.key(1))
    assert set(fp) == {"impl", "sha256"} and len(fp["sha256"]) == 16
    assert fp == inputs.key_fingerprint(jax.random.wrap_key_data(jax.random.PRNGKey(1)))
    assert fp != inputs.key_fingerprint(jax.random.key(2))


# ----------------------------------------------------------------------------- 3. the Layer contract

def _init(key, in_shape, dtype=jnp.float32):
    return tuple(in_shape), {}


def _fwd(params, x, key=None):
    return x, None


def _bwd(cache, dy):
    return {}, dy


def _layer(init=_init, forward=_fwd, backward=_bwd):
    return L.Layer(init, forward, backward)


def _no_key(params, x):
    return x, None


def _kw_only_key(params, x, *, key=None):
    return x, None


BAD_LAYERS = {   # (layer, the part refused, the contract's words for it)
    "forward without key": (_layer(forward=_no_key), r"forward _no_key\(params, x\)",
                            r"forward\(params, x, key=None\) -> \(y, cache\)"),
    "forward with a keyword-only key": (_layer(forward=_kw_only_key), r"forward _kw_only_key\(params, x, \*, key=None\)",
                                        r"forward\(params, x, key=None\) -> \(y, cache\)"),
    "lambda forward without key": (_layer(forward=lambda p, x: (x, None)), r"forward .*<lambda>\(p, x\)",
                                   r"forward\(params, x, key=None\)"),
    "init without dtype": (_layer(init=lambda key, in_shape: (in_shape, {})), r"init .*<lambda>\(key, in_shape\)",
                           r"init\(key, in_shape, dtype\) -> \(out_shape, params\)"),
    "backward without dy": (_layer(backward=lambda cache: ({}, None)), r"backward .*<lambda>\(cache\)",
                            r"backward\(cache, dy\) -> \(dparams, dx\)"),
}


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("case", list(BAD_LAYERS))
def test_serial_refuses_a_layer_off_the_contract_naming_it(case, position):
    bad, part, words = BAD_LAYERS[case]
    stack = [L.dense(4), L.activation("tanh")]
    stack.insert(position, bad)
    with pytest.raises(TypeError, match=rf"serial: layer {position} \(of 3\): its {part} does not follow the "
                                        rf"Layer contract {words}"):
        L.serial(*stack)


def test_the_forward_message_says_how_to_fix_it():
    with pytest.raises(TypeError, match=r"add the key parameter, key=None, even where the layer ignores it"):
        L.serial(L.dense(3), _layer(forward=_no_key))


@pytest.mark.parametrize("build,where", [
    (lambda bad: L.residual(bad), r"residual: its layer"),
    (lambda bad: models.sequential(bad, "mse", (3,), name="net"), r"sequential\(net\): the layer"),
])
def test_residual_and_sequential_refuse_it_too(build, where):
    with pytest.raises(TypeError, match=rf"{where}: its forward _no_key\(params, x\) does not follow"):
        build(_layer(forward=_no_key))


@pytest.mark.parametrize("thing,what", [((1, 2, 3), "tuple"), (_fwd, "function"), (None, "NoneType")])
def test_serial_refuses_what_is_not_a_layer(thing, what):
    with pytest.raises(TypeError, match=rf"serial: layer 1 \(of 2\) is a {what}, not a Layer"):
        L.serial(L.dense(3), thing)


GOOD_FORWARDS = {
    "key without a default": lambda p, x, key: (x, None),
    "*args": lambda *a: (a[1], None),
    "a partial": functools.partial(lambda scale, p, x, key=None: (scale * x, None), 2.0),
    "extra keyword with a default": lambda p, x, key=None, train=True: (x, None),
    "a jitted forward": jax.jit(lambda p, x, key=None: (x, None)),
}


@pytest.mark.parametrize("case", list(GOOD_FORWARDS))
def test_forwards_that_take_the_contracts_arguments_are_accepted(case):
    net = models.sequential(L.serial(L.dense(3), _layer(forward=GOOD_FORWARDS[case])), "mse", (4,))
    p = net.init(jax.random.key(0))
    assert net.apply(p, jnp.ones((2, 4))).shape == (2, 3)


def test_a_type_error_inside_a_forward_is_not_relabelled():
    def forward(params, x, key=None):
        return x + "oops", None
    net = models.sequential(L.serial(L.dense(3), _layer(forward=forward)), "mse", (4,))
    with pytest.raises(TypeError) as e:
        net.apply(net.init(jax.random.key(0)), jnp.ones((2, 4)))
    assert "Layer contract" not in str(e.value)


def test_the_testers_layer_is_refused_before_fit():
    """The reported case: the error comes when the model is built, not from inside fit's trace."""
    with pytest.raises(TypeError, match=r"serial: layer 1 \(of 2\): its forward .*Layer contract "
                                        r"forward\(params, x, key=None\) -> \(y, cache\)"):
        models.sequential(L.serial(L.dense(K), _layer(forward=lambda params, x: (x, None))),
                          "softmax_cross_entropy", (6,))


# ----------------------------------------------------------------------------- 4. decay in the docstring

@pytest.mark.parametrize("phrase", ["must declare them in", "``decay``", "no L2 penalty", "refuses ``l2 != 0``"])
def test_the_layer_docstring_says_weights_must_declare_decay(phrase):
    assert phrase in " ".join(L.Layer.__doc__.split())


@pytest.mark.parametrize("decay,penalised", [(L.no_decay, False), (L.decay_keys("W"), True)])
def test_undeclared_weights_get_no_l2_penalty(decay, penalised):
    """What the docstring says, checked: a scale layer's weight reaches the penalty only when its
    decay mask declares it (the dense layer's W is penalised either way)."""
    scale = L.Layer(lambda k, s, d=jnp.float32: (s, {"W": jnp.full(s, 3.0, d)}),
                    lambda p, x, key=None: (x * p["W"], (x, p["W"])),
                    lambda c, dy: ({"W": jnp.sum(dy * c[0], axis=0)}, dy * c[1]), decay=decay)
    net = models.sequential(L.serial(L.dense(K), scale), "softmax_cross_entropy", (6,))
    p = net.init(jax.random.key(0))
    dense_only = 0.1 * float(jnp.sum(p[0]["W"] ** 2))
    extra = float(net.loss(p, X, Y, 0.1)) - float(net.loss(p, X, Y)) - dense_only
    assert extra == pytest.approx(0.1 * 9.0 * K if penalised else 0.0, abs=1e-4)
