"""JAX on the CPU: `jax.jit` of `value_and_grad` with the SGD update inside and the params
donated (`donate_argnums`), the fast path JAX's docs recommend for a training step.

The thread count is fixed before import by the orchestrator (`XLA_FLAGS`, CPU affinity)."""

import math
import time
from functools import partial

import jax
import jax.numpy as jnp

from common import FUSED_N, NEURON_POINT, TRAIN_WORKLOADS, emit, fused_arrays, median_per_call, time_train, workload_id


def make_step(spec, batch):
    act = jax.nn.relu if spec.act == "relu" else jnp.tanh
    lr, l2 = spec.lr, spec.l2

    def loss_fn(p, x, y):
        h = act(x @ p["W1"].T + p["b1"])
        f = h @ p["W2"].T + p["b2"]
        logp = jax.nn.log_softmax(f)
        loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        if l2:
            loss = loss + l2 * (jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2))
        return loss

    @partial(jax.jit, donate_argnums=0)
    def train_step(p, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return jax.tree.map(lambda w, gw: w - lr * gw, p, g), loss

    w1, b1, w2, b2 = spec.params()
    state = {"p": {k: jnp.asarray(v) for k, v in zip(("W1", "b1", "W2", "b2"), (w1, b1, w2, b2))}}
    x, y = spec.batch(batch)
    x, y = jnp.asarray(x), jnp.asarray(y.astype("int32"))

    def step():
        state["p"], state["loss"] = train_step(state["p"], x, y)

    def sync():
        jax.block_until_ready(state["p"])

    return step, sync


def scalar_grad():
    """`jax.jit(jax.value_and_grad(f, argnums=(0..4)))` on device scalars, one call (waited for)."""

    def f(w0, x0, w1, x1, w2):
        return 1.0 / (1.0 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))

    vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4)))
    args = [jnp.float32(v) for v in NEURON_POINT]
    v, g = vg(*args)
    assert math.isclose(float(v), 0.7310586, rel_tol=1e-6), float(v)
    assert math.isclose(float(g[0]), -0.1966119, rel_tol=1e-5), float(g[0])
    return median_per_call(lambda: jax.block_until_ready(vg(*args)))


def fused():
    a, b, c = (jnp.asarray(v) for v in fused_arrays())
    f = jax.jit(lambda a, b, c: jax.nn.relu(a * b + c))
    return median_per_call(lambda: f(a, b, c).block_until_ready(), samples=9, target=0.0)


def startup():
    """Seconds of the first call of a trivial jitted function (backend start-up, kept out of
    the per-workload first-step figures)."""
    t = time.perf_counter()
    jax.jit(lambda v: v + 1)(jnp.ones(4)).block_until_ready()
    return time.perf_counter() - t


def run(threads, seconds, only):
    emit({"framework": "JAX jit", "workload": "startup", "threads": threads, "first_step_ms": startup() * 1e3})
    for spec, batch in TRAIN_WORKLOADS:
        wid = workload_id(spec, batch)
        if only and wid not in only:
            continue
        step, sync = make_step(spec, batch)
        emit({"framework": "JAX jit", "workload": wid, "threads": threads, **time_train(step, sync, batch, seconds)})
    if not only or "scalar-grad" in only:
        emit({"framework": "JAX jit", "workload": "scalar-grad", "threads": threads, "ns_per_call": scalar_grad() * 1e9})
    if not only or "fused-elementwise" in only:
        t = fused()
        emit({"framework": "JAX jit", "workload": "fused-elementwise", "threads": threads, "gb_per_s": 16 * FUSED_N / t / 1e9})
