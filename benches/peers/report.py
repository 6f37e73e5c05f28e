"""The peer comparison's report: Markdown tables of the medians over the rounds, each figure
with its spread (±: half the range over the rounds, in % of the median), and issue 5's
targets with the measured value next to each."""

import statistics

from common import DIGITS, MNIST, TRAIN_WORKLOADS, GEMM_BATCHES, mnist_products, workload_id

TRAIN_PEERS = ["torch eager", "torch.compile", "JAX jit", "NumPy"]
SCALAR_PEERS = ["JAX jit", "torch eager", "Python by hand"]
FUSED_PEERS = ["NumPy", "JAX jit", "torch eager", "torch.compile"]
GEMM_IMPLS = ["gemm", "matrixmultiply", "gemmkit", "OpenBLAS"]


def flops_per_example(spec):
    """Multiply-adds ×2 of one example's train step: the forward and the two weight-gradient
    products plus the hidden cotangent (the elementwise work is left out)."""
    i, h, c = spec.inp, spec.hidden, spec.classes
    return 2 * (i * h + h * c) + 2 * (i * h + h * c) + 2 * (c * h)


class Table:
    """Medians and spreads of one metric, keyed by (framework, workload, threads)."""

    def __init__(self, recs, metric):
        self.vals = {}
        for r in recs:
            if metric in r and "framework" in r:
                self.vals.setdefault((r["framework"], r["workload"], r["threads"]), []).append(r[metric])

    def median(self, fw, wl, t):
        xs = self.vals.get((fw, wl, t))
        return statistics.median(xs) if xs else None

    def spread(self, fw, wl, t):
        xs = self.vals.get((fw, wl, t))
        m = statistics.median(xs) if xs else 0
        return (max(xs) - min(xs)) / 2 / m * 100 if xs and len(xs) > 1 and m else None

    def best(self, fw, wl, threads, lowest=False):
        """(median, threads) of the best thread count."""
        got = [(self.median(fw, wl, t), t) for t in threads if self.median(fw, wl, t) is not None]
        if not got:
            return None, None
        return (min if lowest else max)(got)


def si(x):
    if x is None:
        return "–"
    for div, suf in ((1e6, " M"), (1e3, " k")):
        if x >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def ms(x):
    if x is None:
        return "–"
    return f"{x / 1e3:.2f} s" if x >= 1000 else f"{x:.3g} ms"


def ns(x):
    if x is None:
        return "–"
    return f"{x / 1e3:.3g} µs" if x >= 1000 else f"{x:.3g} ns"


def cell(tab, fw, wl, t, fmt):
    m = tab.median(fw, wl, t)
    s = tab.spread(fw, wl, t)
    return "–" if m is None else (f"{fmt(m)} ±{s:.0f}%" if s is not None else fmt(m))


def ratio(x, y):
    return f"{x / y:.2f}×" if x and y else "–"


def md(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)


def train_tables(recs, threads):
    eps = Table(recs, "examples_per_s")
    first = Table(recs, "first_step_ms")
    parts = []
    for t in threads:
        rows = []
        for spec, b in TRAIN_WORKLOADS:
            wl = workload_id(spec, b)
            best = max(((eps.median(p, wl, t) or 0, p) for p in TRAIN_PEERS), default=(0, "–"))
            best = best if best[0] else (0, "–")
            rows.append([wl] + [cell(eps, fw, wl, t, si) for fw in ["bpc", *TRAIN_PEERS]]
                        + [best[1], ratio(eps.median("bpc", wl, t), best[0])])
        parts.append(f"### Train step, examples/s, {t} thread{'s' if t > 1 else ''}\n\n"
                     + md(["workload", "bpc", *TRAIN_PEERS, "best peer", "bpc / best"], rows))
    rows = []
    for spec, b in TRAIN_WORKLOADS:
        wl = workload_id(spec, b)
        cells, best = [], (0, "–")
        for fw in ["bpc", *TRAIN_PEERS]:
            m, t = eps.best(fw, wl, threads)
            cells.append("–" if m is None else f"{si(m)} ({t}t)")
            if fw != "bpc" and m and m > best[0]:
                best = (m, fw)
        rows.append([wl, *cells, best[1], ratio(eps.best("bpc", wl, threads)[0], best[0])])
    parts.append("### Train step, examples/s, best of the thread counts\n\n"
                 + md(["workload", "bpc", *TRAIN_PEERS, "best peer", "bpc / best"], rows))
    rows = [[wl] + [" / ".join(ms(first.median(fw, wl, t)) for t in threads) for fw in ["bpc", *TRAIN_PEERS]]
            for wl in ["startup"] + [workload_id(s, b) for s, b in TRAIN_WORKLOADS]]
    parts.append(f"### First step (compile included), {' / '.join(f'{t}t' for t in threads)}\n\n"
                 "bpc: source to callable step plus the first call (`bpc bench` compile_ms + first_step_ms); "
                 "peers: the first call of the step (tracing and compilation included), in a process that "
                 "has already paid its one-time start-up (`startup`: the first call of a trivial function, "
                 "e.g. loading inductor and starting its compile workers).\n\n"
                 + md(["workload", "bpc", *TRAIN_PEERS], rows))
    return parts


