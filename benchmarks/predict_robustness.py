"""How well `--mode=predict` copes with digits that are not MNIST crops; prints JSON.

  python benchmarks/predict_robustness.py --workdir=runs/default \
      --manual_dir=../shared/datasets/mnist [--n=1000] [--pictures=DIR]

Sets (generated in memory; nothing is written unless --pictures/--save_examples):
- mnist_crops: MNIST test digits (not seen in training), untouched 28x28;
- tight16, tight12: the same digits cut to their bounding box, the longer side
  fitted to 16 or 12 pixels (touching the frame), as several digit collections
  store them; squeezed16, squeezed12: both sides fitted, the aspect ratio lost
  (a '1' becomes a thick bar);
- sklearn_8x8 (dark ink on white, as scanned) and sklearn_8x8_inverted: all
  1,797 real handwritten digits scikit-learn ships (8x8, 17 grey levels);
  sklearn_8x8_odd: the odd-numbered half, which no preprocessing constant was
  chosen on (predict.SHARPEN and FAINT_INK were chosen on the even half);
- pasted: MNIST test digits enlarged 2-25x into large canvases with either
  polarity, coloured ink, a shadow gradient, paper noise, stray specks and JPEG;
- fonts: digits in the DejaVu fonts matplotlib ships, at odd sizes, positions,
  slants, colours and polarities on noisy canvases;
- pasted_blotchy: as pasted, the paper's grain blurred into blotches (as a
  camera's denoising leaves it);
- blank_paper, blank_blotchy: the same canvases with no digit, where the right
  answer is a refusal;
- on_table, blank_on_table: as pasted and blank_paper, the paper photographed on
  a table that shows along one or more edges of the picture, the paper turned;
- tight100, tight200: as tight16, at sizes read as photos are (over PHOTO_SIDE),
  every other one dark ink on light;
- small_sheet, blank_small_sheet: as on_table, a small sheet (a note on a desk)
  with the table on every side, covering more of the picture than the sheet;
- ruled, squared, blank_lined: as pasted, on ruled paper (a margin line half the
  time) or squared paper, the lines light blue or grey and the sheet turned a
  little; blank_lined alternates the two, with no digit;
- pen, pen_squared: as pasted and squared, each digit redrawn with a fine pen
  (the middle of its strokes, 3 pixels wide where the digit is 200 tall);
- pen_shadow, blank_shadow: a fine pen's digit 300-600 pixels tall (strokes 3-6
  wide), faint or dark, on a 1000x1200 photo whose light falls off deeply towards
  a side or corner; blank_shadow the same paper with no digit.
Per set: accuracy (a refusal counts as wrong, on blank paper as right), refusals
and mistakes apart.
Then throughput of `Predictor.predict_files` end to end (files read, preprocessed,
classified, JSON lines written; model loading excluded): 2,000 small PNG files,
and 100 phone-size (3000x4000) JPEG photos.
"""

import glob
import json
import os
import sys
import tempfile
import time

from absl import app, flags
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pictures import define_model_and_data_flags, paper_photo, sklearn_digits  # pylint: disable=wrong-import-position
from mnist_jax import hardware, input_pipeline, plots, predict  # pylint: disable=wrong-import-position

define_model_and_data_flags()
flags.DEFINE_integer('n', 500, 'Images per set.')
flags.DEFINE_integer('seed', 0, 'Seed of the image generator.')
flags.DEFINE_string('save_examples', None, 'Folder for the first 20 images of each set.')
flags.DEFINE_string('pictures', None, 'Folder for a picture of each set\'s mistakes and refusals.')
flags.DEFINE_bool('throughput', True, 'Also time predict_files on small files and large photos.')
flags.DEFINE_list('sets', None, 'Score only these sets (all are still made, so each set\'s '
                  'pictures are the same as in a full run).')
FLAGS = flags.FLAGS


