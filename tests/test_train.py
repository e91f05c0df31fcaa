"""Training-loop units on tiny synthetic data."""

import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import synthetic_split
from flax import nnx

from mnist_jax import checkpoints, config_lib, inference, input_pipeline, models, optimizer
from mnist_jax import compile_clock, state as state_lib, step as step_lib, train
from mnist_jax.errors import UserError


def _train_step(config, graphdef, tx, mesh, steps, steps_per_call=1):
  """The TrainStep training builds, on an epoch of `steps` steps."""
  return step_lib.TrainStep(step_lib.make_step_fn(config, graphdef, tx, mesh, steps), mesh,
                            steps_per_call)


def test_train_step_lowers_loss_on_fixed_batch(tiny_config):
  config = tiny_config
  config.dropout_rate = 0.0
  data = synthetic_split(config.batch_size)
  mesh = state_lib.make_mesh()
  tx = optimizer.create(config, total_steps=100)
  graphdef, state = state_lib.init_state(config, tx, mesh)
  step = _train_step(config, graphdef, tx, mesh, steps=1)
  perm = jnp.arange(config.batch_size)
  images, labels = jnp.asarray(data.images), jnp.asarray(data.labels)
  losses = []
  for _ in range(20):
    state, metrics = step(state, step_lib.TrainMetrics.zeros(), images, labels, perm, 1)
    losses.append(metrics.compute()['loss'])
  assert int(state.step) == 20
  assert losses[-1] < 0.5 * losses[0], losses


def test_each_step_reports_its_learning_rate_and_gradient_norm(tiny_config):
  config = tiny_config
  config.schedule, config.num_epochs, config.warmup_epochs = 'cosine', 2, 1.0
  data = synthetic_split(config.batch_size)
  mesh = state_lib.make_mesh()
  tx = optimizer.create(config, total_steps=16)
  schedule = optimizer.learning_rate_schedule(config, 16)
  graphdef, state = state_lib.init_state(config, tx, mesh)
  step = _train_step(config, graphdef, tx, mesh, steps=8)
  perm = jnp.arange(config.batch_size)
  images, labels = jnp.asarray(data.images), jnp.asarray(data.labels)
  metrics = step_lib.TrainMetrics.zeros()
  for i in range(3):
    state, metrics = step(state, metrics, images, labels, perm, 1)
    report = metrics.compute()
    assert report['learning_rate'] == pytest.approx(float(schedule(i)))  # 0 on the first.
    assert np.isfinite(report['grad_norm']) and report['grad_norm'] > 0
  assert int(metrics.count) == 3 * config.batch_size


def test_evaluation_counts_every_example_once(tiny_config):
  """203 examples with batches of 50: the last batch is padded, not dropped."""
  split = synthetic_split(203, seed=3)
  mesh = state_lib.make_mesh()
  tx = optimizer.create(tiny_config, 10)
  graphdef, state = state_lib.init_state(tiny_config, tx, mesh)
  evaluator = inference.Evaluator(graphdef, split, 'mnist', 50, mesh)
  model = nnx.merge(graphdef, state.params, state.model_state)
  # Full float32: GPUs otherwise run float32 convolutions in TF32.
  with jax.default_matmul_precision('highest'):
    logits = evaluator.logits(state.params, state.model_state)
    direct = model(input_pipeline.normalize(jnp.asarray(split.images), 'mnist'))
    metrics = evaluator.metrics(state.params, state.model_state)
  assert logits.shape == (203, 10)
  np.testing.assert_allclose(logits, direct, rtol=1e-4, atol=1e-4)
  expected = np.mean(np.argmax(direct, -1) == split.labels)
  assert metrics['accuracy'] == pytest.approx(expected)


@pytest.mark.parametrize('key,value,message', [
    ('batch_size', 0, 'batch_size must be positive'),
    ('learning_rate', -0.1, 'learning_rate must be positive'),
    ('num_epochs', 0, 'num_epochs must be positive'),
    ('model', 'resnet9000', 'choose one of'),
    ('dataset', 'cifar10', 'choose one of'),
    ('optimizer', 'lion', 'choose one of'),
    ('dropout_rate', 1.0, 'dropout_rate must be in'),
    ('batch_size', 100_000, 'larger than the training set'),
    # Values that passed these checks once and then crashed or misbehaved later:
    ('conv_features', (0,), 'whole numbers >= 1'),
    ('conv_features', (-8, 16), 'whole numbers >= 1'),
    ('conv_features', (8, 8, 8, 8, 8), 'too few pixels'),
    ('input_crop', -1, 'whole number of pixels'),
    ('input_crop', 13, 'too few pixels'),  # A 2x2 image for tiny's two blocks.
    ('model', 'mlp', 'input_crop'),  # With input_crop set below: cnn only.
    ('dense_features', 0, 'whole numbers >= 1'),
    ('hidden_features', (512, 0), 'whole numbers >= 1'),
    ('train_steps_per_epoch', -5, 'must be >= 1'),
    ('train_steps_per_epoch', 0, 'must be >= 1'),  # Once silently the whole epoch.
    ('eval_batch_size', 1_000_000_000, 'larger than the test set'),  # Once 730 GiB.
    ('momentum', 1.5, 'momentum must be in'),
    ('validation_size', -1, 'whole number >= 0'),
    ('validation_size', 59_990, 'not one batch'),
    ('microbatches', 0, 'whole number >= 1'),
    ('augment_elastic_sigma', 0.0, 'augment_elastic_sigma in'),
])
def test_config_validation(tiny_config, key, value, message):
  if (key, value) == ('model', 'mlp'):
    tiny_config.input_crop = 2
  tiny_config[key] = value
  with pytest.raises(UserError, match=message):
    config_lib.validate(tiny_config)


