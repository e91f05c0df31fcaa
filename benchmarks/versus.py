"""This checkout against an older commit, side by side on one machine; one JSON object.

  python benchmarks/versus.py --baseline=c3badfb --manual_dir=../shared/datasets/mnist \
      [--full_configs=fast --seeds=0,1,2,3,4] [--speed_configs=default,best --rounds=3] \
      [--baseline_python=OLD_VENV/bin/python]

Machines differ 2-3x in speed, so a speed-up is only a ratio measured in one
run on one machine. The baseline commit is exported (`git archive`) to a
temporary folder; each of its runs and this checkout's runs its own
`benchmarks/run.py` with its own code, alternately (old, new, then new, old,
so that a machine slowing down or speeding up weighs on both alike):

- --full_configs, once per seed: `main.py` end to end (run.py --full_runs) from
  the command's start to the first evaluation at >= 99% test accuracy, after one
  untimed run of each side to warm the compilation caches; mean +- sample std of
  that time, of the final accuracy and of the training images/s, and the ratio
  of the mean times (old / new: above 1, this checkout is faster);
- --speed_configs, --rounds times: steady-state training and evaluation images/s
  (run.py without --full_runs), medians and their ratio (new / old).
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile

from absl import app, flags

from mnist_jax import hardware
from mnist_jax.sweep import mean_std

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string('baseline', 'c3badfb', 'The commit to compare against.')
flags.DEFINE_string('baseline_python', None, 'The Python (of a virtualenv) that runs the '
                    'baseline, for a baseline on another stack; default: this one.')
flags.DEFINE_list('full_configs', ['fast'], 'Configs run end to end, once per seed.')
flags.DEFINE_list('seeds', ['0', '1', '2', '3', '4'], 'Seeds of the full runs.')
flags.DEFINE_list('speed_configs', ['default', 'best'], 'Configs whose images/s are compared.')
flags.DEFINE_integer('rounds', 3, 'Alternations of the images/s measurement.')
flags.DEFINE_integer('steps', 100, 'Timed training steps of each images/s measurement.')
flags.DEFINE_string('manual_dir', os.environ.get('MNIST_JAX_MANUAL_DIR'),
                    'Folder with the four official MNIST .gz files (default: $MNIST_JAX_MANUAL_DIR).')
flags.DEFINE_string('data_dir', None, 'tfds data folder.')
FLAGS = flags.FLAGS


def export(commit: str, folder: str) -> str:
  """The tree of `commit`, written to `folder`; returns its full hash."""
  full = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--verify', f'{commit}^{{commit}}'],
                        capture_output=True, text=True)
  if full.returncode:
    sys.exit(f'Error: --baseline={commit} is not a commit of {ROOT}: {full.stderr.strip()}')
  archive = os.path.join(folder, 'tree.tar')
  subprocess.run(['git', '-C', ROOT, 'archive', '-o', archive, full.stdout.strip()], check=True)
  with tarfile.open(archive) as tar:
    tar.extractall(os.path.join(folder, 'tree'), filter='data')
  return full.stdout.strip()


def run_py(tree: str, configs: list[str], extra: list[str]) -> dict:
  """`tree`'s own benchmarks/run.py, on `tree`'s code: {config: result}."""
  python = sys.executable if tree == ROOT else FLAGS.baseline_python or sys.executable
  cmd = [python, os.path.join(tree, 'benchmarks', 'run.py'),
         f'--configs={",".join(configs)}', f'--steps={FLAGS.steps}', *extra]
  cmd += [f'--manual_dir={FLAGS.manual_dir}'] if FLAGS.manual_dir else []
  cmd += [f'--data_dir={FLAGS.data_dir}'] if FLAGS.data_dir else []
  env = dict(os.environ, PYTHONPATH=tree)
  done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
  if done.returncode:
    sys.exit(f'Error: {" ".join(cmd)} failed in {tree}:\n{done.stderr[-3000:]}')
  results = json.loads(done.stdout)['configs']
  return {key.split(' ')[0]: value for key, value in results.items()}


def stack(python: str) -> dict:
  """The interpreter, Python and JAX versions that one side runs on."""
  versions = subprocess.run([python, '-c', 'import sys, jax, flax; print(sys.version.split()[0], '
                             'jax.__version__, flax.__version__)'],
                            capture_output=True, text=True, check=True).stdout.split()
  return dict(zip(('executable', 'python', 'jax', 'flax'), [python, *versions]))


def alternate(i: int, trees: dict[str, str]) -> list[tuple[str, str]]:
  """(side, tree) in the order of round i: old, new; new, old; ..."""
  items = list(trees.items())
  return items if i % 2 == 0 else items[::-1]


def main(_):
  current = subprocess.run(['git', '-C', ROOT, 'describe', '--always', '--dirty'],
                           capture_output=True, text=True).stdout.strip()
  results = {'hardware': {'platform': platform.platform(), 'cpu': hardware.cpu()},
             'current': current, 'full_runs': {}, 'speed': {},
             'stack': {side: stack(python) for side, python in (
                 ('old', FLAGS.baseline_python or sys.executable), ('new', sys.executable))}}
  with tempfile.TemporaryDirectory() as scratch:
    results['baseline'] = export(FLAGS.baseline, scratch)
    trees = {'old': os.path.join(scratch, 'tree'), 'new': ROOT}
    for name in FLAGS.full_configs:
      for side, tree in trees.items():  # Warm the compilation caches.
        run_py(tree, [name], ['--full_runs', '--steps=1'])
      runs = {'old': {}, 'new': {}}
      for i, seed in enumerate(FLAGS.seeds):
        for side, tree in alternate(i, trees):
          result = run_py(tree, [name], ['--full_runs', f'--set=seed={seed}'])[name]
          runs[side][seed] = {key: result.get(key) for key in (
              'time_to_0.99_s', 'final_test_accuracy', 'wall_s', 'train_images_per_s',
              'startup_breakdown_s')}
          print(f'{name} seed {seed} {side}: {runs[side][seed]}', file=sys.stderr)
      summary = {side: {key: mean_std([r[key] for r in side_runs.values()]) for key in (
          'time_to_0.99_s', 'final_test_accuracy', 'wall_s', 'train_images_per_s')}
                 for side, side_runs in runs.items()}
      old, new = (summary[side]['time_to_0.99_s'] for side in ('old', 'new'))
      results['full_runs'][name] = {
          'runs': runs, 'over_seeds': summary,
          'time_to_0.99_ratio_old_over_new': (round(old['mean'] / new['mean'], 2)
                                               if old and new else None)}
    for name in FLAGS.speed_configs:
      rates = {'old': [], 'new': []}
      for i in range(FLAGS.rounds):
        for side, tree in alternate(i, trees):
          rates[side].append(run_py(tree, [name], [])[name])
          print(f'{name} round {i} {side}: {rates[side][-1]}', file=sys.stderr)
      medians = {side: {key: statistics.median(r[key] for r in side_rates)
                        for key in ('train_images_per_s', 'eval_images_per_s')}
                 for side, side_rates in rates.items()}
      results['speed'][name] = {
          'rounds': rates, 'median': medians,
          'train_ratio_new_over_old': round(medians['new']['train_images_per_s'] /
                                            medians['old']['train_images_per_s'], 2),
          'eval_ratio_new_over_old': round(medians['new']['eval_images_per_s'] /
                                           medians['old']['eval_images_per_s'], 2)}
  print(json.dumps(results, indent=2))


if __name__ == '__main__':
  app.run(main)
