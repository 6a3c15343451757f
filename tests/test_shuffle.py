"""engine.permutation: the epoch's shuffle, bit for bit jax.random.permutation (which every
record's batch order comes from), through its fast rounds, its tie rounds and under vmap."""
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.train import engine


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 1000, 10000, 60001])
@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "raw"])
def test_equals_jax_random_permutation(n, make_key):
    f = jax.jit(engine.permutation, static_argnums=1)
    for seed in range(4):
        got, want = f(make_key(seed), n), jax.random.permutation(make_key(seed), n)
        assert got.dtype == want.dtype and got.shape == (n,)
        np.testing.assert_array_equal(got, want)


def test_equals_in_float64_mode():
    with jax.enable_x64(True):
        got, want = engine.permutation(jax.random.key(5), 5000), jax.random.permutation(jax.random.key(5), 5000)
        assert got.dtype == want.dtype == jnp.int64
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("levels", [1, 2, 50, 4000])
def test_a_round_with_tied_keys_is_the_stable_pair_sort(levels):
    """Keys drawn from few values tie (levels 1: all equal): the round must order equal keys by
    position, as the stable pair sort does; values not an iota, so a wrong order shows."""
    rng = np.random.default_rng(levels)
    k = jnp.asarray(rng.integers(0, levels, 3000).astype(np.uint32))
    x = jnp.asarray(rng.permutation(3000).astype(np.int32))
    np.testing.assert_array_equal(jax.jit(engine._shuffle_round)(k, x), jax.lax.sort_key_val(k, x)[1])


def test_a_round_without_ties_takes_the_rank_path(monkeypatch):
    """Distinct keys (the common case) never reach the pair sort: with the pair sort replaced by
    zeros the round is still right; keys that tie do reach it (they come back zeros)."""
    k = jnp.asarray(np.random.default_rng(0).permutation(5000).astype(np.uint32) * 7919)
    x = jnp.arange(5000, dtype=jnp.int32)
    want = jax.lax.sort_key_val(k, x)[1]
    np.testing.assert_array_equal(jax.jit(engine._shuffle_round)(k, x), want)
    monkeypatch.setattr(engine, "_pair_sort", lambda k, x: jnp.zeros_like(x))
    jax.clear_caches()        # retrace with the replaced pair sort
    np.testing.assert_array_equal(jax.jit(lambda k, x: engine._shuffle_round(k, x))(k, x), want)
    tied = k.at[1].set(k[0])
    np.testing.assert_array_equal(jax.jit(lambda k, x: engine._shuffle_round(k, x))(tied, x), 0)


@pytest.mark.parametrize("batched_x", [False, True])
def test_under_vmap_every_round_is_the_pair_sort(batched_x):
    keys = jax.random.split(jax.random.key(1), 3)
    got = jax.jit(jax.vmap(lambda k: engine.permutation(k, 4000)))(keys)
    want = jax.vmap(lambda k: jax.random.permutation(k, 4000))(keys)
    np.testing.assert_array_equal(got, want)
    k = jax.vmap(lambda kk: jax.random.bits(kk, (300,), jnp.uint32))(keys)
    x = jnp.tile(jnp.arange(300), (3, 1)) if batched_x else jnp.arange(300)
    hlo = jax.jit(jax.vmap(engine._shuffle_round, in_axes=(0, 0 if batched_x else None))).lower(k, x).as_text()
    assert "stablehlo.case" not in hlo                    # no cond that would run both branches


def test_batch_indices_shuffle_is_the_permutation_and_traces_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def idx(key):
        return engine.batch_indices("shuffle", key, 1003, 100)[0]
    for s in range(3):
        got = idx(jax.random.key(s)).reshape(-1)
        np.testing.assert_array_equal(got[:1003], jax.random.permutation(jax.random.key(s), 1003))
        np.testing.assert_array_equal(got[1003:], 0)


EXPLICIT_MESH = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxnets.train import engine
    mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    keys = jax.device_put(jax.random.split(jax.random.key(0), 4), NamedSharding(mesh, P("data")))
    got = jax.jit(jax.vmap(lambda k: engine.permutation(k, 3000)))(keys)
    want = jax.jit(jax.vmap(lambda k: jax.random.permutation(k, 3000)))(keys)
    print(bool(np.array_equal(np.asarray(got), np.asarray(want))), got.sharding.spec)
""")


def test_under_vmap_with_keys_sharded_on_an_explicit_mesh():
    """The vmapped rounds take the keys as they are sharded (a broadcast copy of the values would
    carry no sharding, and vmap refused the pair: "inconsistent axis specs: data vs None")."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", EXPLICIT_MESH], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "True" and "data" in out.stdout, out.stdout
