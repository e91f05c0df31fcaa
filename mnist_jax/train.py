"""Training and exact evaluation: jit-compiled steps over data kept on the device.

The whole training set lives on the device as uint8; every step cuts its batch
from it with the epoch's permutation, so no step waits for the host. Every
random number derives from `config.seed`: parameter init, the permutation of
each epoch (from the epoch number) and dropout (from the step number), which is
what makes a resumed run end exactly where an uninterrupted one would.
"""

import contextlib
import dataclasses
import functools
import os
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from mnist_jax import checkpoints, config_lib, distributed, input_pipeline, models, workdir as workdir_lib
from mnist_jax.errors import UserError

NUM_TRAIN_IMAGES = 60_000


@flax.struct.dataclass
class TrainState:
  """Everything a step changes; checkpointed as one pytree."""
  step: jax.Array
  params: Any  # nnx.State of nnx.Param.
  model_state: Any  # nnx.State of everything else (batch-norm statistics).
  opt_state: Any
  # Bias-corrected exponential moving average of params (config.ema_decay), or
  # None: see make_train_step.
  ema_params: Any

  @property
  def eval_params(self):
    """The weights evaluation and prediction use: the average where there is one."""
    return self.params if self.ema_params is None else self.ema_params


def make_mesh() -> jax.sharding.Mesh:
  """A one-axis mesh over every device: data parallelism."""
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


@jax.jit  # One program, where eagerly it was three.
def seed_keys(seed: int):
  """The three independent streams every run derives from its seed."""
  init, data, dropout = jax.random.split(jax.random.key(seed), 3)
  return init, data, dropout


def steps_per_epoch(config, num_train: int | None = None) -> int:
  """Steps per epoch on `num_train` images (default: the training split less
  the validation images)."""
  if num_train is None:
    num_train = NUM_TRAIN_IMAGES - config.validation_size
  full = num_train // config.batch_size
  return min(full, config.train_steps_per_epoch) if config.train_steps_per_epoch else full


def resolve_steps_per_call(config, steps: int) -> int:
  """config.steps_per_call, where 0 means: what was measured fastest here.

  On a 2-core CPU one step per call ran ~3-10x faster than a lax.scan of
  several; on an H100 a scan of a whole epoch ran 2.1x faster than single steps.
  """
  if config.steps_per_call:
    return config.steps_per_call
  return 1 if jax.default_backend() == 'cpu' else steps


def learning_rate_schedule(config, total_steps: int, peak: float | None = None) -> optax.Schedule:
  """Step (0 for the first update) -> learning rate, up to `peak` (default: the config's)."""
  lr = config.learning_rate if peak is None else peak
  if config.schedule == 'constant':
    return optax.constant_schedule(lr)
  if config.schedule == 'cosine':
    warmup = int(config.warmup_epochs * total_steps / config.num_epochs)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total_steps)
  return optax.cosine_onecycle_schedule(total_steps, lr)


def muon(config, adam_schedule: optax.Schedule, total_steps: int) -> optax.GradientTransformation:
  """Muon (optax.contrib.muon) on every convolution kernel, Adam on the rest.

  Muon steps along the momentum orthogonalized, each [3, 3, C, F] kernel read as
  a [9 * C, F] matrix. Dense layers and biases keep Adam (with Nesterov momentum,
  as optax pairs it) on `adam_schedule`; Muon follows the same schedule's shape up
  to `config.muon_learning_rate`. On the 50,000/10,000 validation split, `fast`'s
  model with Muon after 80% of its one-epoch steps matched Adam after all of them
  (configs/fast.py). There, 3 Newton-Schulz iterations after AOL preconditioning
  reached 98.99% (seeds 0-4), 5 after optax's default Frobenius scaling 98.96%, 2
  with AOL 98.91% (measured with this function changed for each). Muon on the
  dense layer as well reached 99.13% after all 781 steps against 99.07% on the
  convolutions alone (seeds 0-2, 5 iterations), but trained 1.65x as long (1.3x
  with 2 iterations and AOL, 99.10%): orthogonalizing its [1568, 128] kernel costs
  about as much as the rest of the step.
  """
  from optax import contrib  # pylint: disable=g-import-not-at-top

  def kernels(params):
    conv = contrib.MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=(3,))
    return jax.tree.map(lambda x: conv if x.ndim == 4 else None, params)

  muon_schedule = learning_rate_schedule(config, total_steps, config.muon_learning_rate)
  return contrib.muon(muon_schedule, ns_steps=3,
                      preconditioning='aol', adam_learning_rate=adam_schedule,
                      muon_weight_dimension_numbers=kernels)


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


