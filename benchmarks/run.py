"""Measures speed and time-to-accuracy of configs; prints one JSON object.

  python benchmarks/run.py --configs=default,mlp \
      --manual_dir=../shared/datasets/mnist [--full_runs] [--compare]

Per config: training images/s (steady state, after compilation), eval images/s
over the 10,000 test images, compile time of the train step. With
--full_runs, also the real command (`main.py`, a fresh workdir) as a child
process: wall time to the first evaluation at >= 99% (and 99.5%) test accuracy (measured
from the command's start, so imports, data loading and compilation count; and
training alone, from the first step after compilation, metrics.jsonl's train_clock_s),
final accuracy, total wall time, where that time went (`startup_breakdown_s`:
imports, data, setup, first step with its compilation, the rest of training,
evaluation, other), CPU time over wall time, and peak resident memory.
--seeds=0,1,2 runs the command once per seed and adds their mean and spread.
"""

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from mnist_jax import hardware

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_list('configs', ['default'], 'Config names in configs/.')
flags.DEFINE_string('manual_dir', os.environ.get('MNIST_JAX_MANUAL_DIR'),
                    'Folder with the four official MNIST .gz files (default: $MNIST_JAX_MANUAL_DIR).')
flags.DEFINE_string('data_dir', None, 'tfds data folder.')
flags.DEFINE_integer('steps', 50, 'Timed training steps per config.')
flags.DEFINE_bool('full_runs', False, 'Also run each config end to end.')
flags.DEFINE_bool('compare', False, 'Also run configs/flax_example.py (the official Flax '
                  'example through this pipeline) and report speed ratios against it.')
flags.DEFINE_list('targets', ['0.99', '0.995'], 'Test accuracies for time-to-accuracy.')
flags.DEFINE_list('seeds', [], 'With --full_runs: one full run per seed (--config.seed=S), '
                  'and their mean and standard deviation.')
flags.DEFINE_multi_string('set', [], 'KEY=VALUE config overrides for every config run, '
                          'as --config.KEY=VALUE would give them.')
flags.DEFINE_string('keep_workdirs', None, 'Folder to keep the full runs\' workdirs in '
                    '(one per config, which must not exist yet), e.g. to evaluate them afterwards; '
                    'default: deleted.')
FLAGS = flags.FLAGS


