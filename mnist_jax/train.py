"""Training: setup, resume, then per epoch train, evaluate, write, checkpoint.

The whole training set lives on the device as uint8; every step cuts its batch
from it with the epoch's permutation, so no step waits for the host. Every
random number derives from `config.seed`: parameter init, the permutation of
each epoch (from the epoch number) and dropout (from the step number), which is
what makes a resumed run end exactly where an uninterrupted one would.
"""

import contextlib
import dataclasses
import os
import time
from typing import Any

from absl import logging
import jax
import ml_collections
from jax.sharding import NamedSharding, PartitionSpec as P

from mnist_jax import checkpoints, compile_clock, config_lib, distributed, input_pipeline
from mnist_jax import optimizer, state as state_lib, step as step_lib, workdir as workdir_lib
from mnist_jax.errors import UserError
from mnist_jax.inference import Evaluator
from mnist_jax.state import TrainState

NUM_TRAIN_IMAGES = 60_000


def steps_per_epoch(config, num_train: int | None = None) -> int:
  """Steps per epoch on `num_train` images (default: the training split less
  the validation images)."""
  if num_train is None:
    num_train = NUM_TRAIN_IMAGES - config.validation_size
  full = num_train // config.batch_size
  return min(full, config.train_steps_per_epoch) if config.train_steps_per_epoch else full


def resolve_steps_per_call(config, steps: int) -> int:
  """config.steps_per_call, where 0 means what measured fastest: one step per call
  on a CPU, a whole epoch's lax.scan on accelerators."""
  if config.steps_per_call:
    return config.steps_per_call
  return 1 if jax.default_backend() == 'cpu' else steps


def make_permutation(config, mesh):
  """Jitted: epoch -> the training order of that epoch, on every device."""
  _, data_key, _ = state_lib.seed_keys(config.seed)
  return jax.jit(lambda epoch, n: jax.random.permutation(
      jax.random.fold_in(data_key, epoch), n), static_argnums=1,
                 out_shardings=NamedSharding(mesh, P()))


@dataclasses.dataclass
class Run:
  """What a training run builds once: the jitted pieces, and its data on the devices."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  steps: int  # Per epoch.
  train_step: step_lib.TrainStep
  permutation: Any  # make_permutation
  # 'test', and 'val' where config.validation_size holds images out of training.
  evaluators: dict[str, Evaluator]
  bn_statistics: Any  # step.make_bn_statistics, where EMA weights need their own; else None.
  images: jax.Array
  labels: jax.Array


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
  tx = optimizer.create(config, steps * config.num_epochs)
  graphdef, state = state_lib.init_state(config, tx, mesh)
  batch_norm = bool(jax.tree.leaves(state.model_state))  # Its running statistics.
  step_lib.check_microbatches(config, mesh, batch_norm)
  replicated = NamedSharding(mesh, P())
  bn_statistics = (step_lib.make_bn_statistics(graphdef, config.dataset, mesh)
                   if state.ema_params is not None and batch_norm else None)
  splits = {'test': 'test', 'val': 'validation'}
  evaluators = {prefix: Evaluator(graphdef, data[split], config.dataset,
                                  config.eval_batch_size, mesh)
                for prefix, split in splits.items() if split in data}
  train_step = step_lib.TrainStep(step_lib.make_step_fn(config, graphdef, tx, mesh, steps),
                                  mesh, resolve_steps_per_call(config, steps))
  return Run(config, mesh, steps, train_step, make_permutation(config, mesh), evaluators,
             bn_statistics, jax.device_put(data['train'].images, replicated),
             jax.device_put(data['train'].labels, replicated)), state


def report_points(steps: int, steps_per_call: int, every: int) -> list[int]:
  """The steps of an epoch after which progress is reported: the end of each call
  of `steps_per_call` steps that passes a multiple of `every`, and the epoch's end."""
  points, done = [], 0
  while done < steps:
    calls_end = min(done + steps_per_call, steps)
    if calls_end // every > done // every or calls_end == steps:
      points.append(calls_end)
    done = calls_end
  return points


class Diverged(Exception):
  """The training loss became NaN or infinite, or exploded: (loss, step)."""


