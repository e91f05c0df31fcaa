"""GPU: the default CNN with larger batches and several steps per jitted call.

Command:
  python main.py --workdir=runs/gpu --config=configs/gpu.py

Measured: not yet.
"""

from configs import default


def get_config():
  """Fewer, larger steps: a GPU is idle between small ones."""
  config = default.get_config()
  config.batch_size = 512
  config.learning_rate = 5e-3
  config.steps_per_call = 117  # A whole epoch of 60,000 // 512 steps per call.
  config.log_every_steps = 117
  return config