def pasted(rng, digit: np.ndarray, blotches=False, table=False, lines=None):
  """An MNIST digit enlarged into a big, noisy photo-like canvas (blank if `digit`
  is all zeros); with `table`, photographed on a table (pictures.on_table; 'small':
  a small sheet); with `lines`, on 'ruled' paper (lines 0.5-1.2 of the digit's
  height apart) or 'squared' paper (squares 0.15-0.4 of it)."""
  scale = rng.uniform(2, 25)
  side = int(28 * scale)
  big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC),
                   np.float64) / 255
  h, w = side + int(rng.integers(side // 4, 2 * side)), side + int(rng.integers(side // 4, 2 * side))
  alpha = np.zeros((h, w))
  y, x = rng.integers(0, h - side), rng.integers(0, w - side)
  alpha[y:y + side, x:x + side] = np.clip(big, 0, 1)
  if lines:
    lines = lines, side * 20 / 28 * rng.uniform(*(0.5, 1.2) if lines == 'ruled' else (0.15, 0.4))
  return paper_photo(rng, alpha, (h, w), blotches, table, lines)


def pen(digit: np.ndarray) -> np.ndarray:
  """An MNIST digit redrawn with a fine pen: enlarged to 280 pixels, cut to the
  middle of its strokes (the ridge of the distance to the paper), drawn 3 wide."""
  big = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC)) > 100
  distance = ndimage.distance_transform_edt(big)
  middle = big & (distance >= ndimage.maximum_filter(distance, size=3) - 0.5)
  stroke = ndimage.distance_transform_edt(~middle) <= 1.5
  return (ndimage.gaussian_filter(stroke.astype(float), 1) * 255).astype(np.uint8)


def in_a_shadow(rng, digit: np.ndarray) -> np.ndarray:
  """pen(digit) 300-600 pixels tall (strokes 3-6 wide), 60-150 grey levels under
  the paper, on a 1000x1200 photo (either way up) whose light falls off by 25-55%
  towards a side or corner (a lamp beside the page), with grain; blank paper if
  `digit` is all zeros."""
  h, w = (1000, 1200) if rng.random() < 0.5 else (1200, 1000)
  side = int(rng.integers(300, 600))
  grey = np.full((h, w), rng.uniform(200, 245))
  y, x, ink = rng.integers(0, h - side), rng.integers(0, w - side), rng.uniform(60, 150)
  if digit.any():  # pen() needs strokes to find the middle of.
    grey[y:y + side, x:x + side] -= ink * np.asarray(Image.fromarray(pen(digit)).resize(
        (side, side), Image.Resampling.BILINEAR), np.float64) / 255
  ys, xs = np.mgrid[0:h, 0:w]
  angle = rng.uniform(0, 2 * np.pi)
  ramp = np.cos(angle) * xs / w + np.sin(angle) * ys / h
  light = 1 - rng.uniform(0.25, 0.55) * (ramp - ramp.min()) / np.ptp(ramp)
  return np.clip(grey * light + rng.normal(0, 4, (h, w)), 0, 255).astype(np.uint8)


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
  return paper_photo(rng, np.asarray(layer, np.float64) / 255, (h, w))


