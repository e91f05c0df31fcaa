"""Checks a config before any work starts, and reads the one a run saved."""

import json
import os

import ml_collections

from configs import default
from mnist_jax import input_pipeline, models, workdir as workdir_lib
from mnist_jax.errors import UserError

OPTIMIZERS = ('adam', 'adamw', 'sgd', 'nesterov', 'muon')
SCHEDULES = ('constant', 'cosine', 'onecycle', 'exponential')
DTYPES = ('float32', 'bfloat16')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first bad value, with what would be valid."""
  choices = {'dataset': tuple(input_pipeline.CLASS_NAMES), 'model': models.MODELS,
             'optimizer': OPTIMIZERS, 'schedule': SCHEDULES,
             'compute_dtype': DTYPES}
  for key, allowed in choices.items():
    if config[key] not in allowed:
      raise UserError(f'--config.{key}={config[key]!r} is not supported; '
                      f'choose one of {", ".join(allowed)}.')
  if config.steps_per_call < 0:
    raise UserError(f'--config.steps_per_call must be >= 0 (0: automatic), got {config.steps_per_call}.')
  if not isinstance(config.microbatches, int) or config.microbatches < 1:
    raise UserError(f'--config.microbatches must be a whole number >= 1, got '
                    f'{config.microbatches!r}.')
  positive = ('batch_size', 'eval_batch_size', 'num_epochs', 'learning_rate', 'muon_learning_rate',
              'checkpoint_every_epochs', 'keep_checkpoints', 'log_every_steps')
  for key in positive:
    if not config[key] > 0:
      raise UserError(f'--config.{key} must be positive, got {config[key]!r}.')
  for key in ('dropout_rate', 'label_smoothing'):
    if not 0 <= config[key] < 1:
      raise UserError(f'--config.{key} must be in [0, 1), got {config[key]!r}.')
  if not 0 <= config.ema_decay < 1:
    raise UserError(f'--config.ema_decay must be in [0, 1), got {config.ema_decay!r}.')
  if not (0 <= config.augment_rotation <= 180 and 0 <= config.augment_scale < 1):
    raise UserError('--config.augment_rotation must be in [0, 180] degrees and '
                    '--config.augment_scale in [0, 1).')
  if not (0 <= config.augment_elastic <= 100 and 0 < config.augment_elastic_sigma <= 28):
    raise UserError('--config.augment_elastic must be in [0, 100] and '
                    '--config.augment_elastic_sigma in (0, 28] pixels, got '
                    f'{config.augment_elastic} and {config.augment_elastic_sigma}.')
  if not (0 <= config.augment_squish < 1 and 0 <= config.augment_erase <= 1):
    raise UserError('--config.augment_squish must be in [0, 1) and --config.augment_erase '
                    f'(a probability) in [0, 1], got {config.augment_squish} and '
                    f'{config.augment_erase}.')
  if not 0 < config.decay_per_epoch <= 1:
    raise UserError(f'--config.decay_per_epoch must be in (0, 1], got {config.decay_per_epoch}.')
  if not 0 <= config.augment_shift <= 8:
    raise UserError(f'--config.augment_shift must be in [0, 8] pixels, got {config.augment_shift}.')
  if config.weight_decay < 0 or config.warmup_epochs < 0:
    raise UserError('--config.weight_decay and --config.warmup_epochs must not be negative.')
  if config.warmup_epochs >= config.num_epochs and config.schedule == 'cosine':
    raise UserError(f'--config.warmup_epochs={config.warmup_epochs} leaves no epochs '
                    f'for the cosine decay (num_epochs={config.num_epochs}).')
  if not 0 <= config.momentum < 1:
    raise UserError(f'--config.momentum must be in [0, 1), got {config.momentum!r}.')
  _check_sizes(config)


def _check_sizes(config: ml_collections.ConfigDict) -> None:
  """The data, batch, model and crop sizes fit together."""
  if not isinstance(config.validation_size, int) or config.validation_size < 0:
    raise UserError(f'--config.validation_size must be a whole number >= 0, got '
                    f'{config.validation_size!r}.')
  if config.batch_size > 60_000 - config.validation_size:
    raise UserError(f'--config.batch_size={config.batch_size} is larger than the '
                    f'training set (60,000 images less --config.validation_size='
                    f'{config.validation_size}): not one batch to train on.')
  if config.eval_batch_size > 10_000:
    raise UserError(f'--config.eval_batch_size={config.eval_batch_size} is larger than the '
                    'test set (10,000 images); the rest would be padding.')
  sizes = {'conv_features': config.conv_features, 'hidden_features': config.hidden_features,
           'dense_features': (config.dense_features,), 'convs_per_block': (config.convs_per_block,)}
  for key, values in sizes.items():
    if not all(isinstance(v, int) and v >= 1 for v in values) or not values:
      raise UserError(f'--config.{key}={config[key]!r}: sizes must be whole numbers >= 1.')
  if not isinstance(config.input_crop, int) or config.input_crop < 0:
    raise UserError(f'--config.input_crop must be a whole number of pixels >= 0, got '
                    f'{config.input_crop!r}.')
  if config.model == 'nopool':
    side = 28 - (config.kernel_size - 1) * len(config.conv_features)
    if config.kernel_size not in (3, 5, 7) or side < 1:
      raise UserError(f'--config.kernel_size={config.kernel_size} with conv_features='
                      f'{tuple(config.conv_features)}: nopool takes kernels of 3, 5 or 7, and '
                      'its unpadded convolutions must leave at least 1 pixel of the 28.')
  if config.input_crop and config.model != 'cnn':
    raise UserError(f'--config.input_crop={config.input_crop} is for --config.model=cnn, '
                    f'not {config.model!r}; set it to 0.')
  side = 28 - 2 * config.input_crop
  if config.model == 'cnn' and side < 2 ** len(config.conv_features):
    raise UserError(f'--config.conv_features={tuple(config.conv_features)} with '
                    f'--config.input_crop={config.input_crop}: each block halves the '
                    f'{max(side, 0)}x{max(side, 0)} image, which has too few pixels for '
                    f'{len(config.conv_features)} blocks.')
  if config.train_steps_per_epoch is not None and config.train_steps_per_epoch < 1:
    raise UserError(f'--config.train_steps_per_epoch={config.train_steps_per_epoch} must be '
                    '>= 1 (leave it unset for the whole training set).')


DATA_KEYS = ('data_dir', 'manual_dir')
# Where things are and how often to report or keep: a resumed run may change these,
# and the rest only on purpose (check_resume).
FREE_KEYS = DATA_KEYS + ('compilation_cache_dir', 'log_every_steps', 'checkpoint_every_epochs',
                         'keep_checkpoints', 'eval_batch_size', 'steps_per_call')
CHANGES_FILE = 'config_changes.jsonl'


def _saved(workdir: str) -> tuple[dict, dict] | None:
  """config.json as written, and with the changes a resumed run recorded applied,
  as JSON values; None where there is no config.json."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      first = json.load(f)
    if not isinstance(first, dict):
      raise ValueError('not a JSON object')
    saved = dict(first)
    for change in workdir_lib.read_metrics(os.path.join(workdir, CHANGES_FILE)):
      saved.update({k: v['to'] for k, v in change['changes'].items()})
  except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
    raise UserError(f'{path} is damaged or not a config this version can read ({e}). '
                    'Restore it, or write it again from the config the run was trained with.'
                    ) from e
  return first, saved


