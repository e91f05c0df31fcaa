"""How well whole numbers are read (several digits side by side); prints JSON.

  python benchmarks/read_numbers.py --workdir=runs/default \
      --manual_dir=../shared/datasets/mnist [--n=200] [--out=FILE.json]

Each number is 2 to 6 real handwritten digits pasted side by side, read as
`--mode=predict`, the page and the API read a picture (predict.preprocess_digits,
then the model); it counts as right only if every digit is found and read right,
in order. Sets:
- mnist_gaps, mnist_touching, mnist_overlapping: MNIST test digits (the second
  half, 5,000-9,999: the segmentation's constants were looked at on the first half
  only), each cut to its ink's columns and pasted with gaps of 3-12 pixels, with
  none (strokes meet where both reach the edge), or overlapping by 1-4 pixels;
  enlarged 3x onto paper-like photos as predict_robustness.py makes them (paper
  tone, shadow, noise, specks, either polarity, colour, JPEG);
- sklearn_scan: scikit-learn's real 8x8 digits side by side, 0-2 pixels apart, as
  a tight 8-pixel-high scan (dark ink on white).
Per set and length: exact-number accuracy, how often the digit count was right,
refusals.
"""

import json
import os
import sys
import time

from absl import app, flags
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pictures import define_model_and_data_flags, paper_photo, sklearn_digits  # pylint: disable=wrong-import-position
from mnist_jax import hardware, input_pipeline, logs, predict  # pylint: disable=wrong-import-position

define_model_and_data_flags()
flags.DEFINE_integer('n', 200, 'Numbers per set and length.')
flags.DEFINE_integer('seed', 0, 'Seed of the number generator.')
flags.DEFINE_bool('dev', False, 'Draw MNIST digits from the first half of the test set (the '
                  'one the constants were looked at on), not the second.')
flags.DEFINE_string('out', None, 'Also write the JSON here.')
FLAGS = flags.FLAGS

LENGTHS = range(2, 7)
GAPS = {'mnist_gaps': (3, 12), 'mnist_touching': (0, 0), 'mnist_overlapping': (-4, -1)}


def side_by_side(digits, rng, gaps: tuple[int, int], margin: int) -> np.ndarray:
  """Digits (uint8, ink high) side by side with random gaps in `gaps` (negative:
  overlapping), `margin` pixels all round. A gap is drawn after the last digit too
  (unused), so that a seed gives the numbers it gave before."""
  drawn = [int(rng.integers(gaps[0], gaps[1] + 1)) for _ in digits]
  return input_pipeline.side_by_side(digits, drawn[:-1], (margin, margin))


def mnist_number(images, rng, gaps) -> Image.Image:
  ink = side_by_side(images, rng, gaps, margin=8)
  h, w = ink.shape
  big = np.asarray(Image.fromarray(ink).resize((3 * w, 3 * h), Image.Resampling.BICUBIC),
                   np.float64) / 255
  return paper_photo(rng, np.clip(big, 0, 1), big.shape)


def make_sets(rng, test, sklearn, n, dev):
  """{set: {length: [(picture, label string)]}}."""
  half = len(test) // 2
  pool = np.arange(half) if dev else np.arange(half, len(test))
  sets = {}
  for name, gaps in GAPS.items():
    sets[name] = {}
    for length in LENGTHS:
      numbers = []
      for _ in range(n):
        chosen = rng.choice(pool, length)
        numbers.append((mnist_number([test.images[i, ..., 0] for i in chosen], rng, gaps),
                        ''.join(str(test.labels[i]) for i in chosen)))
      sets[name][length] = numbers
  images, labels = sklearn
  sets['sklearn_scan'] = {}
  for length in LENGTHS:
    numbers = []
    for _ in range(n):
      chosen = rng.choice(len(labels), length)
      ink = side_by_side([255 - images[i] for i in chosen], rng, (0, 2), margin=1)
      numbers.append((255 - ink, ''.join(str(labels[i]) for i in chosen)))
    sets['sklearn_scan'][length] = numbers
  return sets


def score(predictor, numbers):
  """{'accuracy', 'count_right', 'refused', 'n'} of one set at one length."""
  found, refused = [], 0
  for picture, _ in numbers:
    try:
      found.append(predict.preprocess_digits(picture, predictor.classify))
    except predict.ImageProblem:
      refused += 1
      found.append([])
  probabilities = predictor.classify([d for digits in found for d, _ in digits])
  right = count_right = used = 0
  for digits, (_, label) in zip(found, numbers):
    read = ''.join(str(int(np.argmax(p))) for p in probabilities[used:used + len(digits)])
    used += len(digits)
    right += read == label
    count_right += len(digits) == len(label)
  return {'accuracy': round(right / len(numbers), 4),
          'count_right': round(count_right / len(numbers), 4), 'refused': refused,
          'n': len(numbers)}


def main(argv):
  del argv
  logs.quiet_libraries()
  start = time.time()
  rng = np.random.default_rng(FLAGS.seed)
  test = input_pipeline.load('mnist', FLAGS.data_dir, FLAGS.manual_dir, splits=('test',))['test']
  predictor = predict.Predictor.from_workdir(FLAGS.workdir)
  sets = make_sets(rng, test, sklearn_digits(), FLAGS.n, FLAGS.dev)
  results = {}
  for name, by_length in sets.items():
    results[name] = {length: score(predictor, numbers) for length, numbers in by_length.items()}
    print(name, {k: v['accuracy'] for k, v in results[name].items()}, file=sys.stderr)
  report = {'command': ' '.join(sys.argv), 'workdir': FLAGS.workdir, 'seed': FLAGS.seed,
            'digits_from': 'MNIST test 0-4999 (dev)' if FLAGS.dev else 'MNIST test 5000-9999',
            'cpu': hardware.describe(), 'seconds': round(time.time() - start, 1),
            'sets': results}
  text = json.dumps(report, indent=2)
  print(text)
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
