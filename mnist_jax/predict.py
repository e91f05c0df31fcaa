"""`--mode=predict`: digits from real photos, scans and drawings.

Before the model sees an image, it is made to look like MNIST, the way MNIST
itself was made (LeCun et al.): greyscale, light ink on a dark background, the
digit cropped, scaled so its longer side is 20 pixels (aspect ratio kept) and
placed in a 28x28 frame so that its centre of mass is at the centre. On top of
that, for photos: uneven lighting and paper texture are removed, specks are
ignored, and thin pen strokes are thickened to MNIST's stroke width.
"""

import dataclasses
import json
import os
import sys
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from mnist_jax.errors import UserError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp')
MAX_PIXELS = 50_000_000  # A 50-megapixel photo is plenty; beyond, refuse.
MAX_FILE_BYTES = 200 * 2**20
WORK_SIZE = 256  # Longest side while finding the digit.
DIGIT_BOX = 20  # MNIST: the digit's longer side, in pixels.
FRAME = 28
MIN_CONTRAST_OVER_NOISE = 6
STROKE_WIDTH = 2.2  # Typical MNIST stroke width at DIGIT_BOX scale, in pixels.


class ImageProblem(ValueError):
  """This one image cannot be used; the message says why."""


def open_image(path: str) -> Image.Image:
  """Opens a file as a PIL image (the first frame of an animation)."""
  if not os.path.isfile(path):
    raise ImageProblem('no such file')
  size = os.path.getsize(path)
  if size == 0:
    raise ImageProblem('empty file')
  if size > MAX_FILE_BYTES:
    raise ImageProblem(f'file too large ({size / 2**20:.0f} MiB > {MAX_FILE_BYTES / 2**20:.0f})')
  try:
    image = Image.open(path)
    if image.width * image.height > MAX_PIXELS:
      raise ImageProblem(f'image too large ({image.width}x{image.height} pixels; '
                         f'at most {MAX_PIXELS:,})')
    image.seek(0)
    image.load()
  except (UnidentifiedImageError, Image.DecompressionBombError) as e:
    raise ImageProblem(f'not a readable image ({e})') from e
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    raise ImageProblem(f'not a readable image ({type(e).__name__}: {e})') from e
  return image


def to_grey(image: Image.Image) -> np.ndarray:
  """Greyscale float array in [0, 1], transparency resolved.

  A drawing exported with a transparent background has its ink in the alpha
  channel; it is laid on a background that contrasts with the ink's colour.
  """
  image = ImageOps.exif_transpose(image)  # Phone photos are often stored rotated.
  if image.mode in ('P', 'PA') or (image.mode in ('L', 'LA', 'RGB') and 'transparency' in image.info):
    image = image.convert('RGBA')
  if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
    array = np.asarray(image, np.float64)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)
  if image.mode in ('RGBA', 'LA'):
    alpha = np.asarray(image.getchannel('A'), np.float64) / 255
    grey = np.asarray(image.convert('L'), np.float64) / 255
    if alpha.min() < 0.5:  # Real transparency, not an opaque alpha channel.
      ink = grey[alpha > 0.5]
      background = 1.0 if ink.size == 0 or ink.mean() < 0.5 else 0.0
      return alpha * grey + (1 - alpha) * background
    return grey
  return np.asarray(image.convert('L'), np.float64) / 255


def _shrink(grey: np.ndarray, longest: int) -> np.ndarray:
  h, w = grey.shape
  if max(h, w) <= longest:
    return grey
  scale = longest / max(h, w)
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(grey.astype(np.float32), 'F').resize(
      size, Image.Resampling.BOX), np.float64)


def _smooth(array: np.ndarray) -> np.ndarray:
  """A [1, 4, 6, 4, 1] / 16 binomial blur along both axes (about a 1-pixel sigma)."""
  kernel = np.array([1, 4, 6, 4, 1]) / 16
  for axis in (0, 1):
    padded = np.pad(array, [(2, 2) if a == axis else (0, 0) for a in (0, 1)], mode='edge')
    n = array.shape[axis]
    array = sum(k * np.take(padded, np.arange(i, i + n), axis=axis) for i, k in enumerate(kernel))
  return array