def create_optimizer(config, total_steps: int) -> optax.GradientTransformation:
  """The optax optimizer the config names, on `learning_rate_schedule`."""
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


@functools.cache
def _model_initializer(model_config):
  """(graph definition, jitted: seed -> (params, other model state)) of a model.

  One program, where eagerly its random initializers were ~20 (a compilation-cache
  load each at start-up), and compiled once per model in a process (tests, sweeps).
  The same values as eagerly: the same operations on the same integer seed.
  """
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: models.create_model(model_config, seed=0)))

  @jax.jit
  def init(seed):
    init_key, _, _ = seed_keys(seed)
    model_seed = jax.random.randint(init_key, (), 0, 2**31 - 1)
    _, params, model_state = nnx.split(
        models.create_model(model_config, seed=jax.random.key(model_seed)), nnx.Param, ...)
    return params, model_state

  return graphdef, init


def _fresh_state(config, tx):
  graphdef, init = _model_initializer(models.model_config(config))
  params, model_state = init(config.seed)
  return graphdef, TrainState(
      step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
      opt_state=tx.init(params),
      ema_params=jax.tree.map(jnp.copy, params) if config.ema_decay else None)


def init_state(config, tx, mesh):
  """A fresh, replicated TrainState, and the model's graph definition."""
  graphdef, state = _fresh_state(config, tx)
  return graphdef, jax.device_put(state, NamedSharding(mesh, P()))


def abstract_state(config, tx, mesh):
  """The graph definition and the TrainState's shapes, dtypes and (replicated)
  shardings, without initialising anything: the target a checkpoint restores onto."""
  graphdef, _ = _model_initializer(models.model_config(config))
  state = jax.eval_shape(lambda: _fresh_state(config, tx)[1])
  replicated = NamedSharding(mesh, P())
  return graphdef, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)


