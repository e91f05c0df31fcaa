"""MLP: two hidden layers of 512, no convolutions.

Command:
  python main.py --workdir=runs/mlp --config=configs/mlp.py

Measured (see README): TO BE FILLED.
"""

from configs import default


def get_config():
  """A fully connected baseline."""
  config = default.get_config()
  config.model = 'mlp'
  config.dropout_rate = 0.2
  config.learning_rate = 1e-3
  config.num_epochs = 10
  return config