def small_tables(recs, threads):
    nsc = Table(recs, "ns_per_call")
    gbs = Table(recs, "gb_per_s")
    comp = Table(recs, "ms")
    parts = []
    rows = [[fw] + [cell(nsc, fw, "scalar-grad", t, ns) for t in threads] for fw in ["bpc", *SCALAR_PEERS]]
    parts.append("### scalar-grad: sigmoid neuron, value + 5 gradients, one call\n\n"
                 + md(["framework", *(f"{t} thread{'s' if t > 1 else ''}" for t in threads)], rows))
    rows = [[fw] + [cell(gbs, fw, "fused-elementwise", t, lambda x: f"{x:.3g} GB/s") for t in threads]
            for fw in ["bpc", *FUSED_PEERS]]
    rows.append(["machine: NumPy `a*b` (12 B/element)"]
                + [cell(gbs, "NumPy", "limit-stream-mul", t, lambda x: f"{x:.3g} GB/s") for t in threads])
    parts.append("### fused-elementwise: relu(a*b + c) over 16M floats, GB/s at 16 B/element\n\n"
                 "NumPy is unfused (three passes into a preallocated result); JAX and torch.compile fuse.\n\n"
                 + md(["framework", *(f"{t}t" for t in threads)], rows))
    sg = Table(recs, "gflops")
    rows = [["OpenBLAS sgemm 1024³ (NumPy), GFLOP/s"] + [cell(sg, "NumPy", "limit-sgemm", t, lambda x: f"{x:.0f}")
                                                         for t in threads]]
    rows.append(["mnist-mlp GEMM bound, examples/s (sgemm ÷ 0.82 MFLOP)"]
                + [si(g * 1e9 / flops_per_example(MNIST)) if (g := sg.median("NumPy", "limit-sgemm", t)) else "–"
                   for t in threads])
    rows.append(["compile: source to callable mnist step (batch 32)"]
                + [cell(comp, "bpc", "compile", t, ms) for t in threads])
    parts.append("### Machine limits and compile time\n\n" + md(["", *(f"{t}t" for t in threads)], rows))
    return parts


def gemm_table(recs, threads):
    vals = {}
    for r in recs:
        if r.get("workload") == "gemm":
            vals.setdefault((r["impl"], r["threads"], r["batch"], r["product"]), []).append(r["gflops"])
    if not vals:
        return []
    rows = []
    for b in GEMM_BATCHES:
        for name, (m, k, n) in mnist_products(b):
            row = [f"B={b} {name}", f"{m}×{k}×{n}"]
            for t in threads:
                meds = {i: statistics.median(vals[(i, t, b, name)]) for i in GEMM_IMPLS if (i, t, b, name) in vals}
                row += [f"{meds[i]:.1f}" if i in meds else "–" for i in GEMM_IMPLS]
                row.append(max(meds, key=meds.get) if meds else "–")
            rows.append(row)
    header = ["product", "m×k×n"]
    for t in threads:
        header += [f"{i} {t}t" for i in GEMM_IMPLS] + [f"winner {t}t"]
    return ["### GEMM at the mnist-mlp shapes, GFLOP/s (median over rounds)\n\n"
            "x.w1t: X·W1ᵀ (forward), dht.x: dHᵀ·X (dW1), h.w2t: H·W2ᵀ, dft.h: dFᵀ·H (dW2), df.w2: dF·W2 (dH).\n\n"
            + md(header, rows)]


