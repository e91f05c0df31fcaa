"""`--mode=sweep`: hyper-parameters chosen on the validation split, with Optuna.

A spec (a Python file whose `get_sweep()` returns a dict; see sweeps/) names the
values to try, the seeds each configuration trains with, the budget and the
metric. Every trial is one configuration: each of its seeds is an ordinary run
(`train.train_and_evaluate`, as `--mode=train`) in
`WORKDIR/trials/<configuration>/seed_<seed>`; its score is the mean of the
final validation metric over the seeds. Optuna keeps the study in SQLite in
WORKDIR (or any database it supports), so:

- running the same command again resumes: finished trials are kept, and a
  trial that was interrupted (its heartbeat stopped) is run again with the
  same values, which resumes its seeds from their checkpoints;
- several processes or machines given the same storage share the work;
- after each epoch the validation metric goes to Optuna's pruner, which may
  stop a configuration that is clearly behind the others at the same point.

The sweep writes `sweep.md`, `sweep.json` and `sweep.png`: one row per
configuration, mean and standard deviation over its seeds, sorted by the
validation metric. The test figures are shown beside it and never used to choose.
"""

import copy
import dataclasses
import hashlib
import importlib.util
import itertools
import json
import os
import re
import time
import warnings

from absl import logging
import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from mnist_jax import config_lib, hardware, input_pipeline, plots, train
from mnist_jax import workdir as workdir_lib
from mnist_jax.errors import UserError, first_line

METRICS = {'val_accuracy': 'maximize', 'val_loss': 'minimize'}
SPEC_KEYS = ('grid', 'space', 'seeds', 'trials', 'metric', 'config', 'prune', 'heartbeat_s')
RANGES = ('float', 'log', 'int')
DEFAULT_PRUNE = {'percentile': 25.0, 'startup_trials': 2}
TARGET = 0.99  # "Time to 99%": the first evaluation at or above it.


@dataclasses.dataclass(frozen=True)
class Spec:
  """A checked sweep spec; see `load_spec` for what each field may hold."""
  grid: dict
  space: dict
  seeds: tuple
  trials: int
  metric: str
  config: dict
  prune: dict | None
  heartbeat_s: int

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


def load_spec(path: str, base) -> Spec:
  """Reads and checks a spec file against the base config; one message per mistake.

  get_sweep() returns a dict with:
    grid:   {config key: [values]}, every combination tried; or
    space:  {config key: ('float' | 'log' | 'int', low, high) or ('choice', [values])},
            sampled by Optuna's TPE sampler;
    seeds:  the seeds each configuration trains with (default [0, 1, 2]);
    trials: how many configurations (default: the whole grid; required for space);
    metric: 'val_accuracy' (default, maximized) or 'val_loss' (minimized), final epoch;
    config: fixed overrides of the base config, e.g. {'validation_size': 10000};
    prune:  {'percentile': P, 'startup_trials': N, 'from_epoch': E} (default 25,
            2, 1): after each epoch from E on, a trial in the worst P% of the
            finished ones at the same point is stopped, once N trials have finished;
            None: never. A late E lets schedules whose early epochs rank otherwise
            than their last ones (a one-cycle's warm-up) run before they are judged;
    heartbeat_s: how often a running trial says it is alive (default 30); one silent
            for 3x this is taken as interrupted and run again.
  """
  if not os.path.isfile(path):
    raise UserError(f'--sweep={path}: no such file. Sweep specs are in sweeps/.')
  try:
    module_spec = importlib.util.spec_from_file_location('sweep_spec', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    raw = module.get_sweep()
  except Exception as e:  # A user's file: any error in it is theirs to fix.
    raise UserError(f'--sweep={path} could not be read: {type(e).__name__}: {e}') from e
  bad = lambda why: UserError(f'--sweep={path}: {why}')
  if not isinstance(raw, dict):
    raise bad('get_sweep() must return a dict.')
  unknown = sorted(set(raw) - set(SPEC_KEYS))
  if unknown:
    raise bad(f'unknown key(s) {", ".join(unknown)}; a spec may have {", ".join(SPEC_KEYS)}.')
  grid, space = _check_search(raw, base, bad)
  metric = raw.get('metric', 'val_accuracy')
  if metric not in METRICS:
    hint = ' A sweep never chooses on the test set.' if metric.startswith('test') else ''
    raise bad(f'metric {metric!r} is not one of {", ".join(METRICS)}.{hint}')
  seeds = raw.get('seeds', [0, 1, 2])
  if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) or (
      len(set(seeds)) < len(seeds)):
    raise bad(f'seeds={seeds!r}: give distinct whole numbers >= 0.')
  size = int(np.prod([len(v) for v in grid.values()])) if grid else None
  trials = raw.get('trials', size)
  if not isinstance(trials, int) or trials < 1 or (size and trials > size):
    raise bad(f'trials={trials!r}: a whole number >= 1' + (
        f', at most the grid\'s {size} combinations.' if size else ' (required with a space).'))
  prune = raw.get('prune', DEFAULT_PRUNE)
  from_epoch = prune.get('from_epoch', 1) if isinstance(prune, dict) else 1
  if prune is not None and (not isinstance(prune, dict) or
                            set(prune) - {*DEFAULT_PRUNE, 'from_epoch'} or
                            not 0 < prune.get('percentile', 25.0) < 100 or
                            not isinstance(from_epoch, int) or from_epoch < 1):
    raise bad(f'prune={prune!r}: None, or {{"percentile": 0-100, "startup_trials": N, '
              '"from_epoch": 1 or more}.')
  heartbeat = raw.get('heartbeat_s', 30)
  if not isinstance(heartbeat, int) or heartbeat < 1:
    raise bad(f'heartbeat_s={heartbeat!r}: a whole number of seconds >= 1.')
  spec = Spec({k: list(v) for k, v in grid.items()}, {k: list(v) for k, v in space.items()},
              tuple(seeds), trials, metric, dict(raw.get('config', {})),
              None if prune is None else {**DEFAULT_PRUNE, **prune}, heartbeat)
  _check_every_value(base, spec, bad)
  return spec


