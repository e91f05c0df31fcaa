"""A sweep small enough to watch: 2 x 2 configurations x 2 seeds of configs/tiny.py.

Command (about a minute on a 2-core CPU):
  python main.py --mode=sweep --workdir=runs/sweep_tiny --config=configs/tiny.py \
      --sweep=sweeps/tiny.py --config.manual_dir=../shared/datasets/mnist
"""


def get_sweep():
  return {
      'grid': {'learning_rate': [0.001, 0.003], 'dense_features': [16, 32]},
      'seeds': [0, 1],
      'config': {'validation_size': 10_000},
  }