def tight(digit: np.ndarray, side: int, squeeze: bool = False) -> np.ndarray:
  """A 28x28 MNIST digit cut to its ink's bounding box, its longer side fitted to
  `side` pixels in a side x side square (both sides, aspect lost, if `squeeze`)."""
  ys, xs = np.nonzero(digit)
  box = digit[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  if not squeeze:
    h, w = box.shape
    square = np.zeros((max(h, w),) * 2, np.uint8)
    square[(max(h, w) - h) // 2:][:h, (max(h, w) - w) // 2:][:, :w] = box
    box = square
  return np.asarray(Image.fromarray(box).resize((side, side), Image.Resampling.BILINEAR))


def score(predictor, images, labels):
  """(accuracy, refused indices, wrong indices, what the model saw, predictions).

  Each image is read as --mode=predict reads it (predict.preprocess_digits): one
  found as several digits is wrong (prediction 10 + how many were found)."""
  seen, refused, several = [], [], {}
  for i, image in enumerate(images):
    try:
      found = predict.preprocess_digits(image, predictor.classify)
      seen.append(found[0][0])
      if len(found) > 1:
        several[i] = len(found)
    except predict.ImageProblem:
      refused.append(i)
      seen.append(np.zeros((28, 28), np.uint8))
  predictions = np.argmax(predictor(seen, preprocessed=True), axis=1)
  predictions[refused] = -1
  for i, count in several.items():
    predictions[i] = 10 + count
  wrong = [i for i in np.flatnonzero(predictions != labels) if i not in set(refused)]
  return float(np.mean(predictions == labels)), refused, wrong, seen, predictions


def mistakes_picture(name, images, labels, seen, predictions, refused, wrong, folder):
  """Up to 24 failures: each image as given beside what the model saw."""
  # Refusing a blank picture is right.
  show = ([i for i in refused if labels[i] >= 0] + list(wrong))[:24]
  grid, titles = [], []
  for i in show:
    original = images[i] if isinstance(images[i], np.ndarray) else np.asarray(images[i].convert('L'))
    grid += [original, seen[i]]
    titles += [f'given: {labels[i]}' if labels[i] >= 0 else 'given: blank',
               'refused' if predictions[i] < 0 else f'{predictions[i] - 10} digits'
               if predictions[i] >= 10 else f'saw: {predictions[i]}']
  if show:
    plots.image_grid(grid, titles, os.path.join(folder, f'{name}_failures.png'),
                     f'{name}: {len(refused)} refused, {len(wrong)} wrong of {len(images)} '
                     '(each: the image as given, then what the model saw)', columns=8)


def throughput(predictor, rng, test):
  """Images/s of predict_files: small PNG files, and phone-size JPEG photos."""
  out = {}
  with tempfile.TemporaryDirectory() as folder:
    small = os.path.join(folder, 'small')
    os.makedirs(small)
    for i in range(2000):
      Image.fromarray(255 - tight(test.images[i % len(test), ..., 0], 16)).save(
          os.path.join(small, f'{i:04d}.png'))
    photos = os.path.join(folder, 'photos')
    os.makedirs(photos)
    for i in range(100):
      photo(rng, test.images[i, ..., 0]).save(os.path.join(photos, f'{i:03d}.jpg'), quality=90)
    predictor.classify(np.zeros((1, 28, 28), np.uint8))  # Compile outside the timing.
    for name, path, n in (('small_16x16_png', small, 2000), ('photo_3000x4000_jpeg', photos, 100)):
      files = predict.image_paths([path])
      start = time.perf_counter()
      with open(os.devnull, 'w') as null:
        failed = predictor.predict_files(files, out=null)
      seconds = time.perf_counter() - start
      out[name] = {'images': n, 'seconds': round(seconds, 2),
                   'images_per_s': round(n / seconds, 1), 'refused': failed}
      print(f'{name}: {out[name]}', file=sys.stderr)
  return out


def photo(rng, digit: np.ndarray) -> Image.Image:
  """A 3000x4000 phone-like photo: a digit written about 1,000 pixels high on paper."""
  h, w = 4000, 3000
  side = int(rng.integers(600, 1400))
  big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC),
                   np.float32) / 255
  y, x = rng.integers(0, h - side), rng.integers(0, w - side)
  tone = np.float32(rng.uniform(0.6, 0.95))
  gy = np.linspace(0, rng.uniform(0, 0.3), h, dtype=np.float32)[:, None]
  grey = tone - gy + rng.normal(0, 0.02, (h, w)).astype(np.float32)
  ink = grey[y:y + side, x:x + side]
  grey[y:y + side, x:x + side] = ink * (1 - big) + 0.1 * big
  return Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert('RGB')


