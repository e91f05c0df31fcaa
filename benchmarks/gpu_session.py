"""A lent GPU's measurements as one command per phase, for a lease of minutes.

  python benchmarks/gpu_session.py --out=DIR --data_dir=D [--phases=speed,accuracy,select,published]
      [--deadlines_s=290,535,...: one per phase] [--parallel=6] [--tiny]

D holds the cached arrays (D/mnist_jax_arrays/mnist/*.npy, as input_pipeline.load
leaves them), so nothing needs TensorFlow or the network.

speed: one run at a time, the GPU to itself: `benchmarks/run.py --full_runs` for
  `gpu_fast`, `fast` and `gpu` in float32 (seeds 0-4), `gpu_fast`, `fast`, `default`
  and `gpu` in bfloat16, and `default` in float32 (seed 0), or --speed_runs: training
  images/s; time to 99% and 99.5% test accuracy from the command's start and from
  the first step after compilation (train_clock_s). -> DIR/speed.json
accuracy: up to --parallel runs at once on the one GPU: `best`, seeds 0-4, on all
  60,000 training images, and the ensemble candidates (MEMBERS), each on the first
  50,000 with the last 10,000 held out for validation; then each run's softmax
  outputs on the test (and validation) images, plain and with test-time
  augmentation. -> DIR/accuracy.json (commands, every epoch's metrics, errors),
  DIR/probabilities_test.npz, DIR/probabilities_val.npz. Ensembles are chosen on
  the validation outputs afterwards, on any machine: benchmarks/ensembles.py
  --probabilities=DIR.
select: a change to `best` chosen on validation. Each of RECIPES with --select_seeds
  seeds on the first 50,000 images (--parallel at once); the recipe with the highest
  mean final validation accuracy then trains on all 60,000 with seeds 0-4.
  -> DIR/select.json (the recipes, every run, the validation means, the choice),
  DIR/select/probabilities_{test,val}.npz: the recipes' runs are ensemble candidates
  too (benchmarks/ensembles.py --probabilities=DIR/select).
published: the published models of PUBLISHED (An et al.'s three, configs/an2020.py
  with 3x3, 5x5 and 7x7 kernels; Byerly et al.'s, configs/byerly2021.py) for
  --published_epochs epochs (each config's own, their papers' 150 and 300, when not
  given): each with --select_seeds seeds on the first 50,000 images (validation), and
  with --published_seeds on all 60,000. -> DIR/published.json,
  DIR/published/probabilities_{test,val}.npz; which of them to average is chosen on
  validation afterwards (benchmarks/ensembles.py).
--tiny cuts every run to a few steps: a check of this script on a CPU.

Each phase writes its JSON as each part ends and stops starting new runs at its
deadline, so a command stopped at its time limit keeps what it finished; a run
stopped at the deadline keeps its epochs so far (their pace; not final figures,
which select leaves out).
"""

import concurrent.futures
import itertools
import json
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

from mnist_jax import selection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_list('phases', ['speed', 'accuracy'], 'What to measure, in this order.')
flags.DEFINE_string('out', None, 'Folder for the JSON and .npz files.', required=True)
flags.DEFINE_string('data_dir', None, 'Folder with the cached arrays.', required=True)
flags.DEFINE_multi_string('speed_runs', [
    '--configs=gpu_fast,fast,gpu --seeds=0,1,2,3,4',
    '--configs=gpu_fast,fast,default,gpu --set=compute_dtype=bfloat16',
    '--configs=default'], 'speed: benchmarks/run.py\'s arguments, one run of it each.')
flags.DEFINE_string('runs_dir', '/tmp/gpu_session_runs', 'accuracy: the runs\' workdirs '
                    '(checkpoints: not under --out, which comes back).')
flags.DEFINE_bool('tiny', False, 'A few steps per run: a check of the script itself.')
flags.DEFINE_integer('parallel', 5, 'accuracy, select: runs at once.')
flags.DEFINE_integer('select_seeds', 2, 'select: seeds of each recipe on validation.')
flags.DEFINE_list('deadlines_s', ['86400', '86400'], 'Per phase, seconds after the '
                  'command\'s start: start nothing new after it; stop what still runs at it. '
                  'One per phase.')
flags.DEFINE_integer('published_epochs', None, 'published: epochs of each run; when not '
                     'given, each config\'s own.')