def _check_search(raw: dict, base, bad) -> tuple[dict, dict]:
  """The spec's grid or space, each key a config key and each value well formed."""
  grid, space = raw.get('grid') or {}, raw.get('space') or {}
  if not all(isinstance(part, dict) for part in (grid, space, raw.get('config', {}))):
    raise bad('grid, space and config must be dicts keyed by config keys.')
  if bool(grid) == bool(space):
    raise bad('give either a grid or a space (not both, not neither).')
  for key in [*grid, *space, *raw.get('config', {})]:
    if key == 'seed':
      raise bad('seeds are not a hyper-parameter: list them under "seeds".')
    if key not in base:
      raise bad(f'{key!r} is not a config key.')
  for key, values in grid.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise bad(f'grid[{key!r}] must be a non-empty list of values.')
  for key, dist in space.items():
    if not (isinstance(dist, (list, tuple)) and dist and (
        dist[0] in RANGES and len(dist) == 3
        and all(isinstance(v, (int, float)) for v in dist[1:]) and dist[1] < dist[2]
        or dist[0] == 'choice' and len(dist) == 2 and len(dist[1]) > 0)):
      raise bad(f'space[{key!r}]={dist!r}: expected (\'float\' | \'log\' | \'int\', low, high) '
                'with low < high, or (\'choice\', [values]).')
  return grid, space


def _check_every_value(base, spec: Spec, bad) -> None:
  """Every trial's config validates, before anything trains: a typo fails now, not
  at trial 7; and there is a validation split to choose on."""
  check = trial_config(base, spec, {}, spec.seeds[0])
  if not check.validation_size:
    raise bad('the sweep chooses on the validation split, but validation_size is 0: set '
              'it in the spec\'s config (e.g. {"validation_size": 10000}) or with '
              '--config.validation_size.')
  if spec.grid:
    candidates = [dict(zip(spec.grid, values))
                  for values in itertools.product(*spec.grid.values())]
  else:  # Each range's ends and each choice, one key at a time.
    candidates = [{key: value} for key, dist in spec.space.items()
                  for value in (dist[1] if dist[0] == 'choice' else dist[1:])]
  for params in candidates:
    try:
      config_lib.validate(trial_config(base, spec, params, spec.seeds[0]))
    except UserError as e:
      raise bad(f'{_describe(params)}: {e}') from e


def _encode(value):
  """Optuna stores str, int, float, bool or None: sizes like (16, 32) go as '16,32'."""
  return ','.join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _decode(value, like):
  if isinstance(like, (list, tuple)) and isinstance(value, str):
    return tuple(int(v) for v in value.split(','))
  return value


