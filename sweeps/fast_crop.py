"""How many border pixels configs/fast.py cuts before its first layer, and how many
of the epoch's steps, on 10,000 held-out training images, not on test.

Command (6 x 5 one-epoch runs; about 6 minutes on a 2-core CPU):
  python main.py --mode=sweep --workdir=runs/sweep_fast_crop --config=configs/fast.py \
      --sweep=sweeps/fast_crop.py --config.manual_dir=../shared/datasets/mnist

On the 50,000 training images left, an epoch is 781 steps of 64; 625 is its
first 80%, as 750 is of the 937 steps on all 60,000. A crop of 2 leaves 24x24
pixels, 4 leaves 20x20.
Result: benchmarks/results/cpu_xeon_sweep_fast_crop.md.
"""


def get_sweep():
  return {
      'grid': {'input_crop': [0, 2, 4], 'train_steps_per_epoch': [625, 781]},
      'seeds': [0, 1, 2, 3, 4],
      'config': {'validation_size': 10_000},
      'prune': None,  # One epoch: nothing to stop early.
  }