flags.DEFINE_list('published_seeds', ['0', '1', '2', '3', '4'],
                  'published: seeds on all 60,000.')
flags.DEFINE_string('probabilities', None, 'Internal: write the softmax outputs of this '
                    'workdir to --out (an .npz) and exit.')
FLAGS = flags.FLAGS

START = time.time()
DEADLINE = [86400.0]  # The phase's, from --deadlines_s.
BEST = 'configs/best.py'
# Ensemble candidates: different architectures, views, augmentations, schedules and
# optimizers; which of them to average is chosen on validation, never on test.
MEMBERS = {
    'best_s10': [BEST, 'seed=10'],
    'wide_head': [BEST, 'seed=12', 'num_epochs=15', 'dense_features=512', 'dropout_rate=0.5',
                  'augment_rotation=10', 'augment_scale=0.1'],
    'strong_augment': [BEST, 'seed=13', 'num_epochs=15', 'augment_rotation=15',
                       'augment_scale=0.15', 'schedule=cosine', 'label_smoothing=0.05'],
    'crop2': [BEST, 'seed=14', 'num_epochs=20', 'input_crop=2'],
    'muon': [BEST, 'seed=15', 'num_epochs=20', 'optimizer=muon', 'weight_decay=0.0'],
    'wide_cnn': [BEST, 'seed=16', 'num_epochs=15', 'conv_features=(48,96,192)'],
    'small_no_bn': ['configs/default.py', 'seed=17', 'num_epochs=30', 'microbatches=1',
                    'augment_rotation=10', 'augment_scale=0.1', 'ema_decay=0.999'],
}
# select: changes to `best`, each trained with --select_seeds seeds on the first
# 50,000 images; the one with the highest mean validation accuracy is then trained
# on all 60,000 with seeds 0-4 and scored on test. Elastic: Simard et al.'s 34 and
# 4, and a milder 20 beside best's rotation and scaling.
RECIPES = {
    'best': [],
    'elastic': ['augment_elastic=34'],
    'elastic_mild': ['augment_elastic=20'],
    'wide': ['conv_features=(48,96,192)'],
}
TINY = ['num_epochs=2', 'train_steps_per_epoch=5']
# published: each paper's model, as configs of ours.
PUBLISHED = {'an2020_3': 'configs/an2020.py:3', 'an2020_5': 'configs/an2020.py:5',
             'an2020_7': 'configs/an2020.py:7', 'byerly2021': 'configs/byerly2021.py'}


def remaining() -> float:
  return DEADLINE[0] - (time.time() - START)


def write(name: str, results: dict) -> None:
  with open(os.path.join(FLAGS.out, name), 'w') as f:
    json.dump(results, f, indent=1)


def log(message: str) -> None:
  print(f'[{time.time() - START:6.1f} s] {message}', file=sys.stderr, flush=True)


def environment() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from mnist_jax import hardware  # pylint: disable=g-import-not-at-top
  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'numpy'):
    try:
      versions[name] = __import__(name, fromlist=['_']).__version__
    except (ImportError, AttributeError):
      versions[name] = None
  try:
    gpu = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version',
                          '--format=csv,noheader'], capture_output=True, text=True,
                         timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    gpu = None
  return {'gpu': gpu, 'jax_devices': [str(d) for d in jax.devices()], 'cpu': hardware.cpu(),
          'cpus': os.cpu_count(), 'versions': versions,
          'env': {k: v for k, v in os.environ.items() if k.startswith(('XLA_', 'JAX_'))}}


def speed() -> None:
  results = {'environment': environment(), 'runs': {}}
  write('speed.json', results)
  for key in FLAGS.speed_runs:
    args = key.split()
    if remaining() < 30:
      results['runs'][key] = {'error': 'not started: deadline'}
      continue
    cmd = [sys.executable, os.path.join(ROOT, 'benchmarks', 'run.py'), '--full_runs',
           f'--data_dir={FLAGS.data_dir}', *args]
    if FLAGS.tiny:
      cmd = [c.replace('0,1,2,3,4', '0,1') for c in cmd] + ['--steps=4', '--targets=0.3,0.6'] + [
          f'--set={s}' for s in TINY]
    log(f'speed: {key}')
    try:
      done = subprocess.run(cmd, capture_output=True, text=True, timeout=remaining())
      entry = (json.loads(done.stdout) if done.returncode == 0 else
               {'error': done.stderr[-3000:]})
    except subprocess.TimeoutExpired:
      entry = {'error': 'stopped at the deadline'}
    results['runs'][key] = {'command': shlex.join(['python', *cmd[1:]]).replace(ROOT + '/', ''),
                            **entry}
    write('speed.json', results)
    log(f'speed: {key} done')