def trial_config(base, spec: Spec, params: dict, seed: int):
  """The base config with the spec's fixed values, a trial's values and a seed."""
  config = copy.deepcopy(base)
  for key, value in {**spec.config, **params, 'seed': seed}.items():
    try:
      config[key] = _decode(_encode(value), config[key])
    except (TypeError, ValueError) as e:
      raise UserError(f'{key}={value!r} does not fit the config ({e}).') from e
  return config


def _describe(params: dict) -> str:
  return ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in sorted(params.items())) or '(base config)'


def trial_name(params: dict) -> str:
  """A folder name for a configuration: readable, the same on every run and machine."""
  name = re.sub(r'[^A-Za-z0-9.,=_-]', '_', _describe(params).replace(', ', '_'))
  if len(name) > 100:
    name = name[:80] + '_' + hashlib.sha1(name.encode()).hexdigest()[:10]
  return name


def _key(params: dict):
  return tuple(sorted(params.items()))


def _suggest(trial, spec: Spec) -> dict:
  if spec.grid:
    return {k: trial.suggest_categorical(k, [_encode(v) for v in values])
            for k, values in spec.grid.items()}
  out = {}
  for key, dist in spec.space.items():
    if dist[0] == 'choice':
      out[key] = trial.suggest_categorical(key, [_encode(v) for v in dist[1]])
    elif dist[0] == 'int':
      out[key] = trial.suggest_int(key, dist[1], dist[2])
    else:
      out[key] = trial.suggest_float(key, dist[1], dist[2], log=dist[0] == 'log')
  return out


def summarize_run(lines: list[dict], seed: int, num_epochs: int, resumed: bool) -> dict:
  """One seed's figures from its metrics.jsonl lines (`complete`: all its epochs ran)."""
  last = lines[-1] if lines else {}
  reach = lambda key: next((m['elapsed_s'] for m in lines if m.get(key, 0) >= TARGET), None)
  return {'seed': seed, 'epochs': last.get('epoch', 0),
          'complete': last.get('epoch', 0) == num_epochs,
          **{k: last.get(k) for k in ('val_accuracy', 'val_loss', 'test_accuracy', 'test_loss')},
          'wall_s': last.get('elapsed_s'), 'val_time_to_99_s': reach('val_accuracy'),
          'test_time_to_99_s': reach('test_accuracy'), 'resumed': resumed}


class _Objective:
  """One trial: every seed of one configuration, reported epoch by epoch."""

  def __init__(self, base, spec: Spec, workdir: str, data):
    self.base, self.spec, self.workdir, self.data = base, spec, workdir, data

  def __call__(self, trial):
    spec = self.spec
    params = _suggest(trial, spec)
    retried = trial.user_attrs.get('first_trial')  # Copied when a trial is retried.
    if retried is None:
      trial.set_user_attr('first_trial', trial.number)
    logging.info('Trial %d: %s; seeds %s%s', trial.number, _describe(params),
                 ', '.join(map(str, spec.seeds)),
                 '' if retried is None else f' (again: trial {retried} was interrupted)')
    runs = []
    # Every seed's epochs before it are reported but not judged (not only the first
    # seed's, as Optuna's n_warmup_steps would: steps run on across the seeds).
    from_epoch = (spec.prune or {}).get('from_epoch', 1)
    for i, seed in enumerate(spec.seeds):
      config = trial_config(self.base, spec, params, seed)
      workdir = os.path.join(self.workdir, 'trials', trial_name(params), f'seed_{seed}')
      metrics_path = os.path.join(workdir, 'metrics.jsonl')
      resumed = bool(workdir_lib.read_metrics(metrics_path))

      def report(metrics, i=i, num_epochs=config.num_epochs):
        trial.report(metrics[spec.metric], i * num_epochs + metrics['epoch'])
        if metrics['epoch'] >= from_epoch and trial.should_prune():
          raise optuna.TrialPruned(f'{spec.metric} {metrics[spec.metric]:.4f} after epoch '
                                   f'{metrics["epoch"]} of seed {config.seed}')

      try:
        _train_waiting_for_lock(config, workdir, self.data, report)
      except optuna.TrialPruned as e:
        logging.info('Trial %d pruned: %s.', trial.number, e)
        trial.set_user_attr('pruned', str(e))
        raise
      except UserError as e:
        if not isinstance(e.__cause__, train.Diverged):
          raise
        trial.set_user_attr('diverged', str(e))
        raise optuna.TrialPruned(f'diverged with seed {seed}') from e
      finally:
        runs.append(summarize_run(workdir_lib.read_metrics(metrics_path), seed,
                                  config.num_epochs, resumed))
        trial.set_user_attr('runs', runs)
    return float(np.mean([r[spec.metric] for r in runs]))


