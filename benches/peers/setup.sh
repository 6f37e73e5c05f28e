#!/usr/bin/env bash
# Makes the Python virtual environment of the peer comparison (PyTorch, JAX on the CPU, NumPy)
# from the package index pip is configured for. Idempotent: an existing venv is reused.
#
#   benches/peers/setup.sh            # venv at $BPC_PEERS_VENV, default /work/peers-venv
#
# Installs the newest torch, jax[cpu] and numpy; the report prints the versions it ran.
#
# PyTorch's default Linux wheel pulls several GB of CUDA packages but runs on the CPU. To use a
# CPU-only wheel index instead, set TORCH_INDEX_URL to it.
set -euo pipefail
VENV="${BPC_PEERS_VENV:-/work/peers-venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if "$VENV/bin/python" -c 'import numpy, torch, jax' 2>/dev/null && [ -z "${BPC_PEERS_REINSTALL:-}" ]; then
    exit 0  # already made (BPC_PEERS_REINSTALL=1 upgrades)
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade --index-url "$TORCH_INDEX_URL" torch
else
    "$VENV/bin/python" -m pip install --quiet --upgrade torch
fi
"$VENV/bin/python" -m pip install --quiet --upgrade "jax[cpu]" numpy
"$VENV/bin/python" - <<'PY'
import numpy, torch, jax
print(f"venv ok: numpy {numpy.__version__}, torch {torch.__version__}, jax {jax.__version__}")
PY