def test_microbatches_are_checked_against_batch_norm_and_the_batch(tiny_config, synthetic_data,
                                                                    tmp_path):
  tiny_config.microbatches, tiny_config.batch_norm = 2, True
  with pytest.raises(UserError, match='own statistics'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'a'), data=synthetic_data)
  tiny_config.batch_norm, tiny_config.model = False, 'flax_example_cnn'  # Batch norm inside.
  with pytest.raises(UserError, match='own statistics'):
    train.train_and_evaluate(tiny_config, str(tmp_path / 'b'), data=synthetic_data)
  tiny_config.model, tiny_config.microbatches = 'cnn', 3  # Batch 32.
  with pytest.raises(UserError, match='not divisible by the 1 devices times --config.microbatches=3'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)


def test_schedules_and_optimizers_build(tiny_config):
  for name in config_lib.OPTIMIZERS:
    for schedule in config_lib.SCHEDULES:
      tiny_config.optimizer, tiny_config.schedule = name, schedule
      config_lib.validate(tiny_config)
      tx = optimizer.create(tiny_config, total_steps=10)
      params = {'w': jnp.ones(3)}
      opt_state = tx.init(params)
      for _ in range(3):  # Warm-up schedules start at a learning rate of 0.
        updates, opt_state = tx.update({'w': jnp.ones(3)}, opt_state, params)
        params = optax.apply_updates(params, updates)
      assert np.all(np.isfinite(params['w'])) and np.all(params['w'] < 1), (optimizer, schedule)


def test_muon_orthogonalizes_convolution_kernels_and_nadam_moves_the_rest(tiny_config):
  tiny_config.optimizer, tiny_config.schedule = 'muon', 'constant'
  tiny_config.learning_rate, tiny_config.muon_learning_rate = 0.001, 0.02
  params = nnx.state(models.create_model(tiny_config, seed=0), nnx.Param)
  # Gradients whose singular values span a factor of 100 as [9 * C, F] matrices.
  def ill_conditioned(x):
    rows, cols = int(np.prod(x.shape[:-1])), x.shape[-1]
    u, _ = np.linalg.qr(np.random.default_rng(rows).normal(size=(rows, cols)))
    v, _ = np.linalg.qr(np.random.default_rng(cols).normal(size=(cols, cols)))
    return jnp.asarray((u * np.geomspace(1.0, 1e-2, cols)) @ v.T).reshape(x.shape)
  grads = jax.tree.map(ill_conditioned, params)
  tx = optimizer.create(tiny_config, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  nadam = optax.nadam(0.001)  # optax.contrib.muon's Adam has Nesterov momentum.
  adam_updates, _ = nadam.update(grads, nadam.init(params))
  for conv in (0, 1):
    kernel = updates['convs'][conv]['kernel'][...]
    singular = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)
    assert singular.max() / singular.min() < 5, singular  # 100 in the gradient.
  for layer in ('dense', 'head'):
    np.testing.assert_allclose(updates[layer]['kernel'][...], adam_updates[layer]['kernel'][...],
                               rtol=1e-5)
  np.testing.assert_allclose(updates['convs'][0]['bias'][...],
                             adam_updates['convs'][0]['bias'][...], rtol=1e-5)