def _train_waiting_for_lock(config, workdir, data, report):
  """Trains one seed; where another process of the sweep trains the same
  configuration (two picked it at once), waits for it, then reads its result."""
  while True:
    try:
      return train.train_and_evaluate(config, workdir, data=data, on_evaluation=report)
    except workdir_lib.Busy:
      time.sleep(2)


DATABASE_PATIENCE_S = 300  # How long a sweep waits for its database to come back.
DRIVERS = {'postgresql': "psycopg[binary]' (psycopg 3, SQLAlchemy's PostgreSQL driver)",
           'mysql': "PyMySQL' and use mysql+pymysql://"}


def shown_url(url: str) -> str:
  """The URL without its password: what messages print."""
  try:
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
  except Exception:  # pylint: disable=broad-except
    return re.sub(r'//([^:/@]*):[^@]*@', r'//\1:***@', url)


def _connection_lost(e: BaseException) -> BaseException | None:
  """The error in `e`'s chain that says the database is unreachable (not a bad
  query), or None."""
  while e is not None:
    if isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
      return e.orig or e
    e = e.__cause__ or e.__context__
  return None


class _PatientStorage(RDBStorage):
  """Optuna's RDBStorage whose every call waits out a database outage (a restart,
  a network cut) for up to DATABASE_PATIENCE_S, then fails with one message; after
  that every call fails at once with it, so nothing waits twice."""

  gave_up: UserError | None = None

  def _patiently(self, method, *args, **kwargs):
    deadline, said = time.monotonic() + DATABASE_PATIENCE_S, False
    while True:
      if self.gave_up:
        raise self.gave_up
      try:
        return method(self, *args, **kwargs)
      except Exception as e:  # pylint: disable=broad-except
        lost = _connection_lost(e)
        if lost is None:
          raise
        if time.monotonic() > deadline:
          self.gave_up = UserError(
              f'The sweep\'s database {shown_url(self.url)} did not answer for '
              f'{DATABASE_PATIENCE_S} s ({first_line(lost)}). What it holds is kept: run the '
              'same command again once it is back, and the sweep resumes.')
          raise self.gave_up from e
        if not said:
          logging.warning('The sweep\'s database %s does not answer (%s); trying again for '
                          'up to %d s.', shown_url(self.url), first_line(lost),
                          DATABASE_PATIENCE_S)
          said = True
        time.sleep(2)


def _patient(method):
  return lambda self, *args, **kwargs: self._patiently(method, *args, **kwargs)  # pylint: disable=protected-access


for _name in [n for n in dir(RDBStorage) if not n.startswith('_') and callable(getattr(RDBStorage, n))]:
  setattr(_PatientStorage, _name, _patient(getattr(RDBStorage, _name)))


def make_pruner(prune: dict | None) -> optuna.pruners.BasePruner:
  """The spec's `prune`: the worst `percentile`% stopped (Optuna's PercentilePruner
  takes the share it keeps); _Objective asks it from epoch `from_epoch` on."""
  if prune is None:
    return optuna.pruners.NopPruner()
  return optuna.pruners.PercentilePruner(100 - prune['percentile'],
                                         n_startup_trials=prune['startup_trials'])


