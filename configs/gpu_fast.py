"""GPU fast: the fewest training steps to 99%, for a GPU, where a step of a model
this small takes about as long at a batch of 512 as at 64.

Command:
  python main.py --workdir=runs/gpu_fast --config=configs/gpu_fast.py

configs/fast.py's model, optimizers and crop with batches of 512 in one part:
351 steps on all 60,000 images (3 epochs), against `fast`'s 750. Chosen on the
50,000/10,000 validation split by sweeps/gpu_fast.py (the rule in its docstring;
benchmarks/results/cpu_xeon_sweep_gpu_fast.md). Not yet timed on a GPU
(benchmarks/gpu_session.py's speed phase runs it); CPU figures:
benchmarks/results/design_notes.md.
"""

from configs import fast


def get_config():
  """fast with 8x the batch, Adam's rate x2 and Muon's x4, and three epochs."""
  config = fast.get_config()
  config.batch_size = 512
  config.microbatches = 1  # Parts help XLA:CPU's idle cores; a GPU has none to give.
  config.learning_rate = 0.02
  config.muon_learning_rate = 0.08
  config.num_epochs = 3
  config.log_every_steps = 117  # Once an epoch: 60,000 // 512 steps.
  return config
