"""The validation split: held out of training, evaluated like the test set."""

import logging
import os

import numpy as np
import pytest

from conftest import synthetic_split
from mnist_jax import evaluate, input_pipeline, state as state_lib, train, workdir as workdir_lib
from mnist_jax.errors import UserError


def test_hold_out_takes_the_last_training_images():
  data = {'train': synthetic_split(100, seed=0), 'test': synthetic_split(10, seed=1)}
  split = input_pipeline.hold_out(data, 30)
  np.testing.assert_array_equal(split['train'].images, data['train'].images[:70])
  np.testing.assert_array_equal(split['validation'].images, data['train'].images[70:])
  np.testing.assert_array_equal(split['validation'].labels, data['train'].labels[70:])
  assert split['test'] is data['test']
  assert input_pipeline.hold_out(data, 0) is data
  with pytest.raises(UserError, match='leaves no training images'):
    input_pipeline.hold_out(data, 100)


def test_validation_is_never_trained_on_and_scored_each_epoch(tiny_config, synthetic_data,
                                                                tmp_path, caplog):
  tiny_config.num_epochs, tiny_config.validation_size = 2, 100
  data = synthetic_data  # 512 training images: 412 train, 100 validation.
  run, _ = train.setup(tiny_config, data, state_lib.make_mesh())
  np.testing.assert_array_equal(run.images, data['train'].images[:412])
  assert run.evaluators['val'].num_examples == 100
  caplog.set_level(logging.INFO)
  metrics = train.train_and_evaluate(tiny_config, str(tmp_path), data=data)
  lines = workdir_lib.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert len(lines) == 2 and lines[-1] == metrics
  for line in lines:
    assert {'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy'} <= set(line)
  assert metrics['val_accuracy'] > 0.5  # The synthetic classes are easy.
  assert sum('val accuracy' in r.getMessage() for r in caplog.records) == 2
  [events] = os.listdir(tmp_path / 'tensorboard')
  assert b'val_accuracy' in (tmp_path / 'tensorboard' / events).read_bytes()

  # --mode=eval scores the same held-out images: the same figure.
  report = evaluate.evaluate([str(tmp_path)], data=data)
  assert report['num_val_images'] == 100
  assert report['val_accuracy'] == pytest.approx(metrics['val_accuracy'], abs=1e-6)
  assert report['val_loss'] == pytest.approx(metrics['val_loss'], rel=1e-4)
  # The test figures are unchanged by holding images out of *training* only.
  assert report['test_accuracy'] == pytest.approx(metrics['test_accuracy'], abs=1e-6)


def test_without_validation_there_are_no_val_figures(tiny_config, synthetic_data, tmp_path):
  tiny_config.num_epochs = 1
  metrics = train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert not any(k.startswith('val_') for k in metrics)
  assert 'val_accuracy' not in evaluate.evaluate([str(tmp_path)], data=synthetic_data)


def test_validation_that_leaves_no_batch_is_one_message(tiny_config, synthetic_data, tmp_path):
  tiny_config.validation_size = 500  # 12 training images left, batches of 32.
  with pytest.raises(UserError, match='do not fill one batch'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