def open_study(spec: Spec, workdir: str, storage_url: str | None, base):
  """(study, storage): the study in `storage_url` (default: SQLite in workdir),
  created or resumed, and its _PatientStorage.

  A study started with another spec or base config is refused: its trials would
  not be comparable with this one's.
  """
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  # Heartbeats, their retry callback and fail_stale_trials have been "experimental" since 2021.
  warnings.filterwarnings('ignore', category=optuna.exceptions.ExperimentalWarning)
  url = storage_url or f'sqlite:///{os.path.abspath(os.path.join(workdir, "study.db"))}'
  # pool_pre_ping: connections kept from before a server restart are replaced, not used.
  engine = ({'connect_args': {'timeout': 60}} if url.startswith('sqlite') else
            {'pool_pre_ping': True})
  for attempt in range(5):  # Processes started together race to create the tables.
    try:
      storage = _PatientStorage(url, engine_kwargs=engine, heartbeat_interval=spec.heartbeat_s,
                                grace_period=3 * spec.heartbeat_s,
                                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback())
      break
    except ImportError as e:
      driver = DRIVERS.get(url.split('+')[0].split(':')[0])
      raise UserError(f'No database driver for {shown_url(url)}' + (
          f": pip install '{driver}." if driver else f' ({e.__cause__ or e}).')) from e
    except Exception as e:  # SQLAlchemy raises many kinds for a bad URL or server.
      # No server there, or it refused us (a wrong password): after one more try, as
      # a server may drop a first connection. Else the race of processes started
      # together to create the tables: again.
      lost = _connection_lost(e)
      if (lost is not None and attempt > 0) or attempt == 4:
        raise UserError(f'Cannot open the sweep\'s database {shown_url(url)}: '
                        f'{first_line(lost or e)}') from e
      time.sleep(1 + attempt)
  if spec.grid:
    sampler = optuna.samplers.GridSampler(
        {k: [_encode(v) for v in values] for k, values in spec.grid.items()}, seed=0)
  else:
    sampler = optuna.samplers.TPESampler(seed=0)
  study = optuna.create_study(storage=storage, study_name=os.path.basename(
      os.path.abspath(workdir)), sampler=sampler, pruner=make_pruner(spec.prune),
                              direction=METRICS[spec.metric], load_if_exists=True)
  identity = {'spec': spec.to_json(), 'base_config': base.to_json(sort_keys=True)}
  for key, value in identity.items():
    saved = study.user_attrs.get(key)
    if saved is None:
      study.set_user_attr(key, value)
    elif saved != value:
      raise UserError(f'The sweep in {workdir} ({shown_url(url)}) was started with another '
                      f'{key.replace("_", " ")}; its trials would not compare with these. '
                      'Use a new --workdir, or the spec and --config it was started with.')
  return study, storage


def run_sweep(base, workdir: str, spec_path: str, storage_url: str | None = None,
              data=None) -> list[dict]:
  """Runs (or resumes, or helps with) a sweep until its budget is finished;
  writes and returns its table."""
  spec = load_spec(spec_path, base)
  workdir_lib.prepare(workdir)
  study, storage = open_study(spec, workdir, storage_url, base)
  if data is None:
    data = input_pipeline.load(base.dataset, base.data_dir, base.manual_dir)
  objective = _Objective(base, spec, workdir, data)

  def keys(*states):
    return {_key(t.params) for t in study.get_trials(deepcopy=False, states=states)}

  # A trial that failed with an error (fixed since, one hopes) is tried again.
  for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
    if _key(trial.params) not in keys(TrialState.COMPLETE, TrialState.PRUNED,
                                      TrialState.RUNNING, TrialState.WAITING):
      study.enqueue_trial(trial.params)
  waiting_since = None
  while True:
    optuna.storages.fail_stale_trials(study)  # Interrupted ones are queued again.
    done = keys(TrialState.COMPLETE, TrialState.PRUNED)
    if len(done) >= spec.trials:
      break
    started = done | keys(TrialState.RUNNING, TrialState.WAITING)
    if len(started) < spec.trials or keys(TrialState.WAITING):
      waiting_since = None
      logging.info('Sweep: %d of %d configurations done.', len(done), spec.trials)
      try:
        study.optimize(objective, n_trials=1)
      except Exception as e:
        # Optuna's own error, after ours, where it could not record the trial's end.
        if storage.gave_up:
          raise storage.gave_up from e
        raise
    else:  # The rest are running elsewhere, or were interrupted (then retried).
      if waiting_since is None:
        waiting_since = time.monotonic()
        logging.info('Sweep: waiting for %d running trial(s): another process\'s, or '
                     'interrupted ones, run again here once silent for %d s.',
                     len(started - done), 3 * spec.heartbeat_s)
      time.sleep(spec.heartbeat_s)
  return write_report(study, spec, workdir)


