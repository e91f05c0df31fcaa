"""Re-choosing configs/default.py on 10,000 held-out training images, not on test.

Command (2 x 9 fifteen-epoch runs; about 30 minutes on a 2-core CPU):
  python main.py --mode=sweep --workdir=runs/sweep_default --sweep=sweeps/default.py \
      --config.manual_dir=../shared/datasets/mnist

The learning rate and the shifts (the model's main regularizer) around the
values first chosen on test. No pruning: with the one-cycle schedule the early
epochs rank the learning rates, not the final accuracies.
Result: benchmarks/results/cpu_xeon_sweep_default.md.
"""


def get_sweep():
  return {
      'grid': {'learning_rate': [0.0015, 0.003, 0.006], 'augment_shift': [1, 2, 3]},
      'seeds': [0, 1],
      'config': {'validation_size': 10_000},
      'prune': None,
  }
