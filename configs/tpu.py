"""TPU: the default CNN sized for 8 TPU cores (a Colab TPU, a pod slice).

Command, on a TPU VM (notebooks/colab_tpu.ipynb does the same on Colab):
  python main.py --workdir=runs/tpu --config=configs/tpu.py
On a pod slice, run the same command on every worker with --multihost (JAX
finds the other workers itself); --workdir must then be a folder every worker
can write, e.g. a shared file system.

Batches of 1024 are 128 images per core; convolutions and dense layers compute
in bfloat16 (weights, optimizer state and the loss stay float32), which TPUs run
natively and which halves the activations' memory traffic. Not yet measured on
a TPU (none was available to us). On a 2-core AMD EPYC CPU (generation not recorded), which computes
bfloat16 slowly (`python benchmarks/run.py --configs=tpu --full_runs`), one
seed (seed 0): 99.42%
after 15 epochs, 99.0% after epoch 9 (231 s), 2,249 training images/s.
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