def ink_map(grey: np.ndarray) -> np.ndarray:
  """Ink as light on dark, >= 0: polarity fixed, uneven lighting removed."""
  low, median, high = np.percentile(grey, [1, 50, 99])
  if median - low > high - median:  # The ink (the minority) is darker than the paper.
    grey = 1 - grey
  # Shadows and uneven light: the paper's level per tile of an 8x8 grid (a low
  # percentile, since ink is bright and rare), then the darkest of each tile's
  # neighbours, so that a tile full of ink cannot lift it, interpolated
  # smoothly. Small images (crops, icons) have no shadows worth the risk.
  h, w = grey.shape
  if min(h, w) < 64:
    return np.clip(grey - np.percentile(grey, 20), 0, None)
  n = 8
  tiles = np.array([[np.percentile(grey[h * i // n:h * (i + 1) // n, w * j // n:w * (j + 1) // n], 10)
                     for j in range(n)] for i in range(n)], np.float32)
  tiles = np.asarray(Image.fromarray(tiles, 'F').filter(ImageFilter.MinFilter(3)))
  background = np.asarray(Image.fromarray(tiles, 'F').resize((w, h), Image.Resampling.BILINEAR))
  return np.clip(grey - background, 0, None)


def _otsu(values: np.ndarray) -> float:
  hist, edges = np.histogram(values, bins=64)
  centers = (edges[:-1] + edges[1:]) / 2
  weight = np.cumsum(hist)
  total = weight[-1]
  mean = np.cumsum(hist * centers)
  between = (mean[-1] * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1)
  return float(centers[np.argmax(between)])


def _components(mask: np.ndarray):
  """Connected components (8-neighbourhood) as (label image, sizes)."""
  labels = np.zeros(mask.shape, np.int32)
  sizes = [0]
  h, w = mask.shape
  for start in zip(*np.nonzero(mask)):
    if labels[start]:
      continue
    label = len(sizes)
    labels[start] = label
    stack, size = [start], 0
    while stack:
      y, x = stack.pop()
      size += 1
      for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
          ny, nx = y + dy, x + dx
          if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
            labels[ny, nx] = label
            stack.append((ny, nx))
    sizes.append(size)
  return labels, np.array(sizes)


def digit_mask(ink: np.ndarray) -> np.ndarray:
  """The pixels of the digit: strong ink, minus specks and far-away marks."""
  if ink.max() < 0.04:
    raise ImageProblem('blank image: no ink found')
  # The noise level, from differences of neighbouring pixels: robust, since
  # only the few pixels at a stroke's edge differ by more than noise.
  noise = max(np.median(np.abs(np.diff(ink, axis=0))), np.median(np.abs(np.diff(ink, axis=1))),
              1 / 255) / 0.954
  scale = ink.max()
  ink = ink / scale
  candidates = ink[ink > 0.02]
  threshold = max(_otsu(candidates) if candidates.size > 10 else 0.5, 0.2)
  labels, sizes = _components(ink > threshold)
  # Paper texture alone makes a noise-like "digit" (measured: ~2 noise levels
  # above the paper; generated digits on noisy paper: 14 and more).
  if len(sizes) < 2 or (np.median(ink[labels > 0]) - np.median(ink[ink < threshold / 2])
                        ) * scale < MIN_CONTRAST_OVER_NOISE * noise:
    raise ImageProblem('blank image: no clear ink found')
  biggest = int(np.argmax(sizes[1:])) + 1
  main = labels == biggest
  ys, xs = np.nonzero(main)
  extent = max(np.ptp(ys), np.ptp(xs), 1)
  keep = np.zeros(len(sizes), bool)
  keep[biggest] = True
  # Other strokes of the same digit (the bar of a 5, a broken 4): big enough and
  # close to the main stroke. Specks and marks far away are dropped.
  for label in np.flatnonzero(sizes >= 0.05 * sizes[biggest]):
    if label and label != biggest:
      ly, lx = np.nonzero(labels == label)
      gap = np.min(np.hypot(ly[:, None] - ys[None, ::7], lx[:, None] - xs[None, ::7]))
      keep[label] = gap < 0.5 * extent
  return keep[labels]


def _stroke_width(mask: np.ndarray) -> float:
  """Mean stroke width of a binary shape: area over half the perimeter."""
  area = mask.sum()
  edges = (np.count_nonzero(mask[1:] != mask[:-1]) + np.count_nonzero(mask[:, 1:] != mask[:, :-1]))
  return float(2 * area / max(edges, 1))


def to_mnist(grey: np.ndarray) -> np.ndarray:
  """Any greyscale digit image in [0, 1] -> a 28x28 uint8 MNIST-style image."""
  grey = _shrink(grey, WORK_SIZE)
  if min(grey.shape) >= 64:  # Dithering (palette images) and JPEG speckle are not ink.
    grey = _smooth(grey)
  ink = ink_map(grey)
  mask = digit_mask(ink)
  ys, xs = np.nonzero(mask)
  box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
  # Keep the soft (anti-aliased) ink around the digit's strokes, nothing else.
  near = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(3))) > 0
  digit = np.where(near, np.minimum(ink / np.percentile(ink[mask], 90), 1), 0)[box]
  scale = DIGIT_BOX / max(digit.shape)
  # Thin pen strokes would become faint 1-pixel lines at MNIST's scale: thicken.
  missing = STROKE_WIDTH / scale - _stroke_width(mask[box])
  if missing >= 2:
    thick = Image.fromarray(digit.astype(np.float32), 'F')
    for _ in range(min(int(missing // 2), 20)):  # Each 3x3 max adds a pixel per side.
      thick = thick.filter(ImageFilter.MaxFilter(3))
    digit = np.asarray(thick, np.float64)
  h, w = digit.shape
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  small = np.asarray(Image.fromarray(digit.astype(np.float32), 'F').resize(
      size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC), np.float64)
  small = np.clip(small, 0, None) / max(small.max(), 1e-6)
  # Centre of mass at the frame's centre, as MNIST was made.
  total = small.sum()
  cy = (np.arange(small.shape[0]) * small.sum(axis=1)).sum() / total
  cx = (np.arange(small.shape[1]) * small.sum(axis=0)).sum() / total
  oy, ox = int(round((FRAME - 1) / 2 - cy)), int(round((FRAME - 1) / 2 - cx))
  frame = np.zeros((FRAME, FRAME))
  y0, x0 = max(0, -oy), max(0, -ox)
  y1, x1 = min(small.shape[0], FRAME - oy), min(small.shape[1], FRAME - ox)
  frame[y0 + oy:y1 + oy, x0 + ox:x1 + ox] = small[y0:y1, x0:x1]
  return np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)


def preprocess(image) -> np.ndarray:
  """A path, PIL image or array (any size; 2-D grey, or HxWx3/4) -> 28x28 uint8."""
  if isinstance(image, (str, os.PathLike)):
    image = open_image(os.fspath(image))
  if isinstance(image, Image.Image):
    grey = to_grey(image)
  else:
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
      array = array[..., 0]
    if array.ndim not in (2, 3) or array.size == 0:
      raise ImageProblem(f'expected a 2-D image array, got shape {array.shape}')
    if array.dtype != np.uint8:
      array = np.clip(array / max(float(array.max()), 1e-12) * 255, 0, 255).astype(np.uint8)
    grey = to_grey(Image.fromarray(array))
  if min(grey.shape) < 2:
    raise ImageProblem(f'image too small ({grey.shape[1]}x{grey.shape[0]} pixels)')
  return to_mnist(grey)


def image_paths(paths: Sequence[str]) -> list[str]:
  """Files as given; folders expanded to their images, recursively, sorted."""
  out = []
  for path in paths:
    if os.path.isdir(path):
      for root, dirs, files in os.walk(path):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files)
                if f.lower().endswith(IMAGE_EXTENSIONS)]
    else:
      out.append(path)
  return out