def check_resume(config: ml_collections.ConfigDict, workdir: str, step: int,
                 allow_changes: bool, primary: bool) -> None:
  """Before a run resumes from `step`: refuses a config that trains otherwise than
  the one saved (FREE_KEYS aside), naming each change. With `allow_changes` the
  changes are appended to CHANGES_FILE instead; config.json keeps what the first
  steps were trained with."""
  both = _saved(workdir)
  if both is None:
    if primary:
      save(config, workdir)
    return
  first, saved = both
  now = json.loads(config.to_json())
  changes = {k: {'from': saved[k], 'to': v} for k, v in now.items()
             if k in saved and k not in FREE_KEYS and saved[k] != v}
  if changes and not allow_changes:
    listed = '; '.join(f'{k}: {c["from"]!r} then, {c["to"]!r} now' for k, c in changes.items())
    raise UserError(
        f'{workdir} was trained to step {step} with another config ({listed}). Resuming '
        'would mix two trainings. Use a new --workdir, or the values in its config.json, or '
        'add --resume_with_changes to continue with these on purpose (recorded in '
        f'{CHANGES_FILE} there).')
  if not primary:
    return
  if changes:
    workdir_lib.append_line(os.path.join(workdir, CHANGES_FILE),
                            json.dumps({'step': step, 'changes': changes}))
  workdir_lib.write_atomically(os.path.join(workdir, 'config.json'), json.dumps(
      {**first, **{k: now[k] for k in FREE_KEYS if k in now}}, indent=2, sort_keys=True))


def load_saved(workdir: str, data_from=None) -> ml_collections.ConfigDict:
  """The config a training run saved in `workdir/config.json` (and changed on
  resuming, CHANGES_FILE).

  Where `data_from` (the command line's config) sets a data location
  (`DATA_KEYS`), it replaces the saved one: the model comes from the workdir,
  the data from wherever it is now.
  """
  path = os.path.join(workdir, 'config.json')
  both = _saved(workdir)
  if both is None:
    raise UserError(f'{path} does not exist: --workdir must name the folder of a '
                    'training run (python main.py --workdir=DIR trains one).')
  saved = both[1]
  # Keys added since that run was trained take their defaults (new features are off).
  config = default.get_config()
  try:
    for key, value in saved.items():
      config[key] = tuple(value) if isinstance(value, list) else value
  except (ValueError, TypeError, AttributeError, KeyError) as e:
    raise UserError(f'{path} is damaged or not a config this version can read ({e}). '
                    'Restore it, or write it again from the config the run was trained with.'
                    ) from e
  for key in DATA_KEYS:
    if data_from is not None and data_from.get(key) is not None:
      config[key] = data_from[key]
  try:
    validate(config)
  except UserError as e:
    raise UserError(f'{path}: {e}') from e
  return config


def save(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config as `workdir/config.json` (atomically)."""
  workdir_lib.write_atomically(os.path.join(workdir, 'config.json'),
                               json.dumps(config.to_dict(), indent=2, sort_keys=True))
