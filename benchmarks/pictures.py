"""Pictures made for the benchmarks: paper-like photos of ink, and scikit-learn's
digits; and the flags every picture benchmark takes."""

import io
import os

from absl import flags
import numpy as np
from PIL import Image
from scipy import ndimage


def define_model_and_data_flags() -> None:
  """--workdir (the trained run read with), --manual_dir and --data_dir (MNIST)."""
  flags.DEFINE_string('workdir', None, 'A trained run.', required=True)
  flags.DEFINE_string('manual_dir', os.environ.get('MNIST_JAX_MANUAL_DIR'),
                      'Folder with the four official MNIST .gz files (default: '
                      '$MNIST_JAX_MANUAL_DIR).')
  flags.DEFINE_string('data_dir', None, 'tfds data folder.')


def paper(rng, size, blotches=False):
  """A paper-like background: a tone, a shadow gradient and grain (with `blotches`,
  grain blurred as a camera's denoising leaves it), in [0, 1]."""
  h, w = size
  tone = rng.uniform(0.6, 0.95)
  gy, gx = np.mgrid[0:h, 0:w]
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * gx / w + np.sin(angle) * gy / h)
  shadow = rng.uniform(0, 0.35) * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
  if blotches:  # Grain blurred across 0.5-10% of the shorter side: blurred where it
    # is at most 2 pixels across, then enlarged (as fast at every size).
    sigma = rng.uniform(0.005, 0.1) * min(size)
    shrink = max(sigma / 2, 1)
    small = ndimage.gaussian_filter(rng.normal(size=(int(np.ceil(h / shrink)),
                                                     int(np.ceil(w / shrink)))), sigma / shrink)
    field = np.asarray(Image.fromarray(small.astype(np.float32), 'F').resize(
        (w, h), Image.Resampling.BICUBIC), np.float64)
    return np.clip(tone - shadow + field / field.std() * rng.uniform(0.005, 0.04), 0, 1)
  return np.clip(tone - shadow + rng.normal(0, rng.uniform(0.005, 0.04), (h, w)), 0, 1)


def on_table(rng, sheet, dark_table: bool, small=False):
  """The sheet photographed on a table that shows along 1-4 of the picture's edges
  (3-20% of the side each), the sheet turned up to 6 degrees, so that the table
  also shows as wedges; a dark table under light paper, a light one under a board.
  A `small` sheet (a note on a desk) has 15-60% of its side of table on all four
  sides, covering 20-60% of the picture, and is turned up to 15 degrees."""
  h, w = sheet.shape
  if small:
    margins = rng.uniform(0.15, 0.6, 4)
  else:
    margins = rng.uniform(0.03, 0.2, 4) * (rng.random(4) < 0.5)
    if not margins.any():
      margins[rng.integers(4)] = rng.uniform(0.03, 0.2)
  top, bottom, left, right = (margins * [h, h, w, w]).astype(int)
  size = (h + top + bottom, w + left + right)
  layer = np.zeros(size)
  layer[top:top + h, left:left + w] = sheet
  cover = np.zeros(size, np.float32)
  cover[top:top + h, left:left + w] = 1
  angle, centre = rng.uniform(-15, 15) if small else rng.uniform(-6, 6), (left + w / 2, top + h / 2)
  turn = lambda a: np.asarray(Image.fromarray(a.astype(np.float32), 'F').rotate(
      angle, Image.Resampling.BILINEAR, center=centre), np.float64)
  tone = rng.uniform(0.0, 0.35) if dark_table else rng.uniform(0.65, 1.0)
  table = np.clip(tone + rng.normal(0, 0.03, size), 0, 1)
  cover = turn(cover)
  return turn(layer) * cover + table * (1 - cover)


def lined(rng, grey, ink_alpha, kind, spacing):
  """Paper (`grey`, its ink `ink_alpha`) ruled or squared (`kind`): light blue or grey
  lines printed under the ink, `spacing` pixels apart, 1.5-5% of that thick (squares:
  2-7%), the sheet turned up to 5 degrees; a ruled sheet's red margin half the time.
  RGB in [0, 1]."""
  h, w = grey.shape
  side = int(np.hypot(h, w)) + 2
  thick = max(1, int(round(spacing * rng.uniform(*((0.02, 0.07) if kind == 'squared'
                                                    else (0.015, 0.05))))))
  layer = np.zeros((side, side), np.float32)
  for start in np.arange(rng.uniform(0, spacing), side, spacing).astype(int):
    layer[start:start + thick] = 1
    if kind == 'squared':
      layer[:, start:start + thick] = 1
  layer = np.asarray(Image.fromarray(layer, 'F').rotate(rng.uniform(-5, 5), Image.Resampling.BILINEAR))
  colour = (rng.uniform([0.35, 0.55, 0.85], [0.75, 0.85, 1.0]) if rng.random() < 0.7
            else np.full(3, rng.uniform(0.4, 0.8)))
  cover = layer[(side - h) // 2:][:h, (side - w) // 2:][:, :w, None] * (1 - colour)
  if kind == 'ruled' and rng.random() < 0.5:
    x = int(rng.uniform(0.05, 0.3) * w)
    cover[:, x:x + thick] = np.maximum(cover[:, x:x + thick], 1 - np.array([0.9, 0.45, 0.45]))
  return grey[..., None] * (1 - (1 - ink_alpha[..., None]) * cover)


def paper_photo(rng, ink_alpha, size, blotches=False, table=False, lines=None):
  """Composes ink (alpha in [0, 1]) onto paper; random polarity, colour, JPEG; with
  `table` (True, or 'small' for a small sheet), the paper photographed on a table
  (on_table); with `lines` (lined's kind and spacing), on ruled or squared paper,
  written in dark ink."""
  sheet = paper(rng, size, blotches)
  ink_level = rng.uniform(0.0, 0.25)
  board = lines is None and rng.random() < 0.3
  if board:  # Light ink on a dark board.
    sheet, ink_level = 1 - sheet, rng.uniform(0.75, 1.0)
  grey = sheet * (1 - ink_alpha) + ink_level * ink_alpha
  # Stray specks away from the digit.
  for _ in range(rng.integers(0, 4)):
    y, x = rng.integers(0, size[0]), rng.integers(0, size[1])
    grey[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = ink_level
  if table:
    grey = on_table(rng, grey, dark_table=not board, small=table == 'small')
  rgb = grey[..., None] if lines is None else lined(rng, grey, ink_alpha, *lines)
  tint = rng.uniform(0.6, 1.0, 3) if rng.random() < 0.5 else np.ones(3)
  rgb = np.clip(rgb * tint, 0, 1)
  image = Image.fromarray((rgb * 255).astype(np.uint8))
  if rng.random() < 0.5:
    buffer = io.BytesIO()
    image.save(buffer, 'JPEG', quality=int(rng.integers(40, 90)))
    image = Image.open(io.BytesIO(buffer.getvalue()))
  return image


def sklearn_digits():
  """scikit-learn's 1,797 8x8 digits (0-16, ink high) as dark ink on white, and labels."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  return (255 - digits.images * 255 / 16).round().astype(np.uint8), digits.target
