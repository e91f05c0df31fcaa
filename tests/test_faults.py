"""What a hostile but fair user does: damaged files, two runs at once, bad values, failed writes.

Each case ends in one message (a UserError, or a line on stderr with exit 1)
within seconds, never a traceback or a hang, and what was written before stays
usable. Runs as root in CI, where permissions do not stop writes: a write is
made to fail by putting a file where a folder must be, or the other way round.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import ROOT
from mnist_jax import checkpoints, config_lib, inference, predict, train, workdir as workdir_lib
from mnist_jax.errors import UserError

CLEAN = lambda m: {k: v for k, v in m.items() if not k.endswith('_s')}  # Not timings.


@pytest.fixture
def finished(tiny_config, synthetic_data, tmp_path_factory):
  """A 3-epoch run (checkpoints at steps 8, 16, 24) and its final metrics."""
  tiny_config.num_epochs = 3
  workdir = tmp_path_factory.mktemp('finished') / 'run'
  metrics = train.train_and_evaluate(tiny_config, str(workdir), data=synthetic_data)
  return workdir, metrics


def _damage(checkpoint, how):
  data = max(glob.glob(str(checkpoint / 'default' / 'ocdbt.process_0' / 'd' / '*')),
             key=os.path.getsize)
  if how == 'truncated':
    with open(data, 'r+b') as f:
      f.truncate(os.path.getsize(data) // 2)
  elif how == 'deleted':
    os.remove(data)
  elif how == 'overwritten':
    with open(data, 'wb') as f:
      f.write(b'\0' * os.path.getsize(data))
  else:  # Its metadata lost.
    os.remove(checkpoint / 'default' / '_METADATA')


@pytest.mark.parametrize('how', ['truncated', 'deleted', 'overwritten', 'metadata'])
def test_damaged_checkpoint_is_set_aside_and_the_one_before_used(
    finished, tiny_config, synthetic_data, tmp_path, how):
  reference, final = finished
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  shutil.rmtree(workdir / 'checkpoints' / '24')  # Killed during the last save...
  _damage(workdir / 'checkpoints' / '16', how)  # ...and the one before is damaged.
  tiny_config.num_epochs = 3
  resumed = train.train_and_evaluate(tiny_config, str(workdir), data=synthetic_data)
  assert CLEAN(resumed) == CLEAN(final)  # Resumed from step 8, to the same end.
  moved = os.listdir(workdir / 'checkpoints_damaged')
  assert len(moved) == 1 and moved[0].startswith('16_')  # Set aside, not deleted.
  assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == ['8', '16', '24']
  lines = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [l['epoch'] for l in lines] == [1, 2, 3]


def test_eval_falls_back_then_says_none_is_usable(finished, tiny_config, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished[0], workdir)
  _damage(workdir / 'checkpoints' / '24', 'truncated')
  _, state, _ = inference.restore(str(workdir), tiny_config)
  assert int(state.step) == 16
  for step in ('8', '16'):
    _damage(workdir / 'checkpoints' / step, 'deleted')
  with pytest.raises(UserError, match='No usable checkpoint'):
    inference.restore(str(workdir), tiny_config)
  assert len(os.listdir(workdir / 'checkpoints_damaged')) == 3


def test_a_second_run_on_the_same_workdir_is_refused(tiny_config, synthetic_data, tmp_path):
  with workdir_lib.lock(str(tmp_path)):
    with pytest.raises(UserError, match=f'Another run is training in {tmp_path} .pid {os.getpid()}'):
      train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert not os.path.exists(tmp_path / 'metrics.jsonl')  # The first run's files untouched.
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)  # Released.


def test_the_lock_of_a_killed_run_is_not_stale(tiny_config, synthetic_data, tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; '
       'from mnist_jax import workdir; l = workdir.lock(sys.argv[1]); l.__enter__(); '
       'print("locked", flush=True); time.sleep(600)', str(tmp_path)],
      stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  with pytest.raises(UserError, match='Another run is training'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)


@pytest.mark.parametrize('text', ['{"batch_size": 3', 'null', '{"batch_size": "big"}',
                                  '{"conv_features": [0]}', '[1, 2]'])
def test_a_damaged_saved_config_is_one_message_naming_it(tiny_config, tmp_path, text):
  config_lib.save(tiny_config, str(tmp_path))
  (tmp_path / 'config.json').write_text(text)
  with pytest.raises(UserError, match='config.json'):
    config_lib.load_saved(str(tmp_path))


def test_metrics_are_rewritten_whole_and_a_torn_line_is_dropped(tmp_path, monkeypatch):
  path = str(tmp_path / 'metrics.jsonl')
  with open(path, 'w') as f:
    f.write('{"step": 8}\n{"step": 16}\n{"step": 24}\n{"step": 3')  # Killed mid-line.
  assert workdir_lib.truncate_metrics(path, 16) == [{'step': 8}, {'step': 16}]
  assert open(path).read() == '{"step": 8}\n{"step": 16}\n'

  def killed(*_):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(os, 'replace', killed)  # The rewrite fails before its rename...
  with pytest.raises(UserError, match='No space left'):
    workdir_lib.truncate_metrics(path, 8)
  assert open(path).read() == '{"step": 8}\n{"step": 16}\n'  # ...and the file is whole.


@pytest.mark.parametrize('blocked,kind', [('checkpoints', 'file'), ('metrics.jsonl', 'folder'),
                                          ('tensorboard', 'file')])
def test_a_failed_write_stops_the_run_with_one_message(tiny_config, synthetic_data, tmp_path,
                                                        blocked, kind):
  tmp_path.joinpath(blocked).mkdir() if kind == 'folder' else tmp_path.joinpath(
      blocked).write_text('in the way')
  start = time.time()
  with pytest.raises(UserError, match=blocked):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert time.time() - start < 120


def test_a_checkpoint_save_that_fails_mid_run_stops_it(tiny_config, synthetic_data, tmp_path,
                                                       monkeypatch):
  tiny_config.num_epochs = 3
  real_save = checkpoints.Manager.save

  def save(self, step, state):
    if step == 16:
      raise UserError(f'Cannot write the checkpoint for step {step}: disk full.')
    real_save(self, step, state)
  monkeypatch.setattr(checkpoints.Manager, 'save', save)
  with pytest.raises(UserError, match='step 16'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  monkeypatch.undo()
  _, state, _ = inference.restore(str(tmp_path), tiny_config)  # Step 8 is still usable.
  assert int(state.step) == 8


def test_save_preprocessed_naming_a_file_is_one_message(tmp_path):
  Image.new('L', (40, 40), 255).save(tmp_path / 'digit.png')
  (tmp_path / 'taken').write_text('a file')
  with pytest.raises(UserError, match='--save_preprocessed=.*taken: cannot make that folder'):
    predict.predict_files([str(tmp_path / 'digit.png')], str(tmp_path / 'no-run'),
                          save_preprocessed=str(tmp_path / 'taken'))


def test_links_fifos_and_unreadable_folders_are_named(tmp_path, monkeypatch):
  os.symlink(tmp_path / 'loop', tmp_path / 'loop')
  os.mkfifo(tmp_path / 'pipe.png')
  with pytest.raises(predict.ImageProblem, match='symbolic link'):
    predict.open_image(str(tmp_path / 'loop'))
  with pytest.raises(predict.ImageProblem, match='not a regular file'):
    predict.open_image(str(tmp_path / 'pipe.png'))
  folder = tmp_path / 'locked'
  folder.mkdir()

  def walk(top, onerror=None):  # As os.walk does for a folder it may not list (root can).
    onerror(PermissionError(13, 'Permission denied', str(top)))
    return iter(())
  monkeypatch.setattr(os, 'walk', walk)
  with pytest.raises(UserError, match='No images found.*locked: Permission denied'):
    predict.predict_files([str(folder)], str(tmp_path / 'no-run'))
