"""benchmarks/ensembles.py's choice of an ensemble on validation."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks'))
import ensembles  # pylint: disable=g-import-not-at-top,wrong-import-position


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
  chosen = ensembles.choose(val, labels)
  assert chosen[0] == 'a' and set(chosen) == {'a', 'b', 'c'}
  average = np.mean([val[n] for n in chosen], axis=0)
  assert np.sum(average.argmax(axis=1) != labels) == 0  # Each one's mistakes outvoted.


def test_choose_stops_when_nothing_helps():
  labels = np.arange(50) % 10
  val = {'a': one_hot_mistakes(labels, []), 'b': one_hot_mistakes(labels, [1, 2, 3])}
  assert ensembles.choose(val, labels) == ['a']
