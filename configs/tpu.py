"""TPU: the default CNN with batches of 1024 in bfloat16.

Command, on a TPU VM (notebooks/colab_tpu.ipynb does the same on Colab):
  python main.py --workdir=runs/tpu --config=configs/tpu.py
On one chip (Colab's TPU runtime is one v5e: one JAX device) each batch runs
whole on it; on a pod slice, run the same command on every worker with
--multihost (JAX finds the other workers itself) and each batch is split over
all the chips; --workdir must then be a folder every worker can write.

Convolutions and dense layers compute in bfloat16 (weights, optimizer state and
the loss stay float32), which TPUs run natively. Not yet measured on a TPU.
On a 2-core AMD EPYC CPU (`python benchmarks/run.py --configs=tpu --full_runs`,
seed 0): 99.42% after 15 epochs.
"""

from configs import default


def get_config():
  """Larger batches in bfloat16; a whole epoch per jitted call."""
  config = default.get_config()
  config.batch_size = 1024
  config.microbatches = 1  # Parts help XLA:CPU's idle cores; not measured on accelerators.
  config.learning_rate = 5e-3
  config.compute_dtype = 'bfloat16'
  config.log_every_steps = 58  # Once an epoch: 60,000 // 1024 steps.
  return config
