"""benchmarks/gpu_session.py's choice of a recipe on validation (in a subprocess: its
flags share names with benchmarks/ensembles.py's)."""

import json
import os
import subprocess
import sys

from conftest import ROOT

CHOOSE = '''
import json, sys
sys.path.insert(0, 'benchmarks')
import gpu_session
runs = json.loads(sys.stdin.read())
print(json.dumps(gpu_session.choose_recipe(runs, 2)))
'''


def choose(runs):
  done = subprocess.run([sys.executable, '-c', CHOOSE], input=json.dumps(runs), cwd=ROOT,
                        capture_output=True, text=True, timeout=120, check=True)
  return json.loads(done.stdout)


def last_epoch(val_accuracy, val_loss=0.1):
  return {'epochs': [{'val_accuracy': 0.5, 'val_loss': 1.0},
                     {'val_accuracy': val_accuracy, 'val_loss': val_loss}]}


def test_the_highest_mean_final_validation_accuracy_wins():
  runs = {'best_s100': last_epoch(0.9960), 'best_s101': last_epoch(0.9960),
          'elastic_s100': last_epoch(0.9990), 'elastic_s101': last_epoch(0.9940),  # Mean 0.9965.
          'wide_s100': last_epoch(0.9970), 'wide_s101': last_epoch(0.9962)}  # Mean 0.9966.
  chosen, means = choose(runs)
  assert chosen == 'wide'
  assert abs(means['elastic']['val_accuracy'] - 0.9965) < 1e-9


def test_ties_go_to_the_lower_loss_and_unfinished_recipes_are_left_out():
  runs = {'best_s100': last_epoch(0.9960, 0.12), 'best_s101': last_epoch(0.9960, 0.12),
          'wide_s100': last_epoch(0.9960, 0.10), 'wide_s101': last_epoch(0.9960, 0.10),
          'elastic_s100': last_epoch(0.9999)}  # One seed of two: not comparable.
  chosen, means = choose(runs)
  assert chosen == 'wide' and 'elastic' not in means
  assert choose({'best_s100': {'error': 'stopped at the deadline'}}) == [None, {}]
