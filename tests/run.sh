#!/usr/bin/env bash
# Install lcbench, its extras and its test tools into .venv, then check types, lint and run the tests.
# torch==2.13.0 is the CPU build on a machine without a GPU; see the README for GPU machines.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0 -e '.[dev,ray,slurm,kvquant]'
# A real one-node Slurm for tests/test_slurm_cluster.py: Debian's packages, where absent (root);
# without them those tests are skipped and say so
bash tests/local_slurm.sh install || echo "Slurm could not be installed here: the real-cluster tests will be skipped"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mypy
ruff check harness strategies kernels tests benchmarks
# Two workers, each test sent to whichever is free, except that a file with a module-scoped
# fixture (a Ray cluster, a loaded model) stays on one (tests/conftest.py's scheduler). Each
# worker's torch takes one core, so the two do not fight over the machine's two.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} pytest -n "${LCBENCH_TEST_WORKERS:-2}" -rs "$@"
