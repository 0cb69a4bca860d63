#!/usr/bin/env bash
# The GPU update benchmark on a machine without network access that has CUDA PyTorch (the lent
# H200's image: Python 3.12, torch 2.11). Two steps:
#   bash benchmarks/gpu_check.sh fetch   # here: the missing pure-Python wheels into .whl/ (git-ignored)
#   bash benchmarks/gpu_check.sh run     # there, with .whl carried: install them to /tmp/site, benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  fetch)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 -d .whl stable-baselines3==2.9.2 gymnasium==1.4.0 \
      farama-notifications==0.0.6 omegaconf==2.3.1 hydra-core==1.3.8
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # sdist only on PyPI
    ls .whl ;;
  run)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 benchmarks/bench_update.py --device cuda --rounds 5 --updates 20 --compile ;;
  *) echo "usage: $0 fetch|run" >&2; exit 2 ;;
esac
