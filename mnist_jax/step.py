"""The jitted train step: a batch cut from the device-resident data, augmented,
its gradient (in microbatches where the config asks), an optax update, the
weight average, and the epoch's metrics accumulated on the device."""

import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mnist_jax import input_pipeline, optimizer, state as state_lib
from mnist_jax.errors import UserError
from mnist_jax.inference import loss_and_correct


@flax.struct.dataclass
class TrainMetrics:
  """What training reports, accumulated on the device over an epoch's steps.

  Sums (loss, correct, count) over the epoch so far; the gradient norm and
  learning rate of its latest step. `compute` reads them on the host.
  """
  loss: jax.Array
  correct: jax.Array
  count: jax.Array
  grad_norm: jax.Array
  learning_rate: jax.Array

  @classmethod
  def zeros(cls) -> 'TrainMetrics':
    return cls(np.float32(0), np.int32(0), np.int32(0), np.float32(0), np.float32(0))

  def merge(self, loss, correct, grad_norm, learning_rate) -> 'TrainMetrics':
    """Adds one step's per-example losses and 0/1 correctness."""
    return TrainMetrics(self.loss + loss.sum(), self.correct + correct.sum(),
                        self.count + loss.shape[0], grad_norm, learning_rate)

  def compute(self) -> dict[str, float]:
    """Means over the epoch so far (a NaN/inf loss stays non-finite)."""
    loss, correct, count, grad_norm, lr = jax.device_get(
        (self.loss, self.correct, self.count, self.grad_norm, self.learning_rate))
    return {'loss': float(loss / count), 'accuracy': float(correct / count),
            'grad_norm': float(grad_norm), 'learning_rate': float(lr)}


def check_microbatches(config, mesh, batch_norm: bool) -> None:
  """Every device gets whole microbatches, and no model normalizes by a part's statistics."""
  multiple = mesh.size * config.microbatches
  if config.batch_size % multiple:
    raise UserError(f'--config.batch_size={config.batch_size} is not divisible by the '
                    f'{mesh.size} devices times --config.microbatches='
                    f'{config.microbatches}; use a multiple of {multiple}.')
  if batch_norm and config.microbatches > 1:
    raise UserError(f'--config.microbatches={config.microbatches} with a model that has batch '
                    'norm (--config.batch_norm, or the flax_example_cnn model): each part would '
                    'be normalized by its own statistics; use one part.')


def accumulate_gradient(grad_fn, params, x, y, key, parts: int):
  """`grad_fn(params, x, y, key)` of the whole batch as the sum over `parts`
  independent microbatches of rows i, i + parts, ... (so each device keeps its own
  rows): (gradient, (per-example loss, correctness, model state)).

  XLA:CPU runs independent operations of one program at once, so the parts keep
  both cores busy where one batch of small convolutions does not. `grad_fn` takes
  the batch's mean over its rows, so the sum is the whole batch's gradient, up to
  float rounding (dropout draws other masks).
  """
  if parts == 1:
    return grad_fn(params, x, y, key)
  rows = x.shape[0] // parts
  outs = [grad_fn(params, x.reshape(rows, parts, *x.shape[1:])[:, i],
                  y.reshape(rows, parts)[:, i], jax.random.fold_in(key, i))
          for i in range(parts)]
  grads = jax.tree.map(lambda *g: sum(g), *(g for g, _ in outs))
  loss, correct = (jnp.concatenate([aux[j] for _, aux in outs]) for j in (0, 1))
  return grads, (loss, correct, outs[-1][1][2])


def ema_update(ema, params, t, decay: float):
  """The average of the t weights so far, the i-th weighted by decay**(t - i).

  Normalized, as Adam corrects its moments, so that the random initial weights
  are not in it (the plain `decay * ema + (1 - decay) * params` keeps decay**t of
  them); by the end of a run the two differ by a fraction decay**t.
  """
  if ema is None:
    return None
  tail = decay ** t.astype(jnp.float32)  # What the uncorrected average keeps of the start.
  keep = (decay - tail) / (1 - tail)  # 0 at t = 1: the average is then the weights.
  return jax.tree.map(lambda e, p: keep * e + (1 - keep) * p, ema, params)


