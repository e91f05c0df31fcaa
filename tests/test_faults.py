"""What a hostile but fair user does: damaged files, two runs at once, bad values, failed writes.

Each case ends in one message (a UserError, or a line on stderr with exit 1)
within seconds, never a traceback or a hang, and what was written before stays
usable. Runs as root in CI, where permissions do not stop writes: a write is
made to fail by putting a file where a folder must be, or the other way round,
and a full disk is a small tmpfs mounted for the test.
"""

import errno
import glob
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, synthetic_split, tiny_command
from mnist_jax import checkpoints, config_lib, evaluate, inference, input_pipeline, predict, train
from mnist_jax import workdir as workdir_lib
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
  elif how == 'metadata':  # Lost.
    os.remove(checkpoint / 'default' / '_METADATA')
  else:  # Metadata garbled.
    (checkpoint / 'default' / '_METADATA').write_text('{"tree_metadata": [')


@pytest.mark.parametrize('how', ['truncated', 'deleted', 'overwritten', 'metadata',
                                 'garbled metadata'])
def test_damaged_checkpoint_is_set_aside_and_the_one_before_used(
    finished, tiny_config, synthetic_data, tmp_path, caplog, how):
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
  assert re.search(r'The checkpoint at step 16 is damaged \(.+\); moved it to '
                   f'{workdir}/checkpoints_damaged/{moved[0]}. Using the one at step 8.',
                   caplog.text), caplog.text
  assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == ['8', '16', '24']
  lines = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [l['epoch'] for l in lines] == [1, 2, 3]


def test_a_damaged_checkpoint_that_cannot_be_moved_aside_is_one_message(finished, tiny_config,
                                                                         tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished[0], workdir)
  _damage(workdir / 'checkpoints' / '24', 'truncated')
  (workdir / 'checkpoints_damaged').write_text('a file where the folder must go')
  with pytest.raises(UserError, match='The checkpoint at step 24 in .* is damaged and could '
                     'not be moved aside .File exists.: move or delete it'):
    inference.restore(str(workdir), tiny_config)
  assert os.path.isdir(workdir / 'checkpoints' / '24')  # Nothing lost.


def test_a_damaged_checkpoint_another_process_moved_first_is_no_error(
    finished, tiny_config, tmp_path, monkeypatch):
  """Every process of a multi-process run finds the damage; one moves the folder
  aside first, and the others' move finds nothing there."""
  workdir = tmp_path / 'run'
  shutil.copytree(finished[0], workdir)
  _damage(workdir / 'checkpoints' / '24', 'truncated')

  rename = os.rename

  def moved_by_another(source, target):
    if not str(target).startswith(str(workdir / 'checkpoints_damaged')):
      return rename(source, target)
    rename(source, str(workdir / 'elsewhere'))
    raise FileNotFoundError(2, 'No such file or directory', source)
  monkeypatch.setattr(checkpoints.os, 'rename', moved_by_another)
  _, state, _ = inference.restore(str(workdir), tiny_config)
  assert int(state.step) == 16


def test_eval_falls_back_then_says_none_is_usable(finished, tiny_config, tmp_path, caplog):
  workdir = tmp_path / 'run'
  shutil.copytree(finished[0], workdir)
  _damage(workdir / 'checkpoints' / '24', 'truncated')
  assert predict.Predictor.from_workdir(str(workdir)).step == 16  # As --mode=predict loads it,
  assert re.search(r'The checkpoint at step 24 is damaged .*Using the one at step 16\.',
                   caplog.text)  # saying so.
  _, state, _ = inference.restore(str(workdir), tiny_config)
  assert int(state.step) == 16
  for step in ('8', '16'):
    _damage(workdir / 'checkpoints' / step, 'deleted')
  with pytest.raises(UserError, match=f'No usable checkpoint in {workdir}/checkpoints '
                     fr'\(damaged ones were moved to {workdir}/checkpoints_damaged\)'):
    inference.restore(str(workdir), tiny_config)
  assert len(os.listdir(workdir / 'checkpoints_damaged')) == 3
  assert 'is damaged' in caplog.text and 'No other checkpoint is left.' in caplog.text


