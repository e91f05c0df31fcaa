"""Re-choosing configs/fast.py on 10,000 held-out training images, not on test.

Command (2 x 18 one-epoch runs; about 10 minutes on a 2-core CPU):
  python main.py --mode=sweep --workdir=runs/sweep_fast --config=configs/fast.py \
      --sweep=sweeps/fast.py --config.manual_dir=../shared/datasets/mnist

Result: see the "fast" section of benchmarks/results/cpu_xeon_sweep_fast.md.
"""


def get_sweep():
  return {
      'grid': {'batch_size': [32, 64, 128], 'learning_rate': [0.005, 0.01, 0.02],
               'label_smoothing': [0.0, 0.1]},
      'seeds': [0, 1],
      'config': {'validation_size': 10_000},
      'prune': None,  # One epoch: nothing to stop early but the second seed.
  }
