"""--mode=sweep: Optuna on the validation split, resumable and shared by processes."""

import ast
import glob
import importlib
import json
import os
import re
import signal
import subprocess
import time

import optuna
import pytest
import sqlalchemy

from conftest import ROOT, tiny_command
from configs import tiny
from mnist_jax import sweep
from mnist_jax.errors import UserError

HOPELESS = 1e-7  # A learning rate that leaves the model at chance after 100 steps.


def sweep_spec(cache, learning_rates=(HOPELESS, 0.003), seeds=(0, 1)):
  """learning_rates x 2 configurations x seeds; one compilation cache for all the
  runs (each compiles the same shapes)."""
  return f'''
def get_sweep():
  return {{'grid': {{'learning_rate': {list(learning_rates)}, 'dense_features': [32, 48]}},
          'seeds': {list(seeds)}, 'heartbeat_s': 1,
          'config': {{'validation_size': 1000, 'compilation_cache_dir': {cache!r}}}}}
'''


def write_spec(path, text):
  path.write_text(text)
  return str(path)


@pytest.mark.parametrize('body,message', [
    ("{'grid': {'learning_rate': [0.1]}, 'space': {'dropout_rate': ('float', 0, 0.5)}}",
     'either a grid or a space'),
    ("{'space': {'learning_rate': ('log', 0.1, 0.001)}, 'trials': 3}", 'with low < high'),
    ("{'grid': {'learning_rte': [0.1]}}", "'learning_rte' is not a config key"),
    ("{'grid': {'batch_size': [64, 0]}}", 'batch_size must be positive'),
    ("{'grid': {'seed': [1, 2]}}", 'seeds are not a hyper-parameter'),
    ("{'grid': {'learning_rate': [0.1]}, 'metric': 'test_accuracy'}",
     'never chooses on the test set'),
    ("{'grid': {'learning_rate': [0.1]}, 'seeds': []}", 'distinct whole numbers'),
    ("{'grid': {'learning_rate': [0.1]}, 'trails': 3}", "unknown key"),
    ("{'grid': {'learning_rate': [0.1, 0.2]}, 'trials': 3}", 'at most the grid'),
    ("{'space': {'learning_rate': ('log', 0.001, 0.1)}}", 'required with a space'),
    ("{'space': {'learning_rate': ('log', 'a', 'b')}, 'trials': 2}", 'with low < high'),
    ("{'grid': [0.1, 0.2]}", 'must be dicts'),
    ("{'grid': {'learning_rate': [0.1]}, 'prune': {'from_epoch': 0}}", '"from_epoch": 1 or more'),
    ("{'grid': {'learning_rate': [0.1]}, 'prune': {'from_epoch': 1.5}}", '"from_epoch": 1 or more'),
])
def test_bad_spec_is_one_message(tmp_path, body, message):
  if "'config'" not in body:
    body = body[:-1] + ", 'config': {'validation_size': 1000}}"
  path = write_spec(tmp_path / 'spec.py', f'def get_sweep():\n  return {body}\n')
  with pytest.raises(UserError, match=message):
    sweep.load_spec(path, tiny.get_config())


def test_spec_must_hold_out_validation_and_be_readable(tmp_path):
  base = tiny.get_config()
  path = write_spec(tmp_path / 'a.py', "def get_sweep():\n  return {'grid': {'seed': []}}\n")
  with pytest.raises(UserError, match='seeds are not'):
    sweep.load_spec(path, base)
  path = write_spec(tmp_path / 'b.py', "def get_sweep():\n  return {'grid': {'batch_size': [8]}}\n")
  with pytest.raises(UserError, match='validation_size is 0'):
    sweep.load_spec(path, base)
  with pytest.raises(UserError, match='could not be read: SyntaxError'):
    sweep.load_spec(write_spec(tmp_path / 'c.py', 'def get_sweep(:\n'), base)
  with pytest.raises(UserError, match='no such file'):
    sweep.load_spec(str(tmp_path / 'missing.py'), base)