# A mean cross-entropy no model that learns comes near: chance is ln(10) = 2.3, and
# a run with a learning rate of 1e6 passed 1e20 while its loss stayed finite.
EXPLODED_LOSS = 1e4


def train_epoch(run: Run, state: TrainState, epoch: int, report=None):
  """One epoch of steps; returns the state and the epoch's TrainMetrics.compute().

  At every report point (about every `log_every_steps` steps, and at the end)
  `report(step, metrics, images_per_s)` is called, images/s counted without
  compilation; a non-finite or exploded loss (EXPLODED_LOSS) raises Diverged.
  """
  perm = run.permutation(epoch, len(run.labels))
  sums = jax.device_put(step_lib.TrainMetrics.zeros(), NamedSharding(run.mesh, P()))
  done, tick, compiled = 0, time.monotonic(), compile_clock.seconds()
  for point in report_points(run.steps, run.train_step.steps_per_call,
                             run.config.log_every_steps):
    state, sums = run.train_step(state, sums, run.images, run.labels, perm, point - done)
    metrics = sums.compute()
    if not metrics['loss'] < EXPLODED_LOSS:  # NaN compares False.
      raise Diverged(metrics['loss'], (epoch - 1) * run.steps + point)
    seconds = time.monotonic() - tick - (compile_clock.seconds() - compiled)
    rate = (point - done) * run.config.batch_size / max(seconds, 1e-9)
    done, tick, compiled = point, time.monotonic(), compile_clock.seconds()
    if report:
      report((epoch - 1) * run.steps + point, metrics, rate)
  return state, metrics


def evaluate(run: Run, state: TrainState):
  """Test (and validation) loss and accuracy of the weights evaluation uses (the
  EMA's, with batch-norm statistics measured for them first); returns (state,
  {'test_loss', 'test_accuracy', ['val_loss', 'val_accuracy']})."""
  if run.bn_statistics:
    state = state.replace(
        model_state=run.bn_statistics(state.ema_params, state.model_state, run.images))
  metrics = {}
  for prefix, evaluator in run.evaluators.items():
    metrics.update({f'{prefix}_{k}': v for k, v in
                    evaluator.metrics(state.eval_params, state.model_state).items()})
  return state, metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       start_time: float | None = None,
                       data: dict[str, input_pipeline.Split] | None = None,
                       on_evaluation=None, resume_with_changes: bool = False
                       ) -> dict[str, float]:
  """Trains, evaluates every epoch, checkpoints; resumes from `workdir`.

  `data` ({'train': Split, 'test': Split}) replaces the tfds dataset, e.g. in
  tests; `start_time` is when the command started, on time.monotonic()'s clock
  (default: now). `on_evaluation(metrics)` is called with every epoch's metrics line, a
  resumed run's earlier ones first, after that epoch's checkpoint is written: it
  may raise to stop the run (a sweep pruning it). Resuming with a config that
  trains otherwise is refused unless `resume_with_changes` (config_lib.check_resume).
  Returns the last evaluation's metrics.
  """
  start_time = time.monotonic() if start_time is None else start_time
  config_lib.validate(config)
  if config.compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(config.compilation_cache_dir))
    # Every program, however quick to compile: each of the small ones costs
    # start-up time when compiled again.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  mesh = state_lib.make_mesh()
  # Before the data is read: batch norm is checked again with the model in setup.
  step_lib.check_microbatches(config, mesh, batch_norm=False)
  workdir_lib.prepare(workdir)
  primary = jax.process_index() == 0  # The one process that writes files other than checkpoints.
  with contextlib.ExitStack() as stack:
    if primary:
      stack.enter_context(workdir_lib.lock(workdir))
    return _train(config, workdir, start_time, data, mesh, primary, stack,
                  on_evaluation or (lambda metrics: None), resume_with_changes)


