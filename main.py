"""Entry point: python main.py --workdir=DIR [--config=configs/X.py] [--mode=...].

Everything lives in importable `mnist_jax` modules; this file only parses
flags, routes to a mode and turns user mistakes into one readable message.
"""

import logging as std_logging
import os
import sys
import time

START_TIME = time.time()  # `elapsed_s` in metrics counts from here.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow only reads the data.

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

_HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics and reports.')
flags.DEFINE_enum('mode', 'train', ['train'], 'What to do.')
config_flags.DEFINE_config_file('config', os.path.join(_HERE, 'configs', 'default.py'),
                                'Training configuration file.', lock_config=True)
flags.mark_flags_as_required(['workdir'])


class _QuietLibraries:
  """Drops the INFO chatter of orbax, tfds and TF so progress lines stand out."""
  NOISY = ('orbax', 'tensorflow_datasets', 'tensorflow', 'xla_bridge')

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or not any(
        n in record.pathname for n in self.NOISY)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_logger().addFilter(_QuietLibraries())
  import jax  # pylint: disable=g-import-not-at-top
  from mnist_jax import train  # pylint: disable=g-import-not-at-top
  from mnist_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  logging.info('JAX devices: %s (process %d of %d)', jax.devices(), jax.process_index(),
               jax.process_count())
  try:
    if FLAGS.mode == 'train':
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir, start_time=START_TIME)
  except UserError as e:
    logging.error('%s', e)
    print(f'\nError: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
