"""One peer process: `worker.py FRAMEWORK --threads T [--seconds S] [--only ID,...]`.

FRAMEWORK is `torch-eager`, `torch-compile`, `jax` or `numpy`. Prints one JSON object per
measurement on stdout. The orchestrator (compare.py) starts it with the thread settings in
the environment and the CPU affinity already applied, since BLAS and XLA read them at import."""

import argparse
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("framework", choices=["torch-eager", "torch-compile", "jax", "numpy"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--only", default="", help="comma-separated workload ids (default: all)")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    if a.framework.startswith("torch"):
        import torch_peer

        torch_peer.run(a.threads, a.seconds, a.framework == "torch-compile", only)
    elif a.framework == "jax":
        import jax_peer

        jax_peer.run(a.threads, a.seconds, only)
    else:
        import numpy_peer

        numpy_peer.run(a.threads, a.seconds, only)


if __name__ == "__main__":
    sys.exit(main())
