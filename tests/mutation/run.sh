#!/usr/bin/env bash
# Mutation testing with cosmic-ray (pip install cosmic-ray): every mutant of a module
# (an operator flipped, a constant changed, a condition negated...) is made in a scratch
# copy of the committed code, and the tests that own the module run against it; a
# mutant they do not notice survives. Minutes per module, so not part of CI.
#
#   tests/mutation/run.sh                # every module configured here (*.toml)
#   tests/mutation/run.sh workdir        # one of them
#   tests/mutation/run.sh --recheck serve  # its survivors again, against today's tests
#
# The report of each goes to benchmarks/results/mutation_<name>.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git -C "$root" archive HEAD | tar -x -C "$scratch"
cd "$scratch"
# The scratch copy's modules, not the checkout's (installed with -e), are the ones tested.
export PYTHONPATH=$scratch
export MNIST_JAX_MANUAL_DIR=${MNIST_JAX_MANUAL_DIR:-$root/../shared/datasets/mnist}
# The prepared MNIST and the tests' small trained model, made once by the baseline run
# from the code as committed, and reused by every mutant's run (tests/conftest.py).
export MNIST_JAX_TEST_CACHE=$scratch/test_cache
if [[ ${1:-} == --recheck ]]; then
  shift
  for name in "$@"; do python tests/mutation/recheck.py "$name" "$root/benchmarks/results"; done
  exit
fi
names=${*:-$(cd tests/mutation && ls *.toml | sed 's/\.toml$//')}
for name in $names; do
  cosmic-ray init "tests/mutation/$name.toml" "$name.sqlite"
  cr-filter-operators "$name.sqlite" "tests/mutation/$name.toml"  # Its exclude-operators, if any.
  if grep -q 'filters.line-filter' "tests/mutation/$name.toml"; then  # Its lines, if it names some.
    cr-filter-lines "$name.sqlite" --config "tests/mutation/$name.toml"
  fi
  if grep -q 'filters.sample' "tests/mutation/$name.toml"; then  # A sample, if it asks for one.
    python tests/mutation/sample.py "$name.sqlite" "tests/mutation/$name.toml"
  fi
  cosmic-ray baseline "tests/mutation/$name.toml"  # The tests pass on the code as it is.
  cosmic-ray exec "tests/mutation/$name.toml" "$name.sqlite"
  cr-report --show-diff --surviving-only "$name.sqlite" > "$root/benchmarks/results/mutation_$name.txt"
  tail -3 "$root/benchmarks/results/mutation_$name.txt"
done