@dataclasses.dataclass
class Predictor:
  """A trained model from a workdir, ready to classify images.

  >>> predictor = Predictor.from_workdir('runs/default')
  >>> predictor(['my_digit.jpg'])  # -> probabilities, shape [1, 10]
  """
  config: object
  apply: object  # Jitted: uint8 [N, 28, 28, 1] -> probabilities [N, 10].

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None):
    import jax  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top
    from mnist_jax import config_lib, input_pipeline, train  # pylint: disable=g-import-not-at-top
    config = config_lib.load_saved(workdir)
    graphdef, state, _ = train.restore_trained(workdir, config, step)
    model = nnx.merge(graphdef, state.eval_params, state.model_state)
    apply = jax.jit(lambda x: jax.nn.softmax(model(input_pipeline.normalize(x, config.dataset))))
    return cls(config, apply)

  def __call__(self, images: Iterable, preprocessed: bool = False) -> np.ndarray:
    """Probabilities [N, 10] for images (paths, PIL images or arrays).

    `preprocessed=True` takes 28x28 MNIST-style uint8 arrays as they are.
    """
    batch = np.stack([np.asarray(i, np.uint8).reshape(FRAME, FRAME) if preprocessed
                      else preprocess(i) for i in images])
    return np.asarray(self.apply(batch[..., None]))


def predict(images: Iterable, workdir: str, step: int | None = None) -> np.ndarray:
  """Probabilities [N, 10] for images (paths, PIL images or arrays), for notebooks."""
  return Predictor.from_workdir(workdir, step)(images)


def predict_files(paths: Sequence[str], workdir: str, step: int | None = None,
                  save_preprocessed: str | None = None, out=sys.stdout) -> int:
  """Writes one JSON object per image to `out`; returns how many failed."""
  files = image_paths(paths)
  if not files:
    raise UserError(f'No images found in {", ".join(paths)} '
                    f'(looked for {", ".join(IMAGE_EXTENSIONS)} in folders).')
  from mnist_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  predictor = Predictor.from_workdir(workdir, step)
  names = input_pipeline.CLASS_NAMES[predictor.config.dataset]
  if save_preprocessed:
    os.makedirs(save_preprocessed, exist_ok=True)
  failures = 0
  for i, path in enumerate(files):
    try:
      digit = preprocess(path)
    except ImageProblem as e:
      failures += 1
      print(json.dumps({'file': path, 'error': str(e)}), file=out, flush=True)
      continue
    probabilities = predictor([digit], preprocessed=True)[0]
    if save_preprocessed:
      stem = os.path.splitext(os.path.basename(path))[0]
      Image.fromarray(digit).save(os.path.join(save_preprocessed, f'{i:04d}_{stem}.png'))
    best = int(np.argmax(probabilities))
    record = {'file': path, 'prediction': best, 'confidence': round(float(probabilities[best]), 4),
              'probabilities': [round(float(p), 4) for p in probabilities]}
    if names[best] != str(best):
      record['class_name'] = names[best]
    print(json.dumps(record), file=out, flush=True)
  return failures