@pytest.mark.parametrize('name', sorted(map(os.path.basename,
                                              glob.glob(os.path.join(ROOT, 'sweeps', '*.py')))))
def test_shipped_specs_load_against_the_config_their_command_names(name):
  path = os.path.join(ROOT, 'sweeps', name)
  doc = ast.get_docstring(ast.parse(open(path).read()))
  command = ' '.join(doc.split('python main.py', 1)[1].split('\n\n')[0].replace('\\', '').split())
  assert '--mode=sweep' in command and f'--sweep=sweeps/{name}' in command
  base = re.search(r'--config=configs/(\w+)\.py', command)
  config = importlib.import_module(f'configs.{base.group(1) if base else "default"}')
  spec = sweep.load_spec(path, config.get_config())  # Raises UserError for any mistake.
  assert spec.config['validation_size'] > 0


class _After(optuna.pruners.BasePruner):
  """Says yes to every question after the trial's step `step` (steps run on across
  the seeds: seed 1's epoch 1 is step num_epochs + 1)."""

  def __init__(self, step):
    self.step = step

  def prune(self, study, trial):
    return trial.last_step > self.step


@pytest.mark.parametrize('from_epoch,yes_after_step,seed,epoch', [
    (None, 0, 0, 1),  # Asked after the first epoch.
    (2, 0, 0, 2),  # Asked from epoch 2 on,
    (2, 3, 1, 2)])  # for every seed: not at seed 1's epoch 1.
def test_a_pruned_trial_stops_after_the_epoch_the_pruner_saw(tmp_path, synthetic_data,
                                                             from_epoch, yes_after_step,
                                                             seed, epoch):
  """The pruner is asked after every epoch (of every seed, from prune's from_epoch
  on), and a yes stops the trial there: no more epochs, no further seeds, its row
  says why."""
  base = tiny.get_config()
  base.batch_size, base.train_steps_per_epoch, base.num_epochs = 32, 4, 3
  base.validation_size = 100
  prune = f", 'prune': {{'from_epoch': {from_epoch}}}" if from_epoch else ''
  spec = sweep.load_spec(write_spec(tmp_path / 'spec.py', (
      "def get_sweep():\n  return {'grid': {'learning_rate': [0.003]}, 'seeds': [0, 1]"
      f"{prune}}}\n")), base)
  objective = sweep._Objective(base, spec, str(tmp_path), synthetic_data)  # pylint: disable=protected-access
  study = optuna.create_study(pruner=_After(yes_after_step), direction='maximize')
  study.optimize(objective, n_trials=1)
  [trial] = study.trials
  assert trial.state == optuna.trial.TrialState.PRUNED
  assert f'after epoch {epoch} of seed {seed}' in trial.user_attrs['pruned']
  seeds = sorted(glob.glob(str(tmp_path / 'trials' / '*' / 'seed_*')))
  assert [os.path.basename(s) for s in seeds] == [f'seed_{s}' for s in range(seed + 1)]
  assert len(open(os.path.join(seeds[-1], 'metrics.jsonl')).readlines()) == epoch


@pytest.mark.parametrize('direction,values', [('maximize', (0.90, 0.92, 0.94, 0.96)),
                                              ('minimize', (0.40, 0.30, 0.20, 0.10))])
def test_prune_stops_the_worst_percentile_only(direction, values):
  """prune={'percentile': 25}: below the worst quarter of the finished trials is
  stopped; the middle goes on (Optuna's own percentile is the share it keeps)."""
  study = optuna.create_study(direction=direction, pruner=sweep.make_pruner(
      {'percentile': 25.0, 'startup_trials': 2}))
  for value in values:
    trial = study.ask()
    trial.report(value, 1)
    study.tell(trial, value)

  def stopped(value):
    trial = study.ask()
    trial.report(value, 1)
    return trial.should_prune()

  worst, middle = values[0] - (values[1] - values[0]), (values[1] + values[2]) / 2
  assert stopped(worst) and not stopped(middle)
  assert not sweep.make_pruner(None).prune(study, study.trials[-1])


