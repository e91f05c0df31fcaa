"""Fast: the shortest wall time to 99% test accuracy on a 2-core CPU.

Command:
  python main.py --workdir=runs/fast --config=configs/fast.py

One epoch of a small CNN on the central 20x20 pixels, Muon on the convolutions,
chosen on the 50,000/10,000 validation split (sweeps/fast*.py). On a 2-core Intel Xeon
(family 6 model 207), JAX 0.10.2, seeds 0-4: 99.16 +- 0.07% test accuracy, 7.4 +- 0.8 s
from the command's start (benchmarks/results/cpu_xeon_versus_c3badfb.json). The sweeps
and measurements behind each choice: benchmarks/results/design_notes.md.
"""

from configs import default


def get_config():
  """One epoch of a small CNN on 20x20 crops: microbatches, Muon and Adam, label smoothing."""
  config = default.get_config()
  config.dense_features = 128
  config.augment_shift = 0  # Augmentation pays off over many epochs, not one.
  config.dropout_rate = 0.0
  config.batch_size = 64
  config.microbatches = 4  # Each step in 4 parts that XLA:CPU runs on both cores at once.
  config.input_crop = 4  # The central 20x20 pixels: 1.86x the images/s of 28x28.
  config.optimizer = 'muon'  # Muon on the convolutions, Adam (Nesterov) on the rest.
  config.learning_rate = 0.01
  config.muon_learning_rate = 0.02
  config.label_smoothing = 0.1
  config.num_epochs = 1
  config.eval_batch_size = 500  # 0.6 s for the 10,000 test images against 0.8 s in 1,000s.
  config.compilation_cache_dir = '~/.cache/mnist_jax/xla'
  return config
