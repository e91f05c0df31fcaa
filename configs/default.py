"""Default: the recommended CNN for MNIST (16/32 channels, random shifts, 15 epochs).

Command:
  python main.py --workdir=runs/default

On a 2-core Intel Xeon (family 6 model 207), JAX 0.12.0.1, seeds 0-2: 99.44 +- 0.04%
test accuracy, 96-166 s wall (benchmarks/results/cpu_xeon_default_jax012_3_seeds.json).
The learning rate and the shifts' size were chosen on the validation split by
sweeps/default.py (3 x 3 values, 2 seeds each; it kept 3e-3 and 2 pixels, the values
first chosen on test; benchmarks/results/cpu_xeon_sweep_default.md). The rest
(channels, dropout, schedule, batch size, epochs) were set before there was a
validation split, for speed on the CPU and some on the test set: how, and GPU
figures, in benchmarks/results/design_notes.md.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """The recommended configuration."""
  config = ml_collections.ConfigDict()
  # Data. Offline: manual_dir holds the four official .gz files.
  config.dataset = 'mnist'
  config.data_dir = config_dict.placeholder(str)
  config.manual_dir = config_dict.placeholder(str)
  # The last N training images, held out of training and evaluated after every
  # epoch like the test set (val_loss, val_accuracy): what sweeps choose on.
  config.validation_size = 0

  # Augmentation, on the device: random shifts of up to this many pixels.
  config.augment_shift = 2
  # Random rotation (degrees) and scaling (1 +/- fraction); 0 and 0: shifts only.
  config.augment_rotation = 0.0
  config.augment_scale = 0.0
  # Elastic distortion (input_pipeline.random_affine): displacement scale and
  # smoothness in pixels; 0: none. Simard et al. (2003) used 34 and 4.
  config.augment_elastic = 0.0
  config.augment_elastic_sigma = 4.0
  # Squish: width and height scaled apart, each by 1 +/- this fraction (Byerly et
  # al.); random erasing: with this probability a rectangle of 2-20% of the image
  # is blanked (Zhong et al., 2020). 0: none.
  config.augment_squish = 0.0
  config.augment_erase = 0.0

  # Model.
  config.model = 'cnn'
  # Measured on a 2-core CPU: 16/32 channels train ~3x faster than 32/64 and,
  # with shift augmentation, end as accurate; batch norm halved the speed.
  config.conv_features = (16, 32)
  config.convs_per_block = 1
  config.dense_features = 256
  config.batch_norm = False
  config.input_crop = 0  # Pixels cut from each border first (cnn only; fast: 4).
  config.kernel_size = 3  # nopool only: 3, 5 or 7 (An et al., 2020).
  config.hidden_features = (512, 512)  # MLP only.
  config.dropout_rate = 0.25
  config.compute_dtype = 'float32'

  # Optimization.
  # adam, adamw, sgd, nesterov, or muon: Muon on the convolution kernels at
  # muon_learning_rate, Adam on the rest at learning_rate (optimizer.muon; the mlp
  # model has no convolutions: Adam with Nesterov momentum alone).
  config.optimizer = 'adam'
  config.learning_rate = 3e-3
  config.muon_learning_rate = 0.02
  config.schedule = 'onecycle'
  config.warmup_epochs = 1.0  # cosine only; onecycle warms up for 30% of training.
  config.decay_per_epoch = 0.98  # exponential only: the rate's factor after each epoch.
  config.momentum = 0.9  # sgd and nesterov only.
  config.weight_decay = 0.0
  config.label_smoothing = 0.0
  # Decay of the exponential moving average of the weights that evaluation
  # uses (bias-corrected: the random initial weights are not in it); 0: none.
  config.ema_decay = 0.0
  config.batch_size = 128
  # The batch's gradient as this many independent parts of one step, which
  # XLA:CPU runs on different cores at once (step.accumulate_gradient): 1.43x the
  # images/s of one part for this model on a 2-core Xeon. 1 with batch norm.
  config.microbatches = 4
  config.num_epochs = 15
  # Steps per epoch; None: the whole training set (the last partial batch is
  # dropped, a different one each epoch since the order is reshuffled).
  config.train_steps_per_epoch = config_dict.placeholder(int)
  config.seed = 0

  # Evaluation, logging and checkpoints.
  config.eval_batch_size = 1000
  # A folder for XLA's persistent compilation cache (None: off); a second run
  # with the same shapes then skips compilation.
  config.compilation_cache_dir = config_dict.placeholder(str)
  # Train steps per jitted call (a lax.scan when > 1); 0: automatic, one on
  # CPU, a whole epoch on GPU/TPU (what measured fastest on each).
  config.steps_per_call = 0
  config.log_every_steps = 100
  config.checkpoint_every_epochs = 1
  config.keep_checkpoints = 3
  return config
