"""GPU: the default CNN with larger batches.

Command:
  python main.py --workdir=runs/gpu --config=configs/gpu.py

Measured on one NVIDIA H100 (JAX 0.11.2), `python benchmarks/run.py --configs=gpu
--full_runs`, one seed (seed 0): 1,187,824 training images/s; 99.0% after 17.1 s and 99.5% after
18.2 s (epochs 6 and 12), counted from the command's start, of which most is
start-up and compilation; final 99.46% at 20.4 s.
On one NVIDIA H200 (JAX 0.11.2, `python benchmarks/gpu_session.py`; README, "On a GPU"):
seeds 0-4, 99.42 +- 0.04%, 1,425,174 training images/s, 99.0% after 15.7 +- 0.6 s from
the command's start (epochs 6-7; commit 3d4f75c, whose start-up still imported PyTorch);
in bfloat16, seed 0: 2,146,499 images/s, 99.0% after 1.42 s of training alone, 99.46%.
On one NVIDIA H100 again (commit c266465; benchmarks/results/h100_speed.json): seeds 0-4,
99.43 +- 0.05%, 1.28-1.29 million training images/s, 99.0% after 1.42 +- 0.18 s of
training alone (16.0 +- 0.9 s from the start); bfloat16, seed 0: 99.37%, 1.38 s.
"""

from configs import default


def get_config():
  """Fewer, larger steps: a GPU is idle between small ones."""
  config = default.get_config()
  config.batch_size = 512
  config.microbatches = 1  # Parts help XLA:CPU's idle cores; not measured on accelerators.
  config.learning_rate = 5e-3
  config.log_every_steps = 117  # Once an epoch: 60,000 // 512 steps.
  return config