def train_then_probabilities(name: str, config: str, overrides: list[str]) -> dict:
  """Trains one run in its own workdir, then writes its softmax outputs."""
  workdir = os.path.join(FLAGS.runs_dir, name)
  overrides = overrides + (TINY if FLAGS.tiny else [])
  cmd = [sys.executable, os.path.join(ROOT, 'main.py'), f'--workdir={workdir}',
         f'--config={os.path.join(ROOT, config)}', f'--config.data_dir={FLAGS.data_dir}',
         *[f'--config.{o}' for o in overrides]]
  entry = {'command': shlex.join(['python', 'main.py', f'--workdir=runs/{name}',
                                  f'--config={config}', *[f'--config.{o}' for o in overrides]])}
  if remaining() < 20:
    return {**entry, 'error': 'not started: deadline'}
  start = time.time()
  from mnist_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  # Every epoch's metrics, also of a run stopped at the deadline: its pace and curve.
  epochs = lambda: workdir_lib.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  try:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(remaining(), 1))
    if done.returncode:
      return {**entry, 'epochs': epochs(), 'error': done.stderr[-3000:]}
    entry['wall_s'] = round(time.time() - start, 1)
    entry['epochs'] = epochs()
    out = os.path.join(FLAGS.runs_dir, f'{name}.npz')
    done = subprocess.run([sys.executable, __file__, f'--probabilities={workdir}',
                           f'--out={out}', f'--data_dir={FLAGS.data_dir}',
                           f'--tiny={FLAGS.tiny}'],
                          capture_output=True, text=True, timeout=max(remaining(), 1))
    if done.returncode:
      return {**entry, 'error': 'probabilities: ' + done.stderr[-3000:]}
    entry['probabilities'] = out
  except subprocess.TimeoutExpired:
    entry.update(epochs=epochs(), error='stopped at the deadline')
  return entry


def accuracy() -> None:
  best = [(f'best_seed{s}', (BEST, [f'seed={s}'])) for s in range(5)]
  members = [(name, (config, [*o, 'validation_size=10000']))
             for name, (config, *o) in MEMBERS.items()]
  # Alternately, so that a deadline leaves some of each.
  jobs = dict(j for pair in itertools.zip_longest(best, members) for j in pair if j)
  results = {'environment': environment(), 'runs': {}}
  write('accuracy.json', results)
  run_all(jobs, results, 'accuracy.json', FLAGS.out)


def save_probabilities(runs: dict, folder: str) -> None:
  """folder/probabilities_{test,val}.npz: every finished run's softmax outputs so far."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  for split in ('test', 'val'):
    arrays = {}
    for run, entry in runs.items():
      if 'probabilities' in entry:
        with np.load(entry['probabilities']) as saved:
          arrays.update({f'{run}/{k}': saved[k] for k in saved.files if k.startswith(split)})
    np.savez_compressed(os.path.join(folder, f'probabilities_{split}.npz'), **arrays)


def run_all(jobs: dict, results: dict, name: str, folder: str) -> None:
  """Trains `jobs` (name -> (config, overrides)) --parallel at a time into
  results['runs'], written to DIR/name; their softmax outputs to `folder`."""
  with concurrent.futures.ThreadPoolExecutor(FLAGS.parallel) as pool:
    futures = {pool.submit(train_then_probabilities, run, config, overrides): run
               for run, (config, overrides) in jobs.items()}
    for future in concurrent.futures.as_completed(futures):
      run = futures[future]
      results['runs'][run] = future.result()
      write(name, results)
      log(f'{name}: {run} done' + (' (error)' if 'error' in results['runs'][run] else ''))
      save_probabilities(results['runs'], folder)  # After every run: what is done comes back.


def validation_run(recipe: str, s: int) -> tuple[str, int]:
  """The select phase's s-th run of `recipe` on validation: its name and seed."""
  return f'{recipe}_s{100 + s}', 100 + s