def make_step_fn(config, graphdef, tx, mesh, steps: int):
  """(state, sums, images, labels, perm) -> (state, sums): one step, to be jitted.

  `steps` is the epoch's length: the step's place in the epoch's permutation.
  A NaN/inf loss makes the metrics' loss sum non-finite, which the host checks
  whenever it reads it.
  """
  schedule = optimizer.learning_rate_schedule(config, steps * config.num_epochs)
  _, _, dropout_key = state_lib.seed_keys(config.seed)  # Dropout and augmentation.
  batch_sharding = NamedSharding(mesh, P('data'))
  bs = config.batch_size

  @jax.jit  # Traced once however many microbatches call it.
  def grad_fn(params, model_state, x, y, key):
    """The gradient of the batch's mean loss over these of its rows, and (per-example
    loss, correctness, model state)."""
    def loss_fn(params):
      model = nnx.merge(graphdef, params, model_state, copy=True)
      logits = model(x, train=True, key=key)
      loss, correct = loss_and_correct(logits, y, config.label_smoothing)
      return loss.sum() / bs, (loss, correct, nnx.state(model, nnx.Not(nnx.Param)))
    return jax.grad(loss_fn, has_aux=True)(params)

  def step_fn(state, sums, images, labels, perm):
    idx = jax.lax.dynamic_slice_in_dim(perm, (state.step % steps) * bs, bs)
    key, augment_key = jax.random.split(jax.random.fold_in(dropout_key, state.step))
    x = images[idx]
    if (config.augment_rotation or config.augment_scale or config.augment_elastic
        or config.augment_squish):
      x = input_pipeline.random_affine(x, augment_key, config.augment_rotation,
                                       config.augment_scale, config.augment_shift,
                                       config.augment_elastic, config.augment_elastic_sigma,
                                       config.augment_squish)
    elif config.augment_shift:
      x = input_pipeline.random_shift(x, augment_key, config.augment_shift)
    if config.augment_erase:
      x = input_pipeline.random_erase(x, jax.random.fold_in(augment_key, 6),
                                      config.augment_erase)
    x = jax.lax.with_sharding_constraint(input_pipeline.normalize(x, config.dataset),
                                         batch_sharding)
    y = jax.lax.with_sharding_constraint(labels[idx], batch_sharding)
    grads, (loss, correct, model_state) = accumulate_gradient(
        lambda p, *batch: grad_fn(p, state.model_state, *batch), state.params, x, y, key,
        config.microbatches)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    state = state.replace(
        step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state,
        ema_params=ema_update(state.ema_params, params, state.step + 1, config.ema_decay))
    return state, sums.merge(loss, correct, optax.tree.norm(grads),
                             jnp.asarray(schedule(state.step - 1), jnp.float32))

  return step_fn


class TrainStep:
  """`state, sums = train_step(state, sums, images, labels, perm, num_steps)`:
  `num_steps` steps, in jitted calls of up to `steps_per_call` (a lax.scan when
  more than one).

  Between its calls it keeps (state, sums) as their leaves: a jitted function
  that returns a TrainState rebuilds its nnx Variables in Python, on the thread
  that XLA's work on the cores also needs, once a call rather than once a
  `train_step` (benchmarks/results/design_notes.md). Each new `num_steps` compiles
  on its first call (jit's cache), which compile_clock times.
  """

  def __init__(self, step_fn, mesh, steps_per_call: int):
    def steps_fn(leaves, treedef, images, labels, perm, num_steps):
      carry = treedef.unflatten(leaves)
      if num_steps == 1:  # Even a length-1 scan runs ~10x slower on XLA:CPU.
        carry = step_fn(*carry, images, labels, perm)
      else:
        body = lambda carry, _: (step_fn(*carry, images, labels, perm), None)
        carry = jax.lax.scan(body, carry, length=num_steps)[0]
      return jax.tree.leaves(carry)

    self._steps_fn = jax.jit(steps_fn, donate_argnums=0, static_argnums=(1, 5),
                             out_shardings=NamedSharding(mesh, P()))
    self.steps_per_call = steps_per_call
    self.first_call_done = None  # When the first call (its compilation included) ended.

  def __call__(self, state, sums, images, labels, perm, num_steps: int):
    leaves, treedef = jax.tree.flatten((state, sums))
    while num_steps:
      n = min(self.steps_per_call, num_steps)
      leaves = self._steps_fn(leaves, treedef, images, labels, perm, n)
      num_steps -= n
      if self.first_call_done is None:
        jax.block_until_ready(leaves)
        self.first_call_done = time.monotonic()
    return treedef.unflatten(leaves)

  def lower(self, state, sums, images, labels, perm, num_steps: int):
    """The jitted call's Lowered for these arguments (for reading its program)."""
    leaves, treedef = jax.tree.flatten((state, sums))
    return self._steps_fn.lower(leaves, treedef, images, labels, perm, num_steps)


BN_STATISTICS_IMAGES = 2048


def make_bn_statistics(graphdef, dataset: str, mesh):
  """Jitted: (params, model_state, images) -> model_state with batch-norm
  statistics measured for `params`: the mean and variance over the first
  BN_STATISTICS_IMAGES `images`.

  The running statistics training keeps belong to the weights it trains; the
  EMA weights lag those by about 1 / (1 - ema_decay) steps, and evaluate far
  worse with them (benchmarks/results/design_notes.md). Training normalizes with
  each batch's own statistics and never reads the running ones, so replacing
  them changes nothing else.
  """
  @jax.jit(out_shardings=NamedSharding(mesh, P()))
  def measure(params, model_state, images):
    model = nnx.merge(graphdef, params, model_state, copy=True)
    model.set_attributes(nnx.BatchNorm, momentum=0.0)  # This batch's statistics only.
    x = input_pipeline.normalize(images[:BN_STATISTICS_IMAGES], dataset)
    model(x, train=True, key=jax.random.key(0))
    return nnx.state(model, nnx.Not(nnx.Param))

  return measure