def test_full_loop_on_synthetic_data(tiny_config, synthetic_data, tmp_path):
  tiny_config.num_epochs = 3
  metrics = train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [l['epoch'] for l in lines] == [1, 2, 3]
  assert [l['step'] for l in lines] == [8, 16, 24]
  for line in lines:
    for key in ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy', 'elapsed_s'):
      assert key in line
    assert 0 <= line['train_accuracy'] <= 1 and 0 <= line['test_accuracy'] <= 1
  assert metrics == lines[-1]
  assert metrics['test_accuracy'] > 0.5  # The synthetic classes are easy.
  # Where the time went: every epoch; the start-up on the process's first line only.
  startup = ('startup_imports_s', 'startup_data_s', 'startup_setup_s', 'startup_first_step_s',
             'startup_compile_s')
  assert all(lines[0][k] >= 0 for k in startup) and lines[0]['startup_first_step_s'] > 0
  # Imports, data, setup and the first step follow one another, within the epoch's time.
  assert sum(lines[0][k] for k in startup[:4]) <= lines[0]['elapsed_s'] + 0.01, lines[0]
  # The training clock: since the first epoch began, less compilation; so less than the
  # time since the command started.
  clocks = [l['train_clock_s'] for l in lines]
  assert 0 < clocks[0] < lines[0]['elapsed_s'] - lines[0]['startup_compile_s']
  assert clocks == sorted(clocks)
  assert not any(k in line for k in startup for line in lines[1:])
  assert all(line['epoch_train_s'] > 0 and line['epoch_eval_s'] > 0 for line in lines)
  saved = json.load(open(tmp_path / 'config.json'))
  assert saved['batch_size'] == 32 and saved['num_epochs'] == 3
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['16', '24', '8']
  assert any(f.startswith('events') for f in os.listdir(tmp_path / 'tensorboard'))


def test_the_training_clock_leaves_compilation_out(tiny_config, synthetic_data, monkeypatch,
                                                   tmp_path):
  """Every program an epoch and its evaluation compile (train step, permutation,
  batch-norm statistics, test and validation evaluators) is counted by
  compile_clock, and train_clock_s leaves it out: with each trace of
  normalization slowed by 0.3 s (the train step, the statistics and the two
  evaluators trace it: 1.2 s), the clock stays below the epoch's time less that."""
  tiny_config.update(batch_norm=True, ema_decay=0.9, validation_size=64, num_epochs=1)
  normalize = input_pipeline.normalize

  def slow_to_trace(x, dataset):
    if isinstance(x, jax.core.Tracer):
      time.sleep(0.3)
    return normalize(x, dataset)

  backend = []
  listener = lambda event, duration, **kw: backend.append(duration) if (
      event == '/jax/core/compile/backend_compile_duration') else None
  monkeypatch.setattr(input_pipeline, 'normalize', slow_to_trace)
  jax.monitoring.register_event_duration_secs_listener(listener)
  cache = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)  # Every program compiled here.
  try:
    before = compile_clock.seconds()
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
    compiled = compile_clock.seconds() - before
  finally:
    jax.config.update('jax_enable_compilation_cache', cache)
    jax.monitoring.unregister_event_duration_listener(listener)
  [line] = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert backend and compiled >= 1.2 + sum(backend) * 0.99, (compiled, sum(backend))
  epoch_s = line['epoch_train_s'] + line['epoch_eval_s']
  assert 0 < line['train_clock_s'] < epoch_s - 1.2, line
  assert line['startup_compile_s'] >= 1.2


def test_the_training_clock_leaves_checkpoint_writing_out(tiny_config, synthetic_data,
                                                         monkeypatch, tmp_path):
  """A checkpoint save that takes 2 s (a slow disk; Orbax's first import) is not
  training: the third epoch's clock, two saves later, counts neither."""
  tiny_config.num_epochs = 3
  save = checkpoints.Manager.save

  def slow_save(self, step, state):
    time.sleep(2)
    save(self, step, state)

  monkeypatch.setattr(checkpoints.Manager, 'save', slow_save)
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  # Epochs 2 and 3, and the two saves after epochs 1 and 2.
  epochs_s = sum(l['epoch_train_s'] + l['epoch_eval_s'] for l in lines[1:])
  assert lines[2]['elapsed_s'] - lines[0]['elapsed_s'] > 4 + epochs_s
  assert 0 < lines[2]['train_clock_s'] - lines[0]['train_clock_s'] < epochs_s + 1, lines


def test_the_loops_pieces_give_what_train_and_evaluate_gives(tiny_config, synthetic_data,
                                                             tmp_path):
  tiny_config.num_epochs = 1
  full = train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  run, state = train.setup(tiny_config, synthetic_data, state_lib.make_mesh())
  reports = []
  state, train_metrics = train.train_epoch(run, state, 1, lambda *r: reports.append(r))
  state, test_metrics = train.evaluate(run, state)
  assert train_metrics['loss'] == full['train_loss']
  assert test_metrics == {k: full[k] for k in ('test_loss', 'test_accuracy')}
  assert [r[0] for r in reports] == [8] and reports[0][1] == train_metrics


