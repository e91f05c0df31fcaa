"""Test accuracy against wall time, from the measured results in benchmarks/results/.

  python benchmarks/tradeoff.py   # writes benchmarks/results/tradeoff.png, prints the table

Each point is one measured run of a whole command (start-up and compilation
included); nothing here is estimated.
"""

import json
import os

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
# Results of a config that has changed since: (file, config) -> label.
# Result files are named after the machine that measured them (the JSON's
# 'hardware' says more): the first matching prefix names the points.
HARDWARE = (('h100', 'H100'), ('h200', 'H200'), ('cpu_xeon', '2-core Xeon, AVX-512'),
            ('cpu', '2-core EPYC'))
FORMER = {('h100_default_fast_gpu.json', 'fast'): 'fast, former 2-epoch version',
          ('cpu_fast.json', 'fast'): 'fast, former batch-64 version',
          ('cpu_default_mlp_tiny.json', 'fast'): 'fast, former batch-64 version',
          ('cpu_xeon_fast_default.json', 'fast'): 'fast, former batch-64 version',
          ('cpu_xeon_fast_5_seeds.json', 'fast'): 'fast, before the one-channel convolution',
          ('cpu_xeon_default_3_seeds.json', 'default'): 'default, one part, before the one-channel convolution',
          ('cpu_xeon_versus_c3badfb_fast.json', 'fast'): 'fast, batch 32 in one part',
          ('cpu_xeon_versus_c3badfb_a3c2bd1.json', 'fast'): 'fast, Adam for the whole epoch',
          ('cpu_xeon_versus_c3badfb_6a35730.json', 'fast'): 'fast, 28x28, Muon for 80% of the epoch',
          ('h200_speed_3d4f75c.json', 'gpu'): 'gpu, start-up with PyTorch imported'}
# Runs measured again, seed for seed, in a later file: (file, config).
SUPERSEDED = {('cpu_xeon_fast_default.json', 'default'),  # By cpu_xeon_default_3_seeds.json.
              ('cpu_xeon_fast_breakdown.json', 'fast'),  # Seed 0 again, as in cpu_xeon_fast_5_seeds.
              # The same recipe with the start-up work after ec3052f, in ..._a3c2bd1.
              ('cpu_xeon_versus_c3badfb_ec3052f.json', 'fast'),
              # Seeds 0-4 again without tensorboardX's import of PyTorch, in h200_speed.json.
              ('h200_speed_3d4f75c.json', 'fast'),
              # Seed 0 again with the code of c266465, in h100_speed.json.
              ('h100_default_fast_gpu.json', 'default'), ('h100_default_fast_gpu.json', 'gpu')}


def points():
  """(hardware, config, seeds, wall seconds, final test accuracy, spread) of the
  measured runs.

  Several seeds of one config on one kind of hardware become one point: their
  means, and the spread (sample standard deviation) of their accuracy.
  """
  runs = {}  # (hardware, label) -> [(wall seconds, accuracy)], one per seed.
  for name in sorted(os.listdir(RESULTS)):
    if not name.endswith('.json'):
      continue
    with open(os.path.join(RESULTS, name)) as f:
      data = json.load(f)
    hardware = next(label for prefix, label in HARDWARE if name.startswith(prefix))
    for config, r in data.get('configs', {}).items():
      # `benchmarks/run.py --set seed=N` names its run 'CONFIG seed=N'; runs with
      # other overrides, and tiny (for tests), are no config's figures.
      config, *overrides = config.split(' ')
      if (config == 'tiny' or (name, config) in SUPERSEDED
          or not all(o.startswith('seed=') for o in overrides)):
        continue
      for run in r.get('runs', {}).values() if 'runs' in r else [r] if 'wall_s' in r else []:
        runs.setdefault((hardware, FORMER.get((name, config), config)), []).append(
            (run['wall_s'], run['final_test_accuracy']))
    for config, r in data.get('full_runs', {}).items():  # benchmarks/versus.py: this side.
      for run in r['runs']['new'].values() if (name, config) not in SUPERSEDED else ():
        runs.setdefault((hardware, FORMER.get((name, config), config)), []).append(
            (run['wall_s'], run['final_test_accuracy']))
    for r in data.get('final', {}).values():
      runs.setdefault((hardware, data['config'][8:-3]), []).append(
          (r['elapsed_s'], r['test_accuracy']))
  out = []
  for (hardware, config), seeds in runs.items():
    wall, accuracy = np.array(seeds).T
    out.append((hardware, config, len(seeds), float(wall.mean()), float(accuracy.mean()),
                float(accuracy.std(ddof=1)) if len(seeds) > 1 else 0.0))
  return out


def main():
  rows = points()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for (_, hardware), marker in zip(HARDWARE, 'sDo'):
    mine = [r for r in rows if r[0] == hardware]
    ax.errorbar([r[3] for r in mine], [100 * r[4] for r in mine], yerr=[100 * r[5] for r in mine],
                fmt=marker, capsize=3, label=hardware)
    for _, config, n, wall, accuracy, _ in mine:
      ax.annotate(f'{config} ({n} seeds)' if n > 1 else config, (wall, 100 * accuracy),
                  fontsize=7, xytext=(4, 2), textcoords='offset points')
  ax.set_xscale('log')
  ticks = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
  ax.set_xticks(ticks, [str(t) for t in ticks])
  ax.minorticks_off()
  ax.set_xlabel('wall time of the whole command (s, log scale)')
  ax.set_ylabel('final test accuracy (%)')
  ax.set_title('Accuracy against time, measured')
  ax.grid(alpha=0.3)
  ax.legend()
  path = os.path.join(RESULTS, 'tradeoff.png')
  fig.savefig(path, dpi=100, bbox_inches='tight')
  print('| hardware | config | seeds | wall time (mean) | test accuracy (mean ± std) |\n'
        '| --- | --- | --- | --- | --- |')
  for hardware, config, n, wall, accuracy, spread in sorted(rows, key=lambda r: (r[0], r[3])):
    figure = f'{100 * accuracy:.2f} ± {100 * spread:.2f}%' if n > 1 else (
        f'{100 * accuracy:.2f}% (one seed)')
    print(f'| {hardware} | `{config}` | {n} | {wall:.1f} s | {figure} |')
  print(f'\nWrote {path}')


if __name__ == '__main__':
  main()
