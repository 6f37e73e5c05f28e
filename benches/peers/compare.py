"""The peer comparison: runs bpc and its peers on the SPEC §6 workloads in one invocation and
prints one report (report.py). Started by run.sh, which builds bpc and makes the venv:

    python compare.py --bpc target/release/bpc --peer PEER_BENCH_EXE [--rounds 3] [--seconds 1]

Every (framework, thread count) is one fresh process per round, with its thread count fixed
before import (BLAS and XLA read it from the environment) and pinned to that many CPUs; the
rounds interleave all frameworks so that a noisy stretch on the shared machine hits them all.
Each figure is the median over the rounds, shown with its spread."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import TRAIN_WORKLOADS, workload_id
import report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PEERS = ["torch-eager", "torch-compile", "jax", "numpy"]


def thread_env(threads):
    """Environment and CPU list that hold every library of a process to `threads` threads."""
    env = dict(os.environ)
    n = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MATMUL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[var] = n
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    return env, ",".join(map(str, cpus))


def run_json(cmd, threads, log, cwd=REPO):
    """Runs `cmd` pinned to `threads` CPUs; returns the JSON objects it printed, one per line.
    A failure is logged and yields nothing (one broken peer must not sink the table)."""
    env, cpus = thread_env(threads)
    full = ["taskset", "-c", cpus, *cmd]
    load = os.getloadavg()[0]
    t = time.perf_counter()
    p = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True)
    log(f"  {' '.join(map(str, cmd))[:110]}  ({time.perf_counter() - t:.1f} s, load {load:.2f})")
    if p.returncode != 0:
        log(f"  FAILED (exit {p.returncode}):\n{p.stderr[-3000:]}")
    out = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append({**json.loads(line), "load1": load})
            except json.JSONDecodeError:
                log(f"  unreadable line: {line[:200]}")
    return out


def bpc_jobs(a, threads, log):
    """bpc on every workload: `bpc bench --json` for the train steps, the peer bench binary
    for scalar-grad, compile, fused-elementwise and the GEMM libraries."""
    recs = []
    for spec, batch in TRAIN_WORKLOADS:
        wid = workload_id(spec, batch)
        if a.only and wid not in a.only:
            continue
        cmd = [a.bpc, "bench", spec.model_file, "--batch", batch, "--lr", spec.lr, "--threads", threads,
               "--seconds", a.seconds, "--json"]
        for r in run_json([str(c) for c in cmd], threads, log):
            recs.append({
                "framework": "bpc", "workload": wid, "threads": threads, "examples_per_s": r["examples_per_s"],
                "first_step_ms": r["compile_ms"] + r["first_step_ms"], "compile_ms": r["compile_ms"],
            })
    for what in ("scalar", "compile", "fused", "gemm", "scaling"):
        wanted = {"scalar": "scalar-grad", "compile": "compile", "fused": "fused-elementwise", "gemm": "gemm",
                  "scaling": "scaling"}[what]
        if (a.only and wanted not in a.only) or (what == "scaling" and threads < 2):
            continue
        for r in run_json([a.peer, what, "--threads", str(threads)], threads, log):
            if r["workload"] != "gemm":
                r["framework"] = "bpc"
            r["threads"] = threads
            recs.append(r)
    return recs


def peer_job(a, fw, threads, log):
    cmd = [a.python, str(HERE / "worker.py"), fw, "--threads", str(threads), "--seconds", str(a.seconds)]
    if a.only:
        cmd += ["--only", ",".join(sorted(a.only))]
    return run_json(cmd, threads, log)


def rss(a, log):
    """Peak RSS of `bpc train examples/mnist.bp` on the full MNIST training file."""
    cmd = ["/usr/bin/time", "-v", a.bpc, "train", "examples/mnist.bp", "--data", a.mnist, "--standardize",
           "--lr", "0.1", "--batch", "32", "--epochs", "1", "--quiet"]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    log(f"  {' '.join(cmd[2:])}  ({time.perf_counter() - t:.1f} s)")
    peak = [ln for ln in p.stderr.splitlines() if "Maximum resident set size" in ln]
    if p.returncode != 0 or not peak:
        log(f"  FAILED (exit {p.returncode}):\n{p.stderr[-3000:]}")
        return []
    wall = [ln for ln in p.stderr.splitlines() if "Elapsed (wall clock)" in ln]
    return [{"workload": "rss", "peak_kb": int(peak[0].split(":")[-1]), "wall": wall[0].split(": ")[-1] if wall else ""}]


def environment(a):
    probe = (
        "import json, os, platform, numpy, torch, jax\n"
        "cfg = numpy.show_config(mode='dicts')\n"
        "blas = cfg.get('Build Dependencies', {}).get('blas', {})\n"
        "print(json.dumps({'python': platform.python_version(), 'numpy': numpy.__version__,\n"
        "  'numpy_blas': f\"{blas.get('name')} {blas.get('version')}\", 'torch': torch.__version__,\n"
        "  'jax': jax.__version__, 'jaxlib': __import__('jaxlib').__version__}))\n"
    )
    p = subprocess.run([a.python, "-c", probe], capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    env = json.loads(p.stdout) if p.returncode == 0 else {"probe_error": p.stderr[-500:]}
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info if ln.startswith("flags")), []))
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    env["cpu"] = f"{cpu}, {os.cpu_count()} CPUs, {' '.join(isa)}"
    env["threads"] = ("T threads = pinned to T CPUs (taskset), OMP/OPENBLAS/MKL/MATMUL/RAYON_NUM_THREADS=T, "
                      "torch.set_num_threads(T), bpc --threads T; T=1 adds XLA_FLAGS=--xla_cpu_multi_thread_eigen=false")
    env["load_before"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    git = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.splitlines()
    env["bpc_commit"] = git.stdout.strip() + (f" (+ {len(dirty)} uncommitted files)" if dirty else "")
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bpc", required=True, help="the bpc binary (release build)")
    ap.add_argument("--peer", required=True, help="the benches/peer.rs executable")
    ap.add_argument("--python", default=sys.executable, help="the venv's python (default: this one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per train-step figure")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--frameworks", default="bpc," + ",".join(PEERS))
    ap.add_argument("--only", default="", help="comma-separated workload ids, e.g. mnist-mlp/b128,scalar-grad,gemm")
    ap.add_argument("--mnist", default=str(REPO.parent / "shared/data/mnist_train.csv.gz"),
                    help="MNIST training CSV for the peak-RSS figure ('' skips it)")
    ap.add_argument("--json-out", default=str(REPO / "target/peers/results.json"))
    a = ap.parse_args()
    a.only = set(filter(None, a.only.split(",")))
    threads = [int(t) for t in a.threads.split(",")]
    frameworks = a.frameworks.split(",")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    env = environment(a)
    log(f"environment: {json.dumps(env)}")
    recs = []
    for rnd in range(a.rounds):
        for t in threads:
            order = frameworks[rnd % len(frameworks):] + frameworks[:rnd % len(frameworks)]
            for fw in order:
                log(f"round {rnd + 1}/{a.rounds}, {t} thread(s), {fw}")
                got = bpc_jobs(a, t, log) if fw == "bpc" else peer_job(a, fw, t, log)
                recs += [{**r, "round": rnd} for r in got]
    if a.mnist and "bpc" in frameworks and (not a.only or "rss" in a.only):
        log("peak RSS of bpc train on MNIST")
        recs += rss(a, log)
    env["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out = Path(a.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "rounds": a.rounds, "seconds": a.seconds, "records": recs}, indent=1))
    log(f"raw results: {out}")
    print(report.render(env, recs, a.rounds, threads))


if __name__ == "__main__":
    main()