@pytest.mark.parametrize('drops', [1, 2])
def test_a_connection_dropped_while_opening_is_tried_once_more(tmp_path, monkeypatch, drops):
  """A server may drop a first connection (one restarting did, in CI): opening tries
  once more; a server that drops every connection is one message."""
  opened, calls = sweep._PatientStorage.__init__, []

  def dropping(self, *args, **kwargs):
    calls.append(1)
    if len(calls) <= drops:
      raise sqlalchemy.exc.OperationalError(
          'SELECT 1', {}, Exception('server closed the connection unexpectedly'))
    opened(self, *args, **kwargs)

  monkeypatch.setattr(sweep._PatientStorage, '__init__', dropping)
  base = tiny.get_config()
  spec = sweep.load_spec(write_spec(tmp_path / 'spec.py', sweep_spec(str(tmp_path / 'c'))), base)
  (tmp_path / 'sweep').mkdir()
  if drops == 1:
    study, _ = sweep.open_study(spec, str(tmp_path / 'sweep'), None, base)
    assert study.study_name == 'sweep' and len(calls) == 2
  else:
    with pytest.raises(UserError, match='Cannot open .* server closed the connection'):
      sweep.open_study(spec, str(tmp_path / 'sweep'), None, base)


def test_trial_names_are_folders_and_stable():
  assert sweep.trial_name({'learning_rate': 0.003, 'conv_features': '16,32'}) == (
      'conv_features=16,32_learning_rate=0.003')
  long = sweep.trial_name({f'k{i}': 'x' * 30 for i in range(5)})
  assert len(long) <= 100 and long == sweep.trial_name({f'k{i}': 'x' * 30 for i in range(5)})


def results(workdir):
  """{(learning_rate, dense_features): {seed: (val accuracy, test accuracy)}}, and the rows."""
  rows = json.load(open(os.path.join(workdir, 'sweep.json')))['rows']
  out = {}
  for row in rows:
    key = (row['params']['learning_rate'], row['params']['dense_features'])
    out[key] = {r['seed']: (r['val_accuracy'], r['test_accuracy'])
                for r in row['runs'] if r['complete']}
  return out, rows


def check_table(workdir, configurations=4, seeds=(0, 1)):
  """Every configuration has a row; only hopeless ones may be pruned; all written."""
  out, rows = results(workdir)
  assert len(rows) == configurations
  for row in rows:
    if row['params']['learning_rate'] != HOPELESS:
      assert row['state'] == 'COMPLETE' and row['seeds_done'] == list(seeds), row
      assert row['val_accuracy']['mean'] > 0.7, row
  assert [r['state'] for r in rows[:2]] == ['COMPLETE'] * 2  # The good ones rank first.
  assert rows[0]['val_accuracy']['mean'] >= rows[1]['val_accuracy']['mean']
  table = open(os.path.join(workdir, 'sweep.md')).read()
  assert table.count('\n| ') == configurations + 2 and 'not used to choose' in table
  assert os.path.getsize(os.path.join(workdir, 'sweep.png')) > 1000
  return out


def start(workdir, spec, mnist_dirs, log, *flags):
  with open(log, 'w') as f:
    return subprocess.Popen(tiny_command(workdir, mnist_dirs, '--mode=sweep', f'--sweep={spec}',
                                         *flags),
                            stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)


def wait(proc, log, timeout=600):
  try:
    proc.wait(timeout=timeout)
  finally:
    if proc.poll() is None:
      proc.kill()
  text = open(log).read()
  assert proc.returncode == 0, text[-3000:]
  return text


