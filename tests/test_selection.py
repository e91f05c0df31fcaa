"""Choices made on validation: an ensemble (benchmarks/ensembles.py --probabilities) and a
recipe (benchmarks/gpu_session.py --phases=select)."""

import numpy as np

from mnist_jax import selection


def one_hot_mistakes(labels, wrong, confidence=0.9):
  """Probabilities that put `confidence` on the label, except at `wrong` (on label + 1)."""
  p = np.full((len(labels), 10), (1 - confidence) / 9)
  p[np.arange(len(labels)), labels] = confidence
  p[wrong] = np.roll(p[wrong], 1, axis=1)  # [label + 1] now holds the confidence.
  return p


def test_choose_adds_the_runs_that_fix_each_others_mistakes():
  labels = np.arange(100) % 10
  val = {
      'b': one_hot_mistakes(labels, [3, 4, 5, 6, 7], confidence=0.8),
      'a': one_hot_mistakes(labels, [0, 1, 2]),  # The most accurate alone: 3 errors.
      'c': one_hot_mistakes(labels, [8, 9, 10, 11, 12], confidence=0.8),
  }
  chosen = selection.choose_ensemble(val, labels)
  assert chosen[0] == 'a' and set(chosen) == {'a', 'b', 'c'}
  average = np.mean([val[n] for n in chosen], axis=0)
  assert np.sum(average.argmax(axis=1) != labels) == 0  # Each one's mistakes outvoted.


def test_choose_stops_when_nothing_helps():
  labels = np.arange(50) % 10
  val = {'a': one_hot_mistakes(labels, []), 'b': one_hot_mistakes(labels, [1, 2, 3])}
  assert selection.choose_ensemble(val, labels) == ['a']


def last(val_accuracy, val_loss=0.1):
  return {'val_accuracy': val_accuracy, 'val_loss': val_loss}


def test_the_recipe_with_the_highest_mean_final_validation_accuracy_wins():
  chosen, means = selection.choose_recipe({
      'best': [last(0.9960), last(0.9960)],
      'elastic': [last(0.9990), last(0.9940)],  # Mean 0.9965.
      'wide': [last(0.9970), last(0.9962)]})  # Mean 0.9966.
  assert chosen == 'wide'
  assert abs(means['elastic']['val_accuracy'] - 0.9965) < 1e-9


def test_ties_go_to_the_lower_loss_and_unfinished_recipes_are_left_out():
  chosen, means = selection.choose_recipe({
      'best': [last(0.9960, 0.12), last(0.9960, 0.12)],
      'wide': [last(0.9960, 0.10), last(0.9960, 0.10)],
      'elastic': [last(0.9999), {}]})  # One run of two did not finish: not comparable.
  assert chosen == 'wide' and 'elastic' not in means
  assert selection.choose_recipe({'best': [{}]}) == (None, {})
