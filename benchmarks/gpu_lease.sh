#!/usr/bin/env bash
# A short lease of a GPU machine (minutes of device time, a command of at most 10) as one
# command: benchmarks/gpu_session.py's speed phase for configs/gpu_fast.py (then `fast`, in
# the same command, for reference), then the published models for a few epochs, to time them.
#
#   bash benchmarks/gpu_lease.sh prepare D   # here: D holds mnist_jax_arrays/mnist/*.npy
#       (~/tensorflow_datasets after any run of main.py here with the default data_dir)
#   bash benchmarks/gpu_lease.sh run [gpu_session.py flags]   # there, .devdata carried
#
# The GPU image has JAX 0.11.2 and its CUDA plugin but not all of our stack at our
# versions: `prepare` downloads those wheels and gzips the cached arrays into .devdata/
# (ignored by git, about 14 MB); `run` installs the wheels without their dependencies
# (the image has them), unpacks the arrays and writes everything to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  prepare)
    [ -d "${2:-}/mnist_jax_arrays/mnist" ] || {
      echo "usage: $0 prepare D, where D/mnist_jax_arrays/mnist/ holds the cached arrays" >&2
      exit 2; }
    rm -rf .devdata && mkdir -p .devdata/wheels
    # For the image's Python 3.12, whichever Python runs this.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version=3.12 \
        -d .devdata/wheels flax==0.12.12 optax==0.2.8 \
        orbax-checkpoint==0.12.8 ml-collections==1.1.0 tensorboardx==2.6.5
    tar czf .devdata/arrays.tgz -C "$2" mnist_jax_arrays/mnist
    du -sh .devdata
    ;;
  run)
    shift
    : "${OUT:?run sets OUT: the folder whose files come back}"
    python3 -m pip install -q --no-deps --no-index .devdata/wheels/*.whl
    data=$(mktemp -d)
    tar xzf .devdata/arrays.tgz -C "$data"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    # Deadlines: seconds from the start, one per phase; what finished is in $OUT by then
    # (each --speed_runs is one benchmarks/run.py, whose JSON comes whole or not at all).
    PYTHONPATH=. python3 benchmarks/gpu_session.py --out="$OUT" --data_dir="$data" \
        --phases=speed,published --deadlines_s=200,330 \
        --speed_runs='--configs=gpu_fast --seeds=0,1,2,3,4' \
        --speed_runs='--configs=fast --seeds=0,1,2,3,4' \
        --published_epochs=5 --published_seeds=0 --select_seeds=0 --parallel=4 \
        "$@" 2> >(tee "$OUT/session.log" >&2)
    ;;
  *)
    echo "usage: $0 prepare D | run [gpu_session.py flags]" >&2
    exit 2
    ;;
esac