def mean_std(values) -> dict | None:
  """{'mean', 'std' (sample; 0 for one value), 'n'} of the values that are not None;
  None where there are none."""
  values = [v for v in values if v is not None]
  if not values:
    return None
  return {'mean': float(np.mean(values)),
          'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 'n': len(values)}


def table(study, spec: Spec) -> list[dict]:
  """One row per configuration (its finished trial; a completed one over a pruned
  duplicate), sorted by the validation metric, pruned ones last."""
  chosen = {}
  for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
    key = _key(trial.params)
    if key not in chosen or (chosen[key].state != TrialState.COMPLETE and
                             trial.state == TrialState.COMPLETE):
      chosen[key] = trial
  rows = []
  for trial in chosen.values():
    runs = trial.user_attrs.get('runs', [])
    complete = [r for r in runs if r['complete']]
    note = trial.user_attrs.get('diverged') or trial.user_attrs.get('pruned', '')
    rows.append({
        'params': trial.params, 'state': trial.state.name, 'trial': trial.number,
        'seeds_done': [r['seed'] for r in complete],
        **{k: mean_std([r[k] for r in complete]) for k in (
            'val_accuracy', 'val_loss', 'test_accuracy', 'test_loss', 'wall_s',
            'val_time_to_99_s', 'test_time_to_99_s')},
        'resumed': any(r['resumed'] for r in runs), 'runs': runs, 'note': note})
  sign = -1 if METRICS[spec.metric] == 'maximize' else 1
  rows.sort(key=lambda r: (r['state'] != 'COMPLETE', r[spec.metric] is None,
                           sign * r[spec.metric]['mean'] if r[spec.metric] else 0))
  for rank, row in enumerate(rows, 1):
    row['rank'] = rank
  return rows


def _cell(stat, scale=1.0, digits=2, of=None):
  """'mean ± std'; with `of`, how many of that many runs the figure covers where not all."""
  if stat is None:
    return '-'
  text = f'{scale * stat["mean"]:.{digits}f}'
  text += f' ± {scale * stat["std"]:.{digits}f}' if stat['n'] > 1 else ''
  return text + (f' ({stat["n"]} of {of})' if of and stat['n'] < of else '')


def write_report(study, spec: Spec, workdir: str) -> list[dict]:
  """sweep.json, sweep.md and sweep.png in `workdir`; returns the rows."""
  rows = table(study, spec)
  machine = hardware.describe()
  workdir_lib.write_atomically(os.path.join(workdir, 'sweep.json'), json.dumps(
      {'metric': spec.metric, 'spec': json.loads(spec.to_json()), 'machine': machine,
       'rows': rows}, indent=2))
  names = list(spec.grid or spec.space)
  lines = [
      f'# Sweep: {len(rows)} configurations x seeds {", ".join(map(str, spec.seeds))}',
      '',
      f'Sorted by final {spec.metric} (mean over seeds; ± is the sample standard deviation). '
      'The test columns are shown beside it and were not used to choose. Times are seconds '
      'from the start of each run\'s training call (data already loaded), to its first '
      'evaluation at >= 99% (mean over the seeds that got there: "(k of n)") and to its '
      f'end, on {machine}.',
      '',
      '| rank | ' + ' | '.join(names) + ' | seeds | val acc % | test acc % | val 99% at s | '
      'test 99% at s | wall s | state |',
      '|' + ' --- |' * (len(names) + 8)]
  for row in rows:
    state = row['state'].lower() + (f' ({row["note"]})' if row['note'] else '') + (
        ', resumed' if row['resumed'] else '')
    lines.append(
        f'| {row["rank"]} | ' + ' | '.join(str(row['params'].get(n)) for n in names)
        + f' | {len(row["seeds_done"])} | {_cell(row["val_accuracy"], 100)}'
        f' | {_cell(row["test_accuracy"], 100)}'
        f' | {_cell(row["val_time_to_99_s"], digits=1, of=len(row["seeds_done"]))}'
        f' | {_cell(row["test_time_to_99_s"], digits=1, of=len(row["seeds_done"]))}'
        f' | {_cell(row["wall_s"], digits=1)} | {state} |')
  workdir_lib.write_atomically(os.path.join(workdir, 'sweep.md'), '\n'.join(lines) + '\n')
  plots.sweep(rows, spec.metric, os.path.join(workdir, 'sweep.png'))
  if rows:
    best = rows[0]
    logging.info('Sweep done: best %s %s with %s. Wrote %s (sweep.md, sweep.json, sweep.png).',
                 spec.metric, _cell(best[spec.metric], 100 if 'accuracy' in spec.metric else 1,
                                    4 if 'loss' in spec.metric else 2),
                 _describe(best['params']), workdir)
  return rows
