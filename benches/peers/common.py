"""What every peer shares: the SPEC §6 workloads, their data and initial params, and timing.

Every framework trains the same model on the same synthetic minibatch (inputs uniform in
[-1, 1), labels cycling through the classes), from the same initial params (drawn here with
NumPy, at the scale the `.bp` file declares), with the same learning rate, and reuses that
one minibatch every step: what is timed is the train step, not data loading.
"""

import json
import sys
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mlp:
    """A two-layer perceptron train step: `inp -> hidden act -> classes`, cross-entropy,
    plain SGD, optionally an L2 term `l2 * (sum(W1^2) + sum(W2^2))` on the objective."""

    name: str
    inp: int
    hidden: int
    classes: int
    act: str  # "relu" | "tanh"
    init_std: float
    lr: float
    l2: float
    model_file: str  # the bpc model with exactly this definition

    def params(self, seed=0):
        """W1[hidden, inp] and W2[classes, hidden] ~ normal(0, init_std), zero biases (float32)."""
        rng = np.random.default_rng(seed)
        w1 = rng.normal(0.0, self.init_std, (self.hidden, self.inp)).astype(np.float32)
        w2 = rng.normal(0.0, self.init_std, (self.classes, self.hidden)).astype(np.float32)
        return w1, np.zeros(self.hidden, np.float32), w2, np.zeros(self.classes, np.float32)

    def batch(self, size, seed=1):
        """x[size, inp] uniform in [-1, 1) and class labels y[size] = 0, 1, ..., classes-1, 0, ..."""
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.0, 1.0, (size, self.inp)).astype(np.float32)
        y = (np.arange(size) % self.classes).astype(np.int64)
        return x, y


# SPEC §6: the models of examples/mnist.bp and examples/digits.bp.
MNIST = Mlp("mnist-mlp", 784, 256, 10, "relu", 0.01, 0.1, 0.0, "examples/mnist.bp")
DIGITS = Mlp("digits-mlp", 64, 32, 10, "tanh", 0.1, 0.1, 1e-4, "examples/digits.bp")

# (model, batch) of every train-step workload, in table order.
TRAIN_WORKLOADS = [(MNIST, 1), (MNIST, 32), (MNIST, 128), (MNIST, 1024), (DIGITS, 32)]

# The lecture's sigmoid neuron at the lecture's point (examples/sigmoid_neuron.bp).
NEURON_POINT = (2.0, -1.0, -3.0, -2.0, -3.0)  # w0, x0, w1, x1, w2

FUSED_N = 16 << 20  # fused-elementwise: relu(a*b + c) over 16M floats


def workload_id(model, batch):
    return f"{model.name}/b{batch}"


def fused_arrays(n=FUSED_N):
    """a, b, c of the fused-elementwise workload (float32, the same pattern as benches/peer.rs)."""
    i = np.arange(n)
    a = ((i % 7) - 3.0).astype(np.float32)
    b = ((i % 5) * 0.5).astype(np.float32)
    c = ((i % 3) - 1.0).astype(np.float32)
    return a, b, c


def time_train(step, sync, batch, seconds, min_steps=10):
    """Times `step()` (one SGD step): the first call (compile/trace included), a warm-up,
    then steps until both `seconds` and `min_steps` are reached; `sync()` waits for queued
    work (JAX dispatches asynchronously). Returns the result record's timing fields."""
    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    warm_end = time.perf_counter() + min(0.2, seconds / 4)
    while time.perf_counter() < warm_end:
        step()
    sync()
    steps = 0
    t1 = time.perf_counter()
    while True:
        step()
        steps += 1
        if steps >= min_steps and time.perf_counter() - t1 >= seconds:
            break
    sync()
    secs = time.perf_counter() - t1
    return {"first_step_ms": first * 1e3, "steps": steps, "examples_per_s": steps * batch / secs}


def median_per_call(fn, samples=7, target=0.05):
    """Median seconds per call of `fn()` over `samples` timed loops of about `target` s each."""
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-9)
    reps = max(1, int(target / once))
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t) / reps)
    times.sort()
    return times[len(times) // 2]


# The matrix products of the MNIST train step at minibatch b: name, (m, k, n) and how to
# build the operands from X[b,784], W1[256,784], H[b,256], W2[10,256], dF[b,10], dH[b,256].
def mnist_products(b):
    return [
        ("x.w1t", (b, 784, 256)),  # H = X · W1ᵀ
        ("dht.x", (256, b, 784)),  # dW1 = dHᵀ · X
        ("h.w2t", (b, 256, 10)),  # F = H · W2ᵀ
        ("dft.h", (10, b, 256)),  # dW2 = dFᵀ · H
        ("df.w2", (b, 10, 256)),  # dH = dF · W2
    ]


GEMM_BATCHES = [1, 32, 128, 1024]


def emit(record):
    """One result as a JSON line on stdout (the orchestrator reads them)."""
    print(json.dumps(record), flush=True)


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)
