"""Short runs on the real MNIST (from ../shared/datasets/mnist)."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import ROOT, tiny_command
from configs import tiny
from mnist_jax import train


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(l).items() if not k.endswith('_s')} for l in f]


def _cli(workdir, mnist_dirs):
  return tiny_command(workdir, mnist_dirs, '--config.num_epochs=4')


@pytest.fixture(scope='module')
def cli_run(mnist_dirs, tmp_path_factory):
  """The tiny config, 4 x 50 steps, through main.py: the uninterrupted reference. A
  first run, as a user's: tfds prepares the data in a folder of its own."""
  workdir = tmp_path_factory.mktemp('cli') / 'run'
  fresh = (mnist_dirs[0], str(tmp_path_factory.mktemp('tfds_fresh')))
  result = subprocess.run(_cli(workdir, fresh), capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


def test_short_training_run_learns(cli_run):
  workdir, result = cli_run
  lines = _metrics(workdir)
  assert [l['epoch'] for l in lines] == [1, 2, 3, 4]
  assert lines[-1]['test_accuracy'] > 0.93  # 200 steps of 64 images of a tiny CNN.
  assert 'images/s' in result.stderr and 'test accuracy' in result.stderr
  assert ' lr ' in result.stderr and 'grad norm' in result.stderr
  assert os.path.isfile(workdir / 'config.json')
  # What the first run does, none of the libraries' start-up noise, and a closing
  # summary with what to do next.
  assert 'Preparing mnist in' in result.stderr
  for noise in ('oneDNN', 'InitializeLog', 'dataset_info.json', '\x1b['):
    assert noise not in result.stderr + result.stdout, noise
  final = f'{100 * lines[-1]["test_accuracy"]:.2f}%'
  assert f'Done: test accuracy {final} after epoch 4' in result.stdout, result.stdout
  assert f'--workdir={workdir} --mode=serve' in result.stdout


def test_same_seed_same_numbers(mnist, tmp_path):
  config = tiny.get_config()
  config.num_epochs = 1  # 50 steps: enough to tell two seeds apart.
  runs = [train.train_and_evaluate(config, str(tmp_path / str(i)), data=mnist) for i in range(2)]
  assert _metrics(tmp_path / '0') == _metrics(tmp_path / '1')
  config.seed = 1
  other = train.train_and_evaluate(config, str(tmp_path / 'seed1'), data=mnist)
  assert other['test_loss'] != runs[0]['test_loss']


@pytest.mark.parametrize('moment, resumed_from', [
    ('100', 100),  # Just after the checkpoint of epoch 2 was complete.
    ('100.orbax-checkpoint-tmp', 50),  # While it was being written (60-100 ms).
])
def test_sigkill_then_rerun_ends_like_uninterrupted(cli_run, mnist_dirs, tmp_path, moment,
                                                    resumed_from):
  """Killed when `moment` (a folder in checkpoints/) appears, then run again."""
  reference, _ = cli_run
  workdir = tmp_path / 'killed'
  process = subprocess.Popen(_cli(workdir, mnist_dirs), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not os.path.isdir(workdir / 'checkpoints' / moment) and time.time() < deadline:
    assert process.poll() is None, f'ended without {moment} being seen'
    time.sleep(0.001)
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  assert str(resumed_from) in os.listdir(workdir / 'checkpoints')
  result = subprocess.run(_cli(workdir, mnist_dirs), capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Resuming from the checkpoint at step {resumed_from}' in result.stderr
  assert _metrics(workdir) == _metrics(reference)
