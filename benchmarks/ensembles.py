"""Test accuracy of every ensemble of some trained workdirs; prints one JSON object.

  python benchmarks/ensembles.py --workdirs=runs/a,runs/b,runs/c [--data_dir=...]

Each workdir's test probabilities are computed once, plain and with test-time
augmentation, then every subset (single models included) is scored the way
`main.py --mode=eval --ensemble=... [--tta]` scores it: the mean of the members'
probabilities. Every subset is listed, so that choosing the best one on the test
set is visible as what it is.
"""

import itertools
import json
import sys

from absl import app, flags
import numpy as np

flags.DEFINE_list('workdirs', None, 'Trained workdirs.', required=True)
flags.DEFINE_string('data_dir', None, 'tfds data folder (or the one the workdirs saved).')
flags.DEFINE_string('manual_dir', None, 'Folder with the four official MNIST .gz files.')
FLAGS = flags.FLAGS


def main(_):
  from mnist_jax import evaluate, input_pipeline, logs  # pylint: disable=g-import-not-at-top
  from mnist_jax.errors import UserError  # pylint: disable=g-import-not-at-top
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
