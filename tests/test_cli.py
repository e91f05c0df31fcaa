"""main.py turns user mistakes into one message and a non-zero exit."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from mnist_jax import input_pipeline
from mnist_jax.errors import UserError


def run_main(*args, timeout=300):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize('args,message', [
    (['--config.lerning_rate=0.1'], 'Did you mean "learning_rate"'),
    (['--config.batch_size=abc'], 'invalid literal'),
    (['--config=configs/nope.py'], 'no such file'),
    (['--config.batch_size=-4'], 'batch_size must be positive'),
    (['--config.learning_rate=0'], 'learning_rate must be positive'),
    (['--config.model=transformer'], 'choose one of cnn, mlp, flax_example_cnn'),
])
def test_bad_config_is_one_message(tmp_path, args, message):
  result = run_main(f'--workdir={tmp_path}', *args)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('text,message', [
    ('def get_config(:\n', 'SyntaxError (line 1): invalid syntax'),
    ('def get_config():\n  raise ValueError("no such preset")\n', 'ValueError: no such preset'),
    ('x = 1\n', 'defines no get_config()'),
    ('def get_config():\n  pass\n', 'returned None'),
])
def test_a_config_file_that_does_not_load_is_one_line(tmp_path, text, message):
  (tmp_path / 'mine.py').write_text(text)
  result = run_main(f'--workdir={tmp_path / "run"}', f'--config={tmp_path / "mine.py"}')
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
  [line] = [l for l in result.stderr.splitlines() if l.strip()]
  assert line.startswith(f'Error: --config={tmp_path / "mine.py"} could not be read')
  assert message in line, line


def test_serving_on_an_address_of_another_machine_is_one_message(tmp_path):
  result = run_main(f'--workdir={tmp_path}', '--mode=serve', '--host=192.0.2.1')  # TEST-NET-1.
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert '--host=192.0.2.1 is not an address of this machine' in result.stderr, result.stderr


def test_missing_workdir_flag():
  result = run_main()
  assert result.returncode != 0 and '--workdir' in result.stderr
  assert 'Traceback' not in result.stderr


def test_manual_dir_without_the_files(tmp_path):
  result = run_main(f'--workdir={tmp_path / "run"}', f'--config.manual_dir={tmp_path}',
                    f'--config.data_dir={tmp_path / "tfds"}')
  assert result.returncode != 0
  assert 'train-images-idx3-ubyte.gz' in result.stderr and '--config.manual_dir' in result.stderr
  assert 'Traceback' not in result.stderr


def test_none_on_the_command_line_is_none(tmp_path, mnist_dirs):
  """--config.compilation_cache_dir=None turns fast's cache off; it once made a folder 'None'."""
  manual_dir, data_dir = mnist_dirs
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'main.py'), f'--workdir={tmp_path / "run"}',
       '--config=' + os.path.join(ROOT, 'configs', 'tiny.py'), '--config.num_epochs=1',
       '--config.train_steps_per_epoch=2', '--config.compilation_cache_dir=None',
       f'--config.manual_dir={manual_dir}', f'--config.data_dir={data_dir}'],
      capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert not (tmp_path / 'None').exists()
  with open(tmp_path / 'run' / 'config.json') as f:
    assert json.load(f)['compilation_cache_dir'] is None


def test_offline_without_manual_dir_fails_fast(tmp_path, monkeypatch):
  """Offline, the connection to the download host fails: one message at once, not
  tfds's minutes of retries."""
  tried = []

  def offline(address, timeout=None):
    tried.append(address)
    raise OSError(101, 'Network is unreachable')
  monkeypatch.setattr(input_pipeline.socket, 'create_connection', offline)
  started = time.monotonic()
  with pytest.raises(UserError, match='put the four official files.*--config.manual_dir'):
    input_pipeline.load('mnist', data_dir=str(tmp_path))
  assert tried == [(input_pipeline.DOWNLOAD_HOST, 443)]
  assert time.monotonic() - started < 30


@pytest.mark.parametrize('args,message', [
    (['--mode=eval', '--multihost'], '--mode=eval runs in one process'),
    (['--coordinator_address=localhost:1'], 'Could not start the multi-process run'),
    (['--coordinator_address=nohost', '--num_processes=2', '--process_id=1'],
     'expected HOST:PORT'),
])
def test_multihost_mistakes_are_one_message(tmp_path, args, message):
  result = run_main(f'--workdir={tmp_path}', *args)
  assert result.returncode != 0 and message in result.stderr
  assert 'Traceback' not in result.stderr


def test_unreachable_coordinator_is_an_error_not_a_crash():
  from mnist_jax import distributed  # pylint: disable=g-import-not-at-top
  with socket.socket() as sock:  # A port nobody listens on.
    sock.bind(('localhost', 0))
    port = sock.getsockname()[1]
  with pytest.raises(UserError, match='Could not reach the coordinator'):
    distributed.initialize(f'localhost:{port}', 2, 1, timeout_s=1)


@pytest.mark.parametrize('env,expected', [
    ({}, False),
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '4'}, True),
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '1'}, False),
    ({'OMPI_COMM_WORLD_SIZE': '2'}, True),
    ({'TPU_WORKER_HOSTNAMES': 'w0,w1,w2,w3'}, True),
    ({'TPU_WORKER_HOSTNAMES': 'w0'}, False),  # A single-host TPU VM, e.g. Colab.
    ({'JAX_COORDINATOR_ADDRESS': 'host0:1234'}, True),
])
def test_multihost_is_detected_from_the_environment(monkeypatch, env, expected):
  from mnist_jax import distributed  # pylint: disable=g-import-not-at-top
  for name in ('SLURM_JOB_ID', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES',
               'TPU_PROCESS_ADDRESSES', 'MEGASCALE_COORDINATOR_ADDRESS',
               'JAX_COORDINATOR_ADDRESS'):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  assert distributed.detected() == expected