def test_keeps_last_n_checkpoints_and_a_finished_run_trains_no_more(tiny_config, synthetic_data,
                                                                     tmp_path, caplog):
  tiny_config.num_epochs = 4
  tiny_config.keep_checkpoints = 2
  last = train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert sorted(os.listdir(tmp_path / 'checkpoints'), key=int) == ['24', '32']
  caplog.set_level(logging.INFO, logger='absl')
  again = train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert again == last and again['epoch'] == 4  # The last epoch's figures, read back.
  assert 'already holds the final checkpoint (step 32); nothing to train.' in caplog.text
  assert len((tmp_path / 'metrics.jsonl').read_text().splitlines()) == 4


def test_a_longer_run_resumes_saying_so_and_each_epoch_says_its_figures(
    tiny_config, synthetic_data, tmp_path, caplog):
  caplog.set_level(logging.INFO, logger='absl')
  tiny_config.validation_size, tiny_config.num_epochs = 64, 2
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  tiny_config.num_epochs = 3
  last = train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data,
                                  resume_with_changes=True)
  assert 'Resuming from the checkpoint at step 16.' in caplog.text
  assert (f'epoch 3: val accuracy {100 * last["val_accuracy"]:.2f}%  val loss '
          f'{last["val_loss"]:.4f}  test accuracy {100 * last["test_accuracy"]:.2f}%  test loss '
          f'{last["test_loss"]:.4f}  ({last["elapsed_s"]:.1f} s since start)') in caplog.text
  assert last['val_accuracy'] > 0.5  # Where x99 and x100 differ.


def test_batch_norm_statistics_are_measured_for_the_weight_average_only(tiny_config,
                                                                        synthetic_data):
  """Only where an EMA of the weights is kept and the model has batch norm: the
  average's own statistics (without EMA, the running ones fit the weights)."""
  for batch_norm, ema_decay, measured in ((True, 0.9, True), (True, 0.0, False),
                                          (False, 0.9, False)):
    tiny_config.update(batch_norm=batch_norm, ema_decay=ema_decay)
    run, _ = train.setup(tiny_config, synthetic_data, state_lib.make_mesh())
    assert (run.bn_statistics is not None) == measured, (batch_norm, ema_decay)


def test_progress_points_and_steps_per_call():
  """A progress line at the end of each call that passes a multiple of
  log_every_steps, and at the epoch's end; one step a call on a CPU unless set."""
  assert train.report_points(100, 10, 25) == [30, 50, 80, 100]
  assert train.report_points(100, 1, 25) == [25, 50, 75, 100]
  assert train.report_points(10, 4, 25) == [10]
  config = ml_collections.ConfigDict({'steps_per_call': 0})
  assert train.resolve_steps_per_call(config, 100) == (1 if jax.default_backend() == 'cpu'
                                                       else 100)
  config.steps_per_call = 7
  assert train.resolve_steps_per_call(config, 100) == 7


@pytest.mark.parametrize('learning_rate', [1e30, 1e6])  # A NaN loss; a finite one, exploded.
def test_divergence_stops_without_touching_checkpoints(tiny_config, synthetic_data, tmp_path,
                                                       learning_rate):
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  tiny_config.num_epochs = 3
  tiny_config.learning_rate = learning_rate
  with pytest.raises(UserError, match=r'Training diverged: .* in epoch 2 \(by step 16\)\. The '
                     r'last good checkpoint \(step 8\) .* is kept'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data,
                             resume_with_changes=True)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before
  assert len(open(tmp_path / 'metrics.jsonl').readlines()) == 1


def test_incompatible_checkpoint_is_a_user_error(tiny_config, synthetic_data, tmp_path):
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  tiny_config.conv_features = (4, 8)
  with pytest.raises(UserError, match='does not fit the configured model'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)


def test_checkpoint_of_another_structure_is_a_user_error(tmp_path):
  # Same shapes, other names: e.g. a TrainState saved by an older version.
  with checkpoints.Manager(str(tmp_path), 3) as ckpt:
    ckpt.save(1, {'a': jnp.zeros(3)})
  with checkpoints.Manager(str(tmp_path), 3) as ckpt:
    with pytest.raises(UserError, match=r'does not fit the configured training state \(User-'
                       'provided restore item and on-disk value metadata tree structures do '
                       r'not match\): it was written by another version of mnist_jax'):
      ckpt.restore({'b': jnp.zeros(3)})


@pytest.mark.parametrize('saved', [3, 5])  # Smaller, then larger than configured.
def test_checkpoint_of_other_shapes_names_one_pair(tmp_path, saved):
  with checkpoints.Manager(str(tmp_path), 3) as ckpt:
    ckpt.save(1, {'a': jnp.zeros(saved), 'b': jnp.zeros((2, 2))})
  with checkpoints.Manager(str(tmp_path), 3) as ckpt:
    with pytest.raises(UserError, match=re.escape(
        f'e.g. an array of shape ({saved},) where the configured model has (4,)')):
      ckpt.restore({'a': jnp.zeros(4), 'b': jnp.zeros((2, 2))})


