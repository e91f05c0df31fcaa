"""Test accuracy of ensembles of trained models; prints one JSON object.

  python benchmarks/ensembles.py --workdirs=runs/a,runs/b,runs/c [--data_dir=...]
  python benchmarks/ensembles.py --probabilities=DIR[,DIR2,...] --data_dir=...

--workdirs: each workdir's test probabilities are computed once, plain and with
test-time augmentation, then every subset (single models included) is scored the way
`main.py --mode=eval --ensemble=... [--tta]` scores it: the mean of the members'
probabilities. Every subset is listed, so that choosing the best one on the test
set is visible as what it is.

--probabilities: the softmax outputs benchmarks/gpu_session.py saved
(DIR/probabilities_{test,val}.npz; several folders: their runs pooled). The ensemble
is chosen on validation alone (`selection.choose_ensemble`: greedy forward selection among the runs that
held the same validation images out), then scored once on test; runs without
validation outputs (trained on all 60,000) are scored alone and averaged all together,
a choice made before looking.
"""

import itertools
import json
import os
import sys

from absl import app, flags
import numpy as np

from mnist_jax import evaluate, input_pipeline, logs, selection
from mnist_jax.errors import UserError

flags.DEFINE_list('workdirs', None, 'Trained workdirs.')
flags.DEFINE_list('probabilities', None, 'Folders with probabilities_test.npz and '
                  'probabilities_val.npz (benchmarks/gpu_session.py), pooled.')
flags.DEFINE_integer('validation_size', 10_000, '--probabilities: the runs\' validation_size.')
flags.DEFINE_string('data_dir', None, 'tfds data folder (or the one the workdirs saved).')
flags.DEFINE_string('manual_dir', os.environ.get('MNIST_JAX_MANUAL_DIR'),
                    'Folder with the four official MNIST .gz files (default: $MNIST_JAX_MANUAL_DIR).')
FLAGS = flags.FLAGS


def accuracy(probabilities, labels) -> float:
  return evaluate.accuracy_and_loss(probabilities, labels)[0]


def from_probabilities(folders: list[str]) -> dict:
  """Ensembles of benchmarks/gpu_session.py's runs: chosen on validation, scored on test."""
  data = input_pipeline.load('mnist', FLAGS.data_dir, FLAGS.manual_dir)
  labels = {'test': data['test'].labels,
            'val': input_pipeline.hold_out(data, FLAGS.validation_size)['validation'].labels}
  outputs = {}
  for folder, split in itertools.product(folders, ('test', 'val')):
    with np.load(os.path.join(folder, f'probabilities_{split}.npz')) as saved:
      for key in saved.files:  # 'run/test', 'run/test_tta', 'run/val', ...
        run, kind = key.split('/')
        if run in outputs.get(kind, {}):
          sys.exit(f'Error: two runs named {run} in --probabilities={",".join(folders)}.')
        outputs.setdefault(kind, {})[run] = saved[key]
  for split in labels:  # --tiny runs saved the first 200 images' outputs only.
    labels[split] = labels[split][:len(next(iter(outputs[split].values())))]
  result = {}
  for tta in ('', '_tta'):
    test, val = outputs['test' + tta], outputs.get('val' + tta, {})
    runs = {run: {'test_accuracy': accuracy(p, labels['test'])} | (
        {'val_accuracy': accuracy(val[run], labels['val'])} if run in val else {})
            for run, p in test.items()}
    full = [run for run in test if run not in val]  # Trained on all 60,000.
    chosen = selection.choose_ensemble(val, labels['val']) if val else []
    mean = lambda names, out: np.mean([out[n] for n in names], axis=0)
    result['tta' if tta else 'plain'] = {
        'runs': runs,
        'all_full_data_runs_averaged': full and {
            'runs': full, 'test_accuracy': accuracy(mean(full, test), labels['test'])},
        'chosen_on_validation': chosen and {
            'members': chosen,
            'val_accuracy': accuracy(mean(chosen, val), labels['val']),
            'test_accuracy': accuracy(mean(chosen, test), labels['test'])},
        'all_validation_runs_averaged': val and {
            'runs': list(val),
            'val_accuracy': accuracy(mean(list(val), val), labels['val']),
            'test_accuracy': accuracy(mean(list(val), test), labels['test'])},
    }
  return result


def main(_):
  if FLAGS.probabilities:
    print(json.dumps(from_probabilities(FLAGS.probabilities), indent=2))
    return
  if not FLAGS.workdirs:
    sys.exit('Error: give --workdirs or --probabilities.')
  logs.quiet_libraries()
  try:
    configs = evaluate.load_members(
        FLAGS.workdirs, {'data_dir': FLAGS.data_dir, 'manual_dir': FLAGS.manual_dir})
    config = configs[0]
    test = input_pipeline.load(config.dataset, config.data_dir, config.manual_dir,
                               splits=('test',))['test']
  except UserError as e:
    sys.exit(f'Error: {e}')
  results = []
  for tta in (False, True):
    probabilities = [evaluate.test_probabilities(w, c, test, tta=tta)[0]
                     for w, c in zip(FLAGS.workdirs, configs)]
    for k in range(1, len(FLAGS.workdirs) + 1):
      for subset in itertools.combinations(range(len(FLAGS.workdirs)), k):
        predictions = np.mean([probabilities[i] for i in subset], axis=0).argmax(axis=1)
        results.append({'workdirs': [FLAGS.workdirs[i] for i in subset], 'tta': tta,
                        'test_accuracy': float(np.mean(predictions == test.labels)),
                        'num_errors': int(np.sum(predictions != test.labels))})
  print(json.dumps({'ensembles': results}, indent=2))


if __name__ == '__main__':
  app.run(main)
