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
HARDWARE = (('h100', 'H100'), ('cpu_xeon', '2-core Xeon, AVX-512'), ('cpu', '2-core EPYC'))
FORMER = {('h100_default_fast_gpu.json', 'fast'): 'fast, former 2-epoch version'}


def points():
  """(hardware, config, wall seconds, final test accuracy, spread) of the measured runs.

  Several seeds of one config on one kind of hardware become one point: their
  means, and the spread (standard deviation) of their accuracy.
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
      if 'wall_s' in r and config != 'tiny' and all(o.startswith('seed=') for o in overrides):
        runs.setdefault((hardware, FORMER.get((name, config), config)), []).append(
            (r['wall_s'], r['final_test_accuracy']))
    for r in data.get('final', {}).values():
      runs.setdefault((hardware, data['config'][8:-3]), []).append(
          (r['elapsed_s'], r['test_accuracy']))
  out = []
  for (hardware, config), seeds in runs.items():
    wall, accuracy = np.array(seeds).T
    label = f'{config} ({len(seeds)} seeds)' if len(seeds) > 1 else config
    out.append((hardware, label, float(wall.mean()), float(accuracy.mean()),
                float(accuracy.std())))
  return out


def main():
  rows = points()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for (_, hardware), marker in zip(HARDWARE, 'sDo'):
    mine = [r for r in rows if r[0] == hardware]
    ax.errorbar([r[2] for r in mine], [100 * r[3] for r in mine], yerr=[100 * r[4] for r in mine],
                fmt=marker, capsize=3, label=hardware)
    for _, config, wall, accuracy, _ in mine:
      ax.annotate(config, (wall, 100 * accuracy), fontsize=7, xytext=(4, 2),
                  textcoords='offset points')
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
  print('| hardware | config | wall time | test accuracy |\n| --- | --- | --- | --- |')
  for hardware, config, wall, accuracy, spread in sorted(rows, key=lambda r: (r[0], r[2])):
    plus = f' ± {100 * spread:.3f}' if spread else ''
    print(f'| {hardware} | `{config}` | {wall:.1f} s | {100 * accuracy:.3f}%{plus} |')
  print(f'\nWrote {path}')


if __name__ == '__main__':
  main()