def test_only_damaged_checkpoints_start_a_run_over_but_fail_a_restore_that_needs_one(
    tmp_path, caplog):
  """Training (restore not required) starts from scratch, saying so; eval and predict
  (required) have nothing to use: an error."""
  fresh = {'a': jnp.zeros(3)}
  for step, required in ((1, True), (2, False)):
    with checkpoints.Manager(str(tmp_path / 'checkpoints'), 3) as ckpt:
      ckpt.save(step, {'a': jnp.ones(3)})
    os.remove(tmp_path / 'checkpoints' / str(step) / 'default' / '_METADATA')
    with checkpoints.Manager(str(tmp_path / 'checkpoints'), 3) as ckpt:
      if required:
        with pytest.raises(UserError, match='No usable checkpoint in .* .damaged ones were'):
          ckpt.restore(fresh, required=True)
      else:
        assert ckpt.restore(fresh) is fresh
  assert caplog.text.count('No other checkpoint is left.') == 2


def test_asking_an_empty_folder_for_a_step_is_an_error(tmp_path):
  """A new run reads nothing from an empty folder, without opening Orbax (its imports
  are a quarter second of start-up); a step asked for by number (--step in eval) is
  an error there, not silently nothing."""
  with checkpoints.Manager(str(tmp_path), 3) as ckpt:
    state = {'a': jnp.zeros(3)}
    assert ckpt.restore(state) is state
    assert ckpt._opened is None  # pylint: disable=protected-access  # Orbax not even opened.
    with pytest.raises(UserError, match='No checkpoint for step 5'):
      ckpt.restore(state, step=5)


def test_config_of_an_older_run_gets_defaults_for_newer_keys(tiny_config, tmp_path):
  config_lib.save(tiny_config, str(tmp_path))
  saved = json.loads((tmp_path / 'config.json').read_text())
  del saved['ema_decay']  # A run trained before weight averaging existed.
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  config = config_lib.load_saved(str(tmp_path))
  assert config.ema_decay == 0.0 and tuple(config.conv_features) == (8, 16)


def test_unwritable_workdir(tiny_config, synthetic_data, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a folder')
  with pytest.raises(UserError, match=r'Cannot write to .*file/run: Not a directory\. Choose'):
    train.train_and_evaluate(tiny_config, str(blocker / 'run'), data=synthetic_data)


@pytest.mark.parametrize('optimizer', ['adam', 'muon'])
def test_resume_matches_uninterrupted_run(tiny_config, synthetic_data, tmp_path, optimizer):
  """A run that lost everything after epoch 1 resumes to the same end state."""
  tiny_config.num_epochs, tiny_config.optimizer = 3, optimizer
  full = train.train_and_evaluate(tiny_config, str(tmp_path / 'full'), data=synthetic_data)
  shutil.copytree(tmp_path / 'full', tmp_path / 'crashed')
  for step in ('16', '24'):  # As if killed right after epoch 1's checkpoint.
    shutil.rmtree(tmp_path / 'crashed' / 'checkpoints' / step)
  resumed = train.train_and_evaluate(tiny_config, str(tmp_path / 'crashed'), data=synthetic_data)
  drop_time = lambda m: {k: v for k, v in m.items() if not k.endswith('_s')}
  assert drop_time(resumed) == drop_time(full)
  lines = lambda d: [drop_time(json.loads(l))
                     for l in (tmp_path / d / 'metrics.jsonl').read_text().splitlines()]
  assert lines('crashed') == lines('full')
  assert _started_at(tmp_path / 'crashed') == [1, 2]  # The rerun began at epoch 2.
  params = lambda d: _restore_params(tiny_config, tmp_path / d / 'checkpoints')
  for a, b in zip(jax.tree.leaves(params('full')), jax.tree.leaves(params('crashed'))):
    np.testing.assert_array_equal(a, b)


def _started_at(workdir):
  """The epochs at which a process started writing metrics.jsonl (its first line
  carries its start-up times): a resumed run's second process starts after the
  checkpoint, not at epoch 1 again."""
  return [json.loads(l)['epoch'] for l in (workdir / 'metrics.jsonl').read_text().splitlines()
          if 'startup_imports_s' in json.loads(l)]


def _restore_params(config, directory):
  mesh = state_lib.make_mesh()
  tx = optimizer.create(config, 24)
  _, state = state_lib.init_state(config, tx, mesh)
  with checkpoints.Manager(str(directory), 3) as manager:
    return manager.restore(state).params


def test_scan_of_steps_equals_step_by_step_loop(tiny_config, synthetic_data):
  """A scan of k steps runs the same k steps, on the same batches, in the same order.

  XLA fuses a scan body differently from a single step, so the two agree up to
  float reassociation, not to the bit. SGD keeps that difference at the level
  of float32 rounding, whatever the CPU: Adam divides by the square root of
  tiny second moments and turns reassociation in near-zero gradients into
  large relative changes of small parameters. The updates are compared relative
  to their own size, so a step on another batch, or in another order, fails.
  """
  config = tiny_config
  mesh, tx, graphdef, fresh, images, labels, perm = _sgd_start(config, synthetic_data)
  step = _train_step(config, graphdef, tx, mesh, steps=8)
  scan = _train_step(config, graphdef, tx, mesh, steps=8, steps_per_call=8)
  zeros = step_lib.TrainMetrics.zeros
  updates = lambda state: _updates(fresh, state)

  def run_loop(order):
    state, sums = _copy(fresh), zeros()
    for _ in range(8):
      state, sums = step(state, sums, images, labels, order, 1)
    return state, sums

  looped, looped_sums = run_loop(perm)
  scanned, scanned_sums = scan(_copy(fresh), zeros(), images, labels, perm, 8)
  assert int(scanned.step) == int(looped.step) == 8
  assert _agree(updates(looped), updates(scanned))
  np.testing.assert_allclose(looped_sums.loss, scanned_sums.loss, rtol=1e-5)
  assert int(looped_sums.count) == int(scanned_sums.count) == 8 * config.batch_size
  # The comparison is strict enough to see the batches in another order.
  swapped = jnp.concatenate([perm[config.batch_size:2 * config.batch_size],
                             perm[:config.batch_size], perm[2 * config.batch_size:]])
  assert not _agree(updates(looped), updates(run_loop(swapped)[0]))


def _sgd_start(config, synthetic_data):
  """Sets `config` to constant-rate SGD without dropout; (mesh, tx, graphdef, fresh
  state, images, labels, epoch 1's permutation) for stepping it by hand."""
  config.optimizer, config.schedule, config.learning_rate = 'sgd', 'constant', 0.05
  config.dropout_rate = 0.0
  mesh = state_lib.make_mesh()
  tx = optimizer.create(config, total_steps=8)
  graphdef, fresh = state_lib.init_state(config, tx, mesh)
  images, labels = jnp.asarray(synthetic_data['train'].images), jnp.asarray(synthetic_data['train'].labels)
  return mesh, tx, graphdef, fresh, images, labels, train.make_permutation(config, mesh)(1, len(labels))


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


def _updates(fresh, state):
  """Each parameter's change from `fresh` to `state`, as numpy arrays."""
  return [np.asarray(p) - np.asarray(s)
          for p, s in zip(jax.tree.leaves(state.params), jax.tree.leaves(fresh.params))]


def _agree(a, b):
  """Each leaf's update equal to 1e-4 of its own largest entry."""
  return all(np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(x)) for x, y in zip(a, b))