def load_config(name):
  import importlib  # pylint: disable=g-import-not-at-top
  import ast  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config()
  config.manual_dir, config.data_dir = FLAGS.manual_dir, FLAGS.data_dir
  for item in FLAGS.set:
    key, value = item.split('=', 1)
    try:
      config[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      config[key] = value
  return config


def throughput(config, data) -> dict:
  """Steady-state train and eval images/s, and the train step's compile time."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from mnist_jax import state as state_lib, step as step_lib, train  # pylint: disable=g-import-not-at-top

  run, state = train.setup(config, data, state_lib.make_mesh())
  perm = run.permutation(1, len(run.labels))
  sums = jax.device_put(step_lib.TrainMetrics.zeros(), NamedSharding(run.mesh, P()))
  k = run.train_step.steps_per_call
  step = lambda state, sums, n: run.train_step(state, sums, run.images, run.labels, perm, n)

  start = time.perf_counter()
  state, sums = jax.block_until_ready(step(state, sums, k))  # Compiles, as training's first call.
  compile_s = time.perf_counter() - start
  steps = max(1, FLAGS.steps // k) * k
  start = time.perf_counter()
  state, sums = jax.block_until_ready(step(state, sums, steps))  # As train.train_epoch calls it.
  train_rate = steps * config.batch_size / (time.perf_counter() - start)

  evaluator = run.evaluators['test']
  jax.block_until_ready(evaluator.logits(state.eval_params, state.model_state))
  start = time.perf_counter()
  repeats = 3
  for _ in range(repeats):
    jax.block_until_ready(evaluator.logits(state.eval_params, state.model_state))
  eval_rate = repeats * evaluator.num_examples / (time.perf_counter() - start)
  return {'train_images_per_s': round(train_rate), 'eval_images_per_s': round(eval_rate),
          'train_step_compile_s': round(compile_s, 2)}


def full_run(name, seed=None) -> dict:
  """`main.py` end to end in a fresh workdir, as a user would run it."""
  from mnist_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as scratch:
    folder = name if seed is None else f'{name}_seed{seed}'
    workdir = os.path.join(FLAGS.keep_workdirs, folder) if FLAGS.keep_workdirs else scratch
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), f'--workdir={workdir}',
           f'--config={os.path.join(ROOT, "configs", name + ".py")}']
    cmd += [f'--config.manual_dir={FLAGS.manual_dir}'] if FLAGS.manual_dir else []
    cmd += [f'--config.data_dir={FLAGS.data_dir}'] if FLAGS.data_dir else []
    cmd += [f'--config.{item}' for item in FLAGS.set]
    cmd += [] if seed is None else [f'--config.seed={seed}']
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, stderr = child.communicate()
    wall = time.time() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kib = after.ru_maxrss
    cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if child.returncode:
      return {'error': stderr[-2000:]}
    lines = workdir_lib.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  result = {}
  for target in map(float, FLAGS.targets):
    reached = [l for l in lines if l['test_accuracy'] >= target]
    result[f'time_to_{target:g}_s'] = reached[0]['elapsed_s'] if reached else None
    # Training alone: from the first step after compilation to that evaluation's end.
    result[f'train_time_to_{target:g}_s'] = reached[0].get('train_clock_s') if reached else None
    result[f'epoch_to_{target:g}'] = reached[0]['epoch'] if reached else None
  return {
      **result,
      'final_test_accuracy': lines[-1]['test_accuracy'],
      'best_test_accuracy': max(l['test_accuracy'] for l in lines),
      'epochs': lines[-1]['epoch'],
      'wall_s': round(wall, 1),
      'startup_breakdown_s': breakdown(lines, wall),
      # Of the first step and the first evaluation: compiling their programs.
      'compile_s': lines[0].get('startup_compile_s'),
      # Both cores busy all the time would be 2.0 on a 2-core machine.
      'cpu_time_over_wall_time': round(cpu_s / wall, 2),
      # ru_maxrss of all children so far: exact for the first run, an upper bound after.
      'peak_rss_mib_upper_bound': round(peak_kib / 1024),
  }


def breakdown(lines: list[dict], wall: float) -> dict:
  """Where a run's wall time went, from its metrics.jsonl (see train._train): imports,
  data, setup, the first train step (compilation included), the rest of training,
  evaluations, and what is left (writing, checkpoints, exit)."""
  first = lines[0]
  if 'startup_imports_s' not in first:
    return {}
  parts = {'imports': first['startup_imports_s'], 'data': first['startup_data_s'],
           'setup': first['startup_setup_s'], 'first_step': first['startup_first_step_s'],
           'training': sum(l['epoch_train_s'] for l in lines) - first['startup_first_step_s'],
           'evaluation': sum(l['epoch_eval_s'] for l in lines)}
  parts['other'] = wall - sum(parts.values())
  return {k: round(v, 2) for k, v in parts.items()}


def over_seeds(runs: list[dict]) -> dict:
  """Mean, sample standard deviation and count of each figure over the runs that have it."""
  from mnist_jax.sweep import mean_std  # pylint: disable=g-import-not-at-top
  keys = ('final_test_accuracy', *(f'{kind}time_to_{float(t):g}_s' for t in FLAGS.targets
                                   for kind in ('', 'train_')), 'wall_s')
  stats = {key: mean_std([r.get(key) for r in runs]) for key in keys}
  return {key: stat for key, stat in stats.items() if stat}


def main(_):
  import jax  # pylint: disable=g-import-not-at-top
  from mnist_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  data = input_pipeline.load('mnist', FLAGS.data_dir, FLAGS.manual_dir)
  results = {'hardware': {'platform': platform.platform(), 'cpu': hardware.cpu(),
                          'jax_devices': [str(d) for d in jax.devices()]},
             'configs': {}}
  names = FLAGS.configs + (['flax_example'] if FLAGS.compare else [])
  for name in names:
    result = throughput(load_config(name), data)
    if FLAGS.full_runs and FLAGS.seeds:
      result['runs'] = {seed: full_run(name, int(seed)) for seed in FLAGS.seeds}
      result['over_seeds'] = over_seeds(list(result['runs'].values()))
    elif FLAGS.full_runs:
      result.update(full_run(name))
    key = name + ''.join(f' {s}' for s in FLAGS.set)
    while key in results['configs']:  # The same config again: e.g. a warm cache.
      key += ' (again)'
    results['configs'][key] = result
    print(f'{name}: {result}', file=sys.stderr)
  if FLAGS.compare:
    reference = results['configs'][next(k for k in results['configs'] if k.startswith('flax_example'))]
    for result in results['configs'].values():
      result['train_speed_vs_flax_example'] = round(
          result['train_images_per_s'] / reference['train_images_per_s'], 2)
  print(json.dumps(results, indent=2))


if __name__ == '__main__':
  app.run(main)
