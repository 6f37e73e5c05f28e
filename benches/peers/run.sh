#!/usr/bin/env bash
# The peer comparison in one command: makes the Python venv (setup.sh), builds bpc and the
# Rust peer bench in release, then runs bpc, PyTorch (eager and torch.compile), JAX and NumPy
# on the SPEC §6 workloads at 1 and 2 threads and prints the report (compare.py).
#
#   benches/peers/run.sh                        # full run, 3 rounds (about 15 minutes)
#   benches/peers/run.sh --rounds 1 --seconds 0.5 --only mnist-mlp/b128,scalar-grad
#
# Arguments go to compare.py (--help lists them). BPC_PEERS_VENV overrides the venv path
# (default /work/peers-venv); raw results go to target/peers/results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${BPC_PEERS_VENV:-/work/peers-venv}"

BPC_PEERS_VENV="$VENV" bash benches/peers/setup.sh >&2
cargo build --release --bin bpc >&2
# The bench executable's path is in cargo's JSON messages.
PEER=$(cargo bench --no-run --bench peer --message-format=json 2>/dev/null \
    | "$VENV/bin/python" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "peer" and m.get("executable"):
        print(m["executable"])')
if [ -z "$PEER" ]; then
    echo "run.sh: building benches/peer.rs failed (cargo bench --no-run --bench peer)" >&2
    exit 1
fi
exec "$VENV/bin/python" benches/peers/compare.py --bpc target/release/bpc --peer "$PEER" --python "$VENV/bin/python" "$@"
