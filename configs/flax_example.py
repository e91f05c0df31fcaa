"""The official Flax `examples/mnist`, re-implemented through this pipeline.

Its CNN (models.FlaxExampleCNN: the NNX version of 2026-01-13, with batch norm,
dropout 0.025 and average pooling) and hyper-parameters: SGD with momentum 0.9
at a constant learning rate of 0.1, batch 128, 10 epochs, no augmentation. For
side-by-side speed comparisons:

  python benchmarks/run.py --compare

Measured: see README.
"""

from configs import default


def get_config():
  """The Flax example's model and hyper-parameters."""
  config = default.get_config()
  config.model = 'flax_example_cnn'
  config.optimizer = 'sgd'
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.schedule = 'constant'
  config.batch_size = 128
  config.num_epochs = 10
  config.microbatches = 1  # Its batch norm normalizes over the whole batch.
  config.augment_shift = 0
  config.dropout_rate = 0.025
  return config
