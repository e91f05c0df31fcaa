"""Choosing on the validation split, never on test: an ensemble's members, a recipe."""

import numpy as np

from mnist_jax.evaluate import accuracy_and_loss


def choose_ensemble(val: dict[str, np.ndarray], labels: np.ndarray) -> list[str]:
  """Greedy forward selection over runs' validation probabilities: start from the
  most accurate run, then add (repeats allowed, as weights) the run whose addition
  leaves the fewest validation errors, ties going to the lower cross-entropy, while
  that improves either; at most 2x as many members as runs."""
  def score(names):  # Lower is better: fewer errors, then lower cross-entropy.
    accuracy, loss = accuracy_and_loss(np.mean([val[n] for n in names], axis=0), labels)
    return -accuracy, loss

  chosen = [min(val, key=lambda n: score([n]))]
  best = score(chosen)
  while len(chosen) < 2 * len(val):
    scores = {n: score(chosen + [n]) for n in val}
    candidate = min(scores, key=scores.get)
    if scores[candidate] >= best:
      break
    chosen.append(candidate)
    best = scores[candidate]
  return chosen


def choose_recipe(last_epochs: dict[str, list[dict]]) -> tuple[str | None, dict]:
  """{recipe: its runs' last metrics lines} -> the recipe whose mean final validation
  accuracy is highest (ties: lower mean validation loss), among those whose runs all
  finished; and each such recipe's means."""
  means = {}
  for recipe, last in last_epochs.items():
    if last and all('val_accuracy' in e for e in last):
      means[recipe] = {'val_accuracy': sum(e['val_accuracy'] for e in last) / len(last),
                       'val_loss': sum(e['val_loss'] for e in last) / len(last)}
  if not means:
    return None, means
  return min(means, key=lambda r: (-means[r]['val_accuracy'], means[r]['val_loss'])), means
