"""E3 (doc 003 §3.1–3.4) and E4 (doc 003 §3.5) studies: quick end-to-end runs on tiny subsets,
plus the augmentation helpers and the jitted OOD evaluators against plain references."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.data import augment
from jaxnets.models import cnn
from jaxnets import data
from jaxnets import train
from jaxnets.data import transforms as T
from experiments import e3_fashion, e4_ood


@pytest.fixture(scope="module")
def fashion():
    try:
        return data.get_split("fashion_mnist", nhwc=True, n_train=200)
    except data.DataNotFoundError as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"Fashion-MNIST not available: {e}")


# --------------------------------------------------------------------------- augmentation helpers

def _images(n=6, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32))


def test_random_shifts_match_translate_per_image():
    x = _images()
    out, dx, dy = augment.random_shifts(jax.random.key(1), x, max_shift=3)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert int(jnp.max(jnp.abs(dx))) <= 3 and int(jnp.max(jnp.abs(dy))) <= 3
    for i in range(len(x)):
        np.testing.assert_array_equal(out[i], T.translate(x[i:i + 1], int(dx[i]), int(dy[i]))[0])


def test_random_rot90_matches_jnp_rot90_per_image():
    x = _images(8)
    out, k = augment.random_rot90(jax.random.key(2), x)
    assert set(np.asarray(k).tolist()) <= {0, 1, 2, 3}
    for i in range(len(x)):
        np.testing.assert_array_equal(out[i], jnp.rot90(x[i], int(k[i]), axes=(0, 1)))


@pytest.mark.parametrize("kind", augment.KINDS)
def test_augmented_copies_layout_and_determinism(kind):
    x, y = np.asarray(_images(5)), np.arange(5, dtype=np.int32)
    xa, ya, info = augment.augmented_copies(jax.random.key(3), x, y, kind, copies=2)
    assert xa.shape == (15, 28, 28, 1) and xa.dtype == x.dtype
    np.testing.assert_array_equal(xa[:5], x)          # originals first
    np.testing.assert_array_equal(ya, np.tile(y, 3))  # labels follow their images
    assert info["n_total"] == 15 and info["kind"] == kind
    xb, _, _ = augment.augmented_copies(jax.random.key(3), x, y, kind, copies=2)
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(xa[5:10], xa[10:15])    # copies are drawn independently
    with pytest.raises(ValueError, match="kind"):
        augment.augmented_copies(jax.random.key(3), x, y, "flip")


# --------------------------------------------------------------------------- E4 evaluators

def test_ood_and_curve_evaluators_agree_with_plain_evaluation(fashion):
    model = cnn.mlp2_ood()
    params = model.init(jax.random.key(0))
    X, Y = jnp.asarray(fashion.x_test[:120]), jnp.asarray(fashion.y_test[:120])
    ev = jax.jit(train.make_evaluate(model, 120, 50))  # the plain reference: one compile
    acc = lambda x: float(ev(params, x, Y)[1])  # noqa: E731
    table = np.asarray(e4_ood.make_ood_evaluator(model, 120, chunk=50)(params, X, Y))
    sets = T.ood_test_sets(X)
    np.testing.assert_allclose(table, [acc(sets[k]) for k in e4_ood.SETS], atol=1e-6)
    shifts = jnp.asarray([(0, 0), (3, 0), (0, -4)], jnp.int32)
    angles = jnp.asarray([0.0, 90.0, 45.0], jnp.float32)
    acc_s, acc_a = e4_ood.make_curve_evaluator(model, 120, chunk=50)(params, X, Y, shifts, angles)
    np.testing.assert_allclose(acc_s, [acc(X), acc(T.translate(X, 3, 0)), acc(T.shift_up(X))], atol=1e-6)
    np.testing.assert_allclose(acc_a, [acc(X), acc(T.rot90(X, 1)), acc(T.rotate(X, 45.0))], atol=1e-6)


# --------------------------------------------------------------------------- E3 end to end

def test_early_stop_point_matches_fit_rule():
    assert e3_fashion.early_stop_point([0.5, 0.6, 0.6, 0.55, 0.59]) == (2, 5)
    assert e3_fashion.early_stop_point([0.5, 0.6, 0.7]) == (3, None)


def test_e3_quick_end_to_end(fashion, tmp_path):
    rec = e3_fashion.run(quick=True, results_dir=str(tmp_path / "r"), figures_dir=str(tmp_path / "f"),
                         n_train=200, max_epochs=2, epochs_33=2, batch_sizes=(1, 50),
                         momenta=(0.5, 0.9), log=None)
    ids = {r["id"] for r in rec["rows"]}
    for want in ("E3.1.gradcheck.W1", "E3.1.gradcheck.b2", "E3.1.magnitude", "E3.2.b1.test_acc",
                 "E3.2.b50.updates", "E3.2.b1_slower_than_b50", "E3.3.es_test_acc", "E3.4.m0.9.test_acc"):
        assert want in ids, want
    for r in rec["rows"]:
        assert set(r) == {"id", "quantity", "value", "doc_value", "tolerance", "status", "note"}
    assert all(r["status"] == "agrees" for r in rec["rows"] if r["id"].startswith("E3.1.gradcheck"))
    b1 = rec["batch_sizes"][0]
    assert b1["updates_total"] == 200 * b1["epochs_run"]
    assert len(rec["momentum"]) == 3 and len(rec["momentum"][0]["train_loss"]) == 2
    for f in ("e3_batch_accuracy", "e3_batch_time", "e3_early_stopping", "e3_momentum_loss"):
        assert os.path.getsize(tmp_path / "f" / f"{f}.png") > 0
    with open(tmp_path / "r" / "e3.json") as fh:
        assert json.load(fh)["experiment"] == "E3"


# --------------------------------------------------------------------------- E4 end to end

def test_e4_quick_end_to_end_with_remedies(fashion, tmp_path):
    rec = e4_ood.run(quick=True, results_dir=str(tmp_path / "r"), figures_dir=str(tmp_path / "f"),
                     model_names=("mlp2_ood",), remedies=("shift", "rot90"), n_train=200, epochs=1,
                     n_test=100, sweep_n=50, log=None)
    ids = {r["id"] for r in rec["rows"]}
    for want in ("E4.mlp2_ood.params", "E4.mlp2_ood.up4", "E4.mlp2_ood.rot180", "E4.rot_collapse",
                 "E4.remedy.shift.mlp2_ood.gain", "E4.remedy.rot90.mlp2_ood.in_domain",
                 "E4.remedy.shift.raises_up4_all"):
        assert want in ids, want
    assert next(r for r in rec["rows"] if r["id"] == "E4.mlp2_ood.params")["status"] == "agrees"
    res = rec["results"]
    assert res["shift"]["mlp2_ood"]["n_train"] == 400 and res["rot90"]["mlp2_ood"]["n_train"] == 400
    curve = res["none"]["mlp2_ood"]["shift_curve"]
    assert len(curve["dx"]) == len(curve["dy"]) == 17 and len(res["none"]["mlp2_ood"]["angle_curve"]) == 25
    assert curve["dx"][8] == curve["dy"][8]  # both are the unshifted images
    assert len(rec["remedy_table"]) == 2
    for f in ("e4_transforms", "e4_augment_examples", "e4_shift_curves", "e4_angle_curves"):
        assert os.path.getsize(tmp_path / "f" / f"{f}.png") > 0
    assert "2-layer MLP" in e4_ood.format_tables(rec)
