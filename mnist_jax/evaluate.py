"""`--mode=eval`: a trained model (or an ensemble of them) on the whole test set.

Where the model was trained with a validation split (config.validation_size),
its loss and accuracy on those held-out training images are reported too.
Writes `eval/report.json` (accuracy, loss, per-class precision/recall/F1,
confusion matrix, expected calibration error) and pictures: the confusion
matrix, the most confident mistakes, a reliability diagram and the training
curves from `metrics.jsonl`.
"""

import json
import os
from typing import Sequence

from absl import logging
import jax
import numpy as np

from mnist_jax import config_lib, inference, input_pipeline, plots, workdir as workdir_lib
from mnist_jax.errors import UserError

CALIBRATION_BINS = 15
# Test-time augmentation: every shift of up to one pixel, the unshifted view
# included. Measured on the default model (2-core CPU run, 99.47% plain): 9
# views 99.55%, the 5 of a cross (no diagonals) 99.51%.
TTA_SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """[true, predicted] counts."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def per_class_scores(matrix: np.ndarray, class_names: Sequence[str]) -> dict:
  """Precision, recall, F1 and support per class from a confusion matrix."""
  true_pos = np.diag(matrix).astype(np.float64)
  predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
  precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
  recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
  total = precision + recall
  f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(true_pos), where=total > 0)
  return {name: {'precision': float(p), 'recall': float(r), 'f1': float(f), 'support': int(s)}
          for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)}


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS):
  """Expected calibration error over equal-width confidence bins, and the bins."""
  confidence = probabilities.max(axis=1)
  correct = probabilities.argmax(axis=1) == labels
  index = np.minimum((confidence * bins).astype(int), bins - 1)
  counts = np.bincount(index, minlength=bins)
  sum_conf = np.bincount(index, weights=confidence, minlength=bins)
  sum_correct = np.bincount(index, weights=correct, minlength=bins)
  safe = np.maximum(counts, 1)
  bin_conf, bin_acc = sum_conf / safe, sum_correct / safe
  ece = float(np.sum(counts * np.abs(bin_acc - bin_conf)) / len(labels))
  return ece, {'confidence': bin_conf.tolist(), 'accuracy': bin_acc.tolist(),
               'count': counts.tolist()}


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """[N, H, W, C] images moved down by dy and right by dx pixels; zeros fill in."""
  h, w = images.shape[1:3]
  out = np.zeros_like(images)
  out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = (
      images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)])
  return out


def test_probabilities(workdir: str, config, test: input_pipeline.Split, step=None,
                       tta: bool = False):
  """Softmax outputs of a workdir's checkpoint on every image of `test` (a test
  or validation split), and its step.

  `tta`: the average over the TTA_SHIFTS views of each image.
  """
  graphdef, state, mesh = inference.restore(workdir, config, step)
  shifts = TTA_SHIFTS if tta else ((0, 0),)
  views = input_pipeline.Split(np.concatenate([shift(test.images, *s) for s in shifts]),
                               np.tile(test.labels, len(shifts)))
  evaluator = inference.Evaluator(graphdef, views, config.dataset, config.eval_batch_size, mesh)
  logits = evaluator.logits(state.eval_params, state.model_state)
  probabilities = jax.nn.softmax(logits).reshape(len(shifts), len(test), -1).mean(axis=0)
  return np.asarray(probabilities), int(state.step)


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int = 40):
  """The indices of the `count` wrong answers given with the highest probability,
  most confident first; and how many answers were wrong."""
  wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
  return wrong[np.argsort(-probabilities[wrong].max(axis=1), kind='stable')][:count], len(wrong)


def load_members(workdirs: Sequence[str], cli_config=None) -> list:
  """The saved configs of an ensemble's workdirs: different folders, one dataset."""
  seen = {}
  for w in workdirs:
    real = os.path.realpath(w)
    if real in seen:
      raise UserError(f'{w} is in the ensemble twice (as {seen[real]} too): it would count '
                      'double. Name each member once.')
    seen[real] = w
  configs = [config_lib.load_saved(w, cli_config) for w in workdirs]
  for w, c in zip(workdirs[1:], configs[1:]):
    if c.dataset != configs[0].dataset:
      raise UserError(f'{w} was trained on {c.dataset}, {workdirs[0]} on '
                      f'{configs[0].dataset}: an ensemble needs one dataset.')
  return configs