def gemm_floor(recs, b, t, impls=("OpenBLAS",)):
    """Examples/s of a mnist-mlp step at minibatch `b` that did nothing but its five products,
    each at the best median GFLOP/s among `impls` measured in this run on `t` threads (None if
    a product has no figure)."""
    secs = 0.0
    for name, (m, k, n) in mnist_products(b):
        meds = []
        for i in impls:
            g = [r["gflops"] for r in recs if r.get("workload") == "gemm" and r["impl"] == i and r["threads"] == t
                 and r["batch"] == b and r["product"] == name]
            if g:
                meds.append(statistics.median(g))
        if not meds:
            return None
        secs += 2 * m * k * n / (max(meds) * 1e9)
    return b / secs


def floor_table(recs, threads):
    """The measured ceiling behind each mnist-mlp target: the goal (ratio × best peer) against
    the step's GEMM floor at OpenBLAS's speed and at the fastest library's, best thread count."""
    eps = Table(recs, "examples_per_s")
    rows = []
    for b, goal in [(32, 1.5), (128, 1.2), (1024, 1.0)]:
        wl = workload_id(MNIST, b)
        ref = max((eps.best(p, wl, threads)[0] or 0 for p in TRAIN_PEERS), default=0)
        blas = max((gemm_floor(recs, b, t) or 0 for t in threads), default=0)
        best = max((gemm_floor(recs, b, t, GEMM_IMPLS) or 0 for t in threads), default=0)
        if not (ref and blas):
            continue
        rows.append([wl, si(ref), f"{si(goal * ref)} ({goal}×)", si(blas), si(best), si(eps.best("bpc", wl, threads)[0] or 0),
                     "above the floor" if goal * ref > best else "below the floor"])
    if not rows:
        return []
    return ["### mnist-mlp: goal against the GEMM floor (examples/s if a step were only its five products)\n\n"
            "OpenBLAS floor: each product at NumPy's OpenBLAS GFLOP/s at that shape in this run; library floor: each "
            "product at the fastest of gemm, matrixmultiply, gemmkit and OpenBLAS. Each product is timed alone, "
            "so a floor leaves out what a step gains from data one product leaves in cache for the next (bpc's "
            "owner-computes split keeps each half of W1 on one core): bpc may pass it.\n\n"
            + md(["workload", "best peer", "goal", "OpenBLAS floor", "library floor", "bpc", "goal is"], rows)]


def scaling_ratios(recs):
    """Per-sample ratios of the `peer scaling` measurement (benches/peer.rs), one list each:
    bpc's 2-thread over 1-thread step, the ceiling (two independent 512-row halves on the two
    cores over the 1-thread step), the 2-thread step's share of that ceiling, how much one core
    slows when the other works too, and the same for gemmkit's products alone."""
    got = {"bpc": [], "ceiling": [], "share": [], "per_core": [], "gemm": []}
    for r in recs:
        if r.get("workload") == "scaling":
            got["bpc"].append(r["two_threads"] / r["one_thread"])
            got["ceiling"].append(r["halves_concurrent"] / r["one_thread"])
            got["share"].append(r["two_threads"] / r["halves_concurrent"])
            got["per_core"].append(r["halves_concurrent"] / (2 * r["half_alone"]))
            got["gemm"].append(r["gemm_concurrent"] / r["gemm_alone"])
    return got