def main(_):
  test = input_pipeline.load('mnist', FLAGS.data_dir, FLAGS.manual_dir, splits=('test',))['test']
  predictor = predict.Predictor.from_workdir(FLAGS.workdir)
  rng = np.random.default_rng(FLAGS.seed)
  pick = rng.choice(len(test), FLAGS.n, replace=False)
  fonts = sorted(glob.glob(os.path.join(os.path.dirname(__import__('matplotlib').__file__),
                                        'mpl-data', 'fonts', 'ttf', 'DejaVu*.ttf')))
  fonts = [f for f in fonts if 'Display' not in f]
  crops = [test.images[i, ..., 0] for i in pick]
  scikit, scikit_labels = sklearn_digits()
  truth = test.labels[pick]
  blank, refusal = np.zeros((28, 28), np.uint8), np.full(FLAGS.n, -1)  # Blank paper: refused.

  def font_set():
    font_labels = rng.integers(0, 10, FLAGS.n)
    return [font_digit(rng, int(l), fonts) for l in font_labels], font_labels

  # Each set is made when scored and let go after, in this order, as each draws from
  # rng: the large photos of every set at once do not fit in memory.
  sets = {
      'mnist_crops': lambda: (crops, truth),
      'tight16': lambda: ([tight(c, 16) for c in crops], truth),
      'tight12': lambda: ([tight(c, 12) for c in crops], truth),
      'squeezed16': lambda: ([tight(c, 16, squeeze=True) for c in crops], truth),
      'squeezed12': lambda: ([tight(c, 12, squeeze=True) for c in crops], truth),
      'sklearn_8x8': lambda: (list(scikit), scikit_labels),
      'sklearn_8x8_odd': lambda: (list(scikit[1::2]), scikit_labels[1::2]),
      'sklearn_8x8_inverted': lambda: (list(255 - scikit), scikit_labels),
      'pasted': lambda: ([pasted(rng, c) for c in crops], truth),
      'fonts': font_set,
      'pasted_blotchy': lambda: ([pasted(rng, c, blotches=True) for c in crops], truth),
      'blank_paper': lambda: ([pasted(rng, blank) for _ in crops], refusal),
      'blank_blotchy': lambda: ([pasted(rng, blank, blotches=True) for _ in crops], refusal),
      'on_table': lambda: ([pasted(rng, c, table=True) for c in crops], truth),
      'blank_on_table': lambda: ([pasted(rng, blank, table=True) for _ in crops], refusal),
      # Tight crops at a photo's size, either polarity.
      'tight100': lambda: ([tight(c, 100) if i % 2 else 255 - tight(c, 100)
                            for i, c in enumerate(crops)], truth),
      'tight200': lambda: ([tight(c, 200) if i % 2 else 255 - tight(c, 200)
                            for i, c in enumerate(crops)], truth),
      'small_sheet': lambda: ([pasted(rng, c, table='small') for c in crops], truth),
      'blank_small_sheet': lambda: ([pasted(rng, blank, table='small') for _ in crops], refusal),
      'ruled': lambda: ([pasted(rng, c, lines='ruled') for c in crops], truth),
      'squared': lambda: ([pasted(rng, c, lines='squared') for c in crops], truth),
      'blank_lined': lambda: ([pasted(rng, blank, lines=('ruled', 'squared')[i % 2])
                               for i in range(len(crops))], refusal),
      'pen': lambda: ([pasted(rng, pen(c)) for c in crops], truth),
      'pen_squared': lambda: ([pasted(rng, pen(c), lines='squared') for c in crops], truth),
      'pen_shadow': lambda: ([in_a_shadow(rng, c) for c in crops], truth),
      'blank_shadow': lambda: ([in_a_shadow(rng, blank) for _ in crops], refusal),
  }
  results = {}
  unknown = set(FLAGS.sets or ()) - set(sets)
  if unknown:
    raise app.UsageError(f'--sets: no set {", ".join(sorted(unknown))}; the sets: {", ".join(sets)}')
  for name, make in sets.items():
    images, labels = make()
    if FLAGS.sets and name not in FLAGS.sets:
      continue
    accuracy, refused, wrong, seen, predictions = score(predictor, images, labels)
    results[name] = {'images': len(images), 'accuracy': round(accuracy, 4),
                     'refused': len(refused), 'wrong': len(wrong)}
    if FLAGS.pictures:
      mistakes_picture(name, images, labels, seen, predictions, refused, wrong, FLAGS.pictures)
    if FLAGS.save_examples:
      os.makedirs(FLAGS.save_examples, exist_ok=True)
      for i, image in enumerate(images[:20]):
        image = image if isinstance(image, Image.Image) else Image.fromarray(image)
        image.convert('RGB').save(os.path.join(FLAGS.save_examples, f'{name}_{i:02d}_{labels[i]}.png'))
        Image.fromarray(seen[i]).resize((112, 112), Image.Resampling.NEAREST).save(
            os.path.join(FLAGS.save_examples, f'{name}_{i:02d}_{labels[i]}_seen.png'))
    print(f'{name}: {results[name]}', file=sys.stderr)
  report = {'workdir': FLAGS.workdir, 'seed': FLAGS.seed, 'cpu': hardware.describe(),
            'sets': results}
  if FLAGS.throughput:
    report['throughput'] = throughput(predictor, rng, test)
  print(json.dumps(report, indent=2))


if __name__ == '__main__':
  app.run(main)
