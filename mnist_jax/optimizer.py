"""The optimizers and learning-rate schedules a config names, from optax."""

import jax
import optax
from optax import contrib


def learning_rate_schedule(config, total_steps: int, peak: float | None = None) -> optax.Schedule:
  """Step (0 for the first update) -> learning rate, up to `peak` (default: the config's)."""
  lr = config.learning_rate if peak is None else peak
  if config.schedule == 'constant':
    return optax.constant_schedule(lr)
  if config.schedule == 'cosine':
    warmup = int(config.warmup_epochs * total_steps / config.num_epochs)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total_steps)
  if config.schedule == 'exponential':  # An et al. and Byerly et al.: x0.98 per epoch.
    return optax.exponential_decay(lr, max(1, total_steps // config.num_epochs),
                                   config.decay_per_epoch, staircase=True)
  return optax.cosine_onecycle_schedule(total_steps, lr)


def muon(config, adam_schedule: optax.Schedule, total_steps: int) -> optax.GradientTransformation:
  """Muon (optax.contrib.muon) on every convolution kernel, Adam on the rest.

  Muon steps along the momentum orthogonalized, each [3, 3, C, F] kernel read as
  a [9 * C, F] matrix; 3 Newton-Schulz iterations after AOL preconditioning. Dense
  layers and biases keep Adam (with Nesterov momentum, as optax pairs it) on
  `adam_schedule`: orthogonalizing the dense kernel costs about as much as the rest
  of the step. Muon follows the same schedule's shape up to
  `config.muon_learning_rate`. The variants measured: benchmarks/results/design_notes.md.
  """
  def kernels(params):
    conv = contrib.MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=(3,))
    return jax.tree.map(lambda x: conv if x.ndim == 4 else None, params)

  muon_schedule = learning_rate_schedule(config, total_steps, config.muon_learning_rate)
  return contrib.muon(muon_schedule, ns_steps=3,
                      preconditioning='aol', adam_learning_rate=adam_schedule,
                      muon_weight_dimension_numbers=kernels)


def create(config, total_steps: int) -> optax.GradientTransformation:
  """The optax optimizer the config names, on `learning_rate_schedule`.

  Its state has the same structure whatever `total_steps` is: a restore target
  may be built with any.
  """
  schedule = learning_rate_schedule(config, total_steps)
  if config.optimizer == 'adam':
    return optax.adam(schedule)
  if config.optimizer == 'muon':
    return muon(config, schedule, total_steps)
  if config.optimizer == 'adamw':
    return optax.adamw(schedule, weight_decay=config.weight_decay)
  return optax.chain(optax.add_decayed_weights(config.weight_decay),
                     optax.sgd(schedule, momentum=config.momentum,
                               nesterov=config.optimizer == 'nesterov'))