def scaling_table(recs):
    got = scaling_ratios(recs)
    if not got["bpc"]:
        return []
    secs = statistics.median(r.get("seconds", 0.4) for r in recs if r.get("workload") == "scaling")

    def span(xs, pct=False):
        f = (lambda x: f"{x:.0%}") if pct else (lambda x: f"{x:.2f}×")
        return f"{f(statistics.median(xs))} ({f(min(xs))}–{f(max(xs))})"

    rows = [
        ["bpc, 2-thread step / 1-thread step (`bpc bench --threads 2` / `--threads 1`)", span(got["bpc"])],
        ["reference: two independent 1-thread 512-row steps on the two cores at once / 1-thread step",
         span(got["ceiling"])],
        ["bpc's 2-thread step as a share of the reference", span(got["share"], pct=True)],
        ["one core's speed while the other core works too (512-row steps)", span(got["per_core"], pct=True)],
        ["gemmkit, x.w1t + dht.x at 512 rows: on both cores at once / on one", span(got["gemm"])],
    ]
    return ["### 2 threads vs 1 at mnist-mlp b1024, paired in one process\n\n"
            f"`peer scaling`, {len(got['bpc'])} samples: each sample times the six configurations one after the "
            f"other for {secs:g} s each, so a slow or fast phase of the machine falls on both sides of each ratio; "
            "median (range) of the per-sample ratios. The reference is what a data-parallel step without any "
            "combine or synchronization reaches on this machine at that moment (its ceiling, up to noise: a "
            "sample's 2-thread step can pass it).\n\n"
            + md(["", "ratio"], rows)]


def rss_reference(batch=32):
    """Bytes of what MNIST training must hold: the 60000 training images as float32 and their
    labels, params and their gradients (SGD keeps no optimizer state), one minibatch's
    activations and cotangents (x, pre-activation, hidden, logits, softmax; their adjoints)."""
    n, s = 60000, MNIST
    data = n * (s.inp + 1) * 4
    params = (s.hidden * s.inp + s.hidden + s.classes * s.hidden + s.classes) * 4
    acts = batch * (s.inp + 2 * s.hidden + 2 * s.classes) * 4 * 2
    return data + 2 * params + acts


def targets(recs, threads):
    eps = Table(recs, "examples_per_s")
    nsc = Table(recs, "ns_per_call")
    gbs = Table(recs, "gb_per_s")
    comp = Table(recs, "ms")

    def best_peer(wl, peers=TRAIN_PEERS):
        return max((eps.best(p, wl, threads)[0] or 0 for p in peers), default=0)

    def bpc(wl):
        return eps.best("bpc", wl, threads)[0] or 0

    def line(name, value, goal, ok):
        return [name, value, goal, "met" if ok else "not met"]

    rows = []
    s_bpc = nsc.best("bpc", "scalar-grad", threads, lowest=True)[0]
    s_jax = nsc.best("JAX jit", "scalar-grad", threads, lowest=True)[0]
    if s_bpc:
        rows.append(line("scalar-grad ns per call", ns(s_bpc), "≤ 25 ns", s_bpc <= 25))
        if s_jax:
            rows.append(line("scalar-grad vs JAX jit", ratio(s_jax, s_bpc), "≥ 500×", s_jax / s_bpc >= 500))
    for spec, b, goal, peers in [(DIGITS, 32, 3.0, TRAIN_PEERS), (MNIST, 1, 3.0, ["JAX jit"]), (MNIST, 32, 1.5, TRAIN_PEERS),
                                 (MNIST, 128, 1.2, TRAIN_PEERS), (MNIST, 1024, 1.0, TRAIN_PEERS)]:
        wl = workload_id(spec, b)
        ref = best_peer(wl, peers)
        who = "JAX jit" if peers == ["JAX jit"] else "best peer"
        if bpc(wl) and ref:
            rows.append(line(f"{wl} vs {who}", ratio(bpc(wl), ref), f"≥ {goal}×", bpc(wl) / ref >= goal))
    c = min((comp.median("bpc", "compile", t) or 1e99) for t in threads)
    if c < 1e99:
        rows.append(line("compile, source to callable mnist step", ms(c), "≤ 20 ms", c <= 20))
    f = max((gbs.median("bpc", "fused-elementwise", t) or 0) for t in threads)
    st = max((gbs.median("NumPy", "limit-stream-mul", t) or 0) for t in threads)
    if f and st:
        rows.append(line("fused-elementwise vs NumPy a*b GB/s", ratio(f, st), "≥ 1.0×", f >= st))
    for t in threads:
        kit, blas = gemm_floor(recs, 1024, t, ("gemmkit",)), gemm_floor(recs, 1024, t)
        if kit and blas:
            rows.append(line(f"GEMM of mnist b1024 (its five products), gemmkit vs OpenBLAS, {t}t", f"{kit / blas:.0%}",
                             "≥ 80%", kit >= 0.8 * blas))
    wl = workload_id(MNIST, 1024)
    if 1 in threads and 2 in threads and eps.median("bpc", wl, 1) and eps.median("bpc", wl, 2):
        r = eps.median("bpc", wl, 2) / eps.median("bpc", wl, 1)
        rows.append(line("bpc 2 threads vs 1 at mnist b1024", f"{r:.2f}×", "≥ 1.7×", r >= 1.7))
    sc = scaling_ratios(recs)
    if sc["bpc"]:
        r, c = statistics.median(sc["bpc"]), statistics.median(sc["ceiling"])
        rows.append(line("bpc 2 threads vs 1 at mnist b1024, paired in one process",
                         f"{r:.2f}× (two independent halves: {c:.2f}×)", "≥ 1.7×", r >= 1.7))
    rss = [r for r in recs if r.get("workload") == "rss"]
    if rss:
        peak = rss[0]["peak_kb"] * 1024
        ref = rss_reference()
        goal = 1.3 * ref + 30e6
        rows.append(line("peak RSS, bpc train mnist (1 epoch, b32)", f"{peak / 1e6:.0f} MB (reference {ref / 1e6:.0f} MB)",
                         f"≤ {goal / 1e6:.0f} MB", peak <= goal))
    return ["### Issue 5 targets (best of the thread counts)\n\n" + md(["target", "measured", "goal", ""], rows)]