def test_microbatches_take_the_step_of_the_whole_batch(tiny_config, synthetic_data):
  """A batch's gradient summed over 4 parts moves the weights as the whole batch's
  does (to float rounding; SGD, for the reason above), counts every example once,
  and is not the step of another batch."""
  config = tiny_config
  mesh, tx, graphdef, fresh, images, labels, perm = _sgd_start(config, synthetic_data)

  def run(microbatches, order):
    config.microbatches = microbatches
    step = _train_step(config, graphdef, tx, mesh, steps=8)
    state, sums = _copy(fresh), step_lib.TrainMetrics.zeros()
    for _ in range(3):
      state, sums = step(state, sums, images, labels, order, 1)
    return _updates(fresh, state), sums

  whole, whole_sums = run(1, perm)
  parts, parts_sums = run(4, perm)
  assert _agree(whole, parts)
  np.testing.assert_allclose(parts_sums.loss, whole_sums.loss, rtol=1e-5)
  assert int(parts_sums.correct) == int(whole_sums.correct)
  assert int(parts_sums.count) == 3 * config.batch_size
  assert not _agree(whole, run(4, jnp.roll(perm, 1))[0])  # One image swapped per batch.


def test_steps_per_call_does_not_change_the_run(tiny_config, synthetic_data, tmp_path,
                                                monkeypatch):
  tiny_config.num_epochs = 2
  # SGD: the scan agrees with single steps to float rounding on any CPU (see above).
  tiny_config.optimizer, tiny_config.learning_rate = 'sgd', 0.05
  calls = []  # The steps in each jitted call.
  init = step_lib.TrainStep.__init__

  def counted(self, *args):
    init(self, *args)
    steps_fn = self._steps_fn  # pylint: disable=protected-access
    self._steps_fn = lambda *a: calls.append(a[-1]) or steps_fn(*a)
  monkeypatch.setattr(step_lib.TrainStep, '__init__', counted)
  tiny_config.steps_per_call = 1
  one = train.train_and_evaluate(tiny_config, str(tmp_path / 'one'), data=synthetic_data)
  assert calls == [1] * 16
  calls.clear()
  tiny_config.steps_per_call = 3  # 8 steps an epoch: calls of 3, 3 and 2.
  three = train.train_and_evaluate(tiny_config, str(tmp_path / 'three'), data=synthetic_data)
  assert calls == [3, 3, 2] * 2
  assert three['step'] == one['step'] == 16
  assert three['test_accuracy'] == pytest.approx(one['test_accuracy'], abs=0.01)
  assert three['train_loss'] == pytest.approx(one['train_loss'], rel=1e-3)


