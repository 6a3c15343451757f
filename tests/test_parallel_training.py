"""Data-parallel training over 8 simulated CPU devices (a subprocess, because the device count is
fixed when XLA starts): results equal the single-device run (array data and a Sampler), and the
minibatch is really sharded."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    from jaxnets import models, train
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)); Y = rng.integers(0, 3, 200).astype(np.int32)
    net = models.mlp([6, 16, 3], "relu", "softmax_cross_entropy")
    p0 = net.init(jax.random.key(0), jnp.float64)
    kw = dict(epochs=3, batch_size=40, optimizer=train.sgd(0.1, momentum=0.9), key=jax.random.key(1), progress=False)
    single = train.fit(net, p0, (X, Y), **kw)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    multi = train.fit(net, p0, (X, Y), mesh=mesh, **kw)
    seen = []
    opt = train.sgd(0.1)
    ep = train.make_epoch(net, 200, 40, mesh=mesh, inspect_sharding=seen.append, optimizer=opt)
    st = jax.device_put(train.init_state(p0, opt), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    hp = jnp.float64(0.0)   # l2
    out, _ = jax.jit(ep)(st, hp, jnp.int32(0), jax.random.key(0), jnp.asarray(X), jnp.asarray(Y))
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
               zip(jax.tree.leaves(single.final_params), jax.tree.leaves(multi.final_params)))
    sh = seen[0]
    src = train.Sampler(lambda k, b, X_, Y_: (lambda i: (X_[i], Y_[i]))(jax.random.randint(k, (b,), 0, 200)),
                        5, (jnp.asarray(X), jnp.asarray(Y)))
    s1 = train.fit(net, p0, src, **kw).final_params
    s8 = train.fit(net, p0, src, mesh=mesh, **kw).final_params
    sdiff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
                zip(jax.tree.leaves(s1), jax.tree.leaves(s8)))
    print(json.dumps({"n_devices": jax.device_count(), "max_diff": diff, "sampler_diff": sdiff,
                      "batch_shards": len(sh.device_set), "batch_spec": str(sh.spec),
                      "params_replicated": bool(jax.tree.leaves(out.params)[0].sharding.is_fully_replicated),
                      "acc_single": single.history["train_acc"], "acc_multi": multi.history["train_acc"]}))
""")


@pytest.mark.e2e(cpu=11)
def test_data_parallel_equals_single_device_and_shards_the_batch():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["n_devices"] == 8
    assert r["batch_shards"] == 8 and "data" in r["batch_spec"]
    assert r["params_replicated"]
    assert r["max_diff"] < 1e-10          # float64: same math, different reduction order
    assert r["sampler_diff"] < 1e-10      # sampled batches shard the same way
    assert r["acc_single"] == r["acc_multi"]