def _train(config, workdir, start_time, data, mesh, primary, stack, on_evaluation,
           resume_with_changes):
  """Setup, resume, then per epoch: train, evaluate, write, checkpoint.

  Where the time goes is written to metrics.jsonl (see epoch_line).
  """
  entered, compiled_at_entry = time.monotonic(), compile_clock.seconds()
  if data is None:
    data = distributed.load_data(config.dataset, config.data_dir, config.manual_dir)
  loaded = time.monotonic()
  run, state = setup(config, data, mesh)
  ckpt = stack.enter_context(checkpoints.Manager(os.path.join(workdir, 'checkpoints'),
                                                 config.keep_checkpoints))
  state = ckpt.restore(state)
  set_up = time.monotonic()
  startup = {'startup_imports_s': entered - start_time, 'startup_data_s': loaded - entered,
             'startup_setup_s': set_up - loaded}
  start_step = int(state.step)
  history = (workdir_lib.truncate_metrics(os.path.join(workdir, 'metrics.jsonl'), start_step)
             if primary else [])
  if start_step:
    config_lib.check_resume(config, workdir, start_step, resume_with_changes, primary)
  elif primary:  # A new run (or one stopped before its first checkpoint).
    config_lib.save(config, workdir)
    changes = os.path.join(workdir, config_lib.CHANGES_FILE)
    if os.path.exists(changes):
      os.remove(changes)
  if start_step >= run.steps * config.num_epochs:
    logging.info('%s already holds the final checkpoint (step %d); nothing to train.',
                 workdir, start_step)
  elif start_step:
    logging.info('Resuming from the checkpoint at step %d.', start_step)
  writer = stack.enter_context(workdir_lib.Writer(workdir, primary))
  metrics = history[-1] if history else {}
  for line in history:
    on_evaluation(line)
  clock = TrainingClock()
  for epoch in range(start_step // run.steps + 1, config.num_epochs + 1):
    epoch_start = time.monotonic()
    clock.start()
    try:
      state, train_metrics = train_epoch(run, state, epoch, progress_reporter(run, writer))
    except Diverged as e:
      last = ckpt.latest_step()
      kept = (f'The last good checkpoint (step {last}) in {ckpt.directory} is kept.'
              if last is not None else 'No checkpoint had been written yet.')
      raise UserError(f'Training diverged: the loss became {e.args[0]:.3g} in epoch {epoch} '
                      f'(by step {e.args[1]}). {kept} Try a lower --config.learning_rate.'
                      ) from e
    trained = time.monotonic()
    state, eval_metrics = evaluate(run, state)
    metrics = epoch_line(epoch, int(state.step), train_metrics, eval_metrics, start_time,
                         (epoch_start, trained), clock)
    if startup:  # This process's first line.
      startup['startup_first_step_s'] = run.train_step.first_call_done - set_up
      startup['startup_compile_s'] = compile_clock.seconds() - compiled_at_entry
      metrics.update({k: round(v, 3) for k, v in startup.items()})
      startup = None
    val = (f'val accuracy {100 * metrics["val_accuracy"]:.2f}%  val loss '
           f'{metrics["val_loss"]:.4f}  ' if 'val_accuracy' in metrics else '')
    writer.write(metrics['step'], metrics,
                 f'epoch {epoch}: {val}test accuracy {100 * metrics["test_accuracy"]:.2f}%  '
                 f'test loss {metrics["test_loss"]:.4f}  '
                 f'({metrics["elapsed_s"]:.1f} s since start)', record=True)
    if epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs:
      with clock.paused():
        ckpt.save(int(state.step), state)
    on_evaluation(metrics)
  return metrics


def progress_reporter(run: Run, writer: workdir_lib.Writer):
  """train_epoch's `report`: a progress line and the train/* scalars.

  The line ends with the training time left in the epoch and in the run, at the
  pace of the steps so far (a running average; evaluations not included).
  """
  pace = []  # Seconds per step.

  def report(step, metrics, rate):
    epoch, done = divmod(step - 1, run.steps)
    seconds = run.config.batch_size / max(rate, 1e-9)
    pace[:] = [seconds if not pace else 0.7 * pace[0] + 0.3 * seconds]
    epoch_left = (run.steps - done - 1) * pace[0]
    run_left = (run.steps * run.config.num_epochs - step) * pace[0]
    writer.write(step, {f'train/{k}': v for k, v in metrics.items()} | {
        'train/images_per_s': rate},
                 f'epoch {epoch + 1}/{run.config.num_epochs}  step {done + 1}/{run.steps}  '
                 f'loss {metrics["loss"]:.4f}  accuracy {100 * metrics["accuracy"]:.2f}%  '
                 f'lr {metrics["learning_rate"]:.2e}  grad norm {metrics["grad_norm"]:.3f}  '
                 f'{rate:.0f} images/s  left: {duration(epoch_left)} of the epoch, '
                 f'{duration(run_left)} in all')
  return report


def duration(seconds: float) -> str:
  """'7 s', '2 min 05 s', '1 h 04 min'."""
  seconds = round(seconds)
  if seconds < 60:
    return f'{seconds} s'
  if seconds < 3600:
    return f'{seconds // 60} min {seconds % 60:02d} s'
  return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'


class TrainingClock:
  """Seconds of training and evaluation since this process's first epoch began,
  less what is not training: compilation (compile_clock) and the waits for
  checkpoints to be written (`paused`), which a run of a few GPU seconds would
  otherwise be timed by (the first save imports Orbax)."""

  def __init__(self):
    self._start = None  # (time, compilation seconds then)
    self._paused = 0.0

  def start(self) -> None:
    """Starts the clock, the first time only."""
    self._start = self._start or (time.monotonic(), compile_clock.seconds())

  @contextlib.contextmanager
  def paused(self):
    before = time.monotonic()
    try:
      yield
    finally:
      self._paused += time.monotonic() - before

  def seconds(self, now: float) -> float:
    return now - self._start[0] - (compile_clock.seconds() - self._start[1]) - self._paused


def epoch_line(epoch, step, train_metrics, eval_metrics, start_time, epoch_times, clock):
  """An epoch's metrics.jsonl line.

  Where the time went: `elapsed_s` since `start_time` (the command's start);
  `epoch_train_s` and `epoch_eval_s`; `train_clock_s`, the TrainingClock `clock`.
  The process's first line adds its start-up: imports, data,
  setup (jitted pieces, data on the devices, state initialized or restored), the
  first train step (compilation included) and the compilation so far.
  """
  now, (epoch_start, trained) = time.monotonic(), epoch_times
  return {'epoch': epoch, 'step': step,
          'train_loss': train_metrics['loss'], 'train_accuracy': train_metrics['accuracy'],
          **eval_metrics, 'elapsed_s': round(now - start_time, 2),
          'epoch_train_s': round(trained - epoch_start, 3),
          'epoch_eval_s': round(now - trained, 3),
          'train_clock_s': round(clock.seconds(now), 3)}


def learned_nothing(metrics: dict, config) -> str | None:
  """Why a finished run is of no use, where its test accuracy is still near chance
  (10%) after 100 steps or more (the `tiny` config reaches 88% in 100); else None.
  Said by the command, not raised here: a sweep keeps such a trial."""
  if not metrics or metrics['test_accuracy'] >= 0.2 or metrics['step'] < 100:
    return None
  return (f'The run learned nothing: test accuracy {100 * metrics["test_accuracy"]:.1f}% after '
          f'{metrics["step"]} steps is chance level (10%). Its checkpoint is kept; try a lower '
          f'--config.learning_rate (this run: {config.learning_rate}) in a new --workdir.')


def summary(workdir: str) -> str:
  """What a finished run gave, where it is, and what to try next: the lines the
  command ends with."""
  lines = workdir_lib.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  if not lines:
    return f'No epoch was trained in {workdir}.'
  last = lines[-1]
  best = max(lines, key=lambda l: l['test_accuracy'])
  command = f'python main.py --workdir={workdir}'
  return '\n'.join([
      f'\nDone: test accuracy {100 * last["test_accuracy"]:.2f}% after epoch {last["epoch"]} '
      f'(best {100 * best["test_accuracy"]:.2f}%, epoch {best["epoch"]}), '
      f'{last["elapsed_s"]:.0f} s.',
      f'Checkpoint (step {last["step"]}): {os.path.join(workdir, "checkpoints")}',
      'Next:',
      f'  {command} --mode=eval                   # report and pictures in eval/',
      f'  {command} --mode=serve                  # draw digits at http://127.0.0.1:8000',
      f'  {command} --mode=predict --images=DIGIT.jpg'])