def test_ema_is_the_bias_corrected_average_of_the_weights(tiny_config, synthetic_data):
  config = tiny_config
  config.ema_decay = 0.9
  mesh = state_lib.make_mesh()
  tx = optimizer.create(config, total_steps=8)
  graphdef, state = state_lib.init_state(config, tx, mesh)
  step = _train_step(config, graphdef, tx, mesh, steps=8)
  images, labels = jnp.asarray(synthetic_data['train'].images), jnp.asarray(synthetic_data['train'].labels)
  perm = jnp.arange(len(labels))
  first, sums = step(state, step_lib.TrainMetrics.zeros(), images, labels, perm, 1)
  p1 = jax.tree.map(np.asarray, first.params)
  # One step in, the average is the weights: nothing of the random start.
  for p, e in zip(jax.tree.leaves(p1), jax.tree.leaves(first.ema_params)):
    np.testing.assert_allclose(e, p, rtol=1e-6, atol=1e-7)
  second, _ = step(first, sums, images, labels, perm, 1)
  # Two in: (0.9 * p1 + p2) / (0.9 + 1).
  for a, b, e in zip(jax.tree.leaves(p1), jax.tree.leaves(second.params),
                     jax.tree.leaves(second.ema_params)):
    np.testing.assert_allclose(e, (0.9 * a + np.asarray(b)) / 1.9, rtol=1e-5, atol=1e-6)
  assert not np.allclose(jax.tree.leaves(second.ema_params)[0], jax.tree.leaves(second.params)[0])
  assert second.eval_params is second.ema_params


def test_ema_is_evaluated_with_batch_norm_statistics_of_its_own(tiny_config, synthetic_data,
                                                                 tmp_path):
  tiny_config.batch_norm = True
  tiny_config.ema_decay = 0.9
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  graphdef, state, _ = inference.restore(str(tmp_path), tiny_config)
  model = nnx.merge(graphdef, state.ema_params, state.model_state)
  x = input_pipeline.normalize(jnp.asarray(synthetic_data['train'].images), 'mnist')
  first = np.asarray(model.convs[0](x))  # What the first batch norm normalizes.
  # Its statistics are those of the EMA weights on the training images, not
  # the running ones of the trained weights.
  np.testing.assert_allclose(model.norms[0].mean[...], first.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(model.norms[0].var[...], first.var((0, 1, 2)), rtol=1e-3, atol=1e-5)


def test_ema_run_resumes_exactly(tiny_config, synthetic_data, tmp_path):
  tiny_config.ema_decay = 0.8
  tiny_config.batch_norm = True  # Its statistics are measured anew every epoch.
  tiny_config.num_epochs = 2
  full = train.train_and_evaluate(tiny_config, str(tmp_path / 'full'), data=synthetic_data)
  shutil.copytree(tmp_path / 'full', tmp_path / 'crashed')
  shutil.rmtree(tmp_path / 'crashed' / 'checkpoints' / '16')
  resumed = train.train_and_evaluate(tiny_config, str(tmp_path / 'crashed'), data=synthetic_data)
  assert {k: v for k, v in resumed.items() if not k.endswith('_s')} == {
      k: v for k, v in full.items() if not k.endswith('_s')}
  assert _started_at(tmp_path / 'crashed') == [1, 2]  # Resumed, not retrained.


def test_tensorboard_writer_does_not_import_torch(tmp_path):
  """tensorboardX imports torch where it is installed (~3 s on a GPU machine) only to
  accept its tensors: the Writer keeps it out, and leaves torch importable after."""
  fake = tmp_path / 'site'
  fake.mkdir()
  (fake / 'torch.py').write_text("import os\nopen(os.environ['MARK'], 'w').close()\n")
  code = ('import sys; from mnist_jax import workdir\n'
          f'with workdir.Writer({str(tmp_path / "run")!r}, True) as w:\n'
          "  w.write(1, {'loss': 1.0}, 'step 1', record=True)\n"
          "assert 'torch' not in sys.modules and 'tensorboardX' in sys.modules\n"
          'import torch\n')  # Still importable: marks the file.
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(fake), os.getcwd()]),
         'MARK': str(tmp_path / 'imported')}
  done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert (tmp_path / 'imported').exists()  # By the last line only: the assert ran before.
  assert os.listdir(tmp_path / 'run' / 'tensorboard')