def loss_and_correct(logits, labels, label_smoothing=0.0):
  """Per-example cross-entropy (optionally smoothed) and 0/1 correctness."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, models.NUM_CLASSES), label_smoothing)
  loss = optax.softmax_cross_entropy(logits, targets)
  return loss, (jnp.argmax(logits, -1) == labels)


def make_train_step(config, graphdef, tx, mesh, dataset: str, steps: int):
  """The jitted train step: (state, metrics, images, labels, perm, num_steps) -> (state, metrics).

  `metrics` (TrainMetrics) accumulates over an epoch on the device. A NaN/inf
  loss makes its loss sum non-finite, which the host checks whenever it reads it.
  """
  schedule = learning_rate_schedule(config, steps * config.num_epochs)
  _, _, dropout_key = seed_keys(config.seed)  # Dropout and augmentation.
  decay = config.ema_decay

  def ema_update(ema, params, t):
    """The average of the t weights so far, the i-th weighted by decay**(t - i).

    The plain `decay * ema + (1 - decay) * params` started from the initial
    weights keeps decay**t of them: 63% after the first epoch of `best`, which
    then evaluated at 36-42%. Normalizing the weights, as Adam corrects its
    moments, leaves them out; by the end of a run the two differ by a fraction
    decay**t (8e-7 after the 14,040 steps of `best`).
    """
    if ema is None:
      return None
    tail = decay ** t.astype(jnp.float32)  # What the uncorrected average keeps of the start.
    keep = (decay - tail) / (1 - tail)  # 0 at t = 1: the average is then the weights.
    return jax.tree.map(lambda e, p: keep * e + (1 - keep) * p, ema, params)

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
    if config.augment_rotation or config.augment_scale or config.augment_elastic:
      x = input_pipeline.random_affine(x, augment_key, config.augment_rotation,
                                       config.augment_scale, config.augment_shift,
                                       config.augment_elastic, config.augment_elastic_sigma)
    elif config.augment_shift:
      x = input_pipeline.random_shift(x, augment_key, config.augment_shift)
    x = jax.lax.with_sharding_constraint(input_pipeline.normalize(x, dataset), batch_sharding)
    y = jax.lax.with_sharding_constraint(labels[idx], batch_sharding)

    # The batch's gradient as the sum of `parts` independent gradients, of rows i,
    # i + parts, ... (each device keeps its own rows): XLA:CPU's runtime runs
    # independent operations at once, and one batch of small convolutions leaves a
    # core idle. Equal to one gradient up to float rounding (dropout draws other masks).
    parts = config.microbatches
    if parts == 1:
      grads, (loss, correct, model_state) = grad_fn(state.params, state.model_state, x, y, key)
    else:
      outs = [grad_fn(state.params, state.model_state,
                      x.reshape(bs // parts, parts, *x.shape[1:])[:, i],
                      y.reshape(bs // parts, parts)[:, i], jax.random.fold_in(key, i))
              for i in range(parts)]
      grads = jax.tree.map(lambda *g: sum(g), *(g for g, _ in outs))
      loss, correct = (jnp.concatenate([aux[j] for _, aux in outs]) for j in (0, 1))
      model_state = outs[-1][1][2]
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                          opt_state=opt_state,
                          ema_params=ema_update(state.ema_params, params, state.step + 1))
    return state, sums.merge(loss, correct, optax.tree.norm(grads),
                             jnp.asarray(schedule(state.step - 1), jnp.float32))

  def steps_fn(state, sums, images, labels, perm, num_steps):
    if num_steps == 1:  # Even a length-1 scan runs ~10x slower on XLA:CPU.
      return step_fn(state, sums, images, labels, perm)
    body = lambda carry, _: (step_fn(*carry, images, labels, perm), None)
    return jax.lax.scan(body, (state, sums), length=num_steps)[0]

  return TrainStep(steps_fn, mesh)


class TrainStep:
  """`steps_fn(state, sums, images, labels, perm, num_steps) -> (state, sums)`, jitted.

  Compiled over the leaves of (state, sums), which `flat` takes and returns as the
  training loop keeps them: a jitted call that returns a TrainState rebuilds its nnx
  Variables in Python, on the main thread the cores' XLA work also needs (`fast`:
  0.75 ms of its CPU per step, 0.53-0.57 ms through `flat`).
  """

  def __init__(self, steps_fn, mesh):
    def flat(leaves, treedef, images, labels, perm, num_steps):
      state, sums = treedef.unflatten(leaves)
      return jax.tree.leaves(steps_fn(state, sums, images, labels, perm, num_steps))

    # num_steps is static: at most two compilations a run (the last call of an
    # epoch may be shorter). See resolve_steps_per_call.
    self.flat = jax.jit(flat, donate_argnums=0, static_argnums=(1, 5),
                        out_shardings=NamedSharding(mesh, P()))

  def __call__(self, state, sums, images, labels, perm, num_steps):
    leaves, treedef = jax.tree.flatten((state, sums))
    return treedef.unflatten(self.flat(leaves, treedef, images, labels, perm, num_steps))

  def lower(self, state, sums, images, labels, perm, num_steps):
    leaves, treedef = jax.tree.flatten((state, sums))
    return self.flat.lower(leaves, treedef, images, labels, perm, num_steps)


BN_STATISTICS_IMAGES = 2048


def make_bn_statistics(graphdef, dataset: str, mesh):
  """Jitted: (params, model_state, images) -> model_state with batch-norm
  statistics measured for `params`: the mean and variance over the first
  BN_STATISTICS_IMAGES `images`.

  The running statistics training keeps belong to the weights it trains; the
  EMA weights lag those by about 1 / (1 - ema_decay) steps. After epochs 4 and 5
  of `best` (seed 2) the EMA weights scored 91.7% and 92.7% with them, 99.36% and
  99.46% with statistics measured for them (the trained weights: 99.35%, 99.32%).
  Training itself normalizes with each batch's own statistics and never reads
  the running ones, so replacing them changes nothing else.
  """
  @jax.jit(out_shardings=NamedSharding(mesh, P()))
  def measure(params, model_state, images):
    model = nnx.merge(graphdef, params, model_state, copy=True)
    model.set_attributes(nnx.BatchNorm, momentum=0.0)  # This batch's statistics only.
    x = input_pipeline.normalize(images[:BN_STATISTICS_IMAGES], dataset)
    model(x, train=True, key=jax.random.key(0))
    return nnx.state(model, nnx.Not(nnx.Param))

  return measure


def make_permutation(config, mesh):
  """Jitted: epoch -> the training order of that epoch, on every device."""
  _, data_key, _ = seed_keys(config.seed)
  return jax.jit(lambda epoch, n: jax.random.permutation(
      jax.random.fold_in(data_key, epoch), n), static_argnums=1,
                 out_shardings=NamedSharding(mesh, P()))


class Evaluator:
  """Exact evaluation: the last batch is padded, and the padding's logits dropped."""

  def __init__(self, graphdef, split: input_pipeline.Split, dataset: str,
               batch_size: int, mesh):
    n = len(split)
    batch_size = -(-batch_size // mesh.size) * mesh.size  # Divisible by devices.
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    images = np.concatenate([split.images, np.zeros((pad, *split.images.shape[1:]), np.uint8)])
    self.num_examples = n
    self.labels = jax.device_put(split.labels, NamedSharding(mesh, P()))
    self.batches = jax.device_put(images.reshape(num_batches, batch_size, *images.shape[1:]),
                                  NamedSharding(mesh, P(None, 'data')))

    @jax.jit(out_shardings=NamedSharding(mesh, P()))  # Readable on every process.
    def logits_fn(params, model_state, batches):
      model = nnx.merge(graphdef, params, model_state, copy=True)
      logits = jax.lax.map(lambda b: model(input_pipeline.normalize(b, dataset)), batches)
      return logits.reshape(-1, models.NUM_CLASSES)[:n]

    # The metrics in the same program: as eager operations on the logits they were
    # a dozen more programs, each loaded from the compilation cache at start-up.
    @jax.jit(out_shardings=NamedSharding(mesh, P()))
    def metrics_fn(params, model_state, batches, labels):
      loss, correct = loss_and_correct(logits_fn(params, model_state, batches), labels)
      return loss.mean(), correct.sum()

    self._logits_fn, self._metrics_fn = logits_fn, metrics_fn

  def logits(self, params, model_state) -> jax.Array:
    """Logits for every example, in order: [N, 10]."""
    return self._logits_fn(params, model_state, self.batches)

  def lower(self, params, model_state):
    """metrics' program, lowered for these arguments (Run.ahead compiles it)."""
    return self._metrics_fn.lower(params, model_state, self.batches, self.labels)

  def metrics(self, params, model_state) -> dict[str, float]:
    """Loss and accuracy over all examples."""
    loss, correct = self._metrics_fn(params, model_state, self.batches, self.labels)
    # A count over a count: in float32, 9,900 of 10,000 came out as 0.98999995 < 0.99.
    return {'loss': float(loss), 'accuracy': int(correct) / self.num_examples}


def restore_trained(workdir: str, config, step: int | None = None):
  """(graphdef, state, mesh) of a run's checkpoint (default: the latest).

  The state is placed on this host's devices, whatever device count wrote it.
  """
  mesh = make_mesh()
  tx = create_optimizer(config, steps_per_epoch(config) * config.num_epochs)
  graphdef, state = abstract_state(config, tx, mesh)
  directory = os.path.join(workdir, 'checkpoints')
  missing = UserError(f'No checkpoint in {workdir}: train one first with '
                      f'python main.py --workdir={workdir}')
  if not os.path.isdir(directory):
    raise missing
  with checkpoints.Manager(directory, config.keep_checkpoints) as ckpt:
    if ckpt.latest_step() is None:
      raise missing
    return graphdef, ckpt.restore(state, step, required=True), mesh


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       start_time: float | None = None,
                       data: dict[str, input_pipeline.Split] | None = None,
                       on_evaluation=None) -> dict[str, float]:
  """Trains, evaluates every epoch, checkpoints; resumes from `workdir`.

  `data` ({'train': Split, 'test': Split}) replaces the tfds dataset, e.g. in
  tests. `on_evaluation(metrics)` is called with every epoch's metrics line, a
  resumed run's earlier ones first, after that epoch's checkpoint is written: it
  may raise to stop the run (a sweep pruning it). Returns the last evaluation's
  metrics.
  """
  start_time = time.time() if start_time is None else start_time
  config_lib.validate(config)
  if config.compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(config.compilation_cache_dir))
    # Every program, however quick to compile: 28 small ones compiled again at each
    # start-up cost `fast` 0.6 s.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  mesh = make_mesh()
  multiple = mesh.size * config.microbatches
  if config.batch_size % multiple:
    raise UserError(f'--config.batch_size={config.batch_size} is not divisible by the '
                    f'{mesh.size} devices times --config.microbatches='
                    f'{config.microbatches}; use a multiple of {multiple}.')
  workdir_lib.prepare(workdir, jax.process_index())
  primary = jax.process_index() == 0  # The one process that writes files other than checkpoints.
  with contextlib.ExitStack() as stack:
    if primary:
      stack.enter_context(workdir_lib.lock(workdir))
    return _train(config, workdir, start_time, data, mesh, primary, stack,
                  on_evaluation or (lambda metrics: None))