def accuracy_and_loss(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  """Accuracy of the most probable class, and the mean cross-entropy."""
  true_prob = probabilities[np.arange(len(labels)), labels]
  return (float(np.mean(probabilities.argmax(axis=1) == labels)),
          float(-np.mean(np.log(np.maximum(true_prob, 1e-12)))))


def validation_split(configs, data: dict[str, input_pipeline.Split]):
  """The validation images the models were trained without, or None where they
  were not, or not all the same ones."""
  sizes = {c.validation_size for c in configs}
  if len(sizes) > 1:
    logging.warning('The models held out different validation sizes (%s): no validation '
                    'figures.', ', '.join(map(str, sorted(sizes))))
  if len(sizes) > 1 or not configs[0].validation_size:
    return None
  return input_pipeline.hold_out(data, configs[0].validation_size)['validation']


def evaluate(workdirs: Sequence[str], cli_config=None, step: int | None = None,
             data: dict[str, input_pipeline.Split] | None = None, tta: bool = False) -> dict:
  """Evaluates one workdir, or the average prediction of several (an ensemble).

  `data` ({'test'[, 'train']} Splits) replaces the tfds dataset; the training
  split is only read where the models held validation images out of it.

  The report and pictures go to `<first workdir>/eval` (one model) or
  `<first workdir>/eval_ensemble` (several), with `_tta` appended when each
  prediction averages the shifted views of test-time augmentation.
  """
  configs = load_members(workdirs, cli_config)
  config = configs[0]
  if data is None:
    splits = ('train', 'test') if config.validation_size else ('test',)
    data = input_pipeline.load(config.dataset, config.data_dir, config.manual_dir, splits=splits)
  test = data['test']
  validation = validation_split(configs, data) if 'train' in data else None
  names = input_pipeline.CLASS_NAMES[config.dataset]
  scored = test  # The validation images, where there are any, go in the same call.
  if validation is not None:
    scored = input_pipeline.Split(np.concatenate([test.images, validation.images]),
                                  np.concatenate([test.labels, validation.labels]))
  outputs = [test_probabilities(w, c, scored, step, tta) for w, c in zip(workdirs, configs)]
  members = [{'workdir': os.path.abspath(w), 'step': s,
              'test_accuracy': float(np.mean(p[:len(test)].argmax(1) == test.labels))}
             for w, (p, s) in zip(workdirs, outputs)]
  probabilities = np.mean([p for p, _ in outputs], axis=0)
  probabilities, val_probabilities = probabilities[:len(test)], probabilities[len(test):]
  predictions = probabilities.argmax(axis=1)
  labels = test.labels
  matrix = confusion_matrix(labels, predictions, len(names))
  ece, bins = calibration(probabilities, labels)
  test_accuracy, test_loss = accuracy_and_loss(probabilities, labels)
  report = {
      'dataset': config.dataset, 'num_test_images': int(len(labels)),
      'test_accuracy': test_accuracy, 'test_loss': test_loss,
      'num_errors': int(np.sum(predictions != labels)),
      'expected_calibration_error': ece, 'calibration_bins': bins,
      'per_class': per_class_scores(matrix, names),
      'confusion_matrix': matrix.tolist(), 'class_names': list(names),
      'models': members,
      'test_time_augmentation': [list(s) for s in TTA_SHIFTS] if tta else None,
  }
  if validation is not None:
    val_accuracy, val_loss = accuracy_and_loss(val_probabilities, validation.labels)
    report.update(num_val_images=len(validation), val_accuracy=val_accuracy, val_loss=val_loss)
  out = os.path.join(workdirs[0], ('eval' if len(workdirs) == 1 else 'eval_ensemble')
                     + ('_tta' if tta else ''))
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'report.json'), 'w') as f:
    json.dump(report, f, indent=2)
  _pictures(report, probabilities, test, names, workdirs[0], out)
  _summary(report, out)
  return report


def _pictures(report, probabilities, test, names, workdir, out):
  plots.confusion_matrix(np.array(report['confusion_matrix']), names,
                         os.path.join(out, 'confusion_matrix.png'))
  predictions = probabilities.argmax(axis=1)
  worst, mistakes = confident_mistakes(probabilities, test.labels)
  plots.image_grid(
      test.images[worst],
      [f'true {names[test.labels[i]]}\npred {names[predictions[i]]} '
       f'{probabilities[i].max():.0%}' for i in worst],
      os.path.join(out, 'mistakes.png'),
      f'The {len(worst)} most confident of {mistakes} mistakes', columns=8)
  bins = report['calibration_bins']
  plots.reliability_diagram(bins['confidence'], bins['accuracy'], bins['count'],
                            report['expected_calibration_error'],
                            os.path.join(out, 'reliability.png'))
  metrics = workdir_lib.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  if metrics:
    plots.training_curves(metrics, os.path.join(out, 'training_curves.png'))


def _summary(report, out):
  worst = sorted(report['per_class'].items(), key=lambda kv: kv[1]['f1'])[:3]
  models = report['models']
  views = report['test_time_augmentation']
  if 'val_accuracy' in report:
    logging.info('Validation (the last %d training images, held out of training): accuracy '
                 '%.2f%%, loss %.4f', report['num_val_images'], 100 * report['val_accuracy'],
                 report['val_loss'])
  logging.info('%s%s: test accuracy %.2f%% (%d errors in %d images), loss %.4f, ECE %.4f',
               'Ensemble of %d' % len(models) if len(models) > 1 else f'Step {models[0]["step"]}',
               f' with test-time augmentation ({len(views)} views)' if views else '',
               100 * report['test_accuracy'], report['num_errors'],
               report['num_test_images'], report['test_loss'],
               report['expected_calibration_error'])
  if len(models) > 1:
    logging.info('Members: %s', ', '.join(f'{100 * m["test_accuracy"]:.2f}%' for m in models))
  logging.info('Hardest classes (F1): %s',
               ', '.join(f'{name} {100 * s["f1"]:.2f}%' for name, s in worst))
  logging.info('Wrote %s (report.json, confusion_matrix.png, mistakes.png, '
               'reliability.png, training_curves.png)', out)