def test_a_second_run_on_the_same_workdir_is_refused(tiny_config, synthetic_data, tmp_path):
  with workdir_lib.lock(str(tmp_path)):
    with pytest.raises(UserError, match=f'Another run is training in {tmp_path} .pid {os.getpid()}'):
      train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert not os.path.exists(tmp_path / 'metrics.jsonl')  # The first run's files untouched.
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)  # Released.


def test_processes_checking_one_folder_at_once_do_not_trip_each_other(tmp_path):
  """Two sweeps started together on one workdir check it at the same moment: each
  must see its own probe file, not have it removed by the other."""
  checker = ('import sys; from mnist_jax import workdir\n'
             'for _ in range(300): workdir.prepare(sys.argv[1])')
  procs = [subprocess.Popen([sys.executable, '-c', checker, str(tmp_path)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  for proc in procs:
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]


@pytest.mark.parametrize('os_lock', ['shared', 'local to each machine'])
def test_the_lock_of_a_killed_run_is_not_stale(tiny_config, synthetic_data, tmp_path,
                                               monkeypatch, os_lock):
  """Where OS locks stay on each machine (sshfs, NFS without its lock manager: two
  mounts of one folder on this machine behave so), the owner named in the lock
  file is asked instead."""
  if os_lock != 'shared':
    monkeypatch.setattr(workdir_lib.fcntl, 'flock', lambda f, operation: None)
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


def test_a_run_on_another_machine_is_seen_by_its_lock_file(tiny_config, synthetic_data,
                                                           tmp_path, monkeypatch, caplog):
  """Two machines sharing a workdir on a file system that gives no lock (ENOLCK) or
  one each: the other machine's run renews the lock file's time; one that stopped
  renewing it is gone."""
  def no_lock(f, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
  monkeypatch.setattr(workdir_lib.fcntl, 'flock', no_lock)
  lock_file = tmp_path / '.lock'
  lock_file.write_text('pid 4242 on another-machine\n')
  with pytest.raises(UserError, match=r'Another run is training in .* \(pid 4242 on '
                     r'another-machine; its lock file was renewed \d+ s ago\)'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert not os.path.exists(tmp_path / 'metrics.jsonl')
  stopped = time.time() - workdir_lib.STALE_S - 5
  os.utime(lock_file, (stopped, stopped))
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert 'This file system gives no lock (No locks available)' in caplog.text
  assert lock_file.read_text() == ''  # Ended: the next machine need not wait.


def test_a_running_lock_is_renewed(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lib, 'HEARTBEAT_S', 0.05)
  with workdir_lib.lock(str(tmp_path)):
    lock_file = tmp_path / '.lock'
    assert lock_file.read_text() == f'pid {os.getpid()} on {os.uname().nodename}\n'
    os.utime(lock_file, (0, 0))
    time.sleep(0.5)
    assert time.time() - lock_file.stat().st_mtime < 5


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
  with pytest.raises(UserError, match=r'metrics.jsonl: No space left on device\.$'):
    workdir_lib.truncate_metrics(path, 8)
  assert open(path).read() == '{"step": 8}\n{"step": 16}\n'  # ...and the file is whole.


@pytest.mark.parametrize('blocked,kind', [('checkpoints', 'file'), ('metrics.jsonl', 'folder'),
                                          ('metrics.jsonl', 'link'), ('tensorboard', 'file'),
                                          ('.lock', 'folder')])
def test_a_failed_write_stops_the_run_with_one_message(tiny_config, synthetic_data, tmp_path,
                                                        blocked, kind):
  """A folder or file in the way, or (link) a metrics file that reads as absent and
  fails at its first appended line (a link into a folder that does not exist)."""
  path = tmp_path.joinpath(blocked)
  if kind == 'folder':
    path.mkdir()
  elif kind == 'link':
    path.symlink_to(tmp_path / 'gone' / 'metrics.jsonl')
  else:
    path.write_text('in the way')
  start = time.time()
  with pytest.raises(UserError, match=re.escape(str(path))) as failed:
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert time.time() - start < 120
  # The system's reason, as a sentence ("Is a directory"), not Python's "[Errno 21] ...".
  reason = ('No such file or directory. The checkpoints written so far are kept'
            if kind == 'link' else '(Is a directory|Not a directory|File exists)')
  assert re.search(rf'{re.escape(blocked)}: {reason}\.', str(failed.value)), str(failed.value)


def test_a_checkpoint_save_that_fails_mid_run_stops_it(tiny_config, synthetic_data, tmp_path,
                                                       monkeypatch):
  """Orbax's own failure, as it reports a full disk (a ValueError from TensorStore)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  tiny_config.num_epochs = 3
  real_save = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 16:
      raise ValueError('RESOURCE_EXHAUSTED: Error writing "params" in OCDBT database at local '
                       'file "x": Failed to write 512 bytes to file 18: No space left on device '
                       "[os_error_code='28']")
    return real_save(self, step, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  with pytest.raises(UserError, match='Cannot write checkpoints in .*: No space left on device. '
                     'The checkpoints written before are kept'):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  monkeypatch.undo()
  _, state, _ = inference.restore(str(tmp_path), tiny_config)  # Step 8 is still usable.
  assert int(state.step) == 8


def test_a_save_failing_in_the_background_is_said_at_close_once(tmp_path, monkeypatch):
  """The last save fails after the run's loop ended (its error comes from the wait
  at close), and Orbax's close then fails too: the save's error is the one said."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  def wait(self):
    raise ValueError('RESOURCE_EXHAUSTED: Failed to write 512 bytes to file 18: No space '
                     "left on device [os_error_code='28']")

  def close(self):
    raise RuntimeError('the manager is in a bad state')
  ckpt = checkpoints.Manager(str(tmp_path), 3)
  ckpt.save(1, {'a': np.zeros(3)})
  monkeypatch.setattr(ocp.CheckpointManager, 'wait_until_finished', wait)
  monkeypatch.setattr(ocp.CheckpointManager, 'close', close)
  with pytest.raises(UserError, match='Cannot write checkpoints in .*: No space left on device'):
    ckpt.close()


def test_a_write_failing_because_another_process_died_is_not_called_a_disk_problem(
    tmp_path, monkeypatch):
  """In a 2-process run, a save's barrier failed when the other process was killed
  (once in CI): that is no full disk, and goes on to main.py, which names the other
  process, as the collectives' failure does."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  def save(self, step, *args, **kwargs):
    raise RuntimeError('INTERNAL: Barrier failed because: task is set to ERROR: UNAVAILABLE: '
                       'Task 1 heartbeat timeout.')
  ckpt = checkpoints.Manager(str(tmp_path), 3)
  assert ckpt._manager  # Opened as one process. pylint: disable=protected-access
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  monkeypatch.setattr(checkpoints.jax, 'process_count', lambda: 2)
  with pytest.raises(RuntimeError, match='Barrier failed') as raised:
    ckpt.save(1, {'a': np.zeros(3)})
  assert not isinstance(raised.value, UserError)
  monkeypatch.setattr(checkpoints.jax, 'process_count', lambda: 1)  # Alone, it is this disk.
  with pytest.raises(UserError, match='Cannot write checkpoints in .*Barrier failed'):
    ckpt.save(1, {'a': np.zeros(3)})


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


def _interrupt(command, ready: str, how=signal.SIGINT, timeout=300):
  """Runs `command`, sends `how` (SIGINT: Ctrl-C) once a line containing `ready` is
  printed; returns (exit status, everything printed)."""
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=ROOT)
  out, deadline = [], time.time() + timeout
  for line in proc.stdout:
    out.append(line)
    if ready in line:
      proc.send_signal(how)
      break
    assert time.time() < deadline, ''.join(out)
  out.append(proc.communicate(timeout=120)[0])
  return proc.returncode, ''.join(out)


def test_ctrl_c_at_any_moment_is_exit_130_and_one_line(mnist_dirs, tmp_path):
  """Ctrl-C during the first compilation (where the interpreter's shutdown used to
  crash with a segmentation fault); SIGTERM (a scheduler's preemption) in the middle
  of an epoch, the same way with its own exit status."""
  workdir = tmp_path / 'run'
  command = tiny_command(workdir, mnist_dirs, '--config.num_epochs=4')
  status, out = _interrupt(command, 'JAX devices')  # Next: compile the first step.
  assert status == 130 and 'Traceback' not in out, out[-3000:]
  assert 'Interrupted before the first checkpoint' in out.splitlines()[-1], out[-3000:]
  status, out = _interrupt(command, 'epoch 3/4  step 25/50', signal.SIGTERM)
  assert status == 143 and 'Traceback' not in out, out[-3000:]
  step = int(re.search(r'Interrupted; the checkpoint at step (\d+) is kept: run the same '
                       r'command again', out.splitlines()[-1]).group(1))
  assert step == 100 and str(step) in os.listdir(workdir / 'checkpoints')
  # Resuming from it is what every resume does (test_train's kill-and-resume tests).
  assert [m['epoch'] for m in workdir_lib.read_metrics(str(workdir / 'metrics.jsonl'))] == [1, 2]


def test_a_run_that_learns_nothing_says_so(mnist_dirs, tmp_path):
  result = subprocess.run(tiny_command(tmp_path / 'run', mnist_dirs,
                                       '--config.learning_rate=0.99'),
                          capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert re.search(r'Error: The run learned nothing: test accuracy \d+\.\d% after 100 steps is '
                   r'chance level', result.stderr), result.stderr[-2000:]


@pytest.mark.parametrize('damage', ['truncated', 'empty', 'garbage', 'wrong shape',
                                    'fewer images than labels', 'labels out of range'])
def test_a_damaged_array_cache_is_rebuilt(tmp_path, monkeypatch, damage):
  splits = {'train': synthetic_split(20), 'test': synthetic_split(10, seed=1)}
  calls = []
  monkeypatch.setattr(input_pipeline, '_load_with_tfds',
                      lambda *args: calls.append(args) or splits)
  input_pipeline.load('mnist', data_dir=str(tmp_path))
  cache = tmp_path / 'mnist_jax_arrays' / 'mnist'
  images, labels = cache / 'train_images.npy', cache / 'train_labels.npy'
  if damage == 'truncated':
    images.write_bytes(images.read_bytes()[:-100])
  elif damage == 'empty':
    labels.write_bytes(b'')
  elif damage == 'garbage':
    images.write_bytes(os.urandom(5000))
  elif damage == 'wrong shape':
    np.save(images, splits['train'].images.reshape(20, 784))
  elif damage == 'fewer images than labels':
    np.save(images, splits['train'].images[:15])
  else:
    np.save(labels, splits['train'].labels + 10)
  data = input_pipeline.load('mnist', data_dir=str(tmp_path))
  assert len(calls) == 2  # Decoded from tfds again...
  for split in ('train', 'test'):
    np.testing.assert_array_equal(data[split].images, splits[split].images)
    np.testing.assert_array_equal(data[split].labels, splits[split].labels)
  input_pipeline.load('mnist', data_dir=str(tmp_path))
  assert len(calls) == 2  # ...and the cache written again whole.


def test_a_damaged_byte_in_metrics_keeps_the_other_lines(tmp_path, caplog):
  path = tmp_path / 'metrics.jsonl'
  path.write_bytes(b'{"step": 8}\n{"step": \xff16}\n{"step": 24}\n{"step": 3\xff}\n')
  assert workdir_lib.read_metrics(str(path)) == [{'step': 8}, {'step': 24}]
  assert 'line(s) 2, 4 are not metric records' in caplog.text  # A whole last line too,
  caplog.clear()
  path.write_bytes(b'{"step": 8}\n{"step": 1')
  assert workdir_lib.read_metrics(str(path)) == [{'step': 8}]
  assert 'not metric records' not in caplog.text  # but not a torn one (a kill mid-write).


@pytest.mark.parametrize('error, methods', [
    ((errno.ENOSPC, 'No space left on device'), ['flush']),
    ((errno.ENOTCONN, 'Transport endpoint is not connected'), ['flush', 'close'])])
def test_tensorboard_failing_mid_run_is_one_message(tiny_config, synthetic_data, tmp_path,
                                                    monkeypatch, error, methods):
  """A disk that fills while TensorBoard's events are written (after the writer opened),
  or a network disk that goes away: then closing the writer fails too, and must not
  hide the first error."""
  writer_class = workdir_lib._summary_writer()  # pylint: disable=protected-access

  def fail(self):
    raise OSError(*error)
  for method in methods:
    monkeypatch.setattr(writer_class, method, fail)
  with pytest.raises(UserError, match='Cannot write TensorBoard summaries to .*tensorboard: '
                     + error[1]):
    train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)


def test_resuming_with_another_config_is_refused_unless_asked_and_then_recorded(
    tiny_config, synthetic_data, tmp_path):
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  original = (tmp_path / 'config.json').read_text()
  changed = tiny_config.copy_and_resolve_references()
  changed.learning_rate, changed.batch_size, changed.num_epochs = 0.01, 16, 2
  with pytest.raises(UserError) as refused:
    train.train_and_evaluate(changed, str(tmp_path), data=synthetic_data)
  for change in ('learning_rate: 0.003 then, 0.01 now', 'batch_size: 32 then, 16 now',
                 'num_epochs: 1 then, 2 now', '--resume_with_changes'):
    assert change in str(refused.value), str(refused.value)
  assert (tmp_path / 'config.json').read_text() == original
  assert len(workdir_lib.read_metrics(str(tmp_path / 'metrics.jsonl'))) == 1  # Nothing trained.

  moved = tiny_config.copy_and_resolve_references()  # Where things are may change freely.
  moved.log_every_steps, moved.keep_checkpoints = 3, 7
  train.train_and_evaluate(moved, str(tmp_path), data=synthetic_data)
  assert json.loads((tmp_path / 'config.json').read_text())['keep_checkpoints'] == 7

  longer = moved.copy_and_resolve_references()
  longer.num_epochs = 2
  metrics = train.train_and_evaluate(longer, str(tmp_path), data=synthetic_data,
                                     resume_with_changes=True)
  assert metrics['epoch'] == 2
  assert json.loads((tmp_path / 'config.json').read_text())['num_epochs'] == 1  # As trained first,
  [record] = workdir_lib.read_metrics(str(tmp_path / config_lib.CHANGES_FILE))
  assert record == {'step': 8, 'changes': {'num_epochs': {'from': 1, 'to': 2}}}  # then changed.
  assert config_lib.load_saved(str(tmp_path)).num_epochs == 2
  train.train_and_evaluate(longer, str(tmp_path), data=synthetic_data)  # As it is now: accepted.


def _small_disk(tmp_path):
  """A 600 kB file system (tmpfs), for a disk that fills up mid-run; root only."""
  disk = tmp_path / 'disk'
  disk.mkdir()
  if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=600k', 'tmpfs',
                                          str(disk)], capture_output=True).returncode:
    pytest.skip('a full disk needs root to mount a small tmpfs')
  return disk


def test_a_disk_that_fills_up_during_a_checkpoint_is_one_message(mnist_dirs, tmp_path):
  disk = _small_disk(tmp_path)
  try:
    result = subprocess.run(tiny_command(disk / 'run', mnist_dirs,
                                         '--config.conv_features=16,32'),
                            capture_output=True, text=True, cwd=ROOT)
  finally:
    subprocess.run(['umount', str(disk)], check=True)
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr and 'E1' not in result.stderr, result.stderr[-3000:]
  assert result.stderr.rstrip().splitlines()[-1] == (
      f'Error: Cannot write checkpoints in {disk}/run/checkpoints: No space left on device. The '
      'checkpoints written before are kept; free some space (or fix the folder), then run the '
      'same command again to resume.')


def test_tensorstore_calling_a_closed_loop_prints_nothing_but_other_errors_still_show():
  """The full disk's occasional extra tracebacks, made every time: a TensorStore
  future whose done callback reaches an event loop that is already closed."""
  script = '\n'.join([
      'import asyncio, tensorstore as ts',
      'from mnist_jax import logs',
      'logs.quiet_libraries()',
      'loop = asyncio.new_event_loop(); loop.close()',
      'def other(_): raise RuntimeError("another problem")',
      'for callback in (lambda _: loop.call_soon_threadsafe(print), other):',
      '  promise, future = ts.Promise.new()',
      '  future.add_done_callback(callback)',
      '  promise.set_result(1)',
  ])
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=ROOT)
  assert 'Event loop is closed' not in result.stderr
  assert result.stderr.count('Traceback') == 1 and 'another problem' in result.stderr


def test_a_slow_checkpoint_is_said_while_waited_for(tiny_config, synthetic_data, tmp_path,
                                                    monkeypatch, caplog):
  """A slow disk (sshfs throttled to 200 kB/s: a default model's 4.5 MB checkpoint
  took about 22 s) made the next save and the end of a run silent waits."""
  caplog.set_level(logging.INFO)
  monkeypatch.setattr(workdir_lib, 'SLOW_WRITE_S', 0.1)
  manager = checkpoints._ocp().CheckpointManager  # pylint: disable=protected-access
  finish = manager.wait_until_finished

  def slowly(self):
    time.sleep(0.5)
    finish(self)
  monkeypatch.setattr(manager, 'wait_until_finished', slowly)
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data)
  assert f'Waiting for {tmp_path}/checkpoints to be written (a slow disk?)' in caplog.text


def test_the_same_ensemble_member_twice_is_refused(tmp_path):
  (tmp_path / 'a').mkdir()
  with pytest.raises(UserError, match='in the ensemble twice'):
    evaluate.load_members([str(tmp_path / 'a'), str(tmp_path / 'b' / '..' / 'a')])
  same = str(tmp_path / 'a')
  with pytest.raises(UserError, match='in the ensemble twice'):
    evaluate.load_members([same, same])


def test_a_data_dir_that_takes_no_files_is_named_as_such(tmp_path):
  (tmp_path / 'file').write_text('not a folder')
  manual = tmp_path / 'manual'
  manual.mkdir()
  for name in input_pipeline.OFFICIAL_FILES:
    (manual / name).write_bytes(b'')
  with pytest.raises(UserError, match=r'Cannot write to .*file.*tfds prepares the dataset there'):
    input_pipeline.load('mnist', str(tmp_path / 'file' / 'tfds'), str(manual))


def test_a_clock_set_back_mid_run_moves_no_duration(tiny_config, synthetic_data, tmp_path,
                                                    monkeypatch):
  """The system clock set back an hour after the first epoch (NTP, a user): elapsed
  times and rates are measured on the monotonic clock, so none goes negative."""
  tiny_config.num_epochs = 2
  real = time.time
  train.train_and_evaluate(tiny_config, str(tmp_path), data=synthetic_data,
                           on_evaluation=lambda m: monkeypatch.setattr(
                               time, 'time', lambda: real() - 3600))
  first, second = workdir_lib.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert 0 < first['elapsed_s'] <= second['elapsed_s'] < 600
  assert second['epoch_train_s'] >= 0 and second['train_clock_s'] >= first['train_clock_s']
