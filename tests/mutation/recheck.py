"""Runs the mutants a pass left alive (benchmarks/results/mutation_NAME.txt) again,
against the tests as they are now: each diff applied to the scratch copy this runs
in, the toml's test command run, the diff taken back. Called by `run.sh --recheck`.

  python tests/mutation/recheck.py NAME RESULTS_FOLDER
"""

import re
import subprocess
import sys
import tomllib


def main(name: str, results: str) -> None:
  with open(f'tests/mutation/{name}.toml', 'rb') as f:
    command = tomllib.load(f)['cosmic-ray']['test-command']
  with open(f'{results}/mutation_{name}.txt') as f:
    diffs = re.findall(r'^--- a/.*?(?=^=+$)', f.read(), re.M | re.S)
  run = lambda *args, **kw: subprocess.run(*args, capture_output=True, text=True, **kw)
  if run(command, shell=True).returncode:
    sys.exit(f'{name}: the tests fail on the code as committed.')
  counts = {}
  for diff in diffs:
    changed = next(l for l in diff.splitlines() if l.startswith('+') and not l.startswith('+++'))
    if run(['git', 'apply', '-'], input=diff).returncode:
      verdict = 'does not apply'
    else:
      verdict = 'caught' if run(command, shell=True).returncode else 'survives'
      run(['git', 'apply', '-R', '-'], input=diff, check=True)
    counts[verdict] = counts.get(verdict, 0) + 1
    print(f'{verdict:>14}: {changed[1:].strip()}', flush=True)
  print(f'{name}: {len(diffs)} survivors rechecked: ' +
        ', '.join(f'{n} {v}' for v, n in sorted(counts.items())))


if __name__ == '__main__':
  main(*sys.argv[1:])
