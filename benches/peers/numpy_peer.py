"""NumPy hand-written backprop (preallocated buffers, in-place updates, `out=` everywhere the
API has it), the hand-derived scalar gradient in plain Python, and the machine's limits as
NumPy sees them: OpenBLAS sgemm GFLOP/s and streaming `a*b` GB/s.

The BLAS thread count is fixed before import by the orchestrator (`OPENBLAS_NUM_THREADS`)."""

import math

import numpy as np

from common import (
    FUSED_N,
    GEMM_BATCHES,
    NEURON_POINT,
    TRAIN_WORKLOADS,
    emit,
    fused_arrays,
    median_per_call,
    mnist_products,
    time_train,
    workload_id,
)


class NumpyMlp:
    """One SGD step of `spec` at minibatch `b`, forward and adjoint written out by hand."""

    def __init__(self, spec, b):
        self.spec, self.b = spec, b
        self.w1, self.b1, self.w2, self.b2 = spec.params()
        self.x, self.y = spec.batch(b)
        self.rows = np.arange(b)
        f32 = np.float32
        self.h = np.empty((b, spec.hidden), f32)
        self.f = np.empty((b, spec.classes), f32)
        self.dh = np.empty((b, spec.hidden), f32)
        self.dw1 = np.empty_like(self.w1)
        self.dw2 = np.empty_like(self.w2)

    def step(self):
        s, x, h, f, dh = self.spec, self.x, self.h, self.f, self.dh
        np.matmul(x, self.w1.T, out=h)
        h += self.b1
        if s.act == "relu":
            np.maximum(h, 0.0, out=h)
        else:
            np.tanh(h, out=h)
        np.matmul(h, self.w2.T, out=f)
        f += self.b2
        # softmax cross-entropy; f becomes dL/dlogits = (softmax - onehot) / B
        f -= f.max(axis=1, keepdims=True)
        np.exp(f, out=f)
        f /= f.sum(axis=1, keepdims=True)
        loss = -np.log(f[self.rows, self.y]).mean()
        f[self.rows, self.y] -= 1.0
        f *= 1.0 / self.b
        np.matmul(f.T, h, out=self.dw2)
        db2 = f.sum(axis=0)
        np.matmul(f, self.w2, out=dh)
        if s.act == "relu":
            dh *= h > 0
        else:
            np.multiply(h, h, out=h)  # h is dead after dW2: reuse it for 1 - tanh²
            np.subtract(1.0, h, out=h)
            dh *= h
        np.matmul(dh.T, x, out=self.dw1)
        db1 = dh.sum(axis=0)
        lr = s.lr
        if s.l2:
            loss += s.l2 * (np.vdot(self.w1, self.w1) + np.vdot(self.w2, self.w2))
            self.dw1 += (2 * s.l2) * self.w1
            self.dw2 += (2 * s.l2) * self.w2
        self.dw1 *= lr
        self.w1 -= self.dw1
        self.dw2 *= lr
        self.w2 -= self.dw2
        self.b1 -= lr * db1
        self.b2 -= lr * db2
        return loss


def neuron_value_and_grad(w0, x0, w1, x1, w2):
    """The lecture's sigmoid neuron and its hand-derived gradient (σ' = σ(1 - σ))."""
    f = 1.0 / (1.0 + math.exp(-(w0 * x0 + w1 * x1 + w2)))
    d = f * (1.0 - f)
    return f, (x0 * d, w0 * d, x1 * d, w1 * d, d)


def scalar_grad():
    f, g = neuron_value_and_grad(*NEURON_POINT)
    assert math.isclose(f, 0.7310586, rel_tol=1e-6) and math.isclose(g[0], -0.1966119, rel_tol=1e-5)
    return median_per_call(lambda: neuron_value_and_grad(*NEURON_POINT))


def fused():
    """relu(a*b + c) unfused, into a preallocated result: three passes over memory."""
    a, b, c = fused_arrays()
    out = np.empty_like(a)

    def f():
        np.multiply(a, b, out=out)
        np.add(out, c, out=out)
        np.maximum(out, 0.0, out=out)

    return median_per_call(f, samples=9, target=0.0)


def limits(threads):
    """OpenBLAS sgemm at 1024³ and streaming `a*b` (12 bytes per element) over 16M floats."""
    rng = np.random.default_rng(0)
    n = 1024
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.empty((n, n), np.float32)
    t = median_per_call(lambda: np.matmul(a, b, out=c), samples=7, target=0.1)
    emit({"framework": "NumPy", "workload": "limit-sgemm", "threads": threads, "gflops": 2 * n**3 / t / 1e9})
    x, y, _ = fused_arrays()
    z = np.empty_like(x)
    t = median_per_call(lambda: np.multiply(x, y, out=z), samples=9, target=0.0)
    emit({"framework": "NumPy", "workload": "limit-stream-mul", "threads": threads, "gb_per_s": 12 * FUSED_N / t / 1e9})


def gemm_shapes(threads):
    """OpenBLAS (through np.matmul, transposes as strided views) at the MNIST products."""
    rng = np.random.default_rng(0)
    for b in GEMM_BATCHES:
        for name, (m, k, n) in mnist_products(b):
            # Operands stored as the train step stores them; `.T` views pass BLAS transpose flags.
            if name in ("x.w1t", "h.w2t"):
                lhs, rhs = rng.standard_normal((m, k)), rng.standard_normal((n, k)).T
            elif name in ("dht.x", "dft.h"):
                lhs, rhs = rng.standard_normal((k, m)).T, rng.standard_normal((k, n))
            else:
                lhs, rhs = rng.standard_normal((m, k)), rng.standard_normal((k, n))
            lhs, rhs = lhs.astype(np.float32), rhs.astype(np.float32)
            out = np.empty((m, n), np.float32)
            t = median_per_call(lambda: np.matmul(lhs, rhs, out=out), samples=7, target=0.04)
            emit(
                {
                    "workload": "gemm", "impl": "OpenBLAS", "threads": threads, "batch": b, "product": name,
                    "m": m, "n": n, "k": k, "gflops": 2 * m * n * k / t / 1e9,
                }
            )


def run(threads, seconds, only):
    for spec, batch in TRAIN_WORKLOADS:
        wid = workload_id(spec, batch)
        if only and wid not in only:
            continue
        net = NumpyMlp(spec, batch)
        emit({"framework": "NumPy", "workload": wid, "threads": threads, **time_train(net.step, lambda: None, batch, seconds)})
    if not only or "scalar-grad" in only:
        emit({"framework": "Python by hand", "workload": "scalar-grad", "threads": threads, "ns_per_call": scalar_grad() * 1e9})
    if not only or "fused-elementwise" in only:
        t = fused()
        emit({"framework": "NumPy", "workload": "fused-elementwise", "threads": threads, "gb_per_s": 16 * FUSED_N / t / 1e9})
    if not only or "limits" in only:
        limits(threads)
    if not only or "gemm" in only:
        gemm_shapes(threads)