def choose_recipe(runs: dict, seeds: int) -> tuple[str, dict]:
  """selection.choose_recipe over the select phase's finished runs of each of RECIPES
  (a run stopped by an error or the deadline keeps its epochs so far: not final)."""
  def last(name):
    run = runs.get(name, {})
    return {} if 'error' in run or not run.get('epochs') else run['epochs'][-1]
  return selection.choose_recipe({
      recipe: [last(validation_run(recipe, s)[0]) for s in range(seeds)] for recipe in RECIPES})


def select() -> None:
  """RECIPES on validation, then the chosen one on all the training images, seeds 0-4."""
  results = {'environment': environment(), 'recipes': RECIPES, 'runs': {}}
  write('select.json', results)
  jobs = {}
  for s in range(FLAGS.select_seeds):
    for recipe, overrides in RECIPES.items():
      name, seed = validation_run(recipe, s)
      jobs[name] = (BEST, [*overrides, f'seed={seed}', 'validation_size=10000'])
  run_all(jobs, results, 'select.json', os.path.join(FLAGS.out, 'select'))
  chosen, results['validation_means'] = choose_recipe(results['runs'], FLAGS.select_seeds)
  results['chosen'] = chosen
  write('select.json', results)
  log(f'select: chose {chosen} {results["validation_means"]}')
  if chosen:
    run_all({f'chosen_seed{s}': (BEST, [*RECIPES[chosen], f'seed={s}']) for s in range(5)},
            results, 'select.json', os.path.join(FLAGS.out, 'select'))


def published() -> None:
  """PUBLISHED's models, on validation and on all the training images."""
  results = {'environment': environment(), 'runs': {}}
  write('published.json', results)
  epochs = [f'num_epochs={FLAGS.published_epochs}'] if FLAGS.published_epochs else []
  jobs = {}
  for name, config in PUBLISHED.items():
    for s in range(FLAGS.select_seeds):
      jobs[f'{name}_val_s{100 + s}'] = (config, [*epochs, f'seed={100 + s}',
                                                 'validation_size=10000'])
    for s in FLAGS.published_seeds:
      jobs[f'{name}_s{s}'] = (config, [*epochs, f'seed={s}'])
  run_all(jobs, results, 'published.json', os.path.join(FLAGS.out, 'published'))


def probabilities() -> None:
  """Softmax outputs of --probabilities on test (and validation), plain and with TTA."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from mnist_jax import config_lib, evaluate, input_pipeline  # pylint: disable=g-import-not-at-top
  config = config_lib.load_saved(FLAGS.probabilities, {'data_dir': FLAGS.data_dir})
  data = input_pipeline.load(config.dataset, FLAGS.data_dir)
  splits = {'test': data['test']}
  if config.validation_size:
    splits['val'] = input_pipeline.hold_out(data, config.validation_size)['validation']
  if FLAGS.tiny:  # Test-time augmentation on a CPU: 9 views of 20,000 images take minutes.
    splits = {k: input_pipeline.Split(v.images[:200], v.labels[:200]) for k, v in splits.items()}
  # Test and validation images in one call, as evaluate.evaluate scores them: the
  # checkpoint restored and the program compiled once for each of plain and TTA.
  names = list(splits)
  scored = input_pipeline.Split(np.concatenate([splits[n].images for n in names]),
                                np.concatenate([splits[n].labels for n in names]))
  bounds = np.cumsum([len(splits[n]) for n in names])[:-1]
  arrays = {}
  for tta in (False, True):
    outputs = evaluate.test_probabilities(FLAGS.probabilities, config, scored, tta=tta)[0]
    for name, part in zip(names, np.split(outputs.astype(np.float32), bounds)):
      arrays[name + ('_tta' if tta else '')] = part
  np.savez(FLAGS.out, **arrays)


def main(_):
  if FLAGS.probabilities:
    return probabilities()
  phases = {'speed': speed, 'accuracy': accuracy, 'select': select, 'published': published}
  if len(FLAGS.deadlines_s) != len(FLAGS.phases) or set(FLAGS.phases) - set(phases):
    raise app.UsageError(f'--phases={",".join(FLAGS.phases)}: each one of {", ".join(phases)}, '
                         f'with one --deadlines_s each (got {len(FLAGS.deadlines_s)}).')
  os.makedirs(FLAGS.out, exist_ok=True)
  for phase, deadline in zip(FLAGS.phases, FLAGS.deadlines_s):
    DEADLINE[0] = float(deadline)
    phases[phase]()
  log('finished')


if __name__ == '__main__':
  app.run(main)