def per_round(xs):
    return ", ".join(f"{x:.2f}×" for x in xs) + f" (median {statistics.median(xs):.2f}×)" if xs else "–"


def round_ratios(recs, threads):
    """bpc's ratio to the best peer within each round (both at their best thread count that
    round), and bpc's 2-thread over 1-thread figure per round: a machine phase that slows one
    framework's slot moves a ratio of medians, less so the median of per-round ratios.
    Informational: the targets above are the issue's ratios of medians."""
    per = {}
    for r in recs:
        if "examples_per_s" in r and "framework" in r and "round" in r:
            key = (r["workload"], r["round"], r["framework"])
            per.setdefault(key, {})[r["threads"]] = r["examples_per_s"]
    rows = []
    for spec, b in [(MNIST, 32), (MNIST, 128), (MNIST, 1024), (DIGITS, 32)]:
        wl = workload_id(spec, b)
        rounds = sorted({k[1] for k in per if k[0] == wl})
        ratios, scaling = [], []
        for rd in rounds:
            mine = per.get((wl, rd, "bpc"), {})
            peer = max((max(per.get((wl, rd, p), {0: 0}).values()) for p in TRAIN_PEERS), default=0)
            if mine and peer:
                ratios.append(max(mine.values()) / peer)
            if mine.get(1) and mine.get(2):
                scaling.append(mine[2] / mine[1])
        if ratios:
            rows.append([wl, per_round(ratios), per_round(scaling)])
    if not rows:
        return []
    return ["### Per-round ratios (informational)\n\n" + md(["workload", "bpc / best peer, each round", "bpc 2t / 1t, each round"], rows)]


def render(env, recs, rounds, threads):
    head = [f"## bpc vs PyTorch, JAX and NumPy (median of {rounds} round{'s' if rounds != 1 else ''}; ± = half the range over the rounds)",
            "\n".join(f"- {k}: {v}" for k, v in env.items())]
    parts = head + train_tables(recs, threads) + small_tables(recs, threads) + gemm_table(recs, threads)
    parts += floor_table(recs, threads) + scaling_table(recs) + targets(recs, threads) + round_ratios(recs, threads)
    return "\n\n".join(parts) + "\n"