def test_two_machines_share_a_sweep_on_postgresql_through_a_restart_and_a_killed_one_resumes(
    mnist_dirs, postgres, tmp_path):
  """Two processes share one study on a real PostgreSQL server, which is stopped for
  a few seconds mid-sweep (as a restart does): both wait for it and finish. A third
  sweep, on SQLite, of the good configurations' first seed, killed in its second
  trial and run again, gives the same figures."""
  spec = write_spec(tmp_path / 'spec.py', sweep_spec(str(tmp_path / 'xla_cache')))
  shared = str(tmp_path / 'shared')
  procs = [start(shared, spec, mnist_dirs, tmp_path / f'p{i}.log',
                 f'--sweep_storage={postgres.url}') for i in range(2)]
  deadline = time.time() + 300
  while not glob.glob(os.path.join(shared, 'trials', '*', 'seed_0', 'metrics.jsonl')):
    assert all(p.poll() is None for p in procs) and time.time() < deadline
    time.sleep(0.2)
  postgres.stop()
  time.sleep(6)  # Heartbeats and reports fail meanwhile: waited out, not fatal.
  postgres.start()
  logs = [wait(p, tmp_path / f'p{i}.log') for i, p in enumerate(procs)]
  for log in logs:  # Both did some of the work.
    assert 'Trial ' in log and 'Traceback' not in log, log[-3000:]
    assert postgres.PASSWORD not in log
  assert any('database postgresql://mnist:***@' in l and 'does not answer' in l for l in logs)
  reference = check_table(shared)

  result = subprocess.run(tiny_command(tmp_path / 'other', mnist_dirs, '--mode=sweep',
                                       f'--sweep={spec}', '--sweep_storage=' +
                                       postgres.url.replace(postgres.PASSWORD, 'guessed')),
                          capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert 'password authentication failed' in result.stderr and 'guessed' not in result.stderr

  killed = str(tmp_path / 'killed')
  spec = write_spec(tmp_path / 'good.py',
                    sweep_spec(str(tmp_path / 'xla_cache'), learning_rates=[0.003], seeds=[0]))
  proc = start(killed, spec, mnist_dirs, tmp_path / 'k.log')
  deadline = time.time() + 300
  # Killed in the second trial's second epoch, the first trial done (two epochs each):
  # at once, not after a pause that a fast CPU's whole trial could fit in.
  while sorted(len(open(f).readlines()) for f in glob.glob(
      os.path.join(killed, 'trials', '*', 'seed_0', 'metrics.jsonl'))) != [1, 2]:
    assert proc.poll() is None and time.time() < deadline, open(tmp_path / 'k.log').read()
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, 'sweep.json'))
  log = wait(start(killed, spec, mnist_dirs, tmp_path / 'k2.log'), tmp_path / 'k2.log')
  assert 'was interrupted)' in log, log[-3000:]
  resumed = check_table(killed, configurations=2, seeds=[0])
  # The same configuration and seed give the same figures.
  assert set(resumed) == {(0.003, 32), (0.003, 48)}
  for key, seeds in resumed.items():
    assert seeds[0] == reference[key][0], key
  study = optuna.load_study(study_name='killed', storage=f'sqlite:///{killed}/study.db')
  [interrupted] = [t for t in study.trials if t.state.name == 'FAIL']
  assert [t.state.name for t in study.trials if t.params == interrupted.params] == [
      'FAIL', 'COMPLETE']


def test_sweep_without_a_spec_or_with_a_bad_one_is_one_message(mnist_dirs, tmp_path):
  spec = write_spec(tmp_path / 'spec.py', "def get_sweep():\n  return {'grid': "
                    "{'learning_rate': [0.1]}, 'metric': 'test_accuracy'}\n")
  for flags, message in ((), 'needs --sweep=SPEC'), ((f'--sweep={spec}',), 'test set'):
    result = subprocess.run(tiny_command(tmp_path / 'sweep', mnist_dirs, '--mode=sweep', *flags),
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
