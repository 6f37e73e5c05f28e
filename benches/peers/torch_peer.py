"""PyTorch on the CPU, eager and torch.compile (default mode), as the tutorials write it:
an `nn.Module`, `F.cross_entropy`, `torch.optim.SGD`, `zero_grad(set_to_none=True)`."""

import math
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from common import FUSED_N, NEURON_POINT, TRAIN_WORKLOADS, emit, fused_arrays, median_per_call, time_train, workload_id


def setup(threads):
    torch.set_num_threads(threads)
    # Each worker compiles cold: no FX-graph cache from an earlier process.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bpc-peers-inductor-"))


def make_step(model_spec, batch, compiled):
    w1, b1, w2, b2 = model_spec.params()
    act = nn.ReLU() if model_spec.act == "relu" else nn.Tanh()
    net = nn.Sequential(nn.Linear(model_spec.inp, model_spec.hidden), act, nn.Linear(model_spec.hidden, model_spec.classes))
    with torch.no_grad():
        for p, v in zip(net.parameters(), (w1, b1, w2, b2)):
            p.copy_(torch.from_numpy(v))
    opt = torch.optim.SGD(net.parameters(), lr=model_spec.lr)
    x, y = (torch.from_numpy(a) for a in model_spec.batch(batch))
    l2 = model_spec.l2

    def train_step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        if l2:
            loss = loss + l2 * (net[0].weight.pow(2).sum() + net[2].weight.pow(2).sum())
        loss.backward()
        opt.step()
        return loss

    if compiled:
        # The whole step under torch.compile (dynamo splits it at backward; AOTAutograd
        # compiles the backward, the optimizer step is its own graph).
        torch._dynamo.reset()
        train_step = torch.compile(train_step)
    return lambda: train_step(x, y)


def scalar_grad():
    """The sigmoid neuron's value and 5 gradients by autograd, one call."""
    ts = [torch.tensor(v, requires_grad=True) for v in NEURON_POINT]

    def call():
        w0, x0, w1, x1, w2 = ts
        f = 1.0 / (1.0 + torch.exp(-(w0 * x0 + w1 * x1 + w2)))
        return f, torch.autograd.grad(f, ts)

    f, g = call()
    assert math.isclose(f.item(), 0.7310586, rel_tol=1e-6), f.item()
    assert math.isclose(g[0].item(), -0.1966119, rel_tol=1e-5), g[0].item()
    return median_per_call(call)


def fused(compiled):
    a, b, c = (torch.from_numpy(v) for v in fused_arrays())

    def f(a, b, c):
        return torch.relu(a * b + c)

    if compiled:
        torch._dynamo.reset()
        f = torch.compile(f)
    return median_per_call(lambda: f(a, b, c), samples=9, target=0.0)


def startup(compiled):
    """Seconds of the first call of a trivial function: the one-time cost a process pays
    before its first real step (for torch.compile: loading inductor, starting its compile
    workers), kept out of the per-workload first-step figures."""
    t = time.perf_counter()
    f = torch.compile(lambda v: v + 1) if compiled else (lambda v: v + 1)
    f(torch.ones(4))
    return time.perf_counter() - t


def run(threads, seconds, compiled, only):
    setup(threads)
    name = "torch.compile" if compiled else "torch eager"
    emit({"framework": name, "workload": "startup", "threads": threads, "first_step_ms": startup(compiled) * 1e3})
    for spec, batch in TRAIN_WORKLOADS:
        wid = workload_id(spec, batch)
        if only and wid not in only:
            continue
        step = make_step(spec, batch, compiled)
        emit({"framework": name, "workload": wid, "threads": threads, **time_train(step, lambda: None, batch, seconds)})
    if not compiled and (not only or "scalar-grad" in only):
        emit({"framework": name, "workload": "scalar-grad", "threads": threads, "ns_per_call": scalar_grad() * 1e9})
    if not only or "fused-elementwise" in only:
        t = fused(compiled)
        emit({"framework": name, "workload": "fused-elementwise", "threads": threads, "gb_per_s": 16 * FUSED_N / t / 1e9})
