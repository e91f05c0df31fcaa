"""Data parallelism over 8 fake CPU devices (XLA_FLAGS), against one device."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from configs import tiny
from mnist_jax import evaluate, train
from mnist_jax.errors import UserError

# Runs in a child process: the device count is fixed when JAX starts.
WORKER = textwrap.dedent('''
    import json, sys
    import jax
    sys.path.insert(0, {root!r})
    from configs import tiny
    from mnist_jax import input_pipeline, train
    config = tiny.get_config()
    config.num_epochs = 1
    config.update(json.loads({overrides!r}))
    data = input_pipeline.load('mnist', {data_dir!r}, {manual_dir!r})
    metrics = train.train_and_evaluate(config, {workdir!r}, data=data)
    # How the step is really laid out: compile it as training does.
    mesh = train.make_mesh()
    tx = train.create_optimizer(config, 50)
    graphdef, state = train.init_state(config, tx, mesh)
    step = train.make_train_step(config, graphdef, tx, mesh, 'mnist', 50)
    images = jax.device_put(data['train'].images, state.step.sharding)
    labels = jax.device_put(data['train'].labels, state.step.sharding)
    perm = train.make_permutation(config)(1, 60000)
    sums = jax.device_put((0.0, 0, 0), state.step.sharding)
    hlo = step.lower(state, sums, images, labels, perm, 1).compile().as_text()
    print(json.dumps({{
        'devices': jax.device_count(),
        'param_devices': len(jax.tree.leaves(state.params)[0].sharding.device_set),
        'param_replicated': jax.tree.leaves(state.params)[0].sharding.is_fully_replicated,
        'per_device_batch_in_hlo': 'f32[8,28,28,1]' in hlo or 'f32[8,28,28,8]' in hlo,
        'all_reduce_in_hlo': 'all-reduce' in hlo,
        'metrics': metrics}}))
''')


def run_worker(devices, workdir, mnist_dirs, **overrides):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu')
  code = WORKER.format(root=ROOT, overrides=json.dumps(overrides), data_dir=mnist_dirs[1],
                       manual_dir=mnist_dirs[0], workdir=str(workdir))
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, timeout=600)
  return result


@pytest.fixture(scope='module')
def runs(mnist_dirs, tmp_path_factory):
  out = {}
  for devices in (1, 8):
    workdir = tmp_path_factory.mktemp(f'dev{devices}') / 'run'
    result = run_worker(devices, workdir, mnist_dirs)
    assert result.returncode == 0, result.stderr[-3000:]
    out[devices] = workdir, json.loads(result.stdout.strip().splitlines()[-1])
  return out


def test_eight_devices_match_one(runs):
  one, eight = runs[1][1], runs[8][1]
  assert one['devices'] == 1 and eight['devices'] == 8
  diff = abs(one['metrics']['test_accuracy'] - eight['metrics']['test_accuracy'])
  assert diff <= 0.0005, (one['metrics'], eight['metrics'])  # 0.05 percentage points.


def test_each_step_runs_on_all_eight(runs):
  eight = runs[8][1]
  assert eight['param_devices'] == 8 and eight['param_replicated']
  # The batch of 64 is split: each device convolves 8 images, and the
  # gradients are summed across devices.
  assert eight['per_device_batch_in_hlo'] and eight['all_reduce_in_hlo']
  assert not runs[1][1]['all_reduce_in_hlo']


def test_checkpoint_from_eight_devices_restores_on_one(runs, mnist):
  workdir, eight = runs[8]
  report = evaluate.evaluate([str(workdir)], data=mnist['test'])
  assert report['test_accuracy'] == pytest.approx(eight['metrics']['test_accuracy'], abs=1e-4)


def test_batch_not_divisible_by_devices(mnist_dirs, tmp_path):
  result = run_worker(8, tmp_path / 'run', mnist_dirs, batch_size=60)
  assert result.returncode != 0
  assert 'not divisible by the 8 devices' in result.stderr