@dataclasses.dataclass
class Run:
  """What a training run builds once: the jitted pieces, and its data on the devices."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  steps: int  # Per epoch.
  train_step: TrainStep
  permutation: Any  # make_permutation
  # 'test', and 'val' where config.validation_size holds images out of training.
  evaluators: dict[str, 'Evaluator']
  bn_statistics: Any  # make_bn_statistics, where EMA weights need their own; else None.
  images: jax.Array
  labels: jax.Array
  # When the first call of the train step (its compilation included) returned;
  # None before. Images/s count from then.
  first_step_done: float | None = None
  # Seconds spent compiling the jitted pieces ahead of their first calls (see
  # ahead): kept out of the training clock, metrics.jsonl's train_clock_s.
  compile_s: float = 0.0
  compiled: set = dataclasses.field(default_factory=set)

  def ahead(self, key, lower):
    """On `key`'s first use, compiles `lower()` (a jitted function's Lowered for the
    arguments of the call that follows) and adds the time to compile_s; jit's cache
    keeps the executable, so the call itself runs without compiling."""
    if key not in self.compiled:
      start = time.time()
      lower().compile()
      self.compile_s += time.time() - start
      self.compiled.add(key)


def setup(config, data: dict[str, input_pipeline.Split], mesh) -> tuple[Run, TrainState]:
  """The Run of `config` on `data` ({'train', 'test'} Splits), and a fresh TrainState.

  The last config.validation_size training images are held out for validation.
  """
  data = input_pipeline.hold_out(data, config.validation_size)
  if len(data['train']) < config.batch_size:
    raise UserError(f'{len(data["train"]):,} training images (after holding out '
                    f'--config.validation_size={config.validation_size}) do not fill one batch '
                    f'of --config.batch_size={config.batch_size}.')
  steps = steps_per_epoch(config, len(data['train']))
  tx = create_optimizer(config, steps * config.num_epochs)
  graphdef, state = init_state(config, tx, mesh)
  batch_norm = bool(jax.tree.leaves(state.model_state))  # Its running statistics.
  if batch_norm and config.microbatches > 1:
    raise UserError(f'--config.microbatches={config.microbatches} with a model that has batch '
                    'norm (--config.batch_norm, or the flax_example_cnn model): each part would '
                    'be normalized by its own statistics; use one part.')
  replicated = NamedSharding(mesh, P())
  bn_statistics = (make_bn_statistics(graphdef, config.dataset, mesh)
                   if state.ema_params is not None and batch_norm else None)
  splits = {'test': 'test', 'val': 'validation'}
  evaluators = {prefix: Evaluator(graphdef, data[split], config.dataset,
                                  config.eval_batch_size, mesh)
                for prefix, split in splits.items() if split in data}
  return Run(config, mesh, steps,
             make_train_step(config, graphdef, tx, mesh, config.dataset, steps),
             make_permutation(config, mesh), evaluators, bn_statistics,
             jax.device_put(data['train'].images, replicated),
             jax.device_put(data['train'].labels, replicated)), state


class Diverged(Exception):
  """The training loss became NaN or infinite: (loss, step)."""


def train_epoch(run: Run, state: TrainState, epoch: int, report=None):
  """One epoch of steps; returns the state and the epoch's TrainMetrics.compute().

  Every `log_every_steps` steps (and at the end) `report(step, metrics, images_per_s)`
  is called; a non-finite loss raises Diverged.
  """
  config, steps = run.config, run.steps
  steps_per_call = resolve_steps_per_call(config, steps)
  run.ahead('permutation', lambda: run.permutation.lower(epoch, len(run.labels)))
  perm = run.permutation(epoch, len(run.labels))
  sums = jax.device_put(TrainMetrics.zeros(), NamedSharding(run.mesh, P()))
  leaves, treedef = jax.tree.flatten((state, sums))
  tick, tick_step, done = time.time(), 0, 0
  while done < steps:
    num_steps = min(steps_per_call, steps - done)
    run.ahead(('train_step', num_steps), lambda: run.train_step.flat.lower(
        leaves, treedef, run.images, run.labels, perm, num_steps))
    leaves = run.train_step.flat(leaves, treedef, run.images, run.labels, perm, num_steps)
    done += num_steps
    if run.first_step_done is None:  # Images/s count from the first call's end.
      jax.block_until_ready(leaves)
      run.first_step_done = tick = time.time()
      tick_step = done
    if done // config.log_every_steps > (done - num_steps) // config.log_every_steps or (
        done == steps):
      state, sums = treedef.unflatten(leaves)
      metrics = sums.compute()
      if not np.isfinite(metrics['loss']):
        raise Diverged(metrics['loss'], (epoch - 1) * steps + done)
      rate = (done - tick_step) * config.batch_size / max(time.time() - tick, 1e-9)
      tick, tick_step = time.time(), done
      if report:
        report((epoch - 1) * steps + done, metrics, rate)
  return state, metrics


def evaluate(run: Run, state: TrainState):
  """Test (and validation) loss and accuracy of the weights evaluation uses (the
  EMA's, with batch-norm statistics measured for them first); returns (state,
  {'test_loss', 'test_accuracy', ['val_loss', 'val_accuracy']})."""
  if run.bn_statistics:
    run.ahead('bn_statistics', lambda: run.bn_statistics.lower(
        state.ema_params, state.model_state, run.images))
    state = state.replace(
        model_state=run.bn_statistics(state.ema_params, state.model_state, run.images))
  metrics = {}
  for prefix, evaluator in run.evaluators.items():
    run.ahead(prefix, lambda: evaluator.lower(state.eval_params, state.model_state))
    metrics.update({f'{prefix}_{k}': v for k, v in
                    evaluator.metrics(state.eval_params, state.model_state).items()})
  return state, metrics


def _train(config, workdir, start_time, data, mesh, primary, stack, on_evaluation):
  """Setup, resume, then per epoch: train, evaluate, write, checkpoint.

  Where the time goes is written to metrics.jsonl: each epoch's `epoch_train_s` and
  `epoch_eval_s`; `train_clock_s`, the training clock: seconds since this process's first
  epoch began, less the time spent compiling (Run.ahead): training, evaluation and the
  writing and checkpoints between them; and on the first line a process writes, its
  start-up: imports (from `start_time` to this call), data loading, setup (jitted
  pieces, data on the devices, state initialized or restored), the first train step
  (compilation included) and the compilation so far (`startup_compile_s`: the train
  step's and evaluation's).
  """
  entered = time.time()
  if data is None:
    data = distributed.load_data(config.dataset, config.data_dir, config.manual_dir)
  loaded = time.time()
  run, state = setup(config, data, mesh)
  ckpt = stack.enter_context(checkpoints.Manager(os.path.join(workdir, 'checkpoints'),
                                                 config.keep_checkpoints))
  state = ckpt.restore(state)
  set_up = time.time()
  startup = {'startup_imports_s': entered - start_time, 'startup_data_s': loaded - entered,
             'startup_setup_s': set_up - loaded}
  start_step = int(state.step)
  history = (workdir_lib.truncate_metrics(os.path.join(workdir, 'metrics.jsonl'), start_step)
             if primary else [])
  if primary:
    config_lib.save(config, workdir)
  if start_step >= run.steps * config.num_epochs:
    logging.info('%s already holds the final checkpoint (step %d); nothing to train.',
                 workdir, start_step)
  elif start_step:
    logging.info('Resuming from the checkpoint at step %d.', start_step)
  writer = stack.enter_context(workdir_lib.Writer(workdir, primary))

  def report(step, metrics, rate):
    epoch, done = divmod(step - 1, run.steps)
    writer.write(step, {f'train/{k}': v for k, v in metrics.items()} | {
        'train/images_per_s': rate},
                 f'epoch {epoch + 1}/{config.num_epochs}  step {done + 1}/{run.steps}  '
                 f'loss {metrics["loss"]:.4f}  accuracy {100 * metrics["accuracy"]:.2f}%  '
                 f'lr {metrics["learning_rate"]:.2e}  grad norm {metrics["grad_norm"]:.3f}  '
                 f'{rate:.0f} images/s')

  metrics = history[-1] if history else {}
  for line in history:
    on_evaluation(line)
  clock_start = None  # The training clock's: the first epoch's start.
  for epoch in range(start_step // run.steps + 1, config.num_epochs + 1):
    epoch_start = time.time()
    clock_start = clock_start or epoch_start
    try:
      state, train_metrics = train_epoch(run, state, epoch, report)
    except Diverged as e:
      last = ckpt.latest_step()
      kept = (f'The last good checkpoint (step {last}) in {ckpt.directory} is kept.'
              if last is not None else 'No checkpoint had been written yet.')
      raise UserError(f'Training diverged: the loss became {e.args[0]} in epoch {epoch} '
                      f'(by step {e.args[1]}). {kept} Try a lower --config.learning_rate.'
                      ) from e
    trained = time.time()
    state, eval_metrics = evaluate(run, state)
    metrics = {'epoch': epoch, 'step': int(state.step),
               'train_loss': train_metrics['loss'], 'train_accuracy': train_metrics['accuracy'],
               **eval_metrics, 'elapsed_s': round(time.time() - start_time, 2),
               'epoch_train_s': round(trained - epoch_start, 3),
               'epoch_eval_s': round(time.time() - trained, 3),
               'train_clock_s': round(time.time() - clock_start - run.compile_s, 3)}
    if startup:  # This process's first line.
      startup['startup_first_step_s'] = run.first_step_done - set_up
      startup['startup_compile_s'] = run.compile_s
      metrics.update({k: round(v, 3) for k, v in startup.items()})
      startup = None
    val = (f'val accuracy {100 * metrics["val_accuracy"]:.2f}%  val loss '
           f'{metrics["val_loss"]:.4f}  ' if 'val_accuracy' in metrics else '')
    writer.write(metrics['step'], metrics,
                 f'epoch {epoch}: {val}test accuracy {100 * metrics["test_accuracy"]:.2f}%  '
                 f'test loss {metrics["test_loss"]:.4f}  '
                 f'({metrics["elapsed_s"]:.1f} s since start)', record=True)
    if epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs:
      ckpt.save(int(state.step), state)
    on_evaluation(metrics)
  return metrics
