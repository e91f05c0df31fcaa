"""How well `--mode=predict` copes with digits that are not MNIST crops; prints JSON.

  python benchmarks/predict_robustness.py --workdir=runs/default \
      --manual_dir=../shared/datasets/mnist [--n=500] [--save_examples=DIR]

Builds test images in memory (nothing is written unless --save_examples):
- pasted: MNIST test digits (not seen in training) enlarged 2-25x and pasted into
  large canvases with either polarity, coloured ink, a shadow gradient, paper
  noise, stray specks and JPEG compression;
- fonts: digits rendered with the DejaVu fonts matplotlib ships, at odd sizes,
  positions, slants, colours and polarities on noisy canvases.
Reports top-1 accuracy on each set, next to the model on the untouched crops.
"""

import glob
import io
import json
import os
import sys

from absl import app, flags
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mnist_jax import input_pipeline, predict  # pylint: disable=wrong-import-position

flags.DEFINE_string('workdir', None, 'A trained run.', required=True)
flags.DEFINE_string('manual_dir', None, 'Folder with the four official MNIST .gz files.')
flags.DEFINE_string('data_dir', None, 'tfds data folder.')
flags.DEFINE_integer('n', 500, 'Images per set.')
flags.DEFINE_integer('seed', 0, 'Seed of the image generator.')
flags.DEFINE_string('save_examples', None, 'Folder for the first 20 images of each set.')
FLAGS = flags.FLAGS


def _canvas(rng, size):
  """A paper-like background: a tone, a shadow gradient and noise, in [0, 1]."""
  h, w = size
  tone = rng.uniform(0.6, 0.95)
  gy, gx = np.mgrid[0:h, 0:w]
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * gx / w + np.sin(angle) * gy / h)
  shadow = rng.uniform(0, 0.35) * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
  return np.clip(tone - shadow + rng.normal(0, rng.uniform(0.005, 0.04), (h, w)), 0, 1)


def _finish(rng, ink_alpha, size):
  """Composes ink (alpha in [0, 1]) onto paper; random polarity, colour, JPEG."""
  paper = _canvas(rng, size)
  ink_level = rng.uniform(0.0, 0.25)
  if rng.random() < 0.3:  # Light ink on a dark board.
    paper, ink_level = 1 - paper, rng.uniform(0.75, 1.0)
  grey = paper * (1 - ink_alpha) + ink_level * ink_alpha
  # Stray specks away from the digit.
  for _ in range(rng.integers(0, 4)):
    y, x = rng.integers(0, size[0]), rng.integers(0, size[1])
    grey[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = ink_level
  tint = rng.uniform(0.6, 1.0, 3) if rng.random() < 0.5 else np.ones(3)
  rgb = np.clip(grey[..., None] * tint, 0, 1)
  image = Image.fromarray((rgb * 255).astype(np.uint8))
  if rng.random() < 0.5:
    buffer = io.BytesIO()
    image.save(buffer, 'JPEG', quality=int(rng.integers(40, 90)))
    image = Image.open(io.BytesIO(buffer.getvalue()))
  return image


def pasted(rng, digit: np.ndarray):
  """An MNIST digit enlarged into a big, noisy photo-like canvas."""
  scale = rng.uniform(2, 25)
  side = int(28 * scale)
  big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC),
                   np.float64) / 255
  h, w = side + int(rng.integers(side // 4, 2 * side)), side + int(rng.integers(side // 4, 2 * side))
  alpha = np.zeros((h, w))
  y, x = rng.integers(0, h - side), rng.integers(0, w - side)
  alpha[y:y + side, x:x + side] = np.clip(big, 0, 1)
  return _finish(rng, alpha, (h, w))


def font_digit(rng, label: int, fonts):
  """A digit in a TrueType font, odd size and position, slanted."""
  size = int(rng.integers(20, 300))
  font = ImageFont.truetype(fonts[rng.integers(len(fonts))], size)
  w, h = int(size * rng.uniform(1.2, 3)), int(size * rng.uniform(1.4, 3))
  layer = Image.new('L', (w, h), 0)
  draw = ImageDraw.Draw(layer)
  left, top, right, bottom = draw.textbbox((0, 0), str(label), font=font)
  x = rng.integers(0, max(1, w - (right - left))) - left
  y = rng.integers(0, max(1, h - (bottom - top))) - top
  draw.text((x, y), str(label), fill=255, font=font)
  layer = layer.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC)
  return _finish(rng, np.asarray(layer, np.float64) / 255, (h, w))


def main(_):
  test = input_pipeline.load('mnist', FLAGS.data_dir, FLAGS.manual_dir, splits=('test',))['test']
  predictor = predict.Predictor.from_workdir(FLAGS.workdir)
  rng = np.random.default_rng(FLAGS.seed)
  pick = rng.choice(len(test), FLAGS.n, replace=False)
  fonts = sorted(glob.glob(os.path.join(os.path.dirname(__import__('matplotlib').__file__),
                                        'mpl-data', 'fonts', 'ttf', 'DejaVu*.ttf')))
  fonts = [f for f in fonts if 'Display' not in f]
  sets = {
      'mnist_crops': ([test.images[i, ..., 0] for i in pick], test.labels[pick]),
      'pasted': ([pasted(rng, test.images[i, ..., 0]) for i in pick], test.labels[pick]),
  }
  font_labels = rng.integers(0, 10, FLAGS.n)
  sets['fonts'] = ([font_digit(rng, int(l), fonts) for l in font_labels], font_labels)
  results = {}
  for name, (images, labels) in sets.items():
    probabilities, failed = [], 0
    for image in images:
      try:
        probabilities.append(predictor([image])[0])
      except predict.ImageProblem:
        failed += 1
        probabilities.append(np.zeros(10))
    correct = np.argmax(probabilities, axis=1) == labels
    results[name] = {'accuracy': round(float(correct.mean()), 4), 'images': len(images),
                     'unreadable': failed}
    if FLAGS.save_examples:
      os.makedirs(FLAGS.save_examples, exist_ok=True)
      for i, image in enumerate(images[:20]):
        image = image if isinstance(image, Image.Image) else Image.fromarray(image)
        image.convert('RGB').save(os.path.join(FLAGS.save_examples, f'{name}_{i:02d}_{labels[i]}.png'))
        Image.fromarray(predict.preprocess(image)).resize((112, 112), Image.Resampling.NEAREST).save(
            os.path.join(FLAGS.save_examples, f'{name}_{i:02d}_{labels[i]}_seen.png'))
    print(f'{name}: {results[name]}', file=sys.stderr)
  print(json.dumps({'workdir': FLAGS.workdir, 'seed': FLAGS.seed, 'sets': results}, indent=2))


if __name__ == '__main__':
  app.run(main)
