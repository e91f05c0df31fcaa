"""Tiny: a few-second run for tests and smoke checks, not for accuracy.

Command:
  python main.py --workdir=/tmp/tiny --config=configs/tiny.py \
      --config.manual_dir=../shared/datasets/mnist

Measured on a 2-core AMD EPYC CPU (generation not recorded), one seed (seed 0):
88.55% test accuracy, 16 s wall
(`python benchmarks/run.py --configs=tiny --full_runs`).
"""

from configs import default


def get_config():
  """A small CNN trained on a slice of an epoch."""
  config = default.get_config()
  config.conv_features = (8, 16)
  config.dense_features = 32
  config.batch_size = 64
  config.microbatches = 1  # Tests: one part compiles sooner.
  config.num_epochs = 2
  config.train_steps_per_epoch = 50
  config.log_every_steps = 25
  return config