def test_progress_lines_say_the_time_left():
  lines = []
  writer = types.SimpleNamespace(write=lambda step, scalars, message: lines.append(message))
  config = ml_collections.ConfigDict({'batch_size': 100, 'num_epochs': 3})
  run = types.SimpleNamespace(steps=50, config=config)
  report = train.progress_reporter(run, writer)
  metrics = {'loss': 0.5, 'accuracy': 0.9, 'learning_rate': 1e-3, 'grad_norm': 1.0}
  report(60, metrics, rate=1000.0)  # 0.1 s a step: 40 steps of epoch 2 and 90 in all left.
  assert lines[-1].startswith('epoch 2/3  step 10/50  loss 0.5000')
  assert lines[-1].endswith('1000 images/s  left: 4 s of the epoch, 9 s in all')
  report(100, metrics, rate=100.0)  # Slower: the pace moves towards 1 s a step.
  assert lines[-1].endswith('left: 0 s of the epoch, 18 s in all')  # 50 x (0.7 x 0.1 + 0.3 x 1)
  assert [train.duration(s) for s in (7.4, 125, 3840)] == ['7 s', '2 min 05 s', '1 h 04 min']


def test_tensorboard_gets_the_train_and_test_scalars(tiny_config, synthetic_data, tmp_path):
  """What `tensorboard --logdir` shows, read back from the event files."""
  tf = pytest.importorskip('tensorflow')
  tiny_config.num_epochs = 2
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  scalars = {}
  for path in glob.glob(str(tmp_path / 'tensorboard' / 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  for tag in ('train/loss', 'train/accuracy', 'train/learning_rate', 'train/grad_norm',
              'train/images_per_s', 'test_accuracy', 'test_loss'):
    assert tag in scalars, sorted(scalars)
  assert scalars['test_accuracy'][-1][0] == 16  # At the last epoch's last step.
  steps = [step for step, _ in scalars['train/loss']]  # Counted on across epochs.
  assert steps == sorted(set(steps)) and steps[-1] == 16, steps
  line = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()][-1]
  assert scalars['test_accuracy'][-1][1] == pytest.approx(line['test_accuracy'], abs=1e-6)
  assert all(0 <= a <= 1 for _, a in scalars['train/accuracy'])
  # Images per second: the seconds they imply fit in the second epoch's training
  # time (its reports' intervals lie within it; compilation is left out of both).
  reports = [(step, rate) for step, rate in scalars['train/images_per_s'] if step > 8]
  seconds = sum((step - before) * tiny_config.batch_size / rate for (before, _), (step, rate)
                in zip([(8, None)] + reports, reports))
  assert 0 < seconds <= line['epoch_train_s'] + 0.001, (reports, line)
  # Closed at the end: a sweep trains many runs in one process.
  open_files = [os.readlink(f'/proc/self/fd/{fd}') for fd in os.listdir('/proc/self/fd')
                if os.path.exists(f'/proc/self/fd/{fd}')]
  assert not [f for f in open_files if f.startswith(str(tmp_path))], open_files


def test_an2020_recipe_trains_with_its_per_epoch_decay(synthetic_data, tmp_path):
  """configs/an2020.py end to end for a few steps: the 7x7 model (the smallest),
  rotations, shifts, weight average, and the rate x0.98 after each epoch."""
  from configs import an2020  # pylint: disable=g-import-not-at-top
  config = an2020.get_config('7')
  config.batch_size, config.train_steps_per_epoch, config.num_epochs = 32, 3, 2
  config.conv_features = (8, 16, 16, 16)  # Narrower: the same layers, trained sooner.
  config.augment_erase, config.augment_squish = 0.5, 0.2  # Byerly et al.'s, on top.
  schedule = optimizer.learning_rate_schedule(config, 6)
  assert [float(schedule(s)) for s in (0, 2, 3, 5)] == pytest.approx(
      [1e-3, 1e-3, 0.98e-3, 0.98e-3])
  metrics = train.train_and_evaluate(config, str(tmp_path), data=synthetic_data)
  assert metrics['epoch'] == 2 and np.isfinite(metrics['test_loss'])


def test_byerly2021_recipe_trains(synthetic_data, tmp_path):
  """configs/byerly2021.py end to end for a few steps: the branching capsule model,
  its augmentations, weight average and per-epoch decay."""
  from configs import byerly2021  # pylint: disable=g-import-not-at-top
  config = byerly2021.get_config()
  config.batch_size, config.train_steps_per_epoch, config.num_epochs = 32, 3, 2
  config.conv_features = (8,) * 9  # Narrower: the same layers, compiled sooner.
  metrics = train.train_and_evaluate(config, str(tmp_path), data=synthetic_data)
  assert metrics['epoch'] == 2 and np.isfinite(metrics['test_loss'])
