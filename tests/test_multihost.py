"""Multi-host data parallelism over loopback: two processes joined by ``jax.distributed.initialize``
(CPU, gloo collectives, 2 devices each) train with ``fit(mesh=...)`` over one global 4-device
Mesh, and both end with the params of the single-process 4-device run and of the 1-device run.

float32; the runs differ only in the order of the gradient all-reduce's additions, so they agree
to rtol 1e-5 / atol 1e-6 after 3 epochs (observed: at most 1.5e-7 on params of magnitude <= 1.7). Every process gets
a bounded timeout and is killed on the way out; the coordinator's port is picked at runtime.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    from jaxnets import models, train

    mode, port, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "multi":
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                                   initialization_timeout=60)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 6)).astype(np.float32)
    Y = rng.integers(0, 3, 240).astype(np.int32)
    net = models.mlp([6, 16, 3], "relu", "softmax_cross_entropy")
    p0 = net.init(jax.random.key(0))
    kw = dict(epochs=3, batch_size=40, optimizer=train.sgd(0.1, momentum=0.9), key=jax.random.key(1), progress=False)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    res = train.fit(net, p0, (X, Y), mesh=mesh, **kw)
    local = lambda v: np.asarray(v.addressable_shards[0].data)   # one replica of a global array
    out = {"process": jax.process_index(), "processes": jax.process_count(),
           "devices": jax.device_count(), "local_devices": jax.local_device_count(),
           "params": [local(v).tolist() for v in jax.tree.leaves(res.final_params)],
           "train_acc": res.history["train_acc"]}
    if mode == "single":
        one = train.fit(net, p0, (X, Y), **kw)
        out["params_1dev"] = [np.asarray(v).tolist() for v in jax.tree.leaves(one.final_params)]
    print("RESULT " + json.dumps(out), flush=True)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env.pop("JAX_ENABLE_X64", None)
    return env


def _run(procs_args, timeout=240):
    """Start every process, wait for all (bounded), always kill; returns their RESULT dicts."""
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, *a], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for a, env in procs_args]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
    results = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
        results.append(json.loads(line[len("RESULT "):]))
    return results


def _close(a, b):
    for u, v in zip(a, b):
        np.testing.assert_allclose(np.asarray(u, np.float32), np.asarray(v, np.float32),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.e2e(cpu=15)
def test_two_processes_equal_the_single_process_runs():
    port = str(_free_port())
    multi = _run([(("multi", port, str(i)), _env(2)) for i in range(2)])
    (single,) = _run([(("single", port, "0"), _env(4))])
    for r in multi:
        assert (r["processes"], r["devices"], r["local_devices"]) == (2, 4, 2)
    assert sorted(r["process"] for r in multi) == [0, 1]
    assert multi[0]["params"] == multi[1]["params"]          # one replicated result, bit for bit
    assert single["devices"] == 4
    _close(multi[0]["params"], single["params"])
    _close(multi[0]["params"], single["params_1dev"])
    assert multi[0]["train_acc"] == single["train_acc"]
